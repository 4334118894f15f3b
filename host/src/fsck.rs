//! [`Check`]: a store check (`kist fsck`), run in steps by the component.

use std::collections::VecDeque;

use crate::bindings::exports::kist::content::fsck::Problem;
use crate::error::Result;
use crate::held::Held;
use crate::store::Scoped;

/// The problems a check of the store finds, from
/// [`Store::check`](crate::Store::check).
///
/// Each step of the check re-hashes a bounded amount of data, so iterating
/// takes as long as reading every blob once. Yields `Err` at most once,
/// then ends.
pub struct Check {
    check: Held,
    found: VecDeque<Problem>,
}

impl Check {
    pub(crate) fn new(shared: &Scoped, repair: bool) -> Result<Self> {
        let check = Held::create(shared, |api, s| {
            api.kist_content_fsck()
                .check()
                .call_constructor(s, repair)
                .map(Ok)
        })?;
        Ok(Self {
            check,
            found: VecDeque::new(),
        })
    }

    /// Blobs, label files and ingests checked so far, and bytes hashed;
    /// `None` once the check has ended.
    pub fn progress(&mut self) -> Option<Result<(u64, u64)>> {
        self.check.call(
            |_| false,
            |api, s, check| {
                api.kist_content_fsck()
                    .check()
                    .call_progress(s, check)
                    .map(Ok)
            },
        )
    }
}

impl Iterator for Check {
    type Item = Result<Problem>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.found.is_empty() {
            let step = self.check.call(
                |_| false,
                |api, s, check| api.kist_content_fsck().check().call_next(s, check),
            );
            match step? {
                Ok(Some(problems)) => self.found = problems.into(),
                Ok(None) => {
                    self.check.finish();
                    return None;
                }
                Err(e) => return Some(Err(e)),
            }
        }
        self.found.pop_front().map(Ok)
    }
}
