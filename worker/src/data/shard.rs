//! Sharded datasets: Arrow IPC files of at most a configured size, and an `index.json` manifest
//! (format version, columns, text column, and per shard its name, rows, items, bytes and
//! sha256). A shard is verified against its manifest entry before it is decoded. One ARL `.arrow`
//! file is a dataset of one shard.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use arrow_array::RecordBatch;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use sha2::{Digest, Sha256};

use super::labels::TableKind;
use super::table;

/// Name of the manifest file.
pub const MANIFEST_FILE: &str = "index.json";
/// Version of the layout.
pub const FORMAT_VERSION: u32 = 1;
/// The fewest bytes a row or an item takes in an Arrow shard (its 4-byte offset).
pub const MIN_ENTRY_BYTES: u64 = 4;

/// One shard in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardEntry {
    /// File name, relative to the dataset root.
    pub name: String,
    /// Rows (images).
    pub rows: u64,
    /// Items (image-text pairs).
    pub items: u32,
    /// File size.
    pub bytes: u64,
    /// Hex sha256 of the file.
    pub sha256: String,
}

/// A dataset's manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Layout version.
    pub format_version: u32,
    /// `name: type` of every column.
    pub columns: Vec<String>,
    /// The list column whose elements are the items.
    pub text_column: String,
    /// Which table the shards hold.
    #[serde(default)]
    pub kind: TableKind,
    /// The CUI of each entity id in `txt_ents`/`img_ents`; empty when the ids are already those
    /// of a knowledge vocabulary (ARL's own files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<String>,
    /// The name of each label id: a VQA answer vocabulary, or class names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_names: Vec<String>,
    /// Shards in order.
    pub shards: Vec<ShardEntry>,
}

impl Manifest {
    /// sha256 of the manifest as JSON (it lists every shard's sha256): the data a run saw.
    ///
    /// # Errors
    /// The manifest cannot be serialised.
    pub fn hash(&self) -> anyhow::Result<String> {
        Ok(format!("{:x}", Sha256::digest(serde_json::to_vec(self)?)))
    }

    /// Items of every shard (what the sampler orders).
    pub fn items_per_shard(&self) -> Vec<u32> {
        self.shards.iter().map(|s| s.items).collect()
    }

    /// Parses `index.json`; `source` names it in errors. A shard's counts must be possible for
    /// its size (every row and item takes at least [`MIN_ENTRY_BYTES`] of the file), so that
    /// nothing sized from them can be larger than the data.
    ///
    /// # Errors
    /// Malformed JSON, another format version, a shard name that is no plain file name or
    /// appears twice, or counts its size cannot hold.
    pub fn parse(text: &[u8], source: &str) -> anyhow::Result<Self> {
        let manifest: Self =
            serde_json::from_slice(text).with_context(|| format!("parsing {source}"))?;
        ensure!(
            manifest.format_version == FORMAT_VERSION,
            "{source}: format_version {} (this build reads {FORMAT_VERSION})",
            manifest.format_version
        );
        let mut names = std::collections::HashSet::new();
        for shard in &manifest.shards {
            let name = &shard.name;
            ensure!(
                !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..",
                "{source}: shard name {name:?} is not a plain file name"
            );
            ensure!(names.insert(name), "{source}: shard {name} is listed twice");
            let most = shard.bytes / MIN_ENTRY_BYTES;
            ensure!(
                shard.rows <= most && u64::from(shard.items) <= most,
                "{source}: shard {name} claims {} rows and {} items in {} bytes",
                shard.rows,
                shard.items,
                shard.bytes
            );
        }
        Ok(manifest)
    }

    /// Checks every shard's size against `sizes` (the objects' real sizes, by name).
    ///
    /// # Errors
    /// A shard that is missing or of another size (named).
    pub fn check_sizes(
        &self,
        sizes: &std::collections::HashMap<String, u64>,
        source: &str,
    ) -> anyhow::Result<()> {
        for shard in &self.shards {
            let size = sizes
                .get(&shard.name)
                .with_context(|| format!("{source}: shard {} is not there", shard.name))?;
            ensure!(
                *size == shard.bytes,
                "{source}: shard {} has {size} bytes, the manifest says {}",
                shard.name,
                shard.bytes
            );
        }
        Ok(())
    }

    /// The manifest of a single ARL `.arrow` file; its table kind follows from its columns.
    ///
    /// # Errors
    /// The file is not an Arrow IPC file or lacks the text column (named).
    pub fn for_arrow_file(name: &str, bytes: &[u8]) -> anyhow::Result<Self> {
        let batches = decode(bytes).with_context(|| format!("reading {name}"))?;
        let schema = batches.first().map(|b| b.schema());
        let has = |column: &str| {
            schema
                .as_ref()
                .is_some_and(|s| s.column_with_name(column).is_some())
        };
        let kind = if has("answers") {
            TableKind::Vqa
        } else if has("chexpert") {
            TableKind::Chexpert
        } else if has("label") || has("p_meth_label") {
            TableKind::Class
        } else {
            TableKind::ImageText
        };
        let entry = entry_for(name, bytes, &batches, kind.text_column())
            .with_context(|| format!("reading {name}"))?;
        Ok(Self {
            format_version: FORMAT_VERSION,
            columns: columns(schema),
            text_column: kind.text_column().to_owned(),
            kind,
            entities: Vec::new(),
            label_names: Vec::new(),
            shards: vec![entry],
        })
    }
}

fn columns(schema: Option<arrow_schema::SchemaRef>) -> Vec<String> {
    schema
        .map(|s| {
            s.fields()
                .iter()
                .map(|f| format!("{}: {}", f.name(), f.data_type()))
                .collect()
        })
        .unwrap_or_default()
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn entry_for(
    name: &str,
    bytes: &[u8],
    batches: &[RecordBatch],
    text_column: &str,
) -> anyhow::Result<ShardEntry> {
    let mut items = 0u32;
    for batch in batches {
        items += table::text_counts(batch, text_column)?.iter().sum::<u32>();
    }
    Ok(ShardEntry {
        name: name.to_owned(),
        rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
        items,
        bytes: bytes.len() as u64,
        sha256: sha256_hex(bytes),
    })
}

/// Decodes an Arrow IPC file.
///
/// # Errors
/// Not an Arrow IPC file, or truncated.
pub fn decode(bytes: &[u8]) -> anyhow::Result<Vec<RecordBatch>> {
    check_lengths(bytes)?;
    // arrow-ipc 60 panics on some malformed files (RELIABILITY.md): their error, not the rank's.
    super::loader::contained(|| {
        let reader = FileReader::try_new(Cursor::new(bytes), None)?;
        Ok(reader.collect::<Result<_, _>>()?)
    })
}

/// Refuses an Arrow IPC file whose footer, or a block that the footer lists, claims more bytes
/// than the file has: arrow-ipc 60 allocates a claimed footer length before it reads it, so a
/// 5 KB file could ask for 2 GB (found by fuzzing, RELIABILITY.md).
fn check_lengths(bytes: &[u8]) -> anyhow::Result<()> {
    const MAGIC: &[u8] = b"ARROW1";
    // Magic and padding (8), then the footer, its length (4) and the magic again (6).
    let Some(footer_end) = bytes.len().checked_sub(10).filter(|end| *end >= 8) else {
        bail!("not an Arrow IPC file: {} bytes", bytes.len());
    };
    ensure!(
        bytes.starts_with(MAGIC) && bytes.ends_with(MAGIC),
        "not an Arrow IPC file (no ARROW1 at both ends)"
    );
    let claimed = i32::from_le_bytes(bytes[footer_end..footer_end + 4].try_into()?);
    let footer_len = usize::try_from(claimed).unwrap_or(usize::MAX);
    ensure!(
        footer_len <= footer_end - 8,
        "the Arrow footer claims {claimed} bytes, more than the file's {}",
        bytes.len()
    );
    let footer = arrow_ipc::root_as_footer(&bytes[footer_end - footer_len..footer_end])
        .map_err(|e| anyhow::anyhow!("the Arrow footer: {e}"))?;
    let blocks = footer.recordBatches().into_iter().flatten();
    for block in blocks.chain(footer.dictionaries().into_iter().flatten()) {
        let end = i128::from(block.offset())
            + i128::from(block.metaDataLength())
            + i128::from(block.bodyLength());
        ensure!(
            block.offset() >= 0
                && block.metaDataLength() >= 0
                && block.bodyLength() >= 0
                && end <= footer_end as i128,
            "an Arrow block at byte {} claims {} + {} bytes, past the end of the file's {}",
            block.offset(),
            block.metaDataLength(),
            block.bodyLength(),
            bytes.len()
        );
    }
    Ok(())
}

/// Checks a shard's bytes against its entry, then decodes it.
///
/// # Errors
/// Size or hash mismatch, or undecodable bytes; the shard is named.
pub fn verify_and_decode(entry: &ShardEntry, bytes: &[u8]) -> anyhow::Result<Vec<RecordBatch>> {
    ensure!(
        bytes.len() as u64 == entry.bytes,
        "shard {}: {} bytes, the manifest says {}",
        entry.name,
        bytes.len(),
        entry.bytes
    );
    let hash = sha256_hex(bytes);
    ensure!(
        hash == entry.sha256,
        "shard {}: sha256 {hash}, the manifest says {}",
        entry.name,
        entry.sha256
    );
    decode(bytes).with_context(|| format!("shard {}", entry.name))
}

/// Writes rows into shards of at most `shard_bytes` of image data (at least one row each) in a
/// local folder, then the manifest.
pub struct ShardWriter {
    dir: PathBuf,
    shard_bytes: usize,
    kind: Option<TableKind>,
    pending: Vec<table::ImageTextRow>,
    pending_bytes: usize,
    shards: Vec<ShardEntry>,
}

impl ShardWriter {
    /// A writer into `dir` (created).
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn new(dir: &Path, shard_bytes: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
            shard_bytes,
            kind: None,
            pending: Vec::new(),
            pending_bytes: 0,
            shards: Vec::new(),
        })
    }

    /// Adds a row; a full shard is written out. The first row sets the table kind.
    ///
    /// # Errors
    /// A row of another kind, or a shard that cannot be written.
    pub fn push(&mut self, row: table::ImageTextRow) -> anyhow::Result<()> {
        let kind = *self.kind.get_or_insert(row.labels.kind());
        ensure!(
            row.labels.kind() == kind,
            "row {:?} is a {:?} row in a {kind:?} dataset",
            row.image_id,
            row.labels.kind()
        );
        let size = row.image.len() + row.captions.iter().map(String::len).sum::<usize>();
        if !self.pending.is_empty() && self.pending_bytes + size > self.shard_bytes {
            self.flush()?;
        }
        self.pending_bytes += size;
        self.pending.push(row);
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        let batch = table::to_batch(&std::mem::take(&mut self.pending))?;
        self.pending_bytes = 0;
        let mut bytes = Vec::new();
        let mut writer = FileWriter::try_new(&mut bytes, &batch.schema())?;
        writer.write(&batch)?;
        writer.finish()?;
        drop(writer);
        let name = format!("shard-{:05}.arrow", self.shards.len());
        let entry = entry_for(&name, &bytes, &[batch], self.kind().text_column())?;
        write_atomic(&self.dir.join(&name), &bytes)?;
        self.shards.push(entry);
        Ok(())
    }

    fn kind(&self) -> TableKind {
        self.kind.unwrap_or_default()
    }

    /// Writes the last shard and the manifest; returns the manifest.
    ///
    /// # Errors
    /// A file cannot be written.
    pub fn finish(self) -> anyhow::Result<Manifest> {
        self.finish_with(Vec::new(), Vec::new())
    }

    /// As [`ShardWriter::finish`], recording the CUI of each entity id and the label names.
    ///
    /// # Errors
    /// A file cannot be written.
    pub fn finish_with(
        mut self,
        entities: Vec<String>,
        label_names: Vec<String>,
    ) -> anyhow::Result<Manifest> {
        if !self.pending.is_empty() {
            self.flush()?;
        }
        let kind = self.kind();
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            columns: columns(Some(std::sync::Arc::new(table::schema(kind)))),
            text_column: kind.text_column().to_owned(),
            kind,
            entities,
            label_names,
            shards: self.shards,
        };
        let json = serde_json::to_vec_pretty(&manifest)?;
        write_atomic(&self.dir.join(MANIFEST_FILE), &json)?;
        Ok(manifest)
    }
}

/// Writes `path` through a temporary file and a rename, so a reader never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::table::ImageTextRow;

    #[test]
    fn claimed_lengths_past_the_end_are_refused_before_any_allocation() {
        // Found by fuzzing under a 2 GB limit: 4,900 bytes whose footer claims 1.7 GB.
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fuzz/regressions/arrow_shard/arrow_forged_footer_length.arrow"
        );
        let error = decode(&std::fs::read(file).unwrap()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the Arrow footer claims 1728054968 bytes, more than the file's 4900"),
            "{error}"
        );
        assert!(decode(b"ARROW1").is_err());
    }

    fn rows(n: usize) -> Vec<ImageTextRow> {
        (0..n)
            .map(|i| ImageTextRow {
                image: vec![i as u8; 100],
                captions: (0..=i % 3).map(|k| format!("text {i}.{k}")).collect(),
                image_id: format!("{i}.png"),
                split: "train".into(),
                ..ImageTextRow::default()
            })
            .collect()
    }

    #[test]
    fn rows_split_into_verified_shards_and_a_manifest() {
        let dir = std::env::temp_dir().join(format!("arl-shards-{}", std::process::id()));
        let mut writer = ShardWriter::new(&dir, 350).unwrap();
        for row in rows(10) {
            writer.push(row).unwrap();
        }
        let manifest = writer.finish().unwrap();
        assert_eq!(
            manifest.shards.len(),
            4,
            "3 rows of 100+ bytes per 350-byte shard"
        );
        assert_eq!(manifest.shards.iter().map(|s| s.rows).sum::<u64>(), 10);
        let items: u32 = (0..10).map(|i| i % 3 + 1).sum();
        assert_eq!(manifest.items_per_shard().iter().sum::<u32>(), items);
        let text = std::fs::read(dir.join(MANIFEST_FILE)).unwrap();
        assert_eq!(Manifest::parse(&text, "index.json").unwrap(), manifest);
        let entry = &manifest.shards[1];
        let mut bytes = std::fs::read(dir.join(&entry.name)).unwrap();
        let batches = verify_and_decode(entry, &bytes).unwrap();
        assert_eq!(table::row(&batches[0], 0).unwrap(), rows(10)[3]);
        bytes[200] ^= 1;
        let error = verify_and_decode(entry, &bytes).unwrap_err().to_string();
        assert!(
            error.starts_with("shard shard-00001.arrow: sha256"),
            "{error}"
        );
        let error = verify_and_decode(entry, &bytes[..bytes.len() - 8])
            .unwrap_err()
            .to_string();
        assert!(error.contains("bytes, the manifest says"), "{error}");
        let error = Manifest::for_arrow_file("cut.arrow", &bytes[..300])
            .unwrap_err()
            .to_string();
        assert_eq!(error, "reading cut.arrow");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
