//! The person running a trust command, as the signing session's
//! [`Interaction`]: passphrases from `BERTH_TRUST_{ROOT,TARGETS,SNAPSHOT,DELEGATION,BACKUP}_PASSPHRASE`
//! (an encrypted PEM's from `BERTH_TRUST_IMPORT_PASSPHRASE`), token PINs
//! from the variable the key's reference names, else a prompt on the
//! terminal with echo off; notes on stderr. Secrets are never echoed,
//! printed or logged.

use std::io::IsTerminal as _;
use std::path::Path;

use berth_notary::keystore::Passphrase;
use berth_notary::signing::Interaction;
use berth_notary::workflow::WorkflowError;

type Result<T> = std::result::Result<T, WorkflowError>;

/// The environment, else the terminal.
pub struct Terminal;

/// The non-empty value of `var`.
fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

pub(crate) fn on_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Reads a line from the terminal with echo off.
pub(crate) fn prompt_secret(prompt: &str) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::Write;
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let original = tcgetattr(&stdin).map_err(|e| WorkflowError::new(format!("reading the terminal's mode: {e}")))?;
    let mut silent = original.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    silent.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&stdin, SetArg::TCSANOW, &silent).map_err(|e| WorkflowError::new(format!("turning echo off: {e}")))?;
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &original);
    read.map_err(|e| WorkflowError::new(format!("reading the passphrase: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

impl Interaction for Terminal {
    fn passphrase(&self, class: &'static str, creating: bool) -> Result<Passphrase> {
        let var = format!("BERTH_TRUST_{class}_PASSPHRASE");
        if let Some(p) = env(&var) {
            return Ok(Passphrase::new(p));
        }
        let what = match class {
            "BACKUP" => "key backup".to_string(),
            other => format!("{} key", other.to_lowercase()),
        };
        if !on_terminal() {
            return Err(WorkflowError::new(format!(
                "the {what} needs a passphrase: set {var} or run on a terminal"
            )));
        }
        let first = prompt_secret(&format!("Passphrase for the {what}: "))?;
        // Reading a backup takes the passphrase it was written with, whatever it is.
        if first.is_empty() && (creating || class != "BACKUP") {
            return Err(WorkflowError::new("an empty passphrase is not allowed"));
        }
        if creating && prompt_secret(&format!("Repeat the passphrase for the {what}: "))? != first {
            return Err(WorkflowError::new("the passphrases do not match"));
        }
        Ok(Passphrase::new(first))
    }

    fn import_passphrase(&self, file: &str) -> Result<Passphrase> {
        match env("BERTH_TRUST_IMPORT_PASSPHRASE") {
            Some(p) => Ok(Passphrase::new(p)),
            None if on_terminal() => Ok(Passphrase::new(prompt_secret(&format!("Passphrase of {file}: "))?)),
            None => Err(WorkflowError::new(format!(
                "{file} is encrypted: set BERTH_TRUST_IMPORT_PASSPHRASE or run on a terminal"
            ))),
        }
    }

    fn token_pin(&self, module: &Path, label: &str, var: &str, security_officer: bool) -> Result<Passphrase> {
        if let Some(pin) = env(var) {
            return Ok(Passphrase::new(pin));
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
        if !on_terminal() {
            return Err(WorkflowError::new(format!(
                "{shown} of PKCS#11 module {} needs its {what}: set ${var} or run on a terminal",
                module.display()
            )));
        }
        Ok(Passphrase::new(prompt_secret(&format!("The {what} of {shown}: "))?))
    }

    fn note(&self, text: &str) {
        eprintln!("{text}");
    }
}
