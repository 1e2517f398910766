//! The scans behind the near-duplicate check: the first pass over projected rows, the int8 scan
//! with the error bound that makes it exact, and their AVX2 / AVX-512 builds picked at run
//! time. The `unsafe` here is that call, made after the CPU was checked for the features, and
//! the hand-written AVX2 first pass.
#![allow(unsafe_code)]

/// A vector quantized to int8 with its scale and the norm of its quantization error.
pub struct Quantized {
    pub values: Vec<i8>,
    pub scale: f32,
    pub error: f32,
}

pub fn quantize(v: &[f32]) -> Quantized {
    let mut values = vec![0i8; v.len()];
    let (scale, error, _) = quantize_into(v, &mut values);
    Quantized {
        values,
        scale,
        error,
    }
}

/// [`quantize`] into `values` (as long as `v`), returning the scale, error and norm.
pub fn quantize_into(v: &[f32], values: &mut [i8]) -> (f32, f32, f32) {
    assert_eq!(v.len(), values.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { quantize_avx2(v, values) };
        }
    }
    quantize_generic(v, values)
}

/// [`quantize_generic`] by hand, 32 values at a time (the compiler leaves the maximum, the
/// rounding and the narrowing scalar): the same codes and scale, the sums in another order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn quantize_avx2(v: &[f32], values: &mut [i8]) -> (f32, f32, f32) {
    use std::arch::x86_64::*;
    let n = v.len();
    if !n.is_multiple_of(32) {
        return quantize_generic(v, values);
    }
    let sum4 = |x: __m256d| -> f64 {
        let mut lanes = [0.0f64; 4];
        // SAFETY: a 4-double store into a 4-double array.
        unsafe { _mm256_storeu_pd(lanes.as_mut_ptr(), x) };
        lanes.iter().sum()
    };
    // SAFETY: every load and store below is at an offset `at + 8 k < n` (or `at < n` for the
    // 32 codes) of slices `n` long (`values.len() == n`, checked by the caller), unaligned.
    unsafe {
        let p = v.as_ptr();
        let sign = _mm256_set1_ps(-0.0);
        let mut m = _mm256_setzero_ps();
        for at in (0..n).step_by(8) {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(at))));
        }
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), m);
        let max = lanes.iter().fold(0.0f32, |a, b| a.max(*b));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        let (sv, sd) = (_mm256_set1_ps(scale), _mm256_set1_pd(f64::from(scale)));
        let (lo, hi) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let (mut err, mut norm) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        for at in (0..n).step_by(32) {
            let mut ints = [_mm256_setzero_si256(); 4];
            for (k, int) in ints.iter_mut().enumerate() {
                let x = _mm256_loadu_ps(p.add(at + 8 * k));
                let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                    _mm256_div_ps(x, sv),
                );
                let r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
                *int = _mm256_cvtps_epi32(r);
                for (xh, rh) in [
                    (_mm256_castps256_ps128(x), _mm256_castps256_ps128(r)),
                    (_mm256_extractf128_ps::<1>(x), _mm256_extractf128_ps::<1>(r)),
                ] {
                    let d = _mm256_mul_pd(_mm256_cvtps_pd(rh), sd);
                    let diff = _mm256_sub_pd(_mm256_cvtps_pd(xh), d);
                    err = _mm256_fmadd_pd(diff, diff, err);
                    norm = _mm256_fmadd_pd(d, d, norm);
                }
            }
            // Narrowed in 128-bit halves, then the 4-byte groups put back in order.
            let codes = _mm256_packs_epi16(
                _mm256_packs_epi32(ints[0], ints[1]),
                _mm256_packs_epi32(ints[2], ints[3]),
            );
            let codes = _mm256_permutevar8x32_epi32(codes, order);
            _mm256_storeu_si256(values.as_mut_ptr().add(at).cast::<__m256i>(), codes);
        }
        let (err2, norm2) = (sum4(err), sum4(norm));
        (
            scale,
            (err2.sqrt() * 1.0001 + 1e-6) as f32,
            (norm2.sqrt() * 1.000_001) as f32,
        )
    }
}

/// Written in lanes so that it vectorises: the largest magnitude in 8 lanes, codes rounded
/// half to even, the error and norm summed in f64 lanes.
#[inline(always)]
fn quantize_generic(v: &[f32], values: &mut [i8]) -> (f32, f32, f32) {
    let mut lanes = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let mut max = chunks
        .remainder()
        .iter()
        .fold(0.0f32, |m, x| m.max(x.abs()));
    for c in chunks {
        for k in 0..8 {
            lanes[k] = lanes[k].max(c[k].abs());
        }
    }
    max = lanes.iter().fold(max, |m, x| m.max(*x));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    for (q, x) in values.iter_mut().zip(v) {
        *q = (x / scale).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    let (mut err2, mut norm2) = ([0.0f64; 4], [0.0f64; 4]);
    let (vc, qc) = (v.chunks_exact(4), values.chunks_exact(4));
    let (vt, qt) = (vc.remainder(), qc.remainder());
    for (x, q) in vc.zip(qc) {
        for k in 0..4 {
            let d = f64::from(q[k]) * f64::from(scale);
            err2[k] += (f64::from(x[k]) - d).powi(2);
            norm2[k] += d * d;
        }
    }
    for (x, q) in vt.iter().zip(qt) {
        let d = f64::from(*q) * f64::from(scale);
        err2[0] += (f64::from(*x) - d).powi(2);
        norm2[0] += d * d;
    }
    let (err2, norm2): (f64, f64) = (err2.iter().sum(), norm2.iter().sum());
    // Rounded up a little so float error in these sums cannot make the bound too tight.
    (
        scale,
        (err2.sqrt() * 1.0001 + 1e-6) as f32,
        (norm2.sqrt() * 1.000_001) as f32,
    )
}

#[inline(always)]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| i32::from(*x) * i32::from(*y))
        .sum()
}

pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A dot product summed in 16 lanes, so it vectorises; off from the exact value by at most
/// 2e-6 |a| |b| at 384 dimensions, which the callers allow for.
pub fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..16 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `dot_lanes` of `q` with each of `rows` (`q.len()` values each), in `out` (with fused
/// multiply-adds where the CPU has them, which only rounds less).
pub fn dots(q: &[f32], rows: &[f32], out: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && q.len().is_multiple_of(16)
        {
            // SAFETY: the CPU supports the features the function is compiled for, and the
            // rows are whole multiples of 16 values, as it needs.
            return unsafe { dots_fma(q, rows, out) };
        }
    }
    out.clear();
    out.extend(rows.chunks_exact(q.len()).map(|c| dot_lanes(q, c)));
}

/// Two accumulators of 8 lanes per row, the query's values loaded once for four rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dots_fma(q: &[f32], rows: &[f32], out: &mut Vec<f32>) {
    use std::arch::x86_64::*;
    let dim = q.len();
    assert!(dim.is_multiple_of(16));
    out.clear();
    let sum = |v: __m256| -> f32 {
        let mut lanes = [0.0f32; 8];
        // SAFETY: an 8-float store into an 8-float array.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        lanes.iter().sum()
    };
    let mut groups = rows.chunks_exact(4 * dim);
    for group in &mut groups {
        let mut acc = [_mm256_setzero_ps(); 8];
        // SAFETY: `group` holds 4 rows of `dim` values and `q` holds `dim`; every load reads
        // 8 values at an offset below `dim` - 8 + 1 within them.
        unsafe {
            let (qp, rp) = (q.as_ptr(), group.as_ptr());
            for at in (0..dim).step_by(16) {
                let (q0, q1) = (_mm256_loadu_ps(qp.add(at)), _mm256_loadu_ps(qp.add(at + 8)));
                for r in 0..4 {
                    let row = rp.add(r * dim + at);
                    acc[2 * r] = _mm256_fmadd_ps(q0, _mm256_loadu_ps(row), acc[2 * r]);
                    acc[2 * r + 1] =
                        _mm256_fmadd_ps(q1, _mm256_loadu_ps(row.add(8)), acc[2 * r + 1]);
                }
            }
        }
        for r in 0..4 {
            out.push(sum(_mm256_add_ps(acc[2 * r], acc[2 * r + 1])));
        }
    }
    out.extend(
        groups
            .remainder()
            .chunks_exact(dim)
            .map(|c| dot_lanes(q, c)),
    );
}

/// The int8 rows, struct-of-arrays, `dim` values a row.
pub struct Rows<'a> {
    pub dim: usize,
    pub values: &'a [i8],
    pub scales: &'a [f32],
    pub errors: &'a [f32],
    pub norms: &'a [f32],
}

impl Rows<'_> {
    /// Whether row `i` can reach `threshold` with `q` by the int8 error bound.
    #[inline(always)]
    pub fn may_reach(&self, i: usize, q: &Quantized, threshold: f32) -> bool {
        let row = &self.values[i * self.dim..(i + 1) * self.dim];
        let approx = self.scales[i] * q.scale * dot_i8(row, &q.values) as f32;
        // |a.b - a'.b'| <= |a - a'| |b| + |a'| |b - b'|, with |b| = 1.
        let bound = self.errors[i] + self.norms[i] * q.error + 1e-5;
        approx + bound >= threshold
    }
}

/// The int8 scan: finds stored rows whose similarity the error bound cannot rule out.
pub struct Scan<'a> {
    pub rows: Rows<'a>,
    pub query: &'a Quantized,
    pub threshold: f32,
}

impl Scan<'_> {
    #[inline(always)]
    fn next_candidate_generic(&self, from: usize) -> Option<usize> {
        let mut i = from;
        while i < self.rows.scales.len() {
            if self.rows.may_reach(i, self.query, self.threshold) {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// The same loop compiled for wider vector units, picked at run time.
    pub fn next_candidate(&self, from: usize) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                // SAFETY: the CPU supports the features the function is compiled for.
                return unsafe { self.next_candidate_avx512(from) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: as above.
                return unsafe { self.next_candidate_avx2(from) };
            }
        }
        self.next_candidate_generic(from)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn next_candidate_avx2(&self, from: usize) -> Option<usize> {
        self.next_candidate_generic(from)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn next_candidate_avx512(&self, from: usize) -> Option<usize> {
        self.next_candidate_generic(from)
    }
}

/// Keeps the positions in `which` whose rows may reach `threshold` with `q` by the int8 bound.
pub fn retain_reaching(rows: &Rows, q: &Quantized, threshold: f32, which: &mut Vec<u32>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { retain_avx512(rows, q, threshold, which) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { retain_avx2(rows, q, threshold, which) };
        }
    }
    retain_generic(rows, q, threshold, which, |_| {});
}

/// Keeps the items `keep` accepts, in order, handing each to `fetch` a few places ahead of
/// its check: the rows behind them lie anywhere in memory, and where the CPU can fetch them
/// early, waiting for each in turn would cost more than the arithmetic.
#[inline(always)]
fn retain_ahead<T: Copy>(items: &mut Vec<T>, fetch: impl Fn(T), keep: impl Fn(T) -> bool) {
    const AHEAD: usize = 8;
    for item in items.iter().take(AHEAD) {
        fetch(*item);
    }
    let mut kept = 0;
    for k in 0..items.len() {
        if let Some(ahead) = items.get(k + AHEAD) {
            fetch(*ahead);
        }
        let item = items[k];
        if keep(item) {
            items[kept] = item;
            kept += 1;
        }
    }
    items.truncate(kept);
}

#[inline(always)]
fn retain_generic(
    rows: &Rows,
    q: &Quantized,
    threshold: f32,
    which: &mut Vec<u32>,
    fetch: impl Fn(&[i8]),
) {
    let row = |i: u32| &rows.values[i as usize * rows.dim..(i as usize + 1) * rows.dim];
    retain_ahead(
        which,
        |i| fetch(row(i)),
        |i| rows.may_reach(i as usize, q, threshold),
    );
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn retain_avx2(rows: &Rows, q: &Quantized, threshold: f32, which: &mut Vec<u32>) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    retain_generic(rows, q, threshold, which, |row| {
        for line in row.chunks(64) {
            _mm_prefetch::<_MM_HINT_T0>(line.as_ptr());
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn retain_avx512(rows: &Rows, q: &Quantized, threshold: f32, which: &mut Vec<u32>) {
    retain_generic(rows, q, threshold, which, |_| {});
}

/// The projected rows the first pass reads: `d` int8 codes a row, with each row's bound terms
/// (see `dedup::project`).
pub struct Projected<'a> {
    pub d: usize,
    pub codes: &'a [i8],
    pub error: &'a [f32],
    pub code_norm: &'a [f32],
    pub rest: &'a [f32],
}

/// Codes in a row's second tier.
pub const LINE_CODES: usize = 48;

/// A row's second tier (see `dedup::project`): its codes on the next directions and their
/// bound terms, in one cache line.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct Line {
    pub codes: [i8; LINE_CODES],
    pub error: f32,
    pub code_norm: f32,
    /// |x⊥| beyond both tiers, rounded up.
    pub rest: f32,
    _pad: f32,
}

impl Default for Line {
    fn default() -> Line {
        Line {
            codes: [0; LINE_CODES],
            error: 0.0,
            code_norm: 0.0,
            rest: 0.0,
            _pad: 0.0,
        }
    }
}

/// The query's side of both tiers' bounds.
pub struct ProjectedQuery {
    /// The query's projection, scaled per coordinate, in int8: the first tier's, the second's.
    pub q: Quantized,
    pub q2: Quantized,
    /// |q|, and the norm of what the projection leaves out of q: beyond the first tier, beyond
    /// both.
    pub norm: f32,
    pub rest: f32,
    pub rest2: f32,
    pub rounding: f32,
}

/// A row the first pass left: its position and the first tier's bound on its share of the
/// similarity (everything but the part beyond the tier), which the second tier adds to.
#[derive(Clone, Copy)]
pub struct Left {
    pub at: u32,
    pub first: f32,
}

/// Appends to `out` (offset by `base`) the rows of `p` that may reach `threshold` with the
/// query by the projection bound (see `dedup::project`).
pub fn prescan(p: &Projected, q: &ProjectedQuery, threshold: f32, base: u32, out: &mut Vec<Left>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && p.d == 32 {
            // SAFETY: as above; `prescan_avx2` also needs rows of 32 values.
            return unsafe { prescan_avx2(p, q, threshold, base, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { prescan_avx2_any(p, q, threshold, base, out) };
        }
    }
    prescan_generic(p, q, threshold, base, out);
}

#[inline(always)]
fn prescan_generic(
    p: &Projected,
    q: &ProjectedQuery,
    threshold: f32,
    base: u32,
    out: &mut Vec<Left>,
) {
    let need = threshold - q.rounding;
    let (scale, qerr) = (q.q.scale, q.q.error);
    for (i, row) in p.codes.chunks_exact(p.d).enumerate() {
        let approx = scale * dot_i8(row, &q.q.values) as f32;
        let first = approx + q.norm * p.error[i] + qerr * p.code_norm[i];
        if first + q.rest * p.rest[i] >= need {
            out.push(Left {
                at: base + i as u32,
                first,
            });
        }
    }
}

/// The first pass by hand for AVX2 and rows of 32 values, eight rows at a time: the compiler
/// does not find this shape (one horizontal sum for eight rows, the bound in one vector).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn prescan_avx2(p: &Projected, q: &ProjectedQuery, threshold: f32, base: u32, out: &mut Vec<Left>) {
    use std::arch::x86_64::*;
    assert_eq!(p.d, 32);
    assert_eq!(q.q.values.len(), 32);
    let n = p.rest.len();
    let blocks = n / 8;
    assert!(p.codes.len() >= n * 32 && p.error.len() >= n && p.code_norm.len() >= n);
    let need = threshold - q.rounding;
    // SAFETY: every load below reads within the slices (lengths checked above: rows of 32
    // bytes, 8 rows a block, `blocks * 8 <= n`); unaligned loads are used throughout.
    unsafe {
        let qv = q.q.values.as_ptr() as *const __m128i;
        let q_lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(qv));
        let q_hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(qv.add(1)));
        let qscale = _mm256_set1_ps(q.q.scale);
        let qerr = _mm256_set1_ps(q.q.error);
        let qnorm = _mm256_set1_ps(q.norm);
        let qrest = _mm256_set1_ps(q.rest);
        let needv = _mm256_set1_ps(need);
        let values = p.codes.as_ptr();
        for b in 0..blocks {
            // A macro, not a closure: a closure would not be compiled with AVX2.
            macro_rules! row {
                ($r:expr) => {{
                    let v = _mm256_loadu_si256(values.add((b * 8 + $r) * 32) as *const __m256i);
                    let lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v));
                    let hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(v));
                    _mm256_add_epi32(_mm256_madd_epi16(lo, q_lo), _mm256_madd_epi16(hi, q_hi))
                }};
            }
            let t0 = _mm256_hadd_epi32(row!(0), row!(1));
            let t1 = _mm256_hadd_epi32(row!(2), row!(3));
            let t2 = _mm256_hadd_epi32(row!(4), row!(5));
            let t3 = _mm256_hadd_epi32(row!(6), row!(7));
            let u0 = _mm256_hadd_epi32(t0, t1);
            let u1 = _mm256_hadd_epi32(t2, t3);
            let dots = _mm256_add_epi32(
                _mm256_permute2x128_si256::<0x20>(u0, u1),
                _mm256_permute2x128_si256::<0x31>(u0, u1),
            );
            let at = b * 8;
            let error = _mm256_loadu_ps(p.error.as_ptr().add(at));
            let code_norm = _mm256_loadu_ps(p.code_norm.as_ptr().add(at));
            let rest = _mm256_loadu_ps(p.rest.as_ptr().add(at));
            let approx = _mm256_mul_ps(_mm256_cvtepi32_ps(dots), qscale);
            let first = _mm256_add_ps(
                _mm256_add_ps(approx, _mm256_mul_ps(qnorm, error)),
                _mm256_mul_ps(qerr, code_norm),
            );
            let bound = _mm256_add_ps(first, _mm256_mul_ps(qrest, rest));
            let mut mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(bound, needv)) as u32;
            if mask != 0 {
                let mut lanes = [0.0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), first);
                while mask != 0 {
                    let lane = mask.trailing_zeros() as usize;
                    out.push(Left {
                        at: base + (at + lane) as u32,
                        first: lanes[lane],
                    });
                    mask &= mask - 1;
                }
            }
        }
    }
    let done = blocks * 8;
    let tail = Projected {
        d: p.d,
        codes: &p.codes[done * 32..],
        error: &p.error[done..],
        code_norm: &p.code_norm[done..],
        rest: &p.rest[done..],
    };
    prescan_generic(&tail, q, threshold, base + done as u32, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn prescan_avx2_any(
    p: &Projected,
    q: &ProjectedQuery,
    threshold: f32,
    base: u32,
    out: &mut Vec<Left>,
) {
    prescan_generic(p, q, threshold, base, out);
}

/// Keeps the rows in `left` that may still reach `threshold` by the second tier's bound, the
/// first tier's share carried over (see `dedup::project`). `lines` holds every projected row.
pub fn retain_second(lines: &[Line], q: &ProjectedQuery, threshold: f32, left: &mut Vec<Left>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { retain_second_avx2(lines, q, threshold, left) };
        }
    }
    retain_second_generic(lines, q, threshold, left, |_| {});
}

#[inline(always)]
fn retain_second_generic(
    lines: &[Line],
    q: &ProjectedQuery,
    threshold: f32,
    left: &mut Vec<Left>,
    fetch: impl Fn(&Line),
) {
    let need = threshold - q.rounding;
    let q2: &[i8; LINE_CODES] = q.q2.values.as_slice().try_into().expect("48 codes");
    retain_ahead(
        left,
        |l| fetch(&lines[l.at as usize]),
        |l| {
            let line = &lines[l.at as usize];
            let approx = q.q2.scale * dot_i8(&line.codes, q2) as f32;
            let bound = l.first
                + approx
                + q.norm * line.error
                + q.q2.error * line.code_norm
                + q.rest2 * line.rest;
            bound >= need
        },
    );
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn retain_second_avx2(lines: &[Line], q: &ProjectedQuery, threshold: f32, left: &mut Vec<Left>) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    retain_second_generic(lines, q, threshold, left, |line| {
        _mm_prefetch::<_MM_HINT_T0>((line as *const Line).cast::<i8>());
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The hand-written builds must agree with the generic code they replace: the same codes
    /// and scale, the error and norm to rounding.
    #[test]
    fn the_simd_builds_agree_with_the_generic_code() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for dim in [32usize, 64, 384] {
            for _ in 0..200 {
                let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let (mut a, mut b) = (vec![0i8; dim], vec![0i8; dim]);
                let x = quantize_into(&v, &mut a);
                let y = quantize_generic(&v, &mut b);
                assert_eq!(a, b);
                assert_eq!(x.0, y.0);
                assert!((x.1 - y.1).abs() <= 1e-6 * y.1.max(1.0), "{x:?} {y:?}");
                assert!((x.2 - y.2).abs() <= 1e-6 * y.2.max(1.0), "{x:?} {y:?}");
                let rows: Vec<f32> = (0..dim * 7)
                    .map(|_| rng.random_range(-1.0f32..1.0))
                    .collect();
                let mut out = Vec::new();
                dots(&v, &rows, &mut out);
                for (d, row) in out.iter().zip(rows.chunks_exact(dim)) {
                    let exact: f64 = v
                        .iter()
                        .zip(row)
                        .map(|(p, q)| f64::from(*p) * f64::from(*q))
                        .sum();
                    assert!((f64::from(*d) - exact).abs() < 1e-5, "{d} {exact}");
                }
            }
        }
    }
}
