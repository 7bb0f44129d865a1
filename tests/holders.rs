//! SPEC section 9, every holder: `GET /api/supernode/search/<id>?all=true` collects the
//! locations from the whole group (codes `25`/`26`), and a node redirects to a holder that
//! answers, not blindly to the first one named.

use crate::support::*;

fn locations(answer: &Resp) -> Vec<String> {
    sorted_locations(&answer.json()["data"]["file"])
}

#[test]
fn all_true_collects_every_holder_of_the_group() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2).start();
    let s2 = Launch::supernode("s2", &group, 2).start();
    let content = b"held three times\n";
    let id = sha256(content);
    let folders: Vec<Folder> = (0..3).map(|_| Folder::with(&[("f", content)])).collect();
    let a = Launch::node("a", &folders[0].path, &[&s1.url()]).start();
    let b = Launch::node("b", &folders[1].path, &[&s2.url()]).start();
    let c = Launch::node("c", &folders[2].path, &[&s2.url()]).start();
    wait_registered(&s1, &[&a]);
    wait_registered(&s2, &[&b, &c]);

    let first = s1.get(&format!("/api/supernode/search/{id}"));
    assert_eq!(locations(&first), [a.location()]);
    let every = s1.get(&format!("/api/supernode/search/{id}?all=true"));
    assert_eq!(every.status, 200);
    let mut want = vec![a.location(), b.location(), c.location()];
    want.sort();
    assert_eq!(locations(&every), want);
    // From a supernode that holds none of them itself, too.
    let from_s2 = s2.get(&format!("/api/supernode/search/{id}?all=true"));
    assert_eq!(locations(&from_s2), want);
    s1.get(&format!("/api/supernode/search/{}?all=true", absent_id(1)))
        .assert_error(404);
}

#[test]
fn a_node_redirects_to_a_holder_that_answers() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2).start();
    let s2 = Launch::supernode("s2", &group, 2).start();
    let content = b"one holder is gone, one is not\n";
    let id = sha256(content);
    // At s2, first a holder that is gone (nothing listens there), then a live one.
    register_gone_holder(&s2, &id);
    let folder = Folder::with(&[("f", content)]);
    let live = Launch::node("live", &folder.path, &[&s2.url()]).start();
    let empty = Folder::with(&[]);
    let asker = Launch::node("asker", &empty.path, &[&s1.url()]).start();
    wait_registered(&s2, &[&live]);
    wait_registered(&s1, &[&asker]);
    // The group names the gone one first; the node sends the client to the live one.
    let first = s1.get(&format!("/api/supernode/search/{id}"));
    assert_ne!(first.json()["data"]["file"]["location"], live.location());
    let redirect = asker.get(&format!("/api/node/resources/{id}/content"));
    assert_eq!(redirect.status, 302);
    assert_eq!(
        redirect.location.as_deref(),
        Some(format!("http://{}/api/node/resources/{id}/content", live.location()).as_str())
    );
    // With no holder answering at all: 503, not a redirect into nothing.
    drop(live);
    asker
        .get(&format!("/api/node/resources/{id}/content"))
        .assert_error(503);
}
