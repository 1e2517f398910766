//! One split's Parquet shards: row groups written as they fill, a new shard when the current
//! one reaches the row or byte limit, and every shard kept under a temporary name until the
//! split is complete, since its final name (`train-00000-of-00003.parquet`) holds the count.
//! Each shard's bytes are hashed as they are written, for the card's data fingerprint.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::output::atomic_file::{AtomicFile, Finished};

/// When a shard is closed.
#[derive(Debug, Clone, Copy)]
pub struct ShardLimits {
    pub rows: u64,
    pub bytes: u64,
}

pub struct SplitShards {
    name: String,
    dir: PathBuf,
    schema: SchemaRef,
    props: WriterProperties,
    limits: ShardLimits,
    current: Option<ArrowWriter<Hashing<AtomicFile>>>,
    rows_in_current: u64,
    done: Vec<(Finished, blake3::Hash)>,
    pub rows: u64,
}

impl SplitShards {
    pub fn new(
        name: &str,
        dir: &Path,
        schema: SchemaRef,
        props: WriterProperties,
        limits: ShardLimits,
    ) -> SplitShards {
        SplitShards {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            schema,
            props,
            limits,
            current: None,
            rows_in_current: 0,
            done: Vec::new(),
            rows: 0,
        }
    }

    /// How many more rows the current shard takes before it is full.
    pub fn room(&self) -> u64 {
        self.limits.rows - self.rows_in_current
    }

    /// Writes `batch` as one row group (it never holds more rows than [`Self::room`]), then
    /// closes the shard if it is full.
    fn open(&mut self) -> Result<&mut ArrowWriter<Hashing<AtomicFile>>> {
        if self.current.is_none() {
            let provisional =
                self.dir
                    .join(format!("{}-{:05}.parquet", self.name, self.done.len()));
            let file = Hashing::new(AtomicFile::create(&provisional)?);
            let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(self.props.clone()))
                .context("cannot start a Parquet shard")?;
            self.current = Some(writer);
        }
        Ok(self.current.as_mut().expect("opened above"))
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let name = self.name.clone();
        let writer = self.open()?;
        writer
            .write(batch)
            .with_context(|| format!("cannot write split {name} to Parquet"))?;
        writer.flush()?;
        let bytes = writer.bytes_written() as u64;
        let rows = batch.num_rows() as u64;
        self.rows_in_current += rows;
        self.rows += rows;
        if self.rows_in_current >= self.limits.rows || bytes >= self.limits.bytes {
            self.close_current()?;
        }
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some(writer) = self.current.take() {
            let Hashing { inner, hasher } = writer
                .into_inner()
                .with_context(|| format!("cannot finish a Parquet shard of split {}", self.name))?;
            self.done.push((inner.finish()?, hasher.finalize()));
            self.rows_in_current = 0;
        }
        Ok(())
    }

    /// Closes the last shard and returns the finished shards with their final names (relative
    /// to the dataset folder) and the hashes of their bytes.
    /// A split without rows gets no file (`datasets` refuses to load a split of 0 rows, "corresponds
    /// to no data"), unless `keep_empty`: then one empty shard, which keeps the columns.
    pub fn finish(mut self, keep_empty: bool) -> Result<Vec<(Finished, String, blake3::Hash)>> {
        if self.rows == 0 && !keep_empty {
            return Ok(Vec::new());
        }
        if self.done.is_empty() && self.current.is_none() {
            self.open()?;
        }
        self.close_current()?;
        let count = self.done.len();
        Ok(self
            .done
            .into_iter()
            .enumerate()
            .map(|(i, (f, hash))| {
                let name = format!("{}-{i:05}-of-{count:05}.parquet", self.name);
                (f, name, hash)
            })
            .collect())
    }
}

/// A writer that hashes what goes through it: the Parquet writer only appends, so the hash is
/// that of the file.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            hasher: blake3::Hasher::new(),
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Removes the temporary shards (`.<split>-00000.parquet.tmp-<pid>-<n>`) that an export killed
/// before it finished left in `data`: those whose process is gone. They would otherwise stay
/// (a later export names its temporary files after its own process) and be uploaded with the
/// folder.
pub fn remove_dead_temps(data: &Path) {
    let Ok(entries) = std::fs::read_dir(data) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, rest)) = name.split_once(".parquet.tmp-") else {
            continue;
        };
        if !name.starts_with('.') {
            continue;
        }
        let pid = rest.split('-').next().unwrap_or_default();
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether `name` is a shard name this export writes (`<split>-00000-of-00003.parquet`), so an
/// earlier export's shards can be removed and nothing else is touched.
pub fn is_shard_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".parquet") else {
        return false;
    };
    let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
    match parts.as_slice() {
        [count, of, index, split] => {
            *of == "of"
                && count.len() == 5
                && index.len() == 5
                && count.chars().all(|c| c.is_ascii_digit())
                && index.chars().all(|c| c.is_ascii_digit())
                && !split.is_empty()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_shard_names_are_recognised() {
        assert!(is_shard_name("train-00000-of-00001.parquet"));
        assert!(is_shard_name("my_split-00012-of-00100.parquet"));
        for other in [
            "train.parquet",
            "train-0-of-1.parquet",
            "notes-00000-of-00001.txt",
            "-00000-of-00001.parquet",
            "train-00000-to-00001.parquet",
        ] {
            assert!(!is_shard_name(other), "{other}");
        }
    }
}
