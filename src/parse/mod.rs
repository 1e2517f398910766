//! Parsing the model's dialogue: `<User>…</User> <Intent>…</Intent> <Assistant>…</Assistant>`
//! repeated. Tolerant of whitespace and letter case (`< user >`, `</ASSISTANT>`), strict about
//! structure: the three tags in that order, every field non-empty, no tag inside a field, no
//! unclosed tag, a turn count inside the item's bounds, and no field longer than its cap. Text
//! before the first turn or after the last one (a model's "Here is the dialogue:") is ignored;
//! text between turns is not. The JSON format follows the same rules: servers that take only
//! OpenAI's strict schema subset cannot be told the bounds, so they are checked here.

pub mod annotated;

use serde::{Deserialize, Serialize};

/// Longest utterance (user or assistant), in characters: small models otherwise ramble inside
/// one field until `max_tokens` cuts the answer off.
pub const MAX_FIELD_CHARS: usize = 400;
/// Longest intent label, in characters.
pub const MAX_INTENT_CHARS: usize = 60;

/// The slot descriptions the tag format instruction shows (`prompt`).
pub const TAG_USER: &str = "what the user says";
pub const TAG_INTENT: &str = "the user's intent as a short snake_case label";
pub const TAG_ASSISTANT: &str = "what the assistant replies";

/// Fixed prompt texts a dialogue must not contain (the `copied_example` check): the tag
/// format's slot descriptions and the reference conversation's label.
pub const FIXED_TEXTS: [&str; 4] = [
    TAG_USER,
    TAG_INTENT,
    TAG_ASSISTANT,
    "an existing conversation, for reference only",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParsedTurn {
    pub utterance: String,
    pub intent: String,
    pub assistant_response: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    User,
    Intent,
    Assistant,
}

impl Tag {
    fn name(self) -> &'static str {
        match self {
            Tag::User => "User",
            Tag::Intent => "Intent",
            Tag::Assistant => "Assistant",
        }
    }
}

#[derive(Debug, PartialEq)]
enum Token<'a> {
    Open(Tag),
    Close(Tag),
    Text(&'a str),
}

/// Why an answer was rejected; the `Display` text is stored as the item's last error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("empty response")]
    Empty,
    #[error("no <User>/<Intent>/<Assistant> turns found")]
    NoTurns,
    #[error("turn {turn}: expected <{expected}>, found {found}")]
    Structure {
        turn: usize,
        expected: &'static str,
        found: String,
    },
    #[error("turn {turn}: <{tag}> is empty")]
    EmptyField { turn: usize, tag: &'static str },
    #[error("turn {turn}: <{tag}> is not closed")]
    Unclosed { turn: usize, tag: &'static str },
    #[error("turn {turn}: a <{inner}> tag inside <{outer}>")]
    Nested {
        turn: usize,
        outer: &'static str,
        inner: &'static str,
    },
    #[error("turn {turn}: <{tag}> has {chars} characters, more than the {max} allowed")]
    TooLong {
        turn: usize,
        tag: &'static str,
        chars: usize,
        max: usize,
    },
    #[error("{count} turns, outside the required {min}..={max}")]
    TurnCount { count: usize, min: u32, max: u32 },
    #[error("not valid JSON: {0}")]
    InvalidJson(String),
    #[error("JSON does not match the dialogue schema: {0}")]
    Schema(String),
}

impl ParseError {
    /// A short stable name for counting rejections by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty_response",
            ParseError::NoTurns => "no_turns",
            ParseError::Structure { .. } => "bad_structure",
            ParseError::EmptyField { .. } => "empty_field",
            ParseError::Unclosed { .. } => "unclosed_tag",
            ParseError::Nested { .. } => "nested_tag",
            ParseError::TooLong { .. } => "field_too_long",
            ParseError::TurnCount { .. } => "turn_count",
            ParseError::InvalidJson(_) => "invalid_json",
            ParseError::Schema(_) => "schema_violation",
        }
    }
}

/// The field, trimmed, if it is not empty and within its cap.
fn field(text: &str, turn: usize, tag: &'static str) -> Result<String, ParseError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ParseError::EmptyField { turn, tag });
    }
    let max = if tag == Tag::Intent.name() {
        MAX_INTENT_CHARS
    } else {
        MAX_FIELD_CHARS
    };
    let chars = text.chars().count();
    if chars > max {
        return Err(ParseError::TooLong {
            turn,
            tag,
            chars,
            max,
        });
    }
    Ok(text.to_string())
}

/// Recognizes `<user>`, `< User >`, `</ASSISTANT>` … at the start of `s` (which begins with `<`).
fn tag_at(s: &str) -> Option<(Token<'static>, usize)> {
    let end = s.find('>')?;
    let inner = s[1..end].trim();
    let (closing, name) = match inner.strip_prefix('/') {
        Some(rest) => (true, rest.trim()),
        None => (false, inner),
    };
    let tag = match name.to_ascii_lowercase().as_str() {
        "user" => Tag::User,
        "intent" => Tag::Intent,
        "assistant" => Tag::Assistant,
        _ => return None,
    };
    let token = if closing {
        Token::Close(tag)
    } else {
        Token::Open(tag)
    };
    Some((token, end + 1))
}

fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut rest = text;
    let mut text_start = 0;
    let mut pos = 0;
    while let Some(offset) = rest.find('<') {
        let at = pos + offset;
        match tag_at(&text[at..]) {
            Some((token, len)) => {
                if at > text_start {
                    tokens.push(Token::Text(&text[text_start..at]));
                }
                tokens.push(token);
                pos = at + len;
                text_start = pos;
            }
            None => pos = at + 1,
        }
        rest = &text[pos..];
    }
    if text_start < text.len() {
        tokens.push(Token::Text(&text[text_start..]));
    }
    tokens
}

fn describe(token: Option<&Token>) -> String {
    match token {
        None => "the end of the response".to_string(),
        Some(Token::Open(t)) => format!("<{}>", t.name()),
        Some(Token::Close(t)) => format!("</{}>", t.name()),
        Some(Token::Text(s)) => {
            let s: String = s.trim().chars().take(40).collect();
            format!("text \"{s}\"")
        }
    }
}

pub fn parse_dialogue(text: &str, min: u32, max: u32) -> Result<Vec<ParsedTurn>, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let tokens = tokenize(text);
    // Leading and trailing prose is allowed; whitespace-only text is ignored everywhere.
    let first = tokens.iter().position(|t| !matches!(t, Token::Text(_)));
    let last = tokens.iter().rposition(|t| !matches!(t, Token::Text(_)));
    let (Some(first), Some(last)) = (first, last) else {
        return Err(ParseError::NoTurns);
    };
    let body: Vec<&Token> = tokens[first..=last]
        .iter()
        .filter(|t| !matches!(t, Token::Text(s) if s.trim().is_empty()))
        .collect();

    let mut turns = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let turn = turns.len() + 1;
        let mut fields = [String::new(), String::new(), String::new()];
        for (slot, tag) in [Tag::User, Tag::Intent, Tag::Assistant]
            .into_iter()
            .enumerate()
        {
            match body.get(i) {
                Some(Token::Open(t)) if *t == tag => {}
                other => {
                    return Err(ParseError::Structure {
                        turn,
                        expected: tag.name(),
                        found: describe(other.copied()),
                    })
                }
            }
            match (body.get(i + 1), body.get(i + 2)) {
                (Some(Token::Text(content)), Some(Token::Close(t))) if *t == tag => {
                    fields[slot] = field(content, turn, tag.name())?;
                    i += 3;
                }
                (Some(Token::Close(t)), _) if *t == tag => {
                    return Err(ParseError::EmptyField {
                        turn,
                        tag: tag.name(),
                    })
                }
                (Some(Token::Text(_)), Some(Token::Open(inner)))
                | (Some(Token::Open(inner)), _) => {
                    return Err(ParseError::Nested {
                        turn,
                        outer: tag.name(),
                        inner: inner.name(),
                    })
                }
                _ => {
                    return Err(ParseError::Unclosed {
                        turn,
                        tag: tag.name(),
                    })
                }
            }
        }
        let [utterance, intent, assistant_response] = fields;
        turns.push(ParsedTurn {
            utterance,
            intent,
            assistant_response,
        });
    }
    if turns.is_empty() {
        return Err(ParseError::NoTurns);
    }
    let count = turns.len();
    if count < min as usize || count > max as usize {
        return Err(ParseError::TurnCount { count, min, max });
    }
    Ok(turns)
}

/// The JSON of an answer: some servers wrap it in a code fence despite the schema.
fn unfenced(text: &str) -> &str {
    text.trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim()
}

/// Parses the JSON wire format (`{"turns": [{"user", "intent", "assistant"}]}`) into the same
/// turns as the tag format, with the same rules for empty fields and turn counts.
pub fn parse_json_dialogue(text: &str, min: u32, max: u32) -> Result<Vec<ParsedTurn>, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let value: serde_json::Value =
        serde_json::from_str(unfenced(text)).map_err(|e| ParseError::InvalidJson(e.to_string()))?;
    let turns = value
        .get("turns")
        .and_then(|t| t.as_array())
        .ok_or_else(|| ParseError::Schema("no \"turns\" list".into()))?;
    let mut out = Vec::with_capacity(turns.len());
    for (i, t) in turns.iter().enumerate() {
        let get = |name: &'static str, tag: &'static str| -> Result<String, ParseError> {
            match t.get(name) {
                Some(serde_json::Value::String(s)) => field(s, i + 1, tag),
                Some(_) => Err(ParseError::Schema(format!(
                    "turn {}: \"{name}\" is not a string",
                    i + 1
                ))),
                None => Err(ParseError::Schema(format!("turn {}: no \"{name}\"", i + 1))),
            }
        };
        out.push(ParsedTurn {
            utterance: get("user", "User")?,
            intent: get("intent", "Intent")?,
            assistant_response: get("assistant", "Assistant")?,
        });
    }
    if out.is_empty() {
        return Err(ParseError::NoTurns);
    }
    if out.len() < min as usize || out.len() > max as usize {
        return Err(ParseError::TurnCount {
            count: out.len(),
            min,
            max,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(u: &str, i: &str, a: &str) -> String {
        format!("<User>{u}</User>\n<Intent>{i}</Intent>\n<Assistant>{a}</Assistant>\n")
    }

    #[test]
    fn parses_turns_tolerating_case_whitespace_and_prose() {
        let text = format!(
            "Here is the dialogue:\n{}< user > Hi again </USER><intent>greet</Intent>  <Assistant>\n Hello!\n</assistant>\nThanks.",
            turn("I need a taxi.", "book_taxi", "Where to?")
        );
        let turns = parse_dialogue(&text, 1, 5).unwrap();
        assert_eq!(turns.len(), 2);
        assert_eq!(turns[1].utterance, "Hi again");
        assert_eq!(turns[1].assistant_response, "Hello!");
        // A lone "<" in text is content, not a tag.
        let t = parse_dialogue(&turn("Is 3 < 4?", "ask", "Yes."), 1, 1).unwrap();
        assert_eq!(t[0].utterance, "Is 3 < 4?");
    }

    #[test]
    fn json_and_tags_give_the_same_turns() {
        let tags = turn("Hi there", "greet", "Hello!") + &turn("Book a cab", "book_taxi", "Done.");
        let json = r#"{"turns": [{"user": "Hi there", "intent": "greet", "assistant": "Hello!"},
                                 {"user": "Book a cab", "intent": "book_taxi", "assistant": "Done."}]}"#;
        assert_eq!(
            parse_dialogue(&tags, 1, 5).unwrap(),
            parse_json_dialogue(json, 1, 5).unwrap()
        );
        assert_eq!(
            parse_json_dialogue("{\"turns\": [", 1, 5)
                .unwrap_err()
                .kind(),
            "invalid_json"
        );
        assert_eq!(
            parse_json_dialogue(r#"{"turns": [{"user": "x"}]}"#, 1, 5)
                .unwrap_err()
                .kind(),
            "schema_violation"
        );
        assert_eq!(
            parse_json_dialogue(
                r#"{"turns": [{"user": "x", "intent": "", "assistant": "y"}]}"#,
                1,
                5
            )
            .unwrap_err()
            .kind(),
            "empty_field"
        );
        assert_eq!(
            parse_json_dialogue(json, 3, 5).unwrap_err().kind(),
            "turn_count"
        );
    }

    #[test]
    fn rejects_bad_structure() {
        let ok = turn("a", "b", "c");
        assert_eq!(parse_dialogue("   ", 1, 3), Err(ParseError::Empty));
        assert_eq!(parse_dialogue("just prose", 1, 3), Err(ParseError::NoTurns));
        assert!(matches!(
            parse_dialogue(&turn("a", "", "c"), 1, 3),
            Err(ParseError::EmptyField { tag: "Intent", .. })
        ));
        assert!(matches!(
            parse_dialogue("<User>a</User><Intent>b</Intent><Assistant>c", 1, 3),
            Err(ParseError::Unclosed {
                tag: "Assistant",
                ..
            })
        ));
        assert!(matches!(
            parse_dialogue(
                "<User>a <User>b</User></User><Intent>b</Intent><Assistant>c</Assistant>",
                1,
                3
            ),
            Err(ParseError::Nested { .. })
        ));
        assert!(matches!(
            parse_dialogue("<User>a</User><Assistant>c</Assistant>", 1, 3),
            Err(ParseError::Structure {
                expected: "Intent",
                ..
            })
        ));
        let interleaved = format!("{ok}Turn two:\n{ok}");
        assert!(matches!(
            parse_dialogue(&interleaved, 1, 3),
            Err(ParseError::Structure { turn: 2, .. })
        ));
        let three = ok.repeat(3);
        assert_eq!(
            parse_dialogue(&three, 4, 6),
            Err(ParseError::TurnCount {
                count: 3,
                min: 4,
                max: 6
            })
        );
        assert_eq!(
            parse_dialogue(&three, 1, 2).unwrap_err().kind(),
            "turn_count"
        );
        assert_eq!(parse_dialogue(&three, 3, 3).unwrap().len(), 3);
    }

    #[test]
    fn fields_over_their_cap_are_rejected_in_both_formats() {
        let long = "word ".repeat(81);
        let intent = "a".repeat(MAX_INTENT_CHARS + 1);
        let fits = "é".repeat(MAX_FIELD_CHARS);
        assert_eq!(
            parse_dialogue(&turn(&fits, "greet", "ok"), 1, 1).unwrap()[0].utterance,
            fits,
            "characters, not bytes, are counted"
        );
        for (u, i, a, tag, max) in [
            (long.as_str(), "greet", "ok", "User", MAX_FIELD_CHARS),
            ("hi", intent.as_str(), "ok", "Intent", MAX_INTENT_CHARS),
            ("hi", "greet", long.as_str(), "Assistant", MAX_FIELD_CHARS),
        ] {
            let json = serde_json::json!({"turns": [{"user": u, "intent": i, "assistant": a}]});
            for result in [
                parse_dialogue(&turn(u, i, a), 1, 1),
                parse_json_dialogue(&json.to_string(), 1, 1),
            ] {
                let e = result.unwrap_err();
                assert_eq!(e.kind(), "field_too_long");
                assert!(
                    matches!(e, ParseError::TooLong { tag: t, max: m, .. } if t == tag && m == max)
                );
                assert!(
                    e.to_string().contains(&format!("turn 1: <{tag}> has")),
                    "{e}"
                );
            }
        }
    }
}
