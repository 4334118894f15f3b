//! [`Walk`]: an iterator over the blobs a filter matches, fetched from the
//! component in batches.

use std::collections::VecDeque;

use crate::BlobInfo;
use crate::error::{Error, Result};
use crate::held::Held;
use crate::store::Scoped;

/// Blobs matching a walk's filters, from [`Store::walk`](crate::Store::walk).
///
/// A blob that cannot be described (its labels are damaged) is an
/// [`Error::Corrupt`](crate::Error::Corrupt) item and the walk goes on;
/// any other `Err` ends it.
pub struct Walk {
    walker: Held,
    batch: VecDeque<BlobInfo>,
}

impl Walk {
    pub(crate) fn new(shared: &Scoped, filters: &[&str], cached: bool) -> Result<Self> {
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let walker = Held::create(shared, |api, s| {
            let store = api.kist_content_store();
            if cached {
                store.call_walk_cached(s, &filters)
            } else {
                store.call_walk(s, &filters)
            }
        })?;
        Ok(Self {
            walker,
            batch: VecDeque::new(),
        })
    }
}

impl Iterator for Walk {
    type Item = Result<BlobInfo>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.batch.is_empty() {
            let batch = self.walker.call(is_corrupt, |api, s, walker| {
                api.kist_content_store().walker().call_next(s, walker)
            });
            match batch? {
                Ok(batch) if !batch.is_empty() => self.batch = batch.into(),
                Ok(_) => {
                    self.walker.finish();
                    return None;
                }
                Err(e) => return Some(Err(e)),
            }
        }
        self.batch.pop_front().map(Ok)
    }
}

/// The error a walk reports for one blob and goes on after.
fn is_corrupt(e: &Error) -> bool {
    matches!(e, Error::Corrupt(_))
}
