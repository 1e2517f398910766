//! The int8 scan behind the near-duplicate check, with the error bound that makes it exact, and
//! its AVX2 / AVX-512 builds picked at run time: the `unsafe` here is that call, made after the
//! CPU was checked for the features.
#![allow(unsafe_code)]

/// A vector quantized to int8 with its scale and the norm of its quantization error.
pub struct Quantized {
    pub values: Vec<i8>,
    pub scale: f32,
    pub error: f32,
    pub norm: f32,
}

pub fn quantize(v: &[f32]) -> Quantized {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let values: Vec<i8> = v
        .iter()
        .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    let mut err2 = 0.0f64;
    let mut norm2 = 0.0f64;
    for (x, q) in v.iter().zip(&values) {
        let d = f64::from(*q) * f64::from(scale);
        err2 += (f64::from(*x) - d).powi(2);
        norm2 += d * d;
    }
    // Rounded up a little so float error in these sums cannot make the bound too tight.
    Quantized {
        values,
        scale,
        error: (err2.sqrt() * 1.0001 + 1e-6) as f32,
        norm: norm2.sqrt() as f32,
    }
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

/// The int8 scan: finds stored vectors whose similarity the error bound cannot rule out.
pub struct Scan<'a> {
    pub dim: usize,
    pub rows: &'a [i8],
    pub scales: &'a [f32],
    pub errors: &'a [f32],
    pub norms: &'a [f32],
    pub query: &'a Quantized,
    pub threshold: f32,
}

impl Scan<'_> {
    #[inline(always)]
    fn next_candidate_generic(&self, from: usize) -> Option<usize> {
        let q = self.query;
        let mut i = from;
        while i < self.scales.len() {
            let row = &self.rows[i * self.dim..(i + 1) * self.dim];
            let approx = self.scales[i] * q.scale * dot_i8(row, &q.values) as f32;
            // |a.b - a'.b'| <= |a - a'| |b| + |a'| |b - b'|, with |b| = 1.
            let bound = self.errors[i] + self.norms[i] * q.error + 1e-5;
            if approx + bound >= self.threshold {
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
