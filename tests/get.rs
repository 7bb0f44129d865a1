//! SPEC section 9, `superpeer get`: finds the holders through a node or a supernode, moves to
//! the next holder when one fails, resumes with `Range`, and keeps the file only when its
//! SHA-256 is the id.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::*;

fn get(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("get")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn get_finds_downloads_resumes_and_checks() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2).start();
    let s2 = Launch::supernode("s2", &group, 2).start();
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let id = sha256(&content);
    // At s2: first a holder that is gone, then a live one.
    register_gone_holder(&s2, &id);
    let holding = Folder::with(&[
        ("data/report 2025.bin", &content),
        ("other.txt", b"other\n"),
    ]);
    let holder = Launch::node("holder", &holding.path, &[&s2.url()]).start();
    let empty = Folder::with(&[]);
    let asker = Launch::node("asker", &empty.path, &[&s1.url()]).start();
    wait_registered(&s2, &[&holder]);
    wait_registered(&s1, &[&asker]);
    let out = Folder::with(&[]);

    // By id through a supernode: the gone holder fails, the next one serves.
    let done = get(&out.path, &[&id, "--via", &s1.url(), "-o", "by-id.bin"]);
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert_eq!(std::fs::read(out.path.join("by-id.bin")).unwrap(), content);
    assert!(!out.path.join("by-id.bin.part").exists());
    // No progress line when standard error is not a terminal.
    assert_eq!(text(&done.stderr), "");

    // By a part of its name through a node: saved under its own name.
    let done = get(&out.path, &["REPORT 2025", "--via", &asker.url()]);
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert_eq!(
        std::fs::read(out.path.join("report 2025.bin")).unwrap(),
        content
    );

    // Half of it there from an earlier try: only the rest is asked for.
    let half = content.len() / 2;
    std::fs::write(out.path.join("resumed.bin.part"), &content[..half]).unwrap();
    let done = get(&out.path, &[&id, "--via", &s1.url(), "-o", "resumed.bin"]);
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert_eq!(
        std::fs::read(out.path.join("resumed.bin")).unwrap(),
        content
    );
    let metrics = String::from_utf8(holder.get("/metrics").body).unwrap();
    assert!(
        metrics.contains(
            "superpeer_http_requests_total{route=\"/api/node/resources/{id}/content\",status=\"206\"} 1"
        ),
        "{metrics}"
    );

    // Wrong bytes left by an earlier try: found out by the hash, fetched again whole.
    std::fs::write(out.path.join("fixed.bin.part"), vec![7u8; half]).unwrap();
    let done = get(&out.path, &[&id, "--via", &s1.url(), "-o", "fixed.bin"]);
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert_eq!(std::fs::read(out.path.join("fixed.bin")).unwrap(), content);

    // Several names match: the ids to choose from, and nothing written.
    let several = get(&out.path, &["t", "--via", &s1.url()]);
    assert!(!several.status.success());
    let message = text(&several.stderr);
    assert!(
        message.contains("match \"t\"; give one's id") && message.contains(&id),
        "{message}"
    );
    // Nobody has it.
    let none = get(&out.path, &[&absent_id(1), "--via", &s1.url()]);
    assert!(!none.status.success());
    assert!(
        text(&none.stderr).contains("nobody has"),
        "{}",
        text(&none.stderr)
    );
}

#[test]
fn get_help_prints_the_usage() {
    let dir = Folder::with(&[]);
    for flag in ["--help", "-h"] {
        let help = get(&dir.path, &[flag]);
        assert!(help.status.success(), "{flag}: {}", text(&help.stderr));
        let usage = text(&help.stdout);
        assert!(usage.contains("superpeer get ID|NAME"), "{usage}");
    }
}
