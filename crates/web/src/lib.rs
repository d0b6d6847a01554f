//! The web UI over a case file (`portcullis serve`): incidents → incident → finding → the
//! event as read; campaigns → recipients; exposure; coverage; pivots on hosts, accounts,
//! addresses and rules; filters; full-text search; triage annotations.
//!
//! Safe by default: it binds to loopback; every request needs the random token printed
//! in the URL (kept afterwards in a `SameSite=Strict`, `HttpOnly` cookie); every change is a
//! POST carrying a CSRF token and checked for a same-origin request; every evidence string is
//! escaped by the report crate's writer; pages carry a CSP that allows no script at all.
//! Pages are rendered on the server from the same sections as the report, with no
//! front-end build and nothing loaded from elsewhere.

mod pages;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

/// How to serve a case.
#[derive(Clone, Debug)]
pub struct ServeSettings {
    pub case: PathBuf,
    pub bind: SocketAddr,
    /// Who triage annotations are recorded as.
    pub author: String,
    /// A fixed access token (tests); a random one otherwise.
    pub token: Option<String>,
}

/// What a running server was given, shared by every request.
pub(crate) struct App {
    pub case: PathBuf,
    pub author: String,
    pub token: String,
    pub csrf: String,
}

/// The UI's Content Security Policy: no script from anywhere, styles only from here.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const COOKIE: &str = "portcullis_session";

/// A random token of 32 bytes as hex.
pub fn random_token() -> std::io::Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A bound server, ready to run.
pub struct Server {
    listener: std::net::TcpListener,
    router: Router,
    /// The URL to open, with the access token.
    pub url: String,
    pub addr: SocketAddr,
}

/// Checks the case and binds; the URL is known before serving starts.
pub fn bind(s: &ServeSettings) -> Result<Server, String> {
    portcullis_case::read::CaseReader::open(&s.case).map_err(|e| e.0)?;
    let token = match &s.token {
        Some(t) => t.clone(),
        None => random_token().map_err(|e| format!("no randomness for the access token: {e}"))?,
    };
    let csrf = random_token().map_err(|e| format!("no randomness for the CSRF token: {e}"))?;
    let app = Arc::new(App { case: s.case.clone(), author: s.author.clone(), token: token.clone(), csrf });
    let listener = std::net::TcpListener::bind(s.bind).map_err(|e| format!("cannot listen on {}: {e}", s.bind))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
    let host = if addr.is_ipv6() && !host.starts_with('[') { format!("[{host}]") } else { host };
    let url = format!("http://{host}:{}/?token={token}", addr.port());
    let router = Router::new()
        .route("/", get(pages::overview))
        .route("/incidents/{id}", get(pages::incident))
        .route("/findings", get(pages::findings))
        .route("/findings/{id}", get(pages::finding))
        .route("/entity/{kind}/{value}", get(pages::entity))
        .route("/campaigns/{id}", get(pages::campaign))
        .route("/exposure", get(pages::exposure))
        .route("/posture", get(pages::posture))
        .route("/coverage", get(pages::coverage))
        .route("/report.html", get(pages::report))
        .route("/annotate", post(pages::annotate))
        .route("/static/app.css", get(pages::style))
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app);
    Ok(Server { listener, router, url, addr })
}

impl Server {
    /// Serves until the process is stopped (Ctrl-C ends it cleanly).
    pub fn run(self) -> Result<(), String> {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_io().enable_time().build().map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(self.listener).map_err(|e| e.to_string())?;
            axum::serve(listener, self.router)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .map_err(|e| e.to_string())
        })
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == COOKIE).then(|| v.to_string())
    })
}

fn query_token(q: Option<&str>) -> Option<String> {
    q?.split('&').find_map(|kv| kv.strip_prefix("token=")).map(String::from)
}

/// Equal-time comparison, so the token cannot be guessed byte by byte from timings.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Every request: the access token (cookie, or `?token=` once, then a redirect that drops it
/// from the address bar), and the security headers on every response.
async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let from_cookie = cookie_token(req.headers()).is_some_and(|t| same(&t, &app.token));
    let from_query = query_token(req.uri().query()).is_some_and(|t| same(&t, &app.token));
    let mut resp = if from_query {
        // Drop the token from the address bar and history; the cookie carries it from here.
        let path = req.uri().path().to_string();
        let mut r =
            Response::builder().status(StatusCode::SEE_OTHER).header(header::LOCATION, path).body(Body::empty()).unwrap_or_default();
        let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", app.token);
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    } else if from_cookie {
        next.run(req).await
    } else {
        (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Forbidden: open the address that `portcullis serve` printed (it carries this session's token).\n",
        )
            .into_response()
    };
    let h = resp.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // `same-origin`, not `no-referrer`: with the latter a browser sends `Origin: null` on the UI's own
    // form posts, and the origin check refuses them. Nothing leaks to other sites either way.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_compared_whole() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &b) && !same(&a, &a[..63]));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("x=1; {COOKIE}={a}")).unwrap());
        assert_eq!(cookie_token(&h).as_deref(), Some(a.as_str()));
        assert_eq!(query_token(Some("q=1&token=abc")).as_deref(), Some("abc"));
    }
}
