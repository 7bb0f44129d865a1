//! The bench's made-up nodes answer their health checks: each location a measurement registers
//! gets a listener that answers `200` to anything, so the supernodes run with their default
//! liveness sweep (every 5 s) and keep the made-up nodes, as users run them. One thread per
//! location, for the life of the process (the bench ends, and they with it).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::opts::Res;

/// What a node answers to `GET /api/node/health`.
const HEALTH: &[u8] = br#"{"data":"ok","entity":"health"}"#;

/// The ports answered already.
fn answered() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(Default::default)
}

/// Answers health checks at 127.0.0.1:`port` for each of `ports` (once per port).
pub fn answer_health(ports: impl IntoIterator<Item = u16>) -> Res<()> {
    let mut answered = answered().lock().unwrap_or_else(|e| e.into_inner());
    for port in ports {
        if answered.contains(&port) {
            continue;
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .map_err(|e| format!("a made-up node's health at port {port}: {e}"))?;
        std::thread::Builder::new()
            .name(format!("health-{port}"))
            .spawn(move || serve(&listener))
            .map_err(|e| format!("a thread for port {port}: {e}"))?;
        answered.insert(port);
    }
    Ok(())
}

/// One answer per connection, then closed: a health check is one request.
fn serve(listener: &TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut head = [0u8; 1024];
        let _ = stream.read(&mut head);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            HEALTH.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(HEALTH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_up_node_answers_its_health_check() {
        let free = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        answer_health([port, port]).unwrap();
        let mut stream = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        stream
            .write_all(b"GET /api/node/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer.ends_with(r#"{"data":"ok","entity":"health"}"#),
            "{answer}"
        );
    }
}
