//! Answers to the other supernodes' queries, from the index: one holder or "not here" for an id
//! (`20`), every holder in one datagram (`25`), and the matches of a name in as many parts as
//! they need (`23`). These build the messages; the caller decides whether and where they go.

use crate::id::ResourceId;
use crate::index::Index;
use crate::wire::{self, Body, MAX_DATAGRAM, Message, NameHit, Sender};

use super::searches::MAX_NAME_HITS;

/// The least room a `24` must leave for its matches: an id, a long location and a name.
const MIN_HIT_ROOM: usize = 200;
/// Room for a seal in a datagram's sender field: `/<stamp, 16 hex>/<MAC, 32 hex>`.
const SEAL_ROOM: usize = 50;

/// The sender field of an answer from `me` to `asker`: tagged for a tagged query, plain (the
/// seed's form) otherwise.
fn reply_sender(me: &str, asker: &Sender) -> Sender {
    match asker {
        Sender::Query { from, tag } => Sender::Reply {
            from: me.to_string(),
            to: from.clone(),
            tag: *tag,
        },
        _ => Sender::Plain(me.to_string()),
    }
}

/// The answer to "who has `id`?": one holder (`21`, with the id its seal binds), or "not
/// here" (`22`).
pub(super) fn id_query(
    index: &Index,
    me: &str,
    asker: &Sender,
    id: ResourceId,
) -> (Message, Option<ResourceId>) {
    let sender = reply_sender(me, asker);
    match index.first_location(&id) {
        Some(location) => {
            log::debug!(
                "multicast: {} asked for {id}: held at {location}",
                asker.from().escape_debug()
            );
            (
                Message::new(sender, Body::Found(location.to_string())),
                Some(id),
            )
        }
        None => (Message::new(sender, Body::NotFound(id.to_string())), None),
    }
}

/// The answer to a tagged "every holder of `id`?": the locations here, as many as one datagram
/// carries. `None` for an untagged query (nobody could match the answer) or an asker's name
/// so long that nothing fits.
pub(super) fn all_query(
    index: &Index,
    me: &str,
    asker: &Sender,
    id: ResourceId,
) -> Option<Message> {
    let Sender::Query { .. } = asker else {
        return None;
    };
    let sender = reply_sender(me, asker);
    let mut room =
        MAX_DATAGRAM.checked_sub(sender.to_string().len() + SEAL_ROOM + ";26;".len() + 64)?;
    let locations = index
        .lookup(&id)
        .map(|file| file.locations)
        .unwrap_or_default()
        .into_iter()
        .take_while(|location| {
            let fits = location.len() < room;
            room = room.saturating_sub(location.len() + 1);
            fits
        })
        .collect();
    Some(Message::new(sender, Body::AllFound { id, locations }))
}

/// The answer to a tagged name query: every match here (at most `limit`, and at most
/// [`MAX_NAME_HITS`] holdings), in as many `24` parts as they need. Empty for an untagged
/// query (nobody could put the parts together) or an asker's name that leaves no room.
pub(super) fn name_query(
    index: &Index,
    me: &str,
    asker: &Sender,
    (text, node, limit): (&str, Option<&str>, u32),
) -> Vec<Message> {
    let Sender::Query { .. } = asker else {
        return Vec::new();
    };
    let sender = reply_sender(me, asker);
    // Room for the hits: what the sender field, the seal and the part numbers leave.
    let fixed = sender.to_string().len() + SEAL_ROOM + ";24;65535/65535".len();
    let Some(room) = MAX_DATAGRAM
        .checked_sub(fixed)
        .filter(|room| *room >= MIN_HIT_ROOM)
    else {
        return Vec::new();
    };
    let hits: Vec<NameHit> = index
        .find_names(text, node, limit.min(MAX_NAME_HITS) as usize)
        .into_iter()
        .flat_map(|m| {
            m.locations.into_iter().map(move |location| NameHit {
                id: m.id,
                location,
                name: m.name.clone(),
            })
        })
        .take(MAX_NAME_HITS as usize)
        .collect();
    let groups = pack_hits(hits, room);
    let parts = groups.len() as u16;
    groups
        .into_iter()
        .enumerate()
        .map(|(i, hits)| {
            let body = Body::NameAnswer {
                part: i as u16 + 1,
                parts,
                hits,
            };
            Message::new(sender.clone(), body)
        })
        .collect()
}

/// Splits `hits` into groups whose `24` entries fit in `room` bytes each; a name too long to
/// fit in one datagram is cut (at a character, ending with `…`). Always one group at least.
fn pack_hits(hits: Vec<NameHit>, room: usize) -> Vec<Vec<NameHit>> {
    let mut groups = vec![Vec::new()];
    let mut used = 0;
    for mut hit in hits {
        let mut len = wire::hit_text(&hit).len() + 1;
        while len > room && !hit.name.is_empty() {
            let mut cut = hit.name.trim_end_matches('…').to_string();
            hit.name = match cut.pop() {
                Some(_) => format!("{cut}…"),
                None => String::new(),
            };
            len = wire::hit_text(&hit).len() + 1;
        }
        if used + len > room {
            groups.push(Vec::new());
            used = 0;
        }
        used += len;
        groups.last_mut().expect("one group at least").push(hit);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(name: &str) -> NameHit {
        NameHit {
            id: ResourceId([1; 32]),
            location: "127.0.0.1:8000".into(),
            name: name.into(),
        }
    }

    #[test]
    fn matches_are_packed_into_parts_that_fit() {
        let room = MIN_HIT_ROOM;
        let groups = pack_hits(
            vec![hit("a"), hit(&"long ".repeat(100)), hit("…"), hit("b")],
            room,
        );
        for group in &groups {
            let used: usize = group.iter().map(|h| wire::hit_text(h).len() + 1).sum();
            assert!(used <= room, "{used} > {room}");
        }
        let names: Vec<&str> = groups.iter().flatten().map(|h| h.name.as_str()).collect();
        assert_eq!(names.len(), 4);
        assert!(names[1].ends_with('…') && names[1].starts_with("long long"));
        // A name that is nothing but the mark fits as it is; nothing loops.
        assert_eq!(names[2], "…");
        assert_eq!(pack_hits(Vec::new(), room), vec![Vec::new()]);
        // Room for the id and location only: names go, the matches stay.
        let tight = pack_hits(vec![hit("x".repeat(50).as_str())], 82);
        assert_eq!(tight[0][0].name, "");
    }

    fn sha(content: &[u8]) -> ResourceId {
        use sha2::Digest;
        ResourceId(sha2::Sha256::digest(content).into())
    }

    fn index_with(files: &[(&str, &[u8], &str)]) -> Index {
        let mut index = Index::new();
        for (location, content, name) in files {
            let id = sha(content);
            index.register(location, None, location.to_string(), [(id, *name)]);
        }
        index
    }

    fn tagged(from: &str) -> Sender {
        Sender::Query {
            from: from.into(),
            tag: 9,
        }
    }

    #[test]
    fn answers_echo_the_askers_tag_and_fit_in_a_datagram() {
        let many: Vec<(String, Vec<u8>)> = (0..400)
            .map(|n| {
                (
                    format!("10.0.{}.{}:8000", n / 200, n % 200),
                    b"same".to_vec(),
                )
            })
            .collect();
        let files: Vec<(&str, &[u8], &str)> = many
            .iter()
            .map(|(l, c)| (l.as_str(), c.as_slice(), "report.txt"))
            .collect();
        let index = index_with(&files);
        let id = sha(b"same");
        let (found, binds) = id_query(&index, "me", &tagged("asker"), id);
        assert_eq!(binds, Some(id));
        assert!(found.to_string().starts_with("me/asker/9;21;10.0."));
        let (missing, binds) = id_query(
            &index,
            "me",
            &Sender::Plain("seed".into()),
            ResourceId([0; 32]),
        );
        assert_eq!(
            (missing.to_string().as_str(), binds),
            (&*format!("me;22;{}", ResourceId([0; 32])), None)
        );
        let every = all_query(&index, "me", &tagged("asker"), id).unwrap();
        assert!(every.encode().len() + SEAL_ROOM <= MAX_DATAGRAM);
        assert!(all_query(&index, "me", &Sender::Plain("seed".into()), id).is_none());
        let parts = name_query(&index, "me", &tagged("asker"), ("REPORT", None, 1000));
        assert!(parts.len() > 1);
        assert!(
            parts
                .iter()
                .all(|m| m.encode().len() + SEAL_ROOM <= MAX_DATAGRAM)
        );
        assert!(name_query(&index, "me", &Sender::Plain("seed".into()), ("r", None, 9)).is_empty());
    }
}
