//! Layer compression: gzip, zstd or none, told by the magic bytes at the start
//! of the stream and cross-checked with the media type when there is one.

use std::io::{self, BufRead, BufReader, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// What the magic bytes at the start of `head` say.
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// What a layer media type says: `Ok(None)` for a type that does not tell
    /// (e.g. a docker archive layer), an error for a compression berth cannot read.
    pub fn from_media_type(media_type: &str) -> Result<Option<Self>, String> {
        let known_tar = [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.docker.image.rootfs.diff.tar",
            "application/vnd.docker.image.rootfs.foreign.diff.tar",
        ];
        if media_type.starts_with("application/vnd.docker.image.rootfs.") && media_type.ends_with(".tar.gzip") {
            return Ok(Some(Compression::Gzip));
        }
        let (base, suffix) = match media_type.split_once('+') {
            Some((b, s)) => (b, Some(s)),
            None => (media_type, None),
        };
        if !known_tar.contains(&base) {
            return Ok(None);
        }
        match suffix {
            None => Ok(Some(Compression::None)),
            Some("gzip") => Ok(Some(Compression::Gzip)),
            Some("zstd") => Ok(Some(Compression::Zstd)),
            Some(other) => Err(format!(
                "unsupported layer compression {other:?} (media type {media_type})"
            )),
        }
    }

    /// The OCI layer media type for this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Wraps `reader` in the decompressor its magic bytes call for.
pub(crate) fn decompress<'a>(reader: impl Read + 'a) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let compression = Compression::sniff(reader.fill_buf()?);
    let out: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    };
    Ok((compression, out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        let check = |mt: &str| format!("{:?}", Compression::from_media_type(mt));
        assert_eq!(check("application/vnd.oci.image.layer.v1.tar+gzip"), "Ok(Some(Gzip))");
        assert_eq!(check("application/vnd.oci.image.layer.v1.tar+zstd"), "Ok(Some(Zstd))");
        assert_eq!(
            check("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            "Ok(Some(Gzip))"
        );
        assert_eq!(check("application/vnd.example.thing"), "Ok(None)");
        assert_eq!(check("application/vnd.oci.image.layer.v1.tar"), "Ok(Some(None))");
        assert!(check("application/vnd.oci.image.layer.v1.tar+bzip2").contains("unsupported layer compression"));
    }

    #[test]
    fn decompress_by_magic() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"hello").unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&b"hello"[..], 1).unwrap();
        for (bytes, want) in [
            (gz, Compression::Gzip),
            (zst, Compression::Zstd),
            (b"hello".to_vec(), Compression::None),
        ] {
            let (c, mut r) = decompress(&bytes[..]).unwrap();
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            assert_eq!((c, s.as_str()), (want, "hello"));
        }
    }
}
