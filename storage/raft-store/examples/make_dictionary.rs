//! Builds the compression dictionary of packed records (`src/pack/dictionary.rs`) from the
//! records of a data dir, and prints it as Rust source. The dictionary in the source is frozen:
//! records packed with it must stay readable, so this is run once per new dictionary version,
//! never to update one in place.
//!
//! ```text
//! cargo run -p holdfast-raft-store --example make_dictionary -- <data dir> [budget bytes] > dictionary.rs
//! ```
//!
//! It keeps one record of each shape (the record's structure with its values left out): the
//! shortest of the invocation records, journal items, outbox messages and promises of every
//! partition, and of the single-command raft log entries; the most common shapes come last,
//! where zstd reaches them with the shortest offsets. Run the node stopped. With `RAW_OUT=<file>`
//! set, the dictionary's bytes are also written to that file.
//!
//! Dictionary 1 was made (with a budget of 16 KiB) from a single node with 8 partitions serving
//! `sdk-ts/test/fixtures/anchor-services.mjs`: six requests to every handler (greet, counter
//! add/get with and without idempotency keys, run steps, a call, a sleep, a failure, sends with
//! and without delay, a workflow and its promise, awakeables), then 3 s each of
//! `holdfast bench http` on `Greeter/greet` and `Counter/k{key}/add`.

use holdfast_fsm::state::{Invocation, JournalItem, Promise};
use holdfast_raft_store::records::EntryRecord;
use holdfast_raft_store::{Batch, TypeConfig};
use holdfast_types::{OutboxMessage, codec};
use openraft::{Entry, EntryPayload};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;

type Bytes = TableDefinition<'static, &'static [u8], &'static [u8]>;
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const LOG: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("log");

/// A record's structure: the identifiers of its debug form, quoted strings and numbers left out.
fn shape(value: &impl Debug) -> String {
    let text = format!("{value:?}");
    let mut out = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            c if c.is_ascii_alphabetic() || c == '_' => out.push(c),
            _ if !out.ends_with(' ') => out.push(' '),
            _ => {}
        }
    }
    out
}

/// Per shape: how often it occurs and its shortest encoding.
#[derive(Default)]
struct Shapes(BTreeMap<String, (u64, Vec<u8>)>);

impl Shapes {
    fn add(&mut self, shape: String, bytes: &[u8]) {
        let slot = self.0.entry(shape).or_insert((0, bytes.to_vec()));
        slot.0 += 1;
        if bytes.len() < slot.1.len() {
            slot.1 = bytes.to_vec();
        }
    }
}

fn scan_table<T: serde::de::DeserializeOwned + Debug>(
    db: &Database,
    name: &'static str,
    shapes: &mut Shapes,
) -> Result<()> {
    let txn = db.begin_read()?;
    let definition: Bytes = TableDefinition::new(name);
    let Ok(table) = txn.open_table(definition) else {
        return Ok(());
    };
    for item in table.iter()? {
        let (_, value) = item?;
        let bytes = value.value();
        if bytes.first() != Some(&codec::FORMAT_V1) {
            continue;
        }
        let record: T = codec::decode(bytes)?;
        shapes.add(format!("{name}: {}", shape(&record)), bytes);
    }
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: make_dictionary <data dir> [budget]")?;
    let budget: usize = args
        .next()
        .map(|b| b.parse())
        .transpose()?
        .unwrap_or(8 << 10);
    let dir = Path::new(&dir);
    let mut shapes = Shapes::default();
    let mut partitions: Vec<_> = std::fs::read_dir(dir.join("partitions"))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("state.redb")))
        .filter(|path| path.exists())
        .collect();
    partitions.sort();
    for path in partitions {
        let db = Database::open(&path)?;
        scan_table::<Invocation>(&db, "invocations", &mut shapes)?;
        scan_table::<JournalItem>(&db, "journal", &mut shapes)?;
        scan_table::<OutboxMessage>(&db, "outbox", &mut shapes)?;
        scan_table::<Promise>(&db, "promises", &mut shapes)?;
    }
    let db = Database::open(dir.join("raft-log.redb"))?;
    let txn = db.begin_read()?;
    for item in txn.open_table(LOG)?.iter()? {
        let (key, value) = item?;
        if key.value().0 == u32::MAX {
            continue; // the metadata log: rare and of another type
        }
        let entry: Entry<TypeConfig> = codec::decode::<EntryRecord<Batch>>(value.value())?.into();
        if let EntryPayload::Normal(Batch { commands, .. }) = &entry.payload
            && commands.len() == 1
        {
            shapes.add(format!("log: {}", shape(&commands[0])), value.value());
        }
    }
    // Least common first; within the budget, the most common win.
    let mut ranked: Vec<(String, u64, Vec<u8>)> = shapes
        .0
        .into_iter()
        .map(|(shape, (count, bytes))| (shape, count, bytes))
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.len().cmp(&b.2.len())));
    let mut kept = Vec::new();
    let mut total = 0;
    for (shape, count, bytes) in ranked {
        if total + bytes.len() > budget {
            eprintln!("left out ({count}x, {} B): {shape}", bytes.len());
            continue;
        }
        total += bytes.len();
        eprintln!("kept ({count}x, {} B): {shape}", bytes.len());
        kept.push(bytes);
    }
    kept.reverse();
    let dictionary: Vec<u8> = kept.concat();
    if let Ok(raw) = std::env::var("RAW_OUT") {
        std::fs::write(raw, &dictionary)?;
    }
    println!("// {} bytes", dictionary.len());
    let mut line = String::from("b\"");
    for byte in dictionary {
        let piece = match byte {
            b'"' => "\\\"".to_owned(),
            b'\\' => "\\\\".to_owned(),
            // A space could open a continued line, where Rust skips it: escaped, like controls.
            0x21..=0x7e => (byte as char).to_string(),
            _ => format!("\\x{byte:02x}"),
        };
        if line.len() + piece.len() > 92 {
            println!("{line}\\");
            line = String::new();
        }
        line.push_str(&piece);
    }
    println!("{line}\"");
    Ok(())
}
