//! `objects` in pure wasm: no network and no credentials, so every call
//! answers `unsupported`; a store on the portable capabilities keeps its
//! blobs in its directory.

use crate::Component;
use crate::bindings::exports::kist::content::hasher::HasherBorrow;
use crate::bindings::exports::kist::content::objects::{
    Guest, Listing, ObjectError, ObjectMeta, PutMode,
};
use crate::bindings::wasi::filesystem::types::Descriptor;

impl Guest for Component {
    fn max_record() -> u64 {
        0
    }

    fn head(_key: String) -> Result<ObjectMeta, ObjectError> {
        Err(ObjectError::Unsupported)
    }

    fn get_record(_key: String) -> Result<(Vec<u8>, String), ObjectError> {
        Err(ObjectError::Unsupported)
    }

    fn put(_key: String, _data: Vec<u8>, _mode: PutMode) -> Result<String, ObjectError> {
        Err(ObjectError::Unsupported)
    }

    fn delete(_key: String) -> Result<(), ObjectError> {
        Err(ObjectError::Unsupported)
    }

    fn list_objects(
        _prefix: String,
        _after: Option<String>,
        _limit: u32,
    ) -> Result<Listing, ObjectError> {
        Err(ObjectError::Unsupported)
    }

    fn upload(
        _key: String,
        _source: &Descriptor,
        _source_offset: u64,
        _length: u64,
        _hasher: HasherBorrow<'_>,
        _mode: PutMode,
    ) -> Result<String, ObjectError> {
        Err(ObjectError::Unsupported)
    }

    fn download(
        _key: String,
        _offset: u64,
        _length: u64,
        _target: &Descriptor,
        _target_offset: u64,
        _hasher: HasherBorrow<'_>,
    ) -> Result<u64, ObjectError> {
        Err(ObjectError::Unsupported)
    }
}
