//! Berkeley DB hash files, as rpm's bdb backend kept `Packages` (CentOS 7,
//! RHEL 8, Amazon Linux 2, SUSE before NDB): the key is the 4-byte package
//! number, the value its header blob; key 0 holds rpm's last package number.
//!
//! The file is pages of `pagesize` bytes. Integers are in the byte order
//! of the machine that wrote it, told by which order the magic reads in.
//!
//! ```text
//! page 0, the metadata page:
//!   12 u32 magic        0x061561 hash (0x053162 btree, 0x042253 queue, 0x074582 heap)
//!   16 u32 version      8, 9 or 10 (Berkeley DB 4.x to 6.x)
//!   20 u32 pagesize     a power of two, 512 to 65536
//!   24 u8  encrypt_alg  not 0: encrypted
//!   25 u8  type         8, hash metadata
//!   26 u8  metaflags    bit 0: pages carry checksums (another page layout)
//!   32 u32 last_pgno
//!   72 u32 max_bucket
//!   96 u32 spares[32]   bucket b starts on page b + spares[bits(b)],
//!                       bits(b) = the number of significant bits of b
//! every other page:
//!    8 u32 pgno         the page's own number
//!   16 u32 next_pgno    the next page of the bucket or overflow chain, 0 ends it
//!   20 u16 entries
//!   22 u16 hf_offset    overflow pages: how many data bytes the page holds
//!   25 u8  type         13 hash (sorted), 2 hash (unsorted), 7 overflow
//!   26 ...              hash pages: u16 item offsets; overflow pages: data
//! ```
//!
//! A hash page holds items in key, value order; item `i` runs from its
//! offset to the offset of item `i - 1` (the page's end for item 0). Its
//! first byte says what it is: 1 the bytes follow; 3 they are on overflow
//! pages (`u8[3]` unused, `u32` first page, `u32` total length); 2 and 4
//! are duplicate sets, which rpm never stores.
//!
//! Every bucket chain and overflow page is followed once at most, so a
//! crafted file cannot make the work or the memory grow past its size.

use std::borrow::Cow;

use super::StoredHeader;

const HASH_MAGIC: u32 = 0x0006_1561;
const OTHER_MAGICS: [(u32, &str); 3] = [(0x0005_3162, "btree"), (0x0004_2253, "queue"), (0x0007_4582, "heap")];
const PAGE_HEADER: usize = 26;
const TYPE_HASH_UNSORTED: u8 = 2;
const TYPE_OVERFLOW: u8 = 7;
const TYPE_HASH_META: u8 = 8;
const TYPE_HASH: u8 = 13;
const ITEM_KEYDATA: u8 = 1;
const ITEM_DUPLICATE: u8 = 2;
const ITEM_OFFPAGE: u8 = 3;
const ITEM_OFFDUP: u8 = 4;
/// The size of an `ITEM_OFFPAGE` item.
const OFFPAGE_SIZE: usize = 12;

/// Whether `data` starts like a Berkeley DB file of any access method.
pub(super) fn is_berkeley_db(data: &[u8]) -> bool {
    let Some(raw) = data.get(12..16) else {
        return false;
    };
    [HASH_MAGIC, OTHER_MAGICS[0].0, OTHER_MAGICS[1].0, OTHER_MAGICS[2].0]
        .iter()
        .any(|magic| raw == magic.to_le_bytes() || raw == magic.to_be_bytes())
}

#[derive(Clone, Copy)]
struct Reader<'a> {
    data: &'a [u8],
    big_endian: bool,
    pagesize: usize,
    /// Pages the file holds in full.
    pages: usize,
}

impl<'a> Reader<'a> {
    fn u16(&self, bytes: &[u8], at: usize) -> Option<u16> {
        let raw: [u8; 2] = bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(raw)
        } else {
            u16::from_le_bytes(raw)
        })
    }

    fn u32(&self, bytes: &[u8], at: usize) -> Option<u32> {
        u32_at(bytes, at, self.big_endian)
    }

    /// Page `number`, checked to hold its own number.
    fn page(&self, number: u32) -> Result<&'a [u8], String> {
        let index = number as usize;
        if index == 0 || index >= self.pages {
            return Err(format!(
                "page {number} is past the end of the file ({} pages)",
                self.pages
            ));
        }
        let page = &self.data[index * self.pagesize..(index + 1) * self.pagesize];
        match self.u32(page, 8) {
            Some(own) if own == number => Ok(page),
            own => Err(format!("page {number} says it is page {}", own.unwrap_or(0))),
        }
    }
}

fn u32_at(bytes: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(raw)
    } else {
        u32::from_le_bytes(raw)
    })
}

/// Pages already followed: a page belongs to one chain only.
struct Visited(Vec<bool>);

impl Visited {
    fn first_visit(&mut self, page: u32) -> bool {
        match self.0.get_mut(page as usize) {
            Some(seen) if !*seen => {
                *seen = true;
                true
            }
            _ => false,
        }
    }
}

/// The header blobs of a Berkeley DB hash `Packages` file. Damage confined
/// to a bucket or a package is a warning and the rest is still read; a
/// metadata page that cannot be read is an error.
pub(super) fn headers<'a>(data: &'a [u8], warnings: &mut Vec<String>) -> Result<Vec<StoredHeader<'a>>, String> {
    let magic_raw = data.get(12..16).ok_or("shorter than a metadata page")?;
    let big_endian = if magic_raw == HASH_MAGIC.to_le_bytes() {
        false
    } else if magic_raw == HASH_MAGIC.to_be_bytes() {
        true
    } else {
        let other = OTHER_MAGICS
            .iter()
            .find(|(magic, _)| magic_raw == magic.to_le_bytes() || magic_raw == magic.to_be_bytes());
        return Err(match other {
            Some((_, method)) => format!("a Berkeley DB {method} file, not the hash file rpm writes"),
            None => "no Berkeley DB magic".to_string(),
        });
    };
    let field = |at: usize| u32_at(data, at, big_endian).ok_or("shorter than a metadata page");
    let version = field(16)?;
    if !(8..=10).contains(&version) {
        return Err(format!("hash version {version}, not 8 to 10"));
    }
    let pagesize = field(20)? as usize;
    if !pagesize.is_power_of_two() || !(512..=65536).contains(&pagesize) {
        return Err(format!("page size {pagesize} is not a power of two from 512 to 65536"));
    }
    let meta = data
        .get(..pagesize)
        .ok_or_else(|| format!("{} bytes, shorter than its {pagesize}-byte metadata page", data.len()))?;
    if meta[24] != 0 {
        return Err("encrypted".to_string());
    }
    if meta[25] != TYPE_HASH_META {
        return Err(format!("metadata page has type {}, not hash metadata", meta[25]));
    }
    if meta[26] & 1 != 0 {
        return Err("pages carry checksums, a layout rpm does not write".to_string());
    }
    let reader = Reader {
        data,
        big_endian,
        pagesize,
        pages: data.len() / pagesize,
    };
    let last_page = field(32)? as usize;
    if last_page >= reader.pages {
        warnings.push(format!(
            "the file ends after page {}, its metadata says page {last_page} is the last",
            reader.pages.saturating_sub(1)
        ));
    }
    let max_bucket = field(72)?;
    if max_bucket as usize >= reader.pages {
        return Err(format!(
            "{} buckets in a file of {} pages",
            u64::from(max_bucket) + 1,
            reader.pages
        ));
    }
    let mut spares = [0u32; 32];
    for (i, spare) in spares.iter_mut().enumerate() {
        *spare = field(96 + 4 * i)?;
    }

    let mut visited = Visited(vec![false; reader.pages]);
    let mut out = Vec::new();
    for bucket in 0..=max_bucket {
        let spare = spares.get((u32::BITS - bucket.leading_zeros()) as usize);
        let Some(first) = spare.and_then(|spare| bucket.checked_add(*spare)) else {
            warnings.push(format!("bucket {bucket}: no such page; its packages are left out"));
            continue;
        };
        let mut next = first;
        while next != 0 {
            let number = next;
            let page = match chain_page(&reader, &mut visited, number, &[TYPE_HASH, TYPE_HASH_UNSORTED]) {
                Ok(page) => page,
                Err(e) => {
                    warnings.push(format!("bucket {bucket}: {e}; the packages from there on are left out"));
                    break;
                }
            };
            if let Err(e) = items(&reader, &mut visited, page, &mut out, warnings) {
                warnings.push(format!(
                    "bucket {bucket}, page {number}: {e}; its packages are left out"
                ));
            }
            next = reader.u32(page, 16).unwrap_or(0);
        }
    }
    Ok(out)
}

/// Page `number` as the next link of a chain: not seen before and of one
/// of the `types`.
fn chain_page<'a>(reader: &Reader<'a>, visited: &mut Visited, number: u32, types: &[u8]) -> Result<&'a [u8], String> {
    let page = reader.page(number)?;
    if !types.contains(&page[25]) {
        return Err(format!("page {number} has type {}", page[25]));
    }
    if !visited.first_visit(number) {
        return Err(format!("page {number} is reached a second time"));
    }
    Ok(page)
}

/// The key and value pairs of one hash page.
fn items<'a>(
    reader: &Reader<'a>,
    visited: &mut Visited,
    page: &'a [u8],
    out: &mut Vec<StoredHeader<'a>>,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let entries = usize::from(reader.u16(page, 20).unwrap_or(0));
    let index_end = PAGE_HEADER + 2 * entries;
    if index_end > page.len() {
        return Err(format!("{entries} entries do not fit the page"));
    }
    if entries % 2 != 0 {
        return Err(format!("{entries} entries, not key and value pairs"));
    }
    let item = |i: usize| -> Result<&'a [u8], String> {
        let offset = usize::from(reader.u16(page, PAGE_HEADER + 2 * i).unwrap_or(0));
        let end = match i {
            0 => page.len(),
            _ => usize::from(reader.u16(page, PAGE_HEADER + 2 * (i - 1)).unwrap_or(0)),
        };
        if offset < index_end || offset >= end || end > page.len() {
            return Err(format!("entry {i} lies at bytes {offset} to {end}"));
        }
        Ok(&page[offset..end])
    };
    for pair in 0..entries / 2 {
        let key = item(2 * pair)?;
        let value = item(2 * pair + 1)?;
        let key = match key[0] {
            ITEM_KEYDATA => &key[1..],
            other => return Err(format!("key {pair} has item type {other}")),
        };
        if key.iter().all(|b| *b == 0) {
            // rpm's own record of the last package number.
            if value[0] == ITEM_KEYDATA && value.len() <= 1 + 4 {
                continue;
            }
            warnings.push("key 0 holds more than rpm's 4-byte package counter; left out".to_string());
            continue;
        }
        let number = match <[u8; 4]>::try_from(key) {
            Ok(raw) if reader.big_endian => u32::from_be_bytes(raw),
            Ok(raw) => u32::from_le_bytes(raw),
            Err(_) => {
                warnings.push(format!(
                    "a key of {} bytes is not a package number; left out",
                    key.len()
                ));
                continue;
            }
        };
        let blob = match value[0] {
            ITEM_KEYDATA => Ok(Cow::Borrowed(&value[1..])),
            ITEM_OFFPAGE => overflow(reader, visited, value).map(Cow::Owned),
            ITEM_DUPLICATE | ITEM_OFFDUP => Err("a set of duplicates, which rpm never stores".to_string()),
            other => Err(format!("item type {other}")),
        };
        match blob {
            Ok(blob) => out.push(StoredHeader { number, blob }),
            Err(e) => warnings.push(format!("package {number}: {e}; left out")),
        }
    }
    Ok(())
}

/// A value stored on a chain of overflow pages.
fn overflow(reader: &Reader, visited: &mut Visited, item: &[u8]) -> Result<Vec<u8>, String> {
    if item.len() < OFFPAGE_SIZE {
        return Err(format!("an overflow reference of {} bytes", item.len()));
    }
    let mut next = reader.u32(item, 4).unwrap_or(0);
    let total = reader.u32(item, 8).unwrap_or(0) as usize;
    // Each overflow page carries at most a page of data: a length the file
    // cannot hold is not believed, and nothing is allocated for it.
    let room = reader.pages.saturating_mul(reader.pagesize - PAGE_HEADER);
    if total == 0 || total > room {
        return Err(format!(
            "an overflow value of {total} bytes in a file of {} pages",
            reader.pages
        ));
    }
    let mut value = Vec::with_capacity(total);
    while value.len() < total {
        if next == 0 {
            return Err(format!(
                "the overflow chain ends after {} of {total} bytes",
                value.len()
            ));
        }
        let page = chain_page(reader, visited, next, &[TYPE_OVERFLOW])?;
        let length = usize::from(reader.u16(page, 22).unwrap_or(0));
        let bytes = page
            .get(PAGE_HEADER..PAGE_HEADER + length)
            .ok_or_else(|| format!("overflow page {next} claims {length} bytes"))?;
        if length > total - value.len() {
            return Err(format!(
                "overflow page {next} holds more than the value's {total} bytes"
            ));
        }
        value.extend_from_slice(bytes);
        next = reader.u32(page, 16).unwrap_or(0);
    }
    Ok(value)
}
