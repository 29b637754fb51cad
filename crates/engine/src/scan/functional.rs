//! Functional tests: the image run in a throw-away container with no
//! network (`--network none`), a shell command to its exit or the image's
//! HEALTHCHECK until it passes, under a timeout, removed afterwards.

use std::time::{Duration, Instant};

use berth_model::{ContainerCreate, Image};
use berth_scanner::FunctionalTest;
use serde_json::Value;

use super::run::raw_config;
use super::{ScanError, ScanService};

/// How much of a test's output is kept (its end).
const TEST_OUTPUT_LIMIT: usize = 64 * 1024;

impl ScanService {
    pub(super) async fn functional_test(
        &self,
        image: &Image,
        command: Option<&str>,
        healthcheck: bool,
        timeout: Duration,
    ) -> Result<FunctionalTest, ScanError> {
        let health = if healthcheck {
            let config = raw_config(self.engine.images(), image);
            Some(healthcheck_of(&config).ok_or_else(|| {
                ScanError::Invalid(format!(
                    "image {} has no HEALTHCHECK: use --test CMD instead",
                    image.tags.first().map_or(image.id.as_str(), String::as_str)
                ))
            })?)
        } else {
            None
        };
        let (cmd, entrypoint) = match (&health, command) {
            (Some(_), _) => (Vec::new(), None),
            (None, Some(command)) => (
                vec!["/bin/sh".to_string(), "-c".to_string(), command.to_string()],
                Some(Vec::new()),
            ),
            (None, None) => return Err(ScanError::Invalid("no functional test command".into())),
        };
        let name = format!("berth-scan-test-{}", &berth_model::new_id()[..12]);
        let create = ContainerCreate {
            image: image.id.to_string(),
            name: Some(name.clone()),
            cmd,
            entrypoint,
            network: Some(berth_model::NetworkMode::None),
            ..ContainerCreate::default()
        };
        let container = self.engine.create(create)?;
        let started = Instant::now();
        let outcome = match &health {
            None => self.run_to_exit(&container.id, timeout).await,
            Some(test) => self.run_healthcheck(&container.id, test, timeout).await,
        };
        if let Err(e) = self.engine.remove(&container.id, true).await {
            tracing::warn!(container = %container.id, error = %e, "cannot remove the functional test container");
        }
        let (passed, exit_code, output) = outcome?;
        let shown = match (&health, command) {
            (Some(test), _) => test.clone(),
            (None, Some(command)) => vec!["/bin/sh".to_string(), "-c".to_string(), command.to_string()],
            (None, None) => Vec::new(),
        };
        Ok(FunctionalTest::new(
            shown,
            passed,
            exit_code,
            &output,
            started.elapsed().as_millis() as u64,
        ))
    }

    /// Starts the container and waits for it to exit or the timeout.
    async fn run_to_exit(&self, id: &str, timeout: Duration) -> Result<(bool, Option<i32>, String), ScanError> {
        self.engine.start(id, None).await?;
        let waited = tokio::time::timeout(timeout, self.engine.wait(id, false)).await;
        let (passed, code, note) = match waited {
            Ok(Ok(code)) => (code == 0, Some(code), String::new()),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => (
                false,
                None,
                format!(
                    "\n[berth: the test ran longer than {}s and was killed]\n",
                    timeout.as_secs()
                ),
            ),
        };
        let output = self.container_output(id) + &note;
        Ok((passed, code, output))
    }

    /// Starts the container with its own command and runs the health check
    /// in it until the check passes, the container exits or time runs out.
    async fn run_healthcheck(
        &self,
        id: &str,
        test: &[String],
        timeout: Duration,
    ) -> Result<(bool, Option<i32>, String), ScanError> {
        self.engine.start(id, None).await?;
        let deadline = Instant::now() + timeout;
        let mut output = String::new();
        let mut last_code = None;
        loop {
            let running = matches!(
                self.engine.get(id).map(|c| c.status.state),
                Ok(berth_model::ContainerState::Running)
            );
            if !running {
                output.push_str(&self.container_output(id));
                output.push_str("\n[berth: the container exited before its health check passed]\n");
                return Ok((false, last_code, output));
            }
            let exec = berth_model::ExecCreate {
                cmd: test.to_vec(),
                ..berth_model::ExecCreate::default()
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.exec_collect(id, exec)).await {
                Ok(Ok((code, out))) => {
                    output = out;
                    last_code = Some(code);
                    if code == 0 {
                        return Ok((true, Some(0), output));
                    }
                }
                Ok(Err(e)) => {
                    output = e.to_string();
                }
                Err(_) => {}
            }
            if Instant::now() + Duration::from_millis(500) >= deadline {
                output.push_str(&format!(
                    "\n[berth: the health check did not pass within {}s]\n",
                    timeout.as_secs()
                ));
                return Ok((false, last_code, output));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Runs an exec to its end: exit code and output.
    async fn exec_collect(&self, id: &str, exec: berth_model::ExecCreate) -> Result<(i32, String), ScanError> {
        use berth_runtime::frame;
        let (mut stream, mut child) = self.engine.exec(id, exec).await?;
        let mut output = Vec::new();
        let mut code = None;
        while let Some((kind, payload)) = frame::read_frame(&mut stream)
            .await
            .map_err(|e| ScanError::Failed(format!("reading the health check's output: {e}")))?
        {
            match kind {
                frame::STDOUT | frame::STDERR => output.extend_from_slice(&payload),
                frame::EXIT => {
                    code = String::from_utf8_lossy(&payload).trim().parse::<i32>().ok();
                    break;
                }
                frame::ERROR => {
                    output.extend_from_slice(&payload);
                    break;
                }
                _ => {}
            }
        }
        let _ = child.wait().await;
        Ok((code.unwrap_or(-1), String::from_utf8_lossy(&output).into_owned()))
    }

    /// The end of a container's log.
    fn container_output(&self, id: &str) -> String {
        let Ok((_, path)) = self.engine.log_path(id) else {
            return String::new();
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut out = String::new();
        for line in text.lines() {
            if let Ok(entry) = serde_json::from_str::<berth_runtime::shim::LogLine>(line) {
                out.push_str(&entry.log);
            }
        }
        berth_scanner::report::truncate_output(&out, TEST_OUTPUT_LIMIT).0
    }
}

/// The HEALTHCHECK test as an exec command (`CMD-SHELL x` → `/bin/sh -c x`).
pub(super) fn healthcheck_of(config: &Value) -> Option<Vec<String>> {
    let test: Vec<String> = config["config"]["Healthcheck"]["Test"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    match test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        Some((kind, [command])) if kind == "CMD-SHELL" => {
            Some(vec!["/bin/sh".to_string(), "-c".to_string(), command.clone()])
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthcheck_forms() {
        let config = |test: Value| serde_json::json!({"config": {"Healthcheck": {"Test": test}}});
        assert_eq!(
            healthcheck_of(&config(serde_json::json!(["CMD", "/bin/check", "-q"]))),
            Some(vec!["/bin/check".to_string(), "-q".to_string()])
        );
        assert_eq!(
            healthcheck_of(&config(serde_json::json!(["CMD-SHELL", "test -f /ok"]))),
            Some(vec!["/bin/sh".to_string(), "-c".to_string(), "test -f /ok".to_string()])
        );
        assert_eq!(healthcheck_of(&config(serde_json::json!(["NONE"]))), None);
        assert_eq!(healthcheck_of(&Value::Null), None);
    }
}
