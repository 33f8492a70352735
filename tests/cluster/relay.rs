//! A slow link in userspace (this kernel has no `sch_netem`): a TCP relay that listens on
//! 127.0.0.1 inside one lab namespace and forwards each connection to a member's address from
//! there. Every chunk read is delivered `delay` later, in order, in each direction; during a
//! stall nothing is delivered (data waits, as behind a congested or lossy hop: TCP gets
//! through late, not never).
//!
//! Its threads enter the namespace with setns (per thread), and so do the threads they
//! start. Drop shuts every socket down and joins nothing it could hang on.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lab::enter;

/// When the link delivers nothing: `len` out of every `every`, from the relay's start.
#[derive(Debug, Clone, Copy)]
pub struct Stalls {
    pub every: Duration,
    pub len: Duration,
}

struct Shared {
    delay: Duration,
    stalls: Option<Stalls>,
    start: Instant,
    stop: AtomicBool,
    /// Every socket, to shut down on Drop.
    sockets: Mutex<Vec<TcpStream>>,
}

impl Shared {
    /// The instant a chunk read at `at` may be delivered: `delay` later, and not in a stall.
    fn deliver_at(&self, at: Instant) -> Instant {
        let t = at + self.delay;
        let Some(s) = self.stalls else { return t };
        let into = (t - self.start).as_nanos() % s.every.as_nanos();
        let into = Duration::from_nanos(into as u64);
        if into < s.len { t + (s.len - into) } else { t }
    }
}

pub struct Relay {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Relay {
    /// Listens on 127.0.0.1 in the namespace `ns` and forwards to `target` (`IP:PORT`).
    pub fn start(ns: &str, target: &str, delay: Duration, stalls: Option<Stalls>) -> Relay {
        let shared = Arc::new(Shared {
            delay,
            stalls,
            start: Instant::now(),
            stop: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
        });
        let (tx, rx) = mpsc::channel();
        let path = format!("/run/netns/{ns}");
        let target = target.to_owned();
        let sh = Arc::clone(&shared);
        std::thread::spawn(move || {
            enter(&path);
            let l = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
            tx.send(l.local_addr().unwrap().port()).unwrap();
            // Polled, so that the thread ends (and the socket closes) once the relay is gone.
            l.set_nonblocking(true).unwrap();
            while !sh.stop.load(Ordering::SeqCst) {
                let client = match l.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) =
                    TcpStream::connect_timeout(&target.parse().unwrap(), Duration::from_secs(5))
                else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut s = sh.sockets.lock().unwrap();
                    s.push(client.try_clone().unwrap());
                    s.push(server.try_clone().unwrap());
                }
                pipe(
                    &sh,
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                );
                pipe(&sh, server, client);
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(5)).expect("relay port");
        Relay { port, shared }
    }

    /// Time since the relay started: its stalls are scheduled from then.
    pub fn since_start(&self) -> Duration {
        self.shared.start.elapsed()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// One direction: a reader thread timestamps chunks, a writer thread delivers them on time.
fn pipe(sh: &Arc<Shared>, mut from: TcpStream, mut to: TcpStream) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let s = Arc::clone(sh);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send((s.deliver_at(Instant::now()), buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        // In order: a chunk never overtakes an earlier one.
        let mut last = Instant::now();
        for (at, chunk) in rx {
            let at = at.max(last);
            last = at;
            if let Some(d) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for s in self.shared.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
