//! The README's first command runs the `demo` binary: it must pull the
//! fixture into a bundle and, with `--serve`, keep its registry up for the
//! user's own commands until Enter.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use tests::env::artifacts;
use tests::process;
use tests::pull::pull_command;

#[test]
fn demo_serve_keeps_the_registry_up_until_enter() {
    let art = artifacts();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    let mut demo = process::command(env!("CARGO_BIN_EXE_demo"))
        .arg("--serve")
        .arg(&bundle)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Lines arrive on a channel so a hung demo fails the test instead of
    // blocking it.
    let (tx, lines) = mpsc::channel();
    let stdout = demo.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut next = |what: &str| -> String {
        let line = lines
            .recv_timeout(Duration::from_secs(240))
            .unwrap_or_else(|e| panic!("waiting for {what}: {e}; so far:\n{}", seen.join("\n")));
        seen.push(line.clone());
        line
    };
    let source = loop {
        let line = next("the registry address");
        if let Some(rest) = line.strip_prefix("The registry stays up at ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    while !next("the prompt").contains("Press Enter") {}
    assert!(
        bundle.join("package-versions.tar").is_file(),
        "the demo pull wrote no package-versions.tar"
    );

    // The kept registry answers a pull of our own.
    let out = process::run(
        &mut pull_command(
            &art,
            &source,
            &tmp.path().join("mine"),
            &["--dry-run", "--output", "json", "--quiet"],
        ),
        Duration::from_secs(120),
    )
    .unwrap();
    assert!(out.success(), "{}", out.transcript());
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["status"], "ok", "{doc}");
    assert!(
        !doc["calls"][0]["packages"].as_array().unwrap().is_empty(),
        "{doc}"
    );

    // Enter stops it.
    demo.stdin.take().unwrap().write_all(b"\n").unwrap();
    while !next("the stop notice").contains("registry stopped") {}
    assert!(demo.wait().unwrap().success());
    let addr = source.split('/').next().unwrap();
    assert!(
        TcpStream::connect(addr).is_err(),
        "the registry at {addr} still answers after Enter"
    );
}
