//! The floor of a remote search: UDP multicast round trips between this process and a child
//! (`echo`), each pinned to a CPU when asked. Loopback only, TTL 1.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::opts::{Opts, Res};
use crate::util::Summary;

pub fn mcast_socket(group: Ipv4Addr, port: u16) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(group, port)).into())?;
    // Loopback only, TTL 1: nothing leaves the machine.
    socket.join_multicast_v4(&group, &Ipv4Addr::LOCALHOST)?;
    socket.set_multicast_if_v4(&Ipv4Addr::LOCALHOST)?;
    socket.set_multicast_ttl_v4(1)?;
    socket.set_multicast_loop_v4(true)?;
    Ok(socket.into())
}

pub fn group_opt(o: &Opts) -> Res<Ipv4Addr> {
    let group: Ipv4Addr = o
        .str("group")?
        .parse()
        .map_err(|_| "--group: not an IPv4 address".to_string())?;
    if !group.is_multicast() {
        return Err(format!("{group} is not a multicast group"));
    }
    Ok(group)
}

/// Pins this process to one CPU (`--cpu-a` / `--cpu-b`), when asked.
fn pin(cpu: Option<&str>) -> Res<()> {
    let Some(cpu) = cpu else { return Ok(()) };
    let cpu: usize = cpu.parse().map_err(|_| format!("bad cpu {cpu:?}"))?;
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the calls only read and write it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(format!(
            "cannot pin to cpu {cpu}: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Round trips: this process sends to group:port-b, the child answers to group:port-a.
/// `--cpu-a N --cpu-b M` pin this process and the child to CPUs N and M.
pub fn pingpong(o: &Opts) -> Res<()> {
    let group = group_opt(o)?;
    let port_a: u16 = o.num("port-a", None)?;
    let port_b: u16 = o.num("port-b", None)?;
    pin(o.opt("cpu-a"))?;
    let mut child_args = vec![
        "echo".to_string(),
        "--group".into(),
        group.to_string(),
        "--listen".into(),
        port_b.to_string(),
        "--reply".into(),
        port_a.to_string(),
    ];
    if let Some(cpu) = o.opt("cpu-b") {
        child_args.extend(["--cpu".to_string(), cpu.to_string()]);
    }
    let n: usize = o.num("n", Some(5000))?;
    let warmup: usize = o.num("warmup", Some(200))?;
    let socket = mcast_socket(group, port_a).map_err(|e| format!("multicast socket: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(&child_args)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the echo process: {e}"))?;
    let result = (|| {
        let mut ready = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?)
            .read_line(&mut ready)
            .map_err(|e| e.to_string())?;
        if ready.trim() != "ready" {
            return Err(format!("echo process said {ready:?}"));
        }
        let to = SocketAddrV4::new(group, port_b);
        let mut buf = [0u8; 64];
        let mut rtts = Vec::with_capacity(n);
        let mut lost = 0usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seq: u64 = 0;
        while rtts.len() < n {
            if Instant::now() > deadline {
                return Err(format!("time is up after {} round trips", rtts.len()));
            }
            if lost > 100 {
                return Err(
                    "more than 100 datagrams lost: is multicast on loopback working?".into(),
                );
            }
            seq += 1;
            let payload = seq.to_string();
            let start = Instant::now();
            socket
                .send_to(payload.as_bytes(), to)
                .map_err(|e| format!("send: {e}"))?;
            loop {
                match socket.recv_from(&mut buf) {
                    Ok((len, _)) if &buf[..len] == payload.as_bytes() => {
                        if seq as usize > warmup {
                            rtts.push(start.elapsed().as_secs_f64() * 1e6);
                        }
                        break;
                    }
                    Ok(_) => continue, // a late answer to an earlier, lost round
                    Err(_) => {
                        lost += 1;
                        break;
                    }
                }
            }
        }
        println!("{} lost={lost}", Summary::of(rtts));
        Ok(())
    })();
    let _ = socket.send_to(b"quit", SocketAddrV4::new(group, port_b));
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            _ => thread::sleep(Duration::from_millis(10)),
        }
    }
    result
}

pub fn echo(o: &Opts) -> Res<()> {
    let group = group_opt(o)?;
    let listen: u16 = o.num("listen", None)?;
    let reply: u16 = o.num("reply", None)?;
    pin(o.opt("cpu"))?;
    let socket = mcast_socket(group, listen).map_err(|e| format!("multicast socket: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    println!("ready");
    io::stdout().flush().map_err(|e| e.to_string())?;
    let to = SocketAddrV4::new(group, reply);
    let mut buf = [0u8; 64];
    let started = Instant::now();
    // Ends on "quit", after 5 s of silence, or after 60 s in all.
    while started.elapsed() < Duration::from_secs(60) {
        match socket.recv_from(&mut buf) {
            Ok((len, _)) if &buf[..len] == b"quit" => break,
            Ok((len, _)) => {
                let _ = socket.send_to(&buf[..len], to);
            }
            Err(_) => break,
        }
    }
    Ok(())
}
