//! The TLS listener against a real daemon, checked with `openssl s_client`
//! and the berth CLI: protocol versions, certificate names, replacing the
//! certificate, trusting the CA, client bundles and their revocation.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{bin, free_port, Daemon};

/// `openssl s_client` against `port`, with `args`; (succeeded, output).
fn s_client(port: u16, args: &[&str]) -> (bool, String) {
    let o = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success() && !text.contains("alert"), text)
}

fn tls_daemon(extra: &[&str]) -> (Daemon, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["--listen", listen.as_str()];
    args.extend_from_slice(extra);
    (Daemon::start_with_args(&args), port)
}

fn berth_tls(port: u16, args: &[&str], env: &[(&str, &Path)]) -> std::process::Output {
    let mut c = Command::new(bin());
    c.arg("-H").arg(format!("https://127.0.0.1:{port}")).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.env_remove("BERTH_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("run berth")
}

fn subject_alt_names(cert_pem: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl x509");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), cert_pem.as_bytes()).expect("write");
    String::from_utf8_lossy(&child.wait_with_output().expect("wait").stdout).into_owned()
}

fn first_cert(s_client_output: &str) -> String {
    let start = s_client_output
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = s_client_output[start..].find("-----END CERTIFICATE-----").expect("end") + start;
    format!("{}-----END CERTIFICATE-----\n", &s_client_output[start..end])
}

#[test]
fn tls_versions_and_certificate_names() {
    let (d, port) = tls_daemon(&[]);
    // The client is told to be willing (SECLEVEL=0): the refusal is the server's.
    for old in ["-tls1", "-tls1_1"] {
        let (ok, out) = s_client(port, &[old, "-cipher", "DEFAULT:@SECLEVEL=0"]);
        assert!(!ok, "{old} was accepted: {out}");
    }
    let ca = d.dir.path().join("ca.pem");
    std::fs::copy(d.data_root().join("pki/ca.pem"), &ca).expect("ca");
    let ca = ca.to_str().expect("utf8");
    for good in ["-tls1_2", "-tls1_3"] {
        let (ok, out) = s_client(port, &[good, "-CAfile", ca, "-verify_return_error"]);
        assert!(ok && out.contains("Verify return code: 0 (ok)"), "{good}: {out}");
    }
    let (_, out) = s_client(port, &["-showcerts", "-CAfile", ca]);
    let sans = subject_alt_names(&first_cert(&out));
    let host = nix::unistd::gethostname()
        .expect("hostname")
        .into_string()
        .expect("utf8");
    for name in [
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
        &format!("DNS:{host}"),
    ] {
        assert!(sans.contains(name), "{name} missing from {sans}");
    }

    // The CLI trusts the cluster CA, and says what is wrong without it.
    let o = berth_tls(port, &["--tlscacert", ca, "version"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = berth_tls(port, &["version"], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("UnknownIssuer") && err.contains("--tlscacert"),
        "{err}"
    );
}

#[test]
fn an_organizations_certificate_replaces_the_generated_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("org.pem"), dir.path().join("org.key"));
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            "/CN=berth.example.org",
            "-addext",
            "subjectAltName=DNS:berth.example.org,IP:127.0.0.1",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl req");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (d, port) = tls_daemon(&[
        "--tls-cert",
        cert.to_str().expect("utf8"),
        "--tls-key",
        key.to_str().expect("utf8"),
    ]);
    let (_, out) = s_client(port, &["-showcerts"]);
    assert!(
        subject_alt_names(&first_cert(&out)).contains("DNS:berth.example.org"),
        "{out}"
    );
    let o = berth_tls(port, &["--tlscacert", cert.to_str().expect("utf8"), "version"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    drop(d);
}

#[test]
fn a_bundle_logs_its_user_in_until_revoked() {
    let (d, port) = tls_daemon(&[]);
    let zip = d.dir.path().join("bundle.zip");
    // A bundle names an existing user: refused for one that does not exist.
    let (_, err) = d.fails(&["bundle", "create", "--user", "alice", "-o", zip.to_str().expect("utf8")]);
    assert!(err.contains("no such user: alice"), "{err}");
    assert!(!zip.exists(), "a refused bundle left a file behind");
    d.ok(&["user", "create", "alice"]);
    let id = d.ok(&["bundle", "create", "--user", "alice", "-o", zip.to_str().expect("utf8")]);
    let id = id.trim();
    let out = d.dir.path().join("bundle");
    let o = Command::new("unzip")
        .arg("-q")
        .arg(&zip)
        .arg("-d")
        .arg(&out)
        .output()
        .expect("unzip");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let env_sh = std::fs::read_to_string(out.join("env.sh")).expect("env.sh");
    for v in [
        "BERTH_HOST=",
        "BERTH_TLS_CA=",
        "BERTH_TLS_CERT=",
        "BERTH_TLS_KEY=",
        "DOCKER_CERT_PATH=",
    ] {
        assert!(env_sh.contains(v), "{v} missing from {env_sh}");
    }
    let env = [
        ("BERTH_TLS_CA", out.join("ca.pem")),
        ("BERTH_TLS_CERT", out.join("cert.pem")),
        ("BERTH_TLS_KEY", out.join("key.pem")),
    ];
    let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();

    // whoami over TLS names the bundle's user.
    let whoami = || {
        let o = Command::new("curl")
            .args(["-s", "--cacert"])
            .arg(out.join("ca.pem"))
            .arg("--cert")
            .arg(out.join("cert.pem"))
            .arg("--key")
            .arg(out.join("key.pem"))
            .arg(format!("https://127.0.0.1:{port}/v1/whoami"))
            .output();
        o.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let o = berth_tls(port, &["bundle", "ls", "--format", "json"], &env);
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && listed.contains("\"alice\""),
        "{listed}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    if Path::new("/usr/bin/curl").exists() {
        assert!(whoami().contains("\"name\":\"alice\""));
    }

    // The CA rotates: the bundle, issued by the old root and trusting only
    // it, keeps working (its certificate is on record; the server's chain
    // carries the new root signed by the old one).
    let rotated = d.ok(&["cluster", "ca", "--rotate"]);
    assert!(
        rotated.contains("Rotation:  complete") && rotated.contains("Retired:"),
        "{rotated}"
    );
    let o = berth_tls(port, &["bundle", "ls", "--format", "json"], &env);
    assert!(
        o.status.success(),
        "the bundle stopped working after a CA rotation: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    if Path::new("/usr/bin/curl").exists() {
        assert!(
            whoami().contains("\"name\":\"alice\""),
            "curl (OpenSSL) after the rotation"
        );
    }

    d.ok(&["bundle", "rm", id]);
    let o = berth_tls(port, &["bundle", "ls"], &env);
    let err = String::from_utf8_lossy(&o.stderr);
    // TLS 1.3 refuses the certificate after the client's side of the
    // handshake: the alert may beat the request or not.
    assert!(
        !o.status.success() && (err.contains("CertificateRevoked") || err.contains("connection")),
        "{err}"
    );

    // The private key never reaches the log.
    let key = std::fs::read_to_string(out.join("key.pem")).expect("key");
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let log = std::fs::read_to_string(d.dir.path().join("daemon.log")).expect("log");
    assert!(!log.contains(&body[..40]), "the client key is in the daemon log");
}
