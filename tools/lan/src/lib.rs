//! superpeer-lan: LANs of Linux network namespaces on one machine, for the integration tests
//! (`tests/support/netns.rs`, the lab drills), `make lab` (`sp-bench lab`) and `make attack`
//! (`sp-bench lan`). Root only.
//!
//! ```text
//!   namespace <p>-lan: bridge br0 (multicast snooping off: the group floods), ports h1 h2 ...
//!        │ h1              │ h2                 │ r  (two sites: to the router)
//!   <p>-host1 eth0    <p>-host2 eth0       <p>-router ── <p>-lanb: site B's bridge, hosts 11..
//!   192.168.35.10     192.168.35.11        .35.1 / .36.1 (forwards unicast, not multicast)
//! ```
//!
//! The one decision: nothing is ever made in, or attached to, the machine's own namespace.
//! Each veth is born inside a switch's namespace with its peer moved straight into a host's or
//! the router's, so no packet can leave the machine. Every namespace's name says whose it is:
//! `spt<pid>-<n>-*` belongs to a process ([`Lan::owned`]) and is deleted on drop, even when a
//! test fails, or by the next LAN made once that process is dead (killing by PID only the
//! processes that run binaries the caller names); any other prefix ([`Lan::named`], make
//! lab's `sp`) is kept for as long as its maker wants ([`Lan::keep`], [`delete_named`]).

#![deny(unsafe_code)]

mod lan;
pub mod name;
mod sys;

pub use lan::{Builder, Deleted, Lan, delete_named, delete_owned_by, existing};
pub use sys::{Error, enter, in_namespace, is_root, run, runs_one_of};
