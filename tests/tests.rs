//! The integration tests: one binary, one module a file. Each module starts the real
//! `superpeer` binary through [`support`] (or, for the lab's drills, in network namespaces)
//! and talks HTTP and UDP to it; `cargo test --test tests <module>::` runs one module's tests.
//!
//! The tests share this process and run side by side. None may change what the process holds
//! for all (its environment, working directory, logger, or lower a limit: the attacks raise
//! the open-files soft limit to the hard one, which the others do not mind); a test that must
//! runs in a process of its own ([`support::in_own_process`]). A test whose figures another
//! test's load would change runs [`support::alone`].

mod support;

mod api;
mod attacks;
mod browser;
mod digests;
mod download;
mod exhaustion;
mod get;
mod holders;
mod integrity;
mod keyed;
mod lab;
mod liveness;
mod metrics;
mod names;
mod page;
mod peers;
mod robustness;
mod search;
mod stop;
mod swarm;
mod trust;
