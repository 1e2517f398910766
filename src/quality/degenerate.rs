//! The checks for degenerate output that the turn-by-turn checks let through, as a 135M model
//! writes it: six turns of `Sophia` / `Buses` with intents `Movie`, `Cars`, `Clouds`. Each is a
//! pure function of the dialogue that returns what it found, or `None`.

use std::collections::BTreeMap;

use super::checks::normalize;
use super::Subject;
use crate::parse::ParsedTurn;

/// Texts of at most this many words are short ("Buses", "Thank you").
const SHORT_WORDS: usize = 2;
/// One speaker saying the same text this many times is a loop; twice is ordinary ("Is there
/// anything else?" again after a second request).
const REPEATS: usize = 3;
/// The same one-word intent on every turn is flagged from this many turns on.
const SAME_INTENT_MIN_TURNS: usize = 3;
/// How many examples a finding quotes.
const EXAMPLES: usize = 3;

fn word_count(text: &str) -> usize {
    normalize(text).split(' ').filter(|w| !w.is_empty()).count()
}

/// At most [`EXAMPLES`] distinct texts, quoted, in order of appearance.
fn examples<'a>(texts: impl Iterator<Item = &'a str>) -> String {
    let mut shown: Vec<&str> = Vec::new();
    for text in texts.map(str::trim) {
        if !shown.contains(&text) {
            shown.push(text);
        }
    }
    let more = shown.len() > EXAMPLES;
    let mut list: Vec<String> = shown
        .iter()
        .take(EXAMPLES)
        .map(|t| format!("\"{t}\""))
        .collect();
    if more {
        list.push("…".to_string());
    }
    list.join(", ")
}

/// More than half of the utterances and replies (together) have one or two words.
pub(super) fn short_utterances(s: &Subject<'_>) -> Option<String> {
    let texts: Vec<&str> = s
        .turns
        .iter()
        .flat_map(|t| [t.utterance.as_str(), t.assistant_response.as_str()])
        .collect();
    let short: Vec<&str> = texts
        .iter()
        .copied()
        .filter(|t| word_count(t) <= SHORT_WORDS)
        .collect();
    (short.len() * 2 > texts.len()).then(|| {
        format!(
            "{} of the {} utterances and replies have one or two words ({})",
            short.len(),
            texts.len(),
            examples(short.iter().copied())
        )
    })
}

/// One speaker says the same text (of any length, compared normalized) three or more times.
pub(super) fn repeated_reply(s: &Subject<'_>) -> Option<String> {
    type Field = fn(&ParsedTurn) -> &str;
    let speakers: [(&str, Field); 2] = [
        ("user", |t| &t.utterance),
        ("assistant", |t| &t.assistant_response),
    ];
    for (speaker, field) in speakers {
        let mut said: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, turn) in s.turns.iter().enumerate() {
            said.entry(normalize(field(turn))).or_default().push(i + 1);
        }
        let most = said.values().max_by_key(|turns| turns.len());
        if let Some(turns) = most.filter(|turns| turns.len() >= REPEATS) {
            let text = field(&s.turns[turns[0] - 1]).trim();
            let at: Vec<String> = turns.iter().map(ToString::to_string).collect();
            return Some(format!(
                "the {speaker} says \"{text}\" {} times (turns {})",
                turns.len(),
                at.join(", ")
            ));
        }
    }
    None
}

/// Lower-case ASCII words of letters and digits joined by `_` (or `-`), starting with a letter:
/// `book_flight`, `inform`, `request_alternatives`; not `Movie`, `Book Flight`, `ask?`.
fn is_label(intent: &str) -> bool {
    let label = intent.trim();
    label.starts_with(|c: char| c.is_ascii_lowercase())
        && label.split(['_', '-']).all(|word| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// An intent that is not a snake_case label, or the same one-word intent on every turn (three
/// or more): a label that never changes says nothing about the turns.
pub(super) fn intent_labels(s: &Subject<'_>) -> Option<String> {
    let bad: Vec<(usize, &str)> = s
        .turns
        .iter()
        .enumerate()
        .filter(|(_, t)| !is_label(&t.intent))
        .map(|(i, t)| (i + 1, t.intent.as_str()))
        .collect();
    if let Some(&(first, _)) = bad.first() {
        let shown = examples(bad.iter().map(|(_, intent)| *intent));
        return Some(if bad.len() == 1 {
            format!("turn {first}'s intent ({shown}) is not a snake_case label")
        } else {
            format!(
                "{} of the {} intents ({shown}) are not snake_case labels",
                bad.len(),
                s.turns.len()
            )
        });
    }
    let first = s.turns.first()?.intent.trim();
    let one_word = !first.contains(['_', '-']);
    let same = s.turns.iter().all(|t| t.intent.trim() == first);
    (s.turns.len() >= SAME_INTENT_MIN_TURNS && one_word && same).then(|| {
        format!(
            "every turn has the one-word intent \"{first}\" ({} turns)",
            s.turns.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(user: &str, intent: &str, assistant: &str) -> ParsedTurn {
        ParsedTurn {
            utterance: user.into(),
            intent: intent.into(),
            assistant_response: assistant.into(),
        }
    }

    fn subject(turns: &[ParsedTurn]) -> Subject<'_> {
        Subject {
            turns,
            services: &[],
            resolution_status: "Resolved",
            base_conversation: "",
        }
    }

    /// What SmolLM2-135M wrote for a flight dialogue (issue 18).
    fn junk() -> Vec<ParsedTurn> {
        ["Movie", "Cars", "Clouds", "Movie", "Cars", "Clouds"]
            .iter()
            .map(|intent| turn("Sophia", intent, "Buses"))
            .collect()
    }

    /// A sound flight dialogue with a one-word thanks, a repeated question and real labels.
    fn sound() -> Vec<ParsedTurn> {
        vec![
            turn(
                "I need to move my flight to Berlin to Friday morning.",
                "change_flight",
                "I can do that; there is a seat on the 8:40 flight. Is there anything else?",
            ),
            turn(
                "Yes, can I add a checked bag?",
                "add_baggage",
                "One bag is added for 30 euros. Is there anything else?",
            ),
            turn(
                "Thanks!",
                "thank",
                "You're welcome; your new flight is booked and confirmed.",
            ),
        ]
    }

    #[test]
    fn the_small_models_junk_fails_all_three() {
        let turns = junk();
        let s = subject(&turns);
        assert_eq!(
            short_utterances(&s).unwrap(),
            "12 of the 12 utterances and replies have one or two words (\"Sophia\", \"Buses\")"
        );
        assert_eq!(
            repeated_reply(&s).unwrap(),
            "the user says \"Sophia\" 6 times (turns 1, 2, 3, 4, 5, 6)"
        );
        assert_eq!(
            intent_labels(&s).unwrap(),
            "6 of the 6 intents (\"Movie\", \"Cars\", \"Clouds\") are not snake_case labels"
        );
    }

    #[test]
    fn a_sound_dialogue_with_a_short_thanks_and_a_question_asked_twice_passes() {
        let turns = sound();
        let s = subject(&turns);
        assert_eq!(short_utterances(&s), None);
        assert_eq!(repeated_reply(&s), None);
        assert_eq!(intent_labels(&s), None);
    }

    #[test]
    fn short_utterances_need_more_than_half() {
        // Terse user, full replies: exactly half short is not most.
        let terse: Vec<ParsedTurn> = ["Yes.", "No thanks.", "Okay!"]
            .iter()
            .map(|u| turn(u, "inform", "Your table for two is booked at seven."))
            .collect();
        assert_eq!(short_utterances(&subject(&terse)), None);
        let mut shorter = terse.clone();
        shorter[0].assistant_response = "Booked.".into();
        let found = short_utterances(&subject(&shorter)).unwrap();
        assert!(found.starts_with("4 of the 6 "), "{found}");
        assert!(
            found.contains("\"Yes.\", \"Booked.\", \"No thanks.\""),
            "{found}"
        );
    }

    #[test]
    fn a_reply_said_three_times_is_caught_whatever_its_length() {
        let mut turns = sound();
        turns.push(turn(
            "Can I pay by card?",
            "ask_payment",
            "One bag is added for 30 euros. Is there anything else?",
        ));
        // Twice word for word (with the sound dialogue's second turn) is fine here …
        assert_eq!(repeated_reply(&subject(&turns)), None);
        turns.push(turn(
            "And the seat?",
            "ask_seat",
            "one bag is added for 30 euros, is there anything else",
        ));
        // … a third time (compared normalized) is a loop.
        assert_eq!(
            repeated_reply(&subject(&turns)).unwrap(),
            "the assistant says \"One bag is added for 30 euros. Is there anything else?\" 3 times (turns 2, 4, 5)"
        );
    }

    #[test]
    fn intents_must_be_labels_and_must_not_all_be_one_word() {
        for label in [
            "book_flight",
            "inform",
            "request_alternatives",
            " greet ",
            "ask-about-2",
        ] {
            assert!(is_label(label), "{label}");
        }
        for label in [
            "Movie",
            "Book Flight",
            "book flight",
            "ask?",
            "_x",
            "x__y",
            "",
        ] {
            assert!(!is_label(label), "{label}");
        }
        let mut turns = sound();
        turns[1].intent = "Baggage".into();
        assert_eq!(
            intent_labels(&subject(&turns)).unwrap(),
            "turn 2's intent (\"Baggage\") is not a snake_case label"
        );
        let same: Vec<ParsedTurn> = sound()
            .into_iter()
            .map(|t| ParsedTurn {
                intent: "flight".into(),
                ..t
            })
            .collect();
        assert_eq!(
            intent_labels(&subject(&same)).unwrap(),
            "every turn has the one-word intent \"flight\" (3 turns)"
        );
        // The same two-word label throughout (an active intent) and a short dialogue pass.
        let active: Vec<ParsedTurn> = same
            .iter()
            .cloned()
            .map(|t| ParsedTurn {
                intent: "find_flight".into(),
                ..t
            })
            .collect();
        assert_eq!(intent_labels(&subject(&active)), None);
        assert_eq!(intent_labels(&subject(&same[..2])), None);
    }
}
