//! `lender` in pure wasm: the loan keeps the descriptor and reads it
//! through WASI. A host without kist's native `lender` reads a blob's
//! bytes through `loan.read-at`, with the same checks: a removed file and
//! revoked loans are not read.

use std::cell::Cell;

use crate::Component;
use crate::bindings::exports::kist::content::copier::CopyError;
use crate::bindings::exports::kist::content::lender::{Guest, GuestLoan, Loan, LoanError};
use crate::bindings::wasi::filesystem::types::{Descriptor, DescriptorFlags};

/// Most bytes one `read-at` returns.
const MAX_READ: u64 = 16 << 20;

thread_local! {
    /// How many times the store revoked its loans.
    static REVOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// A lent range of one file.
pub struct Lent {
    file: Descriptor,
    start: u64,
    size: u64,
    generation: u64,
}

impl Guest for Component {
    type Loan = Lent;

    fn lend(source: Descriptor, offset: u64, length: u64) -> Result<Loan, LoanError> {
        crate::copier::check(&source, DescriptorFlags::READ, "source").map_err(|e| match e {
            CopyError::BadDescriptor(m) => LoanError::BadDescriptor(m),
            CopyError::Io(m) => LoanError::Io(m),
            CopyError::NoSpace => LoanError::Io("no space".into()),
        })?;
        let end = source
            .stat()
            .map_err(|e| LoanError::Io(format!("{e:?}")))?
            .size;
        if offset.checked_add(length).is_none_or(|last| last > end) {
            return Err(LoanError::OutOfRange(format!(
                "{length} bytes at {offset} of a {end}-byte file"
            )));
        }
        Ok(Loan::new(Lent {
            file: source,
            start: offset,
            size: length,
            generation: REVOCATIONS.get(),
        }))
    }

    fn revoke() {
        REVOCATIONS.set(REVOCATIONS.get() + 1);
    }
}

impl GuestLoan for Lent {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, LoanError> {
        if REVOCATIONS.get() != self.generation {
            return Err(LoanError::Revoked);
        }
        let stat = self
            .file
            .stat()
            .map_err(|e| LoanError::Io(format!("{e:?}")))?;
        if stat.link_count == 0 {
            return Err(LoanError::Gone);
        }
        if offset > self.size {
            return Err(LoanError::OutOfRange(format!(
                "offset {offset} is past the loan's {} bytes",
                self.size
            )));
        }
        let want = len.min(MAX_READ).min(self.size - offset);
        let mut out = Vec::with_capacity(want as usize);
        while (out.len() as u64) < want {
            let at = self.start + offset + out.len() as u64;
            let (bytes, end) = self
                .file
                .read(want - out.len() as u64, at)
                .map_err(|e| LoanError::Io(format!("{e:?}")))?;
            if bytes.is_empty() && end {
                return Err(LoanError::Io(format!("the file ends at {at}")));
            }
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }
}
