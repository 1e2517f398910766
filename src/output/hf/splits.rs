//! Which split a dialogue belongs to: a seeded hash of its id against the split fractions, so a
//! dialogue keeps its split when the dataset grows or is exported again.

use std::fmt;

/// `--splits train=0.9,validation=0.05,test=0.05`: names with fractions summing to 1.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitSpec(Vec<(String, f64)>);

impl Default for SplitSpec {
    fn default() -> SplitSpec {
        SplitSpec(vec![("train".to_string(), 1.0)])
    }
}

impl fmt::Display for SplitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(n, x)| format!("{n}={x}")).collect();
        f.write_str(&parts.join(","))
    }
}

impl SplitSpec {
    /// The clap value parser of `--splits`.
    pub fn parse(text: &str) -> Result<SplitSpec, String> {
        let mut splits: Vec<(String, f64)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, fraction) = part.split_once('=').ok_or_else(|| {
                format!(
                    "\"{part}\" is not NAME=FRACTION (e.g. train=0.9,validation=0.05,test=0.05)"
                )
            })?;
            let name = name.trim();
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && name.starts_with(|c: char| c.is_ascii_lowercase());
            if !valid {
                return Err(format!(
                    "split name \"{name}\" must be lowercase letters, digits and _ and start with a letter (e.g. train, validation, test)"
                ));
            }
            let fraction: f64 = fraction.trim().parse().map_err(|_| {
                format!(
                    "the fraction of split {name} is not a number: \"{}\"",
                    fraction.trim()
                )
            })?;
            if !(fraction.is_finite() && fraction > 0.0 && fraction <= 1.0) {
                return Err(format!(
                    "the fraction of split {name} must be in (0, 1], not {fraction}"
                ));
            }
            if splits.iter().any(|(n, _)| n == name) {
                return Err(format!("split {name} is named twice"));
            }
            splits.push((name.to_string(), fraction));
        }
        if splits.is_empty() {
            return Err("no split given; e.g. --splits train=0.9,validation=0.05,test=0.05".into());
        }
        let sum: f64 = splits.iter().map(|(_, x)| x).sum();
        if (sum - 1.0).abs() > 1e-6 {
            return Err(format!(
                "the split fractions add up to {sum}, not 1; e.g. train=0.9,validation=0.05,test=0.05"
            ));
        }
        Ok(SplitSpec(splits))
    }

    /// `(name, fraction)` in order.
    pub fn pairs(&self) -> &[(String, f64)] {
        &self.0
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn fraction(&self, split: usize) -> f64 {
        self.0[split].1
    }

    /// The split of the dialogue `id`: the first whose cumulative fraction exceeds the id's
    /// hash as a fraction of 2^64.
    pub fn assign(&self, seed: u64, id: &str) -> usize {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"dgen-split-v1");
        hasher.update(&seed.to_le_bytes());
        hasher.update(id.as_bytes());
        let bytes: [u8; 8] = hasher.finalize().as_bytes()[..8]
            .try_into()
            .expect("8 bytes");
        let point = u64::from_le_bytes(bytes) as f64 / 2f64.powi(64);
        let mut cumulative = 0.0;
        for (i, (_, fraction)) in self.0.iter().enumerate() {
            cumulative += fraction;
            if point < cumulative {
                return i;
            }
        }
        self.0.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_must_be_named_positive_and_sum_to_one() {
        let spec = SplitSpec::parse("train=0.9,validation=0.05,test=0.05").unwrap();
        assert_eq!(
            spec.names().collect::<Vec<_>>(),
            ["train", "validation", "test"]
        );
        for (bad, why) in [
            ("train=0.9", "add up to 0.9"),
            ("train=1.2", "(0, 1]"),
            ("train=0.5,train=0.5", "named twice"),
            ("Train=1", "lowercase"),
            ("train", "NAME=FRACTION"),
            ("train=x", "not a number"),
            ("", "no split"),
            ("train=nan", "(0, 1]"),
        ] {
            let err = SplitSpec::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn assignment_is_stable_and_close_to_the_fractions() {
        let spec = SplitSpec::parse("train=0.8,validation=0.1,test=0.1").unwrap();
        let mut counts = [0usize; 3];
        for i in 0..20_000 {
            let id = format!("MUL{i:04}.json_generated_{i}");
            let split = spec.assign(7, &id);
            assert_eq!(split, spec.assign(7, &id), "the same id, the same split");
            counts[split] += 1;
        }
        assert!((15_600..16_400).contains(&counts[0]), "{counts:?}");
        assert!((1_800..2_200).contains(&counts[1]), "{counts:?}");
        assert!((1_800..2_200).contains(&counts[2]), "{counts:?}");
        let other = (0..1000)
            .filter(|i| {
                let id = format!("id{i}");
                spec.assign(7, &id) != spec.assign(8, &id)
            })
            .count();
        assert!(
            other > 100,
            "another seed gives another assignment ({other})"
        );
    }
}
