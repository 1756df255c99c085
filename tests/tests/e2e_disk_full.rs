//! Disk full: a pull into a small tmpfs fails with a message that says the
//! disk is full, leaves no temporary file, and keeps the earlier archive.
//! Needs root to mount; skipped with a message when mounting is impossible.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tests::artifacts;
use tests::process;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output();
    match status {
        Ok(out) if out.status.success() => Some(Mount(dir.to_path_buf())),
        Ok(out) => {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs at {} (needs root): {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        }
        Err(e) => {
            eprintln!("SKIPPED: cannot run mount: {e}");
            None
        }
    }
}

#[test]
fn a_full_disk_fails_with_a_clear_message_and_keeps_earlier_archives() {
    let art = artifacts::locate().unwrap_or_else(|e| panic!("{e:#}"));
    let (registry, _fixture) = tests::seeded_registry().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let Some(_mount) = mount_tmpfs(&bundle, "160k") else {
        return;
    };
    let earlier = vec![7u8; 32 * 1024];
    std::fs::write(bundle.join("package-earlier.tar"), &earlier).unwrap();

    let source = format!("{}/deckhouse/ee", registry.host());
    let mut cmd = tests::pull::pull_command(&art, &source, &bundle, &[]);
    let out = process::run(&mut cmd, Duration::from_secs(240)).unwrap();
    assert_eq!(out.code(), Some(1), "{}", out.transcript());
    assert!(
        out.stderr.contains("the disk is full"),
        "the error does not say the disk is full:\n{}",
        out.transcript()
    );
    let mut left: Vec<String> = std::fs::read_dir(&bundle)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert!(
        left.iter().all(|n| !n.ends_with(".tmp")),
        "temporary files left: {left:?}\n{}",
        out.transcript()
    );
    assert!(
        left.contains(&"package-earlier.tar".to_string()),
        "{left:?}"
    );
    assert_eq!(
        std::fs::read(bundle.join("package-earlier.tar")).unwrap(),
        earlier
    );
}
