//! `lending`: a blob checked for the caller, then lent to the host.

use crate::Component;
use crate::bindings::exports::kist::content::lending::Guest;
use crate::bindings::kist::content::lender::{self, Loan, LoanError};
use crate::content::store::open_blob;
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result};
use crate::shared::scope::Caller;

impl Guest for Component {
    fn lend(digest: String) -> Result<Loan> {
        let blob = open_blob(&Digest::parse(&digest)?, Caller::current())?;
        lender::lend(blob.fd, 0, blob.size).map_err(|e| match e {
            // The file was checked a moment ago: it went meanwhile.
            LoanError::Gone => Error::NotFound,
            e => Error::Io(format!("lending {}: {e:?}", blob.path)),
        })
    }
}
