//! The builder on the real kernel (root: `cargo test -p superpeer-lan -- --ignored`, in CI):
//! hosts reach each other and nothing else, nothing appears in the machine's own namespace,
//! every namespace goes on drop, a kept LAN is found and deleted by its prefix, and a dead
//! process's LAN is swept. Each test makes LANs of its own names; they run one at a time
//! (namespace names of one process count up, so they could run side by side, but the link
//! lists compared below are the machine's).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use superpeer_lan::{Lan, delete_named, delete_owned_by, existing, in_namespace, is_root};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    superpeer_lan::name::netns_list(&String::from_utf8_lossy(&out.stdout))
}

/// The machine's own interfaces, by name.
fn own_links() -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let mut links: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
        .collect();
    links.sort();
    links
}

fn root() -> std::sync::MutexGuard<'static, ()> {
    assert!(is_root(), "makes network namespaces: run as root");
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether host `from` of `lan` opens a TCP connection to host `to` (which listens) and gets
/// its byte back.
fn reaches(lan: &Lan, from: usize, to: usize) -> bool {
    let listener = lan
        .on(to, || TcpListener::bind((lan.addr(to), 0)).unwrap())
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let _ = conn.write_all(b"!");
        }
    });
    let got = lan
        .on(from, || {
            let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
            conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            let mut byte = [0u8; 1];
            conn.read_exact(&mut byte).ok().map(|()| byte[0])
        })
        .unwrap();
    if got.is_none() {
        // Unblock the accept.
        let _ = lan.on(to, || TcpStream::connect(addr));
    }
    server.join().unwrap();
    got == Some(b'!')
}

#[test]
#[ignore = "root: makes network namespaces"]
fn a_lan_joins_its_hosts_touches_nothing_else_and_goes_on_drop() {
    let _one = root();
    let before = own_links();
    let lan = Lan::owned().one_site(3).unwrap();
    let names: Vec<String> = lan.namespaces().to_vec();
    assert_eq!(names.len(), 4, "{names:?}");
    let pid = std::process::id();
    assert!(names.iter().all(|ns| ns.starts_with(&format!("spt{pid}-"))));
    assert!(reaches(&lan, 1, 3));
    assert!(reaches(&lan, 3, 2));
    // Cable out: host-2 reaches nobody, the others still each other.
    lan.set_cable(2, false).unwrap();
    assert!(!reaches(&lan, 1, 2));
    assert!(reaches(&lan, 1, 3));
    lan.set_cable(2, true).unwrap();
    assert!(reaches(&lan, 1, 2));
    assert!(lan.set_cable(7, false).is_err());
    assert!(lan.set_router(false).is_err(), "one site has no router");
    assert_eq!(
        lan.exec(1, &["cat", "/proc/sys/net/ipv4/ip_forward"], None)
            .unwrap()
            .trim(),
        "0"
    );
    assert_eq!(
        own_links(),
        before,
        "nothing in the machine's own namespace"
    );
    drop(lan);
    let left = namespaces();
    assert!(names.iter().all(|ns| !left.contains(ns)), "{left:?}");
}

#[test]
#[ignore = "root: makes network namespaces"]
fn two_sites_route_unicast_through_the_router() {
    let _one = root();
    let lan = Lan::owned().two_sites(2).unwrap();
    assert_eq!(lan.hosts().collect::<Vec<_>>(), [1, 2, 11, 12]);
    assert!(reaches(&lan, 1, 12));
    assert!(reaches(&lan, 11, 2));
    // Site B's cable is on site B's switch.
    lan.set_cable(12, false).unwrap();
    assert!(!reaches(&lan, 11, 12));
    lan.set_cable(12, true).unwrap();
    lan.set_router(false).unwrap();
    assert!(!reaches(&lan, 1, 11));
    assert!(reaches(&lan, 11, 12));
    lan.set_router(true).unwrap();
    assert!(reaches(&lan, 1, 11));
}

#[test]
#[ignore = "root: makes network namespaces"]
fn a_kept_lan_outlives_its_value_and_is_deleted_by_its_prefix() {
    let _one = root();
    let prefix = format!("splantest{}", std::process::id());
    let kept = Lan::named(&prefix).one_site(2).unwrap().keep();
    assert_eq!(
        kept,
        [
            format!("{prefix}-lan"),
            format!("{prefix}-host1"),
            format!("{prefix}-host2")
        ]
    );
    let mut found = existing(&prefix).unwrap();
    found.sort();
    let mut expected = kept.clone();
    expected.sort();
    assert_eq!(found, expected);
    // A second one of that name is refused, and deletes nothing of the first.
    assert!(Lan::named(&prefix).one_site(1).is_err());
    assert_eq!(existing(&prefix).unwrap().len(), 3);
    // A process in it that runs none of the binaries named is left alone, and reported.
    let mut sleeper = Command::new("ip")
        .args(["netns", "exec", &kept[1], "sleep", "30"])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !std::fs::read_link(format!("/proc/{}/exe", sleeper.id()))
        .is_ok_and(|exe| exe.ends_with("sleep"))
    {
        assert!(std::time::Instant::now() < deadline, "sleep did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let deleted = delete_named(&prefix, &[]).unwrap();
    assert_eq!(deleted.namespaces.len(), 3, "{deleted:?}");
    assert!(deleted.stopped.is_empty());
    assert_eq!(deleted.left.len(), 1, "{deleted:?}");
    assert!(sleeper.try_wait().unwrap().is_none(), "not ours to kill");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert!(existing(&prefix).unwrap().is_empty());
    assert!(delete_named("spt1-0", &[]).is_err(), "a process's prefix");
}

#[test]
#[ignore = "root: makes network namespaces"]
fn a_dead_owner_s_lan_is_swept_and_its_instances_of_our_binary_killed() {
    let _one = root();
    // A process that exits at once: its PID names a LAN whose owner is dead.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let orphan = Lan::owned_by(dead).one_site(1).unwrap().keep();
    // In it, a copy of sleep: "our binary" for this sweep.
    let dir = std::env::temp_dir().join(format!("superpeer-lan-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ours = dir.join("our-binary");
    std::fs::copy("/bin/sleep", &ours).unwrap();
    let mut instance = Command::new("ip")
        .args(["netns", "exec", &orphan[1]])
        .arg(&ours)
        .arg("30")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !std::fs::read_link(format!("/proc/{}/exe", instance.id())).is_ok_and(|e| e == ours) {
        assert!(
            std::time::Instant::now() < deadline,
            "the instance did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The next LAN anyone makes sweeps it.
    let fresh = Lan::owned().sweep_stops(&ours).one_site(1).unwrap();
    let left = namespaces();
    assert!(orphan.iter().all(|ns| !left.contains(ns)), "{left:?}");
    let status = instance.wait().unwrap();
    assert!(!status.success(), "killed, not finished: {status:?}");
    // A LAN made on behalf of a live process is not swept; its owner deletes it.
    let mine = Lan::owned_by(std::process::id())
        .one_site(1)
        .unwrap()
        .keep();
    drop(Lan::owned().one_site(1).unwrap());
    assert!(namespaces().contains(&mine[0]));
    drop(fresh);
    let deleted = delete_owned_by(std::process::id(), &[]).unwrap();
    assert!(deleted.namespaces.contains(&mine[0]), "{deleted:?}");
    std::fs::remove_dir_all(&dir).unwrap();
    // Nothing in it can be entered any more.
    assert!(in_namespace(&mine[1], || ()).is_err());
}

#[test]
#[ignore = "root: makes network namespaces"]
fn an_ipv6_only_lan_has_no_ipv4_address_and_its_hosts_reach_each_other() {
    let _one = root();
    let lan = Lan::owned().ipv6_only().one_site(2).unwrap();
    assert!(lan.is_ipv6_only());
    assert_eq!(lan.addr(2).to_string(), "fd00:35::b");
    for ns in lan.namespaces() {
        let out = Command::new("ip")
            .args(["-n", ns, "-4", "-o", "addr"])
            .output()
            .unwrap();
        assert!(
            out.stdout.is_empty(),
            "{ns}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert!(reaches(&lan, 1, 2));
    assert!(reaches(&lan, 2, 1));
}

#[test]
#[ignore = "root: makes network namespaces"]
fn two_ipv6_only_sites_route_unicast_through_the_router() {
    let _one = root();
    let lan = Lan::owned().ipv6_only().two_sites(1).unwrap();
    assert_eq!(lan.addr(11).to_string(), "fd00:36::a");
    assert!(reaches(&lan, 1, 11));
    lan.set_router(false).unwrap();
    assert!(!reaches(&lan, 11, 1));
}
