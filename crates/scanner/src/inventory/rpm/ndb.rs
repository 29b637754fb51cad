//! rpm's NDB package file, `Packages.db` (SUSE): slot pages that say where
//! each package's blob lies, then the blobs. All integers are little-endian.
//!
//! ```text
//! bytes 0..32, the file header:
//!   u32 magic "RpmP", u32 version 0, u32 generation, u32 slot pages,
//!   u32 next package index
//! bytes 32 .. slot pages × 4096, 16-byte slots:
//!   u32 magic "Slot", u32 package index, u32 block offset (0: free), u32 block count
//! a blob, at block offset × 16, block count × 16 bytes long:
//!   u32 magic "BlbS", u32 package index, u32 generation, u32 length
//!   the header blob (length bytes), zero padding
//!   u32 adler32 of all the bytes before it, u32 length, u32 magic "BlbE"
//! ```
//!
//! A blob must lie after the slot pages and overlap no other blob, as rpm
//! writes them: each byte is checked once at most.

use std::borrow::Cow;

use super::StoredHeader;

const FILE_MAGIC: &[u8; 4] = b"RpmP";
const SLOT_MAGIC: &[u8; 4] = b"Slot";
const BLOB_HEAD_MAGIC: &[u8; 4] = b"BlbS";
const BLOB_TAIL_MAGIC: &[u8; 4] = b"BlbE";
const HEADER_SIZE: usize = 32;
const PAGE_SIZE: usize = 4096;
const SLOT_SIZE: usize = 16;
const BLOCK_SIZE: usize = 16;
const BLOB_HEAD_SIZE: usize = 16;
const BLOB_TAIL_SIZE: usize = 12;

/// Whether `data` starts like an NDB package file.
pub(super) fn is_ndb(data: &[u8]) -> bool {
    data.starts_with(FILE_MAGIC)
}

fn le32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// One used slot: where a package's blob lies.
struct Slot {
    index: u32,
    start: usize,
    len: usize,
}

/// The header blobs of an NDB `Packages.db`. A damaged slot or blob is a
/// warning and the rest is still read; a file header that cannot be read
/// is an error.
pub(super) fn headers<'a>(data: &'a [u8], warnings: &mut Vec<String>) -> Result<Vec<StoredHeader<'a>>, String> {
    if data.len() < HEADER_SIZE || !is_ndb(data) {
        return Err("no NDB magic".to_string());
    }
    let field = |at: usize| le32(data, at).unwrap_or(0);
    let version = field(4);
    if version != 0 {
        return Err(format!("version {version}, not 0"));
    }
    let slot_pages = field(12) as usize;
    let slots_end = slot_pages
        .checked_mul(PAGE_SIZE)
        .filter(|end| *end <= data.len() && *end > 0)
        .ok_or_else(|| format!("{slot_pages} slot pages in a file of {} bytes", data.len()))?;

    let mut slots = Vec::new();
    for (number, at) in (HEADER_SIZE..slots_end).step_by(SLOT_SIZE).enumerate() {
        let slot = &data[at..at + SLOT_SIZE];
        if &slot[..4] != SLOT_MAGIC {
            warnings.push(format!(
                "slot {number} has no slot magic; its package, if any, is left out"
            ));
            continue;
        }
        let (index, offset, count) = (field(at + 4), field(at + 8) as usize, field(at + 12) as usize);
        if offset == 0 {
            continue;
        }
        if index == 0 {
            warnings.push(format!("slot {number} is in use but names no package; left out"));
            continue;
        }
        let place = offset
            .checked_mul(BLOCK_SIZE)
            .zip(count.checked_mul(BLOCK_SIZE))
            .filter(|(start, len)| *start >= slots_end && start.checked_add(*len).is_some_and(|end| end <= data.len()));
        match place {
            Some((start, len)) => slots.push(Slot { index, start, len }),
            None => warnings.push(format!(
                "package {index}: its slot points at blocks {offset} to {} of a file of {} blocks; left out",
                offset.saturating_add(count),
                data.len() / BLOCK_SIZE
            )),
        }
    }

    slots.sort_by_key(|slot| slot.start);
    let mut out = Vec::with_capacity(slots.len());
    let mut previous_end = slots_end;
    for slot in slots {
        if slot.start < previous_end {
            warnings.push(format!(
                "package {}: its blob overlaps the one before it; left out",
                slot.index
            ));
            continue;
        }
        previous_end = slot.start + slot.len;
        match blob(&data[slot.start..slot.start + slot.len], slot.index) {
            Ok(blob) => out.push(StoredHeader {
                number: slot.index,
                blob: Cow::Borrowed(blob),
            }),
            Err(e) => warnings.push(format!("package {}: {e}; left out", slot.index)),
        }
    }
    Ok(out)
}

/// The header blob inside one blob area, checked against its head and tail.
fn blob(area: &[u8], index: u32) -> Result<&[u8], String> {
    if area.len() < BLOB_HEAD_SIZE + BLOB_TAIL_SIZE {
        return Err(format!("its blob area of {} bytes is too small", area.len()));
    }
    if &area[..4] != BLOB_HEAD_MAGIC {
        return Err("its blob has no blob magic".to_string());
    }
    let field = |at: usize| le32(area, at).unwrap_or(0);
    if field(4) != index {
        return Err(format!("its blob belongs to package {}", field(4)));
    }
    let length = field(12) as usize;
    let needed = (BLOB_HEAD_SIZE + BLOB_TAIL_SIZE)
        .checked_add(length)
        .map(|n| n.div_ceil(BLOCK_SIZE) * BLOCK_SIZE);
    if needed != Some(area.len()) {
        return Err(format!(
            "a blob of {length} bytes does not fill its {} bytes",
            area.len()
        ));
    }
    let tail = area.len() - BLOB_TAIL_SIZE;
    if &area[tail + 8..] != BLOB_TAIL_MAGIC || field(tail + 4) as usize != length {
        return Err("its blob's tail does not match its head".to_string());
    }
    if adler32(&area[..tail]) != field(tail) {
        return Err("its blob's checksum does not match".to_string());
    }
    Ok(&area[BLOB_HEAD_SIZE..BLOB_HEAD_SIZE + length])
}

/// Adler-32 (RFC 1950).
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    // The most bytes summed before `b` could overflow a u32.
    const CHUNK: usize = 5552;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(CHUNK) {
        for byte in chunk {
            a += u32::from(*byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::adler32;

    #[test]
    fn adler32_of_known_inputs() {
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        // Long enough to need the periodic reduction.
        assert_eq!(adler32(&[0xff; 100_000]), 0x149A_302C);
    }
}
