//! `layers`: desired-state layers (see `wit/layers.wit`).

use crate::Component;
use crate::bindings::exports::kist::content::layers::{
    Guest, LayerDesc, LayerInfo, LentDir, Options, Run as RunHandle,
};
use crate::layers::records;
use crate::layers::run::Run;
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result};
use crate::shared::filters::Filters;
use crate::shared::layout;
use crate::shared::scope::Caller;

/// Fails with `denied` for a caller confined to another holder than the
/// manager's own (`layers`).
fn check_caller() -> Result<()> {
    let caller = Caller::current();
    if caller.confined && caller.holder != records::HOLDER {
        return caller.administer("desired-state layers");
    }
    Ok(())
}

impl Guest for Component {
    type Run = Run;

    fn process_desired(
        desired: Vec<LayerDesc>,
        options: Options,
        lent: Vec<LentDir>,
    ) -> Result<RunHandle> {
        check_caller()?;
        layout::ensure()?;
        Run::start(desired, options, lent).map(RunHandle::new)
    }

    fn info(digest: String) -> Result<LayerInfo> {
        check_caller()?;
        Digest::parse(&digest)?;
        records::current()?
            .items
            .get(&digest)
            .ok_or(Error::NotFound)?
            .info()
    }

    fn list(filters: Vec<String>) -> Result<Vec<LayerInfo>> {
        check_caller()?;
        let filters = Filters::parse(&filters)?;
        records::current()?
            .items
            .values()
            .filter(|r| filters.matches(*r))
            .map(records::Record::info)
            .collect()
    }
}
