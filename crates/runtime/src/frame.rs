//! The framing used on every attach and exec stream (client ↔ daemon ↔ shim):
//! `[kind: u8][len: u32 big-endian][payload]`. One format end to end, so the
//! daemon can splice a client straight onto a shim without parsing.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes for the process's stdin (client → shim); an empty payload means EOF.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// The process exited; payload is the exit code in decimal. Always the last frame.
pub const EXIT: u8 = 3;
/// Something failed; payload is a message. The stream ends after it.
pub const ERROR: u8 = 4;
/// The client's terminal size changed; payload is `cols:u16, rows:u16` big-endian.
pub const RESIZE: u8 = 5;

/// Largest payload accepted; larger frames are a protocol error, not an allocation.
pub const MAX_FRAME: usize = 1 << 20;

pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, kind: u8, payload: &[u8]) -> io::Result<()> {
    let mut header = [0u8; 5];
    header[0] = kind;
    header[1..].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    w.write_all(&header).await?;
    w.write_all(payload).await?;
    w.flush().await
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is too large"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((header[0], payload)))
}

pub fn resize_payload(cols: u16, rows: u16) -> [u8; 4] {
    let mut p = [0u8; 4];
    p[..2].copy_from_slice(&cols.to_be_bytes());
    p[2..].copy_from_slice(&rows.to_be_bytes());
    p
}

pub fn parse_resize(p: &[u8]) -> Option<(u16, u16)> {
    (p.len() == 4).then(|| (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_reject_oversize() {
        let mut buf = Vec::new();
        write_frame(&mut buf, STDOUT, b"hello").await.unwrap();
        write_frame(&mut buf, EXIT, b"3").await.unwrap();
        let mut r = buf.as_slice();
        assert_eq!(read_frame(&mut r).await.unwrap(), Some((STDOUT, b"hello".to_vec())));
        assert_eq!(read_frame(&mut r).await.unwrap(), Some((EXIT, b"3".to_vec())));
        assert_eq!(read_frame(&mut r).await.unwrap(), None);
        let huge = [STDOUT, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut huge.as_slice()).await.is_err());
        assert_eq!(parse_resize(&resize_payload(80, 24)), Some((80, 24)));
    }
}
