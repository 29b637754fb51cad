//! Just enough ELF to find a named section or map a virtual address to file
//! bytes: the file header, section headers with their names, and `PT_LOAD`
//! program headers; 32/64-bit, either byte order. Everything is read with
//! positioned reads and bounds-checked; a file that is not ELF is rejected
//! after its first four bytes.

use std::fs::File;
use std::os::unix::fs::FileExt;

const MAX_SECTIONS: usize = 4096;
const MAX_SEGMENTS: usize = 1024;
const PT_LOAD: u32 = 1;
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;

#[derive(Debug, Clone)]
pub struct Section {
    pub name: String,
    pub offset: u64,
    pub size: u64,
    /// `SHT_NOBITS` sections have no bytes in the file.
    pub nobits: bool,
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub flags: u32,
}

pub struct Elf<'f> {
    file: &'f File,
    pub sections: Vec<Section>,
    pub segments: Vec<Segment>,
}

struct Reader {
    big_endian: bool,
}

impl Reader {
    fn u16(&self, b: &[u8], at: usize) -> Option<u64> {
        let bytes: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(bytes)
        } else {
            u16::from_le_bytes(bytes)
        } as u64)
    }
    fn u32(&self, b: &[u8], at: usize) -> Option<u64> {
        let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        } as u64)
    }
    fn u64(&self, b: &[u8], at: usize) -> Option<u64> {
        let bytes: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
        Some(if self.big_endian {
            u64::from_be_bytes(bytes)
        } else {
            u64::from_le_bytes(bytes)
        })
    }
}

fn read_at(file: &File, offset: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

impl<'f> Elf<'f> {
    /// `None` when `file` is not a well-formed ELF file.
    pub fn parse(file: &'f File) -> Option<Elf<'f>> {
        let ident = read_at(file, 0, 4)?;
        if ident != b"\x7fELF" {
            return None;
        }
        let header = read_at(file, 0, 64).or_else(|| read_at(file, 0, 52))?;
        let is64 = match header[4] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let big_endian = match header[5] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let r = Reader { big_endian };
        let (phoff, shoff, rest) = if is64 {
            (r.u64(&header, 32)?, r.u64(&header, 40)?, 52)
        } else {
            (r.u32(&header, 28)?, r.u32(&header, 32)?, 40)
        };
        let phentsize = r.u16(&header, rest + 2)? as usize;
        let phnum = r.u16(&header, rest + 4)? as usize;
        let shentsize = r.u16(&header, rest + 6)? as usize;
        let shnum = r.u16(&header, rest + 8)? as usize;
        let shstrndx = r.u16(&header, rest + 10)? as usize;

        let mut segments = Vec::new();
        let min_ph = if is64 { 56 } else { 32 };
        if phnum > 0 && phnum <= MAX_SEGMENTS && (min_ph..=256).contains(&phentsize) {
            let table = read_at(file, phoff, phnum * phentsize)?;
            for i in 0..phnum {
                let at = i * phentsize;
                if r.u32(&table, at)? as u32 != PT_LOAD {
                    continue;
                }
                segments.push(if is64 {
                    Segment {
                        flags: r.u32(&table, at + 4)? as u32,
                        offset: r.u64(&table, at + 8)?,
                        vaddr: r.u64(&table, at + 16)?,
                        filesz: r.u64(&table, at + 32)?,
                    }
                } else {
                    Segment {
                        offset: r.u32(&table, at + 4)?,
                        vaddr: r.u32(&table, at + 8)?,
                        filesz: r.u32(&table, at + 16)?,
                        flags: r.u32(&table, at + 24)? as u32,
                    }
                });
            }
        }

        let mut sections = Vec::new();
        let min_sh = if is64 { 64 } else { 40 };
        if shnum > 0 && shnum <= MAX_SECTIONS && (min_sh..=256).contains(&shentsize) && shstrndx < shnum {
            let table = read_at(file, shoff, shnum * shentsize)?;
            let raw = |i: usize| -> Option<(u64, u32, u64, u64)> {
                let at = i * shentsize;
                let name = r.u32(&table, at)?;
                let kind = r.u32(&table, at + 4)? as u32;
                let (offset, size) = if is64 {
                    (r.u64(&table, at + 24)?, r.u64(&table, at + 32)?)
                } else {
                    (r.u32(&table, at + 16)?, r.u32(&table, at + 20)?)
                };
                Some((name, kind, offset, size))
            };
            let (_, _, names_offset, names_size) = raw(shstrndx)?;
            let names = read_at(file, names_offset, usize::try_from(names_size.min(1 << 20)).ok()?)?;
            for i in 0..shnum {
                let (name, kind, offset, size) = raw(i)?;
                let name_bytes = names.get(name as usize..).unwrap_or(&[]);
                let end = name_bytes.iter().position(|b| *b == 0).unwrap_or(name_bytes.len());
                sections.push(Section {
                    name: String::from_utf8_lossy(&name_bytes[..end]).into_owned(),
                    offset,
                    size,
                    nobits: kind == 8,
                });
            }
        }
        Some(Elf {
            file,
            sections,
            segments,
        })
    }

    /// The bytes of section `name`, `None` when absent; larger than `cap`
    /// is an error.
    pub fn section(&self, name: &str, cap: u64) -> Result<Option<Vec<u8>>, String> {
        let Some(section) = self.sections.iter().find(|s| s.name == name && !s.nobits) else {
            return Ok(None);
        };
        if section.size > cap {
            return Err(format!(
                "section {name} is {} bytes, over the {cap}-byte limit",
                section.size
            ));
        }
        read_at(self.file, section.offset, section.size as usize)
            .map(Some)
            .ok_or_else(|| format!("section {name} lies outside the file"))
    }

    /// Up to `len` bytes at virtual address `addr`, from the loaded segment
    /// that holds it.
    pub fn read_vaddr(&self, addr: u64, len: u64) -> Option<Vec<u8>> {
        let segment = self
            .segments
            .iter()
            .find(|s| addr >= s.vaddr && addr - s.vaddr < s.filesz)?;
        let skip = addr - segment.vaddr;
        let len = len.min(segment.filesz - skip);
        read_at(self.file, segment.offset + skip, usize::try_from(len).ok()?)
    }

    /// Reads `len` bytes at file offset `offset`.
    pub fn read(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        read_at(self.file, offset, len)
    }

    /// Whether the file had a section header table at all.
    pub fn has_sections(&self) -> bool {
        !self.sections.is_empty()
    }
}
