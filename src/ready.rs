//! Readiness: when a task is ready for use, as opposed to merely running.
//!
//! A condition is a log line matching a regex, a TCP port accepting connections on this
//! machine, or an HTTP URL answering 2xx/3xx; all the conditions given must hold. The same
//! [`Probe`] is driven by the supervisor (for `start`'s `ready`, recorded in the task) and by
//! `wait {until}` (for conditions asked later). Log lines are fed in as they are read, so a
//! log condition sees only the current run's output; ports and URLs are tried again on a
//! short timer, since nothing announces that a socket started listening.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::payload::input::MAX_SECONDS;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// How often ports and URLs are tried again while they are not ready.
pub const RETRY: Duration = Duration::from_millis(50);

/// `ready` (and `wait`'s `until`): conditions that must all hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::schema::some_condition)]
pub struct ReadySpec {
    /// A regular expression a line of the current run's output must match.
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
            port,
            http,
            log_seen: false,
            port_open: false,
            http_ok: false,
        })
    }
}

impl ReadySpec {
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
    port: Option<u16>,
    http: Option<HttpTarget>,
    log_seen: bool,
    port_open: bool,
    http_ok: bool,
}

impl Probe {
    /// Whether a log condition still waits for its line.
    pub fn wants_lines(&self) -> bool {
        self.log.is_some() && !self.log_seen
    }

    /// Whether a port or URL is still to be tried.
    pub fn wants_network(&self) -> bool {
        (self.port.is_some() && !self.port_open) || (self.http.is_some() && !self.http_ok)
    }

    /// Feeds one line of the current run's output.
    pub fn line(&mut self, line: &str) {
        if let Some(regex) = &self.log
            && !self.log_seen
        {
            self.log_seen = regex.is_match(line);
        }
    }

    /// Tries the port and URL that have not answered yet.
    pub fn try_network(&mut self) {
        if let Some(port) = self.port
            && !self.port_open
        {
            self.port_open = port_accepts(port);
        }
        if let Some(http) = &self.http
            && !self.http_ok
        {
            self.http_ok = http.answers();
        }
    }

    /// Whether every condition holds.
    pub fn ready(&self) -> bool {
        (self.log.is_none() || self.log_seen)
            && (self.port.is_none() || self.port_open)
            && (self.http.is_none() || self.http_ok)
    }
}

/// Whether something on this machine accepts connections on `port` (IPv4 or IPv6 loopback).
pub fn port_accepts(port: u16) -> bool {
    let addrs: [SocketAddr; 2] = [
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
    ];
    addrs
        .iter()
        .any(|addr| TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).is_ok())
}

/// An `http://host:port/path` URL, parsed well enough for a GET.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    host: String,
    port: u16,
    path: String,
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
        Ok(HttpTarget {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// Whether a GET answers with a 2xx or 3xx status.
    fn answers(&self) -> bool {
        let Some(addr) = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
        else {
            return false;
        };
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: background-tasks\r\nConnection: close\r\n\r\n",
            self.path, self.host
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 16];
        let mut read = 0;
        while read < head.len() {
            match stream.read(&mut head[read..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
        // "HTTP/1.x 2xx" or "HTTP/1.x 3xx".
        let status = std::str::from_utf8(&head[..read]).unwrap_or_default();
        let code = status.split_whitespace().nth(1).unwrap_or_default();
        status.starts_with("HTTP/") && (code.starts_with('2') || code.starts_with('3'))
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
    let listening = listening_inodes(|_| true);
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
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/health?x=1")
        );
        let t = HttpTarget::parse("http://localhost", "ready.http").expect("url");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("localhost", 80, "/")
        );
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
    fn a_listening_socket_is_found_with_its_holder() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(port_accepts(port));
        let me = std::process::id() as i32;
        assert_eq!(port_holder(port).map(|(pid, _)| pid), Some(me));
        assert_eq!(ports_of(&[me]), vec![port]);
    }
}
