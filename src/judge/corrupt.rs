//! Known ways to break a good dialogue, for checking that the judge notices: turns shuffled,
//! the planned outcome swapped, the dialogue cut to two turns, and the user's utterances copied
//! over the assistant's replies. Each is seeded, so a benchmark repeats exactly.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::dataset::{Dialogue, Speaker};
use crate::parse::ParsedTurn;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Corruption {
    /// The (user, assistant) turns in another order; each reply stays with its question.
    Shuffled,
    /// The dialogue unchanged, the plan's outcome another one (Resolved <-> Failed,
    /// Escalated -> Resolved): the ending no longer matches the plan.
    OutcomeSwapped,
    /// Only the first two turns.
    Truncated,
    /// Every assistant reply replaced by the user's utterance of its turn.
    SideCopied,
}

impl Corruption {
    pub const ALL: [Corruption; 4] = [
        Corruption::Shuffled,
        Corruption::OutcomeSwapped,
        Corruption::Truncated,
        Corruption::SideCopied,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Corruption::Shuffled => "turns_shuffled",
            Corruption::OutcomeSwapped => "outcome_swapped",
            Corruption::Truncated => "truncated_to_two_turns",
            Corruption::SideCopied => "user_copied_into_assistant",
        }
    }
}

/// The turns and planned outcome the judge is shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub turns: Vec<ParsedTurn>,
    pub outcome: String,
}

/// The fewest turns a dialogue needs for every corruption to change it.
pub const MIN_TURNS: usize = 4;

/// A base dialogue as (user, assistant) turns: each user utterance with the reply after it.
/// Utterances of one side in a row are joined.
pub fn turns_of(dialogue: &Dialogue) -> Vec<ParsedTurn> {
    let mut turns: Vec<ParsedTurn> = Vec::new();
    for t in &dialogue.turns {
        let text = t.utterance.trim();
        match (t.speaker, turns.last_mut()) {
            (Speaker::User, Some(last)) if last.assistant_response.is_empty() => {
                last.utterance = format!("{} {text}", last.utterance);
            }
            (Speaker::User, _) => turns.push(ParsedTurn {
                utterance: text.to_string(),
                intent: String::new(),
                assistant_response: String::new(),
            }),
            (Speaker::Assistant, Some(last)) if last.assistant_response.is_empty() => {
                last.assistant_response = text.to_string();
            }
            (Speaker::Assistant, Some(last)) => {
                last.assistant_response = format!("{} {text}", last.assistant_response);
            }
            // A reply before any user utterance has no question: left out.
            (Speaker::Assistant, None) => {}
        }
    }
    turns.retain(|t| !t.assistant_response.is_empty());
    turns
}

fn swapped(outcome: &str) -> &'static str {
    match outcome {
        "Resolved" => "Failed",
        _ => "Resolved",
    }
}

/// `original` broken in the way `kind` names; `seed` decides the shuffle.
pub fn corrupt(original: &Case, kind: Corruption, seed: u64) -> Case {
    let mut case = original.clone();
    match kind {
        Corruption::Shuffled => {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            case.turns.shuffle(&mut rng);
            if case.turns == original.turns && case.turns.len() > 1 {
                case.turns.rotate_left(1);
            }
        }
        Corruption::OutcomeSwapped => case.outcome = swapped(&original.outcome).to_string(),
        Corruption::Truncated => case.turns.truncate(2),
        Corruption::SideCopied => {
            for t in &mut case.turns {
                t.assistant_response = t.utterance.clone();
            }
        }
    }
    case
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(n: usize) -> Case {
        Case {
            turns: (0..n)
                .map(|i| ParsedTurn {
                    utterance: format!("u{i}"),
                    intent: String::new(),
                    assistant_response: format!("a{i}"),
                })
                .collect(),
            outcome: "Resolved".into(),
        }
    }

    #[test]
    fn every_corruption_changes_the_case_in_its_own_way() {
        let original = case(MIN_TURNS);
        for kind in Corruption::ALL {
            for seed in 0..20 {
                let c = corrupt(&original, kind, seed);
                assert_ne!(c, original, "{kind:?} seed {seed}");
                match kind {
                    Corruption::Shuffled => {
                        let mut sorted = c.turns.clone();
                        sorted.sort_by(|a, b| a.utterance.cmp(&b.utterance));
                        assert_eq!(sorted, original.turns);
                    }
                    Corruption::OutcomeSwapped => assert_eq!(c.outcome, "Failed"),
                    Corruption::Truncated => assert_eq!(c.turns[..], original.turns[..2]),
                    Corruption::SideCopied => {
                        assert!(c.turns.iter().all(|t| t.utterance == t.assistant_response))
                    }
                }
            }
        }
    }

    #[test]
    fn base_dialogues_pair_each_user_utterance_with_the_reply_after_it() {
        use crate::dataset::Turn;
        let turn = |speaker, text: &str| Turn {
            speaker,
            utterance: text.into(),
        };
        let d = Dialogue {
            dialogue_id: "d".into(),
            services: vec![],
            turns: vec![
                turn(Speaker::Assistant, "hello?"),
                turn(Speaker::User, "a"),
                turn(Speaker::User, "b"),
                turn(Speaker::Assistant, "c"),
                turn(Speaker::User, "d"),
            ],
        };
        let turns = turns_of(&d);
        assert_eq!(turns.len(), 1);
        assert_eq!(turns[0].utterance, "a b");
        assert_eq!(turns[0].assistant_response, "c");
    }
}
