//! The projection the first pass scans: each stored vector's coordinates along the `DIMS`
//! directions where stored vectors vary most (the top eigenvectors of their second-moment
//! matrix, found by subspace iteration over the first vectors stored), in int8 with a scale
//! per coordinate, and the norm of what the projection leaves out. Real dialogue embeddings
//! crowd into a cone and vary mostly along a few dozen directions, so these few bytes a vector
//! bound its similarity tightly.
//!
//! The bound, for a query q and a stored vector x, with B the orthonormal basis, y = Bx
//! (stored as codes c, y ≈ s∘c with s the per-coordinate scales, |y − s∘c| ≤ e) and
//! p = Bq, p' = s∘p (int8 p̂' with scale t, |p' − t p̂'| ≤ e'):
//!
//!   q·x = p·y + q⊥·x⊥ ≤ p·y + |q⊥| |x⊥|       (B orthonormal; ⊥: what B leaves out)
//!   p·y ≤ p·(s∘c) + |q| e = p'·c + |q| e        (|p| ≤ |q|)
//!   p'·c ≤ t (p̂'·c) + e' |c|
//!
//! with |x⊥|² = |x|² − |y|² and |q⊥|² = |q|² − |p|². Float rounding (the basis is orthonormal
//! to about 1e-7, the dot products good to about 1e-5) is covered by `ROUNDING`. The basis only
//! decides how tight the bound is, never whether it holds.

use rand::SeedableRng;

use super::scan::{dots, quantize, Projected, ProjectedQuery, Quantized};

/// Coordinates kept per vector: 32 bytes, a twelfth of the int8 vector.
pub const DIMS: usize = 32;
/// Added to squared norms and to the bound, far above the float rounding in either.
const ROUNDING: f32 = 1e-4;
const ITERATIONS: usize = 12;
/// Vectors (evenly spaced) the second-moment matrix and the scales are estimated from.
const SAMPLE: usize = 4096;

pub struct Projection {
    pub d: usize,
    dim: usize,
    /// `d` orthonormal rows of `dim`.
    basis: Vec<f32>,
    /// The scale of each coordinate's codes.
    scales: Vec<f32>,
    rows: Part,
}

/// Projected rows, struct-of-arrays; built in parts on several threads, then joined.
#[derive(Default)]
pub struct Part {
    codes: Vec<i8>,
    /// |y − s∘c|, the norm of the codes, and |x⊥|, each rounded up.
    error: Vec<f32>,
    code_norm: Vec<f32>,
    rest: Vec<f32>,
}

impl Part {
    fn append(&mut self, other: Part) {
        self.codes.extend(other.codes);
        self.error.extend(other.error);
        self.code_norm.extend(other.code_norm);
        self.rest.extend(other.rest);
    }
}

impl Projection {
    /// A basis and scales fitted to `sample` (vectors, `dim` a row; at most `SAMPLE` of them
    /// used), with no rows yet.
    pub fn fit(dim: usize, sample: &[f32]) -> Projection {
        let d = DIMS.min(dim);
        let n = sample.len() / dim;
        let step = n.div_ceil(SAMPLE).max(1);
        let mut moment = vec![0.0f32; dim * dim];
        for x in sample.chunks_exact(dim).step_by(step) {
            for (i, xi) in x.iter().enumerate() {
                moment[i * dim..(i + 1) * dim]
                    .iter_mut()
                    .zip(x)
                    .for_each(|(m, xj)| *m += xi * xj);
            }
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x9ca);
        let mut basis: Vec<f64> = (0..d * dim)
            .map(|_| rand::Rng::random_range(&mut rng, -1.0..1.0))
            .collect();
        orthonormalize(dim, &mut basis);
        if n > 0 {
            let mut col = Vec::with_capacity(dim);
            for _ in 0..ITERATIONS {
                for v in basis.chunks_exact_mut(dim) {
                    let vf: Vec<f32> = v.iter().map(|x| *x as f32).collect();
                    dots(&vf, &moment, &mut col);
                    v.iter_mut().zip(&col).for_each(|(a, b)| *a = f64::from(*b));
                }
                orthonormalize(dim, &mut basis);
            }
        }
        let basis: Vec<f32> = basis.into_iter().map(|x| x as f32).collect();
        // Each coordinate's codes span a little more than what the sample reaches (a vector
        // beyond is clamped; its larger error is in its bound).
        let mut reach = vec![0.0f32; d];
        let mut y = Vec::with_capacity(d);
        for x in sample.chunks_exact(dim).step_by(step) {
            dots(x, &basis, &mut y);
            reach
                .iter_mut()
                .zip(&y)
                .for_each(|(r, v)| *r = r.max(v.abs()));
        }
        let scales = reach
            .iter()
            .map(|r| {
                if *r > 0.0 {
                    r * 1.25 / 127.0
                } else {
                    1.0 / 127.0
                }
            })
            .collect();
        Projection {
            d,
            dim,
            basis,
            scales,
            rows: Part::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.rest.len()
    }

    /// Projects vectors (`dim` values each) on `threads` threads and adds them.
    pub fn extend(&mut self, vectors: &[f32], threads: usize) {
        let n = vectors.len() / self.dim;
        let threads = if n < 4096 { 1 } else { threads.max(1) };
        let chunk = n.div_ceil(threads).max(1);
        let this = &*self;
        let parts: Vec<Part> = std::thread::scope(|s| {
            let handles: Vec<_> = vectors
                .chunks(chunk * this.dim)
                .map(|chunk| {
                    s.spawn(move || {
                        let mut part = Part::default();
                        for x in chunk.chunks_exact(this.dim) {
                            this.project_into(&mut part, x);
                        }
                        part
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("projecting rows"))
                .collect()
        });
        for part in parts {
            self.rows.append(part);
        }
    }

    fn project_into(&self, part: &mut Part, x: &[f32]) {
        let mut y = Vec::with_capacity(self.d);
        dots(x, &self.basis, &mut y);
        let x2: f64 = x.iter().map(|v| f64::from(*v).powi(2)).sum();
        let y2: f64 = y.iter().map(|v| f64::from(*v).powi(2)).sum();
        let mut err2 = 0.0f64;
        let mut code2 = 0.0f64;
        for (v, s) in y.iter().zip(&self.scales) {
            let c = (v / s).round().clamp(-127.0, 127.0);
            part.codes.push(c as i8);
            err2 += (f64::from(*v) - f64::from(c) * f64::from(*s)).powi(2);
            code2 += f64::from(c).powi(2);
        }
        part.error.push((err2.sqrt() * 1.0001 + 1e-6) as f32);
        part.code_norm.push((code2.sqrt() * 1.000_001) as f32);
        part.rest.push(rest(x2, y2));
    }

    /// The query's side of the bound: p' quantized, |q|, |q⊥|.
    pub fn query(&self, v: &[f32]) -> (Quantized, f32, f32) {
        let mut p = Vec::with_capacity(self.d);
        dots(v, &self.basis, &mut p);
        let q2: f64 = v.iter().map(|x| f64::from(*x).powi(2)).sum();
        let p2: f64 = p.iter().map(|x| f64::from(*x).powi(2)).sum();
        let scaled: Vec<f32> = p.iter().zip(&self.scales).map(|(a, s)| a * s).collect();
        (
            quantize(&scaled),
            (q2.sqrt() * 1.000_001) as f32,
            rest(q2, p2),
        )
    }

    pub fn prepared<'a>(&self, q: &'a (Quantized, f32, f32)) -> ProjectedQuery<'a> {
        ProjectedQuery {
            q: &q.0,
            norm: q.1,
            rest: q.2,
            rounding: ROUNDING,
        }
    }

    /// Rows `from..to`.
    pub fn rows(&self, from: usize, to: usize) -> Projected<'_> {
        let r = &self.rows;
        Projected {
            d: self.d,
            codes: &r.codes[from * self.d..to * self.d],
            error: &r.error[from..to],
            code_norm: &r.code_norm[from..to],
            rest: &r.rest[from..to],
        }
    }

    pub fn bytes(&self) -> usize {
        let r = &self.rows;
        r.codes.capacity()
            + 4 * (self.basis.capacity()
                + r.error.capacity()
                + r.code_norm.capacity()
                + r.rest.capacity())
    }
}

/// The norm of what a projection leaves out, rounded up.
fn rest(whole2: f64, kept2: f64) -> f32 {
    ((whole2 - kept2).max(0.0) + f64::from(ROUNDING)).sqrt() as f32
}

/// Modified Gram-Schmidt on the rows (`dim` each); a row that vanishes becomes a unit vector
/// orthogonal to the others.
fn orthonormalize(dim: usize, rows: &mut [f64]) {
    let d = rows.len() / dim;
    for i in 0..d {
        for attempt in 0..=dim {
            let (done, rest) = rows.split_at_mut(i * dim);
            let v = &mut rest[..dim];
            for _ in 0..2 {
                for u in done.chunks_exact(dim) {
                    let c: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
                    v.iter_mut().zip(u).for_each(|(a, b)| *a -= c * b);
                }
            }
            let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            if n > 1e-9 {
                v.iter_mut().for_each(|x| *x /= n);
                break;
            }
            v.iter_mut().for_each(|x| *x = 0.0);
            v[attempt % dim] = 1.0;
        }
    }
}
