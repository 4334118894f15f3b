//! Who a call is for (the `caller` capability), and the checks every
//! exported operation makes against it. The host says who; the rules are
//! here, so a front end that forgets a check is still refused.

use std::cell::RefCell;

use crate::bindings::kist::content::caller::{self, Actions, Grant};
use crate::retention::holds;
use crate::shared::error::{Error, Result};
use crate::shared::grants;

/// The identity of a call: the holder it acts for, and whether it is
/// confined to what that holder holds.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Whose labels it reads and writes, and who holds what it stores
    /// unless it names another holder.
    pub holder: String,
    /// Whether it sees and changes only what `holder` holds or reaches.
    pub confined: bool,
    /// What it may do in the registry's repositories; `None`: anything
    /// if unconfined, nothing if confined.
    pub repositories: Option<Vec<Grant>>,
    /// Further grants it is held to (see `caller.identity.within`).
    pub within: Vec<Vec<Grant>>,
}

thread_local! {
    /// Who the component acts as while it calls its own operations for a
    /// holder (see [`Caller::acting`]); the host's caller otherwise.
    static ACTING: RefCell<Option<Caller>> = const { RefCell::new(None) };
}

impl Caller {
    /// The caller of the operation in progress: the host's, or the one the
    /// component acts as meanwhile.
    pub fn current() -> Self {
        if let Some(acting) = ACTING.with(|a| a.borrow().clone()) {
            return acting;
        }
        let identity = caller::current();
        Self {
            holder: identity.holder,
            confined: identity.confined,
            repositories: identity.repositories,
            within: identity.within,
        }
    }

    /// Runs `f`, in which the component's own operations are called as
    /// this caller (and checked as its calls would be).
    pub fn acting<R>(&self, f: impl FnOnce() -> R) -> R {
        let before = ACTING.with(|a| a.replace(Some(self.clone())));
        let result = f();
        ACTING.with(|a| *a.borrow_mut() = before);
        result
    }

    /// Who the caller is while the component works for a holder itself
    /// (the registry for a repository, the layer manager as `layers`):
    /// confined to it, so that work is checked like anyone's.
    pub fn internal(holder: &str) -> Self {
        Self {
            holder: holder.to_owned(),
            confined: true,
            repositories: None,
            within: Vec::new(),
        }
    }

    /// Fails with `denied` if the caller is confined: `what` concerns the
    /// whole store.
    pub fn administer(&self, what: &str) -> Result<()> {
        if self.confined {
            return Err(Error::Denied(format!(
                "{what} concerns the whole store; a caller confined to {:?} may not",
                self.holder
            )));
        }
        Ok(())
    }

    /// The holder a call that names `given` acts as, checked to take a
    /// hold (a lease must exist): `given`, or the caller's own. A confined
    /// caller may name only its own; a registry client (with grants)
    /// none.
    pub fn holder_for(&self, given: Option<String>) -> Result<String> {
        if self.repositories.is_some() {
            // A registry client stores only into repositories, through the
            // registry (which acts as the repository's holder).
            return Err(Error::Denied(
                "a registry client holds nothing of its own".to_owned(),
            ));
        }
        let holder = self.releasing(given)?;
        holds::check(&holder)?;
        Ok(holder)
    }

    /// The holder a call that releases a hold names (`given`, or the
    /// caller's own); a lease that ended may still let go of what its
    /// record says it holds. A confined caller may name only its own.
    pub fn releasing(&self, given: Option<String>) -> Result<String> {
        let holder = given.unwrap_or_else(|| self.holder.clone());
        if self.confined && holder != self.holder {
            return Err(Error::Denied(format!(
                "a caller confined to {:?} may not act as another holder",
                self.holder
            )));
        }
        Ok(holder)
    }

    /// Whether the caller sees what `holders` (the live holders of a blob,
    /// or the holders of a snapshot) hold: a confined caller only what its
    /// own holder holds, others anything someone holds.
    pub fn sees(&self, holders: &[String]) -> bool {
        if self.confined {
            holders.contains(&self.holder) || holders.iter().any(|h| self.pulls_from(h))
        } else {
            !holders.is_empty()
        }
    }

    /// Whether the caller may change what `holders` hold: a confined
    /// caller only what its own holder holds, others anything.
    pub fn owns(&self, holders: &[String]) -> bool {
        !self.confined || holders.contains(&self.holder)
    }

    /// `holders` as the caller is shown them: all of them, or for a
    /// confined caller its own hold alone.
    pub fn shown(&self, mut holders: Vec<String>) -> Vec<String> {
        if self.confined {
            holders.retain(|h| *h == self.holder);
        }
        holders
    }

    /// What the caller may do in `repository` (see `caller.identity`).
    pub fn in_repository(&self, repository: &str) -> Actions {
        match &self.repositories {
            Some(granted) => self
                .within
                .iter()
                .fold(grants::allowed(granted, repository), |allowed, more| {
                    allowed & grants::allowed(more, repository)
                }),
            None if self.confined => Actions::empty(),
            None => Actions::all(),
        }
    }

    /// Fails with `denied` unless the caller may do `action` (`what`, for
    /// the message) in `repository`.
    pub fn may(&self, repository: &str, action: Actions, what: &str) -> Result<()> {
        if self.in_repository(repository).contains(action) {
            return Ok(());
        }
        Err(Error::Denied(format!(
            "{what} in repository {repository:?} is not granted to this caller"
        )))
    }

    /// Whether `holder` is a repository the caller may pull from (and so
    /// sees what it holds); only grants extend sight this way.
    fn pulls_from(&self, holder: &str) -> bool {
        self.repositories.is_some()
            && holder
                .strip_prefix(holds::REGISTRY)
                .is_some_and(|r| self.in_repository(r).contains(Actions::PULL))
    }
}
