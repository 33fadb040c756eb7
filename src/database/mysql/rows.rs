//! Counting what a `mariadb-dump` stream holds, as it streams past: every
//! table it creates (`CREATE TABLE` at the start of a line), the tuples of
//! its `INSERT INTO `t` VALUES (…),(…);` statements (a `(` at depth 0,
//! outside quoted strings with backslash escapes), its header's server
//! version and whether it ends with the `-- Dump completed` trailer. The
//! counts are exactly what the dump holds, so they come from the snapshot
//! that was dumped. Bodies of triggers, routines and events (between
//! `DELIMITER ;;` and `DELIMITER ;`) are not read for statements.

use std::collections::BTreeMap;

/// How many bytes of a line's start are kept to recognise a statement.
const HEAD: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line, reading its head.
    Line,
    /// Inside a line that starts nothing counted, up to its end.
    Skip,
    /// In an insert statement's header, after its table name, up to `VALUES`.
    Header { backquoted: bool },
    /// In an insert statement's values.
    Values {
        depth: u32,
        quote: Option<u8>,
        escaped: bool,
    },
}

/// The streaming counter. Feed it every byte of the dump, in order.
#[derive(Debug)]
pub struct Counter {
    state: State,
    /// The head of the current line, while in [`State::Line`].
    line: Vec<u8>,
    /// The last bytes of an insert header outside backquotes.
    window: Vec<u8>,
    /// The table of the statement being read.
    table: Option<String>,
    /// Inside `DELIMITER ;;` … `DELIMITER ;`.
    in_delimiter: bool,
    /// Rows per table.
    pub rows: BTreeMap<String, u64>,
    /// `-- Server version\t…` from the header.
    pub server_version: Option<String>,
    /// The first line (`-- MariaDB dump …`, `-- MySQL dump …`) was seen,
    /// possibly after MariaDB's sandbox-mode line.
    pub header: bool,
    /// The last non-empty line read so far.
    last_line: Vec<u8>,
    lines: u64,
}

impl Default for Counter {
    fn default() -> Self {
        Counter {
            state: State::Line,
            line: Vec::new(),
            window: Vec::new(),
            table: None,
            in_delimiter: false,
            rows: BTreeMap::new(),
            server_version: None,
            header: false,
            last_line: Vec::new(),
            lines: 0,
        }
    }
}

impl Counter {
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut index = 0;
        while index < bytes.len() {
            // Runs that change nothing are skipped whole: the rest of a
            // line not counted, and quoted text up to its quote or a backslash.
            let rest = &bytes[index..];
            let next = match self.state {
                State::Skip => rest.iter().position(|&byte| byte == b'\n'),
                State::Values {
                    quote: Some(open),
                    escaped: false,
                    ..
                } => rest.iter().position(|&byte| byte == open || byte == b'\\'),
                _ => Some(0),
            };
            let Some(next) = next else {
                return;
            };
            index += next;
            self.byte(bytes[index]);
            index += 1;
        }
    }

    /// Whether the dump ended with `mariadb-dump`'s trailer (`-- Dump completed`).
    pub fn completed(&self) -> bool {
        let last = if self.state == State::Line && !self.line.is_empty() {
            &self.line
        } else {
            &self.last_line
        };
        last.starts_with(b"-- Dump completed")
    }

    fn byte(&mut self, byte: u8) {
        match self.state {
            State::Line => {
                if byte == b'\n' {
                    let line = std::mem::take(&mut self.line);
                    self.end_line(&line);
                    return;
                }
                // A name's closing backquote is known at the byte after it
                // (a doubled backquote stands for one inside the name).
                if !self.in_delimiter
                    && byte != b'`'
                    && self.line.last() == Some(&b'`')
                    && let Some(table) = self.insert_table()
                {
                    self.rows.entry(table.clone()).or_insert(0);
                    self.table = Some(table);
                    self.window.clear();
                    self.line.clear();
                    self.state = State::Header { backquoted: false };
                    self.byte(byte);
                    return;
                }
                if self.line.len() < HEAD {
                    self.line.push(byte);
                }
            }
            State::Skip => {
                if byte == b'\n' {
                    self.state = State::Line;
                }
            }
            State::Header { backquoted } => {
                if byte == b'`' {
                    self.state = State::Header {
                        backquoted: !backquoted,
                    };
                    self.window.clear();
                } else if !backquoted {
                    self.window.push(byte);
                    if self.window.len() > 7 {
                        self.window.remove(0);
                    }
                    // `VALUES` and a space or a line break (MariaDB 10.11
                    // puts each tuple on a line of its own), or the first tuple.
                    if self.window.len() == 7
                        && self.window.starts_with(b"VALUES")
                        && (byte.is_ascii_whitespace() || byte == b'(')
                    {
                        self.state = State::Values {
                            depth: 0,
                            quote: None,
                            escaped: false,
                        };
                        if byte == b'(' {
                            self.byte(byte);
                        }
                    } else if byte == b'\n' || byte == b';' {
                        // Not an insert with values after all (INSERT … SELECT).
                        self.state = if byte == b'\n' {
                            State::Line
                        } else {
                            State::Skip
                        };
                    }
                }
            }
            State::Values {
                depth,
                quote,
                escaped,
            } => {
                self.state = match (quote, byte) {
                    (Some(_), _) if escaped => State::Values {
                        depth,
                        quote,
                        escaped: false,
                    },
                    (Some(_), b'\\') => State::Values {
                        depth,
                        quote,
                        escaped: true,
                    },
                    (Some(open), _) if byte == open => State::Values {
                        depth,
                        quote: None,
                        escaped: false,
                    },
                    (Some(_), _) => self.state,
                    (None, b'\'' | b'"' | b'`') => State::Values {
                        depth,
                        quote: Some(byte),
                        escaped: false,
                    },
                    (None, b'(') => {
                        if depth == 0
                            && let Some(table) = &self.table
                            && let Some(rows) = self.rows.get_mut(table)
                        {
                            *rows += 1;
                        }
                        State::Values {
                            depth: depth + 1,
                            quote: None,
                            escaped: false,
                        }
                    }
                    (None, b')') => State::Values {
                        depth: depth.saturating_sub(1),
                        quote: None,
                        escaped: false,
                    },
                    (None, b';') if depth == 0 => {
                        self.table = None;
                        State::Skip
                    }
                    _ => self.state,
                };
            }
        }
    }

    /// Whether the line so far is `INSERT INTO `name`` (or `INSERT IGNORE
    /// INTO`, `REPLACE INTO`), its last backquote closing the name; the name if so.
    fn insert_table(&self) -> Option<String> {
        let line = &self.line;
        let rest = [
            &b"INSERT INTO `"[..],
            b"INSERT IGNORE INTO `",
            b"REPLACE INTO `",
        ]
        .iter()
        .find_map(|prefix| line.strip_prefix(*prefix))?;
        // The closing backquote, after doubled ones: an odd run.
        let trailing = rest.iter().rev().take_while(|&&byte| byte == b'`').count();
        if trailing % 2 == 0 || rest.len() < 2 {
            return None;
        }
        let name = &rest[..rest.len() - 1];
        Some(String::from_utf8_lossy(name).replace("``", "`"))
    }

    fn end_line(&mut self, line: &[u8]) {
        self.lines += 1;
        if !line.iter().all(u8::is_ascii_whitespace) {
            self.last_line.clear();
            self.last_line.extend_from_slice(line);
        }
        if self.lines <= 2
            && (line.starts_with(b"-- MariaDB dump") || line.starts_with(b"-- MySQL dump"))
        {
            self.header = true;
        }
        if let Some(version) = line.strip_prefix(b"-- Server version")
            && self.server_version.is_none()
        {
            let version = String::from_utf8_lossy(version).trim().to_owned();
            self.server_version = Some(version);
        }
        if line.starts_with(b"DELIMITER ") {
            self.in_delimiter = line.trim_ascii_end() != b"DELIMITER ;";
            return;
        }
        if self.in_delimiter {
            return;
        }
        if let Some(rest) = line.strip_prefix(b"CREATE TABLE `")
            && let Some(name) = table_name(rest)
        {
            self.rows.entry(name).or_insert(0);
        }
    }
}

/// The backquoted name at the start of `rest` (after its opening backquote).
fn table_name(rest: &[u8]) -> Option<String> {
    let mut name = Vec::new();
    let mut index = 0;
    while index < rest.len() {
        match (rest[index], rest.get(index + 1)) {
            (b'`', Some(b'`')) => {
                name.push(b'`');
                index += 2;
            }
            (b'`', _) => return Some(String::from_utf8_lossy(&name).into_owned()),
            (byte, _) => {
                name.push(byte);
                index += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(dump: &str, chunk: usize) -> Counter {
        let mut counter = Counter::default();
        for piece in dump.as_bytes().chunks(chunk) {
            counter.feed(piece);
        }
        counter
    }

    const DUMP: &str = "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19-10.11.19-MariaDB, for debian-linux-gnu (x86_64)\n--\n-- Host: 127.0.0.1    Database: app\n-- ------------------------------------------------------\n-- Server version\t10.11.19-MariaDB-0+deb12u1\n\nDROP TABLE IF EXISTS `orders`;\nCREATE TABLE `orders` (\n  `id` int(11) NOT NULL\n) ENGINE=InnoDB;\nINSERT INTO `orders` VALUES (1,'a(b'),(2,'it\\'s ( \\\\'),(3,NULL),(4,0x28);\nINSERT INTO `orders` VALUES\n(5,'x;y),(z');\nCREATE TABLE `empty` (\n  `id` int\n);\nCREATE TABLE `we``ird` (`v` text);\nINSERT INTO `we``ird` VALUES ('('),('\"');\n/*!50001 CREATE VIEW `v` AS SELECT 1 AS `id` */;\nDELIMITER ;;\nCREATE TABLE `fake` (\nINSERT INTO `orders` VALUES (9);\n;;\nDELIMITER ;\nINSERT INTO `cols` (`a`, `VALUES (`) VALUES (1,2),(3,4);\n-- Dump completed on 2026-12-01 14:00:00\n";

    #[test]
    fn counts_tuples_outside_strings_in_any_chunking() {
        for chunk in [1, 2, 3, 7, 64, 100_000] {
            let counter = count(DUMP, chunk);
            let expected: BTreeMap<String, u64> =
                [("orders", 5), ("empty", 0), ("we`ird", 2), ("cols", 2)]
                    .into_iter()
                    .map(|(table, rows)| (table.to_owned(), rows))
                    .collect();
            assert_eq!(counter.rows, expected, "chunk {chunk}");
            assert!(counter.header);
            assert!(counter.completed());
            assert_eq!(
                counter.server_version.as_deref(),
                Some("10.11.19-MariaDB-0+deb12u1")
            );
        }
    }

    /// A string literal as mariadb-dump writes it.
    fn escaped(text: &str) -> String {
        let mut out = String::from("'");
        for character in text.chars() {
            match character {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\0' => out.push_str("\\0"),
                other => out.push(other),
            }
        }
        out.push('\'');
        out
    }

    proptest::proptest! {
        #[test]
        fn counts_any_rows_in_any_chunks(
            tables in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::collection::vec("[a-z();,'\"\\\\`\n()0-9 ]{0,12}", 1..4),
                    0..20,
                ),
                1..4,
            ),
            per_statement in 1usize..5,
            chunk in 1usize..64,
        ) {
            let mut dump = String::from("-- MariaDB dump 10.19\n");
            let mut expected = BTreeMap::new();
            for (index, rows) in tables.iter().enumerate() {
                let name = format!("t`{index}");
                dump.push_str(&format!("CREATE TABLE `{}` (\n  `v` text\n);\n", name.replace('`', "``")));
                expected.insert(name.clone(), rows.len() as u64);
                for statement in rows.chunks(per_statement) {
                    let tuples: Vec<String> = statement
                        .iter()
                        .map(|values| {
                            let values: Vec<String> = values.iter().map(|value| escaped(value)).collect();
                            format!("({})", values.join(","))
                        })
                        .collect();
                    dump.push_str(&format!(
                        "INSERT INTO `{}` VALUES\n{};\n",
                        name.replace('`', "``"),
                        tuples.join(",\n")
                    ));
                }
            }
            dump.push_str("-- Dump completed on 2026-12-01 14:00:00\n");
            let counter = count(&dump, chunk);
            proptest::prop_assert_eq!(&counter.rows, &expected);
            proptest::prop_assert!(counter.completed());
        }
    }

    #[test]
    fn a_cut_dump_is_not_completed() {
        let cut = &DUMP[..DUMP.len() - 45];
        assert!(!count(cut, 5).completed());
        assert!(!count("", 5).header);
    }
}
