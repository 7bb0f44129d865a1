//! The supernode's state: which registered node holds which resource.
//!
//! Built to hold millions of entries in little memory, since every lookup and every multicast
//! answer reads it:
//!
//! - `entries`: one dense 48-byte [`Entry`] per resource id: the id, its first holder inline,
//!   further holders (rare: the same content on several nodes) boxed aside. Freed slots are
//!   reused, so a slot number stays valid while its resource is known.
//! - `table`: a hash table of slot numbers (5 bytes a bucket), hashed by the slot's id.
//! - per node: its location, name, the slots it holds and their names in one text arena.
//!
//! A registration replaces the node's earlier list; removing a node removes its holdings and
//! nothing else. What the nodes registered from each source address hold is kept counted, for
//! the quotas per host. Each registration gets a new generation number, so a liveness sweep that
//! started before a node registered again cannot remove the fresh registration.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use serde::Serialize;

pub use crate::api::{FileInfo, NodeInfo};
use crate::digest::Digest;
use crate::id::ResourceId;

/// One node holding one resource: the node's slot, and where the node's names hold the name
/// it gave the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holding {
    node: u32,
    name: u32,
}

/// Marks a free entry slot (its `first.node`).
const FREE: u32 = u32::MAX;

#[derive(Debug)]
struct Entry {
    id: ResourceId,
    first: Holding,
    // Boxed on purpose: 8 bytes in every entry instead of a Vec's 24, for a list most
    // resources never need.
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<Holding>>>,
}

impl Entry {
    fn holders(&self) -> impl Iterator<Item = Holding> + '_ {
        std::iter::once(self.first).chain(self.more.iter().flat_map(|more| more.iter().copied()))
    }

    fn add(&mut self, holding: Holding) {
        self.more.get_or_insert_with(Default::default).push(holding);
    }

    /// Removes `node`'s holding; returns `true` when nobody holds the resource any more.
    fn remove(&mut self, node: u32) -> bool {
        if self.first.node == node {
            match self.more.as_mut() {
                Some(more) if !more.is_empty() => self.first = more.remove(0),
                _ => self.first.node = FREE,
            }
        } else if let Some(more) = self.more.as_mut() {
            more.retain(|h| h.node != node);
        }
        if self.more.as_ref().is_some_and(|more| more.is_empty()) {
            self.more = None;
        }
        self.first.node == FREE
    }
}

/// A registered node.
#[derive(Debug)]
struct Node {
    location: Arc<str>,
    name: String,
    /// The address its registration came from (`None`: not known, as in a unit test).
    source: Option<IpAddr>,
    /// The entry slot of each resource it holds; `names` has their names in the same order.
    items: Vec<u32>,
    names: Names,
    /// The names again, folded to lower case and each ended by a NUL, with where each starts:
    /// a name search is one substring search through this text.
    folded: Vec<u8>,
    folded_starts: Vec<u32>,
    misses: u32,
    /// When the last counted miss was checked.
    last_miss: Option<Instant>,
    /// When the last health check (of either result) was made.
    last_check: Option<Instant>,
    generation: u64,
}

/// Many short strings in one allocation, each after its length (LEB128): a name is found with
/// one read where it is, not one in a table of ends and one in the text. A node's names come
/// from one request body (at most `MAX_BODY_BYTES`, 1 GiB), so offsets fit in 32 bits.
#[derive(Debug, Default)]
struct Names {
    bytes: Vec<u8>,
}

impl Names {
    /// Appends `name`; returns where it starts.
    fn push(&mut self, name: &str) -> u32 {
        let at = self.bytes.len() as u32;
        let mut len = name.len();
        while len >= 0x80 {
            self.bytes.push((len & 0x7f) as u8 | 0x80);
            len >>= 7;
        }
        self.bytes.push(len as u8);
        self.bytes.extend_from_slice(name.as_bytes());
        at
    }

    fn get(&self, at: u32) -> &str {
        let mut i = at as usize;
        let (mut len, mut shift) = (0usize, 0);
        while let Some(&byte) = self.bytes.get(i) {
            i += 1;
            len |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 || shift >= usize::BITS as usize {
                break;
            }
        }
        // Only whole names were pushed, each valid UTF-8.
        self.bytes
            .get(i..i.saturating_add(len))
            .and_then(|name| std::str::from_utf8(name).ok())
            .unwrap_or_default()
    }

    fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
    }
}

/// A resource as the index holds it; serialises as a [`FileInfo`] without copying a string.
pub struct FileView<'a> {
    index: &'a Index,
    entry: &'a Entry,
}

impl<'a> FileView<'a> {
    pub fn name(&self) -> &'a str {
        let first = self.index.node(self.entry.first.node);
        first.names.get(self.entry.first.name)
    }

    pub fn location(&self) -> &'a str {
        &self.index.node(self.entry.first.node).location
    }

    pub fn locations(&self) -> impl Iterator<Item = &'a str> + 'a {
        let index = self.index;
        self.entry
            .holders()
            .map(move |h| &*index.node(h.node).location)
    }
}

impl Serialize for FileView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Locations<'v, 'a>(&'v FileView<'a>);
        impl Serialize for Locations<'_, '_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.locations())
            }
        }
        let mut file = serializer.serialize_struct("FileInfo", 3)?;
        file.serialize_field("name", self.name())?;
        file.serialize_field("location", self.location())?;
        file.serialize_field("locations", &Locations(self))?;
        file.end()
    }
}

/// A resource found by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameMatch {
    pub id: ResourceId,
    pub name: String,
    pub locations: Vec<String>,
}

/// Appends `text` folded for a name search: lower case (ASCII at once, the rest by Unicode's
/// rules), with no NUL (the names' separator).
pub fn fold_into(out: &mut Vec<u8>, text: &str) {
    if text.is_ascii() {
        out.extend(text.bytes().map(|b| match b {
            0 => b' ',
            _ => b.to_ascii_lowercase(),
        }));
    } else {
        out.extend(
            text.to_lowercase()
                .bytes()
                .map(|b| if b == 0 { b' ' } else { b }),
        );
    }
}

/// A registered node on the status page: its resources and its last health check.
#[derive(Debug, Clone, Serialize)]
pub struct RegisteredNode {
    pub location: String,
    pub name: String,
    pub resources: usize,
    /// Milliseconds since its last health check; `None` before the first.
    pub checked_ms_ago: Option<u64>,
    /// Checks missed in a row.
    pub misses: u32,
}

/// What the nodes registered from one source address hold together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostUsage {
    pub nodes: usize,
    /// Holdings, counted as [`Index::size`] counts them.
    pub holdings: usize,
}

/// A node to check in a liveness sweep: its location and the registration it had then.
#[derive(Debug, Clone)]
pub struct NodeToCheck {
    pub location: Arc<str>,
    pub generation: u64,
}

#[derive(Debug, Default)]
pub struct Index {
    hasher: RandomState,
    table: HashTable<u32>,
    entries: Vec<Entry>,
    free_entries: Vec<u32>,
    nodes: Vec<Option<Node>>,
    free_nodes: Vec<u32>,
    by_location: HashMap<Arc<str>, u32>,
    next_generation: u64,
    /// Holdings of every node together (a resource held by two nodes counts twice).
    holdings: usize,
    /// Per source address with a node registered from it: what its nodes hold.
    by_host: HashMap<IpAddr, HostUsage>,
    /// The summary of the ids held, for the other supernodes ([`crate::digest`]).
    digest: Digest,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    fn slot_of(&self, id: &ResourceId) -> Option<u32> {
        let hash = self.hasher.hash_one(id);
        self.table
            .find(hash, |&slot| self.entries[slot as usize].id == *id)
            .copied()
    }

    fn node(&self, slot: u32) -> &Node {
        self.nodes[slot as usize]
            .as_ref()
            .expect("holdings point at registered nodes")
    }

    /// Registers `location` with its resources, replacing what it registered before, as sent
    /// from `source`. Returns `true` when it was registered already.
    pub fn register<S: AsRef<str>>(
        &mut self,
        location: &str,
        source: Option<IpAddr>,
        name: String,
        resources: impl IntoIterator<Item = (ResourceId, S)>,
    ) -> bool {
        let again = self.remove_node(location).is_some();
        let node_slot = match self.free_nodes.pop() {
            Some(slot) => slot,
            None => {
                self.nodes.push(None);
                (self.nodes.len() - 1) as u32
            }
        };
        let mut items = Vec::new();
        let mut names = Names::default();
        let (mut folded, mut folded_starts) = (Vec::new(), Vec::new());
        let Index {
            hasher,
            table,
            entries,
            free_entries,
            digest,
            ..
        } = self;
        for (id, resource_name) in resources {
            let mut holding = || {
                folded_starts.push(folded.len() as u32);
                fold_into(&mut folded, resource_name.as_ref());
                folded.push(0);
                Holding {
                    node: node_slot,
                    name: names.push(resource_name.as_ref()),
                }
            };
            let hash = hasher.hash_one(id);
            let slot = match table.find(hash, |&slot| entries[slot as usize].id == id) {
                Some(&slot) => {
                    let entry = &mut entries[slot as usize];
                    // The same content twice in one node is one holding.
                    if entry.holders().any(|h| h.node == node_slot) {
                        continue;
                    }
                    entry.add(holding());
                    slot
                }
                None => {
                    digest.add(&id);
                    let holding = holding();
                    let entry = Entry {
                        id,
                        first: holding,
                        more: None,
                    };
                    let slot = match free_entries.pop() {
                        Some(slot) => {
                            entries[slot as usize] = entry;
                            slot
                        }
                        None => {
                            entries.push(entry);
                            (entries.len() - 1) as u32
                        }
                    };
                    table.insert_unique(hash, slot, |&s| hasher.hash_one(entries[s as usize].id));
                    slot
                }
            };
            items.push(slot);
        }
        items.shrink_to_fit();
        names.shrink_to_fit();
        folded.shrink_to_fit();
        folded_starts.shrink_to_fit();
        self.holdings += items.len();
        if let Some(host) = source {
            let usage = self.by_host.entry(host).or_default();
            usage.nodes += 1;
            usage.holdings += items.len();
        }
        self.next_generation += 1;
        if self.digest.wants_rebuild() {
            self.rebuild_digest();
        }
        let location: Arc<str> = location.into();
        self.by_location.insert(location.clone(), node_slot);
        self.nodes[node_slot as usize] = Some(Node {
            location,
            name,
            source,
            items,
            names,
            folded,
            folded_starts,
            misses: 0,
            last_miss: None,
            last_check: None,
            generation: self.next_generation,
        });
        again
    }

    /// Removes a node and its holdings; returns how many resources it held.
    pub fn remove_node(&mut self, location: &str) -> Option<usize> {
        let node_slot = self.by_location.remove(location)?;
        let node = self.nodes[node_slot as usize].take()?;
        for &slot in &node.items {
            let entry = &mut self.entries[slot as usize];
            if entry.remove(node_slot) {
                let hash = self.hasher.hash_one(entry.id);
                if let Ok(found) = self.table.find_entry(hash, |&s| s == slot) {
                    found.remove();
                }
                self.free_entries.push(slot);
                self.digest.remove();
            }
        }
        self.free_nodes.push(node_slot);
        self.holdings -= node.items.len();
        if let Some(host) = node.source
            && let Some(usage) = self.by_host.get_mut(&host)
        {
            usage.nodes -= 1;
            usage.holdings -= node.items.len();
            if usage.nodes == 0 {
                self.by_host.remove(&host);
            }
        }
        Some(node.items.len())
    }

    /// The summary of the ids held.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Builds the summary again from the ids held now, in a new epoch. Due when the ids outgrow
    /// it (checked at each registration) or many were removed ([`Index::maintain_digest`]).
    fn rebuild_digest(&mut self) {
        let count = self.table.len();
        let entries = &self.entries;
        self.digest = Digest::rebuilt(
            self.table.iter().map(|&slot| &entries[slot as usize].id),
            count,
        );
    }

    /// Rebuilds the summary when removals have made it too loose; true when it did.
    pub fn maintain_digest(&mut self) -> bool {
        let due = self.digest.wants_rebuild();
        if due {
            self.rebuild_digest();
        }
        due
    }

    /// Holdings of every node together, and the registered nodes.
    pub fn size(&self) -> (usize, usize) {
        (self.holdings, self.by_location.len())
    }

    /// How many holdings `location` has now (0 when it is not registered).
    pub fn holdings_of(&self, location: &str) -> usize {
        self.by_location
            .get(location)
            .and_then(|&slot| self.nodes[slot as usize].as_ref())
            .map_or(0, |node| node.items.len())
    }

    /// What the nodes registered from `host` hold now.
    pub fn usage_of(&self, host: IpAddr) -> HostUsage {
        self.by_host.get(&host).copied().unwrap_or_default()
    }

    /// The address `location`'s registration came from, when it is registered.
    pub fn source_of(&self, location: &str) -> Option<IpAddr> {
        let slot = *self.by_location.get(location)?;
        self.nodes[slot as usize].as_ref()?.source
    }

    pub fn lookup(&self, id: &ResourceId) -> Option<FileInfo> {
        let view = self.view(id)?;
        Some(FileInfo {
            name: Some(view.name().to_string()),
            location: view.location().to_string(),
            locations: view.locations().map(str::to_string).collect(),
        })
    }

    /// What the index knows of `id`, borrowed: answers are serialised from it directly.
    pub fn view(&self, id: &ResourceId) -> Option<FileView<'_>> {
        let entry = &self.entries[self.slot_of(id)? as usize];
        Some(FileView { index: self, entry })
    }

    /// One holder of `id`, for a multicast answer.
    pub fn first_location(&self, id: &ResourceId) -> Option<Arc<str>> {
        let entry = &self.entries[self.slot_of(id)? as usize];
        Some(self.node(entry.first.node).location.clone())
    }

    pub fn is_registered(&self, location: &str) -> bool {
        self.by_location.contains_key(location)
    }

    fn registered(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().flatten()
    }

    /// The registered nodes, sorted by location.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let mut nodes: Vec<NodeInfo> = self
            .registered()
            .map(|node| NodeInfo {
                name: node.name.clone(),
                location: node.location.to_string(),
            })
            .collect();
        nodes.sort_by(|a, b| a.location.cmp(&b.location));
        nodes
    }

    /// Resources whose name contains `text`, compared in lower case, held by the node named
    /// (or located at) `node` when given: at most `limit`, each id once, with the name that
    /// matched and every location that holds it.
    pub fn find_names(&self, text: &str, node: Option<&str>, limit: usize) -> Vec<NameMatch> {
        let mut needle = Vec::new();
        fold_into(&mut needle, text);
        let mut found = Vec::new();
        if needle.is_empty() || limit == 0 {
            return found;
        }
        let finder = memchr::memmem::Finder::new(&needle);
        let mut seen = HashSet::new();
        for (slot, held) in self.nodes.iter().enumerate() {
            let Some(held) = held else { continue };
            if node.is_some_and(|n| n != held.name && n != &*held.location) {
                continue;
            }
            let mut last = None;
            for at in finder.find_iter(&held.folded) {
                let i = held.folded_starts.partition_point(|&s| s as usize <= at) - 1;
                if last == Some(i) {
                    continue;
                }
                last = Some(i);
                let entry = &self.entries[held.items[i] as usize];
                if !seen.insert(entry.id) {
                    continue;
                }
                let holding = entry.holders().find(|h| h.node == slot as u32);
                found.push(NameMatch {
                    id: entry.id,
                    name: holding.map_or("", |h| held.names.get(h.name)).to_string(),
                    locations: entry
                        .holders()
                        .map(|h| self.node(h.node).location.to_string())
                        .collect(),
                });
                if found.len() == limit {
                    return found;
                }
            }
        }
        found
    }

    /// The registered nodes as the status page shows them, sorted by location.
    pub fn registered_nodes(&self) -> Vec<RegisteredNode> {
        let now = Instant::now();
        let mut nodes: Vec<RegisteredNode> = self
            .registered()
            .map(|node| RegisteredNode {
                location: node.location.to_string(),
                name: node.name.clone(),
                resources: node.items.len(),
                checked_ms_ago: node
                    .last_check
                    .map(|at| now.saturating_duration_since(at).as_millis() as u64),
                misses: node.misses,
            })
            .collect();
        nodes.sort_by(|a, b| a.location.cmp(&b.location));
        nodes
    }

    pub fn resource_count(&self) -> usize {
        self.table.len()
    }

    /// The nodes to check in a sweep.
    pub fn nodes_to_check(&self) -> Vec<NodeToCheck> {
        self.registered()
            .map(|node| NodeToCheck {
                location: node.location.clone(),
                generation: node.generation,
            })
            .collect()
    }

    /// Records one health check of a registration, made by the sweep of time `at`. A success
    /// clears the misses; a failure counts when it is at least `rule.min_gap` after the last
    /// counted one (two sweeps in a row are not two chances), and at `rule.max_misses` the node
    /// is removed: the result is then `Some(resources held)`. A check of an older registration
    /// than the current one is ignored.
    pub fn record_check(
        &mut self,
        checked: &NodeToCheck,
        alive: bool,
        rule: MissRule,
        at: Instant,
    ) -> Option<usize> {
        let slot = *self.by_location.get(&checked.location)?;
        let node = self.nodes[slot as usize].as_mut()?;
        if node.generation != checked.generation {
            return None;
        }
        node.last_check = Some(at);
        if alive {
            node.misses = 0;
            node.last_miss = None;
            return None;
        }
        if node
            .last_miss
            .is_some_and(|last| at.saturating_duration_since(last) < rule.min_gap)
        {
            return None;
        }
        node.misses += 1;
        node.last_miss = Some(at);
        if node.misses < rule.max_misses {
            return None;
        }
        self.remove_node(&checked.location)
    }
}

/// When missed health checks remove a node.
#[derive(Debug, Clone, Copy)]
pub struct MissRule {
    /// `LIVENESS_MISSES`: counted misses in a row that remove it.
    pub max_misses: u32,
    /// `LIVENESS_PERIOD_MS`: the least time between two counted misses.
    pub min_gap: Duration,
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
    fn names_are_found_by_any_part_in_any_case() {
        let mut index = Index::new();
        let named = |pairs: &[(u8, &str)]| -> Vec<(ResourceId, String)> {
            pairs
                .iter()
                .map(|&(n, name)| (id(n), name.to_string()))
                .collect()
        };
        index.register(
            "a:1",
            None,
            "alpha".into(),
            named(&[
                (1, "Report 2024.PDF"),
                (2, "notes;v2.txt"),
                (3, "ÉTÉ à Lisboa.jpg"),
            ]),
        );
        index.register(
            "b:1",
            None,
            "beta".into(),
            named(&[(1, "report-copy.pdf"), (4, "other")]),
        );
        let find = |index: &Index, text: &str, node: Option<&str>, limit: usize| {
            let mut found: Vec<(u8, String, Vec<String>)> = index
                .find_names(text, node, limit)
                .into_iter()
                .map(|m| (m.id.0[0], m.name, m.locations))
                .collect();
            found.sort();
            found
        };
        // Each id once, with every location that holds it.
        let reports = find(&index, "REPORT", None, 10);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].2, ["a:1", "b:1"]);
        assert_eq!(find(&index, ";v2", None, 10)[0].1, "notes;v2.txt");
        assert_eq!(find(&index, "été", None, 10)[0].1, "ÉTÉ à Lisboa.jpg");
        assert_eq!(find(&index, "o", None, 2).len(), 2);
        assert_eq!(find(&index, "o", Some("beta"), 10).len(), 2);
        assert_eq!(find(&index, "o", Some("b:1"), 10).len(), 2);
        assert!(find(&index, "o", Some("gamma"), 10).is_empty());
        // Never across two names, never the separator.
        assert!(find(&index, "pdfnotes", None, 10).is_empty());
        assert!(find(&index, "pdf\0notes", None, 10).is_empty());
        assert!(find(&index, "", None, 10).is_empty());
        index.remove_node("a:1");
        assert_eq!(find(&index, "report", None, 10)[0].2, ["b:1"]);
        assert!(find(&index, "lisboa", None, 10).is_empty());
    }

    #[test]
    fn keeps_every_holder_and_removes_only_the_node() {
        let mut index = Index::new();
        index.register("a:1", None, "a".into(), files(&[1, 2]));
        index.register("b:1", None, "b".into(), files(&[2, 3]));
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
        assert!(!index.register("a:1", None, "a".into(), files(&[1, 2, 2])));
        assert!(index.register("a:1", None, "a".into(), files(&[3])));
        assert_eq!(index.lookup(&id(1)), None);
        assert_eq!(index.lookup(&id(2)), None);
        assert_eq!(index.lookup(&id(3)).unwrap().locations, ["a:1"]);
        assert_eq!(index.resource_count(), 1);
    }

    #[test]
    fn removal_at_the_second_miss_and_never_of_a_newer_registration() {
        let mut index = Index::new();
        index.register("a:1", None, "a".into(), files(&[1]));
        let old = index.nodes_to_check().pop().unwrap();
        let rule = MissRule {
            max_misses: 2,
            min_gap: Duration::from_secs(5),
        };
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(index.record_check(&old, false, rule, at(0)), None);
        assert_eq!(index.record_check(&old, true, rule, at(5)), None);
        assert_eq!(index.record_check(&old, false, rule, at(10)), None);
        assert!(index.is_registered("a:1"));
        // A second sweep right after the first is not a second chance missed.
        assert_eq!(index.record_check(&old, false, rule, at(11)), None);
        assert_eq!(index.record_check(&old, false, rule, at(14)), None);
        assert!(index.is_registered("a:1"));
        assert_eq!(index.record_check(&old, false, rule, at(15)), Some(1));
        assert!(!index.is_registered("a:1"));

        index.register("a:1", None, "a".into(), files(&[1]));
        let current = index.nodes_to_check().pop().unwrap();
        index.register("a:1", None, "a".into(), files(&[1]));
        let once = MissRule {
            max_misses: 1,
            ..rule
        };
        assert_eq!(
            index.record_check(&current, false, once, at(20)),
            None,
            "stale sweep result"
        );
        assert!(index.is_registered("a:1"));
    }

    #[test]
    fn holdings_are_counted_through_registrations_and_removals() {
        let mut index = Index::new();
        index.register("a:1", None, "a".into(), files(&[1, 2, 3]));
        index.register("b:1", None, "b".into(), files(&[3, 4]));
        assert_eq!(index.size(), (5, 2));
        assert_eq!(index.holdings_of("a:1"), 3);
        index.register("a:1", None, "a".into(), files(&[1]));
        assert_eq!(index.size(), (3, 2));
        index.remove_node("b:1");
        assert_eq!(index.size(), (1, 1));
        assert_eq!(index.holdings_of("b:1"), 0);
    }

    #[test]
    fn what_each_source_host_holds_is_counted() {
        let mut index = Index::new();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        index.register("10.0.0.1:1", Some(a), "x".into(), files(&[1, 2, 3]));
        index.register("10.0.0.1:2", Some(a), "y".into(), files(&[3, 4]));
        index.register("10.0.0.2:1", Some(b), "z".into(), files(&[5]));
        assert_eq!(
            index.usage_of(a),
            HostUsage {
                nodes: 2,
                holdings: 5
            }
        );
        assert_eq!(index.source_of("10.0.0.1:2"), Some(a));
        // Registered again from another address (NAT, SOURCE_CHECK off): it counts there now.
        index.register("10.0.0.1:2", Some(b), "y".into(), files(&[4]));
        assert_eq!(
            index.usage_of(a),
            HostUsage {
                nodes: 1,
                holdings: 3
            }
        );
        assert_eq!(
            index.usage_of(b),
            HostUsage {
                nodes: 2,
                holdings: 2
            }
        );
        index.remove_node("10.0.0.1:1");
        assert_eq!(index.usage_of(a), HostUsage::default());
        assert!(
            !index.by_host.contains_key(&a),
            "no entry is kept for a host with no node"
        );
        index.register("10.0.0.3:1", None, "w".into(), files(&[6]));
        assert_eq!(index.by_host.len(), 1);
        assert_eq!(index.size(), (3, 3));
    }

    #[test]
    fn names_of_any_length_come_back() {
        let mut names = Names::default();
        let long = "é".repeat(20_000);
        let texts = [
            "",
            "a.txt",
            &"x".repeat(127),
            &"y".repeat(128),
            &long,
            "sub/ü.txt",
        ];
        let at: Vec<u32> = texts.iter().map(|t| names.push(t)).collect();
        for (text, at) in texts.iter().zip(at) {
            assert_eq!(names.get(at), *text);
        }
    }

    #[test]
    fn slots_are_reused_and_stay_consistent() {
        let mut index = Index::new();
        for round in 0..5u8 {
            for node in 0..4u8 {
                let ids: Vec<u8> = (0..50u8)
                    .map(|i| i.wrapping_mul(node + 1).wrapping_add(round))
                    .collect();
                index.register(&format!("n{node}:1"), None, format!("n{node}"), files(&ids));
            }
            index.remove_node("n1:1");
            index.remove_node("n3:1");
        }
        // Left: n0 and n2 of the last round.
        let expected: std::collections::BTreeSet<u8> = (0..50u8)
            .flat_map(|i| [i.wrapping_add(4), i.wrapping_mul(3).wrapping_add(4)])
            .collect();
        assert_eq!(index.resource_count(), expected.len());
        for n in 0..=255u8 {
            let found = index.lookup(&id(n));
            assert_eq!(found.is_some(), expected.contains(&n), "id {n}");
            if let Some(info) = found {
                assert_eq!(info.name, Some(format!("file{n}")));
                assert!(info.locations.iter().all(|l| l == "n0:1" || l == "n2:1"));
            }
        }
        assert!(
            index.entries.len() <= 200,
            "slots are reused: {}",
            index.entries.len()
        );
    }
}
