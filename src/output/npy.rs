//! The NPY format (v1.0) of the embedding matrix: a C-order little-endian float32 matrix of
//! shape (rows, cols). The writer counts the rows it writes and puts that count in the header,
//! which it reserves at a fixed width first and patches at the end, so the header's shape always
//! agrees with the data whatever the source said it held.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use crate::embed;
use crate::output::atomic_file::AtomicFile;

/// The widest row count a header must hold (`u64::MAX`).
const MAX_ROW_DIGITS: usize = 20;

fn header_dict(rows: u64, cols: usize) -> String {
    format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}")
}

/// The header length for `cols` columns and any row count: 10 bytes of magic, version and
/// length, the dictionary at its widest and a newline, padded to a multiple of 64.
fn header_len(cols: usize) -> usize {
    let widest = 10 + header_dict(0, cols).len() - 1 + MAX_ROW_DIGITS + 1;
    widest.div_ceil(64) * 64
}

/// The NPY v1.0 header of a C-order little-endian float32 matrix, padded with spaces to
/// [`header_len`] so that any row count can later be written in its place.
pub fn header(rows: u64, cols: usize) -> Vec<u8> {
    let dict = header_dict(rows, cols);
    let total = header_len(cols);
    let pad = total - 10 - dict.len() - 1;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out
}

/// Writes an NPY matrix row by row into an [`AtomicFile`]; the header's row count is the
/// number of rows written.
pub struct NpyWriter {
    file: AtomicFile,
    cols: usize,
    rows: u64,
}

impl NpyWriter {
    /// Reserves the header; rows follow.
    pub fn new(mut file: AtomicFile, cols: usize) -> Result<NpyWriter> {
        file.writer().write_all(&header(0, cols))?;
        Ok(NpyWriter {
            file,
            cols,
            rows: 0,
        })
    }

    /// One row: `cols` little-endian float32 values.
    pub fn row(&mut self, bytes: &[u8]) -> Result<()> {
        ensure!(
            bytes.len() == self.cols * 4,
            "an embedding of {} bytes, expected {} ({} float32)",
            bytes.len(),
            self.cols * 4,
            self.cols
        );
        self.file.writer().write_all(bytes)?;
        self.rows += 1;
        Ok(())
    }

    /// Writes the final header in place of the reserved one; the file still needs a commit.
    pub fn finish(mut self) -> Result<AtomicFile> {
        let w = self.file.writer();
        w.seek(SeekFrom::Start(0))?;
        w.write_all(&header(self.rows, self.cols))?;
        w.seek(SeekFrom::End(0))?;
        Ok(self.file)
    }
}

/// Reads an NPY file of shape (rows, 384), little-endian float32, C order.
pub fn read(path: &Path, expected_rows: usize, records: &Path) -> Result<Vec<Vec<f32>>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let bad = |what: String| anyhow::anyhow!("{}: {what}", path.display());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not an NPY file (no \\x93NUMPY magic)".into()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported NPY version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header".into()))?;
    let value_of = |key: &str| -> Option<&str> {
        let rest = header.split(&format!("'{key}':")).nth(1)?.trim_start();
        Some(rest)
    };
    let descr = value_of("descr")
        .and_then(|r| r.split('\'').nth(1))
        .ok_or_else(|| bad("header has no descr".into()))?;
    if descr != "<f4" {
        return Err(bad(format!("dtype {descr}, expected float32 ('<f4')")));
    }
    if value_of("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(bad("Fortran order; save it in C order".into()));
    }
    let shape: Vec<usize> = value_of("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .map(|dims| {
            dims.split(',')
                .filter_map(|d| d.trim().parse().ok())
                .collect()
        })
        .ok_or_else(|| bad("header has no shape".into()))?;
    if shape.len() != 2 || shape[1] != embed::DIM {
        return Err(bad(format!(
            "shape {shape:?}, expected (N, {})",
            embed::DIM
        )));
    }
    if shape[0] != expected_rows {
        bail!(
            "{} has {} rows but {} has {expected_rows} records; the files must have one row per dialogue, in the same order",
            path.display(),
            shape[0],
            records.display()
        );
    }
    let data = &bytes[start + header_len..];
    if data.len() != shape[0] * shape[1] * 4 {
        return Err(bad(format!(
            "{} bytes of data for shape {shape:?} (expected {})",
            data.len(),
            shape[0] * shape[1] * 4
        )));
    }
    Ok(data
        .chunks_exact(embed::DIM * 4)
        .map(crate::store::embedding_from_bytes)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_has_one_width_for_every_row_count() {
        let widths: Vec<usize> = [0, 7, 123_456, u64::MAX]
            .iter()
            .map(|&rows| header(rows, embed::DIM).len())
            .collect();
        assert!(
            widths.iter().all(|&w| w == widths[0] && w % 64 == 0),
            "{widths:?}"
        );
        let h = header(u64::MAX, embed::DIM);
        assert!(std::str::from_utf8(&h[10..])
            .unwrap()
            .contains("'shape': (18446744073709551615, 384), }"));
    }

    #[test]
    fn the_writer_counts_the_rows_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.npy");
        let mut npy = NpyWriter::new(AtomicFile::create(&path).unwrap(), 2).unwrap();
        for row in [[1.0f32, 0.0], [0.0, 1.0], [0.6, 0.8]] {
            let bytes: Vec<u8> = row.iter().flat_map(|x| x.to_le_bytes()).collect();
            npy.row(&bytes).unwrap();
        }
        assert!(npy.row(&[0u8; 4]).is_err(), "a row of the wrong width");
        npy.finish().unwrap().commit().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), header(0, 2).len() + 3 * 8);
        assert!(String::from_utf8_lossy(&bytes).contains("'shape': (3, 2), }"));
    }
}
