//! A node's resources: the files under its folder, each named by the SHA-256 of its content.
//!
//! Files are hashed in parallel, one worker per core, each reading in fixed-size chunks (a
//! file is never read whole into memory); the same read gives the file's piece hashes. An unreadable file is logged and skipped. A catalog
//! is immutable once built, and its JSON listing is serialised once and served as is; a rescan
//! builds a new one, hashing again only the files whose size or modification time changed.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use crate::api::Held;
use crate::http::envelope;
use crate::id::ResourceId;
use crate::pieces::{IdHasher, PieceList};

/// One file of the node.
#[derive(Debug, Clone)]
pub struct Resource {
    pub id: ResourceId,
    /// The path relative to the folder, with `/` between parts.
    pub name: String,
    pub path: PathBuf,
    /// What the file looked like when it was hashed.
    stamp: Stamp,
    /// The hashes of its pieces, from the read that gave its id.
    pieces: Arc<[ResourceId]>,
}

impl Resource {
    /// Its size in bytes when it was hashed.
    pub fn size(&self) -> u64 {
        self.stamp.len
    }

    /// The `{"id", "name"}` the API shows for it.
    pub fn info(&self) -> Held<'_> {
        Held {
            id: self.id,
            name: Cow::Borrowed(&self.name),
        }
    }

    /// Whether `metadata` (of the file as opened now) is still the file that was hashed.
    pub fn unchanged(&self, metadata: &Metadata) -> bool {
        Stamp::of(metadata) == self.stamp
    }

    /// [`Resource::unchanged`] to carry along (a download checks again before its end).
    pub fn unchanged_check(&self) -> Box<dyn Fn(&Metadata) -> bool + Send> {
        let stamp = self.stamp;
        Box::new(move |metadata| Stamp::of(metadata) == stamp)
    }
}

/// What identifies a file's content without reading it: which file it is (device and inode),
/// its size, and its modification and change times. The change time cannot be set back by a
/// user, so a file rewritten in place with its modification time restored still shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    changed: (i64, i64),
    file: (u64, u64),
}

impl Stamp {
    fn of(metadata: &Metadata) -> Stamp {
        Stamp {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
            file: (metadata.dev(), metadata.ino()),
        }
    }
}

/// Every resource of a node, by id. Files with the same content share one id; the first by
/// name is the one served.
#[derive(Debug)]
pub struct Catalog {
    resources: Vec<Resource>,
    by_id: HashMap<ResourceId, usize>,
    listing: Arc<[u8]>,
    /// The size of the pieces hashed.
    piece_size: u64,
    /// Every file hashed (duplicates included), for the next rescan.
    hashed: HashMap<PathBuf, Hashed>,
    /// Files that could not be read, so a rescan warns about each only once.
    unreadable: HashSet<PathBuf>,
}

impl Catalog {
    fn new(mut found: Vec<Resource>, unreadable: HashSet<PathBuf>, piece_size: u64) -> Catalog {
        found.sort_by(|a, b| a.name.cmp(&b.name));
        let hashed = found
            .iter()
            .map(|r| {
                let hashed = Hashed {
                    stamp: r.stamp,
                    id: r.id,
                    pieces: r.pieces.clone(),
                };
                (r.path.clone(), hashed)
            })
            .collect();
        let mut by_id = HashMap::with_capacity(found.len());
        let mut resources = Vec::with_capacity(found.len());
        for resource in found {
            by_id.entry(resource.id).or_insert_with(|| {
                resources.push(resource);
                resources.len() - 1
            });
        }
        let infos: Vec<Held> = resources.iter().map(Resource::info).collect();
        let listing = envelope("resource", &infos).into();
        Catalog {
            resources,
            by_id,
            listing,
            piece_size,
            hashed,
            unreadable,
        }
    }

    /// The size of its pieces (`PIECE_SIZE`).
    pub fn piece_size(&self) -> u64 {
        self.piece_size
    }

    /// The piece list of `resource`, one of this catalog's.
    pub fn piece_list(&self, resource: &Resource) -> PieceList {
        PieceList {
            id: resource.id,
            size: resource.size(),
            piece_size: self.piece_size,
            pieces: resource.pieces.to_vec(),
        }
    }

    /// Whether both catalogs share the same resources under the same names.
    pub fn same_resources(&self, other: &Catalog) -> bool {
        self.resources.len() == other.resources.len()
            && self
                .resources
                .iter()
                .zip(&other.resources)
                .all(|(a, b)| a.id == b.id && a.name == b.name)
    }

    pub fn get(&self, id: &ResourceId) -> Option<&Resource> {
        self.by_id.get(id).map(|&i| &self.resources[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.resources.iter()
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// The whole `GET /api/node/resources` answer, serialised once.
    pub fn listing(&self) -> Arc<[u8]> {
        self.listing.clone()
    }
}

/// Scans `folder` and hashes every file in it, and its pieces of `piece_size` bytes (a multiple
/// of 64), with up to `threads` workers; files unchanged since `previous` keep their hashes
/// without being read. Fails only when the folder itself cannot be read.
pub fn scan(
    folder: &Path,
    threads: usize,
    piece_size: u64,
    previous: Option<&Catalog>,
) -> io::Result<Catalog> {
    let previous = previous.filter(|p| p.piece_size == piece_size);
    let mut files = Vec::new();
    let mut outside = Vec::new();
    let root = std::fs::canonicalize(folder)?;
    walk(&root, folder, "", &mut files, &mut outside)?;
    let next = AtomicUsize::new(0);
    let workers = threads.clamp(1, files.len().max(1));
    let results: Vec<Result<Resource, PathBuf>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut buffer = Vec::new();
                    let mut done = Vec::new();
                    while let Some((name, path)) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let known = previous.and_then(|p| p.hashed.get(path));
                        let result =
                            identify(path, known, piece_size, &mut buffer).map(|hashed| Resource {
                                id: hashed.id,
                                name: name.clone(),
                                path: path.clone(),
                                stamp: hashed.stamp,
                                pieces: hashed.pieces,
                            });
                        done.push(result.map_err(|e| {
                            if !previous.is_some_and(|p| p.unreadable.contains(path)) {
                                log::warn!("skipping {}: {e}", path.display());
                            }
                            path.clone()
                        }));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut found = Vec::with_capacity(results.len());
    let mut unreadable = HashSet::new();
    for path in outside {
        if !previous.is_some_and(|p| p.unreadable.contains(&path)) {
            log::warn!(
                "skipping {}: a link to a file outside the folder",
                path.display()
            );
        }
        unreadable.insert(path);
    }
    for result in results {
        match result {
            Ok(resource) => found.push(resource),
            Err(path) => {
                unreadable.insert(path);
            }
        }
    }
    Ok(Catalog::new(found, unreadable, piece_size))
}

/// What a read of a file gave.
#[derive(Debug)]
struct Hashed {
    stamp: Stamp,
    id: ResourceId,
    pieces: Arc<[ResourceId]>,
}

/// A file's stamp, id and pieces; taken from `known` when the stamp has not changed.
fn identify(
    path: &Path,
    known: Option<&Hashed>,
    piece_size: u64,
    buffer: &mut Vec<u8>,
) -> io::Result<Hashed> {
    let stamp = Stamp::of(&std::fs::metadata(path)?);
    if let Some(known) = known
        && known.stamp == stamp
    {
        return Ok(Hashed {
            stamp,
            id: known.id,
            pieces: known.pieces.clone(),
        });
    }
    if buffer.is_empty() {
        buffer.resize(256 << 10, 0);
    }
    let (id, pieces) = hash_file(path, piece_size, buffer)?;
    Ok(Hashed {
        stamp,
        id,
        pieces: pieces.into(),
    })
}

/// The SHA-256 of a file's content and of each of its pieces of `piece_size` bytes, read once
/// in chunks of `buffer`'s size.
pub fn hash_file(
    path: &Path,
    piece_size: u64,
    buffer: &mut [u8],
) -> io::Result<(ResourceId, Vec<ResourceId>)> {
    let mut file = File::open(path)?;
    let mut hasher = IdHasher::new(piece_size);
    loop {
        match file.read(buffer) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finish())
}

/// Collects the regular files below `dir` as (name relative to the folder, path). Hidden
/// entries (names starting with `.`) are skipped; links to files are followed when the file is
/// inside the folder (`root`, canonical) and put in `outside` when not; links to folders are
/// not followed (they could loop).
fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, PathBuf)>,
    outside: &mut Vec<PathBuf>,
) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            log::warn!("skipping {}: the name is not UTF-8", entry.path().display());
            continue;
        };
        if file_name.starts_with('.') {
            continue;
        }
        let name = format!("{prefix}{file_name}");
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => {
                if let Err(e) = walk(root, &path, &format!("{name}/"), out, outside) {
                    log::warn!("skipping folder {}: {e}", path.display());
                }
            }
            Ok(kind) if kind.is_file() => out.push((name, path)),
            Ok(kind) if kind.is_symlink() && path.is_file() => match std::fs::canonicalize(&path) {
                Ok(target) if target.starts_with(root) => out.push((name, path)),
                _ => outside.push(path),
            },
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let dir = std::env::temp_dir().join(format!("superpeer-res-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("empty"), b"").unwrap();
        std::fs::write(dir.join("sub/abc"), b"abc").unwrap();
        std::fs::write(dir.join(".hidden"), b"x").unwrap();
        let catalog = scan(&dir, 2, 1 << 20, None).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        let names: Vec<_> = catalog
            .iter()
            .map(|r| (r.name.as_str(), r.id.to_string()))
            .collect();
        assert_eq!(
            names,
            [
                (
                    "empty",
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into()
                ),
                (
                    "sub/abc",
                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into()
                ),
            ]
        );
    }

    /// A rescan keeps the pieces of an unchanged file without reading it, and hashes a
    /// rewritten one again, id and pieces from the same read.
    #[test]
    fn a_rescan_keeps_or_rehashes_pieces_with_the_id() {
        let dir = std::env::temp_dir().join(format!("superpeer-pieces-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let piece = 16 << 10;
        std::fs::write(dir.join("same"), vec![1u8; 40_000]).unwrap();
        std::fs::write(dir.join("changed"), vec![2u8; 40_000]).unwrap();
        let first = scan(&dir, 1, piece, None).unwrap();
        std::fs::write(dir.join("changed"), vec![3u8; 20_000]).unwrap();
        let second = scan(&dir, 1, piece, Some(&first)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        let by_name = |catalog: &Catalog, name: &str| {
            let resource = catalog.iter().find(|r| r.name == name).unwrap();
            (resource.pieces.clone(), catalog.piece_list(resource))
        };
        let (kept, list) = by_name(&second, "same");
        assert!(
            Arc::ptr_eq(&kept, &by_name(&first, "same").0),
            "not read again"
        );
        assert_eq!(list.check(list.id), Ok(()));
        let (_, list) = by_name(&second, "changed");
        assert_eq!(list.id, crate::pieces::sha256(&[3u8; 20_000]));
        assert_eq!(
            list.pieces,
            [
                crate::pieces::sha256(&[3u8; 16384]),
                crate::pieces::sha256(&[3u8; 20_000 - 16384])
            ]
        );
    }
}
