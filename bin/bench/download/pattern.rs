//! The content of the files `ringstream bench make-file` writes, and its check, without IO:
//! every 8-byte word holds its own byte offset in the file as a little-endian `u64`, so any
//! part of the file, a range at any offset or one read of it, is checkable by position alone.

use std::fmt;
use std::io::{self, Write as _};
use std::path::Path;

/// Bytes of one pattern word.
const WORD: u64 = 8;
/// `Check::Pages` checks one word per page of this many bytes of the file.
pub const PAGE: u64 = 4096;
/// Bytes per write of `write_file`.
const WRITE_CHUNK: usize = 8 << 20;

/// How much of a body to compare with the pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Check {
    /// The first word of every 4 KiB page of the file: catches a wrong offset (a lost,
    /// repeated or reordered segment) at a small fraction of the cost of `words`.
    Pages,
    /// Every byte.
    Words,
}

/// The first byte of a body that is not the pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// Its offset in the file.
    pub offset: u64,
    /// What it is.
    pub found: u8,
    /// What the pattern has there.
    pub expected: u8,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "byte {} of the file is {:#04x}, the pattern has {:#04x}",
            self.offset, self.found, self.expected
        )
    }
}

/// The pattern's byte at file offset `offset`.
pub fn byte_at(offset: u64) -> u8 {
    (offset & !(WORD - 1)).to_le_bytes()[(offset % WORD) as usize]
}

/// Fills `out` with the pattern from file offset `offset` on.
pub fn fill(offset: u64, out: &mut [u8]) {
    let len = out.len();
    let lead = (offset.next_multiple_of(WORD) - offset).min(len as u64) as usize;
    let (head, rest) = out.split_at_mut(lead);
    for (i, byte) in head.iter_mut().enumerate() {
        *byte = byte_at(offset + i as u64);
    }
    let base = offset + lead as u64;
    let mut words = rest.chunks_exact_mut(WORD as usize);
    for (i, word) in (&mut words).enumerate() {
        word.copy_from_slice(&(base + i as u64 * WORD).to_le_bytes());
    }
    let tail = words.into_remainder();
    let tail_at = offset + (len - tail.len()) as u64;
    for (i, byte) in tail.iter_mut().enumerate() {
        *byte = byte_at(tail_at + i as u64);
    }
}

/// Compares `data`, found at file offset `offset`, with the pattern: every byte, or with
/// `Check::Pages` the bytes of `data` that belong to the first word of a page.
pub fn check(offset: u64, data: &[u8], how: Check) -> Result<(), Mismatch> {
    match how {
        Check::Words => check_bytes(offset, data),
        Check::Pages => {
            let end = offset + data.len() as u64;
            let mut page = offset.next_multiple_of(PAGE);
            // A page's word that starts before `data` has its tail here.
            if page > offset && offset % PAGE < WORD {
                check_bytes(
                    offset,
                    &data[..((WORD - offset % PAGE).min(end - offset)) as usize],
                )?;
            }
            while page < end {
                let from = (page - offset) as usize;
                let to = (page + WORD).min(end) - offset;
                check_bytes(page, &data[from..to as usize])?;
                page += PAGE;
            }
            Ok(())
        }
    }
}

/// Every byte of `data` against the pattern from `offset`: a word at a time, the differences
/// OR-ed together without a branch per word so that the loop vectorizes; the first wrong byte
/// is looked for only when there is one.
fn check_bytes(offset: u64, data: &[u8]) -> Result<(), Mismatch> {
    let lead = (offset.next_multiple_of(WORD) - offset).min(data.len() as u64) as usize;
    let base = offset + lead as u64;
    let words = data[lead..].chunks_exact(WORD as usize);
    let tail = words.remainder();
    let diff = words.enumerate().fold(0u64, |acc, (i, word)| {
        let mut bytes = [0; WORD as usize];
        bytes.copy_from_slice(word);
        acc | (u64::from_le_bytes(bytes) ^ (base + i as u64 * WORD))
    });
    let edges_ok = data[..lead]
        .iter()
        .chain(tail)
        .zip((offset..base).chain(offset + (data.len() - tail.len()) as u64..))
        .all(|(&found, at)| found == byte_at(at));
    if diff == 0 && edges_ok {
        return Ok(());
    }
    let (i, &found) = data
        .iter()
        .enumerate()
        .find(|&(i, &found)| found != byte_at(offset + i as u64))
        .ok_or_else(|| unreachable_mismatch(offset))?;
    let at = offset + i as u64;
    Err(Mismatch {
        offset: at,
        found,
        expected: byte_at(at),
    })
}

/// The fast comparison and the byte-wise one cannot disagree; if they did, the body is still
/// reported wrong rather than passed.
fn unreachable_mismatch(offset: u64) -> Mismatch {
    Mismatch {
        offset,
        found: 0,
        expected: 0,
    }
}

/// Writes `size` bytes of the pattern to `path` (created or truncated), in 8 MiB writes.
pub fn write_file(path: &Path, size: u64) -> io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    let mut buf = vec![0; WRITE_CHUNK.min(size as usize)];
    let mut offset = 0;
    while offset < size {
        let len = (size - offset).min(buf.len() as u64) as usize;
        fill(offset, &mut buf[..len]);
        file.write_all(&buf[..len])?;
        offset += len as u64;
    }
    // No sync: the file is for serving from the page cache, not for surviving a crash.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(offset: u64, len: usize) -> Vec<u8> {
        (offset..offset + len as u64).map(byte_at).collect()
    }

    #[test]
    fn every_word_holds_its_offset() {
        let mut out = vec![0; 64];
        fill(0, &mut out);
        for (i, word) in out.chunks_exact(8).enumerate() {
            assert_eq!(word, (i as u64 * 8).to_le_bytes());
        }
        assert_eq!(byte_at(0x0102_0304_0506_0708 + 1), 0x07);
    }

    #[test]
    fn fill_matches_byte_at_at_any_offset_and_length() {
        for offset in [0, 1, 7, 8, 4095, 4096, 4097, (1 << 32) + 3] {
            for len in [0, 1, 5, 8, 9, 17, 4100, 9000] {
                let mut out = vec![0xaa; len];
                fill(offset, &mut out);
                assert_eq!(out, pattern(offset, len), "offset {offset}, len {len}");
            }
        }
    }

    #[test]
    fn correct_ranges_pass_at_unaligned_offsets() {
        for how in [Check::Pages, Check::Words] {
            for offset in [0, 3, 8, 4093, 4096, 4099, 1 << 30] {
                for len in [0, 1, 6, 8, 13, 4096, 8195, 70_001] {
                    let data = pattern(offset, len);
                    assert_eq!(check(offset, &data, how), Ok(()), "{how:?} {offset} {len}");
                }
            }
        }
    }

    #[test]
    fn a_corrupted_word_is_caught_at_its_offset() {
        let offset = 4093;
        let data = pattern(offset, 20_000);
        // Every byte of the body, the unaligned lead and tail included.
        for at in [0, 2, 3, 10, 11, 4099, 19_990, 19_999] {
            let mut bad = data.clone();
            bad[at] ^= 0x40;
            let expected = Err(Mismatch {
                offset: offset + at as u64,
                found: data[at] ^ 0x40,
                expected: data[at],
            });
            assert_eq!(check(offset, &bad, Check::Words), expected, "at {at}");
        }
        // The first word of a page: 4096, 8192, ... (the body starts 3 bytes before 4096).
        for page_word_byte in [3, 3 + 7, 4099, 8195 + 5] {
            let mut bad = data.clone();
            bad[page_word_byte] = bad[page_word_byte].wrapping_add(1);
            let at = offset + page_word_byte as u64;
            assert_eq!(
                check(offset, &bad, Check::Pages).map_err(|m| m.offset),
                Err(at)
            );
        }
        // A segment of another part of the file (a wrong offset) is caught by pages too.
        let shifted = pattern(offset + 4096, 20_000);
        assert!(check(offset, &shifted, Check::Pages).is_err());
    }

    #[test]
    fn a_body_starting_inside_a_page_word_checks_its_tail() {
        // Bytes 4100..4104 are the tail of the word at 4096.
        let mut data = pattern(4100, 100);
        assert_eq!(check(4100, &data, Check::Pages), Ok(()));
        data[2] ^= 1;
        assert_eq!(
            check(4100, &data, Check::Pages).map_err(|m| m.offset),
            Err(4102)
        );
        data[2] ^= 1;
        data[4] ^= 1; // 4104: not a page word
        assert_eq!(check(4100, &data, Check::Pages), Ok(()));
    }

    #[test]
    fn written_files_hold_the_pattern() {
        let path = std::env::temp_dir().join(format!("pattern-{}.bin", std::process::id()));
        let size = WRITE_CHUNK as u64 + 4099;
        write_file(&path, size).expect("write");
        let data = std::fs::read(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        assert_eq!(data.len() as u64, size);
        assert_eq!(check(0, &data, Check::Words), Ok(()));
    }
}
