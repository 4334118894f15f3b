//! The conformance suite against stores on a bucket of a real Ceph RGW
//! (one gateway for the suite, a prefix per store): every blob also goes
//! up to the bucket, and the contract holds as on a local directory.

kist_tests::conformance_suite!(kist_tests::rgw::open_on_shared_bucket);
