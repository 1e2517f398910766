//! What goes out of the store and comes back in: atomically written files, the NPY format,
//! `dgen export` and `dgen import`.

pub mod export;
pub mod import;
