//! Who may talk to the server, and the headers every answer carries.
//!
//! Each check answers one attack:
//! - the listener binds 127.0.0.1 only: nobody on the network reaches it;
//! - the Host header must be `127.0.0.1:PORT` or `localhost:PORT`: a page on
//!   `evil.example` whose name was rebound to 127.0.0.1 (DNS rebinding) sends
//!   `Host: evil.example:PORT` and is refused, so it can never read an answer;
//! - a secret token (256 random bits, compared in constant time) or the cookie it was
//!   exchanged for: other local users and other local web pages cannot read anything;
//! - the cookie is HttpOnly (no script reads it) and SameSite=Strict (no other site's page
//!   makes the browser send it), and named after the port (cookies ignore ports: two
//!   `serve`s on one machine must not overwrite each other's);
//! - a state-changing request is a POST whose Origin is this page's own origin: with the
//!   SameSite=Strict cookie this is the CSRF defence (a cross-site form or fetch carries a
//!   foreign Origin, or no cookie). SameSite alone is not enough: a page on another port
//!   of 127.0.0.1 is the same *site*, and its requests do carry the cookie;
//! - Fetch Metadata (`Sec-Fetch-Site`): requests from other sites and other ports are
//!   refused, except a top-level navigation to `/`;
//! - a strict Content-Security-Policy: scripts and styles only with this response's nonce,
//!   no eval, no inline handlers, connections only to ourselves, never framed, and
//!   Trusted Types so that any `innerHTML` of task output would throw instead of running;
//! - nosniff, no referrer (the token never leaks through a Referer), no-store caching.

use std::io::{self, Read};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Fills `buf` from the kernel's CSPRNG: getrandom(2), else /dev/urandom.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                // Kernels before 3.17 (or a seccomp filter): read the device instead.
                Some(libc::ENOSYS | libc::EPERM) => {
                    #[expect(
                        clippy::disallowed_methods,
                        reason = "a device, not a file under the state directory"
                    )]
                    let mut device = std::fs::File::open("/dev/urandom")?;
                    return device.read_exact(rest);
                }
                _ => return Err(err),
            }
        }
        // `n` is not negative here (checked above).
        filled += n.unsigned_abs();
    }
    Ok(())
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> io::Result<String> {
    let mut bytes = vec![0u8; n];
    random_bytes(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Equal in time that depends only on the lengths (the token's length is no secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// How a request proved it may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <token>` (scripts). Browsers never add it cross-origin
    /// without a CORS preflight, which this server never approves.
    Bearer,
    /// The session cookie (the page).
    Cookie,
    /// `?token=` in the URL (the first visit; scripts' GETs such as `curl -N events_url`).
    Query,
}

fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

fn cookie_token<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    // No task data, ever: a fixed text that says what to do.
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        why,
    )
        .into_response()
}

/// The request guard: Host, then credentials, then Origin for anything but GET/HEAD.
pub async fn guard(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let Some(host) = host.filter(|h| app.allowed_hosts.iter().any(|a| a.eq_ignore_ascii_case(h)))
    else {
        return refuse(
            StatusCode::FORBIDDEN,
            "Refused: the Host header must be 127.0.0.1:PORT or localhost:PORT.\n",
        );
    };
    let host = host.to_ascii_lowercase();
    // Fetch metadata: a browser says where a request comes from. Another site's page, or
    // another port on 127.0.0.1 (same-site: SameSite ignores ports, so the Strict cookie
    // goes along), may only navigate to "/" (a clicked link); every other request from
    // it is refused before it costs anything (a follow thread, a lifecycle call).
    // Scripts (curl) send no such header.
    let site = request
        .headers()
        .get("sec-fetch-site")
        .map(|v| v.as_bytes());
    if let Some(site) = site
        && site != b"same-origin"
        && site != b"none"
    {
        let navigate = request
            .headers()
            .get("sec-fetch-mode")
            .is_some_and(|m| m.as_bytes() == b"navigate");
        if !(navigate && request.method() == Method::GET && request.uri().path() == "/") {
            return refuse(
                StatusCode::FORBIDDEN,
                "Refused: requests from other sites' pages are not answered.\n",
            );
        }
    }
    let token = app.token.as_bytes();
    let auth = if bearer_token(headers).is_some_and(|t| ct_eq(t.as_bytes(), token)) {
        Some(Auth::Bearer)
    } else if cookie_token(headers, &app.cookie_name).is_some_and(|t| ct_eq(t.as_bytes(), token)) {
        Some(Auth::Cookie)
    } else if query_token(request.uri().query()).is_some_and(|t| ct_eq(t.as_bytes(), token)) {
        Some(Auth::Query)
    } else {
        None
    };
    let Some(auth) = auth else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: open the URL that `background-tasks serve` printed (it carries the token).\n",
        );
    };
    let method = request.method().clone();
    if method != Method::GET && method != Method::HEAD {
        // A browser sends Origin on every POST, same-origin included. Only a Bearer
        // request (a script: no ambient credentials to abuse) may come without one.
        let origin = request.headers().get(header::ORIGIN).map(|o| o.as_bytes());
        let own = format!("http://{host}");
        let ok = match origin {
            Some(o) => o == own.as_bytes(),
            None => auth == Auth::Bearer,
        };
        if !ok {
            return refuse(
                StatusCode::FORBIDDEN,
                "Refused: a POST must come from this page (its Origin must be this server's).\n",
            );
        }
    }
    // The first visit: trade the token for the cookie and take the token out of the
    // address bar (and so out of bookmarks, screenshots and Referer headers).
    //
    // Not with a redirect: when the URL is clicked on another site's page (an agent's web
    // chat), the navigation is cross-site, and the browser does not send a SameSite=Strict
    // cookie on the redirect that follows (nor on a reload of that page): the person sees
    // 401 (seen in Chromium). A page of our own that moves on by itself is a same-origin
    // navigation, which carries the cookie. `location.replace` also drops the token URL
    // from the history.
    if auth == Auth::Query && request.uri().path() == "/" {
        let cookie = format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            app.cookie_name, app.token
        );
        let Ok(nonce) = random_hex(16) else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let body = format!(
            "<!doctype html><meta charset=utf-8><title>background-tasks</title>\
             <script nonce=\"{nonce}\">location.replace(\"/\")</script>\
             <noscript><a href=\"/\">Continue</a></noscript>"
        );
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .header(header::SET_COOKIE, cookie)
            .header(
                header::CONTENT_SECURITY_POLICY,
                format!("default-src 'none'; script-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
            )
            .body(Body::from(body))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    next.run(request).await
}

/// Headers on every answer, refusals included. A handler that set its own CSP (the page,
/// with its nonce) keeps it.
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The page's policy, with this response's nonce.
pub fn page_csp(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_compares() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn random_hex_is_random() {
        let a = random_hex(32).expect("random bytes");
        let b = random_hex(32).expect("random bytes");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
