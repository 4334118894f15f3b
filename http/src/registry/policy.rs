//! The access policy file (`kist serve --access-policy FILE`): which
//! users, groups and anonymous clients may pull, push and delete in which
//! repositories, as zot's `accessControl`. This module only reads the
//! file and turns it into a client's grants; the store component applies
//! them to every registry call (see `caller.identity` in the WIT).
//!
//! ```toml
//! admins = ["root"]                  # everything, everywhere
//!
//! [groups]
//! devs = ["alice", "bob"]
//!
//! [repositories."**"]                # every repository...
//! anonymous = ["pull"]               # ...anyone may pull
//! authenticated = ["pull"]           # any user who logged in
//!
//! [[repositories."team/**".policies]]
//! groups = ["devs"]
//! actions = ["pull", "push", "delete"]
//!
//! [repositories."secret/*"]          # the longest matching pattern decides:
//! policies = [{ users = ["alice"], actions = ["pull"] }]   # nobody else
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kist::{Actions, Grant};
use serde::Deserialize;

/// An action a policy grants.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    fn flag(self) -> Actions {
        match self {
            Action::Pull => Actions::PULL,
            Action::Push => Actions::PUSH,
            Action::Delete => Actions::DELETE,
        }
    }
}

/// The file as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    admins: BTreeSet<String>,
    #[serde(default)]
    groups: BTreeMap<String, BTreeSet<String>>,
    #[serde(default)]
    repositories: BTreeMap<String, Rules>,
}

/// What the clients of one repository pattern may do.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rules {
    /// Clients without credentials.
    #[serde(default)]
    anonymous: Vec<Action>,
    /// Any user who authenticated.
    #[serde(default)]
    authenticated: Vec<Action>,
    #[serde(default)]
    policies: Vec<Rule>,
}

/// Actions for some users and groups.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(default)]
    users: BTreeSet<String>,
    #[serde(default)]
    groups: BTreeSet<String>,
    actions: Vec<Action>,
}

/// A parsed, checked policy.
pub struct Policy {
    file: File,
}

impl Policy {
    /// Reads and checks the policy at `path`: unknown keys, unknown
    /// actions, groups no rule defines and patterns with characters no
    /// repository name has are errors, so a typo never opens or closes a
    /// repository unnoticed.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let invalid = |m: String| std::io::Error::other(format!("{}: {m}", path.display()));
        let file: File = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        for (pattern, rules) in &file.repositories {
            let allowed =
                |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/*".contains(&b);
            if pattern.is_empty() || !pattern.bytes().all(allowed) {
                return Err(invalid(format!(
                    "repository pattern {pattern:?}: only a-z, 0-9, `._-/` and the wildcards `*` and `**`"
                )));
            }
            for group in rules.policies.iter().flat_map(|r| &r.groups) {
                if !file.groups.contains_key(group) {
                    return Err(invalid(format!(
                        "repository pattern {pattern:?} names the group {group:?}, which [groups] does not define"
                    )));
                }
            }
        }
        Ok(Self { file })
    }

    /// What `user` (`None`: a client without credentials) may do: one
    /// grant per pattern of the file, empty where it may do nothing (so a
    /// narrower pattern takes away what a broader one gives), with
    /// `anonymous_pull` adding pull to `**` for everyone. `None` for an
    /// admin: everything.
    pub fn grants(&self, user: Option<&str>, anonymous_pull: bool) -> Option<Vec<Grant>> {
        if user.is_some_and(|u| self.file.admins.contains(u)) {
            return None;
        }
        let in_group = |g: &String| {
            user.is_some_and(|u| self.file.groups.get(g).is_some_and(|m| m.contains(u)))
        };
        let mut grants: Vec<Grant> = self
            .file
            .repositories
            .iter()
            .map(|(pattern, rules)| {
                let mut actions = Actions::empty();
                let mut add = |list: &[Action]| list.iter().for_each(|a| actions |= a.flag());
                add(&rules.anonymous);
                if user.is_some() {
                    add(&rules.authenticated);
                }
                for rule in &rules.policies {
                    if user.is_some_and(|u| rule.users.contains(u))
                        || rule.groups.iter().any(in_group)
                    {
                        add(&rule.actions);
                    }
                }
                Grant {
                    pattern: pattern.clone(),
                    actions,
                }
            })
            .collect();
        if anonymous_pull {
            match grants.iter_mut().find(|g| g.pattern == "**") {
                Some(all) => all.actions |= Actions::PULL,
                None => grants.push(everywhere(Actions::PULL)),
            }
        }
        Some(grants)
    }
}

/// A grant of `actions` in every repository.
pub fn everywhere(actions: Actions) -> Grant {
    Grant {
        pattern: "**".to_owned(),
        actions,
    }
}

/// A policy file, read again by [`reload`](Self::reload).
pub struct PolicyFile {
    path: std::path::PathBuf,
    current: std::sync::RwLock<std::sync::Arc<Policy>>,
}

impl PolicyFile {
    /// Reads the policy at `path` (see [`Policy::load`]).
    pub fn load(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            path: path.to_owned(),
            current: std::sync::RwLock::new(std::sync::Arc::new(Policy::load(path)?)),
        })
    }

    /// Reads the file again (after SIGHUP); a file that does not read or
    /// check leaves the policy as it was. Requests in flight finish under
    /// the policy they started with.
    pub fn reload(&self) -> std::io::Result<()> {
        let policy = Policy::load(&self.path)?;
        *self.current.write().expect("policy lock") = std::sync::Arc::new(policy);
        Ok(())
    }

    /// The policy in force.
    pub fn get(&self) -> std::sync::Arc<Policy> {
        self.current.read().expect("policy lock").clone()
    }
}
