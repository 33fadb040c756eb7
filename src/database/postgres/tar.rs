//! A tar stream read as it is written: the members of a `pg_basebackup`
//! archive seen in passing, so a base backup's `backup_manifest` is found
//! and checked without unpacking anything and without holding the archive.
//!
//! Only what `pg_basebackup -Ft` writes is understood: ustar headers (with
//! the name prefix), GNU long names, and the end-of-archive blocks.

use std::io::{self, Write};

/// Size of a tar block.
const BLOCK: usize = 512;

/// What a [`Scanner`] tells as it reads.
pub trait Visitor {
    /// A member begins: its path, its type flag (`b'0'` a file, `b'5'` a
    /// folder, `b'2'` a symbolic link) and its data size.
    fn begin(&mut self, path: &str, kind: u8, size: u64);
    /// Some of the current member's data, in order.
    fn data(&mut self, chunk: &[u8]);
    /// The current member's data is complete.
    fn end(&mut self);
}

/// Where the scanner is in the stream.
enum State {
    /// Collecting a header block.
    Header,
    /// Inside a member: data left, then padding left.
    Data { left: u64, padding: usize },
    /// Inside a GNU long-name member: its bytes so far, then padding.
    LongName {
        left: u64,
        padding: usize,
        name: Vec<u8>,
    },
    /// Past the end-of-archive blocks: anything more is an error.
    Ended,
}

/// Reads a tar stream written into it, telling `visitor` about each member.
pub struct Scanner<V> {
    visitor: V,
    state: State,
    header: Vec<u8>,
    /// A GNU long name for the next member.
    long_name: Option<String>,
    zero_blocks: u8,
    /// Why the stream is not a tar archive, once it is known.
    broken: Option<String>,
    members: u64,
}

impl<V: Visitor> Scanner<V> {
    pub fn new(visitor: V) -> Scanner<V> {
        Scanner {
            visitor,
            state: State::Header,
            header: Vec::with_capacity(BLOCK),
            long_name: None,
            zero_blocks: 0,
            broken: None,
            members: 0,
        }
    }

    /// The visitor, once the whole archive was read; why not, otherwise.
    pub fn finish(self) -> Result<V, String> {
        if let Some(broken) = self.broken {
            return Err(broken);
        }
        match self.state {
            State::Ended => Ok(self.visitor),
            // `pg_basebackup` ends with two zero blocks; a stream cut short does not.
            _ if self.members == 0 => Err("the archive is empty".to_owned()),
            _ => Err("the archive ends in the middle (no end-of-archive blocks)".to_owned()),
        }
    }

    fn header(&mut self) -> Result<(), String> {
        let block = std::mem::take(&mut self.header);
        if block.iter().all(|byte| *byte == 0) {
            self.zero_blocks += 1;
            if self.zero_blocks == 2 {
                self.state = State::Ended;
            }
            return Ok(());
        }
        if self.zero_blocks > 0 {
            return Err("a member follows an end-of-archive block".to_owned());
        }
        let stored: u64 = octal(&block[148..156]).ok_or("a header checksum is not a number")?;
        let sum: u64 = block
            .iter()
            .enumerate()
            .map(|(index, byte)| {
                if (148..156).contains(&index) {
                    u64::from(b' ')
                } else {
                    u64::from(*byte)
                }
            })
            .sum();
        if sum != stored {
            return Err(format!(
                "a header's checksum is {sum}, it says {stored}: not a tar archive, or damaged"
            ));
        }
        let size = octal(&block[124..136]).ok_or("a member's size is not a number")?;
        let kind = block[156];
        let padding = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
        if kind == b'L' {
            self.state = State::LongName {
                left: size,
                padding,
                name: Vec::new(),
            };
            return Ok(());
        }
        let path = match self.long_name.take() {
            Some(name) => name,
            None => {
                let name = text(&block[..100]);
                let prefix = if &block[257..262] == b"ustar" {
                    text(&block[345..500])
                } else {
                    String::new()
                };
                if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                }
            }
        };
        self.members += 1;
        self.visitor.begin(&path, kind, size);
        self.state = State::Data {
            left: size,
            padding,
        };
        if size == 0 {
            self.visitor.end();
        }
        Ok(())
    }

    /// Takes what it can of `buffer`; the count taken.
    fn step(&mut self, buffer: &[u8]) -> Result<usize, String> {
        match &mut self.state {
            State::Ended => {
                // Writers pad archives to a record size with zeros.
                if buffer.iter().all(|byte| *byte == 0) {
                    Ok(buffer.len())
                } else {
                    Err("data follows the end of the archive".to_owned())
                }
            }
            State::Header => {
                let take = (BLOCK - self.header.len()).min(buffer.len());
                self.header.extend_from_slice(&buffer[..take]);
                if self.header.len() == BLOCK {
                    self.header()?;
                }
                Ok(take)
            }
            State::Data { left, padding } if *left > 0 => {
                let take = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(buffer.len());
                *left -= take as u64;
                let done = *left == 0;
                self.visitor.data(&buffer[..take]);
                if done {
                    self.visitor.end();
                    if *padding == 0 {
                        self.state = State::Header;
                    }
                }
                Ok(take)
            }
            State::Data { padding, .. } => {
                let take = (*padding).min(buffer.len());
                *padding -= take;
                if *padding == 0 {
                    self.state = State::Header;
                }
                Ok(take)
            }
            State::LongName {
                left,
                padding,
                name,
            } => {
                if *left > 0 {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(buffer.len());
                    if name.len() + take > 64 * 1024 {
                        return Err("a long name is longer than 64 KiB".to_owned());
                    }
                    name.extend_from_slice(&buffer[..take]);
                    *left -= take as u64;
                    if *left == 0 && *padding == 0 {
                        self.finish_long_name();
                    }
                    return Ok(take);
                }
                let take = (*padding).min(buffer.len());
                *padding -= take;
                if *padding == 0 {
                    self.finish_long_name();
                }
                Ok(take)
            }
        }
    }

    fn finish_long_name(&mut self) {
        if let State::LongName { name, .. } = std::mem::replace(&mut self.state, State::Header) {
            self.long_name = Some(text(&name));
        }
    }
}

impl<V: Visitor> Write for Scanner<V> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        if self.broken.is_some() {
            return Ok(buffer.len());
        }
        let mut offset = 0;
        while offset < buffer.len() {
            match self.step(&buffer[offset..]) {
                Ok(taken) => offset += taken,
                Err(reason) => {
                    // Remembered for `finish`; the stream itself keeps flowing.
                    self.broken = Some(reason);
                    break;
                }
            }
        }
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A NUL-terminated header field as text.
fn text(field: &[u8]) -> String {
    let end = field
        .iter()
        .position(|byte| *byte == 0)
        .unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// An octal header field (space or NUL terminated), or a base-256 one.
fn octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|byte| byte & 0x80 != 0) {
        return field[1..]
            .iter()
            .try_fold(u64::from(field[0] & 0x7f), |value, byte| {
                value.checked_mul(256)?.checked_add(u64::from(*byte))
            });
    }
    let digits: &[u8] = {
        let text = field
            .iter()
            .position(|byte| *byte == 0)
            .map_or(field, |end| &field[..end]);
        let start = text
            .iter()
            .position(|byte| *byte != b' ')
            .unwrap_or(text.len());
        let end = text
            .iter()
            .rposition(|byte| *byte != b' ')
            .map_or(start, |end| end + 1);
        &text[start..end]
    };
    if digits.is_empty() {
        return Some(0);
    }
    digits.iter().try_fold(0_u64, |value, byte| {
        if (b'0'..=b'7').contains(byte) {
            value.checked_mul(8)?.checked_add(u64::from(byte - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Seen {
        members: Vec<(String, u8, u64, Vec<u8>)>,
    }

    impl Visitor for Seen {
        fn begin(&mut self, path: &str, kind: u8, size: u64) {
            self.members.push((path.to_owned(), kind, size, Vec::new()));
        }
        fn data(&mut self, chunk: &[u8]) {
            self.members.last_mut().unwrap().3.extend_from_slice(chunk);
        }
        fn end(&mut self) {}
    }

    fn header(name: &str, kind: u8, size: u64) -> Vec<u8> {
        let mut block = vec![0_u8; BLOCK];
        block[..name.len()].copy_from_slice(name.as_bytes());
        block[100..107].copy_from_slice(b"0000600");
        block[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        block[156] = kind;
        block[257..263].copy_from_slice(b"ustar\0");
        block[148..156].copy_from_slice(b"        ");
        let sum: u32 = block.iter().map(|byte| u32::from(*byte)).sum();
        block[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        block
    }

    /// A ustar archive of `members` (name, data), as pg_basebackup writes one.
    pub(in crate::database::postgres) fn archive(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (name, data) in members {
            bytes.extend(header(name, b'0', data.len() as u64));
            bytes.extend_from_slice(data);
            bytes.resize(bytes.len().div_ceil(BLOCK) * BLOCK, 0);
        }
        bytes.extend(vec![0_u8; 2 * BLOCK]);
        bytes
    }

    #[test]
    fn members_are_seen_whatever_the_write_sizes() {
        let bytes = archive(&[("PG_VERSION", b"15\n"), ("backup_manifest", &[7_u8; 1500])]);
        for chunk in [1, 7, 512, 513, 100_000] {
            let mut scanner = Scanner::new(Seen::default());
            for piece in bytes.chunks(chunk) {
                scanner.write_all(piece).unwrap();
            }
            let seen = scanner.finish().unwrap();
            assert_eq!(seen.members.len(), 2, "chunk {chunk}");
            assert_eq!(seen.members[0].0, "PG_VERSION");
            assert_eq!(seen.members[0].3, b"15\n");
            assert_eq!(seen.members[1].2, 1500);
            assert_eq!(seen.members[1].3, vec![7_u8; 1500]);
        }
    }

    #[test]
    fn a_cut_or_damaged_archive_is_refused() {
        let bytes = archive(&[("PG_VERSION", b"15\n")]);
        let mut cut = Scanner::new(Seen::default());
        cut.write_all(&bytes[..BLOCK + 10]).unwrap();
        assert!(cut.finish().unwrap_err().contains("ends in the middle"));
        let mut damaged = bytes.clone();
        damaged[3] ^= 1;
        let mut scanner = Scanner::new(Seen::default());
        scanner.write_all(&damaged).unwrap();
        assert!(scanner.finish().unwrap_err().contains("checksum"));
    }
}
