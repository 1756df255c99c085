//! A "quirky" front for the test registry that behaves like the registries
//! operators actually meet (Harbor, Nexus, Artifactory, Quay, GHCR, ECR)
//! where Debian's `docker-registry` does not:
//!
//! - Bearer tokens even for anonymous pulls: every `/v2/` request without
//!   `Authorization: Bearer <token>` gets 401 with a `WWW-Authenticate:
//!   Bearer realm=".../token",service=...,scope=...` challenge; `/token`
//!   hands out a token anonymously.
//! - `tags/list` paginated with a `Link: <...>; rel="next"` header carrying an
//!   opaque cursor (not a tag name), a few tags per page.
//! - `HEAD` on manifests refused with 405 (a GET works).
//! - The first few manifest requests answered 429 with `Retry-After: 1`.
//! - Blob GETs redirected (307) to a second "blob storage" host that
//!   rejects requests carrying an `Authorization` header, as S3 does.
//!
//! Everything else is forwarded to the real registry. [`Stats`] counts what
//! happened so a test can tell the quirks were exercised.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::oci::{Client, MANIFEST_ACCEPT};

/// The token `/token` hands out.
pub const TOKEN: &str = "quirky-token-7f3a";

/// Which quirks are on.
#[derive(Clone, Debug)]
pub struct Quirks {
    pub bearer: bool,
    /// Tags per page of `tags/list` (`None`: no pagination).
    pub page_size: Option<usize>,
    pub refuse_head: bool,
    /// How many manifest requests get 429 first.
    pub throttle_first: usize,
    pub redirect_blobs: bool,
}

impl Default for Quirks {
    fn default() -> Quirks {
        Quirks {
            bearer: true,
            page_size: Some(2),
            refuse_head: true,
            throttle_first: 3,
            redirect_blobs: true,
        }
    }
}

/// What the front saw.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicUsize,
    pub challenges: AtomicUsize,
    pub tokens: AtomicUsize,
    pub pages: AtomicUsize,
    pub heads_refused: AtomicUsize,
    pub throttled: AtomicUsize,
    pub redirects: AtomicUsize,
    pub blob_downloads: AtomicUsize,
    pub blob_auth_rejected: AtomicUsize,
}

impl Stats {
    pub fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::Relaxed)
    }

    pub fn summary(&self) -> String {
        format!(
            "requests={} challenges={} tokens={} pages={} heads_refused={} throttled={} \
             redirects={} blob_downloads={} blob_auth_rejected={}",
            Self::get(&self.requests),
            Self::get(&self.challenges),
            Self::get(&self.tokens),
            Self::get(&self.pages),
            Self::get(&self.heads_refused),
            Self::get(&self.throttled),
            Self::get(&self.redirects),
            Self::get(&self.blob_downloads),
            Self::get(&self.blob_auth_rejected),
        )
    }
}

/// The running front (registry API port) and blob store (second port).
pub struct QuirkyRegistry {
    port: u16,
    blob_port: u16,
    stop: Arc<AtomicBool>,
    pub stats: Arc<Stats>,
}

impl QuirkyRegistry {
    /// Front the registry at `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str, quirks: Quirks) -> Result<QuirkyRegistry> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let upstream = Arc::new(Client::new(upstream));
        let front = TcpListener::bind("127.0.0.1:0")?;
        let blobs = TcpListener::bind("127.0.0.1:0")?;
        let port = front.local_addr()?.port();
        let blob_port = blobs.local_addr()?.port();

        let (u, s) = (upstream.clone(), stats.clone());
        serve(
            blobs,
            stop.clone(),
            Arc::new(move |req: &Request| blob_store(req, &u, &s)),
        )?;
        let (u, s) = (upstream, stats.clone());
        serve(
            front,
            stop.clone(),
            Arc::new(move |req: &Request| front_door(req, &u, &s, &quirks, port, blob_port)),
        )?;
        Ok(QuirkyRegistry {
            port,
            blob_port,
            stop,
            stats,
        })
    }

    /// The registry API port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT` of the registry API.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The blob store's port (redirect target).
    pub fn blob_port(&self) -> u16 {
        self.blob_port
    }
}

impl Drop for QuirkyRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A parsed request.
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn query(&self, key: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| v.to_string())
        })
    }
}

/// A response to write.
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// For HEAD: the Content-Length to announce without a body.
    head_length: Option<u64>,
}

impl Response {
    fn new(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body,
            head_length: None,
        }
    }

    fn header(mut self, k: &str, v: impl Into<String>) -> Response {
        self.headers.push((k.to_string(), v.into()));
        self
    }

    fn error(status: u16, code: &str, message: &str) -> Response {
        let body = json!({"errors": [{"code": code, "message": message}]});
        Response::new(status, serde_json::to_vec(&body).unwrap())
            .header("Content-Type", "application/json")
    }
}

type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

fn serve(listener: TcpListener, stop: Arc<AtomicBool>, handler: Handler) -> Result<()> {
    listener.set_nonblocking(true)?;
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((conn, _)) => {
                    let handler = handler.clone();
                    thread::spawn(move || {
                        let _ = connection(conn, handler);
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(5));
                }
                Err(_) => break,
            }
        }
    });
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        _ => "Status",
    }
}

fn connection(conn: TcpStream, handler: Handler) -> io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return Ok(());
        };
        let mut req = Request {
            method: method.to_string(),
            target: target.to_string(),
            headers: Vec::new(),
        };
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                req.headers
                    .push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        // Pull clients send no request bodies; skip one if announced.
        if let Some(n) = req
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok())
        {
            io::copy(&mut (&mut reader).take(n), &mut io::sink())?;
        }
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let resp = handler(&req);
        let length = resp.head_length.unwrap_or(resp.body.len() as u64);
        let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
        for (k, v) in &resp.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {length}\r\n\r\n"));
        writer.write_all(head.as_bytes())?;
        if req.method != "HEAD" {
            writer.write_all(&resp.body)?;
        }
        writer.flush()?;
        if close {
            return Ok(());
        }
    }
}

use std::io::Read as _;

/// `/v2/<name>/<kind>/<rest>` → (name, kind, rest).
fn split_api_path(path: &str) -> Option<(String, &'static str, String)> {
    let rest = path.strip_prefix("/v2/")?;
    for kind in ["manifests", "blobs", "tags"] {
        let marker = format!("/{kind}/");
        if let Some(i) = rest.rfind(&marker) {
            return Some((
                rest[..i].to_string(),
                kind,
                rest[i + marker.len()..].to_string(),
            ));
        }
    }
    None
}

fn forward(req: &Request, upstream: &Client, target: &str) -> Response {
    let accept = req.header("accept").unwrap_or(MANIFEST_ACCEPT).to_string();
    match upstream.request(&req.method, target, &[("Accept", accept.as_str())], None) {
        Ok(r) => {
            let mut resp = Response::new(r.status, r.body);
            if let Some(ct) = r.content_type {
                resp = resp.header("Content-Type", ct);
            }
            if let Some(d) = r.docker_content_digest {
                resp = resp.header("Docker-Content-Digest", d);
            }
            if req.method == "HEAD" {
                resp.head_length = r.content_length;
            }
            resp
        }
        Err(e) => Response::error(502, "UNAVAILABLE", &format!("{e:#}")),
    }
}

fn front_door(
    req: &Request,
    upstream: &Client,
    stats: &Stats,
    quirks: &Quirks,
    port: u16,
    blob_port: u16,
) -> Response {
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.path().to_string();
    if path == "/token" {
        stats.tokens.fetch_add(1, Ordering::Relaxed);
        let body = json!({"token": TOKEN, "access_token": TOKEN, "expires_in": 300});
        return Response::new(200, serde_json::to_vec(&body).unwrap())
            .header("Content-Type", "application/json");
    }
    if !path.starts_with("/v2/") && path != "/v2" {
        return Response::error(404, "NOT_FOUND", "not a registry path");
    }
    let api = split_api_path(&path);
    if quirks.bearer && req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        stats.challenges.fetch_add(1, Ordering::Relaxed);
        let mut challenge =
            format!("Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"quirky-registry\"");
        if let Some((name, _, _)) = &api {
            challenge.push_str(&format!(",scope=\"repository:{name}:pull\""));
        }
        return Response::error(401, "UNAUTHORIZED", "authentication required")
            .header("WWW-Authenticate", challenge)
            .header("Docker-Distribution-API-Version", "registry/2.0");
    }
    let Some((name, kind, rest)) = api else {
        return forward(req, upstream, &req.target);
    };
    match kind {
        "manifests" => {
            if Stats::get(&stats.throttled) < quirks.throttle_first
                && stats.throttled.fetch_add(1, Ordering::Relaxed) < quirks.throttle_first
            {
                return Response::error(429, "TOOMANYREQUESTS", "slow down")
                    .header("Retry-After", "1");
            }
            if req.method == "HEAD" && quirks.refuse_head {
                stats.heads_refused.fetch_add(1, Ordering::Relaxed);
                let mut r = Response::error(405, "UNSUPPORTED", "HEAD is not allowed here");
                r.head_length = Some(0);
                return r;
            }
            forward(req, upstream, &req.target)
        }
        "blobs" if req.method == "GET" && quirks.redirect_blobs => {
            stats.redirects.fetch_add(1, Ordering::Relaxed);
            Response::new(307, Vec::new()).header(
                "Location",
                format!("http://127.0.0.1:{blob_port}/store/{name}/{rest}?X-Signature=abc123"),
            )
        }
        "tags" if rest == "list" => match quirks.page_size {
            Some(size) => tags_page(req, upstream, stats, &name, size),
            None => forward(req, upstream, &req.target),
        },
        _ => forward(req, upstream, &req.target),
    }
}

/// One page of tags, with an opaque cursor in the `Link` header.
fn tags_page(req: &Request, upstream: &Client, stats: &Stats, name: &str, size: usize) -> Response {
    let tags = match upstream.list_tags(name) {
        Ok(Some(t)) => t,
        Ok(None) => return Response::error(404, "NAME_UNKNOWN", "repository name not known"),
        Err(e) => return Response::error(502, "UNAVAILABLE", &format!("{e:#}")),
    };
    stats.pages.fetch_add(1, Ordering::Relaxed);
    let start = req
        .query("last")
        .and_then(|c| c.strip_prefix("cur").map(str::to_string))
        .and_then(|c| usize::from_str_radix(&c, 16).ok())
        .map(|i| i ^ 0x5a5a)
        .unwrap_or(0);
    let n = req
        .query("n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(size)
        .clamp(1, size);
    let end = (start + n).min(tags.len());
    let page = &tags[start.min(end)..end];
    let body = json!({"name": name, "tags": page});
    let mut resp = Response::new(200, serde_json::to_vec(&body).unwrap())
        .header("Content-Type", "application/json");
    if end < tags.len() {
        let cursor = format!("cur{:x}", end ^ 0x5a5a);
        resp = resp.header(
            "Link",
            format!("</v2/{name}/tags/list?n={n}&last={cursor}>; rel=\"next\""),
        );
    }
    resp
}

fn blob_store(req: &Request, upstream: &Client, stats: &Stats) -> Response {
    if req.header("authorization").is_some() {
        stats.blob_auth_rejected.fetch_add(1, Ordering::Relaxed);
        return Response::error(
            400,
            "InvalidArgument",
            "Only one auth mechanism allowed; the Authorization header must not be sent",
        );
    }
    let Some(rest) = req.path().strip_prefix("/store/") else {
        return Response::error(404, "NoSuchKey", "no such object");
    };
    let Some((name, digest)) = rest.rsplit_once('/') else {
        return Response::error(404, "NoSuchKey", "no such object");
    };
    stats.blob_downloads.fetch_add(1, Ordering::Relaxed);
    match upstream.request("GET", &format!("/v2/{name}/blobs/{digest}"), &[], None) {
        Ok(r) if r.status == 200 => {
            Response::new(200, r.body).header("Content-Type", "application/octet-stream")
        }
        Ok(r) => Response::error(r.status, "NoSuchKey", "no such object"),
        Err(e) => Response::error(502, "InternalError", &format!("{e:#}")),
    }
}
