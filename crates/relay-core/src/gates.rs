//! Per-key gates that exist only while someone uses them: the callers of one key (a
//! connection being refreshed, an API key whose rate-limit slice is being refilled) share one
//! lock, and the registry forgets the key when its last user leaves, so it holds only the keys
//! in use, however many keys pass through it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

/// A registry of per-key gates of type `G` (such as `tokio::sync::Mutex<()>`).
pub struct KeyedGates<K, G> {
    gates: Mutex<HashMap<K, Arc<G>>>,
}

impl<K, G> Default for KeyedGates<K, G> {
    fn default() -> Self {
        Self {
            gates: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, G: Default> KeyedGates<K, G> {
    /// The key's gate, registered until the returned entry (and every other entry of the key)
    /// is dropped. The entry owns a handle on the registry, so it can move into a task.
    pub fn enter(self: &Arc<Self>, key: &K) -> GateEntry<K, G> {
        let gate = self.map().entry(key.clone()).or_default().clone();
        GateEntry {
            gates: self.clone(),
            key: key.clone(),
            gate: Some(gate),
        }
    }

    /// How many keys are registered (in use) now.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn map(&self) -> MutexGuard<'_, HashMap<K, Arc<G>>> {
        self.gates.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A user of a key's gate; see [`KeyedGates::enter`].
pub struct GateEntry<K: Eq + Hash + Clone, G: Default> {
    gates: Arc<KeyedGates<K, G>>,
    key: K,
    /// `Some` until the entry is dropped (taken in `drop`, under the registry's lock).
    gate: Option<Arc<G>>,
}

impl<K: Eq + Hash + Clone, G: Default> GateEntry<K, G> {
    /// The gate itself, to lock (an `Arc`, for the owned guards of tokio's locks).
    pub fn gate(&self) -> &Arc<G> {
        self.gate
            .as_ref()
            .expect("an entry holds its gate until it is dropped")
    }
}

impl<K: Eq + Hash + Clone, G: Default> Drop for GateEntry<K, G> {
    fn drop(&mut self) {
        let mut map = self.gates.map();
        // Our handle goes under the lock, before the count is read: two entries leaving at
        // once cannot both see the other's handle and both keep the key.
        drop(self.gate.take());
        if map
            .get(&self.key)
            .is_some_and(|g| Arc::strong_count(g) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Gates = KeyedGates<String, tokio::sync::Mutex<()>>;

    #[test]
    fn entries_of_one_key_share_its_gate_and_the_last_one_out_forgets_it() {
        let gates = Arc::new(Gates::default());
        let a = gates.enter(&"k".to_owned());
        let b = gates.enter(&"k".to_owned());
        let other = gates.enter(&"other".to_owned());
        assert!(Arc::ptr_eq(a.gate(), b.gate()));
        assert!(!Arc::ptr_eq(a.gate(), other.gate()));
        assert_eq!(gates.len(), 2);
        drop(a);
        assert_eq!(gates.len(), 2, "b still uses k");
        drop(b);
        drop(other);
        assert!(gates.is_empty());
    }

    #[test]
    fn a_gate_held_elsewhere_keeps_its_key_until_released() {
        let gates = Arc::new(Gates::default());
        let entry = gates.enter(&"k".to_owned());
        let held = entry.gate().clone().try_lock_owned().expect("free");
        drop(entry);
        // The owned guard holds the gate: a newcomer must find the same, locked gate.
        let newcomer = gates.enter(&"k".to_owned());
        assert!(newcomer.gate().try_lock().is_err());
        drop(held);
        drop(newcomer);
        assert!(gates.is_empty());
    }

    #[test]
    fn entries_leaving_from_many_threads_leave_nothing_behind() {
        let gates = Arc::new(Gates::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let gates = gates.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        let e = gates.enter(&format!("k{}", i % 3));
                        drop(e);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        assert!(gates.is_empty());
    }
}
