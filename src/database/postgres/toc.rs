//! The table of contents of a PostgreSQL custom-format dump, as
//! `pg_restore --list --verbose` prints it: one entry per object, with the
//! entries it depends on.
//!
//! The dump tells which tables it holds whole and which only by their
//! definition (`exclude-table-data`, `--schema-only`, unlogged tables with
//! `--no-unlogged-table-data`). A restore with `pg_restore --clean` drops
//! and recreates every table whose definition the dump holds, so a table
//! without its rows would come back empty; [`Toc::keep`] works out which
//! entries to leave out (`pg_restore --use-list`) so that such tables stay
//! as they are, with their rows and everything attached to them. Pure: it
//! reads listings and writes list files as text, and runs nothing.

use std::collections::{BTreeMap, BTreeSet};

/// Object kinds of more than one word, as `pg_restore --list` names them
/// (longest first, so that `TABLE DATA` is not taken for `TABLE`).
const MULTI_WORD_KINDS: [&str; 33] = [
    "PUBLICATION TABLES IN SCHEMA",
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
    "MATERIALIZED VIEW DATA",
    "TEXT SEARCH TEMPLATE",
    "FOREIGN DATA WRAPPER",
    "TEXT SEARCH PARSER",
    "PROCEDURAL LANGUAGE",
    "DATABASE PROPERTIES",
    "SUBSCRIPTION TABLE",
    "MATERIALIZED VIEW",
    "SEQUENCE OWNED BY",
    "PUBLICATION TABLE",
    "OPERATOR FAMILY",
    "STATISTICS DATA",
    "CHECK CONSTRAINT",
    "OPERATOR CLASS",
    "SECURITY LABEL",
    "BLOB METADATA",
    "FOREIGN TABLE",
    "EVENT TRIGGER",
    "ACCESS METHOD",
    "FK CONSTRAINT",
    "LARGE OBJECTS",
    "LARGE OBJECT",
    "INDEX ATTACH",
    "TABLE ATTACH",
    "SEQUENCE SET",
    "ROW SECURITY",
    "USER MAPPING",
    "DEFAULT ACL",
    "TABLE DATA",
    "SHELL TYPE",
];

/// Kinds that are relations: what the objects attached to a table hang on.
const RELATIONS: [&str; 9] = [
    "TABLE",
    "SEQUENCE",
    "INDEX",
    "CONSTRAINT",
    "CHECK CONSTRAINT",
    "FK CONSTRAINT",
    "VIEW",
    "MATERIALIZED VIEW",
    "FOREIGN TABLE",
];

/// Kinds that belong to the relations they depend on, and stay with them
/// when those are kept: a kept table keeps its data, indexes, constraints,
/// defaults, triggers, owned sequences, partitions, comments and grants.
/// Foreign keys are not among them: they are dropped and added again, which
/// checks them against the rows on both sides.
const ATTACHED: [&str; 20] = [
    "TABLE",
    "TABLE DATA",
    "TABLE ATTACH",
    "SEQUENCE",
    "SEQUENCE OWNED BY",
    "SEQUENCE SET",
    "DEFAULT",
    "CONSTRAINT",
    "CHECK CONSTRAINT",
    "INDEX",
    "INDEX ATTACH",
    "TRIGGER",
    "RULE",
    "POLICY",
    "ROW SECURITY",
    "STATISTICS",
    "STATISTICS DATA",
    "COMMENT",
    "SECURITY LABEL",
    "ACL",
];

/// One entry of the table of contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The dump id, which dependencies refer to.
    pub id: u32,
    /// The object kind: `TABLE`, `TABLE DATA`, `INDEX`, …
    pub kind: String,
    /// The schema, `-` for objects outside schemas.
    pub schema: String,
    /// The object's name (for comments and grants, `<KIND> <name>`).
    pub name: String,
    pub depends_on: Vec<u32>,
    /// The listing's line, as `--use-list` reads it back.
    line: String,
}

impl Entry {
    /// `schema.name`, as the sidecar's row counts name tables.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    fn is(&self, kinds: &[&str]) -> bool {
        kinds.contains(&self.kind.as_str())
    }
}

/// A dump's table of contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Toc {
    pub entries: Vec<Entry>,
    /// The listing's header and comment lines, in place (`None` for entries).
    lines: Vec<Option<String>>,
}

/// What a restore into an existing database keeps, and the list that makes
/// `pg_restore` keep it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keep {
    /// Tables whose rows the dump does not hold: kept as they are.
    pub tables: Vec<String>,
    /// Tables kept with them (partitions of a kept table, or tables a kept
    /// object needs), although the dump holds their rows.
    pub also: Vec<String>,
    /// Schemas kept because the target has tables in them the dump does not hold.
    pub schemas: Vec<String>,
    /// The `pg_restore --use-list` file: the listing with the kept entries
    /// commented out.
    pub list: String,
}

impl Toc {
    /// Reads a `pg_restore --list` listing (with `--verbose`, dependencies too).
    pub fn parse(listing: &str) -> Toc {
        let mut toc = Toc::default();
        for line in listing.lines() {
            if let Some(ids) = line
                .trim_start_matches(';')
                .trim()
                .strip_prefix("depends on:")
            {
                if let Some(entry) = toc.entries.last_mut() {
                    entry.depends_on.extend(
                        ids.split_whitespace()
                            .filter_map(|id| id.parse::<u32>().ok()),
                    );
                }
                toc.lines.push(Some(line.to_owned()));
                continue;
            }
            match parse_entry(line) {
                Some(entry) => {
                    toc.entries.push(entry);
                    toc.lines.push(None);
                }
                None => toc.lines.push(Some(line.to_owned())),
            }
        }
        toc
    }

    /// Every table the dump defines, `schema.table`.
    pub fn tables(&self) -> BTreeSet<String> {
        self.of_kind("TABLE")
    }

    /// The tables whose rows the dump holds, `(schema, table)`, in dump order.
    pub fn tables_with_data(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .filter(|entry| entry.kind == "TABLE DATA")
            .map(|entry| (entry.schema.clone(), entry.name.clone()))
            .collect()
    }

    /// The tables the dump defines without their rows, `schema.table`.
    /// (Partitioned tables hold no rows of their own; the caller knows which they are.)
    pub fn tables_without_data(&self) -> BTreeSet<String> {
        let with_data = self.of_kind("TABLE DATA");
        self.tables().difference(&with_data).cloned().collect()
    }

    /// Whether the dump holds an entry of `kind` named `schema.name`.
    pub fn has(&self, kind: &str, qualified: &str) -> bool {
        self.entries
            .iter()
            .any(|entry| entry.kind == kind && entry.qualified() == qualified)
    }

    fn of_kind(&self, kind: &str) -> BTreeSet<String> {
        self.entries
            .iter()
            .filter(|entry| entry.kind == kind)
            .map(Entry::qualified)
            .collect()
    }

    /// What to leave out of a restore so that `tables` (`schema.table`, whose
    /// rows the dump does not hold and which the target has) and `schemas`
    /// (which hold tables of the target's that the dump does not) stay as
    /// they are. `None` when nothing needs keeping.
    ///
    /// Kept: those tables' entries; whatever is attached to a kept relation
    /// (see [`ATTACHED`]) when every relation it hangs on is kept; and,
    /// since a kept object cannot outlive what it needs, every entry a kept
    /// one depends on (its schema, its types, a trigger's function, a
    /// partition's parent, and then the parent's other partitions).
    pub fn keep(&self, tables: &BTreeSet<String>, schemas: &BTreeSet<String>) -> Option<Keep> {
        let by_id: BTreeMap<u32, &Entry> =
            self.entries.iter().map(|entry| (entry.id, entry)).collect();
        let mut kept: BTreeSet<u32> = self
            .entries
            .iter()
            .filter(|entry| {
                (entry.kind == "TABLE" && tables.contains(&entry.qualified()))
                    || (entry.kind == "SCHEMA" && schemas.contains(&entry.name))
            })
            .map(|entry| entry.id)
            .collect();
        if kept.is_empty() {
            return None;
        }
        loop {
            let before = kept.len();
            // What a kept entry needs.
            let needed: Vec<u32> = kept
                .iter()
                .filter_map(|id| by_id.get(id))
                .flat_map(|entry| entry.depends_on.iter().copied())
                .filter(|id| by_id.contains_key(id))
                .collect();
            kept.extend(needed);
            // What hangs on kept relations only.
            for entry in &self.entries {
                if kept.contains(&entry.id) || !entry.is(&ATTACHED) {
                    continue;
                }
                let relations: Vec<u32> = entry
                    .depends_on
                    .iter()
                    .copied()
                    .filter(|id| by_id.get(id).is_some_and(|other| other.is(&RELATIONS)))
                    .collect();
                if !relations.is_empty() && relations.iter().all(|id| kept.contains(id)) {
                    kept.insert(entry.id);
                }
            }
            if kept.len() == before {
                break;
            }
        }
        let mut keep = Keep::default();
        for entry in self.entries.iter().filter(|entry| kept.contains(&entry.id)) {
            match entry.kind.as_str() {
                "TABLE" if tables.contains(&entry.qualified()) => {
                    keep.tables.push(entry.qualified())
                }
                "TABLE" => keep.also.push(entry.qualified()),
                "SCHEMA" => keep.schemas.push(entry.name.clone()),
                _ => {}
            }
        }
        keep.tables.sort();
        keep.also.sort();
        keep.schemas.sort();
        let mut entries = self.entries.iter();
        for line in &self.lines {
            match line {
                Some(line) => keep.list.push_str(line),
                None => {
                    let Some(entry) = entries.next() else {
                        continue;
                    };
                    if kept.contains(&entry.id) {
                        keep.list.push(';');
                    }
                    keep.list.push_str(&entry.line);
                }
            }
            keep.list.push('\n');
        }
        Some(keep)
    }
}

/// `<id>; <catalog oid> <oid> <KIND> <schema> <name…> <owner>`.
fn parse_entry(line: &str) -> Option<Entry> {
    if line.starts_with(';') {
        return None;
    }
    let (id, rest) = line.split_once("; ")?;
    let id = id.trim().parse::<u32>().ok()?;
    let mut words = rest.splitn(3, ' ');
    let (_catalog, _oid, rest) = (words.next()?, words.next()?, words.next()?);
    let kind = MULTI_WORD_KINDS
        .iter()
        .find(|kind| {
            rest.strip_prefix(**kind)
                .is_some_and(|after| after.starts_with(' '))
        })
        .map(|kind| (*kind).to_owned())
        .or_else(|| rest.split(' ').next().map(str::to_owned))?;
    let rest = rest.get(kind.len() + 1..)?;
    // The owner is the last word (empty for some entries), the name what lies between.
    let (schema, rest) = rest.split_once(' ')?;
    let name = rest.rsplit_once(' ').map_or(rest, |(name, _owner)| name);
    Some(Entry {
        id,
        kind,
        schema: schema.to_owned(),
        name: name.to_owned(),
        depends_on: Vec::new(),
        line: line.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pg_restore --list --verbose` of a dump with `--exclude-table-data=s.b`
    /// (PostgreSQL 15): `s.b` has a serial and an identity column, a type, a
    /// trigger, an index, a foreign key to `a`, and `c` has one to it.
    const LISTING: &str = ";
; Archive created at 2026-12-01 11:10:48 UTC
;     dbname: app
;
; Selected TOC Entries:
;
3378; 0 0 ENCODING - ENCODING 
3381; 1262 16384 DATABASE - app postgres
6; 2615 16394 SCHEMA - s postgres
848; 1247 16396 TYPE public mood postgres
222; 1255 16429 FUNCTION public trg() postgres
216; 1259 16386 TABLE public a postgres
215; 1259 16385 SEQUENCE public a_id_seq postgres
;\tdepends on: 216
3382; 0 0 SEQUENCE OWNED BY public a_id_seq postgres
;\tdepends on: 215
220; 1259 16415 TABLE public c postgres
219; 1259 16403 TABLE s b postgres
;\tdepends on: 6 848
3383; 0 0 COMMENT s TABLE b postgres
;\tdepends on: 219
221; 1259 16425 VIEW public v postgres
;\tdepends on: 219 219 848
217; 1259 16401 SEQUENCE s b_id_seq postgres
;\tdepends on: 219 6
3384; 0 0 SEQUENCE OWNED BY s b_id_seq postgres
;\tdepends on: 217
218; 1259 16402 SEQUENCE s b_x_seq postgres
;\tdepends on: 6 219
3216; 2604 16389 DEFAULT public a id postgres
;\tdepends on: 215 216 216
3217; 2604 16406 DEFAULT s b id postgres
;\tdepends on: 217 219 219
3372; 0 16386 TABLE DATA public a postgres
;\tdepends on: 216
3375; 0 16415 TABLE DATA public c postgres
;\tdepends on: 220
3385; 0 0 SEQUENCE SET public a_id_seq postgres
;\tdepends on: 215
3386; 0 0 SEQUENCE SET s b_id_seq postgres
;\tdepends on: 217
3387; 0 0 SEQUENCE SET s b_x_seq postgres
;\tdepends on: 218
3219; 2606 16393 CONSTRAINT public a a_pkey postgres
;\tdepends on: 216
3222; 2606 16408 CONSTRAINT s b b_pkey postgres
;\tdepends on: 219
3220; 1259 16414 INDEX s b_a postgres
;\tdepends on: 219
3227; 2620 16430 TRIGGER s b t postgres
;\tdepends on: 222 219
3226; 2606 16420 FK CONSTRAINT public c c_b_fkey postgres
;\tdepends on: 220 219 3222
3225; 2606 16409 FK CONSTRAINT s b b_a_fkey postgres
;\tdepends on: 216 3219 219
";

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn reads_kinds_names_and_dependencies() {
        let toc = Toc::parse(LISTING);
        assert_eq!(toc.entries.len(), 28);
        let fk = toc.entries.iter().find(|entry| entry.id == 3226).unwrap();
        assert_eq!(
            (fk.kind.as_str(), fk.schema.as_str(), fk.name.as_str()),
            ("FK CONSTRAINT", "public", "c c_b_fkey")
        );
        assert_eq!(fk.depends_on, [220, 219, 3222]);
        let encoding = &toc.entries[0];
        assert_eq!(
            (encoding.kind.as_str(), encoding.name.as_str()),
            ("ENCODING", "ENCODING")
        );
        assert_eq!(toc.tables(), set(&["public.a", "public.c", "s.b"]));
        assert_eq!(toc.tables_without_data(), set(&["s.b"]));
        assert_eq!(
            toc.tables_with_data(),
            [
                ("public".to_owned(), "a".to_owned()),
                ("public".to_owned(), "c".to_owned())
            ]
        );
        // Without --verbose, and names with spaces.
        let plain = Toc::parse(
            "3346; 0 16390 TABLE DATA billing order lines app\n3347; 0 0 SEQUENCE SET public orders_id_seq app\n",
        );
        assert_eq!(
            plain.tables_with_data(),
            [("billing".to_owned(), "order lines".to_owned())]
        );
    }

    #[test]
    fn a_table_without_its_rows_is_kept_with_what_hangs_on_it() {
        let toc = Toc::parse(LISTING);
        let keep = toc.keep(&set(&["s.b"]), &BTreeSet::new()).unwrap();
        assert_eq!(keep.tables, ["s.b"]);
        assert!(keep.also.is_empty());
        assert_eq!(keep.schemas, ["s"]);
        let left_out: BTreeSet<u32> = keep
            .list
            .lines()
            .filter_map(|line| line.strip_prefix(';'))
            .filter_map(|line| line.split_once("; "))
            .filter_map(|(id, _)| id.parse().ok())
            .collect();
        // The table, its comment, sequences, default, constraint, index and
        // trigger; what they need: the schema, the type, the function.
        assert_eq!(
            left_out,
            [
                6, 219, 222, 217, 218, 848, 3217, 3220, 3222, 3227, 3383, 3384, 3386, 3387
            ]
            .into_iter()
            .collect()
        );
        // Foreign keys on either side, the view and the other tables are restored.
        for id in ["3225;", "3226;", "221;", "216;", "3372;"] {
            assert!(
                keep.list.lines().any(|line| line.starts_with(id)),
                "{id}\n{}",
                keep.list
            );
        }
        // The listing otherwise comes back as it was.
        assert_eq!(
            keep.list.lines().count(),
            LISTING.lines().count(),
            "{}",
            keep.list
        );
        assert!(toc.keep(&BTreeSet::new(), &BTreeSet::new()).is_none());
        assert!(
            toc.keep(&set(&["public.nothing"]), &BTreeSet::new())
                .is_none()
        );
    }

    #[test]
    fn a_kept_partition_keeps_its_whole_tree() {
        let toc = Toc::parse(
            "214; 1259 16466 TABLE public p postgres
215; 1259 16469 TABLE public q1 postgres
;\tdepends on: 214
218; 1259 16481 MATERIALIZED VIEW public mv postgres
;\tdepends on: 215 215
216; 1259 16472 TABLE public q2 postgres
;\tdepends on: 214
3212; 0 0 TABLE ATTACH public q1 postgres
;\tdepends on: 215 214
3213; 0 0 TABLE ATTACH public q2 postgres
;\tdepends on: 216 214
3362; 0 16469 TABLE DATA public q1 postgres
;\tdepends on: 215
3214; 1259 16475 INDEX public p_id postgres
;\tdepends on: 214
3216; 1259 16477 INDEX public q2_id_idx postgres
;\tdepends on: 216 216 3214
3364; 0 16481 MATERIALIZED VIEW DATA public mv postgres
;\tdepends on: 218
",
        );
        let keep = toc.keep(&set(&["public.q2"]), &BTreeSet::new()).unwrap();
        assert_eq!(keep.tables, ["public.q2"]);
        assert_eq!(keep.also, ["public.p", "public.q1"]);
        // The materialized view over a kept table is rebuilt.
        assert!(keep.list.contains("\n218; "), "{}", keep.list);
        assert!(keep.list.contains("\n;3362; "), "{}", keep.list);
    }
}
