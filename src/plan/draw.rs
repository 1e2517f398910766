//! The integer draws every plan decision goes through: the result depends on neither the
//! platform's `usize` nor a library's shuffle algorithm.

use rand::Rng;
use rand_chacha::ChaCha20Rng;

/// Uniform integer in `0..n`, the same on every platform.
pub fn below(rng: &mut ChaCha20Rng, n: usize) -> usize {
    debug_assert!(n > 0);
    rng.random_range(0..n as u64) as usize
}

pub fn pick<'a, T>(rng: &mut ChaCha20Rng, list: &'a [T]) -> &'a T {
    &list[below(rng, list.len())]
}

/// Fisher-Yates, written out so the order is pinned by this code alone.
pub fn shuffle<T>(rng: &mut ChaCha20Rng, list: &mut [T]) {
    for i in (1..list.len()).rev() {
        let j = below(rng, i + 1);
        list.swap(i, j);
    }
}

pub fn weighted(rng: &mut ChaCha20Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    // Rounding at the top end: the last bucket with weight.
    weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
}

pub fn inclusive(rng: &mut ChaCha20Rng, lo: u32, hi: u32) -> u32 {
    lo + below(rng, (hi - lo + 1) as usize) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn weighted_never_picks_zero_weight() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for _ in 0..10_000 {
            assert_ne!(weighted(&mut rng, &[0.5, 0.0, 0.5]), 1);
        }
    }
}
