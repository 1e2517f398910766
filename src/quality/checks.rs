//! The turn-by-turn checks (the degenerate-output ones are in `degenerate.rs`), each a pure function of the dialogue, the item and the quality data that
//! returns what it found (a sentence naming the turn and the text), or `None`.

use std::collections::HashSet;

use super::{degenerate, Check, QualityConfig, Subject};
use crate::parse::FIXED_TEXTS;

/// Share of the reference's word 4-grams that makes a dialogue a copy of it.
const REFERENCE_SHARE: f64 = 0.5;
/// Share of a turn's word 3-grams found in one earlier turn that makes it a repeat.
const REPEAT_SHARE: f64 = 0.8;
/// Shorter texts are not compared for near repeats (nor short ones for exact repeats: a second
/// "Thank you." is normal).
const REPEAT_MIN_WORDS: usize = 8;
const EXACT_REPEAT_MIN_WORDS: usize = 3;
/// How many closing turns carry the outcome.
const CLOSING_TURNS: usize = 2;

pub(super) fn run(check: Check, s: &Subject<'_>, config: &QualityConfig) -> Option<String> {
    match check {
        Check::OutcomeMismatch => outcome_mismatch(s, config),
        Check::CopiedExample => copied_example(s),
        Check::CopiedReference => copied_reference(s),
        Check::Repetitive => repetitive(s),
        Check::OffTopic => off_topic(s, config),
        Check::Placeholder => placeholder(s),
        Check::ShortUtterances => degenerate::short_utterances(s),
        Check::RepeatedReply => degenerate::repeated_reply(s),
        Check::IntentLabels => degenerate::intent_labels(s),
        // The label checks look at the annotation (`labels`), not at these turns alone.
        _ => None,
    }
}

/// Lower case, apostrophes dropped (`can't` is `cant`), anything else that is not a letter or
/// a digit a space, words separated by one space.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if c != '\'' && c != '’' && !out.ends_with(' ') && !out.is_empty() {
            out.push(' ');
        }
    }
    out.trim_end().to_string()
}

/// The cues found in `text` (normalized and padded with spaces): whole words or phrases, or
/// word prefixes for a cue ending in `*`.
fn hits<'a>(padded: &str, cues: &'a [String]) -> Vec<&'a str> {
    cues.iter()
        .filter(|cue| {
            let (stem, prefix) = match cue.strip_suffix('*') {
                Some(stem) => (stem, true),
                None => (cue.as_str(), false),
            };
            let stem = normalize(stem);
            let needle = if prefix {
                format!(" {stem}")
            } else {
                format!(" {stem} ")
            };
            !stem.is_empty() && padded.contains(&needle)
        })
        .map(String::as_str)
        .collect()
}

fn padded(text: &str) -> String {
    format!(" {} ", normalize(text))
}

fn quoted(list: &[&str]) -> String {
    list.iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The closing turns carry no cue of the planned outcome, or more cues of another one.
fn outcome_mismatch(s: &Subject<'_>, config: &QualityConfig) -> Option<String> {
    let planned = s.resolution_status;
    let cues = config.outcome_cues.get(planned).filter(|c| !c.is_empty())?;
    let from = s.turns.len().saturating_sub(CLOSING_TURNS);
    let closing: Vec<&str> = s.turns[from..]
        .iter()
        .flat_map(|t| [t.utterance.as_str(), t.assistant_response.as_str()])
        .collect();
    let text = padded(&closing.join(" "));
    let own = hits(&text, cues);
    let rival = config
        .outcome_cues
        .iter()
        .filter(|(status, _)| status.as_str() != planned)
        .map(|(status, cues)| (status, hits(&text, cues)))
        .max_by_key(|(_, found)| found.len())
        .filter(|(_, found)| found.len() > own.len());
    match (own.is_empty(), rival) {
        (_, Some((status, found))) => Some(format!(
            "the closing turns read as {status} ({}) rather than the planned {planned}{}",
            quoted(&found),
            if own.is_empty() {
                String::new()
            } else {
                format!(" ({})", quoted(&own))
            }
        )),
        (true, None) => Some(format!(
            "the closing turns carry no cue of the planned outcome {planned}"
        )),
        (false, None) => None,
    }
}

/// Every field of every turn, named for messages.
fn fields<'a>(s: &'a Subject<'_>) -> impl Iterator<Item = (String, &'a str)> + 'a {
    s.turns.iter().enumerate().flat_map(|(i, t)| {
        [
            (format!("turn {} user", i + 1), t.utterance.as_str()),
            (format!("turn {} intent", i + 1), t.intent.as_str()),
            (
                format!("turn {} assistant", i + 1),
                t.assistant_response.as_str(),
            ),
        ]
    })
}

/// A turn contains a fixed prompt text (a format description, the reference's label).
fn copied_example(s: &Subject<'_>) -> Option<String> {
    let fixed: Vec<(&str, String)> = FIXED_TEXTS.iter().map(|t| (*t, padded(t))).collect();
    fields(s).find_map(|(name, text)| {
        let text = padded(text);
        fixed
            .iter()
            .find(|(_, f)| text.contains(f.as_str()))
            .map(|(f, _)| format!("{name} copies the prompt's fixed text \"{f}\""))
    })
}

fn grams<'a>(words: &'a [&str], n: usize) -> impl Iterator<Item = String> + 'a {
    words.windows(n).map(|w| w.join(" "))
}

/// Word n-grams of each text separately (none spans two turns).
fn gram_set<'a>(texts: impl Iterator<Item = &'a str>, n: usize) -> HashSet<String> {
    let mut set = HashSet::new();
    for text in texts {
        let text = normalize(text);
        let words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
        set.extend(grams(&words, n));
    }
    set
}

/// Half or more of the reference conversation's word 4-grams appear in the dialogue.
fn copied_reference(s: &Subject<'_>) -> Option<String> {
    let lines = s.base_conversation.lines().map(|line| {
        line.strip_prefix("USER:")
            .or_else(|| line.strip_prefix("ASSISTANT:"))
            .unwrap_or(line)
    });
    let base = gram_set(lines, 4);
    if base.is_empty() {
        return None;
    }
    let dialogue = gram_set(fields(s).map(|(_, text)| text), 4);
    let shared = base.intersection(&dialogue).count();
    let share = shared as f64 / base.len() as f64;
    (share >= REFERENCE_SHARE).then(|| {
        format!(
            "{shared} of the reference conversation's {} word 4-grams ({:.0}%) appear in the dialogue",
            base.len(),
            share * 100.0
        )
    })
}

/// The same utterance twice, or a turn whose 3-grams mostly repeat one earlier turn.
fn repetitive(s: &Subject<'_>) -> Option<String> {
    let texts: Vec<(String, Vec<String>)> = fields(s)
        .filter(|(name, _)| !name.ends_with("intent"))
        .map(|(name, text)| {
            let words = normalize(text).split(' ').map(str::to_string).collect();
            (name, words)
        })
        .collect();
    for (j, (later, words)) in texts.iter().enumerate() {
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let own: HashSet<String> = grams(&refs, 3).collect();
        for (earlier, before) in &texts[..j] {
            if words.len() >= EXACT_REPEAT_MIN_WORDS && words == before {
                return Some(format!("{later} repeats {earlier} word for word"));
            }
            if words.len() < REPEAT_MIN_WORDS || own.is_empty() {
                continue;
            }
            let before: Vec<&str> = before.iter().map(String::as_str).collect();
            let before: HashSet<String> = grams(&before, 3).collect();
            let share = own.intersection(&before).count() as f64 / own.len() as f64;
            if share >= REPEAT_SHARE {
                return Some(format!(
                    "{later} repeats {earlier} almost entirely ({:.0}% of its word 3-grams)",
                    share * 100.0
                ));
            }
        }
    }
    None
}

/// None of the item's services is mentioned anywhere in the dialogue.
fn off_topic(s: &Subject<'_>, config: &QualityConfig) -> Option<String> {
    if s.services.is_empty() {
        return None;
    }
    let all: Vec<&str> = fields(s).map(|(_, text)| text).collect();
    let text = padded(&all.join(" "));
    let mentioned = s.services.iter().any(|service| {
        let own = [service.clone()];
        let keywords = config
            .service_keywords
            .get(service)
            .filter(|k| !k.is_empty())
            .map_or(&own[..], Vec::as_slice);
        !hits(&text, keywords).is_empty()
    });
    (!mentioned).then(|| {
        format!(
            "none of the item's services ({}) is mentioned",
            s.services.join(", ")
        )
    })
}

/// Template leftovers in an utterance or a reply.
fn placeholder(s: &Subject<'_>) -> Option<String> {
    fields(s)
        .filter(|(name, _)| !name.ends_with("intent"))
        .find_map(|(name, text)| leftover(text).map(|what| format!("{name} contains {what}")))
}

/// The first template leftover in `text`, described.
fn leftover(text: &str) -> Option<String> {
    if let Some(slot) = bracketed(text) {
        return Some(format!("the placeholder \"{slot}\""));
    }
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.len() >= 3 && word.chars().all(|c| c == 'x' || c == 'X') {
            return Some(format!("the placeholder \"{word}\""));
        }
        if word.eq_ignore_ascii_case("lorem") {
            return Some("\"lorem\" filler text".to_string());
        }
    }
    if let Some(label) = role_label(text) {
        return Some(format!("the role label \"{label}\""));
    }
    // A field that is nothing but a speaker's name: the slot's label, not an utterance.
    let bare = text.trim().trim_matches(|c: char| !c.is_alphanumeric());
    if ["user", "assistant", "customer", "agent", "system"]
        .iter()
        .any(|role| bare.eq_ignore_ascii_case(role))
    {
        return Some(format!("only the role label \"{}\"", text.trim()));
    }
    let straight = text.matches('"').count();
    if straight % 2 == 1 || text.matches('“').count() != text.matches('”').count() {
        return Some("an unclosed quote".to_string());
    }
    None
}

/// A speaker label left in the text: `USER:` / `ASSISTANT:` / `SYSTEM:` in capitals anywhere,
/// or `User:` / `Assistant:` in any case where a line starts. ("Our booking system: …" and
/// "the user: …" inside a sentence are ordinary prose.)
fn role_label(text: &str) -> Option<&str> {
    // ASCII lower case keeps byte offsets, so `lower`'s indices slice `text`.
    let lower = text.to_ascii_lowercase();
    for label in ["user:", "assistant:", "system:"] {
        for (at, _) in lower.match_indices(label) {
            let before = text[..at].chars().next_back();
            if before.is_some_and(char::is_alphanumeric) {
                continue;
            }
            let shown = &text[at..at + label.len()];
            let capitals = shown == label.to_ascii_uppercase();
            let line_start = text[..at].trim_end_matches([' ', '\t']).is_empty()
                || text[..at].trim_end_matches([' ', '\t']).ends_with('\n');
            if capitals || (line_start && label != "system:") {
                return Some(shown);
            }
        }
    }
    None
}

/// `[name]`, `{date}`, `<customer name>`, `<...>`: brackets around a short label.
fn bracketed(text: &str) -> Option<&str> {
    for (open, close) in [('[', ']'), ('{', '}'), ('<', '>')] {
        for (at, _) in text.match_indices(open) {
            let rest = &text[at + 1..];
            let Some(end) = rest.find(close) else {
                continue;
            };
            let inner = &rest[..end];
            let label = |c: char| c.is_alphanumeric() || matches!(c, '_' | ' ' | '-' | '.');
            let has_letter = inner.chars().any(char::is_alphabetic) || inner.contains("...");
            if !inner.is_empty() && inner.len() <= 40 && inner.chars().all(label) && has_letter {
                return Some(&text[at..at + end + 2]);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::ParsedTurn;

    fn turn(user: &str, assistant: &str) -> ParsedTurn {
        ParsedTurn {
            utterance: user.into(),
            intent: "ask".into(),
            assistant_response: assistant.into(),
        }
    }

    fn check(check: Check, turns: &[ParsedTurn], status: &str, base: &str) -> Option<String> {
        let services = ["taxi".to_string()];
        let s = Subject {
            turns,
            services: &services,
            resolution_status: status,
            base_conversation: base,
        };
        run(check, &s, &QualityConfig::builtin())
    }

    fn opening() -> ParsedTurn {
        turn(
            "My taxi to the station never came and I am late.",
            "I am sorry, let me look at the booking for you.",
        )
    }

    #[test]
    fn normalize_drops_case_apostrophes_and_punctuation() {
        assert_eq!(normalize("  Can't   STOP -- now!"), "cant stop now");
        assert_eq!(normalize("check-in"), "check in");
    }

    #[test]
    fn outcome_matching_the_plan_passes() {
        let closing = turn(
            "Great, thank you.",
            "Your new taxi is booked and you are all set.",
        );
        assert_eq!(
            check(
                Check::OutcomeMismatch,
                &[opening(), closing],
                "Resolved",
                ""
            ),
            None
        );
        let closing = turn(
            "Fine.",
            "I am escalating this to my supervisor, who will contact you.",
        );
        assert_eq!(
            check(
                Check::OutcomeMismatch,
                &[opening(), closing],
                "Escalated",
                ""
            ),
            None
        );
    }

    #[test]
    fn outcome_without_cues_or_with_a_rival_is_a_mismatch() {
        let closing = turn("Okay.", "Have a nice evening.");
        let found = check(Check::OutcomeMismatch, &[opening(), closing], "Failed", "").unwrap();
        assert!(
            found.contains("no cue of the planned outcome Failed"),
            "{found}"
        );
        let closing = turn(
            "Thanks!",
            "Problem solved: your taxi is booked and you are all set.",
        );
        let found = check(Check::OutcomeMismatch, &[opening(), closing], "Failed", "").unwrap();
        assert!(
            found.contains("read as Resolved") && found.contains("\"all set\""),
            "{found}"
        );
        // A status the data has no cues for is not judged.
        let closing = turn("Okay.", "Bye.");
        assert_eq!(
            check(Check::OutcomeMismatch, &[closing], "Pending", ""),
            None
        );
    }

    #[test]
    fn the_prompts_example_turn_is_caught() {
        let copied = turn(FIXED_TEXTS[0], "Sure, the taxi is booked.");
        let found = check(Check::CopiedExample, &[opening(), copied], "Resolved", "").unwrap();
        assert!(found.starts_with("turn 2 user copies"), "{found}");
        let tags = turn("What the user says", "what the assistant replies");
        assert!(check(Check::CopiedExample, &[tags], "Resolved", "").is_some());
        assert_eq!(
            check(Check::CopiedExample, &[opening()], "Resolved", ""),
            None
        );
    }

    #[test]
    fn copying_the_reference_conversation_is_caught() {
        let base = "USER: I need a taxi from the hotel to the airport at six.\n\
                    ASSISTANT: Certainly, a car will wait outside the hotel at six.";
        let copied = [turn(
            "I need a taxi from the hotel to the airport at six.",
            "Certainly, a car will wait outside the hotel at six.",
        )];
        let found = check(Check::CopiedReference, &copied, "Resolved", base).unwrap();
        assert!(found.contains("(100%)"), "{found}");
        assert_eq!(
            check(Check::CopiedReference, &[opening()], "Resolved", base),
            None
        );
        assert_eq!(check(Check::CopiedReference, &copied, "Resolved", ""), None);
    }

    #[test]
    fn repeated_turns_are_caught_and_short_courtesies_are_not() {
        let again = turn(
            "My taxi to the station never came and I am late.",
            "Let me see.",
        );
        let found = check(Check::Repetitive, &[opening(), again], "Resolved", "").unwrap();
        assert_eq!(found, "turn 2 user repeats turn 1 user word for word");
        let near = turn(
            "Honestly, my taxi to the station never came and I am late.",
            "Checking.",
        );
        let found = check(Check::Repetitive, &[opening(), near], "Resolved", "").unwrap();
        assert!(found.contains("almost entirely"), "{found}");
        let thanks = [
            turn("Thank you.", "You're welcome."),
            turn("Thank you.", "Bye."),
        ];
        assert_eq!(check(Check::Repetitive, &thanks, "Resolved", ""), None);
        let other = turn(
            "Can the driver take my suitcase too?",
            "Yes, there is room.",
        );
        assert_eq!(
            check(Check::Repetitive, &[opening(), other], "Resolved", ""),
            None
        );
    }

    #[test]
    fn a_dialogue_that_never_names_its_service_is_off_topic() {
        let elsewhere = [turn("Where is the museum?", "Two streets north.")];
        let found = check(Check::OffTopic, &elsewhere, "Resolved", "").unwrap();
        assert_eq!(found, "none of the item's services (taxi) is mentioned");
        assert_eq!(check(Check::OffTopic, &[opening()], "Resolved", ""), None);
        let by_keyword = [turn("Can the driver wait?", "Yes.")];
        assert_eq!(check(Check::OffTopic, &by_keyword, "Resolved", ""), None);
    }

    #[test]
    fn template_leftovers_are_caught() {
        for (text, what) in [
            (
                "Hello [customer name], how can I help?",
                "\"[customer name]\"",
            ),
            ("Your code is <...>.", "\"<...>\""),
            ("Call XXX for details.", "\"XXX\""),
            ("Lorem ipsum dolor.", "lorem"),
            ("Sure. USER: thanks", "\"USER:\""),
            ("Assistant: Hello, how can I help?", "\"Assistant:\""),
            ("He said \"wait here", "unclosed quote"),
            ("USER", "only the role label \"USER\""),
            (" Assistant. ", "only the role label"),
        ] {
            let found = check(Check::Placeholder, &[turn(text, "Okay.")], "Resolved", "");
            let found = found.unwrap_or_else(|| panic!("{text} passes"));
            assert!(found.contains(what), "{text}: {found}");
        }
        for text in [
            "The taxi costs $20 [3] and arrives at 6 (or earlier).",
            "She said \"fine\" and left; the 3 < 5 rule applies.",
            "Please enter your user name: it is on the card.",
            "Our booking system: it is down until noon.",
            "The user agent string is wrong.",
            "Agent Smith will call you.",
        ] {
            let found = check(Check::Placeholder, &[turn(text, "Ok.")], "Resolved", "");
            assert_eq!(found, None, "{text}");
        }
    }
}
