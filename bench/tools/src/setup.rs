//! What the measurements share, set up before they start: the binaries, the test files,
//! nginx (the reference server), the multicast ping-pong (the floor of a remote search), and
//! the search pair (supernodes a and b). Also the instances' settings.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{self, RegisterArgs};
use crate::driver::{Bench, Env, HOST, tail};
use crate::local;
use crate::opts::Res;
use crate::plan::Need;
use crate::procs;
use crate::stats::{kv_num, median};

pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
pub const NGINX_PORT: u16 = 27000;

/// Request paths: a's 15 resources (local searches), b's 1,000 (remote searches through a),
/// 1,000 ids nobody holds.
pub const A_PATHS: &str = "paths-a-local.txt";
pub const B_PATHS: &str = "paths-b-remote.txt";
pub const ABSENT: &str = "paths-absent.txt";
/// Where b's fake node is: every remote answer must name it.
pub const B_LOC: &str = "127.0.0.1:27802";

/// A supernode's settings: its own group on loopback (239.77.1.OCTET, UDP port 27100 + OCTET,
/// TTL 1) and a group of `size`; everything else at the defaults users run (the liveness sweep
/// every 5 s included: the made-up nodes answer it, see [`crate::holders`]).
pub fn super_env(octet: u16, size: usize) -> Env {
    vec![
        (
            "MULTICAST_LOCATION".into(),
            format!("239.77.1.{octet}:{}", 27100 + octet),
        ),
        ("MULTICAST_GROUP_SIZE".into(), size.to_string()),
        ("MULTICAST_INTERFACE".into(), HOST.into()),
        ("MULTICAST_TTL".into(), "1".into()),
    ]
}

/// A real node's settings: it registers with the hub (supernode h) and shares `dir`.
pub fn node_env(hub_port: u16, dir: &Path) -> Env {
    vec![
        (
            "SUPERNODE_ENDPOINT".into(),
            format!("http://{HOST}:{hub_port}/api/supernode"),
        ),
        ("RESOURCE_PATH".into(), dir.to_string_lossy().into_owned()),
        ("LOG_LEVEL".into(), "info".into()),
        ("HEARTBEAT_MS".into(), "5000".into()),
    ]
}

impl Bench {
    /// `cargo ARGS` in the project's root, with these variables added; bounded (10 minutes),
    /// stopped on Ctrl-C. Its messages go to `err` when given, else to the terminal.
    fn cargo(&mut self, args: &[&str], env: &[(&str, String)], err: Option<&Path>) -> Res<bool> {
        let mut cmd = Command::new("cargo");
        cmd.args(args)
            .current_dir(&self.s.root)
            .stdin(Stdio::null())
            .envs(env.iter().map(|(k, v)| (*k, v)));
        if let Some(path) = err {
            let file = fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
            cmd.stderr(file);
        }
        procs::contain(&mut cmd, None);
        self.procs.spawn("cargo", &mut cmd)?;
        let status = self.procs.wait("cargo", Duration::from_secs(600))?;
        Ok(status.is_some_and(|s| s.success()))
    }

    /// The release binary and, when asked, the static one (musl, as `make dist` builds it; a
    /// static glibc build when the musl target cannot be had).
    pub fn build(&mut self, with_static: bool) -> Res<()> {
        self.say("building the release binary (cargo build --release)");
        if !self.cargo(&["build", "--release", "--quiet"], &[], None)? {
            return Err("cargo build --release failed".into());
        }
        if !with_static {
            return Ok(());
        }
        self.say(format!("building the static binary ({MUSL_TARGET})"));
        self.static_kind = "musl".into();
        let sysroot = Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let has_musl = Path::new(&sysroot)
            .join("lib/rustlib")
            .join(MUSL_TARGET)
            .is_dir();
        let musl_log = self.log_path("musl-build.log");
        if has_musl
            && self.cargo(
                &["build", "--release", "--quiet", "--target", MUSL_TARGET],
                &[],
                Some(&musl_log),
            )?
        {
            self.static_bin = Some(
                self.s
                    .root
                    .join(format!("target/{MUSL_TARGET}/release/superpeer")),
            );
            return Ok(());
        }
        // As make dist does: glibc linked statically when the musl target cannot be had.
        self.note(format!(
            "the {MUSL_TARGET} target is not available; item 12 uses a static glibc build instead"
        ));
        self.static_kind = "static glibc".into();
        let flags = match std::env::var("RUSTFLAGS") {
            Ok(f) if !f.is_empty() => format!("{f} -C target-feature=+crt-static"),
            _ => "-C target-feature=+crt-static".to_string(),
        };
        let gnu = "x86_64-unknown-linux-gnu";
        if !self.cargo(
            &["build", "--release", "--quiet", "--target", gnu],
            &[("RUSTFLAGS", flags)],
            None,
        )? {
            return Err("the static glibc build failed".into());
        }
        self.static_bin = Some(self.s.root.join(format!("target/{gnu}/release/superpeer")));
        Ok(())
    }

    /// What the selected measurements need, in the order the whole run has always set it up.
    /// A part that fails is said and left out: the measurements that need it fail alone.
    pub fn set_up(&mut self, needs: &BTreeSet<Need>) -> Res<()> {
        let data = self.s.data.clone();
        let files: [(Need, &str, u64, usize, u64, &str); 3] = [
            (Need::Gib, "gib", 256, 4 << 20, 8, "the 1 GiB of test files"),
            (Need::TenK, "10k", 10_000, 64, 9, "the 10,000 test files"),
            (Need::Small, "small", 15, 1024, 10, "the small test folder"),
        ];
        for (need, dir, count, size, seed, what) in files {
            if needs.contains(&need)
                && let Err(e) = self.make_files(&data.join(dir), count, size, seed)
            {
                procs::check()?;
                self.say(format!("cannot write {what}: {e}"));
            }
        }
        if needs.contains(&Need::Nginx)
            && let Err(e) = self.start_nginx()
        {
            procs::check()?;
            self.say(e);
            self.say("nginx is not running: its references are missing");
        }
        if needs.contains(&Need::PingPong)
            && let Err(e) = self.pingpong()
        {
            procs::check()?;
            self.say(format!("the multicast ping-pong failed: {e}"));
        }
        if needs.contains(&Need::Pair)
            && let Err(e) = self.setup_search_pair()
        {
            procs::check()?;
            self.say(e);
            self.say("the search pair (supernodes a and b) did not come up");
        }
        Ok(())
    }

    /// COUNT files of SIZE bytes of pseudo-random content in DIR, kept between runs.
    pub fn make_files(&mut self, dir: &Path, count: u64, size: usize, seed: u64) -> Res<()> {
        let stamp = dir.join(format!(".complete-{count}x{size}-{seed}"));
        if stamp.exists() {
            return Ok(());
        }
        let _ = fs::remove_dir_all(dir);
        self.say(format!(
            "writing {count} files of {size} bytes in {}",
            self.rel(dir)
        ));
        local::mkfiles(dir, count, size, seed)?;
        fs::write(&stamp, "").map_err(|e| format!("{}: {e}", stamp.display()))
    }

    fn nginx_dir(&self) -> PathBuf {
        self.s.data.join("nginx")
    }

    /// nginx's document root: the copies of the answers measured, at the same paths.
    pub fn www(&self) -> PathBuf {
        self.nginx_dir().join("www")
    }

    /// The reference server: Debian's nginx with its default settings for a static site,
    /// bound to 127.0.0.1 only, in the foreground, without an access log.
    fn start_nginx(&mut self) -> Res<()> {
        if procs::port_busy(NGINX_PORT) {
            return Err(format!(
                "nginx: port {NGINX_PORT} on {HOST} is already in use"
            ));
        }
        let dir = self.nginx_dir();
        let _ = fs::remove_dir_all(&dir);
        for d in [dir.join("www"), dir.join("tmp")] {
            fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        // nginx's workers run as nobody: they must reach the files.
        for d in [self.s.data.clone(), dir.clone(), dir.join("www")] {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let error_log = self.log_path("nginx-error.log");
        let (d, e) = (dir.display(), error_log.display());
        let conf = format!(
            "# The reference server: Debian's nginx with its default settings for a static site, bound to
# {HOST} only, in the foreground, without an access log (superpeer logs no request either).
worker_processes auto;
daemon off;
pid {d}/nginx.pid;
error_log {e} warn;
events {{
    worker_connections 1024;
}}
http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    default_type application/json;
    access_log off;
    client_body_temp_path {d}/tmp;
    server {{
        listen {HOST}:{NGINX_PORT};
        root {d}/www;
        location / {{
        }}
    }}
}}
"
        );
        fs::write(dir.join("nginx.conf"), conf).map_err(|e| format!("nginx.conf: {e}"))?;
        let log_path = self.log_path("nginx.log");
        let log = fs::File::create(&log_path).map_err(|e| format!("nginx.log: {e}"))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.nginx_bin);
        cmd.arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        procs::clean_env(&mut cmd);
        procs::contain(&mut cmd, None);
        self.procs.spawn("nginx", &mut cmd)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if procs::port_busy(NGINX_PORT) {
                self.procs.set_port("nginx", NGINX_PORT);
                return Ok(());
            }
            if !self.procs.running("nginx") {
                break;
            }
            procs::sleep(Duration::from_millis(50))?;
        }
        self.stop(&["nginx"]);
        let said = fs::read_to_string(&log_path).unwrap_or_default()
            + &fs::read_to_string(&error_log).unwrap_or_default();
        Err(format!("nginx did not start: {}", tail(&said, 3)))
    }

    /// The floor of a remote search: a UDP multicast round trip between two processes, pinned
    /// to two different cores (the wake-up of the other core is part of every remote search
    /// here); the same-core figure is noted too.
    fn pingpong(&mut self) -> Res<()> {
        let args = |cpus: &[(&str, &str)]| -> Vec<String> {
            let mut a: Vec<String> = [
                "pingpong",
                "--group",
                "239.77.1.9",
                "--port-a",
                "27109",
                "--port-b",
                "27110",
                "--n",
                "5000",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            for (k, v) in cpus {
                a.push(format!("--{k}"));
                a.push(v.to_string());
            }
            a
        };
        let cross = if procs::ncpus() >= 2 {
            args(&[("cpu-a", "0"), ("cpu-b", "1")])
        } else {
            args(&[])
        };
        let out = self.log_path("pingpong.out");
        let mut v = Vec::new();
        for _ in 0..self.s.runs {
            let line = self
                .tool_run("pingpong", &cross, Duration::from_secs(60), &out, None)
                .unwrap_or_else(|e| e);
            procs::check()?;
            self.say(format!("ping-pong, two cores: {line}"));
            v.extend(kv_num("median_us", &line));
        }
        self.pp_us = median(&v);
        let same = args(&[("cpu-a", "0"), ("cpu-b", "0")]);
        let line = self
            .tool_run("pingpong", &same, Duration::from_secs(60), &out, None)
            .unwrap_or_else(|e| e);
        procs::check()?;
        self.say(format!("ping-pong, one core: {line}"));
        self.pp_same_us = kv_num("median_us", &line);
        self.pp_us
            .map(|_| ())
            .ok_or("no round trip was timed".into())
    }

    /// Supernodes a and b in one group (GROUP_SIZE=2): a holds 15 made-up resources, b 1,000;
    /// nginx serves the same answers, byte for byte, at the same paths.
    fn setup_search_pair(&mut self) -> Res<()> {
        let env = super_env(1, 2);
        self.start("a", "supernode", &self.bin.clone(), 27010, &env)?;
        self.start("b", "supernode", &self.bin.clone(), 27011, &env)?;
        let (a, b) = (self.addr("a")?, self.addr("b")?);
        let (a_paths, b_paths) = (self.log_path(A_PATHS), self.log_path(B_PATHS));
        client::register(&RegisterArgs::new(a, 1, 1, 15, 27801).sample(15, &a_paths))
            .map_err(|e| format!("registering at a: {e}"))?;
        client::register(&RegisterArgs::new(b, 2, 1, 1000, 27802).sample(1000, &b_paths))
            .map_err(|e| format!("registering at b: {e}"))?;
        fs::write(
            self.log_path(ABSENT),
            client::id_paths(99, 1000, "/api/supernode/search/"),
        )
        .map_err(|e| format!("{ABSENT}: {e}"))?;
        let www = self.www();
        for paths in [&a_paths, &b_paths] {
            let list = crate::util::read_lines(paths)?;
            client::mirror(a, &list, &www, 200).map_err(|e| format!("nginx's copies: {e}"))?;
        }
        Ok(())
    }

    /// Supernode h: where the real nodes register (its own group, alone in it).
    pub fn start_hub(&mut self) -> Res<u16> {
        if let Some(port) = self.port("h")
            && self.procs.running("h")
        {
            return Ok(port);
        }
        self.stop(&["h"]);
        self.start("h", "supernode", &self.bin.clone(), 27014, &super_env(5, 1))?;
        Ok(27014)
    }
}
