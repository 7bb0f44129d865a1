//! `sp-bench lan up|down`: a LAN of network namespaces for a script (make attack's), made by
//! superpeer-lan on behalf of the script's process and kept after this one exits.
//!
//! `sp-bench lan up --hosts N --owner PID` makes hosts 1..=N on one bridge (namespaces
//! `spt<PID>-<n>-*`, host `h` at `192.168.35.(9 + h)`) and prints one line a host:
//! `<h> <namespace> <address>`. `sp-bench lan down --owner PID` deletes every LAN made for
//! PID; the processes the script started in them are its own to stop first (any left is
//! named, never killed). Should the script die without `down`, the next LAN anyone makes
//! deletes its LANs, since PID is gone.

use superpeer_lan::{Lan, delete_owned_by, is_root};

use crate::opts::{Opts, Res};

pub fn lan(args: &[String]) -> Res<()> {
    let (cmd, rest) = args
        .split_first()
        .ok_or("usage: sp-bench lan up --hosts N --owner PID | lan down --owner PID")?;
    let o = Opts::parse(rest)?;
    let owner: u32 = o.num("owner", None)?;
    if !is_root() {
        return Err("must run as root: it makes network namespaces".into());
    }
    match cmd.as_str() {
        "up" => {
            if !std::path::Path::new(&format!("/proc/{owner}")).exists() {
                return Err(format!("--owner {owner}: no such process"));
            }
            let lan = Lan::owned_by(owner)
                .one_site(o.num("hosts", None)?)
                .map_err(|e| e.to_string())?;
            for h in lan.hosts() {
                println!("{h} {} {}", lan.ns(h), Lan::ip(h));
            }
            lan.keep();
            Ok(())
        }
        "down" => {
            let deleted = delete_owned_by(owner, &[]).map_err(|e| e.to_string())?;
            for (ns, pid, cmdline) in &deleted.left {
                eprintln!("sp-bench lan: process {pid} ({cmdline}) is still in {ns}; left alone");
            }
            match deleted.failed.first() {
                Some((ns, why)) => Err(format!("cannot delete namespace {ns}: {why}")),
                None => Ok(()),
            }
        }
        other => Err(format!("unknown lan command {other:?} (up or down)")),
    }
}
