//! `cargo xtask screenshot [--bin PATH] [--out PATH] [--size WxH]`: the README's picture of
//! `serve`, taken again whenever the page changes.
//!
//! In a scratch state directory it starts real tasks (a Python dev server with a ready
//! condition, asked for a few pages; a pytest-like test run printing coloured results and
//! its progress; a build that fails; a lint that passes), then `serve`, then a headless
//! Chromium through chromedriver, and opens the page on the test run's log. WebDriver is
//! spoken directly (a few JSON requests), so xtask needs no browser crate. Everything it
//! started is ended by pid (chromedriver's own process group) before it returns.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The dev server's port in the picture.
const DEV_PORT: u16 = 5173;

pub fn run(bin: &Path, out: &Path, size: (u32, u32)) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("bt-screenshot-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    std::fs::set_permissions(
        &scratch,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    let work = scratch.join("app");
    std::fs::create_dir_all(&work)?;
    std::fs::write(work.join("index.html"), "<h1>app</h1>\n")?;
    let result = shoot(bin, &scratch, &work, out, size);
    // Stop every task of the scratch directory, then remove it.
    for id in ["web", "tests", "build", "lint"] {
        let _ = Command::new(bin)
            .env("BACKGROUND_TASKS_HOME", scratch.join("state"))
            .args(["stop", &json!({"id": id, "grace_s": 0}).to_string()])
            .output();
    }
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn shoot(bin: &Path, scratch: &Path, work: &Path, out: &Path, size: (u32, u32)) -> Result<()> {
    let state = scratch.join("state");
    let tool = |args: &[&str]| -> Result<Value> {
        let output = Command::new(bin)
            .env("BACKGROUND_TASKS_HOME", &state)
            .current_dir(work)
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        let envelope: Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("{args:?}: {}", String::from_utf8_lossy(&output.stderr)))?;
        Ok(envelope["data"].clone())
    };
    let start = |payload: Value, wait: bool| -> Result<Value> {
        let text = payload.to_string();
        let mut args = vec!["start"];
        if wait {
            args.extend(["--wait", "--timeout", "30"]);
        }
        args.push(&text);
        tool(&args)
    };
    std::fs::write(
        work.join("lint.sh"),
        "printf '\\033[1mruff\\033[0m check .\\nAll checks passed!\\n'\n",
    )?;
    start(
        json!({"id": "lint", "command": "sh", "args": ["lint.sh"], "tags": ["ci"]}),
        true,
    )?;
    std::fs::write(
        work.join("build.sh"),
        concat!(
            "printf '   \\033[1;32mCompiling\\033[0m app v0.1.0 (/srv/app)\\n'\n",
            "printf '\\033[1;31merror[E0308]\\033[0m\\033[1m: mismatched types\\033[0m\\n'\n",
            "printf '  \\033[1;34m-->\\033[0m src/main.rs:4:18\\n'\n",
            "printf '\\033[1;31merror\\033[0m: could not compile `app` due to 1 previous error\\n'\n",
            "exit 101\n"
        ),
    )?;
    start(
        json!({"id": "build", "tags": ["ci"], "command": "sh", "args": ["build.sh"]}),
        true,
    )?;
    start(
        json!({"id": "web", "name": "dev server", "tags": ["dev", "web"],
               "command": "python3", "args": ["-u", "-m", "http.server", DEV_PORT.to_string(), "--bind", "127.0.0.1"],
               "ready": {"port": DEV_PORT}}),
        true,
    )?;
    for path in ["/", "/index.html", "/favicon.ico", "/api/health"] {
        let _ = http_get(DEV_PORT, path);
    }
    let cases = [
        "test_login",
        "test_logout",
        "test_signup",
        "test_reset_password",
        "test_profile",
        "test_avatar_upload",
        "test_search",
        "test_pagination",
        "test_rate_limit",
        "test_websocket",
        "test_export_csv",
        "test_import_csv",
        "test_webhooks",
        "test_billing",
        "test_invoices",
        "test_admin",
        "test_audit_log",
        "test_permissions",
        "test_sessions",
        "test_health",
    ];
    let mut script = String::from(
        "printf '\\033[1m============ test session starts ============\\033[0m\\ncollected 40 items\\n\\n'\n",
    );
    for (i, case) in cases.iter().cycle().take(40).enumerate() {
        let percent = (i + 1) * 100 / 40;
        let (word, colour) = if i == 13 {
            ("FAILED", "31")
        } else {
            ("PASSED", "32")
        };
        script.push_str(&format!(
            "printf 'tests/test_api.py::{case} \\033[{colour}m{word}\\033[0m {percent:>3}%%\\n'\nsleep 0.6\n"
        ));
    }
    std::fs::write(work.join("run-tests.sh"), script)?;
    start(
        json!({"id": "tests", "name": "pytest", "tags": ["ci"], "command": "sh", "args": ["run-tests.sh"]}),
        false,
    )?;

    let mut server = Command::new(bin)
        .env("BACKGROUND_TASKS_HOME", &state)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let shot = (|| -> Result<()> {
        let mut first = String::new();
        BufReader::new(server.stdout.take().context("serve's stdout")?).read_line(&mut first)?;
        let envelope: Value = serde_json::from_str(&first).context("serve's envelope")?;
        let url = envelope["data"]["url"]
            .as_str()
            .context("a url")?
            .to_owned();
        let port = envelope["data"]["port"].as_u64().context("a port")?;
        let driver = Driver::start(scratch)?;
        let png = driver.screenshot(&url, port, size)?;
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, png)?;
        Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    shot
}

/// One GET to a local port (the dev server's access log gets a line).
fn http_get(port: u16, path: &str) -> Result<()> {
    let mut socket = TcpStream::connect(("127.0.0.1", port))?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        socket,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )?;
    let mut sink = Vec::new();
    socket.read_to_end(&mut sink)?;
    Ok(())
}

/// chromedriver in a process group of its own, with a Chromium profile in the scratch
/// directory; dropping it ends the group.
struct Driver {
    child: Child,
    port: u16,
    profile: PathBuf,
}

impl Driver {
    fn start(scratch: &Path) -> Result<Driver> {
        let profile = scratch.join("chromium");
        std::fs::create_dir_all(&profile)?;
        let mut child = Command::new("chromedriver")
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env("XDG_CONFIG_HOME", profile.join("config"))
            .env("XDG_CACHE_HOME", profile.join("cache"))
            .process_group(0)
            .spawn()
            .context("run chromedriver (apt-get install chromium chromium-driver)")?;
        let stdout = child.stdout.take().context("chromedriver's stdout")?;
        let mut driver = Driver {
            child,
            port: 0,
            profile,
        };
        let (sender, port) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("successfully on port ").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = sender.send(port);
                }
            }
        });
        driver.port = port.recv_timeout(Duration::from_secs(30))?.parse()?;
        Ok(driver)
    }

    /// One WebDriver request; the answer's `value`.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let mut socket = TcpStream::connect(("127.0.0.1", self.port))?;
        socket.set_read_timeout(Some(Duration::from_secs(120)))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            socket,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        // Read the head, then exactly the body it announces: the connection may stay open.
        let mut reader = BufReader::new(socket);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let length = head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        });
        let body = match length {
            Some(length) => {
                let mut body = vec![0; length];
                reader.read_exact(&mut body)?;
                String::from_utf8_lossy(&body).into_owned()
            }
            None => {
                let mut body = String::new();
                reader.read_to_string(&mut body)?;
                if head
                    .to_ascii_lowercase()
                    .contains("transfer-encoding: chunked")
                {
                    dechunk(&body)
                } else {
                    body
                }
            }
        };
        let answer: Value =
            serde_json::from_str(&body).with_context(|| format!("{method} {path}: {body}"))?;
        if answer["value"]["error"].is_string() {
            bail!("{method} {path}: {}", answer["value"]);
        }
        Ok(answer["value"].clone())
    }

    fn screenshot(&self, url: &str, port: u64, (width, height): (u32, u32)) -> Result<Vec<u8>> {
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .context("no chromium")?;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", self.profile.display()),
            ]},
            "timeouts": {"script": 60_000, "pageLoad": 30_000, "implicit": 0},
        }}});
        let session = self.call("POST", "/session", Some(&capabilities))?;
        let id = session["sessionId"]
            .as_str()
            .context("a session")?
            .to_owned();
        let at = |rest: &str| format!("/session/{id}{rest}");
        // The token page sets the cookie and moves on to "/" by itself.
        self.call("POST", &at("/url"), Some(&json!({"url": url})))?;
        let home = format!("http://127.0.0.1:{port}/");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.call("GET", &at("/url"), None)?.as_str() != Some(home.as_str()) {
            if Instant::now() > deadline {
                bail!("the page did not move on to {home}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The test run's log open, its progress well under way, the dev server ready.
        let ready = self.call(
            "POST",
            &at("/execute/async"),
            Some(&json!({"args": [], "script": r#"
                const done = arguments[arguments.length - 1];
                const ok = () => {
                  const rows = document.querySelectorAll('#rows .row').length >= 4;
                  const bar = document.querySelector('[data-task-id="tests"] progress');
                  const web = document.querySelector('[data-task-id="web"] .ports a');
                  const lines = document.querySelectorAll('#log .ln').length >= 14;
                  return rows && bar && bar.value >= 35 && web && lines;
                };
                const t0 = performance.now();
                const tick = () => {
                  const open = document.querySelector('[data-task-id="tests"] button.task-id');
                  if (open && document.getElementById('detail').hidden) open.click();
                  if (ok()) { requestAnimationFrame(() => requestAnimationFrame(() => done(true))); }
                  else if (performance.now() - t0 > 40000) {
                    const bar = document.querySelector('[data-task-id="tests"] progress');
                    done({rows: document.querySelectorAll('#rows .row').length, bar: bar && bar.value,
                          ports: !!document.querySelector('[data-task-id="web"] .ports a'),
                          lines: document.querySelectorAll('#log .ln').length, at: location.href});
                  }
                  else { setTimeout(tick, 50); }
                };
                tick();
            "#})),
        )?;
        if ready != Value::Bool(true) {
            bail!("the page never showed the tasks, the progress and the log: {ready}");
        }
        let png = self.call("GET", &at("/screenshot"), None)?;
        let _ = self.call("DELETE", &at(""), None);
        base64(png.as_str().context("a base64 screenshot")?)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group created for chromedriver (it and every
        // Chromium it started).
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 {
            break;
        }
        out.push_str(after.get(..size).unwrap_or(after));
        rest = after.get(size + 2..).unwrap_or("");
    }
    out
}

/// Standard base64 (as WebDriver sends a screenshot) to bytes.
fn base64(text: &str) -> Result<Vec<u8>> {
    let value = |c: u8| -> Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("not base64: {:?}", c as char),
        } as u32)
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Ok(out)
}
