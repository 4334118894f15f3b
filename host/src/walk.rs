//! [`Walk`]: an iterator over the blobs a filter matches, fetched from the
//! component in batches.

use std::collections::VecDeque;
use std::sync::Arc;

use wasmtime::component::ResourceAny;

use crate::BlobInfo;
use crate::error::Result;
use crate::session::Session;
use crate::store::Shared;

/// Blobs matching a walk's filters, from [`Store::walk`](crate::Store::walk).
///
/// Yields `Err` at most once, then ends.
pub struct Walk {
    shared: Arc<Shared>,
    session: Option<Session>,
    handle: Option<ResourceAny>,
    batch: VecDeque<BlobInfo>,
}

impl Walk {
    pub(crate) fn new(shared: &Arc<Shared>, filters: &[&str]) -> Result<Self> {
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let mut session = shared.session()?;
        match session.call(|api, s| api.kist_content_store().call_walk(s, &filters)) {
            Ok(handle) => Ok(Self {
                shared: Arc::clone(shared),
                session: Some(session),
                handle: Some(handle),
                batch: VecDeque::new(),
            }),
            Err(e) => {
                shared.recycle(session);
                Err(e)
            }
        }
    }

    /// Ends the walk and returns its instance to the pool.
    fn finish(&mut self) {
        if let (Some(mut session), Some(handle)) = (self.session.take(), self.handle.take()) {
            let _ = session.call(|_, s| handle.resource_drop(s).map(Ok));
            self.shared.recycle(session);
        }
    }
}

impl Iterator for Walk {
    type Item = Result<BlobInfo>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.batch.is_empty() {
            let (session, handle) = (self.session.as_mut()?, self.handle?);
            match session.call(|api, s| api.kist_content_store().walker().call_next(s, handle)) {
                Ok(batch) if !batch.is_empty() => self.batch = batch.into(),
                Ok(_) => {
                    self.finish();
                    return None;
                }
                Err(e) => {
                    self.finish();
                    return Some(Err(e));
                }
            }
        }
        self.batch.pop_front().map(Ok)
    }
}

impl Drop for Walk {
    fn drop(&mut self) {
        self.finish();
    }
}
