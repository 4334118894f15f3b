//! `ObjectBucket` in a build without the `s3` feature: no S3 client is
//! linked and no bucket can be made, so `objects` answers `unsupported`.

use std::fs::File;

use super::{BlobTap, Bucket};
use crate::bindings::kist::content::objects::{Listing, ObjectError, ObjectMeta, PutMode};
use crate::capabilities::copier::Source;
use crate::capabilities::hasher::Hash;

/// A bucket and prefix a store keeps its objects in. This build has no
/// S3 client (the `s3` feature is off), so none can be made.
#[derive(Clone, Debug)]
pub struct ObjectBucket(std::convert::Infallible);

impl Bucket for ObjectBucket {
    fn head(&self, _: &str) -> Result<ObjectMeta, ObjectError> {
        match self.0 {}
    }
    fn get_record(&self, _: &str) -> Result<(Vec<u8>, String), ObjectError> {
        match self.0 {}
    }
    fn put(&self, _: &str, _: Vec<u8>, _: PutMode) -> Result<String, ObjectError> {
        match self.0 {}
    }
    fn delete(&self, _: &str) -> Result<(), ObjectError> {
        match self.0 {}
    }
    fn list(&self, _: &str, _: Option<String>, _: u32) -> Result<Listing, ObjectError> {
        match self.0 {}
    }
    fn upload(
        &self,
        _: &str,
        _: &File,
        _: u64,
        _: u64,
        _: &mut Hash,
        _: PutMode,
    ) -> Result<String, ObjectError> {
        match self.0 {}
    }
    fn read(
        &self,
        _: &str,
        _: u64,
        _: u64,
        _: Option<Box<dyn BlobTap>>,
    ) -> Result<(Box<dyn Source>, u64), ObjectError> {
        match self.0 {}
    }
}
