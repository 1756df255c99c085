//! The attacks. Every attempt's result is reported, never its data.

use std::fmt::Debug;

// The generated import shims take one argument per flattened WIT field.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "packages-mirror" });
}

use bindings::deckhouse::packages_mirror::{events, filesystem, registry};
use bindings::{Guest, PullError, PullOptions, PullSummary, export};

struct Hostile;

impl Guest for Hostile {
    fn pull_packages(options: PullOptions) -> Result<PullSummary, PullError> {
        let mut words = options.include_packages.into_iter();
        let attack = words.next().unwrap_or_default();
        let args: Vec<String> = words.collect();
        let mut report = Report(Vec::new());
        match attack.as_str() {
            "ok" => report.0.push("ok".into()),
            "escape-write" => escape_write(&args, &mut report),
            "read-passwd" => read_passwd(&mut report),
            "network" => network(&args, &mut report),
            "handles" => handles(&mut report),
            "memory" => memory(),
            "spin" => spin(),
            "batch" => batch(),
            "long-string" => long_string(),
            "panic" => panic!("the hostile plugin panics on purpose"),
            other => {
                return Err(PullError::InvalidOptions(format!(
                    "unknown attack {other:?}"
                )));
            }
        }
        Ok(summary(report.0))
    }

    fn pull_package_versions(_options: PullOptions) -> Result<PullSummary, PullError> {
        Ok(summary(vec!["ok".into()]))
    }
}

export!(Hostile with_types_in bindings);

fn summary(warnings: Vec<String>) -> PullSummary {
    PullSummary {
        dry_run: false,
        packages: Vec::new(),
        archives: Vec::new(),
        warnings,
    }
}

struct Report(Vec<String>);

impl Report {
    /// Records an attempt's outcome: `Ok` (with a length, never content) or
    /// the error as the host gave it.
    fn note<T: Debug, E: Debug>(&mut self, what: &str, result: Result<T, E>) {
        let line = match result {
            Ok(v) => format!("{what}: Ok {}", shorten(&format!("{v:?}"))),
            Err(e) => format!("{what}: Err {e:?}"),
        };
        events::log(events::Level::Info, &line);
        self.0.push(line);
    }
}

fn shorten(text: &str) -> String {
    format!("({} bytes of debug output)", text.len())
}

/// Writes outside the bundle: `args[0]` is an absolute directory outside it,
/// and the test planted `link-out` → that directory inside the bundle.
fn escape_write(args: &[String], r: &mut Report) {
    let outside = args.first().map(String::as_str).unwrap_or("/tmp");
    r.note(
        "write-file absolute",
        filesystem::write_file(&format!("{outside}/abs"), b"escaped"),
    );
    r.note(
        "write-file dotdot",
        filesystem::write_file("../outside/dotdot", b"escaped"),
    );
    r.note(
        "write-file through a symlink",
        filesystem::write_file("link-out/through-link", b"escaped"),
    );
    r.note(
        "create-output dotdot",
        filesystem::create_output("../outside/out").map(|_| ()),
    );
    r.note(
        "create-output through a symlink",
        filesystem::create_output("link-out/out").map(|_| ()),
    );
    r.note(
        "create-dir-all dotdot",
        filesystem::create_dir_all("../outside/dir"),
    );
    r.note(
        "create-dir-all through a symlink",
        filesystem::create_dir_all("link-out/dir"),
    );
    let _ = filesystem::write_file("inside", b"inside");
    r.note(
        "rename out of the root",
        filesystem::rename("inside", "../outside/renamed"),
    );
    r.note(
        "rename onto a symlink's target",
        filesystem::rename("inside", "link-out/renamed"),
    );
    r.note("remove the root", filesystem::remove("."));
    r.note("remove dotdot", filesystem::remove(".."));
    r.note(
        "remove through a symlink",
        filesystem::remove("link-out/keep"),
    );
    r.note(
        "wasi std::fs::write absolute",
        std::fs::write(format!("{outside}/wasi"), b"escaped"),
    );
    r.note(
        "wasi std::fs::write relative",
        std::fs::write("wasi-relative", b"escaped"),
    );
    r.note(
        "wasi std::fs::create_dir",
        std::fs::create_dir(format!("{outside}/wasi-dir")),
    );
}

/// Reads `/etc/passwd`; the test planted `etc-link` → `/etc` and
/// `passwd-link` → `/etc/passwd` inside the bundle.
fn read_passwd(r: &mut Report) {
    const MAX: u64 = 1 << 20;
    r.note(
        "read-file absolute",
        filesystem::read_file("/etc/passwd", MAX),
    );
    r.note(
        "read-file dotdot",
        filesystem::read_file("../../../../../../../../etc/passwd", MAX),
    );
    r.note(
        "read-file through a directory symlink",
        filesystem::read_file("etc-link/passwd", MAX),
    );
    r.note(
        "read-file of a file symlink",
        filesystem::read_file("passwd-link", MAX),
    );
    r.note(
        "stat through a symlink",
        filesystem::stat("etc-link/passwd"),
    );
    r.note("list-dir of a symlink", filesystem::list_dir("etc-link"));
    r.note(
        "read-layer-files of a symlink",
        filesystem::read_layer_files("passwd-link", &["passwd".to_string()], MAX),
    );
    match filesystem::create_output("copy.tmp") {
        Ok(out) => {
            r.note("copy-from absolute", out.copy_from("/etc/passwd", 0, 16));
            r.note("copy-from a symlink", out.copy_from("passwd-link", 0, 16));
            r.note(
                "copy-from through a directory symlink",
                out.copy_from("etc-link/passwd", 0, 16),
            );
            let _ = out.finish();
        }
        Err(e) => r.note("create-output copy.tmp", Err::<(), _>(e)),
    }
    r.note("wasi std::fs::read", std::fs::read("/etc/passwd"));
    r.note(
        "wasi std::fs::read_dir",
        std::fs::read_dir("/").map(|d| d.count()),
    );
    r.note::<usize, ()>("environment variables", Ok(std::env::vars().count()));
    r.0.push(format!("environment count: {}", std::env::vars().count()));
    r.0.push(format!("argument count: {}", std::env::args().count()));
}

/// Reaches another host: `args[0]` is `127.0.0.1:<port>` of a listener the
/// test watches (not the source registry).
fn network(args: &[String], r: &mut Report) {
    let other = args.first().map(String::as_str).unwrap_or("127.0.0.1:9");
    r.note(
        "wasi tcp connect",
        std::net::TcpStream::connect(other).map(|_| ()),
    );
    r.note(
        "wasi udp send",
        std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(b"x", other)),
    );
    r.note(
        "wasi dns lookup",
        std::net::ToSocketAddrs::to_socket_addrs("example.com:80").map(|a| a.count()),
    );
    r.note(
        "registry repo with a URL",
        registry::list_tags(&format!("http://{other}/x"), None),
    );
    r.note(
        "registry repo with a host",
        registry::list_tags(&format!("{other}/x"), None),
    );
    r.note("registry repo dotdot", registry::list_tags("../../x", None));
    r.note("registry repo absolute", registry::list_tags("/x", None));
    r.note(
        "registry manifest ref with a URL",
        registry::fetch_manifests(&[registry::ImageRef {
            repo: "x".into(),
            reference: format!("http://{other}/y"),
        }])
        .into_iter()
        .next()
        .map(|r| r.map(|_| ()))
        .unwrap_or(Ok(())),
    );
}

/// Opens outputs without ever closing them.
fn handles(r: &mut Report) {
    let mut open = Vec::new();
    for i in 0..100_000 {
        match filesystem::create_output(&format!("handle-{i}.tmp")) {
            Ok(out) => open.push(out),
            Err(e) => {
                r.0.push(format!("opened {i} outputs"));
                r.note("create-output over the limit", Err::<(), _>(e));
                break;
            }
        }
    }
    if r.0.is_empty() {
        r.0.push(format!("opened {} outputs", open.len()));
    }
}

/// Allocates without bound, touching every page.
fn memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 8 << 20];
        chunk[0] = 1;
        hoard.push(std::hint::black_box(chunk));
    }
}

/// Spins forever without calling the host. Leaves a temporary archive behind
/// first, which the host must remove.
fn spin() -> ! {
    if let Ok(out) = filesystem::create_output("package-spin.tar.tmp") {
        let _ = out.write(&[0u8; 4096]);
        std::mem::forget(out);
    }
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// One `resolve` of 100 000 references: a few MiB in the guest, 100 000
/// requests in the host. The host must end the call instead.
fn batch() -> ! {
    let refs: Vec<registry::ImageRef> = (0..100_000)
        .map(|i| registry::ImageRef {
            repo: "x".into(),
            reference: format!("v{i}"),
        })
        .collect();
    let results = registry::resolve(&refs);
    panic!("the host answered a batch of {} references", results.len());
}

/// A `list-tags` of a 16 MiB repository name.
fn long_string() -> ! {
    let result = registry::list_tags(&"a".repeat(16 << 20), None);
    panic!("the host answered a 16 MiB repository name: {result:?}");
}
