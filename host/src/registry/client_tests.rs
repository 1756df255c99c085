//! The client against a small scripted HTTP server on 127.0.0.1: the
//! behaviours of real registries that Debian's registry does not show
//! (token auth, opaque pagination, refused HEAD, 429, redirects to storage).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::blobs::BlobFetch;
use super::manifests::{Descriptor, ImageRef, OCI_MANIFEST};
use super::*;
use crate::cancel::Cancel;
use crate::events::{Events, LogLevel};
use crate::fs::Confined;
use crate::temps::TempTracker;
use crate::testutil::TempDir;

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: HashMap<String, String>,
}

/// An answer: status, headers, body (sent for GET, announced for HEAD).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// How long the server waits before answering.
    delay: Duration,
    /// Reset the connection (RST) instead of answering.
    reset: bool,
}

fn answer(status: u16, body: &[u8]) -> Answer {
    Answer {
        status,
        headers: vec![],
        body: body.to_vec(),
        delay: Duration::ZERO,
        reset: false,
    }
}

fn reset() -> Answer {
    Answer {
        reset: true,
        ..answer(0, b"")
    }
}

/// A 200 that announces all of `body` but sends only its first `cut` bytes
/// before closing the connection.
fn cut_short(body: &[u8], cut: usize) -> Answer {
    answer(200, &body[..cut]).header("Content-Length", &body.len().to_string())
}

impl Answer {
    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }

    fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Default::default();
        let handler: Handler = Arc::new(handler);
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (handler, log) = (Arc::clone(&handler), Arc::clone(&log));
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let mut lines = text.split("\r\n");
                    let mut first = lines.next().unwrap_or("").split(' ');
                    let (method, target) = (
                        first.next().unwrap_or("").to_owned(),
                        first.next().unwrap_or("").to_owned(),
                    );
                    let headers = lines
                        .take_while(|l| !l.is_empty())
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let req = Seen {
                        method,
                        target,
                        headers,
                    };
                    log.lock().unwrap().push(req.clone());
                    let a = handler(&req);
                    tokio::time::sleep(a.delay).await;
                    if a.reset {
                        let _ = sock.set_zero_linger();
                        return;
                    }
                    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", a.status);
                    if !a
                        .headers
                        .iter()
                        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    {
                        head.push_str(&format!("Content-Length: {}\r\n", a.body.len()));
                    }
                    for (k, v) in &a.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = sock.write_all(head.as_bytes()).await;
                    if req.method != "HEAD" {
                        let _ = sock.write_all(&a.body).await;
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        Server { addr, seen }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn client_for(server: &Server, credentials: Option<Credentials>) -> (Arc<Client>, Cancel) {
    let mut config = RegistryConfig::new(Source {
        host: server.host(),
        root: "root".into(),
    });
    config.insecure = true;
    config.credentials = credentials;
    config.retry = RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    };
    let cancel = Cancel::new();
    let events = Events::new(LogLevel::Warn, cancel.clone());
    (
        Arc::new(Client::new(config, cancel.clone(), events).unwrap()),
        cancel,
    )
}

fn creds() -> Option<Credentials> {
    Some(Credentials {
        username: "u".into(),
        password: "p".into(),
    })
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_flow_end_to_end() {
    let realm: Arc<Mutex<String>> = Default::default();
    let r = Arc::clone(&realm);
    let server = Server::start(move |req| {
        if req.target.starts_with("/token") {
            assert_eq!(
                req.headers.get("authorization").map(String::as_str),
                Some("Basic dTpw")
            );
            assert!(req.target.contains("service=reg"), "{}", req.target);
            return answer(200, br#"{"access_token":"T"}"#);
        }
        if req.headers.get("authorization").map(String::as_str) != Some("Bearer T") {
            let realm = r.lock().unwrap().clone();
            return answer(401, b"").header(
                "WWW-Authenticate",
                &format!("Bearer realm=\"{realm}\",service=\"reg\""),
            );
        }
        answer(200, br#"{"name":"x","tags":["a","b"]}"#)
    })
    .await;
    *realm.lock().unwrap() = format!("http://{}/token", server.host());
    let (client, _) = client_for(&server, creds());

    assert_eq!(
        client.list_tags("packages", None).await.unwrap(),
        vec!["a", "b"]
    );
    assert_eq!(
        client.list_tags("packages", None).await.unwrap(),
        vec!["a", "b"]
    );
    assert_eq!(
        client.list_tags("packages/x", None).await.unwrap(),
        vec!["a", "b"]
    );
    let tokens = server
        .seen()
        .iter()
        .filter(|s| s.target.starts_with("/token"))
        .count();
    // One token per scope; the second scope is fetched up front.
    assert_eq!(tokens, 2);
    let challenged = server
        .seen()
        .iter()
        .filter(|s| {
            s.headers
                .get("authorization")
                .is_some_and(|a| a.starts_with("Basic"))
                && !s.target.starts_with("/token")
        })
        .count();
    assert_eq!(
        challenged, 1,
        "only the first request goes out with basic credentials"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_token_and_refused_credentials() {
    let realm: Arc<Mutex<String>> = Default::default();
    let r = Arc::clone(&realm);
    let server = Server::start(move |req| {
        if req.target.starts_with("/token") {
            assert!(!req.headers.contains_key("authorization"));
            return answer(
                401,
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"no anonymous pulls"}]}"#,
            );
        }
        let realm = r.lock().unwrap().clone();
        answer(401, b"").header("WWW-Authenticate", &format!("Bearer realm=\"{realm}\""))
    })
    .await;
    *realm.lock().unwrap() = format!("http://{}/token", server.host());
    let (client, _) = client_for(&server, None);
    let e = client.list_tags("packages", None).await.unwrap_err();
    assert_eq!(e.kind, Kind::Unauthorized, "{e}");
    assert!(e.message.contains("no anonymous pulls"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_follows_relative_and_absolute_links_and_stops_on_a_loop() {
    let host: Arc<Mutex<String>> = Default::default();
    let h = Arc::clone(&host);
    let server = Server::start(move |req| {
        let host = h.lock().unwrap().clone();
        match req.target.as_str() {
            "/v2/root/packages/tags/list?n=1000" => answer(200, br#"{"tags":["a"]}"#).header(
                "Link",
                "</v2/root/packages/tags/list?last=a&n=1000>; rel=\"next\"",
            ),
            "/v2/root/packages/tags/list?last=a&n=1000" => answer(200, br#"{"tags":["b"]}"#)
                .header(
                    "Link",
                    &format!(
                        "<http://{host}/v2/root/packages/tags/list?page=opaque>; rel=\"next\""
                    ),
                ),
            "/v2/root/packages/tags/list?page=opaque" => answer(200, br#"{"tags":["c"]}"#)
                .header("Link", "</v2/root/packages/tags/list?n=1000>; rel=\"next\""),
            other => answer(500, other.as_bytes()),
        }
    })
    .await;
    *host.lock().unwrap() = server.host();
    let (client, _) = client_for(&server, None);
    assert_eq!(
        client.list_tags("packages", None).await.unwrap(),
        vec!["a", "b", "c"]
    );
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_repository_and_timeouts() {
    let server = Server::start(|req| {
        let delay = if req.target.contains("slow") { Duration::from_millis(300) } else { Duration::ZERO };
        answer(404, br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#).after(delay)
    })
    .await;
    let (client, _) = client_for(&server, None);
    let e = client.list_tags("packages", None).await.unwrap_err();
    assert_eq!(e.kind, Kind::NotFound);
    assert!(e.message.contains("NAME_UNKNOWN"), "{e}");
    let e = client
        .list_tags("slow", Some(Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::Timeout);
    assert!(e.message.contains("timed out"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_timeout_is_reported_as_a_timeout() {
    let server =
        Server::start(|_| answer(200, br#"{"tags":[]}"#).after(Duration::from_millis(400))).await;
    let mut config = RegistryConfig::new(Source {
        host: server.host(),
        root: "root".into(),
    });
    config.insecure = true;
    config.read_timeout = Duration::from_millis(100);
    config.retry = RetryPolicy {
        attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
    };
    let cancel = Cancel::new();
    let client = Client::new(config, cancel.clone(), Events::new(LogLevel::Warn, cancel)).unwrap();
    let e = client.list_tags("a", None).await.unwrap_err();
    assert_eq!(e.kind, Kind::Timeout, "{e}");
    assert_eq!(server.seen().len(), 2, "a timeout is retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_429_and_5xx_then_gives_up() {
    let count = Arc::new(Mutex::new(0));
    let c = Arc::clone(&count);
    let server = Server::start(move |req| {
        let mut n = c.lock().unwrap();
        *n += 1;
        if req.target.contains("flaky") && *n == 1 {
            return answer(429, b"").header("Retry-After", "0");
        }
        if req.target.contains("flaky") && *n == 2 {
            return answer(503, b"");
        }
        if req.target.contains("down") {
            return answer(502, b"bad gateway");
        }
        answer(200, br#"{"tags":["ok"]}"#)
    })
    .await;
    let (client, _) = client_for(&server, None);
    assert_eq!(client.list_tags("flaky", None).await.unwrap(), vec!["ok"]);
    *count.lock().unwrap() = 0;
    let e = client.list_tags("down", None).await.unwrap_err();
    assert_eq!(e.kind, Kind::Other);
    assert!(e.message.contains("502"), "{e}");
    assert_eq!(*count.lock().unwrap(), 3, "three attempts in all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_uses_head_and_falls_back_to_get() {
    let manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#.to_vec();
    let digest = sha(&manifest);
    let (m, d) = (manifest.clone(), digest.clone());
    let server = Server::start(move |req| {
        let path = req.target.as_str();
        assert!(
            req.headers
                .get("accept")
                .is_some_and(|a| a.contains(OCI_MANIFEST))
        );
        match (req.method.as_str(), path) {
            ("HEAD", "/v2/root/good/manifests/v1") => answer(200, &m)
                .header("Docker-Content-Digest", &d)
                .header("Content-Type", OCI_MANIFEST),
            ("HEAD", p) if p.starts_with("/v2/root/nohead/") => answer(405, b""),
            ("GET", "/v2/root/nohead/manifests/v1") => {
                answer(200, &m).header("Content-Type", "application/json")
            }
            _ => answer(404, b""),
        }
    })
    .await;
    let (client, _) = client_for(&server, None);
    let refs = [
        ImageRef {
            repo: "good".into(),
            reference: "v1".into(),
        },
        ImageRef {
            repo: "nohead".into(),
            reference: "v1".into(),
        },
        ImageRef {
            repo: "nohead".into(),
            reference: "v2".into(),
        },
        ImageRef {
            repo: "good".into(),
            reference: "missing".into(),
        },
        ImageRef {
            repo: "../evil".into(),
            reference: "v1".into(),
        },
    ];
    let got = client.resolve(&refs).await;
    let want = Descriptor {
        media_type: OCI_MANIFEST.into(),
        digest: digest.clone(),
        size: manifest.len() as u64,
    };
    assert_eq!(got[0], Ok(Some(want.clone())));
    assert_eq!(got[1], Ok(Some(want)));
    assert_eq!(got[2], Ok(None));
    assert_eq!(got[3], Ok(None));
    assert_eq!(got[4].as_ref().unwrap_err().kind, Kind::Other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_manifests_are_checked_against_a_requested_digest() {
    let manifest =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#.to_vec();
    let m = manifest.clone();
    let server = Server::start(move |_| answer(200, &m).header("Content-Type", OCI_MANIFEST)).await;
    let (client, _) = client_for(&server, None);
    let good = sha(&manifest);
    let bad = format!("sha256:{}", "0".repeat(64));
    let got = client
        .fetch_manifests(&[
            ImageRef {
                repo: "a".into(),
                reference: good.clone(),
            },
            ImageRef {
                repo: "a".into(),
                reference: bad,
            },
            ImageRef {
                repo: "a".into(),
                reference: "tag".into(),
            },
        ])
        .await;
    assert_eq!(got[0].as_ref().unwrap().descriptor.digest, good);
    assert_eq!(got[0].as_ref().unwrap().body, manifest);
    assert_eq!(got[1].as_ref().unwrap_err().kind, Kind::Integrity);
    assert_eq!(
        got[2].as_ref().unwrap().descriptor.size,
        manifest.len() as u64
    );
}

fn bundle(dir: &TempDir) -> Arc<Confined> {
    let root = dir.path().join("bundle");
    std::fs::create_dir_all(root.join("w.tmp")).unwrap();
    Arc::new(Confined::new(&root, Arc::new(TempTracker::new(&root))).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_verified_and_redirects_drop_credentials() {
    let blob = b"layer bytes".to_vec();
    let storage = {
        let b = blob.clone();
        Server::start(move |req| {
            assert!(
                !req.headers.contains_key("authorization"),
                "credentials leaked to storage"
            );
            if req.target.contains("short") {
                answer(200, &b[..4])
            } else {
                answer(200, &b)
            }
        })
        .await
    };
    let storage_host = storage.host();
    let registry = Server::start(move |req| {
        assert_eq!(
            req.headers.get("authorization").map(String::as_str),
            Some("Basic dTpw")
        );
        let kind = if req.target.contains(&"1".repeat(64)) {
            "short"
        } else {
            "full"
        };
        answer(307, b"").header("Location", &format!("http://{storage_host}/{kind}"))
    })
    .await;
    let dir = TempDir::new("blobs");
    let fs = bundle(&dir);
    let (client, _) = client_for(&registry, creds());
    let good = sha(&blob);
    let short = format!("sha256:{}", "1".repeat(64));
    let wrong = format!("sha256:{}", "0".repeat(64));
    let fetch = |digest: &str, size: u64, path: &str| BlobFetch {
        repo: "a".into(),
        digest: digest.into(),
        size,
        path: path.into(),
    };
    let got = client
        .fetch_blobs(
            &fs,
            vec![
                fetch(&good, blob.len() as u64, "w.tmp/good"),
                fetch(&wrong, blob.len() as u64, "w.tmp/wrong"),
                fetch(&good, blob.len() as u64 + 1, "w.tmp/size"),
                fetch(&short, blob.len() as u64, "w.tmp/short"),
                fetch(&good, blob.len() as u64, "../escape"),
            ],
        )
        .await;
    assert_eq!(got[0], Ok(()));
    assert_eq!(std::fs::read(fs.root().join("w.tmp/good")).unwrap(), blob);
    for (i, r) in got.iter().enumerate().skip(1).take(3) {
        assert_eq!(r.as_ref().unwrap_err().kind, Kind::Integrity, "#{i}: {r:?}");
    }
    assert_eq!(
        got[4].as_ref().unwrap_err().kind,
        Kind::Filesystem(error::FsKind::Denied)
    );
    let mut left = std::fs::read_dir(fs.root().join("w.tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<Vec<_>>();
    left.sort();
    assert_eq!(left, vec!["good"], "no partial or temporary files remain");
    assert!(!dir.path().join("escape").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_is_never_not_found() {
    let server = Server::start(|_| answer(404, b"").after(Duration::from_millis(500))).await;
    let (client, cancel) = client_for(&server, None);
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.cancel();
    });
    let got = client
        .resolve(&[ImageRef {
            repo: "a".into(),
            reference: "v1".into(),
        }])
        .await;
    assert_eq!(got[0].as_ref().unwrap_err().kind, Kind::Cancelled);
    let e = client.list_tags("a", None).await.unwrap_err();
    assert_eq!(e.kind, Kind::Cancelled);
}

#[test]
fn layer_files_stream_through_the_shared_scanner() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    let content = br#"{"version":"v1.0.0"}"#;
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "version.json", &content[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let gz = gz.finish().unwrap();
    let server = runtime.block_on(Server::start(move |_| answer(200, &gz)));
    let (client, _) = client_for(&server, None);
    let digest = format!("sha256:{}", "a".repeat(64));
    let found = client
        .read_layer_files_blocking(
            runtime.handle(),
            "a",
            &digest,
            &["./version.json".into()],
            1 << 20,
        )
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].content, content);
    let e = client
        .read_layer_files_blocking(
            runtime.handle(),
            "a",
            &digest,
            &["version.json".into()],
            100,
        )
        .unwrap_err();
    assert_eq!(e.kind, Kind::Integrity);
}

/// A CA, a server certificate for 127.0.0.1 signed by it, and
/// `openssl s_server -WWW` serving a tag list over HTTPS.
struct TlsServer {
    child: std::process::Child,
    port: u16,
    ca: std::path::PathBuf,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tls_server(dir: &std::path::Path) -> TlsServer {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=mirror test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("v2/root/a/tags")).unwrap();
    std::fs::write(
        www.join("v2/root/a/tags/list?n=1000"),
        r#"{"name":"root/a","tags":["x"]}"#,
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            "../srv.pem",
            "-key",
            "../srv.key",
            "-WWW",
            "-quiet",
        ])
        .current_dir(&www)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = TlsServer {
        child,
        port,
        ca: dir.join("ca.pem"),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("openssl s_server did not start");
}

fn tls_client(port: u16, ca: Option<std::path::PathBuf>) -> Result<Client, String> {
    let mut config = RegistryConfig::new(Source {
        host: format!("127.0.0.1:{port}"),
        root: "root".into(),
    });
    config.tls_ca_file = ca;
    config.retry = RetryPolicy {
        attempts: 1,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
    };
    let cancel = Cancel::new();
    Client::new(config, cancel.clone(), Events::new(LogLevel::Warn, cancel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_ca_file_is_trusted_besides_the_system_roots() {
    let dir = TempDir::new("tls");
    let server = tls_server(dir.path());
    // Unknown CA: refused, and the error says why.
    let e = tls_client(server.port, None)
        .unwrap()
        .list_tags("a", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, Kind::Other);
    assert!(e.message.to_lowercase().contains("certificate"), "{e}");
    // With --tls-ca-file the same server is trusted.
    let tags = tls_client(server.port, Some(server.ca.clone()))
        .unwrap()
        .list_tags("a", None)
        .await
        .unwrap();
    assert_eq!(tags, vec!["x".to_owned()]);
    // A CA file that is missing or holds no certificate is refused up front.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let e = tls_client(server.port, Some(junk)).unwrap_err();
    assert!(e.contains("--tls-ca-file"), "{e}");
    let e = tls_client(server.port, Some(dir.path().join("missing.pem"))).unwrap_err();
    assert!(e.contains("--tls-ca-file"), "{e}");
}

/// A blob of `len` bytes that are not all alike.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn one_blob(blob: &[u8], path: &str) -> BlobFetch {
    BlobFetch {
        repo: "a".into(),
        digest: sha(blob),
        size: blob.len() as u64,
        path: path.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_blob_resumes_with_range() {
    let blob = pattern(100_000);
    let b = blob.clone();
    let server = Server::start(move |req| match req.headers.get("range") {
        None => cut_short(&b, 30_000),
        Some(range) if range == "bytes=30000-" => answer(206, &b[30_000..])
            .header("Content-Range", &format!("bytes 30000-99999/{}", b.len())),
        Some(other) => answer(416, other.as_bytes()),
    })
    .await;
    let dir = TempDir::new("resume");
    let fs = bundle(&dir);
    let (client, _) = client_for(&server, None);
    let got = client
        .fetch_blobs(&fs, vec![one_blob(&blob, "w.tmp/blob")])
        .await;
    assert_eq!(got[0], Ok(()));
    assert_eq!(std::fs::read(fs.root().join("w.tmp/blob")).unwrap(), blob);
    let ranges: Vec<_> = server
        .seen()
        .iter()
        .map(|s| s.headers.get("range").cloned())
        .collect();
    assert_eq!(ranges, vec![None, Some("bytes=30000-".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_ignores_range_sends_the_blob_again_from_the_start() {
    let blob = pattern(100_000);
    let b = blob.clone();
    let server = Server::start(move |req| {
        if req.headers.contains_key("range") {
            answer(200, &b)
        } else {
            cut_short(&b, 30_000)
        }
    })
    .await;
    let dir = TempDir::new("norange");
    let fs = bundle(&dir);
    let (client, _) = client_for(&server, None);
    let got = client
        .fetch_blobs(&fs, vec![one_blob(&blob, "w.tmp/blob")])
        .await;
    assert_eq!(got[0], Ok(()));
    assert_eq!(std::fs::read(fs.root().join("w.tmp/blob")).unwrap(), blob);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_and_truncated_bodies_are_retried_a_bounded_number_of_times() {
    let blob = pattern(50_000);
    let manifest =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#.to_vec();
    let count: Arc<Mutex<HashMap<String, usize>>> = Default::default();
    let (c, b, m) = (Arc::clone(&count), blob.clone(), manifest.clone());
    let server = Server::start(move |req| {
        let path = req.target.split('?').next().unwrap().to_owned();
        let n = {
            let mut count = c.lock().unwrap();
            let n = count.entry(path.clone()).or_default();
            *n += 1;
            *n
        };
        match path.as_str() {
            // Recover: the first try of each fails.
            "/v2/root/flaky/tags/list" if n == 1 => reset(),
            "/v2/root/flaky/tags/list" => answer(200, br#"{"tags":["ok"]}"#),
            "/v2/root/flaky/manifests/v1" if n == 1 => cut_short(&m, 10),
            "/v2/root/flaky/manifests/v1" => answer(200, &m).header("Content-Type", OCI_MANIFEST),
            p if p.starts_with("/v2/root/flaky/blobs/") && n == 1 => reset(),
            p if p.starts_with("/v2/root/flaky/blobs/") => answer(200, &b),
            // Never recover.
            "/v2/root/down/tags/list" => reset(),
            p if p.starts_with("/v2/root/down/blobs/") => cut_short(&b, 20_000),
            _ => answer(404, b""),
        }
    })
    .await;
    let (client, _) = client_for(&server, None);
    let dir = TempDir::new("flaky");
    let fs = bundle(&dir);

    assert_eq!(client.list_tags("flaky", None).await.unwrap(), vec!["ok"]);
    let got = client
        .fetch_manifests(&[ImageRef {
            repo: "flaky".into(),
            reference: "v1".into(),
        }])
        .await;
    assert_eq!(got[0].as_ref().unwrap().body, manifest);
    let mut fetch = one_blob(&blob, "w.tmp/flaky");
    fetch.repo = "flaky".into();
    assert_eq!(client.fetch_blobs(&fs, vec![fetch]).await[0], Ok(()));
    assert_eq!(std::fs::read(fs.root().join("w.tmp/flaky")).unwrap(), blob);

    // Bounded: three tries (the policy of `client_for`), then an error that
    // names what was fetched and the last cause.
    let e = client.list_tags("down", None).await.unwrap_err();
    assert!(e.message.starts_with("listing tags of "), "{e}");
    assert!(e.message.ends_with("(gave up after 3 tries)"), "{e}");
    let mut fetch = one_blob(&blob, "w.tmp/down");
    fetch.repo = "down".into();
    let e = client.fetch_blobs(&fs, vec![fetch]).await[0]
        .clone()
        .unwrap_err();
    let want = format!(
        "blob {} of {}/root/down: transfer interrupted after 20000 of 50000 bytes",
        sha(&blob),
        server.host()
    );
    assert!(e.message.starts_with(&want), "{e}");
    assert!(e.message.ends_with("(gave up after 3 tries)"), "{e}");
    let count = count.lock().unwrap();
    assert_eq!(count["/v2/root/down/tags/list"], 3, "{count:?}");
    let blob_path = format!("/v2/root/down/blobs/{}", sha(&blob));
    assert_eq!(count[&blob_path], 3, "{count:?}");
    assert!(!fs.root().join("w.tmp/down").exists());
    assert!(!fs.root().join("w.tmp/down.download.tmp").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_renewed_before_they_expire_and_after_a_refusal() {
    // The server hands out T1, T2, … valid for one second and accepts only
    // the newest; `revoked` makes it refuse that one too, once.
    struct State {
        issued: usize,
        revoked: bool,
        challenges: usize,
    }
    let state = Arc::new(Mutex::new(State {
        issued: 0,
        revoked: false,
        challenges: 0,
    }));
    let realm: Arc<Mutex<String>> = Default::default();
    let (st, r) = (Arc::clone(&state), Arc::clone(&realm));
    let server = Server::start(move |req| {
        let mut st = st.lock().unwrap();
        if req.target.starts_with("/token") {
            st.issued += 1;
            st.revoked = false;
            let body = format!(r#"{{"token":"T{}","expires_in":1}}"#, st.issued);
            return answer(200, body.as_bytes());
        }
        let newest = format!("Bearer T{}", st.issued);
        if st.revoked || req.headers.get("authorization") != Some(&newest) {
            st.challenges += 1;
            let realm = r.lock().unwrap().clone();
            return answer(401, b"")
                .header("WWW-Authenticate", &format!("Bearer realm=\"{realm}\""));
        }
        answer(200, br#"{"tags":["a"]}"#)
    })
    .await;
    *realm.lock().unwrap() = format!("http://{}/token", server.host());
    let (client, _) = client_for(&server, None);
    let counts = || {
        let st = state.lock().unwrap();
        (st.issued, st.challenges)
    };

    client.list_tags("a", None).await.unwrap();
    assert_eq!(counts(), (1, 1));
    client.list_tags("a", None).await.unwrap();
    assert_eq!(counts(), (1, 1), "a fresh token is reused");
    // Past its expiry (less the margin) a new one is asked for up front.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.list_tags("a", None).await.unwrap();
    assert_eq!(counts(), (2, 1), "the expired token was not renewed first");
    // A token the registry stops accepting is replaced after the 401.
    state.lock().unwrap().revoked = true;
    client.list_tags("a", None).await.unwrap();
    assert_eq!(counts(), (3, 2));
}
