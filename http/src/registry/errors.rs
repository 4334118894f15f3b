//! The distribution spec's error responses: a status and
//! `{"errors":[{"code","message","detail"}]}`. Every refusal the store
//! makes maps to one; a malformed name or digest is a 4xx, never a 500.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kist::{Error, RegistryError};
use serde_json::json;

/// A spec error: status, code and message.
pub struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    headers: Vec<(header::HeaderName, String)>,
}

/// What handlers return: a response, or a spec error.
pub type Reply = Result<Response, Failure>;

impl Failure {
    /// A failure with `status`, spec `code` and a human `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Whether this is a 403 `DENIED`: the store refused the client (its
    /// grants do not allow the request).
    pub fn is_forbidden(&self) -> bool {
        self.status == StatusCode::FORBIDDEN && self.code == "DENIED"
    }

    /// Whether this is a 404: the store does not have what was asked.
    pub fn is_unknown(&self) -> bool {
        self.status == StatusCode::NOT_FOUND
    }

    /// The same failure with one more response header.
    pub fn with_header(mut self, name: header::HeaderName, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{"code": self.code, "message": self.message, "detail": {}}]});
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        for (name, value) in self.headers {
            if let Ok(value) = value.parse() {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        match e {
            Error::Registry(r) => registry(r),
            Error::NotFound => Failure::new(S::NOT_FOUND, "BLOB_UNKNOWN", message),
            Error::InvalidArgument(_) => Failure::new(S::BAD_REQUEST, "UNSUPPORTED", message),
            Error::FailedPrecondition(_) => Failure::new(S::BAD_REQUEST, "DIGEST_INVALID", message),
            Error::Unavailable => Failure::new(S::TOO_MANY_REQUESTS, "TOOMANYREQUESTS", message)
                .with_header(header::RETRY_AFTER, "1".into()),
            Error::NoSpace(_) => Failure::new(S::INSUFFICIENT_STORAGE, "DENIED", message),
            Error::TooLarge(_) => Failure::new(S::PAYLOAD_TOO_LARGE, "SIZE_INVALID", message),
            Error::Timeout => Failure::new(S::SERVICE_UNAVAILABLE, "UNAVAILABLE", message),
            Error::Denied(_) => Failure::new(S::FORBIDDEN, "DENIED", message),
            other => {
                tracing::warn!("registry: {other}");
                Failure::new(S::INTERNAL_SERVER_ERROR, "UNKNOWN", message)
            }
        }
    }
}

/// The status and code of a registry refusal.
fn registry(e: RegistryError) -> Failure {
    use StatusCode as S;
    match e {
        RegistryError::Store(e) => Error::from(e).into(),
        RegistryError::NameInvalid(m) => Failure::new(S::BAD_REQUEST, "NAME_INVALID", m),
        RegistryError::NameUnknown => Failure::new(
            S::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
        ),
        RegistryError::BlobUnknown => {
            Failure::new(S::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown to registry")
        }
        RegistryError::BlobUploadUnknown => Failure::new(
            S::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        ),
        RegistryError::DigestInvalid(m) => Failure::new(S::BAD_REQUEST, "DIGEST_INVALID", m),
        RegistryError::ManifestInvalid(m) => Failure::new(S::BAD_REQUEST, "MANIFEST_INVALID", m),
        RegistryError::ManifestUnknown => Failure::new(
            S::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown to registry",
        ),
        RegistryError::ManifestBlobUnknown(d) => Failure::new(
            S::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
            format!("manifest references a blob unknown to this repository: {d}"),
        ),
        RegistryError::SizeInvalid(m) => Failure::new(S::BAD_REQUEST, "SIZE_INVALID", m),
        RegistryError::Unsupported(m) => {
            Failure::new(S::UNSUPPORTED_MEDIA_TYPE, "MANIFEST_INVALID", m)
        }
    }
}
