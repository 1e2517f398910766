//! What the report gathers from the dialogues themselves, during the metrics' pass over them:
//! the dialogue browser's sample, each dialogue with its checks and judge score. (The judge's
//! totals are the status report's `metrics.judge`, counted in the same pass.)
//!
//! The sample is bottom-k: each dialogue gets a key hashed from the plan's seed and its
//! sequence number, and the `cap` smallest keys are kept in a heap. Every dialogue is kept up to
//! the cap; above it the sample is uniform, the same for the same store and seed, and memory
//! holds at most `cap` dialogues. A dialogue's browser record is built only when it enters the
//! heap.

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::llm::Usage;
use crate::parse::ParsedTurn;
use crate::quality::{Finding, QualityRecord};
use crate::record::judge::JudgeScore;
use crate::record::GeneratedDialogue;
use crate::store::DialogueSink;

/// One dialogue as the browser shows it: scenario, persona, provenance, checks and scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrowserDialogue {
    /// The store's sequence number.
    pub seq: u64,
    pub dialogue_id: String,
    /// The work item; `None` for dialogues brought in by `dgen import`.
    pub item_index: Option<u64>,
    pub attempt: u32,
    pub services: Vec<String>,
    pub scenario_category: String,
    pub generated_scenario: String,
    pub persona: String,
    pub regions: Vec<String>,
    pub time_slot: String,
    pub specific_time: String,
    pub resolution_status: String,
    pub user_emotion: String,
    pub assistant_emotion: String,
    pub base_dialogue_id: String,
    pub model: String,
    pub temperature: f64,
    pub top_p: f64,
    pub frequency_penalty: f64,
    pub presence_penalty: f64,
    pub seed: u64,
    pub usage: Usage,
    pub checks: Vec<Finding>,
    pub judge: Option<JudgeScore>,
    pub turns: Vec<ParsedTurn>,
}

impl BrowserDialogue {
    pub fn new(seq: u64, d: GeneratedDialogue, quality: QualityRecord) -> BrowserDialogue {
        BrowserDialogue {
            seq,
            dialogue_id: d.dialogue_id,
            item_index: d.item_index,
            attempt: d.attempt,
            services: d.services,
            scenario_category: d.scenario_category,
            generated_scenario: d.generated_scenario,
            persona: d.persona,
            regions: d.regions,
            time_slot: d.time_slot.2,
            specific_time: d.specific_time,
            resolution_status: d.resolution_status,
            user_emotion: d.user_emotion,
            assistant_emotion: d.assistant_emotion,
            base_dialogue_id: d.base_dialogue_id,
            model: d.model,
            temperature: d.temperature,
            top_p: d.top_p,
            frequency_penalty: d.frequency_penalty,
            presence_penalty: d.presence_penalty,
            seed: d.seed,
            usage: d.usage,
            checks: quality.checks,
            judge: quality.judge,
            turns: d.turns,
        }
    }
}

/// A kept dialogue, ordered by its key (then its sequence number, which is unique).
struct Kept {
    key: u64,
    dialogue: BrowserDialogue,
}

impl PartialEq for Kept {
    fn eq(&self, other: &Self) -> bool {
        (self.key, self.dialogue.seq) == (other.key, other.dialogue.seq)
    }
}
impl Eq for Kept {}
impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Kept {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.key, self.dialogue.seq).cmp(&(other.key, other.dialogue.seq))
    }
}

/// splitmix64's finalizer: a well-mixed 64-bit hash of a 64-bit value.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The browser's sample, filled by the store's pass over the dialogues.
pub struct Collector<'a> {
    seed: u64,
    cap: usize,
    seen: u64,
    /// A max-heap: the largest kept key is the next to go.
    kept: BinaryHeap<Kept>,
    cancel: &'a AtomicBool,
}

impl<'a> Collector<'a> {
    pub fn new(seed: u64, cap: usize, cancel: &'a AtomicBool) -> Collector<'a> {
        Collector {
            seed,
            cap,
            seen: 0,
            kept: BinaryHeap::with_capacity(cap + 1),
            cancel,
        }
    }

    /// The kept dialogues in store order, and how many were offered.
    pub fn finish(self) -> (Vec<BrowserDialogue>, u64) {
        let mut dialogues: Vec<BrowserDialogue> =
            self.kept.into_iter().map(|k| k.dialogue).collect();
        dialogues.sort_by_key(|d| d.seq);
        (dialogues, self.seen)
    }
}

impl DialogueSink for Collector<'_> {
    fn dialogue(
        &mut self,
        seq: u64,
        record: GeneratedDialogue,
        _embedding: &[u8],
        quality: QualityRecord,
    ) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            bail!(
                "report cancelled: the process that asked for it went away; no files were replaced"
            );
        }
        self.seen += 1;
        let key = mix(self.seed ^ mix(seq));
        let full = self.kept.len() >= self.cap;
        if full && self.kept.peek().is_none_or(|top| key >= top.key) {
            return Ok(());
        }
        self.kept.push(Kept {
            key,
            dialogue: BrowserDialogue::new(seq, record, quality),
        });
        if self.kept.len() > self.cap {
            self.kept.pop();
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn dialogue(seq: u64) -> GeneratedDialogue {
        GeneratedDialogue {
            item_index: Some(seq),
            attempt: 0,
            dialogue_id: format!("D{seq}"),
            services: vec!["taxi".into()],
            turns: vec![ParsedTurn {
                utterance: "I need a taxi </script> now".into(),
                intent: "book_taxi".into(),
                assistant_response: "Booked.".into(),
            }],
            user_emotion: "Calm".into(),
            assistant_emotion: "Patient".into(),
            scenario_category: "booking".into(),
            generated_scenario: "A taxi to the station.".into(),
            time_slot: (9, 12, "Late Morning".into()),
            regions: vec!["Oslo".into()],
            resolution_status: "Resolved".into(),
            persona: "A commuter.".into(),
            specific_time: "10:05".into(),
            base_dialogue_id: "B1".into(),
            model: "m".into(),
            temperature: 0.7,
            top_p: 0.9,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: seq,
            usage: Usage::default(),
            hash: [0; 32],
        }
    }

    pub(crate) fn score(overall: u8, naturalness: u8) -> JudgeScore {
        JudgeScore {
            overall,
            scores: [("naturalness".to_string(), naturalness)].into(),
            reasoning: "Fine.".into(),
            model: "judge-model".into(),
            prompt_version: "1".into(),
            prompt_tokens: 10,
            completion_tokens: 5,
        }
    }

    fn collect(seed: u64, cap: usize, n: u64) -> (Vec<BrowserDialogue>, u64) {
        let never = AtomicBool::new(false);
        let mut c = Collector::new(seed, cap, &never);
        for seq in 0..n {
            c.dialogue(seq, dialogue(seq), &[], QualityRecord::default())
                .unwrap();
        }
        c.finish()
    }

    #[test]
    fn under_the_cap_every_dialogue_is_kept_in_store_order() {
        let (kept, seen) = collect(1, 10, 7);
        assert_eq!(seen, 7);
        let seqs: Vec<u64> = kept.iter().map(|d| d.seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn above_the_cap_a_seeded_sample_of_cap_size_is_kept() {
        let seqs = |seed| -> Vec<u64> { collect(seed, 50, 1000).0.iter().map(|d| d.seq).collect() };
        let a = seqs(3);
        assert_eq!(a.len(), 50);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "store order");
        assert_eq!(a, seqs(3), "the same seed draws the same sample");
        assert_ne!(a, seqs(4));
        // Spread over the whole store, not its start.
        assert!(a.iter().any(|s| *s >= 500) && a.iter().any(|s| *s < 500));
    }

    #[test]
    fn each_kept_dialogue_carries_its_own_judge_score() {
        let never = AtomicBool::new(false);
        let mut c = Collector::new(0, 10, &never);
        for (seq, judge) in [(0, Some(score(4, 5))), (1, None)] {
            let quality = QualityRecord {
                checks: Vec::new(),
                judge,
                annotation: None,
            };
            c.dialogue(seq, dialogue(seq), &[], quality).unwrap();
        }
        let (kept, _) = c.finish();
        assert_eq!(kept[0].judge, Some(score(4, 5)));
        assert!(kept[1].judge.is_none());
    }

    #[test]
    fn a_cancelled_report_stops() {
        let cancel = AtomicBool::new(true);
        let mut c = Collector::new(0, 10, &cancel);
        let e = c
            .dialogue(0, dialogue(0), &[], QualityRecord::default())
            .unwrap_err();
        assert!(e.to_string().contains("report cancelled"), "{e}");
    }
}
