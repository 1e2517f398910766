//! What goes out of the store and comes back in: atomically written files, the NPY format,
//! `dgen export` (its own files, and the SGD, chat and MultiWOZ layouts) and `dgen import`.

pub mod atomic_file;
pub mod chat;
pub mod export;
pub mod formats;
pub mod hf;
pub mod import;
pub mod import_sgd;
pub mod multiwoz;
pub mod npy;
pub mod sgd;
