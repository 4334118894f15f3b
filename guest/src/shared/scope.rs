//! Who a call is for (the `caller` capability), and the checks every
//! exported operation makes against it. The host says who; the rules are
//! here, so a front end that forgets a check is still refused.

use std::cell::RefCell;

use crate::bindings::kist::content::caller;
use crate::retention::holds;
use crate::shared::error::{Error, Result};

/// The identity of a call: the holder it acts for, and whether it is
/// confined to what that holder holds.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Whose labels it reads and writes, and who holds what it stores
    /// unless it names another holder.
    pub holder: String,
    /// Whether it sees and changes only what `holder` holds or reaches.
    pub confined: bool,
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
    /// caller may name only its own.
    pub fn holder_for(&self, given: Option<String>) -> Result<String> {
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
            holders.contains(&self.holder)
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
}
