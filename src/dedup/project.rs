//! The projection the first pass scans: each stored vector's coordinates along the `DIMS`
//! directions where stored vectors vary most (the top eigenvectors of their second-moment
//! matrix, found by subspace iteration over a sample), in int8, with the norm of what the
//! projection leaves out. Real dialogue embeddings crowd into a cone and vary mostly along a
//! few dozen directions, so these few bytes a vector bound its similarity tightly.
//!
//! The bound, for a query q and a stored vector x whose int8 form is x̂ (|x − x̂| ≤ e):
//! with B the orthonormal basis, y = Bx̂ (int8 ŷ, |y − ŷ| ≤ e_y) and p = Bq (int8 p̂, |p − p̂| ≤ e_p),
//!
//!   q·x ≤ q·x̂ + |q| e                          (Cauchy-Schwarz)
//!   q·x̂ = p·y + q⊥·x̂⊥ ≤ p·y + |q⊥| |x̂⊥|       (B orthonormal; ⊥: what B leaves out)
//!   p·y ≤ p̂·ŷ + |q| e_y + e_p |ŷ|               (|p| ≤ |q|)
//!
//! with |x̂⊥|² = |x̂|² − |y|² and |q⊥|² = |q|² − |p|². Float rounding (the basis is orthonormal
//! to about 1e-7, the dot products good to about 1e-5) is covered by `ROUNDING`. The basis only
//! decides how tight the bound is, never whether it holds.

use rand::SeedableRng;

use super::scan::{dots, quantize, Projected, ProjectedQuery, Quantized};

/// Coordinates kept per vector: 32 bytes, a twelfth of the int8 vector.
pub const DIMS: usize = 32;
/// Added to squared norms and to the bound, far above the float rounding in either.
const ROUNDING: f32 = 1e-4;
/// Rows the second-moment matrix is estimated from.
const SAMPLE: usize = 4096;
const ITERATIONS: usize = 12;

pub struct Projection {
    pub d: usize,
    dim: usize,
    /// `d` orthonormal rows of `dim`.
    basis: Vec<f32>,
    rows: Part,
}

/// Projected rows, struct-of-arrays; built in parts on several threads, then joined.
#[derive(Default)]
pub struct Part {
    values: Vec<i8>,
    scales: Vec<f32>,
    slack: Vec<f32>,
    rest: Vec<f32>,
    /// The largest |ŷ| of a row, for the query's quantization error term.
    max_norm: f32,
}

impl Part {
    fn append(&mut self, other: Part) {
        self.values.extend(other.values);
        self.scales.extend(other.scales);
        self.slack.extend(other.slack);
        self.rest.extend(other.rest);
        self.max_norm = self.max_norm.max(other.max_norm);
    }
}

impl Projection {
    /// A basis fitted to `sample` (dequantized vectors, `dim` a row), with no rows yet.
    pub fn fit(dim: usize, sample: &[f32]) -> Projection {
        let d = DIMS.min(dim);
        let n = sample.len() / dim;
        let mut moment = vec![0.0f32; dim * dim];
        for x in sample.chunks_exact(dim) {
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
            let mut next = vec![0.0f32; dim];
            let mut col = Vec::with_capacity(dim);
            for _ in 0..ITERATIONS {
                for v in basis.chunks_exact_mut(dim) {
                    let vf: Vec<f32> = v.iter().map(|x| *x as f32).collect();
                    dots(&vf, &moment, &mut col);
                    next.copy_from_slice(&col);
                    v.iter_mut()
                        .zip(&next)
                        .for_each(|(a, b)| *a = f64::from(*b));
                }
                orthonormalize(dim, &mut basis);
            }
        }
        Projection {
            d,
            dim,
            basis: basis.into_iter().map(|x| x as f32).collect(),
            rows: Part::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.scales.len()
    }

    /// Adds a stored vector by its int8 form (`values`, `scale`) and that form's `error`.
    pub fn push(&mut self, values: &[i8], scale: f32, error: f32) {
        let mut part = std::mem::take(&mut self.rows);
        self.project_into(&mut part, values, scale, error);
        self.rows = part;
    }

    /// Projects int8 rows (`dim` values each, with their scales and errors) on `threads`
    /// threads and adds them.
    pub fn extend(&mut self, values: &[i8], scales: &[f32], errors: &[f32], threads: usize) {
        let n = scales.len();
        let chunk = n.div_ceil(threads.max(1)).max(1);
        let dim = self.dim;
        let parts: Vec<Part> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .step_by(chunk)
                .map(|from| {
                    let to = (from + chunk).min(n);
                    let this = &*self;
                    s.spawn(move || {
                        let mut part = Part::default();
                        part.values.reserve((to - from) * this.d);
                        for i in from..to {
                            let row = &values[i * dim..(i + 1) * dim];
                            this.project_into(&mut part, row, scales[i], errors[i]);
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

    fn project_into(&self, part: &mut Part, values: &[i8], scale: f32, error: f32) {
        let x: Vec<f32> = values.iter().map(|v| f32::from(*v) * scale).collect();
        let mut y = Vec::with_capacity(self.d);
        dots(&x, &self.basis, &mut y);
        let x2: f64 = x.iter().map(|v| f64::from(*v).powi(2)).sum();
        let y2: f64 = y.iter().map(|v| f64::from(*v).powi(2)).sum();
        let yq = quantize(&y);
        part.max_norm = part.max_norm.max(yq.norm);
        part.values.extend_from_slice(&yq.values);
        part.scales.push(yq.scale);
        part.slack.push(error + yq.error);
        part.rest.push(rest(x2, y2));
    }

    /// The query's side of the bound.
    pub fn query(&self, v: &[f32]) -> (Quantized, f32, f32) {
        let mut p = Vec::with_capacity(self.d);
        dots(v, &self.basis, &mut p);
        let q2: f64 = v.iter().map(|x| f64::from(*x).powi(2)).sum();
        let p2: f64 = p.iter().map(|x| f64::from(*x).powi(2)).sum();
        (quantize(&p), (q2.sqrt() * 1.000_001) as f32, rest(q2, p2))
    }

    pub fn prepared<'a>(&self, q: &'a (Quantized, f32, f32)) -> ProjectedQuery<'a> {
        ProjectedQuery {
            q: &q.0,
            norm: q.1,
            rest: q.2,
            fixed: self.rows.max_norm * q.0.error + ROUNDING,
        }
    }

    /// Rows `from..to`.
    pub fn rows(&self, from: usize, to: usize) -> Projected<'_> {
        let r = &self.rows;
        Projected {
            d: self.d,
            values: &r.values[from * self.d..to * self.d],
            scales: &r.scales[from..to],
            slack: &r.slack[from..to],
            rest: &r.rest[from..to],
        }
    }

    pub fn bytes(&self) -> usize {
        let r = &self.rows;
        r.values.capacity()
            + 4 * (self.basis.capacity()
                + r.scales.capacity()
                + r.slack.capacity()
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

/// A sample of the stored int8 rows, dequantized, for fitting the basis.
pub fn sample(dim: usize, values: &[i8], scales: &[f32]) -> Vec<f32> {
    let n = scales.len();
    let step = n.div_ceil(SAMPLE).max(1);
    (0..n)
        .step_by(step)
        .flat_map(|i| {
            values[i * dim..(i + 1) * dim]
                .iter()
                .map(move |v| f32::from(*v) * scales[i])
        })
        .collect()
}
