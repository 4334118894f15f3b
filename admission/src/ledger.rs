//! The accounts: who holds which connections, transfers and memory, and
//! the choice of what to cut when the server is full.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::{Client, Limits, Progress, Refused};

/// What an entry is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Connection,
    Transfer,
}

/// One admitted connection or transfer.
struct Entry {
    client: Client,
    kind: Kind,
    memory: u64,
    cut: CancellationToken,
    /// A transfer's progress.
    progress: Option<Arc<Progress>>,
    /// Cut to make room or for being slow: no longer counted, though its
    /// permit is still alive until the server drops it.
    cut_off: bool,
}

/// What one client, or all of them, hold.
#[derive(Clone, Copy, Default, Debug)]
struct Usage {
    connections: usize,
    transfers: usize,
    memory: u64,
}

impl Usage {
    fn add(&mut self, kind: Kind, memory: u64) {
        match kind {
            Kind::Connection => self.connections += 1,
            Kind::Transfer => self.transfers += 1,
        }
        self.memory += memory;
    }

    fn remove(&mut self, kind: Kind, memory: u64) {
        match kind {
            Kind::Connection => self.connections -= 1,
            Kind::Transfer => self.transfers -= 1,
        }
        self.memory -= memory;
    }
}

/// What the server is short of when it is full.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Short {
    Connections,
    Transfers,
    Memory,
}

/// The accounts of one server.
#[derive(Default)]
pub(crate) struct Ledger {
    next: u64,
    entries: HashMap<u64, Entry>,
    clients: HashMap<Client, Usage>,
    total: Usage,
}

impl Ledger {
    /// Admits `kind` for `client` holding `memory` bytes: its id, and what
    /// was cut to make room (for the log).
    #[allow(clippy::too_many_arguments)] // the accounts of one admission, unbundled
    pub(crate) fn admit(
        &mut self,
        limits: &Limits,
        client: &Client,
        kind: Kind,
        memory: u64,
        cut: &CancellationToken,
        progress: Option<Arc<Progress>>,
        now: u64,
    ) -> Result<(u64, Vec<String>), Refused> {
        let mine = self.clients.get(client).copied().unwrap_or_default();
        match kind {
            Kind::Connection if mine.connections >= limits.connections_per_client => {
                return Err(Refused::Connections);
            }
            Kind::Transfer if mine.transfers >= limits.transfers_per_client => {
                return Err(Refused::Transfers);
            }
            _ if mine.memory.saturating_add(memory) > limits.memory_per_client => {
                return Err(Refused::Memory);
            }
            _ => {}
        }
        let mut victims = Vec::new();
        while let Some(short) = self.short(limits, kind, memory) {
            let Some(victim) = self.victim(short, client, mine, memory, now) else {
                return Err(if short == Short::Memory {
                    Refused::Memory
                } else {
                    Refused::Full
                });
            };
            victims.push(self.cut_off(victim));
        }
        let id = self.next;
        self.next += 1;
        self.entries.insert(
            id,
            Entry {
                client: client.clone(),
                kind,
                memory,
                cut: cut.clone(),
                progress,
                cut_off: false,
            },
        );
        self.clients
            .entry(client.clone())
            .or_default()
            .add(kind, memory);
        self.total.add(kind, memory);
        Ok((id, victims))
    }

    /// What the server lacks to admit `kind` holding `memory`, if anything.
    fn short(&self, limits: &Limits, kind: Kind, memory: u64) -> Option<Short> {
        if kind == Kind::Connection && self.total.connections >= limits.connections {
            Some(Short::Connections)
        } else if kind == Kind::Transfer && self.total.transfers >= limits.transfers {
            Some(Short::Transfers)
        } else if self.total.memory.saturating_add(memory) > limits.memory {
            Some(Short::Memory)
        } else {
            None
        }
    }

    /// What to cut for a newcomer from `client` (holding `mine`, asking
    /// for `memory`) when the server is `short`: from the client holding
    /// the most of it, if that is more than the newcomer would hold, its
    /// slowest transfer (or, for connections, its oldest connection).
    fn victim(
        &self,
        short: Short,
        client: &Client,
        mine: Usage,
        memory: u64,
        now: u64,
    ) -> Option<u64> {
        let amount = |u: &Usage| match short {
            Short::Connections => u.connections as u64,
            Short::Transfers => u.transfers as u64,
            Short::Memory => u.memory,
        };
        let would_have = amount(&mine)
            + match short {
                Short::Memory => memory,
                _ => 1,
            };
        let (richest, _) = self
            .clients
            .iter()
            .filter(|(c, u)| *c != client && amount(u) > would_have)
            .max_by_key(|(_, u)| amount(u))?;
        let theirs = self
            .entries
            .iter()
            .filter(|(_, e)| !e.cut_off && e.client == *richest);
        match short {
            Short::Connections => theirs
                .filter(|(_, e)| e.kind == Kind::Connection)
                .min_by_key(|(id, _)| **id)
                .map(|(id, _)| *id),
            Short::Transfers | Short::Memory => theirs
                .filter(|(_, e)| {
                    e.kind == Kind::Transfer && (short != Short::Memory || e.memory > 0)
                })
                .min_by_key(|(_, e)| e.progress.as_ref().map_or(0, |p| p.rate(now)))
                .map(|(id, _)| *id),
        }
    }

    /// Cuts the entry `id`: cancels its token and stops counting it.
    fn cut_off(&mut self, id: u64) -> String {
        let entry = self.entries.get_mut(&id).expect("a live entry");
        entry.cut_off = true;
        entry.cut.cancel();
        let (client, kind, memory) = (entry.client.clone(), entry.kind, entry.memory);
        self.uncount(&client, kind, memory);
        format!("a {kind:?} of {client}").to_lowercase()
    }

    fn uncount(&mut self, client: &Client, kind: Kind, memory: u64) {
        self.total.remove(kind, memory);
        if let Some(usage) = self.clients.get_mut(client) {
            usage.remove(kind, memory);
            if usage.connections == 0 && usage.transfers == 0 && usage.memory == 0 {
                self.clients.remove(client);
            }
        }
    }

    /// Counts `memory` bytes for the entry `id` instead of more.
    pub(crate) fn shrink(&mut self, id: u64, memory: u64) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.cut_off || memory >= entry.memory {
            return;
        }
        let freed = entry.memory - memory;
        entry.memory = memory;
        let client = entry.client.clone();
        self.total.memory -= freed;
        if let Some(usage) = self.clients.get_mut(&client) {
            usage.memory -= freed;
        }
    }

    /// Forgets the entry `id` (its permit was dropped).
    pub(crate) fn release(&mut self, id: u64) {
        if let Some(entry) = self.entries.remove(&id)
            && !entry.cut_off
        {
            self.uncount(&entry.client, entry.kind, entry.memory);
        }
    }

    /// Cuts every transfer too slow at `now`; how many.
    pub(crate) fn cut_slow(&mut self, limits: &Limits, now: u64) -> u64 {
        let slow: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.cut_off)
            .filter(|(_, e)| e.progress.as_ref().is_some_and(|p| p.too_slow(limits, now)))
            .map(|(id, _)| *id)
            .collect();
        for id in &slow {
            self.cut_off(*id);
        }
        slow.len() as u64
    }
}
