//! What a `/v2/...` or `/kist/v1/...` path names. Repository names
//! contain slashes, so a path is read from its end: the last segments say
//! which endpoint, the rest is the name (the component checks its
//! grammar).

/// The endpoint a `/v2/` path names.
#[derive(Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`: the API version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/blobs/<digest>`.
    Blob { name: String, digest: String },
    /// `/v2/<name>/blobs/uploads/`.
    Uploads { name: String },
    /// `/v2/<name>/blobs/uploads/<id>`.
    Upload { name: String, id: String },
    /// `/v2/<name>/manifests/<reference>`.
    Manifest { name: String, reference: String },
    /// `/v2/<name>/tags/list`.
    Tags { name: String },
    /// `/v2/<name>/referrers/<digest>`.
    Referrers { name: String, digest: String },
    /// `/kist/v1/<name>/trees/<digest>`: a layer's tree (delta pulls).
    Tree { name: String, digest: String },
    /// `/kist/v1/<name>/packs/<digest>?base=<digest>...`: what a node
    /// that has the base layers lacks to rebuild the layer.
    Pack { name: String, digest: String },
}

impl Endpoint {
    /// The endpoint's route template, names and references left out (a
    /// metric's label: one series per endpoint, not per repository).
    pub fn route(&self) -> &'static str {
        match self {
            Self::Base => "/v2/",
            Self::Catalog => "/v2/_catalog",
            Self::Blob { .. } => "/v2/{name}/blobs/{digest}",
            Self::Uploads { .. } => "/v2/{name}/blobs/uploads/",
            Self::Upload { .. } => "/v2/{name}/blobs/uploads/{id}",
            Self::Manifest { .. } => "/v2/{name}/manifests/{reference}",
            Self::Tags { .. } => "/v2/{name}/tags/list",
            Self::Referrers { .. } => "/v2/{name}/referrers/{digest}",
            Self::Tree { .. } => "/kist/v1/{name}/trees/{digest}",
            Self::Pack { .. } => "/kist/v1/{name}/packs/{digest}",
        }
    }
}

/// The endpoint of `rest`, the path after `/v2/`; `None` for none.
pub fn endpoint(rest: &str) -> Option<Endpoint> {
    if rest.is_empty() {
        return Some(Endpoint::Base);
    }
    if rest == "_catalog" {
        return Some(Endpoint::Catalog);
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let n = segments.len();
    let name = |k: usize| (n > k).then(|| segments[..n - k].join("/"));
    let tail = |k: usize| segments.get(n.wrapping_sub(k)).copied();
    Some(match (tail(3), tail(2), tail(1)) {
        (Some("blobs"), Some("uploads"), Some("")) => Endpoint::Uploads { name: name(3)? },
        (Some("blobs"), Some("uploads"), Some(id)) => Endpoint::Upload {
            name: name(3)?,
            id: id.to_owned(),
        },
        (_, Some("blobs"), Some("uploads")) => Endpoint::Uploads { name: name(2)? },
        (_, Some("blobs"), Some(digest)) => Endpoint::Blob {
            name: name(2)?,
            digest: digest.to_owned(),
        },
        (_, Some("manifests"), Some(reference)) => Endpoint::Manifest {
            name: name(2)?,
            reference: reference.to_owned(),
        },
        (_, Some("tags"), Some("list")) => Endpoint::Tags { name: name(2)? },
        (_, Some("referrers"), Some(digest)) => Endpoint::Referrers {
            name: name(2)?,
            digest: digest.to_owned(),
        },
        _ => return None,
    })
}

/// The endpoint of `rest`, the path after `/kist/v1/`; `None` for none.
pub fn delta_endpoint(rest: &str) -> Option<Endpoint> {
    let (name, digest) = rest.rsplit_once('/')?;
    let (name, kind) = name.rsplit_once('/')?;
    let (name, digest) = (name.to_owned(), digest.to_owned());
    match kind {
        "trees" => Some(Endpoint::Tree { name, digest }),
        "packs" => Some(Endpoint::Pack { name, digest }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let s = |x: &str| x.to_owned();
        assert_eq!(endpoint(""), Some(Endpoint::Base));
        assert_eq!(endpoint("_catalog"), Some(Endpoint::Catalog));
        assert_eq!(
            endpoint("a/b/blobs/sha256:00"),
            Some(Endpoint::Blob {
                name: s("a/b"),
                digest: s("sha256:00")
            })
        );
        assert_eq!(
            endpoint("a/blobs/uploads/"),
            Some(Endpoint::Uploads { name: s("a") })
        );
        assert_eq!(
            endpoint("a/blobs/uploads"),
            Some(Endpoint::Uploads { name: s("a") })
        );
        assert_eq!(
            endpoint("blobs/blobs/uploads/x1"),
            Some(Endpoint::Upload {
                name: s("blobs"),
                id: s("x1")
            })
        );
        assert_eq!(
            endpoint("x/manifests/latest"),
            Some(Endpoint::Manifest {
                name: s("x"),
                reference: s("latest")
            })
        );
        assert_eq!(
            endpoint("x/tags/list"),
            Some(Endpoint::Tags { name: s("x") })
        );
        assert_eq!(
            endpoint("x/referrers/sha256:00"),
            Some(Endpoint::Referrers {
                name: s("x"),
                digest: s("sha256:00")
            })
        );
        assert_eq!(
            delta_endpoint("a/b/trees/sha256:00"),
            Some(Endpoint::Tree {
                name: s("a/b"),
                digest: s("sha256:00")
            })
        );
        assert_eq!(
            delta_endpoint("a/packs/sha256:00"),
            Some(Endpoint::Pack {
                name: s("a"),
                digest: s("sha256:00")
            })
        );
        assert_eq!(delta_endpoint("packs/sha256:00"), None);
        assert_eq!(delta_endpoint("a/blobs/sha256:00"), None);
        assert_eq!(endpoint("blobs/x"), None);
        assert_eq!(endpoint("x/other/y"), None);
    }
}
