//! `berth trust`: content trust from the CLI, Notary- and Docker-compatible.
//!
//! - keys: `key generate NAME | --role root|targets|snapshot [--gun GUN]`,
//!   `key list`, `key load FILE`, `key rotate IMAGE ROLE [--server-managed]`,
//!   each of generate, load and rotate with `--token MODULE [--token-label L]
//!   [--slot ID] [--pin-env VAR] [--so-pin-env VAR]` to put the key on a
//!   PKCS#11 token; `key backup -o FILE [--gun GUN]` and `key restore FILE`.
//!   Private keys are in a [`KeyStore`] under `~/.berth/trust/private` (or
//!   `$BERTH_TRUST_DIR`); a key on a token has a reference there instead
//!   ([`TokenKeyRef`]: module, token label, `CKA_ID`, the names of the
//!   variables holding the PINs; never a PIN), so every command that signs
//!   finds root, targets, snapshot and signer keys the same way. Signer names
//!   are also recorded in `signers/NAME.json`;
//! - signing: `sign IMAGE:TAG [--signer NAME]`, `revoke`, `signer add/remove`,
//!   publishing to the trust server of the image's registry
//!   (`/v2/<gun>/_trust/tuf/`), then attaching the signed metadata to the
//!   image as an OCI referrer (artifact type [`TRUST_ARTIFACT`]) so a copy of
//!   the repository elsewhere can still be verified;
//! - verification: `inspect`, and `BERTH_CONTENT_TRUST=1 berth pull|run`
//!   ([`trusted_reference`]), with the TUF client's checks and a per-GUN cache
//!   under `tuf/` pinning the root on first use;
//! - policies: `policy set|ls|rm`, enforced by every node at container
//!   creation.
//!
//! Delegations with a threshold above one are signed by several key holders
//! in turn: a signature that does not reach the threshold is attached to the
//! image as a pending referrer ([`PENDING_ARTIFACT`]); the next holder's
//! `sign` adds to it and publishes once the threshold is met.
//!
//! Passphrases come from `BERTH_TRUST_{ROOT,TARGETS,SNAPSHOT,DELEGATION,BACKUP}_PASSPHRASE`
//! or a prompt on the terminal, token PINs from the variable the key's
//! reference names or a prompt; they are never echoed, printed or logged.
//! Keys a command generated are removed again when it fails before
//! publishing, so a failed command leaves no key behind.
//!
//! The pure parts of the signing workflow (which roles and keys sign, the
//! next targets and snapshot, signer delegations, pending signatures, checks
//! on attached trust data) are in [`berth_notary::workflow`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use berth_model::Reference;
use berth_notary::builder::{self, RepoEditor};
use berth_notary::client::{self as tuf, ClientError, FetchError, TrustedRepo};
use berth_notary::crypto::{self, SoftwareSigner};
use berth_notary::keys::{KeyType, PublicKey, SigMethod, SignError, Signer};
use berth_notary::keystore::{KeyInfo, KeyStore, KeyStoreError, Passphrase, TokenKeyRef};
use berth_notary::metadata::{FileMeta, RoleName, Signed, Targets};
use berth_notary::pkcs11::{
    self as pkcs11, KeySelector, Pkcs11Module, Pkcs11Signer, Pkcs11Token, TokenKey, TokenPin, TokenSelector,
};
use berth_notary::repo::{self, TrustPinning};
use berth_notary::workflow::{
    add_signer, describe_cka_id, describe_location, next_snapshot, next_targets, normalize_gun, passphrase_class,
    pending_file, preferred_key, public_key_from_pem, public_key_pem, publish_keys, remove_signer, role_keys,
    roles_to_sign, signer_role, slot_cka_id, token_selector, valid_signatures, verify_attached, Change, Inspection,
    View,
};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::cli::table;
use berth_client::{ndjson_lines, query_value, Client, ExitError, TlsFiles};
use berth_image::remote::{Answer, ConnectOptions, Connection};

/// Artifact type of the signed trust metadata attached to an image.
pub const TRUST_ARTIFACT: &str = "application/vnd.berth.trust.v1+json";
/// Artifact type of a signature that does not yet reach its role's threshold.
pub const PENDING_ARTIFACT: &str = "application/vnd.berth.trust.pending.v1+json";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
/// Largest manifest or trust document read from a registry.
const MAX_DOCUMENT: u64 = 4 << 20;
/// The variable naming a token's PIN when `--pin-env` is not given.
const DEFAULT_PIN_ENV: &str = "BERTH_TRUST_TOKEN_PIN";
/// The index of a key backup archive.
const BACKUP_INDEX: &str = "berth-key-backup.json";
const BACKUP_FORMAT: &str = "berth-key-backup-v1";
/// Largest key backup archive member read.
const MAX_BACKUP_MEMBER: u64 = 1 << 20;

// ---------------------------------------------------------------------------
// Arguments

#[derive(clap::Args)]
pub struct TrustArgs {
    #[command(subcommand)]
    command: TrustCommand,
}

#[derive(clap::Subcommand)]
enum TrustCommand {
    /// Manage signing keys
    Key(KeyArgs),
    /// Sign an image tag (pushing the image first if the registry lacks it)
    Sign(SignArgs),
    /// Show signed tags, signers and keys of a repository
    Inspect(InspectArgs),
    /// Remove the signature of a tag
    Revoke(RevokeArgs),
    /// Manage the signers (delegations) of a repository
    Signer(SignerArgs),
    /// Manage the trust policies nodes enforce when creating containers
    Policy(PolicyArgs),
}

#[derive(clap::Args)]
struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(clap::Subcommand)]
enum KeyCommand {
    /// Generate a signer key (writing NAME.pub) or, with --role, a repository's root, targets or snapshot key; ECDSA P-256, in the key store or on a PKCS#11 token (--token)
    Generate(KeyGenerateArgs),
    /// List the keys of this client (files and tokens)
    #[command(alias = "ls")]
    List(FormatArgs),
    /// Import a PEM private key (as the notary CLI or openssl write them), into the key store or onto a PKCS#11 token (--token)
    #[command(alias = "import")]
    Load(KeyLoadArgs),
    /// Replace a repository's root, targets, snapshot or timestamp key (the new key on a PKCS#11 token with --token)
    Rotate(KeyRotateArgs),
    /// Write the key store's private keys to a zip archive, encrypted with a backup passphrase ($BERTH_TRUST_BACKUP_PASSPHRASE or a prompt); keys on tokens are listed as not exportable
    Backup(KeyBackupArgs),
    /// Import the keys of a `key backup` archive into the key store
    Restore(KeyRestoreArgs),
}

/// Where a new key goes when it goes on a PKCS#11 token.
#[derive(clap::Args, Clone)]
struct TokenArgs {
    /// Put the key on a PKCS#11 token: the module's path (a YubiKey's libykcs11.so, an HSM's module, SoftHSM2's libsofthsm2.so)
    #[arg(long = "token", value_name = "MODULE")]
    token: Option<PathBuf>,
    /// The token's label (default: the module's only token)
    #[arg(long = "token-label", value_name = "LABEL", requires = "token")]
    token_label: Option<String>,
    /// The key's slot on the token: a YubiKey PIV slot (9a, 9c, 9d, 9e, 82..95) or id:HEX for a CKA_ID on any token (default: a new id)
    #[arg(long, value_name = "ID", requires = "token")]
    slot: Option<String>,
    /// The environment variable holding the token's user PIN, recorded for signing (else a prompt on the terminal)
    #[arg(long = "pin-env", value_name = "VAR", default_value = DEFAULT_PIN_ENV)]
    pin_env: String,
    /// Generate or import after the security officer login, its PIN read from VAR (a YubiKey's PIV management key in hex, which libykcs11 requires); without it, the user login
    #[arg(long = "so-pin-env", value_name = "VAR", requires = "token")]
    so_pin_env: Option<String>,
}

#[derive(clap::Args)]
struct KeyGenerateArgs {
    /// The signer's name (delegation targets/NAME)
    #[arg(required_unless_present = "role", conflicts_with = "role")]
    name: Option<String>,
    /// Generate a repository key instead: root (used by every new repository), or targets or snapshot for --gun; a new repository uses it instead of generating one
    #[arg(long, value_name = "ROLE")]
    role: Option<String>,
    /// The repository (GUN) a targets or snapshot key is for, e.g. 127.0.0.1:7443/team/app
    #[arg(long, value_name = "GUN")]
    gun: Option<String>,
    /// Directory to write NAME.pub to
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    #[command(flatten)]
    token: TokenArgs,
}

#[derive(clap::Args)]
struct KeyLoadArgs {
    file: PathBuf,
    /// The role to file the key under (root, targets, snapshot or a signer name); default the PEM's role header
    #[arg(long, visible_alias = "role")]
    name: Option<String>,
    /// The repository (GUN) of a targets or snapshot key; default the PEM's gun header
    #[arg(long, value_name = "GUN")]
    gun: Option<String>,
    #[command(flatten)]
    token: TokenArgs,
}

#[derive(clap::Args)]
struct KeyRotateArgs {
    /// The repository (GUN), e.g. 127.0.0.1:7443/team/app
    image: String,
    /// root, targets, snapshot or timestamp
    role: String,
    /// Let the trust server hold the new key (snapshot; timestamp always is)
    #[arg(short = 'r', long = "server-managed")]
    server_managed: bool,
    #[command(flatten)]
    token: TokenArgs,
}

#[derive(clap::Args)]
struct KeyBackupArgs {
    /// The archive to write (a zip, mode 0600; an existing file is not replaced)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// Only the keys of this repository (GUN)
    #[arg(long, value_name = "GUN")]
    gun: Option<String>,
}

#[derive(clap::Args)]
struct KeyRestoreArgs {
    /// An archive `berth trust key backup` wrote
    file: PathBuf,
}

#[derive(clap::Args)]
struct FormatArgs {
    /// Output format: table or json
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(clap::Args)]
struct SignArgs {
    image: String,
    /// Sign as this signer (delegation targets/NAME) instead of the repository key
    #[arg(long)]
    signer: Option<String>,
}

#[derive(clap::Args)]
struct InspectArgs {
    image: String,
    /// Output format: text or json
    #[arg(long, default_value = "text")]
    format: String,
    /// Verify from the trust metadata attached to the image (IMAGE@digest or IMAGE:TAG)
    #[arg(long = "from-referrers")]
    from_referrers: bool,
    /// Root key id(s) to pin when verifying from referrers
    #[arg(long = "root-key")]
    root_keys: Vec<String>,
}

#[derive(clap::Args)]
struct RevokeArgs {
    image: String,
}

#[derive(clap::Args)]
struct SignerArgs {
    #[command(subcommand)]
    command: SignerCommand,
}

#[derive(clap::Subcommand)]
enum SignerCommand {
    /// Add a signer (delegation targets/NAME) with its public key(s)
    Add(SignerAddArgs),
    /// Remove a signer
    #[command(alias = "rm")]
    Remove(SignerRemoveArgs),
}

#[derive(clap::Args)]
struct SignerAddArgs {
    name: String,
    repository: String,
    /// PEM public key or certificate (NAME.pub); repeat for several keys
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Signatures by this many of the keys are needed
    #[arg(long, default_value_t = 1)]
    threshold: i64,
}

#[derive(clap::Args)]
struct SignerRemoveArgs {
    name: String,
    repository: String,
}

#[derive(clap::Args)]
struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(clap::Subcommand)]
enum PolicyCommand {
    /// Require signatures for images of repositories matching a pattern
    Set(PolicySetArgs),
    /// List trust policies
    #[command(alias = "list")]
    Ls(FormatArgs),
    /// Remove a trust policy
    Rm(PolicyRmArgs),
}

#[derive(clap::Args)]
struct PolicySetArgs {
    /// Repository pattern: prod/*, 127.0.0.1:*/prod/*, team/** ...
    pattern: String,
    /// Signer names; repeat or separate with commas
    #[arg(long = "require-signer", required = true, value_delimiter = ',', num_args = 1..)]
    signers: Vec<String>,
    /// How many of the signers must have signed (default 1)
    #[arg(long, default_value_t = 1)]
    threshold: usize,
}

#[derive(clap::Args)]
struct PolicyRmArgs {
    pattern: String,
}

pub async fn trust(client: &Client, tls: &TlsFiles, a: TrustArgs) -> Result<i32> {
    let ctx = TrustSession::open(client, tls)?;
    let result = ctx.run(a).await;
    if result.is_err() {
        ctx.discard_generated();
    }
    result
}

impl TrustSession<'_> {
    async fn run(&self, a: TrustArgs) -> Result<i32> {
        let ctx = self;
        let client = self.daemon;
        match a.command {
            TrustCommand::Key(k) => match k.command {
                KeyCommand::Generate(a) => ctx.key_generate(a),
                KeyCommand::List(a) => ctx.key_list(a),
                KeyCommand::Load(a) => ctx.key_load(a),
                KeyCommand::Rotate(a) => ctx.key_rotate(a).await,
                KeyCommand::Backup(a) => ctx.key_backup(a),
                KeyCommand::Restore(a) => ctx.key_restore(a),
            },
            TrustCommand::Sign(a) => ctx.sign(a).await,
            TrustCommand::Inspect(a) => ctx.inspect(a).await,
            TrustCommand::Revoke(a) => ctx.revoke(a).await,
            TrustCommand::Signer(s) => match s.command {
                SignerCommand::Add(a) => ctx.signer_add(a).await,
                SignerCommand::Remove(a) => ctx.signer_remove(a).await,
            },
            TrustCommand::Policy(p) => match p.command {
                PolicyCommand::Set(a) => policy_set(client, a).await,
                PolicyCommand::Ls(a) => policy_ls(client, a).await,
                PolicyCommand::Rm(a) => policy_rm(client, a).await,
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Content trust for pull and run

/// `BERTH_CONTENT_TRUST=1` (or `true`).
pub fn content_trust_enabled() -> bool {
    matches!(std::env::var("BERTH_CONTENT_TRUST").as_deref(), Ok("1") | Ok("true"))
}

/// With content trust on, the reference to use instead of `image`:
/// `(name@sha256:..., Some(name:tag))`, the tag resolved through verified
/// trust data (the trust server, else the referrers pinned by
/// `BERTH_TRUST_ROOT_KEY`). A digest reference is returned unchanged.
pub async fn trusted_reference(client: &Client, image: &str) -> Result<(String, Option<String>)> {
    let r = Reference::parse(image).map_err(|e| anyhow!(e))?;
    if r.digest.is_some() {
        return Ok((image.to_string(), None));
    }
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let ctx = TrustSession::open(client, &tls_from_env())?;
    let target = ctx.gun_target(&r)?;
    let view = match ctx.load_trusted(&target).await? {
        Some(repo) => View::from_trusted(&repo),
        None => {
            let pins = env_root_keys();
            match ctx.view_from_referrers(&target, &tag, &pins).await {
                Ok(view) => view,
                Err(e) => bail!("content trust: no trust data for {} ({e:#})", target.gun),
            }
        }
    };
    let (meta, _) = view.resolve(&tag).ok_or_else(|| {
        anyhow!(
            "content trust: no signed tag {tag:?} in {}{}",
            target.gun,
            view.invalid_note()
        )
    })?;
    let hex = meta
        .sha256_hex()
        .ok_or_else(|| anyhow!("content trust: tag {tag:?} has no sha256 hash"))?;
    let name = r.familiar_name();
    Ok((format!("{name}@sha256:{hex}"), Some(format!("{name}:{tag}"))))
}

/// With content trust on, makes sure the daemon has `image` as its signed
/// digest and returns `name@sha256:...` to use instead (for `run`).
pub async fn trusted_local_image(client: &Client, image: &str) -> Result<String> {
    let (by_digest, tagged) = trusted_reference(client, image).await?;
    let present = client.image(&by_digest).await.is_ok();
    if !present {
        daemon_stream(client.pull(&by_digest, None, false).await?, "pulling").await?;
    }
    if let Some(tagged) = tagged {
        tag_locally(client, &by_digest, &tagged).await?;
    }
    Ok(by_digest)
}

/// `tag` `source` as `target` on the daemon.
pub async fn tag_locally(client: &Client, source: &str, target: &str) -> Result<()> {
    client.tag_image(source, target).await.map(drop)
}

/// Reads a daemon operation's NDJSON progress (`berth_model::Progress`);
/// the first error line fails it.
async fn daemon_stream(resp: hyper::Response<hyper::body::Incoming>, what: &str) -> Result<()> {
    let mut error = None;
    ndjson_lines(resp, |line| {
        if let Ok(p) = serde_json::from_slice::<berth_model::Progress>(line) {
            if let Some(e) = p.error {
                error.get_or_insert(e.message);
            }
        }
        Ok(())
    })
    .await?;
    match error {
        Some(e) => Err(ExitError(1, format!("{what}: {e}")).into()),
        None => Ok(()),
    }
}

fn tls_from_env() -> TlsFiles {
    let path = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    TlsFiles {
        ca: path("BERTH_TLS_CA"),
        cert: path("BERTH_TLS_CERT"),
        key: path("BERTH_TLS_KEY"),
    }
}

fn env_root_keys() -> Vec<String> {
    std::env::var("BERTH_TRUST_ROOT_KEY")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------
// The registry and its trust server

/// A registry host (and the trust server on its `/v2/` routes), reached
/// through the image store's registry client
/// (`berth_image::remote::Connection`): its loopback rule, challenge flow
/// and retries.
struct Registry {
    host: String,
    tls: TlsFiles,
    /// The daemon this command talks to: for a loopback registry (its own,
    /// most often), the CA its TLS listener has and a registry token for
    /// `repository`; for any registry, a token when a delete asks for one.
    daemon: Option<Client>,
    repository: Option<String>,
    conn: tokio::sync::OnceCell<Connection>,
}

/// Error answers are read up to this size.
const ERROR_BODY: u64 = 64 << 10;

fn is_loopback(host: &str) -> bool {
    berth_image::is_loopback(host)
}

/// A response body, at most `limit` bytes (more is an error naming `what`).
async fn read_capped(resp: hyper::Response<hyper::body::Incoming>, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.with_context(|| format!("reading {what}"))?;
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
            if out.len() as u64 > limit {
                bail!("{what} is larger than {limit} bytes");
            }
        }
    }
    Ok(out)
}

/// A PEM file of `--tlscacert`/`--tlscert`/`--tlskey`.
fn pem_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

struct Manifest {
    digest: String,
    media_type: String,
    bytes: Vec<u8>,
}

impl Registry {
    fn connect(host: &str, tls: &TlsFiles) -> Result<Registry> {
        Ok(Registry {
            host: host.to_string(),
            tls: tls.clone(),
            daemon: None,
            repository: None,
            conn: tokio::sync::OnceCell::new(),
        })
    }

    /// TLS to any registry, verified with the public roots or the CA of
    /// `--tlscacert`; a loopback one (as Docker allows) verified with the
    /// daemon's CA when it speaks TLS (the daemon's own TLS listener), else
    /// in plain HTTP, and then with the daemon's token for the repository.
    async fn conn(&self) -> Result<&Connection> {
        self.conn
            .get_or_try_init(|| async {
                let host = self.host.clone();
                let mut options = ConnectOptions::default();
                if let (Some(cert), Some(key)) = (&self.tls.cert, &self.tls.key) {
                    options.identity = Some((pem_file(cert, "client certificate")?, pem_file(key, "client key")?));
                }
                if !is_loopback(&host) {
                    if let Some(ca) = &self.tls.ca {
                        options.ca_pem = Some(pem_file(ca, "CA")?);
                    }
                } else if let Some(daemon) = &self.daemon {
                    if let Ok(resp) = daemon.ca_pem_response().await {
                        if resp.status().is_success() {
                            options.ca_pem = Some(read_capped(resp, 64 << 10, "the daemon's CA").await?);
                        }
                    }
                    if let Some(repository) = &self.repository {
                        let scope = format!("repository:{repository}:pull,push,delete");
                        options.authorization = daemon
                            .registry_token(&scope)
                            .await
                            .ok()
                            .map(|t| format!("Bearer {}", t.token));
                    }
                }
                tokio::task::spawn_blocking(move || Connection::open(&host, options))
                    .await
                    .context("connecting to the registry")?
                    .map_err(|e| anyhow!("{e}"))
            })
            .await
    }

    /// One request; the answer whatever its status, its body up to `limit`
    /// bytes (an error answer's up to 64 KiB).
    async fn request(
        &self,
        method: &'static str,
        path: String,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        limit: u64,
    ) -> Result<Answer> {
        let conn = self.conn().await?.clone();
        tokio::task::spawn_blocking(move || {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            conn.request(method, &path, &headers, &body, limit.max(ERROR_BODY))
        })
        .await
        .context("the registry request")?
        .map_err(|e| anyhow!("{e}"))
    }

    async fn get(&self, path: String, accept: &str, limit: u64) -> Result<Answer> {
        self.request("GET", path, vec![("accept", accept.to_string())], Vec::new(), limit)
            .await
    }

    fn failure(&self, what: &str, answer: &Answer) -> anyhow::Error {
        let detail = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| {
                let e = v.get("errors")?.get(0)?.clone();
                let mut text = e.get("message")?.as_str()?.to_string();
                if let Some(d) = e.get("detail").filter(|d| !d.is_null()) {
                    text.push_str(&format!(" ({d})"));
                }
                Some(text)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).trim().to_string());
        let status = StatusCode::from_u16(answer.status).map_or(answer.status.to_string(), |s| s.to_string());
        anyhow!("registry {}: {what}: {status}: {detail}", self.host)
    }

    /// A trust metadata file (`root.json`, `2.root.json`, ...), capped.
    async fn trust_get(&self, gun: &str, name: &str, max: u64) -> Result<Vec<u8>, FetchError> {
        let answer = self
            .get(format!("/v2/{gun}/_trust/tuf/{name}"), "application/json", max)
            .await
            .map_err(|e| FetchError::Other(format!("{e:#}")))?;
        match answer.status {
            200 if answer.body.len() as u64 > max => {
                Err(FetchError::Other(format!("{name} is larger than {max} bytes")))
            }
            200 => Ok(answer.body),
            404 => Err(FetchError::NotFound),
            _ => Err(FetchError::Other(format!(
                "{:#}",
                self.failure(&format!("GET {name}"), &answer)
            ))),
        }
    }

    /// Publish an update: one multipart part per role, as the notary CLI does.
    async fn trust_publish(&self, gun: &str, files: &[(RoleName, Vec<u8>)]) -> Result<()> {
        let boundary = format!("berth-{}", berth_model::new_id());
        let mut body = Vec::new();
        for (role, bytes) in files {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{role}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let answer = self
            .request(
                "POST",
                format!("/v2/{gun}/_trust/tuf/"),
                vec![("content-type", content_type)],
                body,
                ERROR_BODY,
            )
            .await?;
        if answer.is_success() {
            return Ok(());
        }
        Err(self.failure(&format!("publishing trust data for {gun}"), &answer))
    }

    /// The server-held `timestamp` or `snapshot` key; `rotate` asks for a new one.
    async fn trust_key(&self, gun: &str, role: &str, rotate: bool) -> Result<PublicKey> {
        let method = if rotate { "POST" } else { "GET" };
        let answer = self
            .request(
                method,
                format!("/v2/{gun}/_trust/tuf/{role}.key"),
                vec![("accept", "application/json".to_string())],
                Vec::new(),
                64 << 10,
            )
            .await?;
        if !answer.is_success() {
            return Err(self.failure(&format!("the {role} key of {gun}"), &answer));
        }
        let value: Value = serde_json::from_slice(&answer.body).context("the trust server's key is not JSON")?;
        PublicKey::from_json(&value).map_err(|e| anyhow!("the trust server's {role} key: {e}"))
    }

    /// A manifest by tag or digest; `None` when the registry has none.
    async fn manifest(&self, repository: &str, reference: &str) -> Result<Option<Manifest>> {
        let answer = self
            .get(
                format!("/v2/{repository}/manifests/{reference}"),
                MANIFEST_ACCEPT,
                MAX_DOCUMENT,
            )
            .await?;
        if answer.status == 404 {
            return Ok(None);
        }
        if !answer.is_success() {
            return Err(self.failure(&format!("manifest {repository}:{reference}"), &answer));
        }
        if answer.body.len() as u64 > MAX_DOCUMENT {
            bail!("a manifest is larger than {MAX_DOCUMENT} bytes");
        }
        let media_type = answer.content_type.unwrap_or_else(|| OCI_MANIFEST.to_string());
        let bytes = answer.body;
        let digest = sha256_digest(&bytes);
        if reference.starts_with("sha256:") && reference != digest {
            bail!("registry {}: manifest {reference} has digest {digest}", self.host);
        }
        Ok(Some(Manifest {
            digest,
            media_type,
            bytes,
        }))
    }

    async fn blob(&self, repository: &str, digest: &str, max: u64) -> Result<Vec<u8>> {
        let answer = self.get(format!("/v2/{repository}/blobs/{digest}"), "*/*", max).await?;
        if !answer.is_success() {
            return Err(self.failure(&format!("blob {digest}"), &answer));
        }
        if answer.body.len() as u64 > max {
            bail!("a blob is larger than {max} bytes");
        }
        if sha256_digest(&answer.body) != digest {
            bail!("registry {}: blob {digest} does not match its digest", self.host);
        }
        Ok(answer.body)
    }

    /// Uploads `bytes` as a blob (one monolithic POST) unless it is there.
    async fn put_blob(&self, repository: &str, bytes: &[u8]) -> Result<String> {
        let digest = sha256_digest(bytes);
        let head = self
            .request(
                "HEAD",
                format!("/v2/{repository}/blobs/{digest}"),
                Vec::new(),
                Vec::new(),
                0,
            )
            .await?;
        if head.is_success() {
            return Ok(digest);
        }
        let answer = self
            .request(
                "POST",
                format!("/v2/{repository}/blobs/uploads/?digest={digest}"),
                vec![("content-type", "application/octet-stream".to_string())],
                bytes.to_vec(),
                ERROR_BODY,
            )
            .await?;
        if !answer.is_success() {
            return Err(self.failure(&format!("uploading blob {digest}"), &answer));
        }
        Ok(digest)
    }

    async fn put_manifest(&self, repository: &str, media_type: &str, bytes: Vec<u8>) -> Result<String> {
        let digest = sha256_digest(&bytes);
        let answer = self
            .request(
                "PUT",
                format!("/v2/{repository}/manifests/{digest}"),
                vec![("content-type", media_type.to_string())],
                bytes,
                ERROR_BODY,
            )
            .await?;
        if !answer.is_success() {
            return Err(self.failure(&format!("pushing manifest {digest}"), &answer));
        }
        Ok(digest)
    }

    /// Deletes a manifest; when the registry wants a token this connection
    /// has not (an open registry lets nobody delete anonymously), the
    /// daemon's token for the caller, which that daemon's own registry accepts.
    async fn delete_manifest(&self, repository: &str, digest: &str) -> Result<()> {
        let path = format!("/v2/{repository}/manifests/{digest}");
        let answer = match self
            .request("DELETE", path.clone(), Vec::new(), Vec::new(), ERROR_BODY)
            .await
        {
            Ok(answer) if answer.status != 401 => answer,
            first => {
                let Some(daemon) = &self.daemon else {
                    return first.map(drop);
                };
                let scope = format!("repository:{repository}:delete");
                let token = daemon
                    .registry_token(&scope)
                    .await
                    .context("asking the daemon for a registry token")?;
                self.request(
                    "DELETE",
                    path,
                    vec![("authorization", format!("Bearer {}", token.token))],
                    Vec::new(),
                    ERROR_BODY,
                )
                .await?
            }
        };
        if answer.is_success() || answer.status == 404 {
            return Ok(());
        }
        Err(self.failure(&format!("deleting manifest {digest}"), &answer))
    }

    /// Descriptors of the referrers of `digest` with `artifact_type`.
    async fn referrers(&self, repository: &str, digest: &str, artifact_type: &str) -> Result<Vec<Value>> {
        let path = format!(
            "/v2/{repository}/referrers/{digest}?artifactType={}",
            query_value(artifact_type)
        );
        let answer = self
            .get(path, "application/vnd.oci.image.index.v1+json", MAX_DOCUMENT)
            .await?;
        if answer.status == 404 {
            return Ok(Vec::new());
        }
        if !answer.is_success() {
            return Err(self.failure(&format!("referrers of {digest}"), &answer));
        }
        let index: Value = serde_json::from_slice(&answer.body).context("the referrers index is not JSON")?;
        Ok(index
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|d| d.get("artifactType").and_then(Value::as_str) == Some(artifact_type))
            .collect())
    }

    /// Attaches `document` to `subject` as an artifact of `artifact_type`.
    async fn attach(
        &self,
        repository: &str,
        subject: &Value,
        artifact_type: &str,
        document: &[u8],
        annotations: Value,
    ) -> Result<String> {
        let config_digest = self.put_blob(repository, b"{}").await?;
        let layer_digest = self.put_blob(repository, document).await?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": EMPTY_CONFIG, "digest": config_digest, "size": 2},
            "layers": [{"mediaType": artifact_type, "digest": layer_digest, "size": document.len()}],
            "subject": subject,
            "annotations": annotations,
        });
        self.put_manifest(repository, OCI_MANIFEST, serde_json::to_vec(&manifest)?)
            .await
    }

    /// The documents attached to `digest` as `artifact_type`: `(manifest
    /// digest, annotations, document)`.
    async fn attached(
        &self,
        repository: &str,
        digest: &str,
        artifact_type: &str,
    ) -> Result<Vec<(String, Value, Vec<u8>)>> {
        let mut out = Vec::new();
        for descriptor in self.referrers(repository, digest, artifact_type).await? {
            let Some(manifest_digest) = descriptor.get("digest").and_then(Value::as_str) else {
                continue;
            };
            let Some(manifest) = self.manifest(repository, manifest_digest).await? else {
                continue;
            };
            let doc: Value = serde_json::from_slice(&manifest.bytes).context("a trust referrer is not JSON")?;
            let Some(layer) = doc.get("layers").and_then(|l| l.get(0)) else {
                continue;
            };
            let Some(layer_digest) = layer.get("digest").and_then(Value::as_str) else {
                continue;
            };
            let bytes = self.blob(repository, layer_digest, MAX_DOCUMENT).await?;
            let annotations = doc.get("annotations").cloned().unwrap_or(Value::Null);
            out.push((manifest_digest.to_string(), annotations, bytes));
        }
        Ok(out)
    }
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        FileMeta::from_bytes(bytes).sha256_hex().unwrap_or_default()
    )
}

// ---------------------------------------------------------------------------
// Keys and passphrases

/// A signer key this client knows by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SignerRecord {
    name: String,
    key_id: String,
    /// `file` (in the key store) or `pkcs11`.
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    module: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_label: Option<String>,
    /// The name of the variable holding the PIN (never the PIN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pin_env: Option<String>,
}

/// A token key that says so before each signature (a YubiKey may wait for a touch).
struct TokenSigner {
    inner: Pkcs11Signer,
}

impl Signer for TokenSigner {
    fn public_key(&self) -> &PublicKey {
        self.inner.public_key()
    }
    fn method(&self) -> SigMethod {
        self.inner.method()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        eprintln!(
            "Signing with key {} on token {:?} (touch the key if it blinks)",
            short(&self.inner.key().key_id),
            self.inner.token_info().label
        );
        self.inner.sign(message)
    }
}

/// Writes a key backup: a zip of `index` and the PEM `members`, mode 0600,
/// through a temporary file beside `output` so a failure leaves nothing.
fn write_backup<S: std::ops::Deref<Target = String>>(
    output: &Path,
    index: &[u8],
    members: &[(String, S)],
) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = output
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file name", output.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> Result<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .unix_permissions(0o600);
        zip.start_file(BACKUP_INDEX, options)?;
        zip.write_all(index)?;
        for (path, pem) in members {
            zip.start_file(path.as_str(), options)?;
            zip.write_all(pem.as_bytes())?;
        }
        zip.finish()?.sync_all()?;
        // No replacing a file that appeared meanwhile.
        std::fs::hard_link(&tmp, output).with_context(|| format!("writing {}", output.display()))?;
        Ok(())
    };
    let result = write();
    let _ = std::fs::remove_file(&tmp);
    result
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn prompt_secret(prompt: &str) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::Write;
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let original = tcgetattr(&stdin).context("reading the terminal's mode")?;
    let mut silent = original.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    silent.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&stdin, SetArg::TCSANOW, &silent).context("turning echo off")?;
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &original);
    read.context("reading the passphrase")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Everything a trust command works with.
struct TrustSession<'a> {
    daemon: &'a Client,
    tls: TlsFiles,
    dir: PathBuf,
    store: KeyStore,
    passphrases: Mutex<HashMap<&'static str, Passphrase>>,
    /// Token PINs read this run, by module, token and variable.
    pins: Mutex<HashMap<String, Passphrase>>,
    /// Keys this command generated and has not published yet: removed
    /// again when it fails.
    generated: Mutex<Vec<String>>,
}

/// A repository: its GUN and where it lives.
struct GunTarget {
    gun: String,
    registry: Registry,
    /// The repository path in the registry.
    repository: String,
}

impl<'a> TrustSession<'a> {
    fn open(daemon: &'a Client, tls: &TlsFiles) -> Result<TrustSession<'a>> {
        let dir = match std::env::var_os("BERTH_TRUST_DIR").filter(|d| !d.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => {
                let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set; set BERTH_TRUST_DIR"))?;
                Path::new(&home).join(".berth").join("trust")
            }
        };
        let store = KeyStore::open(&dir.join("private"))
            .with_context(|| format!("opening the key store in {}", dir.display()))?;
        Ok(TrustSession {
            daemon,
            tls: tls.clone(),
            dir,
            store,
            passphrases: Mutex::new(HashMap::new()),
            pins: Mutex::new(HashMap::new()),
            generated: Mutex::new(Vec::new()),
        })
    }

    fn gun_target(&self, r: &Reference) -> Result<GunTarget> {
        Ok(GunTarget {
            gun: format!("{}/{}", r.registry, r.repository),
            registry: Registry {
                daemon: Some(self.daemon.clone()),
                repository: Some(r.repository.clone()),
                ..Registry::connect(&r.registry, &self.tls)?
            },
            repository: r.repository.clone(),
        })
    }

    fn cache_dir(&self, gun: &str) -> PathBuf {
        self.dir.join("tuf").join(berth_engine::escape_gun(gun))
    }

    /// The passphrase of a class of keys: the environment, else a prompt.
    /// A new ECDSA key for `role` of `gun` in the key store, under the
    /// role's passphrase class.
    fn generate_role_key(&self, role: &str, gun: &str) -> Result<(KeyInfo, SoftwareSigner)> {
        let (info, signer) = self
            .store
            .generate(
                KeyType::Ecdsa,
                role,
                gun,
                &self.passphrase(passphrase_class(role), true)?,
            )
            .map_err(|e| anyhow!("{e}"))?;
        self.note_generated(&info.key_id);
        Ok((info, signer))
    }

    fn note_generated(&self, key_id: &str) {
        lock(&self.generated).push(key_id.to_string());
    }

    /// Removes the keys this command generated (from the key store and
    /// from their tokens); called when the command fails before publishing
    /// them.
    fn discard_generated(&self) {
        let ids = std::mem::take(&mut *lock(&self.generated));
        for id in ids.into_iter().rev() {
            let Ok(info) = self.store.info(&id) else { continue };
            if let Some(reference) = &info.token {
                if let Err(e) = self.delete_token_key(&info, reference) {
                    eprintln!(
                        "warning: key {id} generated by this command stays on token {:?}: {e:#}",
                        reference.token_label
                    );
                }
            }
            match self.store.remove(&id) {
                Ok(()) => eprintln!("Removed key {id} ({}), generated by this failed command", info.role),
                Err(e) => eprintln!("warning: key {id} generated by this command could not be removed: {e}"),
            }
        }
    }

    fn delete_token_key(&self, info: &KeyInfo, reference: &TokenKeyRef) -> Result<()> {
        let module = Pkcs11Module::open(&reference.module).map_err(|e| anyhow!("{e}"))?;
        let selector = token_selector(Some(&reference.token_label));
        let token = match &reference.so_pin_env {
            Some(var) => {
                let so_pin = self.token_secret(&reference.module, &reference.token_label, var, true)?;
                module.open_token_as_security_officer(&selector, &so_pin)
            }
            None => {
                let pin = self.token_secret(&reference.module, &reference.token_label, &reference.pin_env, false)?;
                module.open_token(&selector, Some(&pin))
            }
        }
        .map_err(|e| anyhow!("{e}"))?;
        let key = token
            .find_key(&KeySelector::KeyId(info.key_id.clone()))
            .map_err(|e| anyhow!("{e}"))?;
        token.delete_key(&key).map_err(|e| anyhow!("{e}"))
    }

    fn passphrase(&self, class: &'static str, creating: bool) -> Result<Passphrase> {
        let mut cache = self.passphrases.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(class) {
            return Ok(p.clone());
        }
        let var = format!("BERTH_TRUST_{class}_PASSPHRASE");
        let passphrase = match std::env::var(&var) {
            Ok(p) if !p.is_empty() => Passphrase::new(p),
            _ => {
                if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    bail!(
                        "the {} key needs a passphrase: set {var} or run on a terminal",
                        class.to_lowercase()
                    );
                }
                let what = class.to_lowercase();
                let first = prompt_secret(&format!("Passphrase for the {what} key: "))?;
                if creating {
                    let again = prompt_secret(&format!("Repeat the passphrase for the {what} key: "))?;
                    if again != first {
                        bail!("the passphrases do not match");
                    }
                }
                if first.is_empty() {
                    bail!("an empty passphrase is not allowed");
                }
                Passphrase::new(first)
            }
        };
        cache.insert(class, passphrase.clone());
        Ok(passphrase)
    }

    fn signers_dir(&self) -> PathBuf {
        self.dir.join("signers")
    }

    fn records(&self) -> Result<Vec<SignerRecord>> {
        let dir = self.signers_dir();
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let record: SignerRecord =
                serde_json::from_slice(&text).with_context(|| format!("{} is not a signer record", path.display()))?;
            out.push(record);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn save_record(&self, record: &SignerRecord) -> Result<()> {
        let dir = self.signers_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{}.json", record.name));
        std::fs::write(&path, serde_json::to_vec_pretty(record)?).with_context(|| format!("writing {}", path.display()))
    }

    fn token_signer(&self, record: &SignerRecord) -> Result<Box<dyn Signer>> {
        let module_path = record
            .module
            .as_ref()
            .ok_or_else(|| anyhow!("signer {} has no module", record.name))?;
        let module = Pkcs11Module::open(module_path).map_err(|e| anyhow!("{e}"))?;
        let pin_env = record.pin_env.clone().unwrap_or_else(|| DEFAULT_PIN_ENV.into());
        let pin = std::env::var(&pin_env)
            .ok()
            .filter(|p| !p.is_empty())
            .map(TokenPin::new)
            .ok_or_else(|| anyhow!("signer {}: set ${pin_env} to the user PIN of its token", record.name))?;
        let selector = match &record.token_label {
            Some(label) => TokenSelector::Label(label.clone()),
            None => TokenSelector::Only,
        };
        let token = module
            .open_token(&selector, Some(&pin))
            .map_err(|e| anyhow!("signer {}: {e} (the PIN is read from ${pin_env})", record.name))?;
        let key = token
            .find_key(&KeySelector::KeyId(record.key_id.clone()))
            .map_err(|e| anyhow!("{e}"))?;
        let inner = token.signer(&key).map_err(|e| anyhow!("{e}"))?;
        Ok(Box::new(TokenSigner { inner }))
    }

    /// A token PIN (or, with `security_officer`, the SO PIN / PIV
    /// management key) from `var`, else a prompt on the terminal; read once
    /// per run.
    fn token_secret(&self, module: &Path, label: &str, var: &str, security_officer: bool) -> Result<TokenPin> {
        let cache_key = format!("{}\0{label}\0{var}", module.display());
        if let Some(pin) = lock(&self.pins).get(&cache_key) {
            return Ok(TokenPin::new(pin.expose()));
        }
        let what = if security_officer {
            "security officer PIN (a YubiKey's PIV management key)"
        } else {
            "user PIN"
        };
        let shown = if label.is_empty() {
            format!("the token of {}", module.display())
        } else {
            format!("token {label:?}")
        };
        let pin = match std::env::var(var) {
            Ok(p) if !p.is_empty() => p,
            _ if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
                prompt_secret(&format!("The {what} of {shown}: "))?
            }
            _ => bail!(
                "{shown} of PKCS#11 module {} needs its {what}: set ${var} or run on a terminal",
                module.display()
            ),
        };
        lock(&self.pins).insert(cache_key, Passphrase::new(pin.clone()));
        Ok(TokenPin::new(pin))
    }

    /// Opens the token `t` names to put a key on it: as security officer
    /// with `--so-pin-env`, else as user. A YubiKey needs both a PIV slot
    /// and the security officer.
    fn open_token_to_write(&self, t: &TokenArgs, module_path: &Path) -> Result<Pkcs11Token> {
        let module = Pkcs11Module::open(module_path).map_err(|e| anyhow!("{e}"))?;
        let selector = token_selector(t.token_label.as_deref());
        let tokens = module.tokens().map_err(|e| anyhow!("{e}"))?;
        let described = tokens.iter().find(|info| match &selector {
            TokenSelector::Label(label) => info.initialized && info.label == *label,
            _ => info.initialized,
        });
        let label = described
            .map(|i| i.label.clone())
            .or(t.token_label.clone())
            .unwrap_or_default();
        if described.is_some_and(|i| i.manufacturer.contains("Yubico") || i.model.contains("YubiKey")) {
            if t.slot.is_none() {
                bail!("token {label:?} is a YubiKey: choose the PIV slot for the key with --slot (9a, 9c, 9d, 9e, 82..95)");
            }
            if t.so_pin_env.is_none() {
                bail!(
                    "token {label:?} is a YubiKey: libykcs11 generates and imports keys only after the security officer login; \
                     pass --so-pin-env VAR with VAR holding the PIV management key in hex"
                );
            }
        }
        match &t.so_pin_env {
            Some(var) => {
                let so_pin = self.token_secret(module_path, &label, var, true)?;
                module
                    .open_token_as_security_officer(&selector, &so_pin)
                    .map_err(|e| anyhow!("{e} (the security officer PIN is read from ${var})"))
            }
            None => {
                let pin = self.token_secret(module_path, &label, &t.pin_env, false)?;
                module
                    .open_token(&selector, Some(&pin))
                    .map_err(|e| anyhow!("{e} (the PIN is read from ${})", t.pin_env))
            }
        }
    }

    /// Records `key`, just put on `token`, in the key store as `role` of
    /// `gun`; on failure the key is deleted from the token again.
    fn record_token_key(
        &self,
        t: &TokenArgs,
        module_path: &Path,
        token: &Pkcs11Token,
        key: &TokenKey,
        role: &str,
        gun: &str,
    ) -> Result<KeyInfo> {
        let reference = TokenKeyRef {
            module: module_path.canonicalize().unwrap_or_else(|_| module_path.to_path_buf()),
            token_label: token.info().label.clone(),
            token_serial: token.info().serial.clone(),
            cka_id: pkcs11::hex_string(&key.cka_id),
            key_label: key.label.clone(),
            pin_env: t.pin_env.clone(),
            so_pin_env: t.so_pin_env.clone(),
        };
        match self.store.add_token_key(&key.public_key, role, gun, &reference) {
            Ok(info) => {
                self.note_generated(&info.key_id);
                Ok(info)
            }
            Err(e) => {
                let _ = token.delete_key(key);
                Err(anyhow!("{e}"))
            }
        }
    }

    /// Generates a P-256 key for `role` of `gun` on the token `t` names and
    /// records it in the key store.
    fn token_generate(&self, t: &TokenArgs, role: &str, gun: &str, label: &str) -> Result<KeyInfo> {
        let module_path = t.token.as_deref().ok_or_else(|| anyhow!("no --token module given"))?;
        let cka_id = t.slot.as_deref().map(slot_cka_id).transpose()?;
        let token = self.open_token_to_write(t, module_path)?;
        let key = token.generate_p256_key(label, cka_id.as_deref()).map_err(|e| {
            let mut message = e.to_string();
            if let Some(slot) = &t.slot {
                message.push_str(&format!(" (--slot {slot})"));
            }
            if t.so_pin_env.is_some() && message.contains("not logged in") {
                message.push_str("; this token generates keys after the user login: drop --so-pin-env");
            }
            anyhow!(message)
        })?;
        self.record_token_key(t, module_path, &token, &key, role, gun)
    }

    /// A signer for a key on a token, logged in with the user PIN.
    fn token_key_signer(&self, info: &KeyInfo, reference: &TokenKeyRef) -> Result<Box<dyn Signer>> {
        let what = format!("{} key {}", info.role, short(&info.key_id));
        let module = Pkcs11Module::open(&reference.module).map_err(|e| anyhow!("{what}: {e}"))?;
        let pin = self
            .token_secret(&reference.module, &reference.token_label, &reference.pin_env, false)
            .map_err(|e| anyhow!("{what}: {e:#}"))?;
        let token = module
            .open_token(&token_selector(Some(&reference.token_label)), Some(&pin))
            .map_err(|e| anyhow!("{what}: {e} (the PIN is read from ${})", reference.pin_env))?;
        let key = token
            .find_key(&KeySelector::KeyId(info.key_id.clone()))
            .map_err(|e| anyhow!("{what} ({}): {e}", describe_cka_id(&reference.cka_id)))?;
        let inner = token.signer(&key).map_err(|e| anyhow!("{what}: {e}"))?;
        Ok(Box::new(TokenSigner { inner }))
    }

    /// A signer for a key in the store: decrypted, or on its token.
    fn signer_for_info(&self, info: &KeyInfo) -> Result<Box<dyn Signer>> {
        if let Some(reference) = &info.token {
            return self.token_key_signer(info, reference);
        }
        let class = passphrase_class(&info.role);
        let signer = self
            .store
            .load(&info.key_id, &self.passphrase(class, false)?)
            .map_err(|e| anyhow!("{e}"))?;
        Ok(Box::new(signer))
    }

    /// A signer for `key` (by canonical id: a root certificate key finds its
    /// bare key) if this client holds it.
    fn signer_for(&self, key: &PublicKey) -> Result<Option<Box<dyn Signer>>> {
        let id = key.canonical_id().map_err(|e| anyhow!("{e}"))?;
        match self.store.info(&id) {
            Ok(info) => return self.signer_for_info(&info).map(Some),
            Err(KeyStoreError::NotFound { .. }) => {}
            Err(e) => return Err(anyhow!("{e}")),
        }
        for record in self.records()? {
            if record.source == "pkcs11" && record.key_id == id {
                return self.token_signer(&record).map(Some);
            }
        }
        Ok(None)
    }

    /// Signers for every key of `keys` this client holds.
    fn signers_for<'k>(&self, keys: impl IntoIterator<Item = &'k PublicKey>) -> Result<Vec<Box<dyn Signer>>> {
        let mut out: Vec<Box<dyn Signer>> = Vec::new();
        let mut seen = BTreeSet::new();
        for key in keys {
            let id = key.canonical_id().map_err(|e| anyhow!("{e}"))?;
            if !seen.insert(id) {
                continue;
            }
            if let Some(s) = self.signer_for(key)? {
                out.push(s);
            }
        }
        Ok(out)
    }

    fn holds(&self, key: &PublicKey) -> bool {
        let Ok(id) = key.canonical_id() else { return false };
        self.store.info(&id).is_ok()
            || self
                .records()
                .unwrap_or_default()
                .iter()
                .any(|r| r.source == "pkcs11" && r.key_id == id)
    }

    /// The root key new repositories use: one on a token, else the first
    /// in the store, else a new one.
    fn root_signer(&self) -> Result<Box<dyn Signer>> {
        let keys = self.store.list().map_err(|e| anyhow!("{e}"))?;
        match preferred_key(&keys, "root", "") {
            Some(info) => self.signer_for_info(info),
            None => {
                let (info, signer) = self.generate_role_key("root", "")?;
                eprintln!("Generated root key {}", info.key_id);
                Ok(Box::new(signer))
            }
        }
    }

    // -----------------------------------------------------------------------
    // Trust data

    /// Verified trust data of a GUN, or `None` when the server has none.
    async fn load_trusted(&self, target: &GunTarget) -> Result<Option<TrustedRepo>> {
        self.load_trusted_pinned(target, &TrustPinning::default()).await
    }

    async fn load_trusted_pinned(&self, target: &GunTarget, pinning: &TrustPinning) -> Result<Option<TrustedRepo>> {
        let handle = tokio::runtime::Handle::current();
        let cache = self.cache_dir(&target.gun);
        let gun = target.gun.clone();
        let registry = &target.registry;
        let result = tokio::task::block_in_place(|| {
            let fetch = |name: &str, max: u64| handle.block_on(registry.trust_get(&gun, name, max));
            tuf::update(&gun, &cache, pinning, Utc::now(), &fetch)
        });
        match result {
            Ok(repo) => Ok(Some(repo)),
            Err(ClientError::RepositoryNotFound { .. }) => Ok(None),
            Err(e) => Err(anyhow!(
                "content trust: trust data of {} does not verify: {e}",
                target.gun
            )),
        }
    }

    /// A new repository: root (the client's root key, an `ecdsa-x509`
    /// certificate for the GUN), targets (a new key), snapshot and timestamp
    /// (held by the trust server, as Docker sets them up).
    /// A targets or snapshot key already in the store for the GUN (from
    /// `key generate --role ... --gun`, e.g. on a token) is used instead of a
    /// new targets key or the server's snapshot key.
    async fn new_repo(&self, target: &GunTarget, now: DateTime<Utc>) -> Result<(RepoEditor, Vec<Box<dyn Signer>>)> {
        let root = self.root_signer()?;
        let cert = crypto::create_root_certificate(root.as_ref(), &target.gun, now).map_err(|e| anyhow!("{e}"))?;
        let keys = self.store.list().map_err(|e| anyhow!("{e}"))?;
        let targets: Box<dyn Signer> = match preferred_key(&keys, "targets", &target.gun) {
            Some(info) => {
                eprintln!(
                    "Using targets key {} for {} ({})",
                    info.key_id,
                    target.gun,
                    describe_location(&self.store, info)
                );
                self.signer_for_info(info)?
            }
            None => {
                let (info, signer) = self.generate_role_key("targets", &target.gun)?;
                eprintln!("Generated targets key {} for {}", info.key_id, target.gun);
                Box::new(signer)
            }
        };
        let snapshot = match preferred_key(&keys, "snapshot", &target.gun) {
            Some(info) => {
                eprintln!(
                    "Using snapshot key {} for {} ({})",
                    info.key_id,
                    target.gun,
                    describe_location(&self.store, info)
                );
                info.public.clone()
            }
            None => target.registry.trust_key(&target.gun, "snapshot", false).await?,
        };
        let timestamp = target.registry.trust_key(&target.gun, "timestamp", false).await?;
        let editor = RepoEditor::create(
            &target.gun,
            &[cert],
            &[targets.public_key().clone()],
            &[snapshot],
            &[timestamp],
            now,
        )
        .map_err(|e| anyhow!("{e}"))?;
        Ok((editor, vec![root, targets]))
    }

    fn editor_from(&self, repo: &TrustedRepo) -> Result<RepoEditor> {
        let root = repo.files().get(&RoleName::Root).cloned().unwrap_or_default();
        let targets: BTreeMap<RoleName, Vec<u8>> = repo
            .files()
            .iter()
            .filter(|(r, _)| r.is_targets_like())
            .map(|(r, b)| (r.clone(), b.clone()))
            .collect();
        RepoEditor::from_published(repo.gun(), &root, &targets, Some(&repo.snapshot().to_bytes()))
            .map_err(|e| anyhow!("{e}"))
    }

    /// Signers for what `editor` is about to publish: the keys of root (when
    /// it changed), targets, and snapshot (when held here) this client holds.
    fn publish_signers(&self, editor: &RepoEditor, extra: Vec<Box<dyn Signer>>) -> Result<Vec<Box<dyn Signer>>> {
        let mut signers = extra;
        let held: BTreeSet<String> = signers
            .iter()
            .map(|s| s.public_key().canonical_id().unwrap_or_default())
            .collect();
        let wanted = publish_keys(editor, &held);
        signers.extend(self.signers_for(wanted.iter())?);
        Ok(signers)
    }

    async fn publish_editor(
        &self,
        target: &GunTarget,
        editor: &mut RepoEditor,
        signers: &[Box<dyn Signer>],
    ) -> Result<()> {
        let refs: Vec<&dyn Signer> = signers.iter().map(|s| s.as_ref()).collect();
        let uploads = editor.publish(&refs, Utc::now()).map_err(|e| match e {
            builder::BuildError::MissingSigners { role, .. } => {
                anyhow!(
                    "no key for role {role} of {} in {}",
                    target.gun,
                    self.store.dir().display()
                )
            }
            other => anyhow!("{other}"),
        })?;
        target.registry.trust_publish(&target.gun, &uploads).await?;
        // Published keys are in use: a later failure must not remove them.
        lock(&self.generated).clear();
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Keys

    fn key_generate(&self, a: KeyGenerateArgs) -> Result<i32> {
        let (role, gun) = match (&a.role, &a.name) {
            (Some(role), _) => match role.as_str() {
                "root" => {
                    if a.gun.is_some() {
                        bail!("a root key serves every repository: drop --gun");
                    }
                    (role.clone(), String::new())
                }
                "targets" | "snapshot" => {
                    let gun = a
                        .gun
                        .as_deref()
                        .ok_or_else(|| anyhow!("a {role} key belongs to one repository: pass --gun GUN"))?;
                    (role.clone(), normalize_gun(gun)?)
                }
                "timestamp" => bail!("the timestamp key is always held by the trust server"),
                other => {
                    bail!("unknown role {other:?}: use root, targets or snapshot (or name a signer without --role)")
                }
            },
            (None, Some(name)) => {
                RoleName::parse(&format!("targets/{name}"))
                    .map_err(|_| anyhow!("invalid signer name {name:?}: use a-z, 0-9, - and _"))?;
                if a.gun.is_some() {
                    bail!("a signer key serves every repository it is added to: drop --gun");
                }
                if self.records()?.iter().any(|r| r.name == *name) {
                    bail!(
                        "a signer key named {name:?} exists already ({})",
                        self.signers_dir().display()
                    );
                }
                (name.clone(), String::new())
            }
            (None, None) => bail!("name the signer key, or give --role"),
        };
        let info = match &a.token.token {
            None => self.generate_role_key(&role, &gun)?.0,
            Some(_) => {
                // Signer keys keep their name as label; repository keys get
                // a fresh one, so a rotation can use the same token.
                let label = match &a.name {
                    Some(name) => name.clone(),
                    None => format!("berth-{role}-{}", &berth_model::new_id()[..12]),
                };
                self.token_generate(&a.token, &role, &gun, &label)?
            }
        };
        let location = describe_location(&self.store, &info);
        if let Some(name) = &a.name {
            self.save_record(&SignerRecord {
                name: name.clone(),
                key_id: info.key_id.clone(),
                source: if info.token.is_some() { "pkcs11" } else { "file" }.into(),
                module: info.token.as_ref().map(|t| t.module.clone()),
                token_label: info.token.as_ref().map(|t| t.token_label.clone()),
                pin_env: info.token.as_ref().map(|t| t.pin_env.clone()),
            })?;
            let pub_path = a.dir.join(format!("{name}.pub"));
            std::fs::write(&pub_path, public_key_pem(&info.public, name))
                .with_context(|| format!("writing {}", pub_path.display()))?;
            println!("Successfully generated key {}", info.key_id);
            println!("Public key written to {}", pub_path.display());
        } else {
            println!("Successfully generated key {}", info.key_id);
            let scope = if gun.is_empty() {
                "for new repositories".to_string()
            } else {
                format!("for {gun}")
            };
            println!("The {role} key {scope} ({location})");
        }
        Ok(0)
    }

    fn key_list(&self, a: FormatArgs) -> Result<i32> {
        let mut rows: Vec<Value> = Vec::new();
        let stored = self.store.list().map_err(|e| anyhow!("{e}"))?;
        for info in &stored {
            rows.push(json!({
                "id": info.key_id,
                "role": info.role,
                "gun": info.gun,
                "location": describe_location(&self.store, info),
            }));
        }
        // Signer keys generated on a token before the key store recorded them.
        for record in self.records()? {
            if record.source == "pkcs11" && !stored.iter().any(|k| k.key_id == record.key_id) {
                rows.push(json!({
                    "id": record.key_id,
                    "role": record.name,
                    "gun": "",
                    "location": format!(
                        "pkcs11 {} token {}",
                        record.module.as_deref().unwrap_or(Path::new("?")).display(),
                        record.token_label.as_deref().unwrap_or("?")
                    ),
                }));
            }
        }
        if a.format == "json" {
            println!("{}", serde_json::to_string_pretty(&rows)?);
            return Ok(0);
        }
        let mut table_rows = vec![vec!["ROLE".into(), "GUN".into(), "KEY ID".into(), "LOCATION".into()]];
        for r in &rows {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            table_rows.push(vec![s("role"), s("gun"), s("id"), s("location")]);
        }
        table(&table_rows);
        Ok(0)
    }

    fn key_load(&self, a: KeyLoadArgs) -> Result<i32> {
        let pem_bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
        let encrypted = String::from_utf8_lossy(&pem_bytes).contains("ENCRYPTED");
        let headers = berth_notary::keystore::parse_private_key_pem(&pem_bytes, None).ok();
        let parsed_role = headers.as_ref().and_then(|p| p.role.clone());
        let role = a.name.clone().or(parsed_role).unwrap_or_default();
        if role.is_empty() {
            bail!("{} has no role header: name the key with --name", a.file.display());
        }
        let gun = match &a.gun {
            Some(gun) => normalize_gun(gun)?,
            None => headers.as_ref().and_then(|p| p.gun.clone()).unwrap_or_default(),
        };
        let pem_passphrase = if encrypted {
            Some(match std::env::var("BERTH_TRUST_IMPORT_PASSPHRASE") {
                Ok(p) if !p.is_empty() => Passphrase::new(p),
                _ if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
                    Passphrase::new(prompt_secret(&format!("Passphrase of {}: ", a.file.display()))?)
                }
                _ => bail!(
                    "{} is encrypted: set BERTH_TRUST_IMPORT_PASSPHRASE or run on a terminal",
                    a.file.display()
                ),
            })
        } else {
            None
        };
        let class = passphrase_class(&role);
        let info = match &a.token.token {
            None => {
                let passphrase = self.passphrase(class, true)?;
                self.store
                    .import_pem(
                        &pem_bytes,
                        pem_passphrase.as_ref(),
                        Some(&role),
                        Some(&gun),
                        &passphrase,
                    )
                    .map_err(|e| anyhow!("importing {}: {e}", a.file.display()))?
            }
            Some(module_path) => {
                let parsed = berth_notary::keystore::parse_private_key_pem(&pem_bytes, pem_passphrase.as_ref())
                    .map_err(|e| anyhow!("importing {}: {e}", a.file.display()))?;
                if parsed.signer.public_key().keytype != KeyType::Ecdsa {
                    bail!(
                        "{}: only ECDSA P-256 keys can go on a token, this is a {} key",
                        a.file.display(),
                        parsed.signer.public_key().keytype
                    );
                }
                let cka_id = a.token.slot.as_deref().map(slot_cka_id).transpose()?;
                let label = format!("berth-{}-{}", role.replace('/', "-"), &berth_model::new_id()[..12]);
                let token = self.open_token_to_write(&a.token, module_path)?;
                let der = parsed.signer.to_pkcs8_der();
                let key = token
                    .import_p256_der(&label, cka_id.as_deref(), &der)
                    .map_err(|e| anyhow!("importing {}: {e}", a.file.display()))?;
                self.record_token_key(&a.token, module_path, &token, &key, &role, &gun)?
            }
        };
        if let Some(name) = &a.name {
            if RoleName::parse(&format!("targets/{name}")).is_ok() && class == "DELEGATION" {
                self.save_record(&SignerRecord {
                    name: name.clone(),
                    key_id: info.key_id.clone(),
                    source: if info.token.is_some() { "pkcs11" } else { "file" }.into(),
                    module: info.token.as_ref().map(|t| t.module.clone()),
                    token_label: info.token.as_ref().map(|t| t.token_label.clone()),
                    pin_env: info.token.as_ref().map(|t| t.pin_env.clone()),
                })?;
            }
        }
        println!(
            "Loaded key {} as {role} ({})",
            info.key_id,
            describe_location(&self.store, &info)
        );
        Ok(0)
    }

    /// A new key for `role` of `gun` for a rotation: on the token `--token`
    /// names, else in the key store.
    fn rotation_key(&self, t: &TokenArgs, role: &str, gun: &str) -> Result<(KeyInfo, Box<dyn Signer>)> {
        if t.token.is_none() {
            let (info, signer) = self.generate_role_key(role, gun)?;
            return Ok((info, Box::new(signer)));
        }
        let label = format!("berth-{role}-{}", &berth_model::new_id()[..12]);
        let info = self.token_generate(t, role, gun, &label)?;
        // The token was opened to write (perhaps as security officer); the
        // signer logs in again as its user.
        let signer = self.signer_for_info(&info)?;
        Ok((info, signer))
    }

    async fn key_rotate(&self, a: KeyRotateArgs) -> Result<i32> {
        let r = Reference::parse(&a.image).map_err(|e| anyhow!(e))?;
        let target = self.gun_target(&r)?;
        if a.token.token.is_some() && (a.server_managed || a.role == "timestamp") {
            bail!("a key the trust server holds cannot be on a token: drop --token or --server-managed");
        }
        let repo = self
            .load_trusted(&target)
            .await?
            .ok_or_else(|| anyhow!("no trust data for {}: sign an image first", target.gun))?;
        let mut editor = self.editor_from(&repo)?;
        let now = Utc::now();
        let mut extra: Vec<Box<dyn Signer>> = Vec::new();
        let new_id = match a.role.as_str() {
            "targets" => {
                if a.server_managed {
                    bail!("the targets key cannot be server-managed");
                }
                let (info, signer) = self.rotation_key(&a.token, "targets", &target.gun)?;
                editor
                    .rotate_key(&RoleName::Targets, &[signer.public_key().clone()], 1)
                    .map_err(|e| anyhow!("{e}"))?;
                extra.push(signer);
                info.key_id
            }
            "snapshot" => {
                let key = if a.server_managed {
                    target.registry.trust_key(&target.gun, "snapshot", true).await?
                } else {
                    let (_, signer) = self.rotation_key(&a.token, "snapshot", &target.gun)?;
                    let key = signer.public_key().clone();
                    extra.push(signer);
                    key
                };
                editor
                    .rotate_key(&RoleName::Snapshot, std::slice::from_ref(&key), 1)
                    .map_err(|e| anyhow!("{e}"))?;
                key.id()
            }
            "timestamp" => {
                let key = target.registry.trust_key(&target.gun, "timestamp", true).await?;
                editor
                    .rotate_key(&RoleName::Timestamp, std::slice::from_ref(&key), 1)
                    .map_err(|e| anyhow!("{e}"))?;
                key.id()
            }
            "root" => {
                let (_, signer) = self.rotation_key(&a.token, "root", "")?;
                let cert =
                    crypto::create_root_certificate(signer.as_ref(), &target.gun, now).map_err(|e| anyhow!("{e}"))?;
                // The old root keys sign the new root too.
                let old: Vec<PublicKey> = repo::root_role_keys(editor.root(), &RoleName::Root)
                    .map_err(|e| anyhow!("{e}"))?
                    .keys
                    .into_values()
                    .collect();
                extra.extend(self.signers_for(old.iter())?);
                editor
                    .rotate_root(std::slice::from_ref(&cert), 1)
                    .map_err(|e| anyhow!("{e}"))?;
                extra.push(signer);
                cert.id()
            }
            other => bail!("cannot rotate {other:?}: use root, targets, snapshot or timestamp"),
        };
        let signers = self.publish_signers(&editor, extra)?;
        self.publish_editor(&target, &mut editor, &signers).await?;
        // The new root must verify from the cache's pinned one.
        self.load_trusted(&target).await?;
        println!(
            "Successfully rotated the {} key of {}: new key {new_id}",
            a.role, target.gun
        );
        Ok(0)
    }

    /// The passphrase of a key backup: the environment, else a prompt
    /// (twice when writing one).
    fn backup_passphrase(&self, creating: bool) -> Result<Passphrase> {
        let var = "BERTH_TRUST_BACKUP_PASSPHRASE";
        match std::env::var(var) {
            Ok(p) if !p.is_empty() => return Ok(Passphrase::new(p)),
            _ => {}
        }
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            bail!("the key backup needs a passphrase: set {var} or run on a terminal");
        }
        let first = prompt_secret("Passphrase for the key backup: ")?;
        if creating {
            if first.is_empty() {
                bail!("an empty passphrase is not allowed");
            }
            if prompt_secret("Repeat the passphrase for the key backup: ")? != first {
                bail!("the passphrases do not match");
            }
        }
        Ok(Passphrase::new(first))
    }

    fn key_backup(&self, a: KeyBackupArgs) -> Result<i32> {
        let gun = a.gun.as_deref().map(normalize_gun).transpose()?;
        let keys: Vec<KeyInfo> = self
            .store
            .list()
            .map_err(|e| anyhow!("{e}"))?
            .into_iter()
            .filter(|k| gun.as_ref().is_none_or(|g| k.gun == *g))
            .collect();
        if keys.is_empty() {
            match &gun {
                Some(g) => bail!("the key store {} holds no key of {g}", self.store.dir().display()),
                None => bail!("the key store {} holds no key", self.store.dir().display()),
            }
        }
        if a.output.exists() {
            bail!("{} exists already: choose another file", a.output.display());
        }
        let backup = if keys.iter().any(|k| k.token.is_none()) {
            Some(self.backup_passphrase(true)?)
        } else {
            None
        };
        // Every key is decrypted and re-encrypted before anything is written.
        let mut members = Vec::new();
        let mut index = Vec::new();
        for info in &keys {
            match &info.token {
                None => {
                    let passphrase = self.passphrase(passphrase_class(&info.role), false)?;
                    let pem = self
                        .store
                        .export_pem(&info.key_id, &passphrase, backup.as_ref())
                        .map_err(|e| anyhow!("{e}"))?;
                    let path = format!("private/{}.key", info.key_id);
                    index.push(json!({
                        "id": info.key_id, "role": info.role, "gun": info.gun,
                        "exportable": true, "file": path,
                    }));
                    members.push((path, pem));
                }
                Some(reference) => {
                    index.push(json!({
                        "id": info.key_id, "role": info.role, "gun": info.gun,
                        "exportable": false, "public": info.public.to_json(), "token": reference,
                    }));
                }
            }
        }
        let doc = json!({"format": BACKUP_FORMAT, "created": Utc::now().to_rfc3339(), "keys": index});
        write_backup(&a.output, &serde_json::to_vec_pretty(&doc)?, &members)?;
        for info in &keys {
            match &info.token {
                None => println!("Backed up {} key {} {}", info.role, info.key_id, info.gun),
                Some(_) => println!(
                    "Not exportable: {} key {} is on {}; the backup records where it is",
                    info.role,
                    info.key_id,
                    describe_location(&self.store, info)
                ),
            }
        }
        println!("Wrote {} private key(s) to {}", members.len(), a.output.display());
        Ok(0)
    }

    fn key_restore(&self, a: KeyRestoreArgs) -> Result<i32> {
        let shown = a.file.display();
        let file = std::fs::File::open(&a.file).with_context(|| format!("opening {shown}"))?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| anyhow!("{shown} is not a key backup: {e}"))?;
        let read_member = |archive: &mut zip::ZipArchive<std::fs::File>, name: &str| -> Result<Vec<u8>> {
            use std::io::Read as _;
            let member = archive.by_name(name).map_err(|e| anyhow!("{shown}: no {name}: {e}"))?;
            let mut bytes = Vec::new();
            member.take(MAX_BACKUP_MEMBER + 1).read_to_end(&mut bytes)?;
            if bytes.len() as u64 > MAX_BACKUP_MEMBER {
                bail!("{shown}: {name} is larger than {MAX_BACKUP_MEMBER} bytes");
            }
            Ok(bytes)
        };
        #[derive(Deserialize)]
        struct Index {
            format: String,
            keys: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            id: String,
            role: String,
            gun: String,
            exportable: bool,
            #[serde(default)]
            file: Option<String>,
            #[serde(default)]
            public: Option<Value>,
            #[serde(default)]
            token: Option<TokenKeyRef>,
        }
        let index: Index = serde_json::from_slice(&read_member(&mut archive, BACKUP_INDEX)?)
            .map_err(|e| anyhow!("{shown}: {BACKUP_INDEX} is malformed: {e}"))?;
        if index.format != BACKUP_FORMAT {
            bail!("{shown}: unknown backup format {:?}", index.format);
        }
        // Everything is read, decrypted and checked before the store changes.
        let mut software: Vec<(Entry, SoftwareSigner)> = Vec::new();
        let mut tokens: Vec<(Entry, PublicKey, TokenKeyRef)> = Vec::new();
        let mut present: Vec<Entry> = Vec::new();
        let mut backup: Option<Passphrase> = None;
        for entry in index.keys {
            if self
                .store
                .check_restore(&entry.id, &entry.role, &entry.gun, !entry.exportable)
                .map_err(|e| anyhow!("not restoring {shown}: {e}"))?
            {
                present.push(entry);
                continue;
            }
            if entry.exportable {
                let name = entry
                    .file
                    .clone()
                    .ok_or_else(|| anyhow!("{shown}: key {} has no file", entry.id))?;
                let pem = read_member(&mut archive, &name)?;
                let passphrase = match &backup {
                    Some(p) => p.clone(),
                    None => backup.insert(self.backup_passphrase(false)?).clone(),
                };
                let parsed = berth_notary::keystore::parse_private_key_pem(&pem, Some(&passphrase))
                    .map_err(|e| anyhow!("{shown}: {name}: {e}"))?;
                if parsed.signer.key_id() != entry.id {
                    bail!("{shown}: {name} holds key {}, not {}", parsed.signer.key_id(), entry.id);
                }
                software.push((entry, parsed.signer));
            } else {
                let (Some(public), Some(reference)) = (&entry.public, entry.token.clone()) else {
                    bail!("{shown}: token key {} has no public key or token", entry.id);
                };
                let public = PublicKey::from_json(public).map_err(|e| anyhow!("{shown}: key {}: {e}", entry.id))?;
                if public.id() != entry.id {
                    bail!("{shown}: token key {} has the public key of {}", entry.id, public.id());
                }
                tokens.push((entry, public, reference));
            }
        }
        let mut added: Vec<String> = Vec::new();
        let result = (|| -> Result<()> {
            for (entry, signer) in &software {
                let passphrase = self.passphrase(passphrase_class(&entry.role), true)?;
                self.store
                    .add(signer, &entry.role, &entry.gun, &passphrase)
                    .map_err(|e| anyhow!("{e}"))?;
                added.push(entry.id.clone());
            }
            for (entry, public, reference) in &tokens {
                self.store
                    .add_token_key(public, &entry.role, &entry.gun, reference)
                    .map_err(|e| anyhow!("{e}"))?;
                added.push(entry.id.clone());
            }
            Ok(())
        })();
        if let Err(e) = result {
            for id in &added {
                let _ = self.store.remove(id);
            }
            return Err(e.context(format!("restoring {shown}; nothing was restored")));
        }
        for (entry, _) in &software {
            println!("Restored {} key {} {}", entry.role, entry.id, entry.gun);
        }
        for (entry, _, reference) in &tokens {
            println!(
                "Restored the reference to {} key {} on token {} (the key itself stays on the token)",
                entry.role, entry.id, reference.token_label
            );
        }
        for entry in &present {
            println!("Already in the key store: {} key {}", entry.role, entry.id);
        }
        Ok(0)
    }

    // -----------------------------------------------------------------------
    // Signing

    async fn sign(&self, a: SignArgs) -> Result<i32> {
        let r = Reference::parse(&a.image).map_err(|e| anyhow!(e))?;
        if r.digest.is_some() {
            bail!("sign needs a tag, not a digest: {}", a.image);
        }
        let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
        let target = self.gun_target(&r)?;
        let manifest = self.ensure_pushed(&r, &a.image, &target, &tag).await?;
        let meta = FileMeta::from_bytes(&manifest.bytes);
        eprintln!(
            "Signing and pushing trust data for {}:{tag} ({})",
            target.gun, manifest.digest
        );
        let now = Utc::now();
        match self.load_trusted(&target).await? {
            None => {
                if let Some(signer) = &a.signer {
                    bail!(
                        "{signer} is not a signer of {}: add it first with `berth trust signer add {signer} {} --key {signer}.pub`",
                        target.gun,
                        target.gun
                    );
                }
                let (mut editor, extra) = self.new_repo(&target, now).await?;
                editor
                    .add_target(&RoleName::Targets, &tag, meta, now)
                    .map_err(|e| anyhow!("{e}"))?;
                let signers = self.publish_signers(&editor, extra)?;
                self.publish_editor(&target, &mut editor, &signers).await?;
            }
            Some(repo) => {
                let roles = roles_to_sign(&repo, a.signer.as_deref(), |k| self.holds(k))?;
                let change = Change::Add(tag.clone(), meta);
                let done = self
                    .update_targets(&target, &repo, &roles, &change, &manifest, &tag)
                    .await?;
                if !done {
                    return Ok(0);
                }
            }
        }
        self.attach_trust_data(&target, &tag, &manifest).await?;
        println!("Successfully signed {}:{tag}", target.gun);
        Ok(0)
    }

    /// Makes sure the registry has the image as tagged here (pushing it
    /// through the daemon when it differs or is missing) and returns the
    /// registry's manifest.
    async fn ensure_pushed(&self, r: &Reference, image: &str, target: &GunTarget, tag: &str) -> Result<Manifest> {
        let local = self.daemon.image(image).await.ok();
        let remote = target.registry.manifest(&r.repository, tag).await?;
        match (&local, &remote) {
            (Some(l), Some(m)) if l.manifest_digest == m.digest => {}
            (Some(_), _) => {
                eprintln!("Pushing {image}");
                daemon_stream(self.daemon.push(image).await?, "pushing").await?;
            }
            (None, Some(_)) => {}
            (None, None) => bail!(
                "image {image} is neither on this node nor in registry {}",
                target.registry.host
            ),
        }
        let manifest = match remote {
            Some(m) if local.as_ref().is_none_or(|l| l.manifest_digest == m.digest) => m,
            _ => target.registry.manifest(&r.repository, tag).await?.ok_or_else(|| {
                anyhow!(
                    "registry {} has no {}:{tag} after the push",
                    target.registry.host,
                    r.repository
                )
            })?,
        };
        if let Some(l) = &local {
            if l.manifest_digest != manifest.digest {
                bail!(
                    "registry {} holds {} for {image}, not {}",
                    target.registry.host,
                    manifest.digest,
                    l.manifest_digest
                );
            }
        }
        Ok(manifest)
    }

    /// Applies `change` to each of `roles` and publishes the roles whose
    /// threshold is met; a role short of signatures is attached to the image
    /// as pending for the next key holder. `true` when everything was
    /// published.
    async fn update_targets(
        &self,
        target: &GunTarget,
        repo: &TrustedRepo,
        roles: &[RoleName],
        change: &Change,
        subject: &Manifest,
        tag: &str,
    ) -> Result<bool> {
        let now = Utc::now();
        let pending_docs = target
            .registry
            .attached(&target.repository, &subject.digest, PENDING_ARTIFACT)
            .await
            .unwrap_or_default();
        let mut complete: Vec<(RoleName, Vec<u8>)> = Vec::new();
        let mut partial: Vec<(RoleName, Vec<u8>, usize, i64)> = Vec::new();
        let mut adopted: Vec<String> = Vec::new();
        for role in roles {
            let keys = role_keys(repo, role)?;
            if let Change::Add(name, _) = change {
                if !keys.allows_target(name) {
                    bail!("{role} may not sign {name:?} (outside its paths)");
                }
            }
            let content = next_targets(repo, role, change, now);
            let next_version = content.version;
            // A pending signature of the same change, made by another key holder.
            let mut signed: Option<Signed<Targets>> = None;
            for (digest, annotations, doc) in &pending_docs {
                let Some(staged) = pending_file(annotations, doc, &target.gun, role) else {
                    continue;
                };
                let s = staged.signed();
                if s.version == next_version && s.targets == content.targets && s.delegations == content.delegations {
                    let mut staged = staged;
                    staged.retain_signatures(|id| keys.keys.contains_key(id));
                    signed = Some(staged);
                    adopted.push(digest.clone());
                    break;
                }
            }
            let mut signed = match signed {
                Some(s) => s,
                None => Signed::new(content).map_err(|e| anyhow!("{e}"))?,
            };
            let signers = self.signers_for(keys.keys.values())?;
            if signers.is_empty() {
                bail!("this client holds no key of {role} of {}", target.gun);
            }
            let refs: Vec<&dyn Signer> = signers.iter().map(|s| s.as_ref()).collect();
            signed.sign(&refs).map_err(|e| anyhow!("signing {role}: {e}"))?;
            let valid = valid_signatures(&signed, &keys);
            if valid >= usize::try_from(keys.threshold).unwrap_or(usize::MAX) {
                complete.push((role.clone(), signed.to_bytes()));
            } else {
                partial.push((role.clone(), signed.to_bytes(), valid, keys.threshold));
            }
        }
        if !complete.is_empty() {
            let mut files = complete.clone();
            if let Some(snapshot) = self.client_snapshot(repo, &complete, now)? {
                files.push((RoleName::Snapshot, snapshot));
            }
            target.registry.trust_publish(&target.gun, &files).await?;
        }
        for digest in &adopted {
            target.registry.delete_manifest(&target.repository, digest).await?;
        }
        let subject_descriptor =
            json!({"mediaType": subject.media_type, "digest": subject.digest, "size": subject.bytes.len()});
        for (role, bytes, valid, threshold) in &partial {
            let doc = serde_json::to_vec(&json!({
                "gun": target.gun,
                "role": role.as_str(),
                "file": base64::engine::general_purpose::STANDARD.encode(bytes),
            }))?;
            let annotations = json!({
                "org.opencontainers.image.created": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "vnd.berth.trust.gun": target.gun,
                "vnd.berth.trust.role": role.as_str(),
                "vnd.berth.trust.tag": tag,
            });
            target
                .registry
                .attach(
                    &target.repository,
                    &subject_descriptor,
                    PENDING_ARTIFACT,
                    &doc,
                    annotations,
                )
                .await?;
            eprintln!(
                "{role} of {} has {valid} of the {threshold} signatures it needs: the signature is attached to {} as pending; \
                 the tag is not signed until another key holder of {role} runs `berth trust sign` for it",
                target.gun, subject.digest
            );
        }
        Ok(partial.is_empty())
    }

    /// A new snapshot for `changed` when this client holds the snapshot key
    /// (otherwise the trust server makes it).
    fn client_snapshot(
        &self,
        repo: &TrustedRepo,
        changed: &[(RoleName, Vec<u8>)],
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<u8>>> {
        let keys = repo::root_role_keys(repo.root().signed(), &RoleName::Snapshot).map_err(|e| anyhow!("{e}"))?;
        if !keys.keys.values().any(|k| self.holds(k)) {
            return Ok(None);
        }
        let signers = self.signers_for(keys.keys.values())?;
        let refs: Vec<&dyn Signer> = signers.iter().map(|s| s.as_ref()).collect();
        let snapshot = next_snapshot(repo, &keys, changed, &refs, now).map_err(|e| anyhow!("{e}"))?;
        Ok(Some(snapshot))
    }

    /// Attaches the signed metadata that vouches for `tag` to the image, and
    /// drops older trust referrers of the same tag.
    async fn attach_trust_data(&self, target: &GunTarget, tag: &str, manifest: &Manifest) -> Result<()> {
        let Some(repo) = self.load_trusted(target).await? else {
            return Ok(());
        };
        let files: BTreeMap<String, String> = repo
            .files()
            .iter()
            .map(|(role, bytes)| {
                (
                    role.to_string(),
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                )
            })
            .collect();
        let doc =
            serde_json::to_vec(&json!({"gun": target.gun, "tag": tag, "digest": manifest.digest, "files": files}))?;
        let old = target
            .registry
            .referrers(&target.repository, &manifest.digest, TRUST_ARTIFACT)
            .await?;
        let subject =
            json!({"mediaType": manifest.media_type, "digest": manifest.digest, "size": manifest.bytes.len()});
        let annotations = json!({
            "org.opencontainers.image.created": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "vnd.berth.trust.gun": target.gun,
            "vnd.berth.trust.tag": tag,
        });
        let new = target
            .registry
            .attach(&target.repository, &subject, TRUST_ARTIFACT, &doc, annotations)
            .await?;
        for descriptor in old {
            let same_tag = descriptor
                .pointer("/annotations/vnd.berth.trust.gun")
                .and_then(Value::as_str)
                == Some(target.gun.as_str())
                && descriptor
                    .pointer("/annotations/vnd.berth.trust.tag")
                    .and_then(Value::as_str)
                    == Some(tag);
            let digest = descriptor.get("digest").and_then(Value::as_str).unwrap_or_default();
            if same_tag && digest != new {
                target.registry.delete_manifest(&target.repository, digest).await?;
            }
        }
        Ok(())
    }

    async fn revoke(&self, a: RevokeArgs) -> Result<i32> {
        let r = Reference::parse(&a.image).map_err(|e| anyhow!(e))?;
        let tag = r
            .tag
            .clone()
            .ok_or_else(|| anyhow!("revoke needs a tag: {}", a.image))?;
        let target = self.gun_target(&r)?;
        let repo = self
            .load_trusted(&target)
            .await?
            .ok_or_else(|| anyhow!("no trust data for {}", target.gun))?;
        let listing: Vec<(RoleName, FileMeta)> = repo
            .list_targets()
            .into_iter()
            .filter(|(_, name, _)| *name == tag)
            .map(|(role, _, meta)| (role, meta))
            .collect();
        let Some((_, meta)) = listing.first().cloned() else {
            bail!("no signed tag {tag:?} in {}", target.gun);
        };
        let mut roles = Vec::new();
        for (role, _) in &listing {
            let keys = role_keys(&repo, role)?;
            if keys.keys.values().any(|k| self.holds(k)) {
                roles.push(role.clone());
            }
        }
        if roles.is_empty() {
            bail!(
                "tag {tag:?} of {} is signed by {} and this client holds none of their keys",
                target.gun,
                listing
                    .iter()
                    .map(|(r, _)| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let hex = meta.sha256_hex().unwrap_or_default();
        let subject = match target
            .registry
            .manifest(&target.repository, &format!("sha256:{hex}"))
            .await?
        {
            Some(m) => m,
            None => Manifest {
                digest: format!("sha256:{hex}"),
                media_type: OCI_MANIFEST.into(),
                bytes: Vec::new(),
            },
        };
        let done = self
            .update_targets(&target, &repo, &roles, &Change::Remove(tag.clone()), &subject, &tag)
            .await?;
        if done {
            // Referrers vouching for the revoked tag would otherwise outlive it.
            for descriptor in target
                .registry
                .referrers(&target.repository, &subject.digest, TRUST_ARTIFACT)
                .await?
            {
                if descriptor
                    .pointer("/annotations/vnd.berth.trust.tag")
                    .and_then(Value::as_str)
                    == Some(tag.as_str())
                {
                    let digest = descriptor.get("digest").and_then(Value::as_str).unwrap_or_default();
                    target.registry.delete_manifest(&target.repository, digest).await?;
                }
            }
            println!("Successfully revoked {}:{tag}", target.gun);
        }
        Ok(0)
    }

    async fn signer_add(&self, a: SignerAddArgs) -> Result<i32> {
        let role = signer_role(&a.name)?;
        let r = Reference::parse(&a.repository).map_err(|e| anyhow!(e))?;
        let target = self.gun_target(&r)?;
        let mut keys = Vec::new();
        for path in &a.keys {
            keys.push(read_public_key(path)?);
        }
        let now = Utc::now();
        let (mut editor, extra) = match self.load_trusted(&target).await? {
            Some(repo) => (self.editor_from(&repo)?, Vec::new()),
            None => self.new_repo(&target, now).await?,
        };
        let has_releases = add_signer(&mut editor, &role, &keys, a.threshold, now).map_err(|e| anyhow!("{e}"))?;
        let signers = self.publish_signers(&editor, extra)?;
        self.publish_editor(&target, &mut editor, &signers).await?;
        println!(
            "Added signer {} to {} ({} key(s), threshold {}){}",
            a.name,
            target.gun,
            keys.len(),
            a.threshold,
            if has_releases {
                ""
            } else {
                "; it also signs targets/releases"
            }
        );
        Ok(0)
    }

    async fn signer_remove(&self, a: SignerRemoveArgs) -> Result<i32> {
        let role = signer_role(&a.name)?;
        let r = Reference::parse(&a.repository).map_err(|e| anyhow!(e))?;
        let target = self.gun_target(&r)?;
        let repo = self
            .load_trusted(&target)
            .await?
            .ok_or_else(|| anyhow!("no trust data for {}", target.gun))?;
        let mut editor = self.editor_from(&repo)?;
        remove_signer(&mut editor, &role, &a.name, &target.gun, Utc::now())?;
        let signers = self.publish_signers(&editor, Vec::new())?;
        self.publish_editor(&target, &mut editor, &signers).await?;
        println!("Removed signer {} from {}", a.name, target.gun);
        Ok(0)
    }

    // -----------------------------------------------------------------------
    // Inspect

    async fn inspect(&self, a: InspectArgs) -> Result<i32> {
        let r = Reference::parse(&a.image).map_err(|e| anyhow!(e))?;
        let target = self.gun_target(&r)?;
        let tag_filter = if a.image.contains('@') || !has_explicit_tag(&a.image) {
            None
        } else {
            r.tag.clone()
        };
        let mut pins = a.root_keys.clone();
        pins.extend(env_root_keys());
        let view = if a.from_referrers || r.digest.is_some() {
            let reference = r
                .digest
                .clone()
                .or_else(|| r.tag.clone())
                .unwrap_or_else(|| "latest".into());
            self.view_from_referrers(&target, &reference, &pins).await?
        } else {
            match self.load_trusted(&target).await? {
                Some(repo) => View::from_trusted(&repo),
                None => {
                    let reference = r.tag.clone().unwrap_or_else(|| "latest".into());
                    self.view_from_referrers(&target, &reference, &pins)
                        .await
                        .map_err(|e| anyhow!("no trust data for {} on its trust server, and {e:#}", target.gun))?
                }
            }
        };
        let described = view.inspect(tag_filter.as_deref());
        if let Some(tag) = &tag_filter {
            if described.signed_tags.is_empty() {
                bail!("no signed tag {tag:?} in {}{}", view.gun, view.invalid_note());
            }
        }
        if a.format == "json" {
            println!("{}", serde_json::to_string_pretty(&[described])?);
        } else {
            print_view(&described);
        }
        Ok(0)
    }

    /// Verifies the trust metadata attached to the manifest `reference`
    /// names (a tag or a digest) against pinned root keys: `pins`, else the
    /// root this client pinned for the original GUN.
    async fn view_from_referrers(&self, target: &GunTarget, reference: &str, pins: &[String]) -> Result<View> {
        let manifest = target
            .registry
            .manifest(&target.repository, reference)
            .await?
            .ok_or_else(|| {
                anyhow!(
                    "registry {} has no {}:{reference}",
                    target.registry.host,
                    target.repository
                )
            })?;
        let docs = target
            .registry
            .attached(&target.repository, &manifest.digest, TRUST_ARTIFACT)
            .await?;
        if docs.is_empty() {
            bail!(
                "no trust data is attached to {} in {}",
                manifest.digest,
                target.registry.host
            );
        }
        let mut errors = Vec::new();
        let mut views: Vec<View> = Vec::new();
        for (_, _, doc) in docs {
            match self.verify_referrer(&doc, &manifest, pins) {
                Ok(view) => views.push(view),
                Err(e) => {
                    let e = format!("{e:#}");
                    if !errors.contains(&e) {
                        errors.push(e);
                    }
                }
            }
        }
        let mut view = match views.pop() {
            Some(v) => v,
            None => bail!("the attached trust data does not verify: {}", errors.join("; ")),
        };
        for other in views {
            view.merge(other);
        }
        Ok(view)
    }

    /// Verifies the trust document `doc` attached to `manifest` against
    /// `pins`, else the root this client pinned for the document's GUN.
    fn verify_referrer(&self, doc: &[u8], manifest: &Manifest, pins: &[String]) -> Result<View> {
        Ok(verify_attached(
            doc,
            &manifest.digest,
            manifest.bytes.len(),
            pins,
            |gun| std::fs::read(self.cache_dir(gun).join("root.json")).ok(),
            Utc::now(),
        )?)
    }
}

fn has_explicit_tag(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.contains(':')
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// A signer's public key from a PEM file: `PUBLIC KEY` (ECDSA P-256) or
/// `CERTIFICATE` (`ecdsa-x509`).
fn read_public_key(path: &Path) -> Result<PublicKey> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(public_key_from_pem(&bytes, &path.display().to_string())?)
}

// ---------------------------------------------------------------------------
// Showing trust data

fn print_view(v: &Inspection) {
    let name = &v.name;
    println!("Signatures for {name} (verified from its {})", v.verified_from);
    println!();
    let mut rows = vec![vec!["SIGNED TAG".to_string(), "DIGEST".into(), "SIGNERS".into()]];
    for t in &v.signed_tags {
        rows.push(vec![t.signed_tag.clone(), t.digest.clone(), t.signers.join(", ")]);
    }
    table(&rows);
    if !v.signers.is_empty() {
        println!();
        println!("List of signers and their keys for {name}:");
        println!();
        let mut rows = vec![vec!["SIGNER".to_string(), "KEYS".into(), "THRESHOLD".into()]];
        for s in &v.signers {
            let keys: Vec<&str> = s.keys.iter().map(|k| short(&k.id)).collect();
            let threshold = s.threshold.map(|t| t.to_string()).unwrap_or_default();
            rows.push(vec![s.name.clone(), keys.join(", "), threshold]);
        }
        table(&rows);
    }
    println!();
    println!("Administrative keys for {name}:");
    println!();
    for k in &v.administrative_keys {
        let ids: Vec<&str> = k.keys.iter().map(|k| k.id.as_str()).collect();
        println!("  {} Key:\t{}", k.name, ids.join(", "));
    }
    for u in &v.untrusted_roles {
        println!();
        println!("Not trusted: {}: {}", u.role, u.reason);
    }
}

// ---------------------------------------------------------------------------
// Policies

async fn policy_set(client: &Client, a: PolicySetArgs) -> Result<i32> {
    let policy = client
        .put_trust_policy(
            &a.pattern,
            &berth_model::TrustPolicySpec {
                signers: a.signers.clone(),
                threshold: Some(a.threshold),
            },
        )
        .await?;
    println!(
        "Images of {} need signatures by {} of: {}",
        policy.pattern,
        policy.threshold,
        a.signers.join(", ")
    );
    Ok(0)
}

async fn policy_ls(client: &Client, a: FormatArgs) -> Result<i32> {
    let policies = client.trust_policies().await?;
    if a.format == "json" {
        println!("{}", serde_json::to_string_pretty(&policies)?);
        return Ok(0);
    }
    let mut rows = vec![vec![
        "PATTERN".to_string(),
        "SIGNERS".into(),
        "THRESHOLD".into(),
        "CREATED".into(),
    ]];
    for p in &policies {
        rows.push(vec![
            p.pattern.clone(),
            p.signers.join(", "),
            p.threshold.to_string(),
            p.created.clone(),
        ]);
    }
    table(&rows);
    Ok(0)
}

async fn policy_rm(client: &Client, a: PolicyRmArgs) -> Result<i32> {
    client.remove_trust_policy(&a.pattern).await?;
    println!("Removed the trust policy for {}", a.pattern);
    Ok(0)
}
