//! Out of file descriptors: `accept` fails, the listener waits and tries again, and serves
//! again as soon as descriptors free up (SPEC section 6). The test runs in a process of its
//! own ([`in_own_process`]): it lowers its process's open-files limit, uses up every
//! descriptor and installs a logger, which would break any test running beside it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use superpeer::config::{Settings, http_config};
use superpeer::http::{Handler, HttpServer, Reply, Request};
use superpeer::shutdown::Shutdown;

use crate::support::in_own_process;

/// The server's log lines, kept for the test to read.
struct Lines(Mutex<Vec<String>>);

impl log::Log for Lines {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        self.0.lock().unwrap().push(record.args().to_string());
    }
    fn flush(&self) {}
}

static LINES: Lines = Lines(Mutex::new(Vec::new()));

fn logged(text: &str) -> bool {
    LINES
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|line| line.contains(text))
}

fn status(stream: &mut TcpStream, limit: Duration) -> Option<u16> {
    stream.set_read_timeout(Some(limit)).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[test]
fn out_of_file_descriptors_the_listener_waits_and_serves_again() {
    if !in_own_process() {
        return;
    }
    log::set_logger(&LINES).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    rlimit::setrlimit(rlimit::Resource::NOFILE, 256, 256).unwrap();
    let settings = Settings::from_pairs([("LPORT".to_string(), "0".to_string())], []);
    let config = http_config(&settings).unwrap();
    let handler: Arc<Handler> = Arc::new(|_: &Request| Ok(Reply::data(200, "health", &"ok")));
    let shutdown = Shutdown::new();
    let server = HttpServer::start(
        &config,
        handler,
        shutdown.clone(),
        superpeer::metrics::HttpMetrics::detached(),
    )
    .unwrap();
    let addr: socket2::SockAddr = server.addr.into();

    // The clients' sockets exist before the descriptors run out; then none is left.
    let sockets: Vec<socket2::Socket> = (0..3)
        .map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap())
        .collect();
    let mut hogs = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        hogs.push(file);
    }
    assert!(hogs.len() > 100, "{} descriptors taken", hogs.len());

    // The kernel completes the connections; the server cannot accept them for now. (Three,
    // in case a descriptor of the test harness frees up meanwhile.)
    let mut clients: Vec<TcpStream> = sockets
        .into_iter()
        .map(|socket| {
            socket.connect(&addr).unwrap();
            let mut client: TcpStream = socket.into();
            client
                .write_all(b"GET /api/node/health HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            client
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !logged("cannot accept connections") {
        assert!(Instant::now() < deadline, "no failed accept was logged");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Descriptors come back: every connection is accepted and answered, new ones too.
    drop(hogs);
    for client in &mut clients {
        assert_eq!(status(client, Duration::from_secs(5)), Some(200));
    }
    let mut fresh = TcpStream::connect(server.addr).unwrap();
    fresh
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(status(&mut fresh, Duration::from_secs(5)), Some(200));

    shutdown.trigger();
    server.join();
}
