//! A file that appears under its final name only when it is complete: written to a temporary
//! file in the same folder, fsynced and renamed into place, so a failure or a kill leaves the
//! previous file intact and never a partial file under the final name.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};

/// A file that appears under its final name only when [`AtomicFile::commit`] succeeds.
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    pub fn create(target: &Path) -> Result<AtomicFile> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            bail!(
                "cannot write {}: folder {} does not exist; create it or choose another path",
                target.display(),
                dir.display()
            );
        }
        let name = target
            .file_name()
            .with_context(|| format!("{} is not a file path", target.display()))?;
        let prefix = format!(".{}.tmp-", name.to_string_lossy());
        remove_stale_temps(&dir, &prefix);
        let (temp, file) = create_temp(&dir, &prefix).with_context(|| {
            format!(
                "cannot write {}: {} is not writable",
                target.display(),
                dir.display()
            )
        })?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            temp,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.writer.as_mut().expect("not committed yet")
    }

    pub fn commit(self) -> Result<()> {
        let target = self.target.clone();
        self.finish()?.publish(&target)
    }

    /// Flushes and syncs the file but keeps it under its temporary name, for a file whose final
    /// name is known only once its siblings are written (`train-00000-of-00003.parquet`).
    pub fn finish(mut self) -> Result<Finished> {
        let writer = self.writer.take().expect("finish once");
        let file = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", self.temp.display()))?;
        file.sync_all()
            .with_context(|| format!("cannot sync {}", self.temp.display()))?;
        Ok(Finished {
            temp: std::mem::take(&mut self.temp),
            published: false,
        })
    }
}

/// Lets a format writer that owns its output (Parquet's) write into the temporary file.
impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer().flush()
    }
}

/// A complete file still under its temporary name: removed when dropped unless published.
pub struct Finished {
    temp: PathBuf,
    published: bool,
}

impl Finished {
    /// Renames the file to `target` (in the same folder as its temporary name).
    pub fn publish(mut self, target: &Path) -> Result<()> {
        std::fs::rename(&self.temp, target)
            .with_context(|| format!("cannot move the new file into {}", target.display()))?;
        self.published = true;
        Ok(())
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Refuses outputs that are one file: an output that is the store (its temporary file renamed
/// over the store would destroy it, while a run writing it kept going into the unlinked file),
/// or two outputs with one path (the second would replace the first). Each output is `(flag,
/// path)`, for the message. Files match by device and inode when they exist, and by their
/// folder's canonical path and their name otherwise, so two spellings of a file that does not
/// exist yet (`out.json`, `./sub/../out.json`) match too.
pub fn refuse_overlaps(store: &Path, outputs: &[(&str, &Path)]) -> Result<()> {
    let store_id = FileId::of(store);
    for (i, (flag, path)) in outputs.iter().enumerate() {
        let id = FileId::of(path);
        if id.same(&store_id) {
            bail!(
                "{flag} {} is the store {} itself; writing there would replace the store: choose another file name",
                path.display(),
                store.display()
            );
        }
        for (other_flag, other) in &outputs[..i] {
            if id.same(&FileId::of(other)) {
                bail!(
                    "{other_flag} {} and {flag} {} are one file, and the second would replace the first: give each output its own file",
                    other.display(),
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// Whether two paths name one file: the same device and inode when both exist, else the same
/// folder (resolved) and name.
pub fn same_file(a: &Path, b: &Path) -> bool {
    FileId::of(a).same(&FileId::of(b))
}

/// What a path names, for telling two paths of one file.
struct FileId {
    /// Device and inode, when the file exists.
    inode: Option<(u64, u64)>,
    /// The folder's canonical path (or, when it does not exist, its absolute path with `.` and
    /// `..` resolved) joined with the name.
    path: Option<PathBuf>,
}

impl FileId {
    fn of(path: &Path) -> FileId {
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        let path = std::path::absolute(path)
            .ok()
            .map(|p| lexical(&p))
            .and_then(|p| {
                let name = p.file_name()?.to_os_string();
                let dir = p.parent()?;
                Some(
                    dir.canonicalize()
                        .unwrap_or_else(|_| dir.to_path_buf())
                        .join(name),
                )
            });
        FileId { inode, path }
    }

    fn same(&self, other: &FileId) -> bool {
        matches!((self.inode, other.inode), (Some(a), Some(b)) if a == b)
            || (self.path.is_some() && self.path == other.path)
    }
}

/// `path` with `.` and `..` resolved by name alone (for a folder that does not exist).
fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Temporary names of this process: several exports may run at once in one process (a run
/// answers each request on its own thread), so each takes its own number.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// A new temporary file `<prefix><pid>-<n>`. The name is guessable, so the file is always
/// created new: whatever is already there (a planted symlink, another export's file) is never
/// followed, truncated or removed; the next number is tried instead.
fn create_temp(dir: &Path, prefix: &str) -> std::io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    loop {
        let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!("{prefix}{pid}-{n}"));
        match File::options().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1 << 20 => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Temporary files left by a killed export: `<prefix><pid>-<n>` whose process is gone.
fn remove_stale_temps(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        let alive = Path::new("/proc").join(pid).exists();
        if pid.parse::<u32>().is_ok() && !alive {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn outputs_that_are_the_store_or_each_other_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("dgen.redb");
        std::fs::write(&store, b"store").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let refused = |outputs: &[(&str, &Path)]| refuse_overlaps(&store, outputs).is_err();
        let p = |s: &str| dir.path().join(s);
        assert!(refused(&[("--jsonl", &p("dgen.redb"))]));
        assert!(refused(&[("--jsonl", &p("sub/../dgen.redb"))]));
        std::fs::hard_link(&store, p("linked")).unwrap();
        assert!(refused(&[("--jsonl", &p("linked"))]));
        // Not written yet, spelled two ways; and in a folder that does not exist.
        assert!(refused(&[
            ("--output_file", &p("a.json")),
            ("--jsonl", &p("./sub/../a.json"))
        ]));
        assert!(refused(&[
            ("--output_file", &p("no/x")),
            ("--jsonl", &p("no/./x"))
        ]));
        assert!(!refused(&[
            ("--output_file", &p("a.json")),
            ("--jsonl", &p("sub/a.json"))
        ]));
    }

    #[test]
    fn two_writers_of_one_file_in_one_process_never_share_a_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.json");
        let mut first = AtomicFile::create(&target).unwrap();
        let mut second = AtomicFile::create(&target).unwrap();
        first.writer().write_all(b"first, complete").unwrap();
        second.writer().write_all(b"second, complete").unwrap();
        first.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"first, complete");
        second.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"second, complete");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["out.json"], "no temporary file is left");
    }
}
