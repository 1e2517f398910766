//! A file that appears under its final name only when it is complete: written to a temporary
//! file in the same folder, fsynced and renamed into place, so a failure or a kill leaves the
//! previous file intact and never a partial file under the final name.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

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
        let temp = dir.join(format!("{prefix}{}", std::process::id()));
        // A name anyone can guess: whatever is there (a planted symlink, say) is removed, never
        // followed, and the file is created new.
        let _ = std::fs::remove_file(&temp);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp)
            .with_context(|| {
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

    pub fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().expect("commit once");
        let file = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", self.temp.display()))?;
        file.sync_all()
            .with_context(|| format!("cannot sync {}", self.temp.display()))?;
        std::fs::rename(&self.temp, &self.target)
            .with_context(|| format!("cannot move the new file into {}", self.target.display()))?;
        Ok(())
    }
}

/// Temporary files left by a killed export: `<prefix><pid>` whose process is gone.
fn remove_stale_temps(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(prefix) else {
            continue;
        };
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
