//! Readiness: when a task is ready for use, as opposed to merely running.
//!
//! A condition is a log line matching a regex, a TCP port accepting connections on this
//! machine, or an HTTP URL answering 2xx/3xx; all the conditions given must hold. The same
//! [`Probe`] is driven by the supervisor (for `start`'s `ready`, recorded in the task) and by
//! `wait {until}` (for conditions asked later). Log lines are fed in as they are read, so a
//! log condition sees only the current run's output; ports and URLs are tried again on a
//! short timer, since nothing announces that a socket started listening.
//!
//! Ports and URLs are tried without ever blocking: each try is a non-blocking socket moved
//! on by [`Probe::poll_network`] whenever its descriptor ([`Probe::network_fds`]) is ready
//! or its deadline ([`Probe::network_deadline`]) comes, so the supervisor polls them in the
//! same `poll` as its signals and a stop or the task's exit is never held up by a server
//! that accepts and never answers, or answers a byte at a time. A host name other than an
//! IP address or `localhost` is resolved once, on a helper thread.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, poll};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::payload::input::MAX_SECONDS;
use crate::time::poll_timeout;

/// How long one connection attempt may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// How long one HTTP try may take in all (connect, request, status line).
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);
/// How often ports and URLs are tried again while they are not ready, at first.
pub const RETRY: Duration = Duration::from_millis(50);
/// The longest pause between two tries of a port or URL.
const MAX_RETRY: Duration = Duration::from_secs(1);
/// How long ports and URLs are tried at the quickest pace before backing off.
const QUICK_RETRIES: Duration = Duration::from_secs(5);

/// `ready` (and `wait`'s `until`): conditions that must all hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::wire_schema::some_condition)]
pub struct ReadySpec {
    /// A regular expression a line of the current run's output must match. A line longer
    /// than 64 KiB is matched on its first 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// A TCP port on this machine that must accept connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u32>,
    /// An `http://` URL that must answer with a 2xx or 3xx status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^http://"))]
    pub http: Option<String>,
    /// How long readiness may take, in seconds (at most a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = MAX_SECONDS), extend("exclusiveMinimum" = 0))]
    pub timeout_s: Option<f64>,
}

impl ReadySpec {
    /// Checks the conditions and returns a probe for them; `at` is the payload path.
    pub fn probe(&self, at: &str) -> Result<Probe> {
        if self.log.is_none() && self.port.is_none() && self.http.is_none() {
            return Err(Error::input_at(
                at,
                format!("{at}: give at least one of log, port, http"),
                "For example {\"log\":\"listening on\"} or {\"port\":3000}.",
            ));
        }
        let log = match &self.log {
            Some(pattern) => Some(Regex::new(pattern).map_err(|e| {
                Error::input_at(
                    format!("{at}.log"),
                    format!("{at}.log: not a regular expression: {e}"),
                    "Give a valid regex, e.g. \"listening on\".",
                )
            })?),
            None => None,
        };
        let port = match self.port {
            Some(port @ 1..=65535) => Some(port as u16),
            Some(port) => {
                return Err(Error::input_at(
                    format!("{at}.port"),
                    format!("{at}.port: {port} is not a TCP port"),
                    "Give a port from 1 to 65535.",
                ));
            }
            None => None,
        };
        let http = self
            .http
            .as_deref()
            .map(|url| HttpTarget::parse(url, &format!("{at}.http")))
            .transpose()?;
        self.timeout(at)?;
        Ok(Probe {
            log,
            log_seen: false,
            port: port.map(|port| NetCheck::new(Target::Port(port))),
            http: http.map(|http| NetCheck::new(Target::Http(Box::new(http)))),
        })
    }

    /// `timeout_s` as a duration, checked: above 0 and at most [`MAX_SECONDS`].
    pub fn timeout(&self, at: &str) -> Result<Option<Duration>> {
        let Some(timeout) = self.timeout_s else {
            return Ok(None);
        };
        match crate::time::seconds(timeout) {
            Some(duration) if timeout > 0.0 && timeout <= MAX_SECONDS => Ok(Some(duration)),
            _ => Err(Error::input_at(
                format!("{at}.timeout_s"),
                format!("{at}.timeout_s: {timeout} is out of range"),
                format!("Give a number of seconds above 0 and at most {MAX_SECONDS}."),
            )),
        }
    }
}

/// The state of some conditions: which already held.
#[derive(Debug)]
pub struct Probe {
    log: Option<Regex>,
    log_seen: bool,
    port: Option<NetCheck>,
    http: Option<NetCheck>,
}

impl Probe {
    /// Whether a log condition still waits for its line.
    pub fn wants_lines(&self) -> bool {
        self.log.is_some() && !self.log_seen
    }

    /// Whether a port or URL is still to be tried.
    pub fn wants_network(&self) -> bool {
        self.checks().any(|check| !check.ok && !check.abandoned)
    }

    /// Feeds one line of the current run's output; `true` when it is the line that met the
    /// log condition.
    pub fn line(&mut self, line: &str) -> bool {
        if let Some(regex) = &self.log
            && !self.log_seen
        {
            self.log_seen = regex.is_match(line);
            return self.log_seen;
        }
        false
    }

    /// Moves the tries of ports and URLs on, without blocking: starts one that is due,
    /// advances those in flight as far as their sockets allow, ends those out of time.
    pub fn poll_network(&mut self, now: Instant) {
        for check in [self.port.as_mut(), self.http.as_mut()]
            .into_iter()
            .flatten()
        {
            check.advance(now);
        }
    }

    /// The sockets of tries in flight, and what each waits for.
    pub fn network_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        self.checks().flat_map(NetCheck::fds).collect()
    }

    /// When [`Probe::poll_network`] is next due without any socket being ready: a try's
    /// time limit, or the next try.
    pub fn network_deadline(&self) -> Option<Instant> {
        self.checks().filter_map(NetCheck::deadline).min()
    }

    /// For a caller without a poll loop of its own (`wait`): moves the tries on for at most
    /// [`RETRY`], waiting on their sockets meanwhile. A try still unanswered then goes on at
    /// the next call; nothing ever blocks longer than the slice.
    pub fn try_network(&mut self) {
        let until = Instant::now() + RETRY;
        loop {
            let now = Instant::now();
            self.poll_network(now);
            let fds = self.network_fds();
            if fds.is_empty() || now >= until {
                return;
            }
            let next = self.network_deadline().map_or(until, |at| at.min(until));
            let mut polled: Vec<PollFd<'_>> = fds
                .iter()
                .map(|(fd, flags)| PollFd::new(*fd, *flags))
                .collect();
            let _ = poll(
                &mut polled,
                poll_timeout(next.saturating_duration_since(now)),
            );
        }
    }

    /// Stops trying ports and URLs (their time ran out): closes the tries in flight.
    pub fn give_up_network(&mut self) {
        for check in [self.port.as_mut(), self.http.as_mut()]
            .into_iter()
            .flatten()
        {
            check.abandon();
        }
    }

    /// Whether every condition holds.
    pub fn ready(&self) -> bool {
        (self.log.is_none() || self.log_seen) && self.checks().all(|check| check.ok)
    }

    fn checks(&self) -> impl Iterator<Item = &NetCheck> {
        [self.port.as_ref(), self.http.as_ref()]
            .into_iter()
            .flatten()
    }
}

/// Whether something on this machine accepts connections on `port` (IPv4 or IPv6 loopback).
/// Blocks up to 200 ms per address: for `start`'s one check before it spawns anything.
pub fn port_accepts(port: u16) -> bool {
    loopback(port)
        .iter()
        .any(|addr| TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).is_ok())
}

fn loopback(port: u16) -> [SocketAddr; 2] {
    [
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
    ]
}

/// What a network condition checks.
#[derive(Debug)]
enum Target {
    Port(u16),
    Http(Box<HttpTarget>),
}

/// One network condition: tried until it holds, one try at a time, each try a set of
/// non-blocking connections (one per address).
#[derive(Debug)]
struct NetCheck {
    target: Target,
    ok: bool,
    /// Its time ran out: no more tries.
    abandoned: bool,
    /// The connections of the try in flight.
    tries: Vec<Connection>,
    /// When the next try may start.
    next_try: Option<Instant>,
    pause: Duration,
    first_try: Option<Instant>,
}

impl NetCheck {
    fn new(target: Target) -> NetCheck {
        NetCheck {
            target,
            ok: false,
            abandoned: false,
            tries: Vec::new(),
            next_try: None,
            pause: RETRY,
            first_try: None,
        }
    }

    fn live(&self) -> bool {
        !self.ok && !self.abandoned
    }

    fn advance(&mut self, now: Instant) {
        if !self.live() {
            return;
        }
        if self.tries.is_empty() && self.next_try.is_none_or(|at| now >= at) {
            self.start(now);
        }
        if self.tries.is_empty() {
            return;
        }
        let request = match &self.target {
            Target::Http(http) => Some(http.request.as_slice()),
            Target::Port(_) => None,
        };
        let mut answered = false;
        self.tries
            .retain_mut(|connection| match connection.advance(now, request) {
                Step::Pending => true,
                Step::Done(ok) => {
                    answered |= ok;
                    false
                }
            });
        if answered {
            self.ok = true;
            self.tries.clear();
        } else if self.tries.is_empty() {
            self.schedule(now);
        }
    }

    /// Starts a try: one connection per address.
    fn start(&mut self, now: Instant) {
        self.first_try.get_or_insert(now);
        let (addrs, limit) = match &mut self.target {
            Target::Port(port) => (loopback(*port).to_vec(), CONNECT_TIMEOUT),
            Target::Http(http) => match http.addrs() {
                Some(addrs) => (addrs, HTTP_TIMEOUT),
                // Still resolving (or it failed): look again at the next try.
                None => (Vec::new(), HTTP_TIMEOUT),
            },
        };
        self.tries = addrs
            .into_iter()
            .filter_map(|addr| Connection::open(addr, now, limit).ok())
            .collect();
        if self.tries.is_empty() {
            self.schedule(now);
        }
    }

    /// The try failed: the next one after a pause that grows once a server has had time
    /// to start (a refused local connect costs microseconds).
    fn schedule(&mut self, now: Instant) {
        if self
            .first_try
            .is_some_and(|first| now.duration_since(first) > QUICK_RETRIES)
        {
            self.pause = (self.pause * 2).min(MAX_RETRY);
        }
        self.next_try = Some(now + self.pause);
    }

    fn abandon(&mut self) {
        self.abandoned = true;
        self.tries.clear();
    }

    fn fds(&self) -> impl Iterator<Item = (BorrowedFd<'_>, PollFlags)> {
        self.tries.iter().map(Connection::interest)
    }

    fn deadline(&self) -> Option<Instant> {
        if !self.live() {
            return None;
        }
        if self.tries.is_empty() {
            return Some(self.next_try.unwrap_or_else(Instant::now));
        }
        self.tries.iter().map(Connection::deadline).min()
    }
}

/// How far one connection got.
enum Step {
    Pending,
    /// Finished: whether it showed the condition holds.
    Done(bool),
}

/// Where one connection is.
#[derive(Debug)]
enum Stage {
    Connecting,
    /// Sending the request; this many bytes are sent.
    Sending(usize),
    /// Reading the status line; this many bytes are read.
    Reading(usize),
}

/// One non-blocking TCP connection of a try.
#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    stage: Stage,
    /// The start of the status line ("HTTP/1.x 2xx").
    head: [u8; 16],
    /// When it is given up: connecting must end within [`CONNECT_TIMEOUT`], the whole
    /// exchange within the try's limit.
    connect_by: Instant,
    limit: Instant,
}

impl Connection {
    fn open(addr: SocketAddr, now: Instant, limit: Duration) -> io::Result<Connection> {
        Ok(Connection {
            stream: connect_nonblocking(addr)?,
            stage: Stage::Connecting,
            head: [0; 16],
            connect_by: now + CONNECT_TIMEOUT,
            limit: now + limit,
        })
    }

    fn interest(&self) -> (BorrowedFd<'_>, PollFlags) {
        let flags = match self.stage {
            Stage::Connecting | Stage::Sending(_) => PollFlags::POLLOUT,
            Stage::Reading(_) => PollFlags::POLLIN,
        };
        (self.stream.as_fd(), flags)
    }

    /// Goes as far as the socket allows now. `request` is the HTTP request to send, or
    /// `None` when connecting is all that is asked (a port).
    fn advance(&mut self, now: Instant, request: Option<&[u8]>) -> Step {
        loop {
            match self.stage {
                Stage::Connecting => {
                    match self.stream.take_error() {
                        Ok(None) => {}
                        Ok(Some(_)) | Err(_) => return Step::Done(false),
                    }
                    // Connected once it has a peer; ENOTCONN while still in progress.
                    match self.stream.peer_addr() {
                        Ok(_) if request.is_none() => return Step::Done(true),
                        Ok(_) => self.stage = Stage::Sending(0),
                        Err(e) if e.kind() == ErrorKind::NotConnected => return self.pending(now),
                        Err(_) => return Step::Done(false),
                    }
                }
                Stage::Sending(sent) => {
                    let request = request.unwrap_or_default();
                    match self.stream.write(&request[sent..]) {
                        Ok(n) if sent + n == request.len() => self.stage = Stage::Reading(0),
                        Ok(0) => return Step::Done(false),
                        Ok(n) => self.stage = Stage::Sending(sent + n),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return self.pending(now),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return Step::Done(false),
                    }
                }
                Stage::Reading(read) if read == self.head.len() => {
                    return Step::Done(success_status(&self.head));
                }
                Stage::Reading(read) => match self.stream.read(&mut self.head[read..]) {
                    Ok(0) => return Step::Done(success_status(&self.head[..read])),
                    Ok(n) => self.stage = Stage::Reading(read + n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return self.pending(now),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Step::Done(false),
                },
            }
        }
    }

    /// Waiting on the socket, unless its time is up.
    fn pending(&self, now: Instant) -> Step {
        if now >= self.deadline() {
            Step::Done(false)
        } else {
            Step::Pending
        }
    }

    /// When it is given up, in its current stage.
    fn deadline(&self) -> Instant {
        match self.stage {
            Stage::Connecting => self.connect_by.min(self.limit),
            Stage::Sending(_) | Stage::Reading(_) => self.limit,
        }
    }
}

/// "HTTP/1.x 2xx" or "HTTP/1.x 3xx".
fn success_status(head: &[u8]) -> bool {
    let status = std::str::from_utf8(head).unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    status.starts_with("HTTP/") && (code.starts_with('2') || code.starts_with('3'))
}

/// A TCP socket connecting to `addr` without blocking (`connect` in progress).
fn connect_nonblocking(addr: SocketAddr) -> io::Result<TcpStream> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket() takes plain integers and returns a new descriptor or -1.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created above and is owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let connected = match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: an all-zero sockaddr_in is valid; the fields set below complete it.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = v4.port().to_be();
            sa.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            // SAFETY: `sa` is a valid sockaddr_in of the length given, alive for the call.
            unsafe {
                libc::connect(
                    fd,
                    (&raw const sa).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(v6) => {
            // SAFETY: an all-zero sockaddr_in6 is valid; the fields set below complete it.
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_port = v6.port().to_be();
            sa.sin6_addr.s6_addr = v6.ip().octets();
            sa.sin6_scope_id = v6.scope_id();
            // SAFETY: `sa` is a valid sockaddr_in6 of the length given, alive for the call.
            unsafe {
                libc::connect(
                    fd,
                    (&raw const sa).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if connected < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(error);
        }
    }
    Ok(TcpStream::from(socket))
}

/// Where an HTTP target's addresses are.
#[derive(Debug)]
enum Addresses {
    Known(Vec<SocketAddr>),
    /// Resolving on a helper thread.
    Resolving(Receiver<Vec<SocketAddr>>),
    /// To resolve (again) at the next try.
    Unresolved,
}

/// An `http://host:port/path` URL, parsed well enough for a GET.
#[derive(Debug)]
pub struct HttpTarget {
    host: String,
    port: u16,
    /// The GET request of the URL's path, as sent.
    request: Vec<u8>,
    addresses: Addresses,
}

impl HttpTarget {
    fn parse(url: &str, at: &str) -> Result<HttpTarget> {
        let invalid = |why: &str| {
            Error::input_at(
                at,
                format!("{at}: {url:?} {why}"),
                "Give an http:// URL on this machine, e.g. \"http://127.0.0.1:3000/health\".",
            )
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| invalid("is not an http:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (
                host,
                port.parse::<u16>().map_err(|_| invalid("has a bad port"))?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() || path.contains(char::is_whitespace) {
            return Err(invalid("is not a valid URL"));
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        // An address or `localhost` needs no resolver: nothing to wait for.
        let addresses = match host.parse::<IpAddr>() {
            Ok(ip) => Addresses::Known(vec![SocketAddr::new(ip, port)]),
            Err(_) if host.eq_ignore_ascii_case("localhost") => {
                Addresses::Known(loopback(port).to_vec())
            }
            Err(_) => Addresses::Unresolved,
        };
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: background-tasks\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        Ok(HttpTarget {
            host,
            port,
            request,
            addresses,
        })
    }

    /// The addresses to try, once known; a name is resolved on a helper thread, since the
    /// resolver may block for seconds.
    fn addrs(&mut self) -> Option<Vec<SocketAddr>> {
        loop {
            match &self.addresses {
                Addresses::Known(addrs) => return Some(addrs.clone()),
                Addresses::Resolving(answer) => match answer.try_recv() {
                    Ok(addrs) if !addrs.is_empty() => self.addresses = Addresses::Known(addrs),
                    Ok(_) | Err(TryRecvError::Disconnected) => {
                        self.addresses = Addresses::Unresolved;
                        return None;
                    }
                    Err(TryRecvError::Empty) => return None,
                },
                Addresses::Unresolved => {
                    let (sender, answer) = mpsc::channel();
                    let (host, port) = (self.host.clone(), self.port);
                    let spawned =
                        std::thread::Builder::new()
                            .name("resolve".into())
                            .spawn(move || {
                                let addrs = (host.as_str(), port)
                                    .to_socket_addrs()
                                    .map(|a| a.take(4).collect())
                                    .unwrap_or_default();
                                let _ = sender.send(addrs);
                            });
                    if spawned.is_err() {
                        return None;
                    }
                    self.addresses = Addresses::Resolving(answer);
                    return None;
                }
            }
        }
    }
}

/// The process listening on a local TCP port, from /proc: `(pid, command name)`.
pub fn port_holder(port: u16) -> Option<(i32, String)> {
    let inodes = listening_inodes(|p| p == port);
    let inode = inodes.first()?.1;
    let target = format!("socket:[{inode}]");
    for pid in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = pid.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str())
        });
        if holds {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            return Some((pid, name.trim().to_owned()));
        }
    }
    None
}

/// `(port, socket inode)` of every listening TCP socket whose port passes `keep`, from
/// /proc/net/tcp and tcp6.
pub fn listening_inodes(keep: impl Fn(u16) -> bool) -> Vec<(u16, u64)> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is "ADDR:PORT" in hex; st 0A is LISTEN; field 9 is the inode.
            let (Some(local), Some(&"0A"), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if let (Some(port), Ok(inode)) = (port, inode.parse::<u64>())
                && keep(port)
                && !found.contains(&(port, inode))
            {
                found.push((port, inode));
            }
        }
    }
    found
}

/// The TCP ports that processes `pids` listen on, sorted.
pub fn ports_of(pids: &[i32]) -> Vec<u16> {
    ports_among(&listening_inodes(|_| true), pids)
}

/// The ports of `listening` (from [`listening_inodes`]) that processes `pids` hold, sorted:
/// a caller asking for many tasks reads the socket tables once.
pub fn ports_among(listening: &[(u16, u64)], pids: &[i32]) -> Vec<u16> {
    if listening.is_empty() {
        return Vec::new();
    }
    let mut ports: Vec<u16> = Vec::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = link
                .to_str()
                .and_then(|l| l.strip_prefix("socket:["))
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|l| l.parse::<u64>().ok())
            else {
                continue;
            };
            for (port, _) in listening.iter().filter(|(_, i)| *i == inode) {
                if !ports.contains(port) {
                    ports.push(*port);
                }
            }
        }
    }
    ports.sort_unstable();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let t = HttpTarget::parse("http://127.0.0.1:8080/health?x=1", "ready.http").expect("url");
        assert!(matches!(t.addresses, Addresses::Known(ref a) if a.len() == 1));
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8080));
        assert!(
            t.request
                .starts_with(b"GET /health?x=1 HTTP/1.0\r\nHost: 127.0.0.1\r\n")
        );
        let t = HttpTarget::parse("http://localhost", "ready.http").expect("url");
        assert_eq!((t.host.as_str(), t.port), ("localhost", 80));
        assert!(t.request.starts_with(b"GET / HTTP/1.0\r\n"));
        assert!(matches!(t.addresses, Addresses::Known(ref a) if a.len() == 2));
        for bad in [
            "https://x",
            "ftp://x",
            "http://",
            "http://h:99999/",
            "http://h/a b",
        ] {
            assert!(HttpTarget::parse(bad, "ready.http").is_err(), "{bad}");
        }
    }

    #[test]
    fn a_probe_needs_every_condition() {
        let spec = ReadySpec {
            log: Some("ready".into()),
            ..ReadySpec::default()
        };
        let mut probe = spec.probe("ready").expect("probe");
        assert!(!probe.ready() && probe.wants_lines() && !probe.wants_network());
        probe.line("starting");
        assert!(!probe.ready());
        probe.line("server ready on :3000");
        assert!(probe.ready());
        assert!(ReadySpec::default().probe("ready").is_err());
    }

    #[test]
    fn network_tries_never_block_on_a_server_that_never_answers() {
        // The kernel accepts connections into the backlog: nobody ever answers them.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let spec = ReadySpec {
            port: Some(u32::from(port)),
            http: Some(format!("http://127.0.0.1:{port}/health")),
            ..ReadySpec::default()
        };
        let mut probe = spec.probe("ready").expect("probe");
        let started = std::time::Instant::now();
        for _ in 0..5 {
            probe.try_network();
        }
        // Five slices of at most RETRY each; a blocking read took 2 s per try.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            !probe.ready() && probe.wants_network(),
            "the URL never answered"
        );
        let waiting = probe.network_fds();
        assert_eq!(waiting.len(), 1, "only the URL's try is in flight");
        assert_eq!(
            waiting[0].1,
            PollFlags::POLLIN,
            "it waits for the status line"
        );
        probe.give_up_network();
        assert!(!probe.wants_network() && probe.network_fds().is_empty());
    }

    #[test]
    fn a_listening_socket_is_found_with_its_holder() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(port_accepts(port));
        let me = std::process::id() as i32;
        assert_eq!(port_holder(port).map(|(pid, _)| pid), Some(me));
        assert_eq!(ports_of(&[me]), vec![port]);
    }
}
