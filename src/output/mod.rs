//! What goes out of the store and comes back in: atomically written files, the NPY format,
//! `dgen export` and `dgen import`.

pub mod atomic_file;
pub mod export;
pub mod hf;
pub mod import;
pub mod npy;
