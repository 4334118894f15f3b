//! `Store::put_batch`: many small blobs in few calls into the component.

use crate::bindings::exports::kist::content::ingester::{Durability, PutRequest};
use crate::error::{Error, Result};
use crate::store::{MAX_PUT, Store};

/// Most requests the component takes in one `put-batch` call.
const MAX_BATCH: usize = 4096;

impl Store {
    /// Stores every request as [`Store::put_with`] would and returns one
    /// result per request, in order; a failed request does not stop the
    /// others. A request without a holder is held by this handle's.
    ///
    /// With [`Durability::Synced`] every blob is on disk when this returns,
    /// for one directory sync per call instead of one per blob. With
    /// [`Durability::Cached`] nothing is synced: blobs survive the process
    /// crashing, but a power cut may lose the latest ones or leave one that
    /// fails verification. Requests go to the component in calls of at most
    /// 4096 requests and 16 MiB; a request over 16 MiB fails (use a
    /// [`Store::writer`]).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), kist::Error> {
    /// use kist::{Durability, PutRequest};
    /// let store = kist::Store::open("/tmp/kist-batch")?;
    /// let requests: Vec<PutRequest> = (0..1000u32)
    ///     .map(|i| PutRequest {
    ///         data: i.to_le_bytes().to_vec(),
    ///         expected: None,
    ///         labels: vec![],
    ///         holder: None,
    ///     })
    ///     .collect();
    /// for digest in store.put_batch(&requests, Durability::Cached)? {
    ///     println!("{}", digest?);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn put_batch(
        &self,
        requests: &[PutRequest],
        durability: Durability,
    ) -> Result<Vec<Result<String>>> {
        let mut results = Vec::with_capacity(requests.len());
        let mut rest = requests;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(next_call(rest));
            rest = tail;
            if let [one] = chunk
                && one.data.len() as u64 > MAX_PUT
            {
                results.push(Err(Error::InvalidArgument(format!(
                    "put takes at most {MAX_PUT} bytes; use a writer"
                ))));
                continue;
            }
            let owned;
            let chunk = match &self.holder {
                Some(holder) if chunk.iter().any(|r| r.holder.is_none()) => {
                    owned = chunk
                        .iter()
                        .map(|r| PutRequest {
                            holder: r.holder.clone().or_else(|| Some(holder.clone())),
                            ..r.clone()
                        })
                        .collect::<Vec<_>>();
                    &owned[..]
                }
                _ => chunk,
            };
            let answers = self.shared.call(|api, s| {
                api.kist_content_ingester()
                    .call_put_batch(s, chunk, durability)
            })?;
            results.extend(answers.into_iter().map(|r| r.map_err(Error::from)));
        }
        Ok(results)
    }
}

/// How many of `requests` (at least one) fit in the next call.
fn next_call(requests: &[PutRequest]) -> usize {
    let mut bytes = 0;
    let fit = requests
        .iter()
        .take(MAX_BATCH)
        .take_while(|r| {
            bytes += r.data.len() as u64;
            bytes <= MAX_PUT
        })
        .count();
    fit.max(1)
}
