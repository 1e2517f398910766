//! Lexical diversity of the accepted dialogues: distinct-n of user and assistant utterances,
//! the intent vocabulary, turns per dialogue and words per utterance.
//!
//! Streamed: each n-gram is kept as a 64-bit hash, so memory grows with the number of distinct
//! n-grams (bounded by the text's size: at most one entry per word per n, 8 bytes each plus the
//! set's overhead), never with the dialogues themselves. Counts of turns and words are integer
//! histograms, so their percentiles need no stored values.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use serde::Serialize;

use crate::parse::ParsedTurn;

/// The n of distinct-n reported: 1, 2 and 3.
const NS: usize = 3;

/// Words of an utterance as distinct-n counts them: lowercased, split at every character that is
/// neither alphanumeric nor an apostrophe.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// [`words`] as 64-bit hashes (FNV-1a over the lowercased characters), without allocating.
fn word_hashes(text: &str, out: &mut Vec<u64>) {
    out.clear();
    let is_word = |c: char| c.is_alphanumeric() || c == '\'';
    for word in text.split(|c: char| !is_word(c)).filter(|w| !w.is_empty()) {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for c in word.chars().flat_map(char::to_lowercase) {
            h = (h ^ u64::from(u32::from(c))).wrapping_mul(0x0000_0100_0000_01b3);
        }
        out.push(h);
    }
}

/// The hash of an n-gram from its words' hashes (order matters; n is mixed in).
fn gram_hash(words: &[u64]) -> u64 {
    let mut h = words.len() as u64;
    for w in words {
        h = (h.rotate_left(29) ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    h ^ (h >> 32)
}

/// The values are hashes already: a set of them needs no second hash.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type HashSet64 = HashSet<u64, BuildHasherDefault<Identity>>;

/// A histogram of non-negative integer values; percentiles are nearest-rank.
#[derive(Debug, Default, Clone)]
pub struct Histogram(BTreeMap<u64, u64>);

impl Histogram {
    pub fn add(&mut self, value: u64) {
        *self.0.entry(value).or_default() += 1;
    }

    /// The smallest value with at least `p` of the values at or below it (nearest rank).
    fn percentile(&self, p: f64, count: u64) -> u64 {
        let rank = ((p * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (value, n) in &self.0 {
            seen += n;
            if seen >= rank {
                return *value;
            }
        }
        0
    }

    pub fn summary(&self) -> Summary {
        let count: u64 = self.0.values().sum();
        let total: u64 = self.0.iter().map(|(v, n)| v * n).sum();
        Summary {
            count,
            mean: if count == 0 {
                0.0
            } else {
                total as f64 / count as f64
            },
            min: self.0.keys().next().copied().unwrap_or(0),
            p50: self.percentile(0.50, count),
            p90: self.percentile(0.90, count),
            p99: self.percentile(0.99, count),
            max: self.0.keys().next_back().copied().unwrap_or(0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub mean: f64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

/// Distinct-n of one side of the conversation: distinct n-grams over all n-grams, where
/// n-grams do not cross utterances.
#[derive(Debug, Default)]
pub struct DistinctN {
    seen: [HashSet64; NS],
    total: [u64; NS],
    words: Histogram,
    /// Reused between utterances.
    buffer: Vec<u64>,
}

impl DistinctN {
    pub fn add(&mut self, text: &str) {
        let mut words = std::mem::take(&mut self.buffer);
        word_hashes(text, &mut words);
        self.words.add(words.len() as u64);
        for n in 1..=NS {
            for gram in words.windows(n) {
                self.seen[n - 1].insert(gram_hash(gram));
                self.total[n - 1] += 1;
            }
        }
        self.buffer = words;
    }

    pub fn report(&self) -> SideReport {
        let ratio = |i: usize| {
            if self.total[i] == 0 {
                0.0
            } else {
                self.seen[i].len() as f64 / self.total[i] as f64
            }
        };
        SideReport {
            distinct_1: ratio(0),
            distinct_2: ratio(1),
            distinct_3: ratio(2),
            ngrams: self.total,
            distinct_ngrams: [0, 1, 2].map(|i| self.seen[i].len() as u64),
            words_per_utterance: self.words.summary(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SideReport {
    pub distinct_1: f64,
    pub distinct_2: f64,
    pub distinct_3: f64,
    /// All 1-, 2- and 3-grams.
    pub ngrams: [u64; NS],
    /// Distinct 1-, 2- and 3-grams.
    pub distinct_ngrams: [u64; NS],
    pub words_per_utterance: Summary,
}

#[derive(Debug, Default)]
pub struct Lexical {
    user: DistinctN,
    assistant: DistinctN,
    intents: BTreeSet<String>,
    turns: Histogram,
}

#[derive(Debug, Serialize)]
pub struct LexicalReport {
    pub user: SideReport,
    pub assistant: SideReport,
    /// Distinct intent labels.
    pub intent_vocabulary: u64,
    pub turns_per_dialogue: Summary,
}

impl Lexical {
    pub fn add(&mut self, turns: &[ParsedTurn]) {
        self.turns.add(turns.len() as u64);
        for t in turns {
            self.user.add(&t.utterance);
            self.assistant.add(&t.assistant_response);
            if !self.intents.contains(&t.intent) {
                self.intents.insert(t.intent.clone());
            }
        }
    }

    pub fn report(&self) -> LexicalReport {
        LexicalReport {
            user: self.user.report(),
            assistant: self.assistant.report(),
            intent_vocabulary: self.intents.len() as u64,
            turns_per_dialogue: self.turns.summary(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_lowercase_and_split_at_punctuation_keeping_apostrophes() {
        assert_eq!(
            words("Hi, I'd like a TAXI!"),
            ["hi", "i'd", "like", "a", "taxi"]
        );
        assert!(words(" ... ").is_empty());
    }

    #[test]
    fn word_hashes_split_like_words_and_ignore_case() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        word_hashes("Hi, I'd like a TAXI!", &mut a);
        word_hashes("hi i'd LIKE a taxi", &mut b);
        assert_eq!(a, b);
        assert_eq!(a.len(), words("Hi, I'd like a TAXI!").len());
        assert_ne!(gram_hash(&a[0..2]), gram_hash(&[a[1], a[0]]));
    }

    #[test]
    fn distinct_n_counts_distinct_over_all_ngrams_within_utterances() {
        let mut d = DistinctN::default();
        d.add("a b a b");
        d.add("a c");
        let r = d.report();
        // 1-grams: a b a b a c -> 3 distinct of 6.
        assert_eq!((r.ngrams[0], r.distinct_ngrams[0]), (6, 3));
        assert_eq!(r.distinct_1, 0.5);
        // 2-grams: ab ba ab | ac -> 3 distinct of 4 (none across utterances).
        assert_eq!((r.ngrams[1], r.distinct_ngrams[1]), (4, 3));
        assert_eq!(r.distinct_2, 0.75);
        // 3-grams: aba bab -> 2 of 2.
        assert_eq!(r.distinct_3, 1.0);
        assert_eq!(r.words_per_utterance.mean, 3.0);
    }

    #[test]
    fn empty_input_reports_zero_not_nan() {
        let r = DistinctN::default().report();
        assert_eq!(r.distinct_1, 0.0);
        assert_eq!(r.words_per_utterance.count, 0);
        assert_eq!(r.words_per_utterance.p50, 0);
    }

    #[test]
    fn percentiles_are_nearest_rank_over_the_histogram() {
        let mut h = Histogram::default();
        for v in 1..=10 {
            h.add(v);
        }
        h.add(100);
        let s = h.summary();
        // 11 values: rank ceil(0.5*11)=6 -> 6; ceil(0.9*11)=10 -> 10; ceil(0.99*11)=11 -> 100.
        assert_eq!((s.min, s.p50, s.p90, s.p99, s.max), (1, 6, 10, 100, 100));
        assert_eq!(s.mean, 155.0 / 11.0);
    }
}
