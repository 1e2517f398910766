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
//!
//! A second tier does the same on the next `DIMS2` directions (orthogonal to the first
//! `DIMS`), for the few rows the first pass leaves: with y = (y₁, y₂) split between the tiers,
//!
//!   q·x = p₁·y₁ + p₂·y₂ + q⊥·x⊥ ≤ u₁ + u₂ + |q⊥| |x⊥|
//!
//! where u₁ is the first pass's bound on p₁·y₁ (carried over, not recomputed), u₂ the same
//! bound on p₂·y₂, and ⊥ now what both tiers leave out, far less than the first leaves. A row's
//! second tier is one 64-byte cache line, so the survivors, read at random, cost one memory
//! access each instead of the six of their int8 vectors.

use rand::SeedableRng;

use super::scan::{dots, quantize, Line, Projected, ProjectedQuery};

/// Coordinates kept per vector in the first pass: 32 bytes, a twelfth of the int8 vector.
pub const DIMS: usize = 32;
/// Coordinates of the second tier: with its bound terms, one cache line a row.
pub const DIMS2: usize = super::scan::LINE_CODES;
/// Added to squared norms and to the bound, far above the float rounding in either.
const ROUNDING: f32 = 1e-4;
const ITERATIONS: usize = 12;
/// Vectors (evenly spaced) the second-moment matrix and the scales are estimated from.
const SAMPLE: usize = 4096;

pub struct Projection {
    pub d: usize,
    /// The second tier's coordinates (fewer where `dim` leaves fewer; 0: no second tier).
    d2: usize,
    dim: usize,
    /// `d` orthonormal rows of `dim`, then the second tier's `d2`, orthogonal to them.
    basis: Vec<f32>,
    /// The scale of each coordinate's codes, both tiers.
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
    /// The second tier, a cache line a row.
    lines: Vec<Line>,
}

impl Part {
    fn append(&mut self, other: Part) {
        self.codes.extend(other.codes);
        self.error.extend(other.error);
        self.code_norm.extend(other.code_norm);
        self.rest.extend(other.rest);
        self.lines.extend(other.lines);
    }
}

impl Projection {
    /// A basis and scales fitted to `sample` (vectors, `dim` a row; at most `SAMPLE` of them
    /// used), with no rows yet.
    pub fn fit(dim: usize, sample: &[f32]) -> Projection {
        let d = DIMS.min(dim);
        let d2 = DIMS2.min(dim - d);
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
        // The first tier's directions, then the second tier's, found the same way in what the
        // first leaves.
        let mut basis: Vec<f64> = Vec::with_capacity((d + d2) * dim);
        for rows in [d, d2] {
            let fixed = basis.len();
            basis.extend((0..rows * dim).map(|_| rand::Rng::random_range(&mut rng, -1.0..1.0)));
            let (done, tier) = basis.split_at_mut(fixed);
            orthonormalize(dim, done, tier);
            if n > 0 {
                let mut col = Vec::with_capacity(dim);
                for _ in 0..ITERATIONS {
                    for v in tier.chunks_exact_mut(dim) {
                        let vf: Vec<f32> = v.iter().map(|x| *x as f32).collect();
                        dots(&vf, &moment, &mut col);
                        v.iter_mut().zip(&col).for_each(|(a, b)| *a = f64::from(*b));
                    }
                    orthonormalize(dim, done, tier);
                }
            }
        }
        let basis: Vec<f32> = basis.into_iter().map(|x| x as f32).collect();
        // Each coordinate's codes span a little more than what the sample reaches (a vector
        // beyond is clamped; its larger error is in its bound).
        let mut reach = vec![0.0f32; d + d2];
        let mut y = Vec::with_capacity(d + d2);
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
            d2,
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
        let mut y = Vec::with_capacity(self.d + self.d2);
        dots(x, &self.basis, &mut y);
        let x2: f64 = x.iter().map(|v| f64::from(*v).powi(2)).sum();
        let (y1, y2) = y.split_at(self.d);
        let (s1, s2) = self.scales.split_at(self.d);
        let mut line = Line::default();
        let first = codes(y1, s1, |_, c| part.codes.push(c));
        let second = codes(y2, s2, |k, c| line.codes[k] = c);
        part.error.push(first.error);
        part.code_norm.push(first.code_norm);
        part.rest.push(rest(x2, first.kept2));
        line.error = second.error;
        line.code_norm = second.code_norm;
        line.rest = rest(x2, first.kept2 + second.kept2);
        part.lines.push(line);
    }

    /// The query's side of the bounds: each tier's p' quantized, |q|, |q⊥| beyond each.
    pub fn query(&self, v: &[f32]) -> ProjectedQuery {
        let mut p = Vec::with_capacity(self.d + self.d2);
        dots(v, &self.basis, &mut p);
        let q2: f64 = v.iter().map(|x| f64::from(*x).powi(2)).sum();
        let scaled: Vec<f32> = p.iter().zip(&self.scales).map(|(a, s)| a * s).collect();
        let (p1, p2) = p.split_at(self.d);
        let kept1: f64 = p1.iter().map(|x| f64::from(*x).powi(2)).sum();
        let kept2: f64 = p2.iter().map(|x| f64::from(*x).powi(2)).sum();
        let mut second = vec![0.0f32; DIMS2];
        second[..self.d2].copy_from_slice(&scaled[self.d..]);
        ProjectedQuery {
            q: quantize(&scaled[..self.d]),
            q2: quantize(&second),
            norm: (q2.sqrt() * 1.000_001) as f32,
            rest: rest(q2, kept1),
            rest2: rest(q2, kept1 + kept2),
            rounding: ROUNDING,
        }
    }

    /// Whether there is a second tier (the vectors have more than `DIMS` dimensions).
    pub fn has_second(&self) -> bool {
        self.d2 > 0
    }

    /// Every row's second tier.
    pub fn lines(&self) -> &[Line] {
        &self.rows.lines
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
            + std::mem::size_of::<Line>() * r.lines.capacity()
    }
}

/// One tier's codes of a vector's coordinates `y` with their `scales`, each handed to `put`
/// with its place; returns the bound terms.
fn codes(y: &[f32], scales: &[f32], mut put: impl FnMut(usize, i8)) -> Terms {
    let mut err2 = 0.0f64;
    let mut code2 = 0.0f64;
    let mut kept2 = 0.0f64;
    for (k, (v, s)) in y.iter().zip(scales).enumerate() {
        let c = (v / s).round().clamp(-127.0, 127.0);
        put(k, c as i8);
        err2 += (f64::from(*v) - f64::from(c) * f64::from(*s)).powi(2);
        code2 += f64::from(c).powi(2);
        kept2 += f64::from(*v).powi(2);
    }
    Terms {
        error: (err2.sqrt() * 1.0001 + 1e-6) as f32,
        code_norm: (code2.sqrt() * 1.000_001) as f32,
        kept2,
    }
}

/// |y − s∘c| and |c|, each rounded up, and |y|².
struct Terms {
    error: f32,
    code_norm: f32,
    kept2: f64,
}

/// The norm of what a projection leaves out, rounded up.
fn rest(whole2: f64, kept2: f64) -> f32 {
    ((whole2 - kept2).max(0.0) + f64::from(ROUNDING)).sqrt() as f32
}

/// Modified Gram-Schmidt on `rows` (`dim` each), each made orthogonal to the orthonormal
/// `done` rows too; a row that vanishes becomes a unit vector orthogonal to the others.
fn orthonormalize(dim: usize, done: &[f64], rows: &mut [f64]) {
    let d = rows.len() / dim;
    for i in 0..d {
        for attempt in 0..=dim {
            let (before, rest) = rows.split_at_mut(i * dim);
            let v = &mut rest[..dim];
            for _ in 0..2 {
                for u in done.chunks_exact(dim).chain(before.chunks_exact(dim)) {
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
