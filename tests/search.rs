//! SPEC section 4: search across supernodes over multicast, against real processes, plus a
//! test socket in the group that speaks the seed's protocol as its supernodes do.

use std::time::{Duration, Instant};

use crate::support::*;

fn fields(datagram: &str) -> Vec<&str> {
    datagram.split(';').collect()
}

/// Two supernodes in one group, a node under the second holding `files`.
struct TwoSupernodes {
    s1: Proc,
    s2: Proc,
    _node: Proc,
    _folder: Folder,
    group: String,
}

fn two_supernodes(files: &[(&str, &[u8])]) -> TwoSupernodes {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2).start();
    let s2 = Launch::supernode("s2", &group, 2).start();
    let folder = Folder::with(files);
    let node = Launch::node("n3", &folder.path, &[&s2.url()]).start();
    wait_registered(&s2, &[&node]);
    TwoSupernodes {
        s1,
        s2,
        _node: node,
        _folder: folder,
        group,
    }
}

#[test]
fn a_node_finds_a_resource_registered_at_another_supernode() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2).start();
    let s2 = Launch::supernode("s2", &group, 2).start();
    let f2 = Folder::with(&[("two.txt", b"node2's file\n")]);
    let f3 = Folder::with(&[("three.txt", b"node3's file\n")]);
    let n2 = Launch::node("n2", &f2.path, &[&s1.url()]).start();
    let n3 = Launch::node("n3", &f3.path, &[&s2.url()]).start();
    wait_registered(&s1, &[&n2]);
    wait_registered(&s2, &[&n3]);
    let id = sha256(b"node3's file\n");

    // The seed's demonstration: node2 asks for node3's resource.
    let answer = n2.get(&format!("/api/node/resources/{id}"));
    assert_eq!(answer.status, 302);
    assert_eq!(answer.json()["data"]["info"]["location"], n3.location());
    let content = n2.get(&format!("/api/node/resources/{id}/content"));
    assert_eq!(
        get(content.location.as_deref().unwrap()).body,
        b"node3's file\n"
    );

    // The supernode's answer for a resource found by the group: location, no name.
    let answer = s1.get(&format!("/api/supernode/search/{id}"));
    assert_eq!(answer.status, 200);
    let file = &answer.json()["data"]["file"];
    assert_eq!(file["location"], n3.location());
    assert_eq!(file["locations"], serde_json::json!([n3.location()]));
    assert!(file.get("name").is_none(), "{file}");
    s1.wait_log(
        &format!("search {id}: found at {}", n3.location()),
        Duration::from_secs(5),
    );

    // Many ids at once: found ones in order, absent ones left out.
    let answer = s1.get(&format!(
        "/api/supernode/search?hash_ids={},{id}",
        absent_id(1)
    ));
    let data = answer.json()["data"].clone();
    assert_eq!(data.as_array().unwrap().len(), 1, "{data}");
    assert_eq!(data[0]["id"], id);
}

#[test]
fn fifty_concurrent_searches_each_get_their_own_answer() {
    let files: Vec<(String, Vec<u8>)> = (0..25)
        .map(|i| {
            (
                format!("file{i:02}"),
                format!("content number {i}\n").into_bytes(),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_slice()))
        .collect();
    let cluster = two_supernodes(&refs);
    let node_location = cluster._node.location();

    let mut asks: Vec<(String, bool)> = files.iter().map(|(_, c)| (sha256(c), true)).collect();
    asks.extend((0..25).map(|i| (absent_id(100 + i), false)));
    let results: Vec<(String, bool, u16, serde_json::Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = asks
            .iter()
            .map(|(id, present)| {
                let s1 = &cluster.s1;
                scope.spawn(move || {
                    let answer = s1.get(&format!("/api/supernode/search/{id}"));
                    let body = if answer.status == 200 {
                        answer.json()
                    } else {
                        serde_json::Value::Null
                    };
                    (id.clone(), *present, answer.status, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (id, present, status, body) in results {
        if present {
            assert_eq!(status, 200, "{id} exists");
            assert_eq!(body["data"]["id"], id);
            assert_eq!(body["data"]["file"]["location"], node_location);
        } else {
            assert_eq!(status, 404, "{id} exists nowhere: {body}");
        }
    }

    // The same fifty in one request: the remote look-ups run together, all correct.
    let all: Vec<&str> = asks.iter().map(|(id, _)| id.as_str()).collect();
    let answer = cluster
        .s1
        .get(&format!("/api/supernode/search?hash_ids={}", all.join(",")));
    let found: Vec<String> = answer.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = asks
        .iter()
        .filter(|(_, p)| *p)
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn a_negative_comes_as_soon_as_every_peer_said_no() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2)
        .env("SEARCH_TIMEOUT_MS", "10000")
        .start();
    let _s2 = Launch::supernode("s2", &group, 2).start();
    let started = Instant::now();
    s1.get(&format!("/api/supernode/search/{}", absent_id(1)))
        .assert_error(404);
    // Well before the 10 s time-out: the one peer's 22 ends the search.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    s1.wait_log("no supernode has it", Duration::from_secs(5));
}

#[test]
fn a_search_with_a_dead_peer_ends_within_the_time_out() {
    let group = group();
    // GROUP_SIZE=3, but the third supernode is down.
    let s1 = Launch::supernode("s1", &group, 3)
        .env("SEARCH_TIMEOUT_MS", "1000")
        .start();
    let s2 = Launch::supernode("s2", &group, 3).start();
    let folder = Folder::with(&[("here", b"at s2\n")]);
    let node = Launch::node("n", &folder.path, &[&s2.url()]).start();
    wait_registered(&s2, &[&node]);

    let started = Instant::now();
    s1.get(&format!("/api/supernode/search/{}", absent_id(1)))
        .assert_error(404);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "a negative before the time-out: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "the search hung: {took:?}");
    s1.wait_log("timed out", Duration::from_secs(5));

    // A positive answer still ends the search at once.
    let answer = s1.get(&format!("/api/supernode/search/{}", sha256(b"at s2\n")));
    assert_eq!(answer.status, 200);
}

#[test]
fn seed_supernodes_are_answered_and_understood() {
    let cluster = two_supernodes(&[("file", b"known to s2\n")]);
    let peer = Peer::join(&cluster.group);
    let known = sha256(b"known to s2\n");
    let unknown = absent_id(7);

    // A seed supernode's query gets a seed-form answer: three fields, plain sender.
    peer.send(format!("seed-uuid;20;{known}").as_bytes());
    let answer = peer
        .receive(Duration::from_secs(5), |d| fields(d).get(1) == Some(&"21"))
        .expect("an answer to the seed's query");
    assert_eq!(fields(&answer).len(), 3, "{answer}");
    assert!(!fields(&answer)[0].contains('/'), "{answer}");
    assert_eq!(fields(&answer)[2], cluster._node.location());

    peer.send(format!("seed-uuid;20;{unknown}").as_bytes());
    let negatives: Vec<String> = (0..2)
        .filter_map(|_| {
            peer.receive(Duration::from_secs(5), |d| {
                d.ends_with(&format!(";22;{unknown}"))
            })
        })
        .collect();
    assert_eq!(negatives.len(), 2, "both supernodes say 22: {negatives:?}");

    // Our queries keep three fields too, and a seed's untagged answers are understood. In a
    // group of its own, so that the fake seed is the only peer that answers; the holder it
    // names is a real node (the supernode asks it what it holds).
    let alone = group();
    let peer = Peer::join(&alone);
    let s3 = Launch::supernode("s3", &alone, 2)
        .env("SEARCH_TIMEOUT_MS", "5000")
        .start();
    let (holder, _folder) = lone_node(b"held by the seed's node\n");
    let asked = sha256(b"held by the seed's node\n");
    let search = std::thread::spawn({
        let url = format!("{}/api/supernode/search/{asked}", s3.url());
        move || get(&url)
    });
    let query = peer
        .receive(Duration::from_secs(5), |d| {
            d.ends_with(&format!(";20;{asked}"))
        })
        .expect("the query");
    assert_eq!(fields(&query).len(), 3);
    peer.send(format!("seed-uuid;21;{}", holder.location()).as_bytes());
    let answer = search.join().unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["data"]["file"]["location"], holder.location());

    // A seed's 22 for the id counts as that peer's no: the search ends long before its time-out.
    let asked = absent_id(9);
    let started = Instant::now();
    let search = std::thread::spawn({
        let url = format!("{}/api/supernode/search/{asked}", s3.url());
        move || get(&url)
    });
    peer.receive(Duration::from_secs(5), |d| {
        d.ends_with(&format!(";20;{asked}"))
    })
    .expect("the query");
    peer.send(format!("seed-uuid;22;{asked}").as_bytes());
    search.join().unwrap().assert_error(404);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

/// A node that holds `content` and belongs to no live supernode: the holder a seed's untagged
/// answer names.
fn lone_node(content: &[u8]) -> (Proc, Folder) {
    let folder = Folder::with(&[("held", content)]);
    let nobody = format!("http://127.0.0.1:{}/api/supernode", free_port());
    let node = Launch::node("holder", &folder.path, &[&nobody]).start();
    (node, folder)
}

/// A seed supernode in the group, on a thread: every query gets an untagged answer, a `21`
/// naming `holder` for `held` and a `22` for any other id, as the seed's supernodes answer.
struct SeedSupernode {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl SeedSupernode {
    fn join(group: &str, held: String, holder: String) -> SeedSupernode {
        let peer = Peer::join(group);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut answered = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Some((datagram, _)) = peer.next() else {
                        continue;
                    };
                    let text = String::from_utf8_lossy(&datagram).into_owned();
                    let fields = fields(&text);
                    if fields.len() != 3 || fields[1] != "20" {
                        continue;
                    }
                    let answer = if fields[2] == held {
                        format!("seed-uuid;21;{holder}")
                    } else {
                        format!("seed-uuid;22;{}", fields[2])
                    };
                    peer.send(answer.as_bytes());
                    answered += 1;
                }
                answered
            }
        });
        SeedSupernode {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops answering; returns how many queries it answered.
    fn leave(mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for SeedSupernode {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn an_untagged_answer_goes_to_the_searches_whose_id_its_holder_holds() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2)
        .env("SEARCH_TIMEOUT_MS", "3000")
        .start();
    let peer = Peer::join(&group);
    let (holder, _folder) = lone_node(b"held, untagged\n");
    let held = sha256(b"held, untagged\n");
    let absent = absent_id(2);
    let searches: Vec<_> = [&held, &absent]
        .into_iter()
        .map(|id| {
            let url = format!("{}/api/supernode/search/{id}", s1.url());
            std::thread::spawn(move || get(&url))
        })
        .collect();
    // Once both queries are out, seed-style answers arrive: whose are they? The datagrams
    // cannot say; the holders can. One names an address off this machine, which a supernode
    // on loopback does not ask (nor use); one names the real holder.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let query = peer
            .receive(Duration::from_secs(5), |d| d.contains(";20;"))
            .expect("both queries");
        let id = fields(&query)[2].to_string();
        if !seen.contains(&id) {
            seen.push(id);
        }
    }
    peer.send(b"seed-uuid;21;10.0.0.1:8000");
    peer.send(format!("seed-uuid;21;{}", holder.location()).as_bytes());
    let started = Instant::now();
    let mut searches = searches.into_iter();
    let found = searches.next().unwrap().join().unwrap();
    assert_eq!(found.status, 200);
    assert_eq!(found.json()["data"]["file"]["location"], holder.location());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The absent id's search is not given the holder: it ends at its time-out.
    searches.next().unwrap().join().unwrap().assert_error(404);
}

#[test]
fn a_seed_supernode_under_concurrency_gets_every_search_right() {
    // SPEC section 4 with a seed supernode in the group: 20 searches for the file its node
    // holds and 20 for ids nobody has, all at once. Every answer of the seed is untagged.
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2)
        .env("SEARCH_TIMEOUT_MS", "5000")
        .start();
    let (holder, _folder) = lone_node(b"the seed's node's file\n");
    let held = sha256(b"the seed's node's file\n");
    let seed = SeedSupernode::join(&group, held.clone(), holder.location());
    let started = Instant::now();
    let searches: Vec<_> = (0..40u32)
        .map(|i| {
            let id = if i % 2 == 0 {
                held.clone()
            } else {
                absent_id(100 + i)
            };
            let url = format!("{}/api/supernode/search/{id}", s1.url());
            std::thread::spawn(move || (i, get(&url)))
        })
        .collect();
    let (mut found, mut not_found) = (0, 0);
    for search in searches {
        let (i, answer) = search.join().unwrap();
        if i % 2 == 0 {
            assert_eq!(answer.status, 200, "search {i}: {:?}", answer.json());
            assert_eq!(answer.json()["data"]["file"]["location"], holder.location());
            found += 1;
        } else {
            answer.assert_error(404);
            not_found += 1;
        }
    }
    assert_eq!((found, not_found), (20, 20));
    // The seed's 22s end the negative searches: nothing waited for the time-out.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    // Every absent id was asked, and the file at least once: searches for it within
    // SEARCH_RETRY_MS of each other join one query.
    assert!(seed.leave() >= 21, "the seed answered every query");
}

#[test]
fn a_burst_of_searches_for_one_id_costs_the_group_one_query() {
    // Searches for an id asked within SEARCH_RETRY_MS join that search and end with it. The
    // other member stays silent, so all 16 wait for the one time-out.
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2)
        .env("SEARCH_TIMEOUT_MS", "3000")
        .env("SEARCH_RETRY_MS", "3000")
        .start();
    let silent = Peer::join(&group);
    let id = absent_id(16);
    let query = format!(";20;{id}");
    let search = || {
        let url = format!("{}/api/supernode/search/{id}", s1.url());
        std::thread::spawn(move || get(&url).status)
    };
    let burst: Vec<_> = (0..16).map(|_| search()).collect();
    let mut queries = 0;
    while !burst.iter().all(|search| search.is_finished()) {
        queries += silent
            .next()
            .filter(|(d, _)| d.ends_with(query.as_bytes()))
            .is_some() as usize;
    }
    while let Some((datagram, _)) = silent.next() {
        queries += datagram.ends_with(query.as_bytes()) as usize;
    }
    let statuses: Vec<u16> = burst.into_iter().map(|s| s.join().unwrap()).collect();
    assert_eq!(statuses, vec![404; 16], "every search ends at the time-out");
    assert_eq!(queries, 1, "one query for the burst");
    // The search ended: the next one asks again.
    let again = search();
    assert!(
        silent
            .receive(Duration::from_secs(2), |d| d.ends_with(&query))
            .is_some()
    );
    assert_eq!(again.join().unwrap(), 404);
}

#[test]
fn junk_datagrams_leave_every_supernode_answering() {
    let cluster = two_supernodes(&[("file", b"still here\n")]);
    let peer = Peer::join(&cluster.group);
    let id = sha256(b"still here\n");
    let junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff, 0x00, 0xfe, 0x3b, 0x3b],
        vec![b'x'; 5 * 1024],
        b"only;two".to_vec(),
        b"a;b;c;d".to_vec(),
        b"a;99;x".to_vec(),
        b";20;".to_vec(),
        format!("x;20;{}", "g".repeat(64)).into_bytes(),
        b"x;21;;;".to_vec(),
        b"x;21;10.0.0.1:0".to_vec(),
        format!("x/zz/1;22;{id}").into_bytes(),
        b"x/y/ffffffffffffffffffff;21;10.0.0.1:1".to_vec(),
        "\u{1F600};20;\u{1F600}".as_bytes().to_vec(),
    ];
    for datagram in &junk {
        peer.send(datagram);
    }
    for supernode in [&cluster.s1, &cluster.s2] {
        let answer = supernode.get(&format!("/api/supernode/search/{id}"));
        assert_eq!(answer.status, 200, "{} after junk", supernode.name);
        supernode
            .get(&format!("/api/supernode/search/{}", absent_id(3)))
            .assert_error(404);
    }
    // Junk is only logged at debug level, never answered.
    cluster
        .s1
        .wait_log("ignoring a datagram", Duration::from_secs(5));
}

#[test]
fn unknown_group_size_learns_the_peers_that_answer() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 0)
        .env("SEARCH_TIMEOUT_MS", "10000")
        .start();
    let s2 = Launch::supernode("s2", &group, 0).start();
    let folder = Folder::with(&[("f", b"found with group size 0\n")]);
    let node = Launch::node("n", &folder.path, &[&s2.url()]).start();
    wait_registered(&s2, &[&node]);
    // A positive needs no count.
    let answer = s1.get(&format!(
        "/api/supernode/search/{}",
        sha256(b"found with group size 0\n")
    ));
    assert_eq!(answer.status, 200);
    // s1 heard s2 (its answer above, and the discovery ping): a negative now needs only s2's 22.
    let started = Instant::now();
    s1.get(&format!("/api/supernode/search/{}", absent_id(5)))
        .assert_error(404);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn made_up_peer_names_are_not_waited_for() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 0)
        .env("SEARCH_TIMEOUT_MS", "2000")
        .start();
    let _s2 = Launch::supernode("s2", &group, 0).start();
    wait_until("s2 proven to s1", Duration::from_secs(10), || {
        peers_of(&s1) == 1
    });
    // 3,000 "supernodes" that each answer the discovery ping once, from one host. (Paced, so
    // that the socket's receive buffer does not drop them.)
    let peer = Peer::join(&group);
    let zero = "0".repeat(64);
    for n in 0..3000 {
        peer.send(format!("made-up-{n};22;{zero}").as_bytes());
        std::thread::sleep(Duration::from_micros(200));
    }
    wait_until("s1 read them", Duration::from_secs(10), || {
        metric(
            &s1,
            "superpeer_datagrams_received_total{kind=\"not_found\"}",
        ) >= 3000.0
    });
    // None proved an address: a negative search ends at s2's answer, not at the time-out.
    let started = Instant::now();
    s1.get(&format!("/api/supernode/search/{}", absent_id(9)))
        .assert_error(404);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a negative search took {:?}: made-up peers were waited for",
        started.elapsed()
    );
    assert_eq!(peers_of(&s1), 1);
}

#[test]
fn one_client_cannot_make_the_group_search_for_it_without_end() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2).start();
    let _s2 = Launch::supernode("s2", &group, 2).start();
    wait_until("s2 proven to s1", Duration::from_secs(10), || {
        peers_of(&s1) == 1
    });
    let addr = s1.addr;
    // Lists of 256 ids nobody has, one after another from one client: 512 listed ids at
    // once, 256 a second, then a 429 that says when to retry.
    let list = (0..256).map(absent_id).collect::<Vec<_>>().join(",");
    let path = format!("/api/supernode/search?hash_ids={list}");
    let lists: Vec<(u16, String, String)> =
        (0..5).map(|_| get_from(addr, "127.0.0.2", &path)).collect();
    assert_eq!(lists[0].0, 200);
    let refused = lists
        .iter()
        .find(|(status, _, _)| *status == 429)
        .expect("a client asking 1,280 ids in a moment is limited");
    assert!(refused.1.contains("Retry-After: 1"), "{}", refused.1);
    let body: serde_json::Value = serde_json::from_str(&refused.2).unwrap();
    assert_eq!(body["code"], 429);
    assert!(body["description"].as_str().unwrap().contains("127.0.0.2"));
    // Another client is not held to that one's share.
    assert_eq!(get_from(addr, "127.0.0.1", &path).0, 200);
    // Name and every-holder searches ask every supernode: 50 at once, 20 a second.
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..10)
            .map(|n| {
                scope.spawn(move || {
                    (0..10)
                        .map(|i| {
                            let path = match i % 2 {
                                0 => format!("/api/supernode/search?file_name=x{n}"),
                                _ => format!("/api/supernode/search/{}?all=true", absent_id(i)),
                            };
                            get_from(addr, "127.0.0.2", &path).0
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        limited > 0 && statuses.iter().all(|s| matches!(s, 200 | 404 | 429)),
        "{statuses:?}"
    );
    // A search for one id costs the group one query, as the seed's did: not limited.
    let one = format!("/api/supernode/search/{}", absent_id(7));
    assert_eq!(get_from(addr, "127.0.0.2", &one).0, 404);
}
