//! A TCP proxy that injects network faults (black holes, delays, one-way links, resets) between
//! two processes on loopback, so partitions can be tested without root or iptables.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a [`FaultProxy`] does with the bytes of its connections; changed at runtime with
/// [`FaultProxy::set`], and applied to open connections as well as new ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward both ways.
    Pass,
    /// A black hole: connections are accepted and kept, every byte either way is discarded.
    Drop,
    /// Forward each chunk this long after it arrived, in order.
    Delay(Duration),
    /// Forward client → backend only; backend → client bytes are discarded.
    OneWay,
    /// Close every open connection at once (a TCP reset) and close new ones as soon as accepted.
    Reset,
}

impl Fault {
    /// Whether bytes travelling in `direction` reach the other side under this fault.
    fn forwards(self, direction: Direction) -> bool {
        match self {
            Fault::Pass | Fault::Delay(_) => true,
            Fault::OneWay => direction == Direction::ToBackend,
            Fault::Drop | Fault::Reset => false,
        }
    }
}

/// Which way bytes travel through a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    ToBackend = 0,
    ToClient = 1,
}

/// A loopback TCP proxy in front of `backend` whose behaviour can be switched between the
/// [`Fault`] modes while connections are open; everything stops when it is dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// State shared by the proxy handle, its accept loop and its pumps.
struct Shared {
    backend: SocketAddr,
    /// The current mode. Held while a pump decides a chunk's fate and while `set` scans links,
    /// so a link that lost bytes is never missed when forwarding resumes.
    fault: Mutex<Fault>,
    links: Mutex<Vec<Arc<Link>>>,
    forwarded: AtomicU64,
    stopped: AtomicBool,
}

/// One proxied connection.
struct Link {
    client: TcpStream,
    /// `None` for a connection accepted in [`Fault::Drop`] mode while the backend was down.
    backend: Option<TcpStream>,
    /// Per direction: whether a byte was discarded, i.e. the stream now has a gap.
    gap: [AtomicBool; 2],
    /// Reader threads still running; the link leaves the registry when the last one ends.
    readers: AtomicUsize,
}

/// A chunk waiting to be written, and when.
type Chunk = (Instant, Vec<u8>);

/// Chunks that may wait per direction; a stalled receiver then stalls the sender (backpressure).
const QUEUE_CHUNKS: usize = 64;

impl FaultProxy {
    /// Listens on a free loopback port and forwards each connection to `backend`, in
    /// [`Fault::Pass`] mode.
    pub fn start(backend: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let addr = listener.local_addr().expect("fault proxy address");
        let shared = Arc::new(Shared {
            backend,
            fault: Mutex::new(Fault::Pass),
            links: Mutex::new(Vec::new()),
            forwarded: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || accepting.accept_loop(listener));
        FaultProxy { addr, shared }
    }

    /// The address clients connect to instead of the backend.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The backend every connection is forwarded to.
    pub fn backend(&self) -> SocketAddr {
        self.shared.backend
    }

    /// The current mode.
    pub fn fault(&self) -> Fault {
        *self.shared.fault.lock().expect("fault lock")
    }

    /// Switches to `fault` for open and new connections. [`Fault::Reset`] closes every open
    /// connection; an open connection that lost bytes in a direction `fault` forwards is closed
    /// too, since a stream with a gap in it must not resume.
    pub fn set(&self, fault: Fault) {
        let mut current = self.shared.fault.lock().expect("fault lock");
        *current = fault;
        for link in self.shared.links.lock().expect("links lock").iter() {
            let broken = [Direction::ToBackend, Direction::ToClient]
                .into_iter()
                .any(|d| fault.forwards(d) && link.gap[d as usize].load(Ordering::SeqCst));
            if fault == Fault::Reset || broken {
                link.close();
            }
        }
    }

    /// Bytes forwarded to either side so far.
    pub fn bytes_forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// Connections currently open through the proxy.
    pub fn connections(&self) -> usize {
        self.shared.links.lock().expect("links lock").len()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        {
            let _fault = self.shared.fault.lock().expect("fault lock");
            self.shared.stopped.store(true, Ordering::SeqCst);
            for link in self.shared.links.lock().expect("links lock").drain(..) {
                link.close();
            }
        }
        // Wakes the accept loop so it sees the stop.
        let _ = TcpStream::connect(self.addr);
    }
}

impl Shared {
    fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        for client in listener.incoming() {
            if self.stopped.load(Ordering::SeqCst) {
                return;
            }
            let Ok(client) = client else { continue };
            if *self.fault.lock().expect("fault lock") == Fault::Reset {
                abort(&client);
                continue;
            }
            let shared = self.clone();
            std::thread::spawn(move || shared.open(client));
        }
    }

    /// Connects `client` to the backend and starts its pumps, unless the mode or a dead backend
    /// says the connection must be closed instead.
    fn open(self: Arc<Self>, client: TcpStream) {
        let backend = TcpStream::connect_timeout(&self.backend, Duration::from_secs(1)).ok();
        let fault = self.fault.lock().expect("fault lock");
        let refused = self.stopped.load(Ordering::SeqCst)
            || *fault == Fault::Reset
            || (backend.is_none() && *fault != Fault::Drop);
        if refused {
            abort(&client);
            if let Some(backend) = &backend {
                abort(backend);
            }
            return;
        }
        let (Ok(client_in), Ok(client_out)) = (client.try_clone(), client.try_clone()) else {
            abort(&client);
            return;
        };
        let pipes = match &backend {
            Some(b) => match (b.try_clone(), b.try_clone()) {
                (Ok(b_in), Ok(b_out)) => Some((b_in, b_out)),
                _ => {
                    abort(&client);
                    abort(b);
                    return;
                }
            },
            None => None,
        };
        // Without a backend nothing can ever be forwarded: both directions start with a gap.
        let orphan = backend.is_none();
        let link = Arc::new(Link {
            client,
            backend,
            gap: [AtomicBool::new(orphan), AtomicBool::new(orphan)],
            readers: AtomicUsize::new(if orphan { 1 } else { 2 }),
        });
        self.links.lock().expect("links lock").push(link.clone());
        drop(fault);

        let Some((backend_in, backend_out)) = pipes else {
            drop(client_out);
            self.read_side(link, Direction::ToBackend, client_in, None);
            return;
        };
        let (to_backend, backend_queue) = sync_channel(QUEUE_CHUNKS);
        let (to_client, client_queue) = sync_channel(QUEUE_CHUNKS);
        for (direction, from, to, sender, queue) in [
            (
                Direction::ToBackend,
                client_in,
                backend_out,
                to_backend,
                backend_queue,
            ),
            (
                Direction::ToClient,
                backend_in,
                client_out,
                to_client,
                client_queue,
            ),
        ] {
            let (reader, writer) = (self.clone(), self.clone());
            let (read_link, write_link) = (link.clone(), link.clone());
            std::thread::spawn(move || reader.read_side(read_link, direction, from, Some(sender)));
            std::thread::spawn(move || writer.write_side(&write_link, direction, to, queue));
        }
    }

    /// Reads chunks from one side and queues those the current mode forwards, with their due
    /// time; the rest are discarded and leave a gap.
    fn read_side(
        &self,
        link: Arc<Link>,
        direction: Direction,
        mut from: TcpStream,
        queue: Option<SyncSender<Chunk>>,
    ) {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    // A reset on one side resets the other.
                    link.close();
                    break;
                }
            };
            let due = {
                let fault = *self.fault.lock().expect("fault lock");
                match (&queue, fault) {
                    (Some(_), fault) if fault.forwards(direction) => {
                        let delay = match fault {
                            Fault::Delay(delay) => delay,
                            _ => Duration::ZERO,
                        };
                        Some(Instant::now() + delay)
                    }
                    _ => {
                        link.gap[direction as usize].store(true, Ordering::SeqCst);
                        None
                    }
                }
            };
            if let (Some(due), Some(queue)) = (due, &queue)
                && queue.send((due, buffer[..n].to_vec())).is_err()
            {
                break;
            }
        }
        drop(queue);
        if link.readers.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.links
                .lock()
                .expect("links lock")
                .retain(|l| !Arc::ptr_eq(l, &link));
        }
    }

    /// Writes queued chunks to the other side when due, unless the mode has since stopped
    /// forwarding this direction; passes the end of the stream on as a half-close.
    fn write_side(
        &self,
        link: &Link,
        direction: Direction,
        mut to: TcpStream,
        queue: Receiver<Chunk>,
    ) {
        for (due, bytes) in queue {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            {
                let fault = *self.fault.lock().expect("fault lock");
                if !fault.forwards(direction) {
                    link.gap[direction as usize].store(true, Ordering::SeqCst);
                    continue;
                }
            }
            // Counted first, so whoever sees the bytes arrive also sees them counted.
            self.forwarded
                .fetch_add(bytes.len() as u64, Ordering::SeqCst);
            if to.write_all(&bytes).is_err() {
                link.close();
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    }
}

impl Link {
    /// Closes both sides at once; with SO_LINGER 0 the final close sends a reset, not a FIN.
    fn close(&self) {
        abort(&self.client);
        if let Some(backend) = &self.backend {
            abort(backend);
        }
    }
}

/// Makes the socket reset its peer when its last handle closes, and shuts it down now so every
/// thread blocked on it wakes up.
fn abort(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
    let _ = stream.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback echo server that also counts the bytes it received.
    struct Echo {
        addr: SocketAddr,
        received: Arc<AtomicU64>,
    }

    fn echo_server() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo server");
        let addr = listener.local_addr().expect("echo address");
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buffer) {
                        if n == 0 {
                            break;
                        }
                        counter.fetch_add(n as u64, Ordering::SeqCst);
                        if stream.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Echo { addr, received }
    }

    /// An echo server and a proxy in front of it, in pass mode.
    fn echo_behind_proxy() -> (Echo, FaultProxy) {
        let echo = echo_server();
        let proxy = FaultProxy::start(echo.addr);
        (echo, proxy)
    }

    /// What a client saw when it tried to read.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Bytes(Vec<u8>),
        Closed,
        Nothing,
    }

    fn connect(proxy: &FaultProxy) -> TcpStream {
        TcpStream::connect(proxy.addr()).expect("connect to the proxy")
    }

    /// Reads until `want` bytes arrived, the connection ended, or `timeout` passed.
    fn read_for(stream: &mut TcpStream, want: usize, timeout: Duration) -> Seen {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        let mut buffer = [0u8; 4096];
        while got.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            stream.set_read_timeout(Some(left)).expect("read timeout");
            match stream.read(&mut buffer) {
                Ok(0) => return Seen::Closed,
                Ok(n) => got.extend_from_slice(&buffer[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break;
                }
                Err(_) => return Seen::Closed,
            }
        }
        if got.is_empty() {
            Seen::Nothing
        } else {
            Seen::Bytes(got)
        }
    }

    fn echoes(stream: &mut TcpStream, message: &[u8]) -> Seen {
        stream.write_all(message).expect("write to the proxy");
        read_for(stream, message.len(), Duration::from_secs(5))
    }

    #[test]
    fn pass_forwards_both_ways_and_counts_bytes() {
        let (_, proxy) = echo_behind_proxy();
        let mut client = connect(&proxy);
        assert_eq!(
            echoes(&mut client, b"hello"),
            Seen::Bytes(b"hello".to_vec())
        );
        assert_eq!(
            echoes(&mut client, b"again"),
            Seen::Bytes(b"again".to_vec())
        );
        assert_eq!(proxy.bytes_forwarded(), 20);
        assert_eq!(proxy.connections(), 1);
        drop(client);
        crate::poll("the link to close", Duration::from_secs(5), || {
            (proxy.connections() == 0).then_some(())
        });
    }

    #[test]
    fn drop_is_a_black_hole_and_a_broken_stream_never_resumes() {
        let (echo, proxy) = echo_behind_proxy();
        let mut before = connect(&proxy);
        assert_eq!(echoes(&mut before, b"x"), Seen::Bytes(b"x".to_vec()));

        proxy.set(Fault::Drop);
        let mut during = connect(&proxy);
        during
            .write_all(b"lost")
            .expect("a black hole accepts writes");
        before
            .write_all(b"lost")
            .expect("a black hole accepts writes");
        let quiet = Duration::from_millis(300);
        assert_eq!(read_for(&mut during, 4, quiet), Seen::Nothing);
        assert_eq!(read_for(&mut before, 4, quiet), Seen::Nothing);
        assert_eq!(
            echo.received.load(Ordering::SeqCst),
            1,
            "nothing reached the backend"
        );

        proxy.set(Fault::Pass);
        // Both streams lost bytes, so healing closes them rather than resuming with a gap.
        assert_eq!(
            read_for(&mut before, 1, Duration::from_secs(2)),
            Seen::Closed
        );
        assert_eq!(
            read_for(&mut during, 1, Duration::from_secs(2)),
            Seen::Closed
        );
        let mut after = connect(&proxy);
        assert_eq!(echoes(&mut after, b"back"), Seen::Bytes(b"back".to_vec()));
    }

    #[test]
    fn drop_holds_connections_open_while_the_backend_is_down() {
        let dead: SocketAddr = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address")
        };
        let proxy = FaultProxy::start(dead);
        let mut refused = connect(&proxy);
        assert_eq!(
            read_for(&mut refused, 1, Duration::from_secs(2)),
            Seen::Closed,
            "in pass mode a dead backend closes the connection"
        );
        proxy.set(Fault::Drop);
        let mut held = connect(&proxy);
        held.write_all(b"anyone?").expect("write");
        assert_eq!(
            read_for(&mut held, 1, Duration::from_millis(300)),
            Seen::Nothing
        );
        proxy.set(Fault::Pass);
        assert_eq!(read_for(&mut held, 1, Duration::from_secs(2)), Seen::Closed);
    }

    #[test]
    fn delay_adds_latency_and_keeps_order() {
        let (_, proxy) = echo_behind_proxy();
        let delay = Duration::from_millis(200);
        proxy.set(Fault::Delay(delay));
        let mut client = connect(&proxy);
        let started = Instant::now();
        assert_eq!(echoes(&mut client, b"slow"), Seen::Bytes(b"slow".to_vec()));
        // Delayed once on the way there and once on the way back.
        assert!(
            started.elapsed() >= 2 * delay,
            "took {:?}",
            started.elapsed()
        );

        let mut sent = Vec::new();
        for i in 0..20u8 {
            client.write_all(&[i]).expect("write");
            sent.push(i);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            read_for(&mut client, sent.len(), Duration::from_secs(5)),
            Seen::Bytes(sent)
        );

        proxy.set(Fault::Pass);
        let started = Instant::now();
        assert_eq!(echoes(&mut client, b"fast"), Seen::Bytes(b"fast".to_vec()));
        assert!(started.elapsed() < delay, "took {:?}", started.elapsed());
    }

    #[test]
    fn one_way_reaches_the_backend_but_not_the_client() {
        let (echo, proxy) = echo_behind_proxy();
        proxy.set(Fault::OneWay);
        let mut client = connect(&proxy);
        client.write_all(b"hello").expect("write");
        crate::poll("the backend to receive", Duration::from_secs(5), || {
            (echo.received.load(Ordering::SeqCst) == 5).then_some(())
        });
        assert_eq!(
            read_for(&mut client, 5, Duration::from_millis(300)),
            Seen::Nothing
        );
        assert_eq!(proxy.bytes_forwarded(), 5);
    }

    #[test]
    fn reset_closes_open_and_new_connections_until_switched_back() {
        let (_, proxy) = echo_behind_proxy();
        let mut open = connect(&proxy);
        assert_eq!(echoes(&mut open, b"hi"), Seen::Bytes(b"hi".to_vec()));

        let started = Instant::now();
        proxy.set(Fault::Reset);
        assert_eq!(read_for(&mut open, 1, Duration::from_secs(2)), Seen::Closed);
        // A new connection may complete its handshake, but is closed at once.
        if let Ok(mut fresh) = TcpStream::connect(proxy.addr()) {
            let _ = fresh.write_all(b"knock");
            assert_eq!(
                read_for(&mut fresh, 1, Duration::from_secs(2)),
                Seen::Closed
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "closing took {:?}",
            started.elapsed()
        );
        crate::poll("the links to go", Duration::from_secs(5), || {
            (proxy.connections() == 0).then_some(())
        });

        proxy.set(Fault::Pass);
        let mut again = connect(&proxy);
        assert_eq!(echoes(&mut again, b"back"), Seen::Bytes(b"back".to_vec()));
    }
}
