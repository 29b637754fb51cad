//! `berth trust` end to end against a real daemon and its own registry and
//! trust server (`--insecure-listen` on loopback): signing and inspecting,
//! `BERTH_CONTENT_TRUST=1` pull and run, signers with a threshold of two
//! keys held by two clients, revocation, trust policies enforced when
//! containers are created, a signer key generated on a real PKCS#11 token
//! (SoftHSM2, Debian package `softhsm2`) with key rotation, and verification
//! from the trust data attached as an OCI referrer after the repository is
//! copied to another registry under another name.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{free_port, http_unix, wait_for, Daemon};
use serde_json::Value;

/// A daemon whose registry listens on `127.0.0.1:<port>`.
struct Registry {
    daemon: Daemon,
    host: String,
    port: u16,
}

impl Registry {
    fn start() -> Registry {
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let daemon = Daemon::start_with_args(&["--insecure-listen", &host]);
        wait_for("the registry listener", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Registry { daemon, host, port }
    }

    /// `127.0.0.1:<port>/<name>`.
    fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.host)
    }
}

/// One client's trust directory with its passphrases.
struct Client {
    dir: tempfile::TempDir,
}

impl Client {
    fn new() -> Client {
        Client {
            dir: tempfile::Builder::new()
                .prefix("berth-trust-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn cmd(&self, d: &Daemon, args: &[&str]) -> Command {
        let mut c = d.cmd(args);
        c.env("BERTH_TRUST_DIR", self.dir.path().join("trust"))
            .env("BERTH_TRUST_ROOT_PASSPHRASE", "root passphrase")
            .env("BERTH_TRUST_TARGETS_PASSPHRASE", "targets passphrase")
            .env("BERTH_TRUST_SNAPSHOT_PASSPHRASE", "snapshot passphrase")
            .env("BERTH_TRUST_DELEGATION_PASSPHRASE", "delegation passphrase")
            .env_remove("BERTH_CONTENT_TRUST")
            .env_remove("BERTH_TRUST_ROOT_KEY")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, d: &Daemon, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd(d, args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run berth")
    }

    fn ok(&self, d: &Daemon, args: &[&str]) -> String {
        self.ok_env(d, args, &[])
    }

    fn ok_env(&self, d: &Daemon, args: &[&str], env: &[(&str, &str)]) -> String {
        let o = self.run(d, args, env);
        assert!(
            o.status.success(),
            "berth {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    fn fails_env(&self, d: &Daemon, args: &[&str], env: &[(&str, &str)]) -> String {
        let o = self.run(d, args, env);
        assert!(
            !o.status.success(),
            "berth {args:?} should fail but printed {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    fn inspect(&self, d: &Daemon, image: &str) -> Value {
        let out = self.run(d, &["trust", "inspect", image, "--format", "json"], &[]);
        assert!(
            out.status.success(),
            "inspect {image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("inspect json");
        v[0].clone()
    }

    fn keys_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

const TRUSTED: &[(&str, &str)] = &[("BERTH_CONTENT_TRUST", "1")];

fn manifest_digest(d: &Daemon, reference: &str) -> String {
    let v: Value = serde_json::from_str(&d.ok(&["image", "inspect", reference])).expect("inspect json");
    v[0]["manifest_digest"].as_str().expect("manifest_digest").to_string()
}

/// `SignedTags` as `(tag, digest, signers)`.
fn signed_tags(inspect: &Value) -> Vec<(String, String, Vec<String>)> {
    inspect["SignedTags"]
        .as_array()
        .expect("SignedTags")
        .iter()
        .map(|t| {
            (
                t["SignedTag"].as_str().unwrap_or_default().to_string(),
                t["Digest"].as_str().unwrap_or_default().to_string(),
                t["Signers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect(),
            )
        })
        .collect()
}

fn root_key(inspect: &Value) -> String {
    inspect["AdministrativeKeys"][0]["Keys"][0]["ID"]
        .as_str()
        .expect("root key")
        .to_string()
}

#[test]
fn sign_inspect_pull_and_revoke() {
    let r = Registry::start();
    let d = &r.daemon;
    let alice = Client::new();
    d.load_busybox();
    let v1 = r.image("library/app:v1");
    d.ok(&["tag", "busybox", &v1]);
    let digest = manifest_digest(d, "busybox");

    // The image is pushed as part of signing.
    let out = alice.ok(d, &["trust", "sign", &v1]);
    assert!(
        out.contains("Pushing") && out.contains(&format!("Successfully signed {v1}")),
        "{out}"
    );
    let inspect = alice.inspect(d, &r.image("library/app"));
    assert_eq!(inspect["Name"], r.image("library/app"));
    assert_eq!(inspect["VerifiedFrom"], "trust server");
    assert_eq!(
        signed_tags(&inspect),
        vec![(
            "v1".to_string(),
            digest.trim_start_matches("sha256:").to_string(),
            vec!["Repo Admin".to_string()]
        )]
    );
    assert_eq!(root_key(&inspect).len(), 64);
    let text = alice.ok(d, &["trust", "inspect", &v1]);
    assert!(
        text.contains("Administrative keys for") && text.contains("Root Key:"),
        "{text}"
    );
    // Keys: one root key and the repository's targets key, in the key store.
    let keys: Value = serde_json::from_str(&alice.ok(d, &["trust", "key", "list", "--format", "json"])).expect("json");
    let roles: Vec<&str> = keys
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["role"].as_str())
        .collect();
    assert_eq!(roles, vec!["root", "targets"]);
    let listed = alice.ok(d, &["trust", "key", "list"]);
    assert!(listed.contains("root") && listed.contains("targets"), "{listed}");
    for text in [&out, &listed] {
        assert!(
            !text.contains("root passphrase") && !text.contains("targets passphrase"),
            "{text}"
        );
    }

    // Content trust: the signed tag pulls by digest and is tagged.
    d.ok(&["rmi", "-f", &v1]);
    d.ok(&["rmi", "-f", "busybox"]);
    let out = alice.ok_env(d, &["pull", &v1], TRUSTED);
    assert!(
        out.contains(&format!("Tagging {}@{digest} as {v1}", r.image("library/app"))),
        "{out}"
    );
    assert_eq!(manifest_digest(d, &v1), digest);
    // An unsigned tag of a signed repository and an unsigned repository are refused.
    let v2 = r.image("library/app:v2");
    d.ok(&["tag", &v1, &v2]);
    d.ok(&["push", &v2]);
    let err = alice.fails_env(d, &["pull", &v2], TRUSTED);
    assert!(
        err.contains(&format!(
            "content trust: no signed tag \"v2\" in {}",
            r.image("library/app")
        )),
        "{err}"
    );
    let unsigned = r.image("library/unsigned:v1");
    d.ok(&["tag", &v1, &unsigned]);
    d.ok(&["push", &unsigned]);
    let err = alice.fails_env(d, &["pull", &unsigned], TRUSTED);
    assert!(
        err.contains(&format!(
            "content trust: no trust data for {}",
            r.image("library/unsigned")
        )),
        "{err}"
    );
    // Without content trust the same pull works.
    alice.ok(d, &["pull", &v2]);
    // Run resolves through trust too.
    let out = alice.ok_env(d, &["run", "--rm", &v1, "echo", "trusted"], TRUSTED);
    assert!(out.contains("trusted"), "{out}");
    let err = alice.fails_env(d, &["run", "--rm", &unsigned, "true"], TRUSTED);
    assert!(err.contains("content trust: no trust data for"), "{err}");

    // Revoke: the tag is no longer signed.
    let out = alice.ok(d, &["trust", "revoke", &v1]);
    assert!(out.contains(&format!("Successfully revoked {v1}")), "{out}");
    let err = alice.fails_env(d, &["pull", &v1], TRUSTED);
    assert!(err.contains("content trust: no signed tag \"v1\""), "{err}");
    let err = alice.fails_env(d, &["trust", "inspect", &v1], &[]);
    assert!(err.contains("no signed tag \"v1\""), "{err}");
    assert!(signed_tags(&alice.inspect(d, &r.image("library/app"))).is_empty());

    // A client that trusted this repository refuses a root that changed
    // without a rotation signed by the old root: another client re-creates
    // the repository from scratch under the same name.
    let bob = Client::new();
    let hijack = r.image("library/app:v9");
    d.ok(&["tag", &v2, &hijack]);
    // Deleting takes a user (the admin here, on the socket), never an
    // anonymous caller, not even on the open loopback registry.
    let path = format!("/v2/{}/_trust/tuf/", r.image("library/app"));
    let anonymous = http(r.port, "DELETE", &path, &[], b"");
    assert_eq!(anonymous.0, 401, "{}", String::from_utf8_lossy(&anonymous.2));
    let deleted = common::http_unix(&d.socket, "DELETE", &path, &[], b"");
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    bob.ok(d, &["trust", "sign", &hijack]);
    // The new repository's versions start over: a rollback to alice.
    let err = alice.fails_env(d, &["pull", &hijack], TRUSTED);
    assert!(
        err.contains("does not verify: timestamp: version 1 is lower than trusted version 2"),
        "{err}"
    );
    // Past alice's versions, the root it lists is not the one alice pinned.
    for tag in ["v10", "v11"] {
        let name = r.image(&format!("library/app:{tag}"));
        d.ok(&["tag", &v2, &name]);
        bob.ok(d, &["trust", "sign", &name]);
    }
    let err = alice.fails_env(d, &["pull", &hijack], TRUSTED);
    assert!(
        err.contains("does not verify: root: does not match the sha256 listed for it by snapshot"),
        "{err}"
    );
    // bob, who trusted the new root from the start, pulls.
    bob.ok_env(d, &["pull", &hijack], TRUSTED);
}

#[test]
fn signer_with_threshold_two_needs_both_keys() {
    let r = Registry::start();
    let d = &r.daemon;
    let (admin, alice, bob) = (Client::new(), Client::new(), Client::new());
    d.load_busybox();
    let repo = r.image("team/app");
    let v1 = format!("{repo}:v1");
    d.ok(&["tag", "busybox", &v1]);
    let keys = admin.keys_dir();
    let k = keys.to_str().expect("utf8");
    let out = alice.ok(d, &["trust", "key", "generate", "alice", "--dir", k]);
    assert!(out.contains("Successfully generated key"), "{out}");
    bob.ok(d, &["trust", "key", "generate", "bob", "--dir", k]);
    let alice_pub = keys.join("alice.pub");
    let bob_pub = keys.join("bob.pub");
    let pem = std::fs::read_to_string(&alice_pub).expect("alice.pub");
    assert!(pem.contains("BEGIN PUBLIC KEY") && !pem.contains("PRIVATE"), "{pem}");
    let out = admin.ok(
        d,
        &[
            "trust",
            "signer",
            "add",
            "team",
            &repo,
            "--key",
            alice_pub.to_str().expect("utf8"),
            "--key",
            bob_pub.to_str().expect("utf8"),
            "--threshold",
            "2",
        ],
    );
    assert!(out.contains("threshold 2"), "{out}");
    let inspect = admin.inspect(d, &repo);
    assert_eq!(inspect["Signers"][0]["Name"], "team");
    assert_eq!(inspect["Signers"][0]["Threshold"], 2);
    assert_eq!(inspect["Signers"][0]["Keys"].as_array().expect("keys").len(), 2);

    // Alice alone: her signature is pending, the tag is not signed.
    let out = alice.ok(d, &["trust", "sign", &v1, "--signer", "team"]);
    assert!(
        out.contains("targets/team of") && out.contains("has 1 of the 2 signatures it needs"),
        "{out}"
    );
    let err = alice.fails_env(d, &["pull", &v1], TRUSTED);
    assert!(err.contains("content trust: no signed tag \"v1\""), "{err}");
    assert!(signed_tags(&admin.inspect(d, &repo)).is_empty());
    // A client holding no key of the signer cannot sign for it.
    let err = admin.fails_env(d, &["trust", "sign", &v1, "--signer", "team"], &[]);
    assert!(err.contains("this client holds no key of signer team"), "{err}");

    // Bob adds his signature: now the threshold is met.
    let out = bob.ok(d, &["trust", "sign", &v1, "--signer", "team"]);
    assert!(out.contains(&format!("Successfully signed {v1}")), "{out}");
    let tags = signed_tags(&admin.inspect(d, &repo));
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert_eq!(tags[0].0, "v1");
    assert_eq!(tags[0].2, vec!["team".to_string()]);
    alice.ok_env(d, &["pull", &v1], TRUSTED);

    // Removing the signer removes what only it signed.
    admin.ok(d, &["trust", "signer", "remove", "team", &repo]);
    let err = alice.fails_env(d, &["pull", &v1], TRUSTED);
    assert!(err.contains("content trust: no signed tag \"v1\""), "{err}");
}

#[test]
fn policy_refuses_unsigned_and_wrongly_signed_images() {
    let r = Registry::start();
    let d = &r.daemon;
    let (admin, alice, mallory) = (Client::new(), Client::new(), Client::new());
    d.load_busybox();
    let keys = admin.keys_dir();
    let k = keys.to_str().expect("utf8");
    alice.ok(d, &["trust", "key", "generate", "alice", "--dir", k]);
    mallory.ok(d, &["trust", "key", "generate", "mallory", "--dir", k]);
    let repo = r.image("prod/app");
    for (name, file) in [("alice", "alice.pub"), ("mallory", "mallory.pub")] {
        admin.ok(
            d,
            &[
                "trust",
                "signer",
                "add",
                name,
                &repo,
                "--key",
                keys.join(file).to_str().expect("utf8"),
            ],
        );
    }
    let good = format!("{repo}:good");
    let wrong = format!("{repo}:wrong");
    let unsigned = format!("{repo}:unsigned");
    for tag in [&good, &wrong, &unsigned] {
        d.ok(&["tag", "busybox", tag]);
    }
    alice.ok(d, &["trust", "sign", &good, "--signer", "alice"]);
    mallory.ok(d, &["trust", "sign", &wrong, "--signer", "mallory"]);
    d.ok(&["push", &unsigned]);

    let out = admin.ok(
        d,
        &[
            "trust",
            "policy",
            "set",
            "127.0.0.1:*/prod/*",
            "--require-signer",
            "alice",
        ],
    );
    assert!(out.contains("need signatures by 1 of: alice"), "{out}");
    let policies: Value =
        serde_json::from_str(&admin.ok(d, &["trust", "policy", "ls", "--format", "json"])).expect("json");
    assert_eq!(policies[0]["pattern"], "127.0.0.1:*/prod/*");
    assert_eq!(policies[0]["signers"][0], "alice");
    assert_eq!(policies[0]["threshold"], 1);
    let err = admin.fails_env(
        d,
        &[
            "trust",
            "policy",
            "set",
            "prod/*",
            "--require-signer",
            "alice",
            "--threshold",
            "2",
        ],
        &[],
    );
    assert!(
        err.contains("threshold 2 must be between 1 and the number of signers (1)"),
        "{err}"
    );

    let before = d.container_count();
    let (_, err) = d.fails(&["run", "--rm", &unsigned, "true"]);
    assert!(
        err.contains(&format!(
            "trust policy \"127.0.0.1:*/prod/*\" refuses image {unsigned}: tag \"unsigned\" needs signatures by 1 of [alice], found none"
        )),
        "{err}"
    );
    let (_, err) = d.fails(&["create", &wrong, "true"]);
    assert!(
        err.contains(&format!(
            "trust policy \"127.0.0.1:*/prod/*\" refuses image {wrong}: tag \"wrong\" needs signatures by 1 of [alice], found none"
        )),
        "{err}"
    );
    // An image of a repository with no trust data at all.
    let other = r.image("prod/other:v1");
    d.ok(&["tag", "busybox", &other]);
    let (_, err) = d.fails(&["run", "--rm", &other, "true"]);
    assert!(
        err.contains(&format!("no trust data for {} on this node", r.image("prod/other"))),
        "{err}"
    );
    // By image id every name of the image is checked: prod/other has no trust data.
    let id: Value = serde_json::from_str(&d.ok(&["image", "inspect", &unsigned])).expect("json");
    let (_, err) = d.fails(&["create", id[0]["id"].as_str().expect("id"), "true"]);
    assert!(
        err.contains(&format!("refuses image {}@", r.image("prod/other"))),
        "{err}"
    );
    // So is every other name when the image is run by one of them.
    let (_, err) = d.fails(&["run", "--rm", &good, "true"]);
    assert!(err.contains("no trust data for"), "{err}");
    assert_eq!(d.container_count(), before, "a refused create left a container behind");
    d.ok(&["rmi", &other]);

    let out = d.ok(&["run", "--rm", &good, "echo", "signed by alice"]);
    assert_eq!(out.trim(), "signed by alice");
    // Images outside the pattern are not governed.
    assert_eq!(d.ok(&["run", "--rm", "busybox", "echo", "free"]).trim(), "free");
    // Cached verification: a tag re-signed by the wrong signer is seen at once.
    d.ok(&["tag", "busybox", &format!("{repo}:later")]);
    mallory.ok(d, &["trust", "sign", &format!("{repo}:later"), "--signer", "mallory"]);
    let (_, err) = d.fails(&["create", &format!("{repo}:later"), "true"]);
    assert!(err.contains("found none"), "{err}");

    admin.ok(d, &["trust", "policy", "rm", "127.0.0.1:*/prod/*"]);
    assert_eq!(
        d.ok(&["run", "--rm", &unsigned, "echo", "no policy"]).trim(),
        "no policy"
    );
    let err = admin.fails_env(d, &["trust", "policy", "rm", "127.0.0.1:*/prod/*"], &[]);
    assert!(err.contains("no trust policy for \"127.0.0.1:*/prod/*\""), "{err}");
}

/// `busybox-oci.tar` with the names taken out of its index: loaded, the
/// image has no tag and no repository name.
fn nameless_archive(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    std::fs::create_dir(&layout).expect("layout dir");
    let tar = common::images_dir().join("busybox-oci.tar");
    let ok = |c: &mut Command| {
        let o = c.output().expect("tar");
        assert!(o.status.success(), "{c:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    ok(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&layout));
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).expect("index")).expect("index json");
    for m in index["manifests"].as_array_mut().expect("manifests") {
        m.as_object_mut().expect("descriptor").remove("annotations");
    }
    std::fs::write(&index_path, serde_json::to_vec(&index).expect("json")).expect("write index");
    let out = dir.join("nameless.tar");
    ok(Command::new("tar").arg("-cf").arg(&out).arg("-C").arg(&layout).arg("."));
    out
}

#[test]
fn a_catch_all_policy_covers_images_by_id_and_without_a_name() {
    let d = Daemon::start();
    let scratch = tempfile::tempdir().expect("tempdir");
    d.ok(&[
        "image",
        "load",
        "-i",
        nameless_archive(scratch.path()).to_str().expect("utf8"),
    ]);
    let images: Value = serde_json::from_str(&d.ok(&["images", "--format", "json"])).expect("json");
    let id = images[0]["id"].as_str().expect("id").to_string();
    assert_eq!(images[0]["tags"], serde_json::json!([]), "{images}");
    d.ok(&["trust", "policy", "set", "**", "--require-signer", "alice"]);
    // Refused as 403, naming the policy; nothing is left behind.
    let create = http_unix(
        &d.socket,
        "POST",
        "/v1/containers",
        &["Content-Type: application/json".into()],
        format!(r#"{{"image":"{id}","cmd":["true"]}}"#).as_bytes(),
    );
    assert_eq!(create.status, 403, "{}", create.text());
    let message = create.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(
        message.starts_with("trust policy \"**\" refuses image") && message.contains("has no name"),
        "{message}"
    );
    let (_, err) = d.fails(&["run", "--rm", &id[7..19], "true"]);
    assert!(err.contains("has no name"), "{err}");
    // The same image loaded under a name, then untagged (kept by a
    // container): the name it had still counts.
    d.ok(&["trust", "policy", "rm", "**"]);
    d.load_busybox();
    d.ok(&["create", "--name", "keep", &id, "true"]);
    d.ok(&["rmi", "-f", "busybox"]);
    let inspect: Value = serde_json::from_str(&d.ok(&["image", "inspect", &id])).expect("json");
    assert_eq!(inspect[0]["tags"], serde_json::json!([]), "{inspect}");
    d.ok(&["trust", "policy", "set", "**", "--require-signer", "alice"]);
    let (_, err) = d.fails(&["run", "--rm", &id, "true"]);
    assert!(
        err.contains("trust policy \"**\" refuses image busybox@sha256:")
            && err.contains("no trust data for docker.io/library/busybox"),
        "{err}"
    );
    assert_eq!(d.container_count(), 1, "a refused run left a container behind");
}

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

#[test]
fn signer_key_on_a_pkcs11_token() {
    assert!(
        Path::new(SOFTHSM).exists(),
        "SoftHSM2 is not installed: {SOFTHSM} is missing (install the Debian package softhsm2)"
    );
    let r = Registry::start();
    let d = &r.daemon;
    let (admin, carol) = (Client::new(), Client::new());
    let tokens = carol.dir.path().join("tokens");
    std::fs::create_dir(&tokens).expect("tokens");
    let conf = carol.dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .expect("conf");
    let init = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "berth-signer",
            "--pin",
            "246810",
            "--so-pin",
            "13579135",
        ])
        .output()
        .unwrap_or_else(|e| panic!("softhsm2-util (Debian package softhsm2) cannot run: {e}"));
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let conf_s = conf.to_str().expect("utf8");
    let token_env: &[(&str, &str)] = &[("SOFTHSM2_CONF", conf_s), ("CAROL_PIN", "246810")];

    d.load_busybox();
    let repo = r.image("hw/app");
    let v1 = format!("{repo}:v1");
    d.ok(&["tag", "busybox", &v1]);
    let keys = admin.keys_dir();
    let out = carol.ok_env(
        d,
        &[
            "trust",
            "key",
            "generate",
            "carol",
            "--dir",
            keys.to_str().expect("utf8"),
            "--token",
            SOFTHSM,
            "--token-label",
            "berth-signer",
            "--pin-env",
            "CAROL_PIN",
        ],
        token_env,
    );
    let key_id = out
        .lines()
        .find_map(|l| l.strip_prefix("Successfully generated key "))
        .expect("key id")
        .trim()
        .to_string();
    let listed = carol.ok(d, &["trust", "key", "list"]);
    assert!(
        listed.contains(&key_id) && listed.contains("pkcs11") && listed.contains("berth-signer"),
        "{listed}"
    );
    // The private key never left the token: the key store holds a reference
    // to it, with nothing secret inside.
    let reference: Value = serde_json::from_slice(
        &std::fs::read(carol.dir.path().join("trust/private").join(format!("{key_id}.key"))).expect("reference"),
    )
    .expect("reference json");
    assert_eq!(reference["format"], "berth-token-key-v1", "{reference}");
    assert!(reference.get("ciphertext").is_none(), "{reference}");
    assert_eq!(reference["token"]["token_label"], "berth-signer", "{reference}");
    admin.ok(
        d,
        &[
            "trust",
            "signer",
            "add",
            "carol",
            &repo,
            "--key",
            keys.join("carol.pub").to_str().expect("utf8"),
        ],
    );

    // Without the PIN the token does not sign.
    let err = carol.fails_env(
        d,
        &["trust", "sign", &v1, "--signer", "carol"],
        &[("SOFTHSM2_CONF", conf_s)],
    );
    assert!(err.contains("CAROL_PIN"), "{err}");
    let out = carol.ok_env(d, &["trust", "sign", &v1, "--signer", "carol"], token_env);
    assert!(out.contains("on token \"berth-signer\""), "{out}");
    let inspect = admin.inspect(d, &repo);
    assert_eq!(signed_tags(&inspect)[0].2, vec!["carol".to_string()]);
    assert_eq!(inspect["Signers"][0]["Keys"][0]["ID"], key_id.as_str());
    d.ok(&["rmi", "-f", &v1]);
    carol.ok_env(d, &["pull", &v1], TRUSTED);

    // Rotations: the repository key, then the root (signed by old and new).
    let old_root = root_key(&inspect);
    let out = admin.ok(d, &["trust", "key", "rotate", &repo, "targets"]);
    assert!(out.contains("Successfully rotated the targets key"), "{out}");
    let out = admin.ok(d, &["trust", "key", "rotate", &repo, "root"]);
    assert!(out.contains("Successfully rotated the root key"), "{out}");
    let out = admin.ok(d, &["trust", "key", "rotate", &repo, "snapshot", "--server-managed"]);
    assert!(out.contains("Successfully rotated the snapshot key"), "{out}");
    let inspect = admin.inspect(d, &repo);
    assert_ne!(root_key(&inspect), old_root);
    // carol's client pinned the old root: it follows the signed rotation.
    d.ok(&["tag", "busybox", &format!("{repo}:v2")]);
    carol.ok_env(
        d,
        &["trust", "sign", &format!("{repo}:v2"), "--signer", "carol"],
        token_env,
    );
    carol.ok_env(d, &["pull", &format!("{repo}:v2")], TRUSTED);
    carol.ok_env(d, &["pull", &v1], TRUSTED);
}

/// A minimal HTTP/1.1 exchange on loopback: `(status, headers, body)`.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").expect("chunk size");
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).expect("size").trim(), 16).expect("hex");
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 2 + size + 2..];
        }
        body = out;
    }
    (status, head, body)
}

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Copies manifest `reference` of `from_repo` with its blobs to `to_repo`
/// (tagging it `tag` when given); the manifest's digest.
fn copy_manifest(from: u16, from_repo: &str, reference: &str, to: u16, to_repo: &str, tag: Option<&str>) -> String {
    let (status, head, manifest) = http(
        from,
        "GET",
        &format!("/v2/{from_repo}/manifests/{reference}"),
        &[("Accept", ACCEPT)],
        b"",
    );
    assert_eq!(status, 200, "{head}");
    let media_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(|_| l[14..].trim().to_string())
        })
        .expect("content-type");
    let doc: Value = serde_json::from_slice(&manifest).expect("manifest json");
    let mut blobs = vec![doc["config"]["digest"].as_str().expect("config").to_string()];
    for layer in doc["layers"].as_array().expect("layers") {
        blobs.push(layer["digest"].as_str().expect("layer").to_string());
    }
    for digest in blobs {
        let (status, _, blob) = http(from, "GET", &format!("/v2/{from_repo}/blobs/{digest}"), &[], b"");
        assert_eq!(status, 200, "blob {digest}");
        let (status, head, body) = http(
            to,
            "POST",
            &format!("/v2/{to_repo}/blobs/uploads/?digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            &blob,
        );
        assert_eq!(status, 201, "{head}{}", String::from_utf8_lossy(&body));
    }
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&manifest))
    );
    let target = tag.unwrap_or(&digest);
    let (status, head, body) = http(
        to,
        "PUT",
        &format!("/v2/{to_repo}/manifests/{target}"),
        &[("Content-Type", &media_type)],
        &manifest,
    );
    assert_eq!(status, 201, "{head}{}", String::from_utf8_lossy(&body));
    digest
}

#[test]
fn referrers_verify_a_copy_under_another_name() {
    let a = Registry::start();
    let b = Registry::start();
    let alice = Client::new();
    let stranger = Client::new();
    a.daemon.load_busybox();
    let v1 = a.image("library/app:v1");
    a.daemon.ok(&["tag", "busybox", &v1]);
    alice.ok(&a.daemon, &["trust", "sign", &v1]);
    let root = root_key(&alice.inspect(&a.daemon, &v1));
    let digest = manifest_digest(&a.daemon, &v1);

    // The trust data is attached to the image in registry a.
    let (status, _, index) = http(
        a.port,
        "GET",
        &format!("/v2/library/app/referrers/{digest}?artifactType=application/vnd.berth.trust.v1%2Bjson"),
        &[],
        b"",
    );
    assert_eq!(status, 200);
    let index: Value = serde_json::from_slice(&index).expect("index");
    let referrers = index["manifests"].as_array().expect("manifests").clone();
    assert_eq!(referrers.len(), 1, "{index}");
    let out = alice.ok(
        &a.daemon,
        &[
            "trust",
            "inspect",
            "--from-referrers",
            &format!("{}@{digest}", a.image("library/app")),
        ],
    );
    assert!(
        out.contains("verified from its referrer") && out.contains("v1"),
        "{out}"
    );

    // Copy image and referrer to registry b as mirror/app:v1.
    copy_manifest(a.port, "library/app", "v1", b.port, "mirror/app", Some("v1"));
    for r in &referrers {
        copy_manifest(
            a.port,
            "library/app",
            r["digest"].as_str().expect("digest"),
            b.port,
            "mirror/app",
            None,
        );
    }
    let copy = b.image("mirror/app:v1");
    // b's trust server knows nothing about the copy: the referrer is used,
    // pinned to the root key id given.
    let inspect_copy = |client: &Client, pin: &str| {
        client.run(
            &b.daemon,
            &["trust", "inspect", &copy, "--root-key", pin, "--format", "json"],
            &[],
        )
    };
    let out = inspect_copy(&stranger, &root);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v[0]["VerifiedFrom"], "referrer");
    assert_eq!(v[0]["Name"], a.image("library/app"));
    assert_eq!(signed_tags(&v[0])[0].1, digest.trim_start_matches("sha256:"));
    // A wrong pin is refused; no pin at all too, unless this client trusted the original.
    let wrong = "0".repeat(64);
    let out = inspect_copy(&stranger, &wrong);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("trust pinning"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = stranger.fails_env(&b.daemon, &["trust", "inspect", &copy], &[]);
    assert!(err.contains("no root key is pinned for"), "{err}");
    alice.ok(&b.daemon, &["trust", "inspect", &copy]);

    // Content trust pulls the copy by its signed digest with the root pinned.
    let err = stranger.fails_env(&b.daemon, &["pull", &copy], TRUSTED);
    assert!(err.contains("content trust: no trust data for"), "{err}");
    let out = stranger.ok_env(
        &b.daemon,
        &["pull", &copy],
        &[("BERTH_CONTENT_TRUST", "1"), ("BERTH_TRUST_ROOT_KEY", &root)],
    );
    assert!(
        out.contains(&format!("Tagging {}@{digest} as {copy}", b.image("mirror/app"))),
        "{out}"
    );
}

const NOTARY: &str = "/usr/bin/notary";

/// A SoftHSM2 token directory under `dir` with one token `label`; returns
/// the `SOFTHSM2_CONF` to use.
fn softhsm_token(dir: &Path, label: &str, pin: &str, so_pin: &str) -> PathBuf {
    assert!(
        Path::new(SOFTHSM).exists(),
        "SoftHSM2 is not installed: {SOFTHSM} is missing (install the Debian package softhsm2)"
    );
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).expect("tokens");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .expect("conf");
    let init = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            so_pin,
        ])
        .output()
        .unwrap_or_else(|e| panic!("softhsm2-util (Debian package softhsm2) cannot run: {e}"));
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    conf
}

/// `notary -s http://HOST -d DIR list GUN`: the `(tag, role)` rows; the
/// notary CLI verifies the whole repository (root chain, signatures,
/// snapshot, timestamp) before it lists anything.
fn notary_list(host: &str, dir: &Path, gun: &str) -> Vec<(String, String)> {
    assert!(
        Path::new(NOTARY).exists(),
        "{NOTARY} is missing: install the Debian package `notary`"
    );
    let o = Command::new(NOTARY)
        .args(["-s", &format!("http://{host}"), "-d"])
        .arg(dir)
        .args(["list", gun])
        .stdin(Stdio::null())
        .output()
        .expect("run notary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "notary list {gun} failed:\n{text}");
    let mut rows: Vec<(String, String)> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with("NAME") && !l.starts_with("----") && !l.trim().is_empty())
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() == 4).then(|| (cols[0].to_string(), cols[3].to_string()))
        })
        .collect();
    rows.sort();
    rows
}

fn key_list(client: &Client, d: &Daemon) -> Vec<Value> {
    let out = client.run(d, &["trust", "key", "list", "--format", "json"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("key list json")
        .as_array()
        .expect("keys")
        .clone()
}

fn generated_key_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Successfully generated key "))
        .unwrap_or_else(|| panic!("no key id in {out}"))
        .trim()
        .to_string()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn repository_key(inspect: &Value) -> String {
    inspect["AdministrativeKeys"][1]["Keys"][0]["ID"]
        .as_str()
        .expect("repository key")
        .to_string()
}

#[test]
fn root_targets_snapshot_and_signer_keys_on_a_pkcs11_token() {
    let r = Registry::start();
    let d = &r.daemon;
    let alice = Client::new();
    let conf = softhsm_token(alice.dir.path(), "berth-repo", "135790", "24680246");
    let conf = conf.to_str().expect("utf8");
    // No software passphrase at all: every key that signs is on the token.
    let on_token: &[(&str, &str)] = &[
        ("SOFTHSM2_CONF", conf),
        ("HSM_PIN", "135790"),
        ("HSM_SO_PIN", "24680246"),
        ("BERTH_TRUST_ROOT_PASSPHRASE", ""),
        ("BERTH_TRUST_TARGETS_PASSPHRASE", ""),
        ("BERTH_TRUST_SNAPSHOT_PASSPHRASE", ""),
        ("BERTH_TRUST_DELEGATION_PASSPHRASE", ""),
    ];
    let token = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut args = vec!["--token", SOFTHSM, "--token-label", "berth-repo"];
        if !extra.contains(&"--pin-env") {
            args.extend_from_slice(&["--pin-env", "HSM_PIN"]);
        }
        args.extend_from_slice(extra);
        args
    };
    let with =
        |base: &[&str], extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };
    let repo = r.image("hw/repo");
    let notary_dir = alice.dir.path().join("notary");

    // Bad input fails, names what is wrong and leaves no key behind.
    let bad: Vec<(Vec<String>, &str)> = vec![
        (
            with(
                &["trust", "key", "generate", "--role", "root"],
                &token(&["--slot", "9b"]),
            ),
            "--slot 9b: not a PIV slot",
        ),
        (
            with(&["trust", "key", "generate", "--role", "targets"], &token(&[])),
            "pass --gun GUN",
        ),
        (
            with(&["trust", "key", "generate", "--role", "timestamp"], &token(&[])),
            "always held by the trust server",
        ),
        (
            with(
                &["trust", "key", "generate", "--role", "root"],
                &[
                    "--token",
                    SOFTHSM,
                    "--token-label",
                    "no-such-token",
                    "--pin-env",
                    "HSM_PIN",
                ],
            ),
            "no token labelled \"no-such-token\"",
        ),
        (
            with(
                &["trust", "key", "generate", "--role", "root"],
                &["--token", "/nonexistent/libpkcs11.so", "--pin-env", "HSM_PIN"],
            ),
            "PKCS#11 module /nonexistent/libpkcs11.so",
        ),
        (
            with(
                &["trust", "key", "generate", "--role", "root"],
                &token(&["--pin-env", "WRONG_PIN"]),
            ),
            "token \"berth-repo\": logging in: wrong PIN",
        ),
        (
            with(
                &["trust", "key", "generate", "--role", "root"],
                &token(&["--pin-env", "UNSET_PIN"]),
            ),
            "set $UNSET_PIN",
        ),
        (
            with(
                &["trust", "key", "generate", "--role", "root"],
                &token(&["--so-pin-env", "WRONG_PIN"]),
            ),
            "token \"berth-repo\": logging in: wrong PIN (the security officer PIN is read from $WRONG_PIN)",
        ),
        // SoftHSM2 generates private keys after the user login only.
        (
            with(
                &["trust", "key", "generate", "--role", "root"],
                &token(&["--so-pin-env", "HSM_SO_PIN"]),
            ),
            "drop --so-pin-env",
        ),
    ];
    let mut env = on_token.to_vec();
    env.push(("WRONG_PIN", "000000"));
    for (args, expected) in &bad {
        let err = alice.fails_env(d, &strs(args), &env);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    assert!(key_list(&alice, d).is_empty(), "a failed generate left a key");

    // Root (in PIV slot 9a's id) and the repository's targets key on the token.
    let out = alice.ok_env(
        d,
        &strs(&with(
            &["trust", "key", "generate", "--role", "root"],
            &token(&["--slot", "9a"]),
        )),
        on_token,
    );
    let root_id = generated_key_id(&out);
    assert!(out.contains("token berth-repo slot 9a"), "{out}");
    let err = alice.fails_env(
        d,
        &strs(&with(
            &["trust", "key", "generate", "--role", "root"],
            &token(&["--slot", "9a"]),
        )),
        on_token,
    );
    assert!(
        err.contains("token \"berth-repo\" already holds a private key with CKA_ID 01 (--slot 9a)"),
        "{err}"
    );
    let out = alice.ok_env(
        d,
        &strs(&with(
            &["trust", "key", "generate", "--role", "targets", "--gun", &repo],
            &token(&[]),
        )),
        on_token,
    );
    let targets_id = generated_key_id(&out);
    let keys = key_list(&alice, d);
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        assert!(
            key["location"].as_str().unwrap_or_default().starts_with("pkcs11 ")
                && key["location"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("token berth-repo"),
            "{key}"
        );
    }
    // The key store holds references only: no ciphertext, no private key.
    for id in [&root_id, &targets_id] {
        let file: Value = serde_json::from_slice(
            &std::fs::read(alice.dir.path().join("trust/private").join(format!("{id}.key"))).expect("reference"),
        )
        .expect("json");
        assert_eq!(file["format"], "berth-token-key-v1", "{file}");
        assert!(file.get("ciphertext").is_none(), "{file}");
        assert_eq!(file["token"]["pin_env"], "HSM_PIN", "{file}");
    }

    // A new repository with root and targets on the token.
    d.load_busybox();
    let tag = |t: &str| {
        let name = format!("{repo}:{t}");
        d.ok(&["tag", "busybox", &name]);
        name
    };
    let v1 = tag("v1");
    // Without the PIN nothing is signed or published.
    let mut no_pin = on_token.to_vec();
    no_pin.retain(|(k, _)| *k != "HSM_PIN");
    let err = alice.fails_env(d, &["trust", "sign", &v1], &no_pin);
    assert!(err.contains("berth-repo") && err.contains("$HSM_PIN"), "{err}");
    let err = alice.fails_env(d, &["trust", "inspect", &repo], &[]);
    assert!(err.contains("no trust data"), "{err}");
    let out = alice.ok_env(d, &["trust", "sign", &v1], on_token);
    assert!(
        out.contains("on token \"berth-repo\"")
            && out.contains("touch the key")
            && out.contains(&format!("Using targets key {targets_id}"))
            && !out.contains("Generated"),
        "{out}"
    );
    let inspect = alice.inspect(d, &repo);
    assert_eq!(repository_key(&inspect), targets_id);
    assert_eq!(
        notary_list(&r.host, &notary_dir, &repo),
        vec![("v1".into(), "targets".into())]
    );

    // Targets rotated onto the token (a new key there), then signing with it.
    let out = alice.ok_env(
        d,
        &strs(&with(&["trust", "key", "rotate", &repo, "targets"], &token(&[]))),
        on_token,
    );
    assert!(out.contains("Successfully rotated the targets key"), "{out}");
    let new_targets = repository_key(&alice.inspect(d, &repo));
    assert_ne!(new_targets, targets_id);
    let v2 = tag("v2");
    alice.ok_env(d, &["trust", "sign", &v2], on_token);
    assert_eq!(
        notary_list(&r.host, &notary_dir, &repo),
        vec![("v1".into(), "targets".into()), ("v2".into(), "targets".into())]
    );

    // The snapshot key moves from the server to the token; signing then
    // makes the snapshot on the token too.
    let out = alice.ok_env(
        d,
        &strs(&with(
            &["trust", "key", "rotate", &repo, "snapshot"],
            &token(&["--slot", "id:5e"]),
        )),
        on_token,
    );
    assert!(out.contains("Successfully rotated the snapshot key"), "{out}");
    let snapshot_key = alice.inspect(d, &repo)["AdministrativeKeys"][2]["Keys"][0]["ID"]
        .as_str()
        .expect("snapshot key")
        .to_string();
    let listed = key_list(&alice, d);
    assert!(
        listed.iter().any(|k| k["id"] == snapshot_key.as_str()
            && k["role"] == "snapshot"
            && k["location"].as_str().unwrap_or_default().ends_with("id 5e")),
        "{listed:?}"
    );
    let v3 = tag("v3");
    alice.ok_env(d, &["trust", "sign", &v3], on_token);
    assert_eq!(notary_list(&r.host, &notary_dir, &repo).len(), 3);

    // A root rotation that cannot be signed by the old root (its PIN is
    // missing) fails and takes its new key off the token and the store.
    let before = key_list(&alice, d);
    let mut other_pin = no_pin.clone();
    other_pin.push(("OTHER_PIN", "135790"));
    let err = alice.fails_env(
        d,
        &[
            "trust",
            "key",
            "rotate",
            &repo,
            "root",
            "--token",
            SOFTHSM,
            "--token-label",
            "berth-repo",
            "--pin-env",
            "OTHER_PIN",
            "--slot",
            "82",
        ],
        &other_pin,
    );
    assert!(err.contains("$HSM_PIN") && err.contains("Removed key"), "{err}");
    assert_eq!(key_list(&alice, d), before);
    // Root rotated onto the token (retired PIV slot 82), signed by old and new root.
    let old_root = root_key(&alice.inspect(d, &repo));
    let out = alice.ok_env(
        d,
        &strs(&with(
            &["trust", "key", "rotate", &repo, "root"],
            &token(&["--slot", "82"]),
        )),
        on_token,
    );
    assert!(out.contains("Successfully rotated the root key"), "{out}");
    assert_ne!(root_key(&alice.inspect(d, &repo)), old_root);
    // The notary CLI pinned the old root and follows the rotation.
    let v4 = tag("v4");
    alice.ok_env(d, &["trust", "sign", &v4], on_token);
    assert_eq!(notary_list(&r.host, &notary_dir, &repo).len(), 4);

    // A signer key on the token, added with the token's targets key.
    let keys_dir = alice.dir.path().join("pub");
    std::fs::create_dir(&keys_dir).expect("pub dir");
    let out = alice.ok_env(
        d,
        &strs(&with(
            &[
                "trust",
                "key",
                "generate",
                "dana",
                "--dir",
                keys_dir.to_str().expect("utf8"),
            ],
            &token(&[]),
        )),
        on_token,
    );
    let dana = generated_key_id(&out);
    alice.ok_env(
        d,
        &[
            "trust",
            "signer",
            "add",
            "dana",
            &repo,
            "--key",
            keys_dir.join("dana.pub").to_str().expect("utf8"),
        ],
        on_token,
    );
    let v5 = tag("v5");
    let out = alice.ok_env(d, &["trust", "sign", &v5, "--signer", "dana"], on_token);
    assert!(out.contains(&format!("Successfully signed {v5}")), "{out}");
    let inspect = alice.inspect(d, &repo);
    assert_eq!(inspect["Signers"][0]["Keys"][0]["ID"], dana.as_str());
    let rows = notary_list(&r.host, &notary_dir, &repo);
    assert!(
        rows.iter().any(|(t, role)| t == "v5" && role.starts_with("targets/")),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 5, "{rows:?}");
    // And content trust pulls through it all.
    d.ok(&["rmi", "-f", &v5]);
    alice.ok_env(d, &["pull", &v5], TRUSTED);
    assert_eq!(
        std::fs::read_dir(alice.dir.path().join("trust/private"))
            .expect("private")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".key"))
            .count(),
        key_list(&alice, d).len()
    );
    let _ = root_id;
}

#[test]
fn key_backup_and_restore() {
    let r = Registry::start();
    let d = &r.daemon;
    let alice = Client::new();
    let conf = softhsm_token(alice.dir.path(), "berth-backup", "112233", "44556677");
    let conf = conf.to_str().expect("utf8");
    let hsm: &[(&str, &str)] = &[("SOFTHSM2_CONF", conf), ("HSM_PIN", "112233")];
    let backup_env: &[(&str, &str)] = &[
        ("SOFTHSM2_CONF", conf),
        ("HSM_PIN", "112233"),
        ("BERTH_TRUST_BACKUP_PASSPHRASE", "backup passphrase"),
    ];
    d.load_busybox();
    let repo = r.image("backup/app");
    let v1 = format!("{repo}:v1");
    d.ok(&["tag", "busybox", &v1]);
    alice.ok(d, &["trust", "sign", &v1]);
    // A client-held snapshot key, and a signer key on a token.
    alice.ok(d, &["trust", "key", "rotate", &repo, "snapshot"]);
    let keys_dir = alice.dir.path().join("pub");
    std::fs::create_dir(&keys_dir).expect("pub dir");
    let out = alice.ok_env(
        d,
        &[
            "trust",
            "key",
            "generate",
            "erin",
            "--dir",
            keys_dir.to_str().expect("utf8"),
            "--token",
            SOFTHSM,
            "--pin-env",
            "HSM_PIN",
        ],
        hsm,
    );
    let erin = generated_key_id(&out);
    alice.ok(
        d,
        &[
            "trust",
            "signer",
            "add",
            "erin",
            &repo,
            "--key",
            keys_dir.join("erin.pub").to_str().expect("utf8"),
        ],
    );
    let before = key_list(&alice, d);
    assert_eq!(before.len(), 4, "{before:?}");

    let archive = alice.dir.path().join("keys.zip");
    let archive_s = archive.to_str().expect("utf8");
    // No backup passphrase, or no key of that GUN: an error and no file.
    let err = alice.fails_env(d, &["trust", "key", "backup", "-o", archive_s], &[]);
    assert!(err.contains("BERTH_TRUST_BACKUP_PASSPHRASE"), "{err}");
    let err = alice.fails_env(
        d,
        &[
            "trust",
            "key",
            "backup",
            "-o",
            archive_s,
            "--gun",
            &r.image("other/app"),
        ],
        backup_env,
    );
    assert!(err.contains("holds no key of"), "{err}");
    assert!(!archive.exists());
    let out = alice.ok_env(d, &["trust", "key", "backup", "-o", archive_s], backup_env);
    assert!(
        out.contains(&format!("Not exportable: erin key {erin} is on pkcs11"))
            && out.contains("Wrote 3 private key(s)"),
        "{out}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&archive).expect("archive").permissions().mode() & 0o777,
        0o600
    );
    // Stored members: the PEMs are readable in the file, each encrypted.
    let bytes = String::from_utf8_lossy(&std::fs::read(&archive).expect("read")).into_owned();
    assert_eq!(
        bytes.matches("-----BEGIN ENCRYPTED PRIVATE KEY-----").count(),
        3,
        "{bytes}"
    );
    assert!(!bytes.contains("BEGIN PRIVATE KEY"));
    assert!(bytes.contains("\"exportable\": false"), "{bytes}");
    let err = alice.fails_env(d, &["trust", "key", "backup", "-o", archive_s], backup_env);
    assert!(err.contains("exists already"), "{err}");
    // --gun: the repository's own keys only (targets and snapshot).
    let per_gun = alice.dir.path().join("repo-keys.zip");
    let out = alice.ok_env(
        d,
        &[
            "trust",
            "key",
            "backup",
            "-o",
            per_gun.to_str().expect("utf8"),
            "--gun",
            &repo,
        ],
        backup_env,
    );
    assert!(out.contains("Wrote 2 private key(s)"), "{out}");

    // The trust directory is lost; a wrong passphrase restores nothing.
    std::fs::remove_dir_all(alice.dir.path().join("trust")).expect("wipe");
    let err = alice.fails_env(
        d,
        &["trust", "key", "restore", archive_s],
        &[("BERTH_TRUST_BACKUP_PASSPHRASE", "not it")],
    );
    assert!(err.contains("passphrase"), "{err}");
    assert!(key_list(&alice, d).is_empty());
    let out = alice.ok_env(d, &["trust", "key", "restore", archive_s], backup_env);
    assert!(
        out.matches("Restored ").count() == 4 && out.contains("stays on the token"),
        "{out}"
    );
    let mut after = key_list(&alice, d);
    let mut expected = before.clone();
    let by_id = |a: &Value, b: &Value| a["id"].as_str().cmp(&b["id"].as_str());
    after.sort_by(by_id);
    expected.sort_by(by_id);
    assert_eq!(after, expected);
    // Restoring twice changes nothing.
    let out = alice.ok_env(d, &["trust", "key", "restore", archive_s], backup_env);
    assert_eq!(out.matches("Already in the key store").count(), 4, "{out}");

    // The restored keys sign: targets and the client's snapshot, and the
    // signer key through its restored token reference.
    let v2 = format!("{repo}:v2");
    d.ok(&["tag", "busybox", &v2]);
    let out = alice.ok(d, &["trust", "sign", &v2]);
    assert!(!out.contains("Generated"), "{out}");
    let v3 = format!("{repo}:v3");
    d.ok(&["tag", "busybox", &v3]);
    alice.ok_env(d, &["trust", "sign", &v3, "--signer", "erin"], hsm);
    let tags: Vec<String> = signed_tags(&alice.inspect(d, &repo)).into_iter().map(|t| t.0).collect();
    assert_eq!(tags, ["v1", "v2", "v3"]);
    let notary_dir = alice.dir.path().join("notary");
    assert_eq!(notary_list(&r.host, &notary_dir, &repo).len(), 3);
}

#[test]
fn a_failed_key_generate_leaves_nothing_behind() {
    // The signer key is made and recorded, then writing NAME.pub fails: the
    // key and the signer's record go again, and the name stays free.
    let d = Daemon::start();
    let alice = Client::new();
    let missing = alice.dir.path().join("no/such/dir");
    let args = [
        "trust",
        "key",
        "generate",
        "alice",
        "--dir",
        missing.to_str().expect("utf8"),
    ];
    let err = alice.fails_env(&d, &args, &[]);
    assert!(err.contains("alice.pub") && err.contains("Removed key"), "{err}");
    assert!(key_list(&alice, &d).is_empty(), "no key is left");
    let signers = alice.dir.path().join("trust/signers");
    let records = std::fs::read_dir(&signers).map(|e| e.count()).unwrap_or(0);
    assert_eq!(records, 0, "no signer record is left in {}", signers.display());
    let dir = alice.dir.path().to_str().expect("utf8");
    let out = alice.ok(&d, &["trust", "key", "generate", "alice", "--dir", dir]);
    assert!(out.contains("Public key written to"), "{out}");
    assert_eq!(key_list(&alice, &d).len(), 1);
}
