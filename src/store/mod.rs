//! The store: one redb file holding the plan, the state of every item and (from `dgen run` on)
//! the results. All table definitions live in `tables`. A meta table identifies the file as a
//! dgen store and records the schema version, the configuration, the catalog, the dataset
//! fingerprints and the plan fingerprint, so a later command never mixes incompatible data.
//! Commands that only read open the file read-only, which leaves it byte-identical.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use redb::{Database, ReadOnlyDatabase, ReadableDatabase, TableHandle};

mod batches;
mod create;
mod read;
mod tables;
mod types;
mod verify;
mod write;

pub use batches::{BatchJob, BatchStage, StoredScenario};
pub use tables::*;
pub use types::*;

pub const SCHEMA_VERSION: u32 = 1;

/// An open store. Commands that only read open it read-only, which never changes the file.
pub struct Store {
    db: Db,
    path: PathBuf,
}

enum Db {
    Writable(Database),
    ReadOnly(ReadOnlyDatabase),
}

/// The store is held by another process (redb allows one writer, or readers only); a running
/// `dgen run` can still answer export and status requests (see `ipc`).
#[derive(Debug, thiserror::Error)]
#[error("store {} is in use by another dgen process; wait for it to finish or pass another --store", .0.display())]
pub struct StoreInUse(pub PathBuf);

fn open_error(path: &Path, err: redb::DatabaseError) -> anyhow::Error {
    match err {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreInUse(path.to_path_buf()).into(),
        redb::DatabaseError::UpgradeRequired(v) => anyhow::anyhow!(
            "store {} uses redb file format {v}, which this dgen cannot read; use the dgen version that wrote it",
            path.display()
        ),
        other => anyhow::Error::new(other).context(format!(
            "{} is not a dgen store (not a redb database it can open); refusing to touch it: pass another --store",
            path.display()
        )),
    }
}

/// How long a command that writes waits for readers (`status`, `export`) to let go of the
/// store: they hold it for moments, and a polling `status` must not make a run fail to start.
const READERS_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens for writing, retrying while the store is held, up to [`READERS_GRACE`].
/// redb's page cache for commands that write to a store (run, import, merge). Its default
/// (1 GiB) fills while the dedup index is loaded from a big store, for no gain: that read is
/// one pass, and a run then reads back only the few embeddings the dedup check asks for.
const WRITE_CACHE: usize = 128 << 20;

fn open_writable(
    path: &Path,
    open: impl Fn() -> Result<Database, redb::DatabaseError>,
) -> Result<Database> {
    let started = std::time::Instant::now();
    loop {
        match open() {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < READERS_GRACE => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other.map_err(|e| open_error(path, e)),
        }
    }
}

fn require_file(path: &Path) -> Result<()> {
    if !path.is_file() {
        bail!(
            "no store at {}; create one with `dgen plan --total_generations N` (or pass --store PATH)",
            path.display()
        );
    }
    Ok(())
}

impl Store {
    /// Opens an existing store for planning (a new one is made with
    /// [`Store::create_in_place`]). A file that is not a dgen store is refused, never
    /// overwritten.
    pub fn create_or_open(path: &Path) -> Result<Store> {
        if path.is_dir() {
            bail!(
                "--store {} is a folder; name a file such as dgen.redb",
                path.display()
            );
        }
        let db = open_writable(path, || Database::create(path))?;
        let store = Store {
            db: Db::Writable(db),
            path: path.to_path_buf(),
        };
        store.check_identity(true)?;
        Ok(store)
    }

    /// Creates a store in a new file: refused when `path` exists (a file, or a link someone
    /// put there), so the file written is the one created here.
    pub fn create_new(path: &Path) -> Result<Store> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let db = Database::builder()
            .create_with_backend(
                redb::backends::FileBackend::new(file).map_err(|e| open_error(path, e))?,
            )
            .map_err(|e| open_error(path, e))?;
        Ok(Store {
            db: Db::Writable(db),
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing store to write to it (run, import).
    pub fn open_existing(path: &Path) -> Result<Store> {
        require_file(path)?;
        let db = open_writable(path, || {
            Database::builder().set_cache_size(WRITE_CACHE).open(path)
        })?;
        let store = Store {
            db: Db::Writable(db),
            path: path.to_path_buf(),
        };
        store.check_identity(false)?;
        Ok(store)
    }

    /// Opens an existing store to read it (status, export), leaving the file byte-identical,
    /// with a page cache of at most `cache` bytes: commands that stream through a big store
    /// once (export) need little cache, and it bounds their memory.
    pub fn open_read_only(path: &Path, cache: Option<usize>) -> Result<Store> {
        require_file(path)?;
        let store = Store::open_read(path, cache)?;
        store.check_identity(false)?;
        Ok(store)
    }

    /// For `dgen plan`: the existing store, opened read-only, so that a refused or needless plan
    /// leaves it as it was; `None` when there is no file yet or it is empty.
    pub fn inspect_for_plan(path: &Path) -> Result<Option<Store>> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() && m.len() > 0 => {}
            _ => return Ok(None),
        }
        let store = Store::open_read(path, None)?;
        store.check_identity(true)?;
        Ok(Some(store))
    }

    /// A read-only handle, or a writable one when the file needs a repair first (a run was
    /// killed), which a read-only handle cannot do.
    fn open_read(path: &Path, cache: Option<usize>) -> Result<Store> {
        let mut builder = Database::builder();
        if let Some(bytes) = cache {
            builder.set_cache_size(bytes);
        }
        let db = match builder.open_read_only(path) {
            Ok(db) => Db::ReadOnly(db),
            Err(redb::DatabaseError::RepairAborted) => {
                tracing::info!(
                    "store {} was not closed cleanly (a run was killed); repairing it first",
                    path.display()
                );
                match builder.open(path) {
                    Ok(db) => Db::Writable(db),
                    Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                        return Err(StoreInUse(path.to_path_buf()).into())
                    }
                    Err(e) => bail!(
                        "store {} needs a repair after a killed run, which needs write access to it: {e}; run the command once where the file is writable (any dgen command repairs it)",
                        path.display()
                    ),
                }
            }
            Err(e) => return Err(open_error(path, e)),
        };
        Ok(Store {
            db,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<redb::ReadTransaction> {
        Ok(match &self.db {
            Db::Writable(db) => db.begin_read()?,
            Db::ReadOnly(db) => db.begin_read()?,
        })
    }

    fn write(&self) -> Result<redb::WriteTransaction> {
        match &self.db {
            Db::Writable(db) => Ok(db.begin_write()?),
            Db::ReadOnly(_) => bail!(
                "store {} was opened read-only; this command cannot change it",
                self.path.display()
            ),
        }
    }

    /// An empty redb file is acceptable when planning; anything else must carry our meta.
    fn check_identity(&self, allow_empty: bool) -> Result<()> {
        let txn = self.read()?;
        let tables: Vec<String> = txn.list_tables()?.map(|t| t.name().to_string()).collect();
        if tables.is_empty() && allow_empty {
            return Ok(());
        }
        let foreign = || {
            anyhow::anyhow!(
                "{} is a redb database but not a dgen store; refusing to touch it: pass another --store",
                self.path.display()
            )
        };
        if !tables.iter().any(|t| t == META.name()) {
            if tables.is_empty() {
                bail!(
                    "store {} holds no plan yet; run `dgen plan --total_generations N` first",
                    self.path.display()
                );
            }
            return Err(foreign());
        }
        let meta = txn.open_table(META)?;
        match meta.get(META_FORMAT)? {
            Some(v) if v.value() == FORMAT => {}
            _ => return Err(foreign()),
        }
        let version: u32 = match meta.get(META_SCHEMA)? {
            Some(v) => v.value().parse().map_err(|_| foreign())?,
            None => return Err(foreign()),
        };
        if version > SCHEMA_VERSION {
            bail!(
                "store {} was written by a newer dgen (schema {version}); this dgen reads schema {SCHEMA_VERSION}: upgrade dgen",
                self.path.display()
            );
        }
        if version < SCHEMA_VERSION {
            bail!(
                "store {} has schema {version}, older than this dgen's {SCHEMA_VERSION}; finish it with the dgen that wrote it, or plan into a new --store",
                self.path.display()
            );
        }
        Ok(())
    }
}
