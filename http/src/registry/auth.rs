//! Who a registry client is, and the grants it comes with: Basic
//! credentials against an htpasswd file, bearer tokens from a token
//! server, or none (anonymous); an access policy turns a user, or a
//! token's subject, into grants (a token's claims are held to them).
//! Only authentication happens here: the store component decides what the
//! grants allow on every call, and a refusal comes back as `denied`,
//! which [`Client::refused`] turns into the answer the client's kind of
//! authentication expects.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use kist::{Actions, Store};

use super::errors::Failure;
use super::htpasswd::Htpasswd;
use super::policy::{self, PolicyFile};
use super::token::Tokens;

/// The registry's access rules.
#[derive(Default)]
pub struct Access {
    /// Users who may log in with Basic credentials.
    pub htpasswd: Option<Htpasswd>,
    /// Clients without credentials may pull from every repository (with a
    /// policy: pull is added to its `**` pattern).
    pub anonymous_pull: bool,
    /// What users, groups and anonymous clients may do where; without
    /// one, a user who logged in may do anything.
    pub policy: Option<PolicyFile>,
    /// Bearer tokens, and the token server challenges send clients to.
    pub tokens: Option<Tokens>,
}

/// A client that authenticated (or is anonymous), and the store as it may
/// use it.
pub struct Client {
    /// The user or token subject; `None`: anonymous.
    pub user: Option<String>,
    /// The store handle its calls go through: confined to its grants
    /// unless it may do anything.
    pub store: Store,
    /// How it authenticated, for the answer to a refusal.
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Anonymous,
    Basic,
    Bearer,
}

impl Access {
    /// Reads the htpasswd and policy files again (after SIGHUP). A file
    /// that does not read or check stays as it was; the first error is
    /// returned after both were tried.
    pub fn reload(&self) -> std::io::Result<()> {
        let users = self.htpasswd.as_ref().map_or(Ok(()), Htpasswd::reload);
        let policy = self.policy.as_ref().map_or(Ok(()), PolicyFile::reload);
        users.and(policy)
    }

    /// Whether clients must authenticate at all.
    pub fn authenticates(&self) -> bool {
        self.htpasswd.is_some() || self.tokens.is_some()
    }

    /// Who the request is from and the store handle its calls go
    /// through; a 401 with a challenge for `scope` if its credentials do
    /// not check out, or if it has none and anonymous clients may do
    /// nothing. bcrypt runs on the blocking pool.
    pub async fn admit(
        self: &Arc<Self>,
        store: &Store,
        headers: &HeaderMap,
        scope: Option<&str>,
    ) -> Result<Client, Failure> {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if let (Some(token), Some(tokens)) = (authorization.strip_prefix("Bearer "), &self.tokens) {
            return match tokens.verify(token.trim()) {
                // A policy holds the token's claims to what it gives the
                // token's subject (an admin: everything).
                Ok(verified) => Ok(Client {
                    store: self
                        .policed(store, verified.subject.as_deref())
                        .granted(verified.grants),
                    user: verified.subject,
                    kind: Kind::Bearer,
                }),
                Err(why) => Err(self.challenge(scope, Some("invalid_token"), &why)),
            };
        }
        if let (Some(basic), Some(_)) = (authorization.strip_prefix("Basic "), &self.htpasswd) {
            let Some(user) = self.check_basic(basic).await else {
                return Err(self.challenge(scope, None, "wrong user name or password"));
            };
            return Ok(Client {
                store: self.policed(store, Some(&user)),
                user: Some(user),
                kind: Kind::Basic,
            });
        }
        let grants = match &self.policy {
            Some(p) => p.get().grants(None, self.anonymous_pull),
            None if self.anonymous_pull => Some(vec![policy::everywhere(Actions::PULL)]),
            None if self.authenticates() => Some(Vec::new()),
            None => None, // no authentication: anyone may do anything
        };
        if let Some(grants) = &grants
            && grants.iter().all(|g| g.actions == Actions::empty())
        {
            return Err(self.challenge(scope, None, "authentication required"));
        }
        Ok(Client {
            user: None,
            store: grants.map_or_else(|| store.clone(), |g| store.granted(g)),
            kind: Kind::Anonymous,
        })
    }

    /// `store` held to what the policy gives `user`, if there is one.
    fn policed(&self, store: &Store, user: Option<&str>) -> Store {
        let grants = self
            .policy
            .as_ref()
            .and_then(|p| p.get().grants(user, self.anonymous_pull));
        grants.map_or_else(|| store.clone(), |g| store.granted(g))
    }

    /// The user of Basic credentials `encoded`, if they check out.
    async fn check_basic(self: &Arc<Self>, encoded: &str) -> Option<String> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
            let ok = this
                .htpasswd
                .as_ref()
                .is_some_and(|h| h.check(user, password));
            ok.then(|| user.to_owned())
        })
        .await
        .unwrap_or(None)
    }

    /// A 401 that tells the client how to authenticate: a bearer
    /// challenge for `scope` when tokens are configured, else Basic.
    fn challenge(&self, scope: Option<&str>, error: Option<&str>, message: &str) -> Failure {
        let value = match &self.tokens {
            Some(tokens) => tokens.challenge(scope, error),
            None => "Basic realm=\"kist\"".to_owned(),
        };
        Failure::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
            .with_header(header::WWW_AUTHENTICATE, value)
    }
}

impl Client {
    /// The answer to a request the store refused for lack of a grant
    /// (`refused`, a 403 `DENIED`): an anonymous client is asked to
    /// authenticate, a token's holder to get one with `scope`
    /// (`insufficient_scope`, as the token spec says); a user who logged
    /// in with a password keeps the 403, since logging in again will not
    /// help.
    pub fn refused(&self, access: &Access, refused: Failure, scope: Option<&str>) -> Failure {
        match self.kind {
            Kind::Basic => refused,
            Kind::Anonymous if !access.authenticates() => refused,
            Kind::Anonymous => access.challenge(scope, None, "authentication required"),
            Kind::Bearer => access.challenge(
                scope,
                Some("insufficient_scope"),
                "the token does not grant this",
            ),
        }
    }
}
