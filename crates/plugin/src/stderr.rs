//! A plugin's standard error, reduced to its last few KiB. It is never
//! printed or logged as such: the host quotes its last lines only to explain
//! why a plugin crashed (a Rust panic message lands here).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much of the end of standard error is kept.
const KEPT_BYTES: usize = 4096;
/// How much a writer may write at once (any amount is accepted).
const WRITE_BUDGET: usize = 64 * 1024;

/// A sink that keeps the last [`KEPT_BYTES`] written to it. Clones share it.
#[derive(Clone, Default)]
pub(crate) struct StderrTail {
    kept: Arc<Mutex<VecDeque<u8>>>,
}

impl StderrTail {
    fn push(&self, bytes: &[u8]) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = &bytes[bytes.len().saturating_sub(KEPT_BYTES)..];
        let overflow = (kept.len() + bytes.len()).saturating_sub(KEPT_BYTES);
        kept.drain(..overflow);
        kept.extend(bytes);
    }

    /// The last non-empty lines written (as many whole lines as fit in
    /// `max_chars`, or the end of the last one), joined with ` | `, without
    /// the `RUST_BACKTRACE` hint; `None` if nothing was written.
    pub(crate) fn summary(&self, max_chars: usize) -> Option<String> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes: Vec<u8> = kept.iter().copied().collect();
        drop(kept);
        let text = String::from_utf8_lossy(&bytes);
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("note: run with `RUST_BACKTRACE"))
            .rev();
        let last = lines.next()?;
        let mut picked = vec![last_chars(last, max_chars)];
        let mut used = picked[0].chars().count();
        for line in lines {
            let needed = line.chars().count() + 3;
            if used + needed > max_chars {
                break;
            }
            used += needed;
            picked.push(line);
        }
        picked.reverse();
        Some(picked.join(" | "))
    }
}

/// The last `max_chars` characters of `line`.
fn last_chars(line: &str, max_chars: usize) -> &str {
    let skip = line.chars().count().saturating_sub(max_chars);
    let start = line.char_indices().nth(skip).map_or(line.len(), |(at, _)| at);
    &line[start..]
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl OutputStream for StderrTail {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_tail_and_summarizes_its_last_lines() {
        let tail = StderrTail::default();
        assert_eq!(tail.summary(100), None);
        tail.push(&vec![b'x'; 10_000]);
        tail.push(b"\nthread '<unnamed>' panicked at src/lib.rs:3:5:\nboom\n");
        tail.push(b"note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n");
        assert_eq!(tail.kept.lock().unwrap().len(), KEPT_BYTES);
        assert_eq!(
            tail.summary(60).unwrap(),
            "thread '<unnamed>' panicked at src/lib.rs:3:5: | boom"
        );
        assert_eq!(tail.summary(10).unwrap(), "boom");
        assert_eq!(tail.summary(2).unwrap(), "om");
    }
}
