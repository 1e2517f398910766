//! The tag and JSON parsers against random and mutated answers: whatever a server sends, they
//! return turns that keep every rule, or a rejection with a kind and a reason. Never a panic.
//! The quality checks that read the parsed turns next get the same treatment.

use dgen::parse::{
    parse_dialogue, parse_json_dialogue, ParseError, ParsedTurn, MAX_FIELD_CHARS, MAX_INTENT_CHARS,
};
use dgen::quality::{evaluate, Action, Check, QualityConfig, Subject};
use proptest::prelude::*;

const KINDS: &[&str] = &[
    "empty_response",
    "no_turns",
    "bad_structure",
    "empty_field",
    "unclosed_tag",
    "nested_tag",
    "field_too_long",
    "turn_count",
    "invalid_json",
    "schema_violation",
];

/// The property both parsers keep, for any input and any bounds.
fn check(result: Result<Vec<ParsedTurn>, ParseError>, min: u32, max: u32) {
    match result {
        Ok(turns) => {
            assert!(!turns.is_empty());
            assert!(turns.len() >= min as usize && turns.len() <= max as usize);
            for t in &turns {
                for (text, cap) in [
                    (&t.utterance, MAX_FIELD_CHARS),
                    (&t.intent, MAX_INTENT_CHARS),
                    (&t.assistant_response, MAX_FIELD_CHARS),
                ] {
                    assert!(!text.is_empty() && text.trim() == text, "{text:?}");
                    assert!(text.chars().count() <= cap, "{text:?}");
                }
            }
        }
        Err(e) => {
            assert!(KINDS.contains(&e.kind()), "unknown kind {}", e.kind());
            let reason = e.to_string();
            assert!(
                reason.trim().len() > 5,
                "a rejection without a reason: {e:?}"
            );
        }
    }
}

fn text_field(max_len: usize) -> impl Strategy<Value = String> {
    prop::string::string_regex(&format!(
        "[a-zA-Z0-9.!?é]([a-zA-Z0-9 ,.!?'<é]{{0,{max_len}}}[a-zA-Z0-9.!?é])?"
    ))
    .expect("valid regex")
}

fn turns() -> impl Strategy<Value = Vec<ParsedTurn>> {
    prop::collection::vec(
        (text_field(80), "[a-z_]{1,30}", text_field(80)).prop_map(|(u, i, a)| ParsedTurn {
            utterance: u,
            intent: i,
            assistant_response: a,
        }),
        1..8,
    )
}

fn as_tags(turns: &[ParsedTurn]) -> String {
    turns
        .iter()
        .map(|t| {
            format!(
                "<User>{}</User>\n<Intent>{}</Intent>\n<Assistant>{}</Assistant>\n",
                t.utterance, t.intent, t.assistant_response
            )
        })
        .collect()
}

fn as_json(turns: &[ParsedTurn]) -> String {
    let turns: Vec<_> = turns
        .iter()
        .map(|t| {
            serde_json::json!({"user": t.utterance, "intent": t.intent, "assistant": t.assistant_response})
        })
        .collect();
    serde_json::json!({ "turns": turns }).to_string()
}

/// Pieces a hostile or broken answer is made of.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "<User>",
            "</User>",
            "<Intent>",
            "</Intent>",
            "<Assistant>",
            "</Assistant>",
            "< user >",
            "</ASSISTANT>",
            "<",
            ">",
            "</",
            "{",
            "}",
            "[",
            "]",
            "\"turns\"",
            "\"user\"",
            ":",
            ",",
            "\"",
            "```json",
            "```",
            "null",
            "\n",
            "é",
            "🙂",
        ])
        .prop_map(str::to_string),
        "[a-z <>/{}\":,]{0,12}",
        any::<String>(),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, String),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), piece()).prop_map(|(at, p)| Edit::Insert(at, p)),
        (any::<usize>(), 0..40usize).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), 0..60usize).prop_map(|(at, n)| Edit::Duplicate(at, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// The byte offset of a char boundary chosen by `pick`.
fn boundary(text: &str, pick: usize) -> usize {
    let count = text.chars().count() + 1;
    text.char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .nth(pick % count)
        .unwrap_or(text.len())
}

fn mutate(mut text: String, edits: &[Edit]) -> String {
    for e in edits {
        match e {
            Edit::Insert(at, p) => {
                let at = boundary(&text, *at);
                text.insert_str(at, p);
            }
            Edit::Delete(at, n) | Edit::Duplicate(at, n) => {
                let start = boundary(&text, *at);
                let end = boundary(&text[start..], *n % (text[start..].chars().count() + 1));
                let span = text[start..start + end].to_string();
                if matches!(e, Edit::Delete(..)) {
                    text.replace_range(start..start + end, "");
                } else {
                    text.insert_str(start, &span);
                }
            }
            Edit::Truncate(at) => {
                let at = boundary(&text, *at);
                text.truncate(at);
            }
        }
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn valid_answers_parse_back_to_their_turns(turns in turns()) {
        let n = turns.len() as u32;
        prop_assert_eq!(parse_dialogue(&as_tags(&turns), n, n), Ok(turns.clone()));
        prop_assert_eq!(parse_json_dialogue(&as_json(&turns), 1, n), Ok(turns));
    }

    #[test]
    fn random_answers_are_parsed_or_rejected_with_a_reason(
        pieces in prop::collection::vec(piece(), 0..40),
        min in 0u32..8,
        max in 0u32..12,
    ) {
        let text: String = pieces.concat();
        check(parse_dialogue(&text, min, max), min, max);
        check(parse_json_dialogue(&text, min, max), min, max);
    }

    #[test]
    fn mutated_answers_are_parsed_or_rejected_with_a_reason(
        turns in turns(),
        edits in prop::collection::vec(edit(), 1..6),
        min in 0u32..8,
        max in 0u32..12,
    ) {
        for text in [as_tags(&turns), as_json(&turns)] {
            let text = mutate(text, &edits);
            check(parse_dialogue(&text, min, max), min, max);
            check(parse_json_dialogue(&text, min, max), min, max);
        }
    }

    #[test]
    fn fields_over_their_cap_are_rejected(turns in turns(), which in 0usize..3, extra in 1usize..50) {
        let mut long = turns.clone();
        let t = &mut long[0];
        match which {
            0 => t.utterance = "x".repeat(MAX_FIELD_CHARS + extra),
            1 => t.intent = "x".repeat(MAX_INTENT_CHARS + extra),
            _ => t.assistant_response = "x".repeat(MAX_FIELD_CHARS + extra),
        }
        let n = long.len() as u32;
        for result in [parse_dialogue(&as_tags(&long), 1, n), parse_json_dialogue(&as_json(&long), 1, n)] {
            let e = result.unwrap_err();
            prop_assert_eq!(e.kind(), "field_too_long");
            prop_assert!(e.to_string().starts_with("turn 1: <"), "{}", e);
        }
    }

    #[test]
    fn quality_checks_never_panic_and_explain_every_finding(
        turns in turns(),
        base in "[a-zA-Z .:\n]{0,200}",
        status in prop::sample::select(vec!["Resolved", "Failed", "Escalated", "Unknown"]),
    ) {
        let mut config = QualityConfig::builtin();
        for check in Check::ALL {
            config.actions.insert(check, Action::Flag);
        }
        let services = ["taxi".to_string(), "hotel".to_string()];
        let subject = Subject {
            turns: &turns,
            services: &services,
            resolution_status: status,
            base_conversation: &base,
        };
        let verdict = evaluate(&subject, &config);
        prop_assert!(verdict.reject.is_none());
        for finding in &verdict.flagged {
            prop_assert!(!finding.detail.trim().is_empty(), "{} without a detail", finding.check.name());
        }
    }
}
