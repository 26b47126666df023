// SPDX-License-Identifier: MIT OR Apache-2.0
//! A TCP proxy between Kafka clients and a broker, for network faults: it cuts off or
//! stalls the clients whose `client.id` starts with a prefix while the others pass.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A TCP proxy in front of a broker that advertises the proxy's address, so that every
/// client connection goes through it. It can cut off the clients whose Kafka client.id
/// starts with a prefix (the worker), as a network failure between them and the broker
/// would, while the other clients (the camera, the test's own readers) pass.
pub struct Proxy {
    /// Where clients connect, and what the broker behind it advertises.
    pub address: SocketAddr,
    shared: Arc<ProxyShared>,
    accept: Option<std::thread::JoinHandle<()>>,
}

/// What a proxy's faults did so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProxyCounts {
    /// Affected connections closed by [`Proxy::cut`].
    pub closed_by_cut: u64,
    /// Affected connections refused while cut (the clients' reconnects).
    pub refused: u64,
    /// Affected connections stalled by [`Proxy::blackhole`].
    pub frozen: u64,
}

#[derive(Default)]
struct ProxyShared {
    prefix: String,
    upstream: Mutex<Option<SocketAddr>>,
    /// Cut: affected connections are closed, and new ones closed at once.
    cut: AtomicBool,
    /// Blackhole: affected connections stall for good, new ones too (until restored).
    blackhole: AtomicBool,
    stopping: AtomicBool,
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Connection>>,
    closed_by_cut: AtomicU64,
    refused: AtomicU64,
    frozen: AtomicU64,
}

struct Connection {
    affected: bool,
    client: TcpStream,
    broker: TcpStream,
    frozen: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1; cuts and stalls only the clients whose
    /// `client.id` starts with `prefix`.
    pub fn start(prefix: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let shared = Arc::new(ProxyShared {
            prefix: prefix.to_string(),
            ..Default::default()
        });
        let accept = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                while !shared.stopping.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let shared = shared.clone();
                            std::thread::spawn(move || serve(shared, stream));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => panic!("proxy accept: {e}"),
                    }
                }
            })
        };
        Proxy {
            address,
            shared,
            accept: Some(accept),
        }
    }

    /// The broker (HOST:PORT) connections go on to; set once it runs, since it must
    /// advertise the proxy's address.
    pub fn set_upstream(&self, broker: &str) {
        *self.shared.upstream.lock().unwrap() = Some(broker.parse().unwrap());
    }

    /// Closes the affected connections; new ones are closed at once until `restore`.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        for c in self.shared.live.lock().unwrap().values() {
            if c.affected {
                let _ = c.client.shutdown(Shutdown::Both);
                let _ = c.broker.shutdown(Shutdown::Both);
                self.shared.closed_by_cut.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// The affected connections stop carrying bytes, without being closed, for good;
    /// new ones stall too until `restore`.
    pub fn blackhole(&self) {
        self.shared.blackhole.store(true, Ordering::SeqCst);
        for c in self.shared.live.lock().unwrap().values() {
            if c.affected && !c.frozen.swap(true, Ordering::SeqCst) {
                self.shared.frozen.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Ends a cut or a blackhole for new connections (stalled ones stay stalled).
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
        self.shared.blackhole.store(false, Ordering::SeqCst);
    }

    pub fn counts(&self) -> ProxyCounts {
        ProxyCounts {
            closed_by_cut: self.shared.closed_by_cut.load(Ordering::SeqCst),
            refused: self.shared.refused.load(Ordering::SeqCst),
            frozen: self.shared.frozen.load(Ordering::SeqCst),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for c in self.shared.live.lock().unwrap().values() {
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.broker.shutdown(Shutdown::Both);
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Reads a connection's first Kafka request: size (int32), api key (int16), api version
/// (int16), correlation id (int32), client id (int16 length + bytes). Returns its bytes
/// and the client id.
fn first_request(stream: &mut TcpStream) -> Option<(Vec<u8>, String)> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let len = i32::from_be_bytes(size);
    if !(10..=1 << 20).contains(&len) {
        return None;
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).ok()?;
    let id_len = i16::from_be_bytes([body[8], body[9]]);
    let id = if id_len > 0 {
        let end = (10 + id_len as usize).min(body.len());
        String::from_utf8_lossy(&body[10..end]).into_owned()
    } else {
        String::new()
    };
    let mut request = size.to_vec();
    request.extend_from_slice(&body);
    Some((request, id))
}

fn serve(shared: Arc<ProxyShared>, mut client: TcpStream) {
    client.set_nonblocking(false).unwrap();
    client.set_nodelay(true).ok();
    client.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let Some((request, client_id)) = first_request(&mut client) else {
        return;
    };
    let affected = client_id.starts_with(&shared.prefix);
    let frozen = Arc::new(AtomicBool::new(false));
    if affected && shared.cut.load(Ordering::SeqCst) {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    if affected && shared.blackhole.load(Ordering::SeqCst) {
        frozen.store(true, Ordering::SeqCst);
        shared.frozen.fetch_add(1, Ordering::SeqCst);
    }
    let Some(upstream) = *shared.upstream.lock().unwrap() else {
        return;
    };
    let Ok(mut broker) = TcpStream::connect(upstream) else {
        return;
    };
    broker.set_nodelay(true).ok();
    hold_while_frozen(&shared, &frozen);
    if broker.write_all(&request).is_err() {
        return;
    }
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let (Ok(client2), Ok(broker2)) = (client.try_clone(), broker.try_clone()) else {
        return;
    };
    shared.live.lock().unwrap().insert(
        id,
        Connection {
            affected,
            client: client2,
            broker: broker2,
            frozen: frozen.clone(),
        },
    );
    let upward = {
        let (shared, frozen) = (shared.clone(), frozen.clone());
        let (from, to) = (client.try_clone().unwrap(), broker.try_clone().unwrap());
        std::thread::spawn(move || pump(&shared, &frozen, from, to))
    };
    pump(&shared, &frozen, broker, client);
    let _ = upward.join();
    shared.live.lock().unwrap().remove(&id);
}

fn hold_while_frozen(shared: &ProxyShared, frozen: &AtomicBool) {
    while frozen.load(Ordering::SeqCst) && !shared.stopping.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pump(shared: &ProxyShared, frozen: &AtomicBool, mut from: TcpStream, mut to: TcpStream) {
    from.set_read_timeout(Some(Duration::from_millis(100))).ok();
    let mut buf = vec![0u8; 64 * 1024];
    while !shared.stopping.load(Ordering::SeqCst) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hold_while_frozen(shared, frozen);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                hold_while_frozen(shared, frozen)
            }
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
