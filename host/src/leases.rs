//! [`Leases`]: containerd-style leases, holders a client takes before it
//! writes so that nothing it is in the middle of storing is collected.

use std::time::Duration;

use crate::bindings::exports::kist::content::leases::{Lease, LeaseResource};
use crate::error::Result;
use crate::store::{Scoped, Store};

/// The leases of a store, from [`Store::leases`].
///
/// ```no_run
/// # fn main() -> Result<(), kist::Error> {
/// use std::time::Duration;
/// let store = kist::Store::open("/tmp/kist-demo")?;
/// let lease = store.leases().create(None, Some(Duration::from_secs(3600)), &[])?;
/// // Everything written through this handle is held by the lease.
/// let leased = store.with_lease(&lease.id);
/// let digest = leased.put(b"pulled layer")?;
/// // ... reference it from a manifest, hold it elsewhere ...
/// store.leases().delete(&lease.id)?; // releases the layer
/// # let _ = digest;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Leases {
    shared: Scoped,
}

impl Store {
    /// The store's leases.
    pub fn leases(&self) -> Leases {
        Leases {
            shared: self.shared.clone(),
        }
    }
}

impl Leases {
    /// Creates a lease (`id` `None` makes one up) that expires after
    /// `expires_in`, or never; [`Error::AlreadyExists`](crate::Error::AlreadyExists)
    /// if the id is taken. Labels `containerd.io/gc.expire` and
    /// `containerd.io/gc.flat` work as in containerd.
    pub fn create(
        &self,
        id: Option<&str>,
        expires_in: Option<Duration>,
        labels: &[(&str, &str)],
    ) -> Result<Lease> {
        let labels = crate::labels(labels);
        self.shared.call(|api, s| {
            api.kist_content_leases()
                .call_create(s, id, expires_in.map(|d| d.as_secs()), &labels)
        })
    }

    /// The lease `id`.
    pub fn get(&self, id: &str) -> Result<Lease> {
        self.shared
            .call(|api, s| api.kist_content_leases().call_get(s, id))
    }

    /// Live leases matching any of `filters` (fields `id`, `labels.<key>`).
    pub fn list(&self, filters: &[&str]) -> Result<Vec<Lease>> {
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        self.shared
            .call(|api, s| api.kist_content_leases().call_list(s, &filters))
    }

    /// Deletes the lease `id`, releasing all it holds.
    pub fn delete(&self, id: &str) -> Result<()> {
        self.shared
            .call(|api, s| api.kist_content_leases().call_delete(s, id))
    }

    /// Makes the lease `id` hold `item`.
    pub fn add_resource(&self, id: &str, item: &LeaseResource) -> Result<()> {
        self.shared
            .call(|api, s| api.kist_content_leases().call_add_resource(s, id, item))
    }

    /// Stops the lease `id` from holding `item`.
    pub fn delete_resource(&self, id: &str, item: &LeaseResource) -> Result<()> {
        self.shared
            .call(|api, s| api.kist_content_leases().call_delete_resource(s, id, item))
    }

    /// What the lease `id` holds.
    pub fn resources(&self, id: &str) -> Result<Vec<LeaseResource>> {
        self.shared
            .call(|api, s| api.kist_content_leases().call_resources(s, id))
    }
}
