//! `cargo xtask image`: builds the busybox test image, offline, from Debian's
//! static `/bin/busybox` and the static `berth-probe` (`tests/image/probe`).
//!
//! Everything lands in `<target>/images/`:
//! - `busybox-oci.tar`: an OCI image layout, tagged `busybox:latest`;
//!   `busybox-oci/` is the same layout unpacked, for `umoci`/`skopeo oci:DIR:latest`;
//! - `busybox-docker.tar`: a `docker save` archive tagged `busybox:docker`;
//! - `busybox-bundle/`: an OCI runtime bundle (`rootfs/` + `config.json` from
//!   `runc spec`, running `/bin/true`) for the runc benchmark.
//!
//! The output is rebuilt only when its inputs change: the busybox binary, the
//! probe binary, or [`RECIPE_VERSION`].

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::util::{self, step};

/// Bump when the image recipe changes, so cached output is rebuilt.
const RECIPE_VERSION: u32 = 1;
const BUSYBOX: &str = "/bin/busybox";
const PROBE_IN_IMAGE: &str = "usr/local/bin/berth-probe";
/// Timestamp of every file and of the image itself (2024-01-01T00:00:00Z),
/// so the same inputs give the same digests.
const EPOCH_SECONDS: u64 = 1_704_067_200;
const CREATED: &str = "2024-01-01T00:00:00Z";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const OCI_TAG: &str = "latest";
const CONTAINERD_NAME: &str = "docker.io/library/busybox:latest";
const DOCKER_TAG: &str = "busybox:docker";

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";
const GROUP: &str = "\
root:x:0:
daemon:x:1:
app:x:1000:
nogroup:x:65534:
";

/// Where the built images are.
pub struct Images {
    pub dir: PathBuf,
    pub oci_tar: PathBuf,
    pub docker_tar: PathBuf,
    pub bundle: PathBuf,
}

impl Images {
    fn in_dir(dir: PathBuf) -> Self {
        Images {
            oci_tar: dir.join("busybox-oci.tar"),
            docker_tar: dir.join("busybox-docker.tar"),
            bundle: dir.join("busybox-bundle"),
            dir,
        }
    }
}

/// `cargo xtask image`.
pub fn main(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("`cargo xtask image` takes no arguments, got `{arg}`");
    }
    let images = build()?;
    println!("{}", images.oci_tar.display());
    println!("{}", images.docker_tar.display());
    println!("{}", images.bundle.display());
    Ok(())
}

/// Builds the probe and, when an input changed, the images.
pub fn build() -> Result<Images> {
    util::ensure_debian_packages(&["busybox-static", "runc"])?;
    let target = util::target_dir()?;
    let probe = build_probe(target)?;
    let images = Images::in_dir(target.join("images"));
    let stamp_path = images.dir.join(".inputs.json");

    let inputs = inputs(&probe)?;
    let up_to_date = fs::read(&stamp_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .is_some_and(|old| old == inputs)
        && [&images.oci_tar, &images.docker_tar, &images.bundle]
            .iter()
            .all(|path| path.exists());
    if up_to_date {
        eprintln!("images in {} are up to date", images.dir.display());
        return Ok(images);
    }

    step(&format!("building images in {}", images.dir.display()));
    fs::create_dir_all(&images.dir).with_context(|| format!("creating {}", images.dir.display()))?;
    remove_if_exists(&stamp_path)?;
    write_images(&images, &probe)?;
    fs::write(&stamp_path, serde_json::to_vec_pretty(&inputs)?)
        .with_context(|| format!("writing {}", stamp_path.display()))?;
    Ok(images)
}

/// Builds `berth-probe` statically, in `<target>/probe`; returns its path.
fn build_probe(target: &Path) -> Result<PathBuf> {
    let host = host_triple()?;
    let probe_target = target.join("probe");
    util::run(
        util::cargo()
            .args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(probe_manifest())
            .args(["--target", &host, "--target-dir"])
            .arg(&probe_target)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
    )?;
    let probe = probe_target.join(&host).join("release/berth-probe");
    ensure!(
        !has_interpreter(&probe)?,
        "{} is dynamically linked; it must be static to run in the image",
        probe.display()
    );
    Ok(probe)
}

pub fn probe_manifest() -> PathBuf {
    util::workspace_root().join("tests/image/probe/Cargo.toml")
}

fn host_triple() -> Result<String> {
    let version = util::output(Command::new("rustc").arg("-vV"))?;
    version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_string)
        .context("`rustc -vV` printed no host line")
}

/// What the output depends on; compared with the stamp of the last build.
fn inputs(probe: &Path) -> Result<Value> {
    let busybox = fs::metadata(BUSYBOX)
        .with_context(|| format!("{BUSYBOX} is missing: `apt-get install busybox-static` provides it"))?;
    let mtime = busybox.modified()?.duration_since(UNIX_EPOCH).unwrap_or_default();
    Ok(json!({
        "recipe": RECIPE_VERSION,
        "busybox": {
            "path": BUSYBOX,
            "mtime_ns": mtime.as_nanos().to_string(),
            "size": busybox.len(),
        },
        "probe_sha256": sha256_file(probe)?,
    }))
}

fn write_images(images: &Images, probe: &Path) -> Result<()> {
    ensure!(
        !has_interpreter(Path::new(BUSYBOX))?,
        "{BUSYBOX} is dynamically linked; install `busybox-static` instead of `busybox`"
    );
    let arch = oci_architecture()?;

    // The bundle's rootfs is the one root filesystem; the layer is made from it.
    remove_if_exists(&images.bundle)?;
    let rootfs = images.bundle.join("rootfs");
    write_rootfs(&rootfs, probe)?;
    write_bundle_config(&images.bundle)?;

    let work = images.dir.join(".work");
    remove_if_exists(&work)?;
    fs::create_dir_all(&work)?;
    let layer_tar = work.join("layer.tar");
    tar_directory(&rootfs, &sorted_entries(&rootfs)?, &layer_tar)?;
    let layer_tgz = work.join("layer.tar.gz");
    gzip(&layer_tar, &layer_tgz)?;
    let diff_id = sha256_file(&layer_tar)?;

    let config = serde_json::to_vec(&json!({
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": [PATH_ENV],
            "Cmd": ["sh"],
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": [format!("sha256:{diff_id}")],
        },
        "history": [{
            "created": CREATED,
            "created_by": "cargo xtask image: busybox-static and berth-probe",
        }],
    }))?;

    write_oci_layout(images, &config, &layer_tgz, arch)?;
    write_docker_archive(images, &config, &layer_tar, &diff_id, &work)?;
    remove_if_exists(&work)
}

/// The root filesystem: busybox with a link per applet, the probe, and the
/// few files and directories programs expect.
fn write_rootfs(rootfs: &Path, probe: &Path) -> Result<()> {
    let dirs: &[(&str, u32)] = &[
        ("", 0o755),
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("home/app", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/local", 0o755),
        ("usr/local/bin", 0o755),
        ("var", 0o755),
        ("var/tmp", 0o1777),
    ];
    for (dir, mode) in dirs {
        let path = rootfs.join(dir);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        set_mode(&path, *mode)?;
    }

    copy_file(Path::new(BUSYBOX), &rootfs.join("bin/busybox"), 0o755)?;
    copy_file(probe, &rootfs.join(PROBE_IN_IMAGE), 0o755)?;
    let applets = util::output(Command::new(BUSYBOX).arg("--list"))?;
    let mut linked_sh = false;
    for applet in applets.lines().map(str::trim) {
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = rootfs.join("bin").join(applet);
        symlink("busybox", &link).with_context(|| format!("linking {}", link.display()))?;
        linked_sh |= applet == "sh";
    }
    ensure!(linked_sh, "`{BUSYBOX} --list` has no `sh` applet");

    write_file(&rootfs.join("etc/passwd"), PASSWD, 0o644)?;
    write_file(&rootfs.join("etc/group"), GROUP, 0o644)?;

    // Only root can hand /home/app to `app`; otherwise the tar records root.
    if util::is_root() {
        std::os::unix::fs::chown(rootfs.join("home/app"), Some(1000), Some(1000))
            .context("chown /home/app in the rootfs")?;
    }
    Ok(())
}

/// `runc spec` in the bundle, then edited to run `/bin/true` without a terminal.
fn write_bundle_config(bundle: &Path) -> Result<()> {
    util::output(Command::new("runc").arg("spec").arg("--bundle").arg(bundle))?;
    let path = bundle.join("config.json");
    let mut config: Value =
        serde_json::from_slice(&fs::read(&path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("parsing {}", path.display()))?;
    let process = config
        .get_mut("process")
        .and_then(Value::as_object_mut)
        .context("`runc spec` wrote no process object")?;
    process.insert("args".into(), json!(["/bin/true"]));
    process.insert("terminal".into(), json!(false));
    fs::write(&path, serde_json::to_vec_pretty(&config)?).with_context(|| format!("writing {}", path.display()))
}

/// `<target>/images/busybox-oci/` and the same layout as `busybox-oci.tar`.
fn write_oci_layout(images: &Images, config: &[u8], layer_tgz: &Path, arch: &str) -> Result<()> {
    let layout = images.dir.join("busybox-oci");
    remove_if_exists(&layout)?;
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;

    let layer_digest = sha256_file(layer_tgz)?;
    copy_file(layer_tgz, &blobs.join(&layer_digest), 0o644)?;
    let config_digest = write_blob(&blobs, config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{layer_digest}"),
            "size": fs::metadata(layer_tgz)?.len(),
        }],
    }))?;
    let manifest_digest = write_blob(&blobs, &manifest)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {
                "io.containerd.image.name": CONTAINERD_NAME,
                "org.opencontainers.image.ref.name": OCI_TAG,
            },
        }],
    });
    write_file(&layout.join("index.json"), &serde_json::to_string(&index)?, 0o644)?;
    write_file(&layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)?;
    tar_directory(&layout, &["oci-layout", "index.json", "blobs"], &images.oci_tar)
}

/// `busybox-docker.tar`, in the format `docker save` writes and `docker load` reads.
fn write_docker_archive(images: &Images, config: &[u8], layer_tar: &Path, diff_id: &str, work: &Path) -> Result<()> {
    let dir = work.join("docker");
    let config_digest = sha256_bytes(config)?;
    let layer_dir = dir.join(diff_id);
    fs::create_dir_all(&layer_dir).with_context(|| format!("creating {}", layer_dir.display()))?;
    fs::rename(layer_tar, layer_dir.join("layer.tar"))?;
    write_file(&layer_dir.join("VERSION"), "1.0", 0o644)?;
    let config_name = format!("{config_digest}.json");
    fs::write(dir.join(&config_name), config)?;
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": [DOCKER_TAG],
        "Layers": [format!("{diff_id}/layer.tar")],
    }]);
    write_file(&dir.join("manifest.json"), &serde_json::to_string(&manifest)?, 0o644)?;
    let (repository, tag) = DOCKER_TAG.split_once(':').context("tag has no colon")?;
    write_file(
        &dir.join("repositories"),
        &serde_json::to_string(&json!({ repository: { tag: diff_id } }))?,
        0o644,
    )?;
    tar_directory(
        &dir,
        &["manifest.json", "repositories", config_name.as_str(), diff_id],
        &images.docker_tar,
    )
}

/// The OCI name of this machine's architecture (`uname -m` spelled as Go does).
fn oci_architecture() -> Result<&'static str> {
    Ok(match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => bail!("no OCI architecture name known for {other}"),
    })
}

/// Writes `entries` of `dir` (names relative to it) into an uncompressed tar,
/// sorted, with numeric owners and fixed timestamps so digests are repeatable.
fn tar_directory<S: AsRef<std::ffi::OsStr>>(dir: &Path, entries: &[S], tar: &Path) -> Result<()> {
    let mut command = Command::new("tar");
    command
        .arg("--create")
        .arg("--file")
        .arg(tar)
        .arg("--directory")
        .arg(dir)
        .args([
            "--format=gnu",
            "--sort=name",
            "--numeric-owner",
            &format!("--mtime=@{EPOCH_SECONDS}"),
        ]);
    if !util::is_root() {
        command.args(["--owner=0", "--group=0"]);
    }
    util::output(command.arg("--").args(entries)).map(drop)
}

fn sorted_entries(dir: &Path) -> Result<Vec<String>> {
    let mut names = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

fn gzip(from: &Path, to: &Path) -> Result<()> {
    let file = fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    // -n: no name or timestamp in the header, so the digest is repeatable.
    let mut command = Command::new("gzip");
    command.args(["-n", "-6", "--stdout"]).arg(from).stdout(file);
    util::run(&mut command)
}

/// Hex sha256 of a file, by `sha256sum`.
pub fn sha256_file(path: &Path) -> Result<String> {
    let out = util::output(Command::new("sha256sum").arg("--binary").arg(path))?;
    let hex = out.split_whitespace().next().unwrap_or_default();
    ensure!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "`sha256sum {}` printed `{out}`",
        path.display()
    );
    Ok(hex.to_string())
}

fn sha256_bytes(bytes: &[u8]) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("could not start `sha256sum`")?;
    child.stdin.take().context("sha256sum has no stdin")?.write_all(bytes)?;
    let out = child.wait_with_output()?;
    util::check_output("sha256sum", &out)?;
    let out = String::from_utf8_lossy(&out.stdout);
    let hex = out.split_whitespace().next().unwrap_or_default();
    ensure!(hex.len() == 64, "`sha256sum` printed `{out}`");
    Ok(hex.to_string())
}

/// Stores `bytes` under their digest in `blobs`; returns the hex digest.
fn write_blob(blobs: &Path, bytes: &[u8]) -> Result<String> {
    let digest = sha256_bytes(bytes)?;
    let path = blobs.join(&digest);
    fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    set_mode(&path, 0o644)?;
    Ok(digest)
}

/// Whether an ELF file asks for a program interpreter (is dynamically linked).
fn has_interpreter(path: &Path) -> Result<bool> {
    const PT_INTERP: u32 = 3;
    let elf = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let read = |at: usize, len: usize| -> Result<u64> {
        let bytes = elf
            .get(at..at + len)
            .with_context(|| format!("{} is truncated", path.display()))?;
        Ok(bytes.iter().rev().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    ensure!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "{} is not a little-endian 64-bit ELF file",
        path.display()
    );
    let phoff = usize::try_from(read(0x20, 8)?)?;
    let phentsize = usize::try_from(read(0x36, 2)?)?;
    let phnum = usize::try_from(read(0x38, 2)?)?;
    for i in 0..phnum {
        if read(phoff + i * phentsize, 4)? == u64::from(PT_INTERP) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn copy_file(from: &Path, to: &Path, mode: u32) -> Result<()> {
    fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    set_mode(to, mode)
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    set_mode(path, mode)
}

/// Sets the mode exactly, whatever the umask was when the file was made.
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => return Ok(()),
    };
    result.with_context(|| format!("removing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode_of(path: &Path) -> Result<u32> {
        Ok(fs::symlink_metadata(path)?.mode() & 0o7777)
    }

    #[test]
    fn rootfs_has_shell_links_users_and_sticky_tmp() -> Result<()> {
        if !Path::new(BUSYBOX).exists() {
            // The image needs busybox-static; `cargo xtask test` installs it.
            bail!("{BUSYBOX} is missing: install busybox-static");
        }
        let dir = util::TempDir::new("berth-xtask-rootfs-test")?;
        let rootfs = dir.path().join("rootfs");
        write_rootfs(&rootfs, Path::new(BUSYBOX))?;

        assert_eq!(fs::read_link(rootfs.join("bin/sh"))?, Path::new("busybox"));
        assert_eq!(fs::read_link(rootfs.join("bin/ls"))?, Path::new("busybox"));
        assert_eq!(mode_of(&rootfs.join("tmp"))?, 0o1777);
        assert_eq!(mode_of(&rootfs.join("root"))?, 0o700);
        assert_eq!(
            mode_of(&rootfs.join(PROBE_IN_IMAGE))?,
            0o755,
            "the probe must be executable"
        );
        let passwd = fs::read_to_string(rootfs.join("etc/passwd"))?;
        for user in [
            "root:x:0:0:",
            "daemon:x:1:1:",
            "nobody:x:65534:65534:",
            "app:x:1000:1000:",
        ] {
            assert!(passwd.contains(user), "{user} missing from /etc/passwd");
        }
        Ok(())
    }

    #[test]
    fn busybox_static_has_no_interpreter() -> Result<()> {
        assert!(has_interpreter(Path::new("/bin/sh"))?, "/bin/sh is dynamic");
        if Path::new(BUSYBOX).exists() {
            assert!(!has_interpreter(Path::new(BUSYBOX))?);
        }
        Ok(())
    }

    #[test]
    fn sha256_of_known_input() -> Result<()> {
        assert_eq!(
            sha256_bytes(b"abc")?,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        Ok(())
    }
}
