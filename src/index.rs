//! The supernode's state: which registered node holds which resource.
//!
//! Two maps kept in step: node location -> its entry (name, ids, missed checks), and resource
//! id -> its holders. A registration replaces the node's earlier list; removing a node removes
//! its holdings and nothing else. Each registration gets a new generation number, so a liveness
//! sweep that started before a node registered again cannot remove the fresh registration.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use serde::Serialize;

use crate::id::ResourceId;

/// A node's registered state.
#[derive(Debug)]
struct NodeEntry {
    name: String,
    ids: Vec<ResourceId>,
    misses: u32,
    generation: u64,
}

/// One node holding one resource, under the name it gave.
#[derive(Debug)]
struct Holder {
    location: Arc<str>,
    name: Box<str>,
}

/// The answer to a local look-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One holder: the one to use.
    pub location: String,
    /// Every holder known.
    pub locations: Vec<String>,
}

/// A registered node, as `GET /api/supernode/alive` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    pub name: String,
    pub location: String,
}

/// A node to check in a liveness sweep: its location and the registration it had then.
#[derive(Debug, Clone)]
pub struct Registration {
    pub location: Arc<str>,
    pub generation: u64,
}

#[derive(Debug, Default)]
pub struct Index {
    nodes: HashMap<Arc<str>, NodeEntry>,
    resources: HashMap<ResourceId, Vec<Holder>>,
    next_generation: u64,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    /// Registers `location` with its resources, replacing what it registered before. Returns
    /// `true` when it was registered already.
    pub fn register(
        &mut self,
        location: &str,
        name: String,
        resources: impl IntoIterator<Item = (ResourceId, String)>,
    ) -> bool {
        let again = self.remove_node(location).is_some();
        let location: Arc<str> = location.into();
        let mut ids = Vec::new();
        for (id, resource_name) in resources {
            let holders = self.resources.entry(id).or_default();
            // The same content twice in one node is one holding.
            if holders.iter().all(|h| h.location != location) {
                holders.push(Holder {
                    location: location.clone(),
                    name: resource_name.into(),
                });
                ids.push(id);
            }
        }
        ids.shrink_to_fit();
        self.next_generation += 1;
        let entry = NodeEntry {
            name,
            ids,
            misses: 0,
            generation: self.next_generation,
        };
        self.nodes.insert(location, entry);
        again
    }

    /// Removes a node and its holdings; returns how many resources it held.
    pub fn remove_node(&mut self, location: &str) -> Option<usize> {
        let entry = self.nodes.remove(location)?;
        for id in &entry.ids {
            if let Entry::Occupied(mut holders) = self.resources.entry(*id) {
                holders.get_mut().retain(|h| &*h.location != location);
                if holders.get().is_empty() {
                    holders.remove();
                }
            }
        }
        Some(entry.ids.len())
    }

    pub fn lookup(&self, id: &ResourceId) -> Option<FileInfo> {
        let holders = self.resources.get(id)?;
        let first = holders.first()?;
        Some(FileInfo {
            name: Some(first.name.to_string()),
            location: first.location.to_string(),
            locations: holders.iter().map(|h| h.location.to_string()).collect(),
        })
    }

    /// One holder of `id`, for a multicast answer.
    pub fn first_location(&self, id: &ResourceId) -> Option<Arc<str>> {
        Some(self.resources.get(id)?.first()?.location.clone())
    }

    pub fn is_registered(&self, location: &str) -> bool {
        self.nodes.contains_key(location)
    }

    /// The registered nodes, sorted by location.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let mut nodes: Vec<NodeInfo> = self
            .nodes
            .iter()
            .map(|(location, entry)| NodeInfo {
                name: entry.name.clone(),
                location: location.to_string(),
            })
            .collect();
        nodes.sort_by(|a, b| a.location.cmp(&b.location));
        nodes
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn resource_count(&self) -> usize {
        self.resources.len()
    }

    /// The nodes to check in a sweep.
    pub fn registrations(&self) -> Vec<Registration> {
        self.nodes
            .iter()
            .map(|(location, entry)| Registration {
                location: location.clone(),
                generation: entry.generation,
            })
            .collect()
    }

    /// Records one health check of a registration. A success clears the misses; a failure adds
    /// one, and at `max_misses` the node is removed: the result is then `Some(resources held)`.
    /// A check of an older registration than the current one is ignored.
    pub fn record_check(
        &mut self,
        checked: &Registration,
        alive: bool,
        max_misses: u32,
    ) -> Option<usize> {
        let entry = self.nodes.get_mut(&checked.location)?;
        if entry.generation != checked.generation {
            return None;
        }
        if alive {
            entry.misses = 0;
            return None;
        }
        entry.misses += 1;
        if entry.misses < max_misses {
            return None;
        }
        self.remove_node(&checked.location)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ResourceId {
        ResourceId([n; 32])
    }

    fn files(ids: &[u8]) -> Vec<(ResourceId, String)> {
        ids.iter().map(|&n| (id(n), format!("file{n}"))).collect()
    }

    #[test]
    fn keeps_every_holder_and_removes_only_the_node() {
        let mut index = Index::new();
        index.register("a:1", "a".into(), files(&[1, 2]));
        index.register("b:1", "b".into(), files(&[2, 3]));
        assert_eq!(index.lookup(&id(2)).unwrap().locations, ["a:1", "b:1"]);

        assert_eq!(index.remove_node("a:1"), Some(2));
        assert_eq!(index.lookup(&id(1)), None);
        assert_eq!(index.lookup(&id(2)).unwrap().locations, ["b:1"]);
        assert_eq!(index.lookup(&id(3)).unwrap().name.as_deref(), Some("file3"));
        assert_eq!(index.remove_node("a:1"), None);
    }

    #[test]
    fn registering_again_replaces_the_list() {
        let mut index = Index::new();
        assert!(!index.register("a:1", "a".into(), files(&[1, 2, 2])));
        assert!(index.register("a:1", "a".into(), files(&[3])));
        assert_eq!(index.lookup(&id(1)), None);
        assert_eq!(index.lookup(&id(2)), None);
        assert_eq!(index.lookup(&id(3)).unwrap().locations, ["a:1"]);
        assert_eq!(index.resource_count(), 1);
    }

    #[test]
    fn removal_at_the_second_miss_and_never_of_a_newer_registration() {
        let mut index = Index::new();
        index.register("a:1", "a".into(), files(&[1]));
        let old = index.registrations().pop().unwrap();
        assert_eq!(index.record_check(&old, false, 2), None);
        assert_eq!(index.record_check(&old, true, 2), None);
        assert_eq!(index.record_check(&old, false, 2), None);
        assert!(index.is_registered("a:1"));
        assert_eq!(index.record_check(&old, false, 2), Some(1));
        assert!(!index.is_registered("a:1"));

        index.register("a:1", "a".into(), files(&[1]));
        let current = index.registrations().pop().unwrap();
        index.register("a:1", "a".into(), files(&[1]));
        assert_eq!(
            index.record_check(&current, false, 1),
            None,
            "stale sweep result"
        );
        assert!(index.is_registered("a:1"));
    }
}
