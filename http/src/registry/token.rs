//! Bearer tokens, as distribution's token authentication (what Harbor,
//! GitLab and Docker Hub use): a client sent to the token server (`realm`)
//! comes back with a JWT that server signed, whose `access` claim lists
//! the repositories and actions it may use. Tokens are checked here
//! (signature against the configured keys, `exp`, `nbf`, `iss`, `aud`);
//! what they grant goes to the store component, which applies it to every
//! registry call.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use kist::{Actions, Grant};
use serde::Deserialize;

/// How tokens are obtained and checked.
pub struct Tokens {
    /// The token server's URL, sent in challenges.
    realm: String,
    /// This registry's name: the `service` of challenges, the `aud` a
    /// token must carry.
    service: String,
    /// The keys a token may be signed with, and how each verifies.
    keys: Vec<(DecodingKey, Validation)>,
    /// Tokens that checked out, by their SHA-256, until their `exp`: a
    /// client sends the same token with every request of a pull, and a
    /// signature check (~50 µs for ES256) would cost a small blob's pull
    /// a sixth of its time.
    verified: Mutex<HashMap<[u8; 32], (Verified, u64)>>,
}

/// Tokens remembered at most; past it the memory starts afresh.
const REMEMBERED: usize = 4096;

/// The claims kist reads.
#[derive(Deserialize)]
struct Claims {
    exp: u64,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    access: Vec<Access>,
}

/// One entry of the `access` claim.
#[derive(Deserialize)]
struct Access {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    actions: Vec<String>,
}

/// A token that checked out: who it names, and what it grants.
#[derive(Clone)]
pub struct Verified {
    /// Its `sub`.
    pub subject: Option<String>,
    /// One grant per repository of its `access` claim.
    pub grants: Vec<Grant>,
}

impl Tokens {
    /// Tokens from `realm` for `service`, issued by `issuer` and signed by
    /// a key of the PEM file `keys`: public keys or certificates (RSA for
    /// RS256/384/512, P-256/P-384 for ES256/384), one or more.
    pub fn load(realm: &str, service: &str, issuer: &str, keys: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(keys)?;
        let invalid = |m: String| std::io::Error::other(format!("{}: {m}", keys.display()));
        let mut parsed = Vec::new();
        for block in text.split("-----BEGIN ").skip(1) {
            let pem = format!("-----BEGIN {block}");
            let (key, algorithms) = if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
                (
                    key,
                    vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
                )
            } else if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
                (key, vec![Algorithm::ES256, Algorithm::ES384])
            } else {
                return Err(invalid(format!(
                    "{:?} is not an RSA or EC public key or certificate",
                    block.lines().next().unwrap_or_default()
                )));
            };
            let mut validation = Validation::new(algorithms[0]);
            validation.algorithms = algorithms;
            validation.set_audience(&[service]);
            validation.set_issuer(&[issuer]);
            validation.validate_nbf = true;
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            parsed.push((key, validation));
        }
        if parsed.is_empty() {
            return Err(invalid("no PEM key or certificate".to_owned()));
        }
        Ok(Self {
            realm: realm.to_owned(),
            service: service.to_owned(),
            keys: parsed,
            verified: Mutex::default(),
        })
    }

    /// The claims of `token` if a configured key signed it and it is for
    /// this service, from its issuer and current; why not otherwise.
    pub fn verify(&self, token: &str) -> Result<Verified, String> {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(token).into();
        let now = jsonwebtoken::get_current_timestamp();
        if let Some((known, exp)) = self.verified.lock().expect("tokens").get(&key)
            && now < *exp
        {
            return Ok(known.clone());
        }
        let mut why = String::from("no key");
        for (decoding, validation) in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, decoding, validation) {
                Ok(data) => {
                    let exp = data.claims.exp;
                    let checked = verified(data.claims);
                    let mut remembered = self.verified.lock().expect("tokens");
                    if remembered.len() >= REMEMBERED {
                        remembered.clear();
                    }
                    remembered.insert(key, (checked.clone(), exp));
                    return Ok(checked);
                }
                Err(e) => why = e.to_string(),
            }
        }
        Err(why)
    }

    /// The `WWW-Authenticate` value that sends a client to the token
    /// server for `scope` (space-separated scopes), with the RFC 6750
    /// `error` that says why the last token did not do.
    pub fn challenge(&self, scope: Option<&str>, error: Option<&str>) -> String {
        let mut value = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.realm, self.service
        );
        if let Some(scope) = scope {
            value.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(error) = error {
            value.push_str(&format!(",error=\"{error}\""));
        }
        value
    }
}

/// What `claims` grant: its repository entries, each a grant for that
/// one name (`*` as an action: all of them; entries for the same name add
/// up). A name with a wildcard is not a repository's and grants nothing.
fn verified(claims: Claims) -> Verified {
    let mut by_name: std::collections::BTreeMap<String, Actions> = Default::default();
    for entry in claims.access {
        if entry.kind != "repository" || entry.name.contains('*') {
            continue;
        }
        let actions = by_name.entry(entry.name).or_insert(Actions::empty());
        for action in &entry.actions {
            *actions |= match action.as_str() {
                "pull" => Actions::PULL,
                "push" => Actions::PUSH,
                "delete" => Actions::DELETE,
                "*" => Actions::all(),
                _ => Actions::empty(),
            };
        }
    }
    Verified {
        subject: claims.sub,
        grants: by_name
            .into_iter()
            .map(|(pattern, actions)| Grant { pattern, actions })
            .collect(),
    }
}
