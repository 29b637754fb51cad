//! The client end of a framed stream (attach, run, exec): the terminal in raw
//! mode for `-t`, window size changes as RESIZE frames, stdin as STDIN frames,
//! output to stdout/stderr, and the EXIT frame's code as ours.

use std::io::{IsTerminal, Read, Write};

use anyhow::{bail, Result};
use berth_runtime::frame;
use tokio::io::{AsyncRead, AsyncWrite};

/// Restores the terminal's mode when dropped.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enter() -> Self {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Self(None);
        }
        match nix::sys::termios::tcgetattr(&stdin) {
            Ok(orig) => {
                let mut raw = orig.clone();
                nix::sys::termios::cfmakeraw(&mut raw);
                let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw);
                Self(Some(orig))
            }
            Err(_) => Self(None),
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(orig) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, orig);
        }
    }
}

pub fn window_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes the winsize we pass.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
}

pub async fn pump<S>(stream: S, tty: bool, send_stdin: bool) -> Result<i32>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut r, w) = tokio::io::split(stream);
    let _raw = if tty { RawMode::enter() } else { RawMode(None) };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(64);
    if tty {
        if let Some((c, rows)) = window_size() {
            let _ = tx.send((frame::RESIZE, frame::resize_payload(c, rows).to_vec())).await;
        }
        let tx = tx.clone();
        tokio::spawn(async move {
            let Ok(mut winch) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Some((c, rows)) = window_size() {
                    if tx
                        .send((frame::RESIZE, frame::resize_payload(c, rows).to_vec()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
    }
    if send_stdin {
        let tx = tx.clone();
        // Blocking reads of our stdin on a plain thread; it dies with the process.
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.blocking_send((frame::STDIN, Vec::new()));
                        return;
                    }
                    Ok(n) => {
                        if tx.blocking_send((frame::STDIN, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    drop(tx);
    let writer = tokio::spawn(async move {
        let mut w = w;
        while let Some((kind, data)) = rx.recv().await {
            if frame::write_frame(&mut w, kind, &data).await.is_err() {
                return;
            }
        }
    });
    let result = loop {
        match frame::read_frame(&mut r).await {
            Ok(Some((frame::STDOUT, data))) => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&data);
                let _ = out.flush();
            }
            Ok(Some((frame::STDERR, data))) => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&data);
                let _ = err.flush();
            }
            Ok(Some((frame::EXIT, data))) => {
                break Ok(String::from_utf8_lossy(&data).trim().parse().unwrap_or(255));
            }
            Ok(Some((frame::ERROR, data))) => {
                break Err(berth_client::ExitError(126, String::from_utf8_lossy(&data).into_owned()).into());
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                break Err(anyhow::anyhow!(
                    "the daemon closed the stream before the process exited"
                ))
            }
            Err(e) => bail!("reading the stream: {e}"),
        }
    };
    writer.abort();
    result
}
