//! First commit wins: the index of every `(source_system, event_id)` committed to
//! staging, with the position of its first copy. The flusher consults it before each
//! insert, so a re-sent event is answered as a duplicate instead of being staged again,
//! and every reader of staging (warehouse load, real time, change feed) sees one copy.
//!
//! Keys are kept as 128-bit hashes (two independently keyed SipHash-1-3 digests, keys
//! drawn per process), about 40 bytes an event in memory; the index is rebuilt from
//! staging at start-up, so the keys never need to be stable across processes.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use clickhouse::Client;
use serde::Deserialize;

use super::EVENTS_TABLE;
use crate::error::Result;

/// Separates source system and event id in a key; cannot occur in validated ids.
const SEP: u8 = 0x1f;

pub(super) struct CommittedKeys {
    hashers: (RandomState, RandomState),
    first: HashMap<u128, u64>,
}

impl CommittedKeys {
    pub(super) fn new() -> Self {
        Self {
            hashers: (RandomState::new(), RandomState::new()),
            first: HashMap::new(),
        }
    }

    /// Every key staged so far, with its lowest position (staging written before this
    /// rule may hold several copies).
    pub(super) async fn load(client: &Client) -> Result<Self> {
        #[derive(clickhouse::Row, Deserialize)]
        struct Key {
            source_system: String,
            event_id: String,
            position: u64,
        }
        let mut keys = Self::new();
        let mut cursor = client
            .query(&format!("SELECT source_system, event_id, position FROM {EVENTS_TABLE}"))
            .fetch::<Key>()?;
        while let Some(k) = cursor.next().await? {
            let key = keys.key(&k.source_system, &k.event_id);
            let slot = keys.first.entry(key).or_insert(k.position);
            *slot = (*slot).min(k.position);
        }
        Ok(keys)
    }

    pub(super) fn key(&self, source_system: &str, event_id: &str) -> u128 {
        let digest = |state: &RandomState| {
            let mut h = state.build_hasher();
            source_system.as_bytes().hash(&mut h);
            SEP.hash(&mut h);
            event_id.as_bytes().hash(&mut h);
            h.finish()
        };
        (u128::from(digest(&self.hashers.0)) << 64) | u128::from(digest(&self.hashers.1))
    }

    /// Position of the first committed copy of `key`.
    pub(super) fn first_position(&self, key: u128) -> Option<u64> {
        self.first.get(&key).copied()
    }

    /// Records keys whose insert returned.
    pub(super) fn committed(&mut self, keys: impl IntoIterator<Item = (u128, u64)>) {
        for (key, position) in keys {
            self.first.entry(key).or_insert(position);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.first.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_source_and_id_and_first_position_stays() {
        let mut keys = CommittedKeys::new();
        let a = keys.key("ward-ehr", "obs-1");
        assert_eq!(a, keys.key("ward-ehr", "obs-1"));
        assert_ne!(a, keys.key("ward-ehr", "obs-2"));
        assert_ne!(a, keys.key("ward-eh", "robs-1"));
        assert_ne!(a, keys.key("lab", "obs-1"));
        assert_eq!(keys.first_position(a), None);
        keys.committed([(a, 7)]);
        keys.committed([(a, 9)]);
        assert_eq!(keys.first_position(a), Some(7));
        assert_eq!(keys.len(), 1);
    }
}
