//! `serve` in a real browser: headless Chromium driven through chromedriver (WebDriver),
//! with tasks started and ended by the CLI.
//!
//! `.ci/run` installs Debian's `chromium` and `chromium-driver`; with `CI` set, their absence
//! fails the test (it must not pass by skipping), elsewhere it is a note. Waits run in the
//! page (a condition re-checked on every DOM change, with a bound), never as sleeps. The
//! [`Browser`] guard ends chromedriver and every Chromium it started (the process group it
//! created, then whatever names its unique profile), panics included.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::{Feed, Server, request};
use crate::support::{Sandbox, note};

/// Bounds a wait in the page (below the session's script timeout, so a condition that never
/// holds answers `false` instead of a script timeout error).
const PAGE_HANG: Duration = Duration::from_secs(30);

/// chromedriver and the Chromium processes it starts, in a process group of our own.
#[derive(Debug)]
struct Browser {
    driver: Child,
    webdriver_url: String,
    chromium: PathBuf,
    profile: PathBuf,
}

fn program(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

impl Browser {
    /// Starts chromedriver on a free port; `None` (with a note) when Chromium or
    /// chromedriver is not installed, a failure in CI.
    fn start(sandbox: &Sandbox) -> Option<Browser> {
        let found = (
            program("CHROMEDRIVER", &["/usr/bin/chromedriver"]),
            program(
                "CHROMIUM",
                &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
            ),
        );
        let (Some(driver), Some(chromium)) = found else {
            assert!(
                std::env::var_os("CI").is_none(),
                "chromium and chromedriver must be installed in CI (.ci/run installs them)"
            );
            note("note: skipped: chromium or chromedriver is not installed");
            return None;
        };
        // Unique to this test: two Chromiums on one profile refuse each other.
        let profile = sandbox.root().join("chromium");
        std::fs::create_dir_all(&profile).expect("the browser profile");
        let mut driver = Command::new(driver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env("HOME", sandbox.home())
            // Chromium's crash handler leaves the process group (it starts its own
            // session) and writes under $XDG_CONFIG_HOME: inside the profile, it stays
            // out of the home directory and is findable by the profile's path.
            .env("XDG_CONFIG_HOME", profile.join("config"))
            .env("XDG_CACHE_HOME", profile.join("cache"))
            .process_group(0)
            .spawn()
            .expect("spawn chromedriver");
        let stdout = driver.stdout.take().expect("chromedriver's stdout");
        let (sender, port) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // "ChromeDriver was started successfully on port 39791."
                if let Some(rest) = line.split("successfully on port ").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = sender.send(port);
                }
            }
        });
        // The guard first: a chromedriver that never says its port is still ended.
        let mut browser = Browser {
            driver,
            webdriver_url: String::new(),
            chromium,
            profile,
        };
        let port = port
            .recv_timeout(PAGE_HANG)
            .expect("chromedriver says its port");
        browser.webdriver_url = format!("http://127.0.0.1:{port}");
        Some(browser)
    }

    async fn client(&self) -> Client {
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,860",
        ]
        .map(str::to_owned)
        .into();
        args.push(format!("--user-data-dir={}", self.profile.display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": self.chromium, "args": args},
            // Above every wait in the page (PAGE_HANG).
            "timeouts": {"script": 120_000, "pageLoad": 30_000, "implicit": 0},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.webdriver_url)
            .await
            .expect("a WebDriver session")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group we created holds chromedriver and every Chromium process it started.
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
        }
        let _ = self.driver.wait();
        // What left the group (the crash handler) names our unique profile.
        let needle = self.profile.display().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = pids_naming(&needle);
            if left.is_empty() || Instant::now() > deadline {
                for pid in left {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20)); // bounded by the deadline
        }
    }
}

/// Live processes whose command line contains `needle`.
fn pids_naming(needle: &str) -> Vec<i32> {
    crate::support::processes()
        .into_iter()
        .filter(|p| p.state != 'Z')
        .filter(|p| {
            std::fs::read(format!("/proc/{}/cmdline", p.pid))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .map(|p| p.pid)
        .collect()
}

/// Waits in the page until `condition` (a JavaScript expression) holds, re-checking it on
/// every DOM change: no polling interval, no sleep. Whether it held within [`PAGE_HANG`].
async fn wait_js(client: &Client, condition: &str) -> bool {
    let script = format!(
        r#"
        const done = arguments[arguments.length - 1];
        const check = () => {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }};
        if (check()) {{ done(true); return; }}
        const obs = new MutationObserver(() => {{ if (check()) {{ obs.disconnect(); clearTimeout(t); done(true); }} }});
        obs.observe(document, {{subtree: true, childList: true, characterData: true, attributes: true}});
        const t = setTimeout(() => {{ obs.disconnect(); done(check()); }}, {ms});
        "#,
        ms = PAGE_HANG.as_millis()
    );
    client
        .execute_async(&script, vec![])
        .await
        .expect("a script in the page")
        .as_bool()
        .unwrap_or(false)
}

/// Waits until the browser is at `url` (across a navigation no script survives).
async fn wait_url(client: &Client, url: &str) {
    let deadline = Instant::now() + PAGE_HANG;
    loop {
        let now = client.current_url().await.expect("the current url");
        if now.as_str() == url {
            return;
        }
        assert!(Instant::now() < deadline, "still at {now}, not {url}");
        tokio::task::yield_now().await;
    }
}

fn status_is(id: &str, status: &str) -> String {
    format!(
        r#"(document.querySelector('[data-task-id="{id}"] .status') || {{}}).textContent === '{status}'"#
    )
}

#[tokio::test(flavor = "current_thread")]
async fn the_page_shows_tasks_live_streams_a_log_and_stops_a_task() {
    let sandbox = Sandbox::new();
    let Some(browser) = Browser::start(&sandbox) else {
        return;
    };
    let profile = browser.profile.display().to_string();
    let mut web = Feed::start(&sandbox, "web", &["dev"]);
    let server = Server::start(&sandbox, &[]);
    let client = browser.client().await;

    // The token URL sets the cookie and moves on to "/" without the token.
    client.goto(&server.url).await.expect("open the url");
    wait_url(&client, &format!("{}/", server.origin())).await;
    // Marks this page load: a reload would lose it.
    client
        .execute("window.__loaded = 1;", vec![])
        .await
        .expect("mark the page");

    // A task already there: its id on the row, its status as text.
    assert!(wait_js(&client, &status_is("web", "running")).await);
    // A task started after the page loaded appears, and its end shows live.
    let job = Feed::start(&sandbox, "job", &["ci"]);
    assert!(wait_js(&client, &status_is("job", "running")).await);
    job.close();
    assert!(wait_js(&client, &status_is("job", "exited")).await);

    // Open web's log: lines arrive as they are written, ANSI colours become styles, and
    // markup stays text.
    client
        .find(Locator::Css(r#"[data-task-id="web"] button.task-id"#))
        .await
        .expect("web's row")
        .click()
        .await
        .expect("open web");
    web.line("\x1b[31mhello red\x1b[0m <b>not bold</b> <img src=x onerror=\"window.__xss=1\">");
    web.line("\x1b[38;2;10;200;30mtruecolor\x1b[0m");
    assert!(
        wait_js(
            &client,
            "[...document.querySelectorAll('#log .ln')].some(l => l.textContent.includes('truecolor'))"
        )
        .await
    );
    let checks = client
        .execute(
            r#"
            const log = document.getElementById('log');
            const red = [...log.querySelectorAll('span.f1')].find(s => s.textContent === 'hello red');
            const tc = [...log.querySelectorAll('span')].find(s => s.textContent === 'truecolor');
            return {
              red: !!red,
              truecolor: tc ? getComputedStyle(tc).color : null,
              elements_from_text: log.querySelectorAll('b, img, script').length,
              xss: window.__xss === undefined ? null : window.__xss,
              markup_as_text: log.textContent.includes('<b>not bold</b>'),
            };
            "#,
            vec![],
        )
        .await
        .expect("look at the log");
    assert_eq!(checks["red"], true, "{checks}");
    assert_eq!(checks["truecolor"], "rgb(10, 200, 30)", "{checks}");
    assert_eq!(checks["elements_from_text"], 0, "{checks}");
    assert_eq!(checks["xss"], Value::Null, "{checks}");
    assert_eq!(checks["markup_as_text"], true, "{checks}");
    // Trusted Types: markup sinks throw on this page.
    let sink = client
        .execute(
            "try { document.body.insertAdjacentHTML('beforeend', '<i>x</i>'); return 'allowed'; } catch (e) { return e.name; }",
            vec![],
        )
        .await
        .expect("try a markup sink");
    assert_eq!(sink, "TypeError");

    // Stop from the row: the task ends as `stop` ends it, and the page says so live.
    client
        .find(Locator::Css(
            r#"[data-task-id="web"] button[data-action="stop"]"#,
        ))
        .await
        .expect("web's stop button")
        .click()
        .await
        .expect("press stop");
    assert!(wait_js(&client, &status_is("web", "killed")).await);
    assert!(
        wait_js(
            &client,
            "[...document.querySelectorAll('#log .sep')].some(l => l.textContent.includes('ended: killed'))"
        )
        .await
    );
    let task = sandbox.status("web");
    assert_eq!(task["status"], "killed");
    assert_eq!(task["reason"], "stop");
    let reloaded = client
        .execute("return window.__loaded === 1;", vec![])
        .await
        .expect("look at the mark");
    assert_eq!(reloaded, true, "the page was not reloaded");

    client.close().await.expect("end the session");
    drop(browser);
    assert!(
        pids_naming(&profile).is_empty(),
        "chromium left behind: {:?}",
        pids_naming(&profile)
    );
}

/// A hostile page on another port of 127.0.0.1 (a task's own dev server, say) is the same
/// *site* as the page, so the Strict cookie goes along with its requests: its POSTs must
/// still be refused (Origin, Fetch Metadata).
#[tokio::test(flavor = "current_thread")]
async fn a_page_on_another_local_port_cannot_stop_a_task() {
    let sandbox = Sandbox::new();
    let Some(browser) = Browser::start(&sandbox) else {
        return;
    };
    sandbox.start(&json!({"id": "web", "shell": "sleep 600"}));
    let server = Server::start(&sandbox, &[]);
    let hostile = std::net::TcpListener::bind("127.0.0.1:0").expect("a hostile server");
    let hostile_port = hostile.local_addr().expect("its port").port();
    let target = format!("{}/api/tasks/web/stop", server.origin());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut connection in hostile.incoming().flatten().take(8) {
            let mut buffer = [0u8; 4096];
            let _ = connection.read(&mut buffer);
            let body = format!(
                "<!doctype html><form id=f method=post action=\"{target}\"></form><script>\
                 window.results = [];\
                 fetch('{target}', {{method: 'POST', mode: 'no-cors', credentials: 'include', body: 'x'}})\
                   .then(() => results.push('fetch sent'), e => results.push('fetch ' + e));\
                 </script>"
            );
            let _ = write!(
                connection,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let client = browser.client().await;
    // First the real page, so the browser holds the cookie.
    client.goto(&server.url).await.expect("open the url");
    assert!(wait_js(&client, &status_is("web", "running")).await);
    // Then the hostile page: a no-cors fetch with credentials, then a form POST.
    client
        .goto(&format!("http://127.0.0.1:{hostile_port}/"))
        .await
        .expect("open the hostile page");
    assert!(wait_js(&client, "window.results && window.results.length === 1").await);
    client
        .execute("document.getElementById('f').submit()", vec![])
        .await
        .expect("submit the form");
    let deadline = Instant::now() + PAGE_HANG;
    loop {
        let url = client.current_url().await.expect("the current url");
        if url.as_str().contains("/api/tasks/web/stop") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the form did not navigate: {url}"
        );
        tokio::task::yield_now().await;
    }
    let text = client
        .execute("return document.body.innerText", vec![])
        .await
        .expect("the answer's text");
    assert!(
        text.as_str().is_some_and(|t| t.starts_with("Refused")),
        "{text}"
    );
    // Nothing was stopped.
    let response = request(
        server.port,
        "GET",
        "/api/tasks/web",
        &[("Cookie", &server.cookie())],
    );
    assert_eq!(response.json()["status"], "running");
    assert_eq!(sandbox.status("web")["status"], "running");
    client.close().await.expect("end the session");
}
