//! `berth trust`: content trust from the CLI, Notary- and Docker-compatible.
//! This module holds the arguments and the output; what each command does
//! is the signing session of [`berth_notary::signing`], which reaches the
//! registry through [`registry::Registry`] and the person at the keyboard
//! through [`terminal::Terminal`].
//!
//! - keys: `key generate NAME | --role root|targets|snapshot [--gun GUN]`,
//!   `key list`, `key load FILE`, `key rotate IMAGE ROLE [--server-managed]`,
//!   each of generate, load and rotate with `--token MODULE [--token-label L]
//!   [--slot ID] [--pin-env VAR] [--so-pin-env VAR]` to put the key on a
//!   PKCS#11 token; `key backup -o FILE [--gun GUN]` and `key restore FILE`.
//!   Keys live under `~/.berth/trust` (or `$BERTH_TRUST_DIR`);
//! - signing: `sign IMAGE:TAG [--signer NAME]` (pushing the image through
//!   the daemon first when the registry lacks it), `revoke`, `signer
//!   add/remove`;
//! - verification: `inspect`, and `BERTH_CONTENT_TRUST=1 berth pull|run`
//!   ([`trusted_reference`]);
//! - policies: `policy set|ls|rm`, enforced by every node at container
//!   creation.
//!
//! A command that fails removes the keys it generated and had not
//! published yet.

mod registry;
pub(crate) mod terminal;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use berth_client::{ndjson_lines, Client, ExitError, TlsFiles};
use berth_model::Reference;
use berth_notary::signing::{KeyRequest, Manifest, Signed, Signing, Target, TokenPlacement, DEFAULT_PIN_ENV};
use berth_notary::workflow::{public_key_from_pem, Inspection, WorkflowError};
use chrono::Utc;

use crate::cli::table;
use registry::Registry;

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
    let session = Session::open(client, tls)?;
    let result = session.run(a).await;
    if result.is_err() {
        tokio::task::block_in_place(|| session.signing.discard_generated());
    }
    result
}

/// A trust command's daemon, TLS files and signing session.
struct Session<'a> {
    daemon: &'a Client,
    tls: TlsFiles,
    signing: Signing,
}

/// The trust directory: `$BERTH_TRUST_DIR`, else `~/.berth/trust`.
fn trust_dir() -> Result<PathBuf> {
    match std::env::var_os("BERTH_TRUST_DIR").filter(|d| !d.is_empty()) {
        Some(d) => Ok(PathBuf::from(d)),
        None => {
            let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set; set BERTH_TRUST_DIR"))?;
            Ok(Path::new(&home).join(".berth").join("trust"))
        }
    }
}

/// Runs a step of the signing session, which blocks (key files, tokens,
/// the registry), on this worker thread (`block_in_place`): the command has
/// nothing else to do meanwhile. Not the API's `blocking`, which moves work
/// off a server's async threads.
fn session_step<T>(step: impl FnOnce() -> Result<T, WorkflowError>) -> Result<T> {
    tokio::task::block_in_place(step).map_err(|e| anyhow!(e.0))
}

impl TokenArgs {
    /// Where the key goes: `None` for the key store.
    fn placement(&self) -> Option<TokenPlacement> {
        self.token.as_ref().map(|module| TokenPlacement {
            module: module.clone(),
            label: self.token_label.clone(),
            slot: self.slot.clone(),
            pin_env: self.pin_env.clone(),
            so_pin_env: self.so_pin_env.clone(),
        })
    }
}

impl<'a> Session<'a> {
    fn open(daemon: &'a Client, tls: &TlsFiles) -> Result<Session<'a>> {
        let signing = Signing::open(&trust_dir()?, Arc::new(terminal::Terminal)).map_err(|e| anyhow!(e.0))?;
        Ok(Session {
            daemon,
            tls: tls.clone(),
            signing,
        })
    }

    /// The repository `r` names, in its registry.
    fn target(&self, r: &Reference) -> Target {
        Target {
            gun: format!("{}/{}", r.registry, r.repository),
            repository: r.repository.clone(),
            remote: Box::new(Registry::new(&r.registry, &r.repository, &self.tls, self.daemon)),
        }
    }

    async fn run(&self, a: TrustArgs) -> Result<i32> {
        let client = self.daemon;
        match a.command {
            TrustCommand::Key(k) => match k.command {
                KeyCommand::Generate(a) => self.key_generate(a),
                KeyCommand::List(a) => self.key_list(a),
                KeyCommand::Load(a) => self.key_load(a),
                KeyCommand::Rotate(a) => self.key_rotate(a),
                KeyCommand::Backup(a) => self.key_backup(a),
                KeyCommand::Restore(a) => self.key_restore(a),
            },
            TrustCommand::Sign(a) => self.sign(a).await,
            TrustCommand::Inspect(a) => self.inspect(a),
            TrustCommand::Revoke(a) => self.revoke(a),
            TrustCommand::Signer(s) => match s.command {
                SignerCommand::Add(a) => self.signer_add(a),
                SignerCommand::Remove(a) => self.signer_remove(a),
            },
            TrustCommand::Policy(p) => match p.command {
                PolicyCommand::Set(a) => policy_set(client, a).await,
                PolicyCommand::Ls(a) => policy_ls(client, a).await,
                PolicyCommand::Rm(a) => policy_rm(client, a).await,
            },
        }
    }

    // -----------------------------------------------------------------------
    // Keys

    fn key_generate(&self, a: KeyGenerateArgs) -> Result<i32> {
        let request = match (&a.role, &a.name) {
            (Some(role), _) => KeyRequest::Role {
                role: role.clone(),
                gun: a.gun.clone(),
            },
            (None, Some(name)) => KeyRequest::Signer {
                name: name.clone(),
                gun: a.gun.clone(),
            },
            (None, None) => bail!("name the signer key, or give --role"),
        };
        let key = session_step(|| self.signing.generate_key(&request, a.token.placement().as_ref()))?;
        match (&a.name, &key.signer_public_pem) {
            (Some(name), Some(pem)) => {
                let pub_path = a.dir.join(format!("{name}.pub"));
                std::fs::write(&pub_path, pem).with_context(|| format!("writing {}", pub_path.display()))?;
                println!("Successfully generated key {}", key.info.key_id);
                println!("Public key written to {}", pub_path.display());
            }
            _ => {
                println!("Successfully generated key {}", key.info.key_id);
                let scope = if key.gun.is_empty() {
                    "for new repositories".to_string()
                } else {
                    format!("for {}", key.gun)
                };
                println!("The {} key {scope} ({})", key.role, key.location);
            }
        }
        Ok(0)
    }

    fn key_list(&self, a: FormatArgs) -> Result<i32> {
        let rows = session_step(|| self.signing.list_keys())?;
        if a.format == "json" {
            println!("{}", serde_json::to_string_pretty(&rows)?);
            return Ok(0);
        }
        let mut table_rows = vec![vec!["ROLE".into(), "GUN".into(), "KEY ID".into(), "LOCATION".into()]];
        for r in rows {
            table_rows.push(vec![r.role, r.gun, r.id, r.location]);
        }
        table(&table_rows);
        Ok(0)
    }

    fn key_load(&self, a: KeyLoadArgs) -> Result<i32> {
        let pem = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
        let shown = a.file.display().to_string();
        let key = session_step(|| {
            self.signing.load_key(
                &pem,
                &shown,
                a.name.as_deref(),
                a.gun.as_deref(),
                a.token.placement().as_ref(),
            )
        })?;
        println!("Loaded key {} as {} ({})", key.info.key_id, key.role, key.location);
        Ok(0)
    }

    fn key_rotate(&self, a: KeyRotateArgs) -> Result<i32> {
        let r = Reference::parse(&a.image).map_err(|e| anyhow!(e))?;
        let target = self.target(&r);
        let new_id = session_step(|| {
            self.signing.rotate(
                &target,
                &a.role,
                a.server_managed,
                a.token.placement().as_ref(),
                Utc::now(),
            )
        })?;
        println!(
            "Successfully rotated the {} key of {}: new key {new_id}",
            a.role, target.gun
        );
        Ok(0)
    }

    fn key_backup(&self, a: KeyBackupArgs) -> Result<i32> {
        let keys = session_step(|| self.signing.backup_keys(&a.output, a.gun.as_deref(), Utc::now()))?;
        let mut written = 0;
        for key in &keys {
            let info = &key.info;
            if key.exported {
                written += 1;
                println!("Backed up {} key {} {}", info.role, info.key_id, info.gun);
            } else {
                println!(
                    "Not exportable: {} key {} is on {}; the backup records where it is",
                    info.role, info.key_id, key.location
                );
            }
        }
        println!("Wrote {written} private key(s) to {}", a.output.display());
        Ok(0)
    }

    fn key_restore(&self, a: KeyRestoreArgs) -> Result<i32> {
        let restored = session_step(|| self.signing.restore_keys(&a.file))?;
        for (role, id, gun) in &restored.keys {
            println!("Restored {role} key {id} {gun}");
        }
        for (role, id, label) in &restored.token_keys {
            println!("Restored the reference to {role} key {id} on token {label} (the key itself stays on the token)");
        }
        for (role, id) in &restored.present {
            println!("Already in the key store: {role} key {id}");
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
        let target = self.target(&r);
        let manifest = self.ensure_pushed(&a.image, &target, &tag).await?;
        eprintln!(
            "Signing and pushing trust data for {}:{tag} ({})",
            target.gun, manifest.digest
        );
        let outcome = session_step(|| {
            self.signing
                .sign(&target, &tag, &manifest, a.signer.as_deref(), Utc::now())
        })?;
        if report_pending(&target, &outcome) {
            println!("Successfully signed {}:{tag}", target.gun);
        }
        Ok(0)
    }

    /// Makes sure the registry has the image as tagged here (pushing it
    /// through the daemon when it differs or is missing) and returns the
    /// registry's manifest.
    async fn ensure_pushed(&self, image: &str, target: &Target, tag: &str) -> Result<Manifest> {
        let remote = target.remote.as_ref();
        let registry_manifest = || session_step(|| remote.manifest(&target.repository, tag));
        let local = self.daemon.image(image).await.ok();
        let local_digest = local.as_ref().map(|l| l.manifest_digest.to_string());
        let in_registry = registry_manifest()?;
        match (&local_digest, &in_registry) {
            (Some(l), Some(m)) if *l == m.digest => {}
            (Some(_), _) => {
                eprintln!("Pushing {image}");
                daemon_stream(self.daemon.push(image).await?, "pushing").await?;
            }
            (None, Some(_)) => {}
            (None, None) => bail!(
                "image {image} is neither on this node nor in registry {}",
                remote.host()
            ),
        }
        let manifest = match in_registry {
            Some(m) if local_digest.as_ref().is_none_or(|l| *l == m.digest) => m,
            _ => registry_manifest()?.ok_or_else(|| {
                anyhow!(
                    "registry {} has no {}:{tag} after the push",
                    remote.host(),
                    target.repository
                )
            })?,
        };
        if let Some(l) = &local_digest {
            if *l != manifest.digest {
                bail!(
                    "registry {} holds {} for {image}, not {l}",
                    remote.host(),
                    manifest.digest
                );
            }
        }
        Ok(manifest)
    }

    fn revoke(&self, a: RevokeArgs) -> Result<i32> {
        let r = Reference::parse(&a.image).map_err(|e| anyhow!(e))?;
        let tag = r
            .tag
            .clone()
            .ok_or_else(|| anyhow!("revoke needs a tag: {}", a.image))?;
        let target = self.target(&r);
        let outcome = session_step(|| self.signing.revoke(&target, &tag, Utc::now()))?;
        if report_pending(&target, &outcome) {
            println!("Successfully revoked {}:{tag}", target.gun);
        }
        Ok(0)
    }

    fn signer_add(&self, a: SignerAddArgs) -> Result<i32> {
        let r = Reference::parse(&a.repository).map_err(|e| anyhow!(e))?;
        let target = self.target(&r);
        let mut keys = Vec::new();
        for path in &a.keys {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            keys.push(public_key_from_pem(&bytes, &path.display().to_string())?);
        }
        let added = session_step(|| {
            self.signing
                .add_signer(&target, &a.name, &keys, a.threshold, Utc::now())
        })?;
        println!(
            "Added signer {} to {} ({} key(s), threshold {}){}",
            a.name,
            target.gun,
            keys.len(),
            a.threshold,
            if added.had_releases {
                ""
            } else {
                "; it also signs targets/releases"
            }
        );
        Ok(0)
    }

    fn signer_remove(&self, a: SignerRemoveArgs) -> Result<i32> {
        let r = Reference::parse(&a.repository).map_err(|e| anyhow!(e))?;
        let target = self.target(&r);
        session_step(|| self.signing.remove_signer(&target, &a.name, Utc::now()))?;
        println!("Removed signer {} from {}", a.name, target.gun);
        Ok(0)
    }

    // -----------------------------------------------------------------------
    // Inspect

    fn inspect(&self, a: InspectArgs) -> Result<i32> {
        let r = Reference::parse(&a.image).map_err(|e| anyhow!(e))?;
        let target = self.target(&r);
        let tag_filter = if a.image.contains('@') || !has_explicit_tag(&a.image) {
            None
        } else {
            r.tag.clone()
        };
        let mut pins = a.root_keys.clone();
        pins.extend(env_root_keys());
        let now = Utc::now();
        let view = if a.from_referrers || r.digest.is_some() {
            let reference = r
                .digest
                .clone()
                .or_else(|| r.tag.clone())
                .unwrap_or_else(|| "latest".into());
            session_step(|| self.signing.view_from_referrers(&target, &reference, &pins, now))?
        } else {
            let reference = r.tag.clone().unwrap_or_else(|| "latest".into());
            session_step(|| self.signing.view(&target, &reference, &pins, now))?
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
}

/// Says which roles are short of signatures; `true` when the change was
/// published.
fn report_pending(target: &Target, outcome: &Signed) -> bool {
    let Signed::Pending { subject, roles } = outcome else {
        return true;
    };
    for (role, valid, threshold) in roles {
        eprintln!(
            "{role} of {} has {valid} of the {threshold} signatures it needs: the signature is attached to {subject} as pending; \
             the tag is not signed until another key holder of {role} runs `berth trust sign` for it",
            target.gun
        );
    }
    false
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
    let session = Session::open(client, &tls_from_env())?;
    let target = session.target(&r);
    let pins = env_root_keys();
    let digest = session_step(|| session.signing.resolve_tag(&target, &tag, &pins, Utc::now()))?;
    let name = r.familiar_name();
    Ok((format!("{name}@{digest}"), Some(format!("{name}:{tag}"))))
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

/// Root key ids pinned by `BERTH_TRUST_ROOT_KEY` (comma-separated).
fn env_root_keys() -> Vec<String> {
    std::env::var("BERTH_TRUST_ROOT_KEY")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn has_explicit_tag(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.contains(':')
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
            let keys: Vec<&str> = s.keys.iter().map(|k| berth_model::short_id(&k.id)).collect();
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
