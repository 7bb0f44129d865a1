//! superpeer: a peer-to-peer resource-location network.
//!
//! ```text
//!            multicast group (UDP, TTL 1)
//!      ┌──────────── 20 / 21 / 22 ────────────┐
//!  supernode A                            supernode B
//!   index: id -> node locations            index: ...
//!   ▲ register, heartbeat    ▲ health       ▲
//!   │                        │ checks       │
//!  node 1 ── files          node 2         node 3
//! ```
//!
//! Nodes hold files named by the SHA-256 of their content and register them with a
//! supernode. A supernode answers searches from its index and asks the other supernodes over
//! multicast for the rest. Each role is started with [`start`], which returns a running
//! [`Instance`]; the binary in `main.rs` is a thin wrapper around it.

// Two modules are allowed it, each for a measured need: `http::mapped` (downloads 1.5x
// faster) and `pieces::sha_ni` (a file's id and piece hashes for 1.47x one hash, not 2x).
#![deny(unsafe_code)]

// Public: what the binary, the integration tests, the bench tool and the fuzz targets use.
pub mod auth;
pub mod config;
pub mod digest;
pub mod get;
pub mod http;
pub mod id;
pub mod index;
pub mod location;
pub mod logging;
pub mod metrics;
pub mod pieces;
pub mod shutdown;
pub mod wire;

mod api;
mod client;
mod content;
mod error;
mod liveness;
mod metalink;
mod multicast;
mod node;
mod page;
mod rate;
mod resources;
mod supernode;

use std::net::SocketAddr;
use std::thread::JoinHandle;

pub use config::{Config, Role, Settings};
pub use error::{ApiError, ConfigError, Error};
pub use id::ResourceId;
pub use supernode::{Accepted, parse_registration};

use http::HttpServer;
use shutdown::Shutdown;

/// A running node or supernode.
///
/// It stops in two steps: `shutdown` stops the listener, the node's registration (which
/// leaves its supernode) and the periodic work; once the requests in flight are answered,
/// `background` stops the threads they may need meanwhile (a supernode's multicast search).
pub struct Instance {
    http: HttpServer,
    shutdown: Shutdown,
    background: Shutdown,
    threads: Vec<JoinHandle<()>>,
}

impl Instance {
    fn new(
        http: HttpServer,
        shutdown: Shutdown,
        background: Shutdown,
        threads: Vec<JoinHandle<()>>,
    ) -> Instance {
        Instance {
            http,
            shutdown,
            background,
            threads,
        }
    }

    /// The signal that stops the instance (for SIGTERM): `trigger` it from any thread, and
    /// [`Instance::wait`] returns once the requests in flight are answered.
    pub fn stopper(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The address the API listens on (the real port when `LPORT` was 0).
    pub fn addr(&self) -> SocketAddr {
        self.http.addr
    }

    /// Stops every thread and waits for them.
    pub fn stop(self) {
        self.shutdown.trigger();
        self.wait();
    }

    /// Waits until the instance stops: until its stopper is triggered and the requests in
    /// flight are answered (for at most 10 s).
    pub fn wait(self) {
        self.http.join();
        self.background.trigger();
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Starts the instance `config` describes.
pub fn start(config: Config) -> Result<Instance, Error> {
    match config {
        Config::Supernode(config) => supernode::start(config),
        Config::Node(config) => node::start(config),
    }
}
