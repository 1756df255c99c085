//! A throwaway certificate authority and a server certificate for
//! 127.0.0.1 signed by it, made with the `openssl` CLI (installed by
//! tests/setup.sh), for the HTTPS test registry.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// `ca.pem` (the CA certificate clients are told to trust), and `server.pem`
/// + `server.key` (what the registry serves). Removed on drop.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// A fresh CA and a server certificate with `subjectAltName`
    /// `IP:127.0.0.1, DNS:localhost` (P-256 keys: quick to make, and both
    /// Go's TLS and rustls accept them).
    pub fn generate() -> Result<TestCa> {
        let dir = tempfile::Builder::new()
            .prefix("pm-tls-")
            .tempdir()
            .context("creating a directory for the test CA")?;
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let ca_args = [
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=packages-mirror test CA",
        ];
        openssl(dir.path(), &[&ca_args[..2], &ec, &ca_args[2..]].concat())?;
        // `req -x509 -CA` (OpenSSL 3) signs the new key with the CA at once.
        let server_args = [
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "server.key",
            "-out",
            "server.pem",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ];
        openssl(
            dir.path(),
            &[&server_args[..2], &ec, &server_args[2..]].concat(),
        )?;
        Ok(TestCa { dir })
    }

    /// The CA certificate (PEM), for `--tls-ca-file` and `SSL_CERT_FILE`.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl (install it: tests/setup.sh)")?;
    if !out.status.success() {
        bail!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
