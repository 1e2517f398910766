//! The rubric: the judge's prompt, the JSON schema its answer must follow, and the parser that
//! turns an answer into scores. `JUDGE_PROMPT_VERSION` is stored with every score, so scores of
//! different rubric wordings are never mistaken for one another (`dgen judge --rescore`).
//!
//! The criteria follow DialogStudio's dialogue-quality rubric (understanding, relevance,
//! correctness, coherence, completeness, overall, each 1–5) adapted to planned synthetic
//! dialogues, and G-Eval's form: a definition per criterion with anchored score levels,
//! evaluation steps to follow before scoring, and a form to fill (here a JSON schema whose
//! first field is the reasoning, so a model states it before it commits to numbers).

use std::collections::BTreeMap;

use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestUserMessage, CreateChatCompletionRequest, ResponseFormat,
    ResponseFormatJsonSchema,
};
use serde_json::{json, Value};

use super::{JudgeError, CRITERIA};
use crate::llm::ChatRequest;
use crate::parse::ParsedTurn;
use crate::record::GeneratedDialogue;

/// Bump when the rubric's wording, schema or request parameters change.
pub const JUDGE_PROMPT_VERSION: &str = "dgen-judge-v1";

/// The longest reasoning the full schema allows (and the parser keeps).
pub const MAX_REASONING_CHARS: usize = 160;

/// The rubric, sent as the system message.
pub const RUBRIC: &str = include_str!("../../assets/judge_rubric.txt");

/// Which schema the request carries: the subset OpenAI's strict Structured Outputs accept, or
/// with a length cap on the reasoning for servers that enforce full JSON Schema (llama-server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgeSchema {
    Strict,
    Full,
}

/// What the judge request is made of, besides the dialogue.
#[derive(Debug, Clone)]
pub struct JudgeSettings {
    pub model: String,
    pub schema: JudgeSchema,
    pub max_tokens: u32,
}

/// What the judge is shown: the plan the dialogue was written to, and its turns.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub services: &'a [String],
    pub category: &'a str,
    pub scenario: &'a str,
    pub persona: &'a str,
    pub user_emotion: &'a str,
    pub assistant_emotion: &'a str,
    pub outcome: &'a str,
    pub turns: &'a [ParsedTurn],
}

impl<'a> Subject<'a> {
    pub fn of(record: &'a GeneratedDialogue) -> Subject<'a> {
        Subject {
            services: &record.services,
            category: &record.scenario_category,
            scenario: &record.generated_scenario,
            persona: &record.persona,
            user_emotion: &record.user_emotion,
            assistant_emotion: &record.assistant_emotion,
            outcome: &record.resolution_status,
            turns: &record.turns,
        }
    }
}

/// What each planned outcome means, in the rubric's words.
fn outcome_meaning(outcome: &str) -> &'static str {
    match outcome {
        "Resolved" => "the assistant solves the customer's request and the customer accepts it",
        "Failed" => "the request cannot be met; the conversation ends without a solution",
        "Escalated" => "the assistant hands the case to a human supervisor or specialist team",
        _ => "as named",
    }
}

fn or_unstated(text: &str) -> &str {
    if text.trim().is_empty() {
        "(not stated)"
    } else {
        text.trim()
    }
}

/// The user message: the plan, then the dialogue, one numbered line per utterance.
pub fn user_message(s: &Subject<'_>) -> String {
    let mut out = format!(
        "PLAN\n\
         Services: {services}\n\
         Scenario category: {category}\n\
         Scenario: {scenario}\n\
         Customer persona: {persona}\n\
         Emotions: the customer is {user_emotion}; the assistant is {assistant_emotion}\n\
         Planned outcome: {outcome} ({meaning})\n\n\
         DIALOGUE ({turns} turns)\n",
        services = or_unstated(&s.services.join(", ")),
        category = or_unstated(&s.category.replace('_', " ")),
        scenario = or_unstated(s.scenario),
        persona = or_unstated(s.persona),
        user_emotion = or_unstated(s.user_emotion),
        assistant_emotion = or_unstated(s.assistant_emotion),
        outcome = or_unstated(s.outcome),
        meaning = outcome_meaning(s.outcome),
        turns = s.turns.len(),
    );
    for (i, t) in s.turns.iter().enumerate() {
        let n = i + 1;
        out.push_str(&format!(
            "{n}. USER: {}\n{n}. ASSISTANT: {}\n",
            t.utterance.trim(),
            t.assistant_response.trim()
        ));
    }
    out.push_str("\nJudge this dialogue against the plan. Answer with the JSON object only.");
    out
}

fn score_schema() -> Value {
    json!({"type": "integer", "enum": [1, 2, 3, 4, 5]})
}

/// The answer's schema. Reasoning comes first so that a model writes it before the scores.
pub fn schema(kind: JudgeSchema) -> Value {
    let mut reasoning = json!({
        "type": "string",
        "description": "One sentence naming the dialogue's main strength or weakness."
    });
    if kind == JudgeSchema::Full {
        reasoning["minLength"] = json!(1);
        reasoning["maxLength"] = json!(MAX_REASONING_CHARS);
    }
    let scores: serde_json::Map<String, Value> = CRITERIA
        .iter()
        .map(|c| (c.to_string(), score_schema()))
        .collect();
    json!({
        "type": "object",
        "properties": {
            "reasoning": reasoning,
            "scores": {
                "type": "object",
                "properties": scores,
                "required": CRITERIA,
                "additionalProperties": false
            },
            "overall": score_schema()
        },
        "required": ["reasoning", "scores", "overall"],
        "additionalProperties": false
    })
}

/// The judge request for one dialogue: greedy sampling, a fixed seed, the schema.
// `max_tokens` and `seed` are deprecated in OpenAI's schema but are what every
// OpenAI-compatible server understands (see `prompt`).
#[allow(deprecated)]
pub fn request(settings: &JudgeSettings, subject: &Subject<'_>) -> ChatRequest {
    let messages = vec![
        ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage::from(
            RUBRIC.to_string(),
        )),
        ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage::from(user_message(
            subject,
        ))),
    ];
    let chat = CreateChatCompletionRequest {
        model: settings.model.clone(),
        messages,
        max_tokens: Some(settings.max_tokens),
        temperature: Some(0.0),
        seed: Some(7),
        n: Some(1),
        response_format: Some(ResponseFormat::JsonSchema {
            json_schema: ResponseFormatJsonSchema {
                description: None,
                name: "dialogue_judgement".to_string(),
                schema: schema(settings.schema),
                strict: Some(true),
            },
        }),
        ..Default::default()
    };
    ChatRequest {
        chat,
        grammar: None,
    }
}

/// A parsed answer: scores per criterion, overall, reasoning.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub overall: u8,
    pub scores: BTreeMap<String, u8>,
    pub reasoning: String,
}

/// The JSON object in an answer: the whole text, or the outermost `{…}` in it (servers without
/// structured output wrap JSON in prose or code fences).
fn json_object(content: &str) -> Result<Value, JudgeError> {
    if let Ok(v @ Value::Object(_)) = serde_json::from_str(content.trim()) {
        return Ok(v);
    }
    let (Some(start), Some(end)) = (content.find('{'), content.rfind('}')) else {
        return Err(JudgeError::NotJson(preview(content)));
    };
    match serde_json::from_str(&content[start..=end.max(start)]) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(JudgeError::NotJson(preview(content))),
    }
}

fn preview(content: &str) -> String {
    let text: String = content.chars().take(80).collect();
    if text.is_empty() {
        "an empty answer".into()
    } else {
        format!("{text:?}")
    }
}

/// A score 1–5: an integer, or a number or string that is one (`4.0`, `"4"`).
fn score(value: Option<&Value>, name: &str) -> Result<u8, JudgeError> {
    let value = value.ok_or_else(|| JudgeError::Missing(name.to_string()))?;
    let number = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match number {
        Some(x) if x.fract() == 0.0 && (1.0..=5.0).contains(&x) => Ok(x as u8),
        _ => Err(JudgeError::OutOfRange {
            criterion: name.to_string(),
            value: value.to_string().chars().take(40).collect(),
        }),
    }
}

/// Parses an answer. Scores may sit under `scores` (the schema's shape) or at the top level
/// (what a server without structured output tends to write); each must be a whole 1–5.
pub fn parse(content: &str) -> Result<Verdict, JudgeError> {
    let value = json_object(content)?;
    let nested = value.get("scores").filter(|s| s.is_object());
    let mut scores = BTreeMap::new();
    for criterion in CRITERIA {
        let found = nested
            .and_then(|s| s.get(criterion))
            .or_else(|| value.get(criterion));
        scores.insert(criterion.to_string(), score(found, criterion)?);
    }
    let overall = score(value.get("overall"), "overall")?;
    let reasoning: String = value
        .get("reasoning")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .chars()
        .take(MAX_REASONING_CHARS)
        .collect();
    Ok(Verdict {
        overall,
        scores,
        reasoning,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(overall: Value) -> String {
        let scores: serde_json::Map<String, Value> =
            CRITERIA.iter().map(|c| (c.to_string(), json!(4))).collect();
        json!({"reasoning": "Fine.", "scores": scores, "overall": overall}).to_string()
    }

    #[test]
    fn a_schema_shaped_answer_parses() {
        let v = parse(&answer(json!(3))).unwrap();
        assert_eq!(v.overall, 3);
        assert_eq!(v.scores.len(), CRITERIA.len());
        assert_eq!(v.reasoning, "Fine.");
    }

    #[test]
    fn fenced_flat_and_stringly_answers_parse() {
        let mut flat = serde_json::Map::new();
        for c in CRITERIA {
            flat.insert(c.into(), json!("5"));
        }
        flat.insert("overall".into(), json!(5.0));
        let text = format!("Here you go:\n```json\n{}\n```", Value::Object(flat));
        assert_eq!(parse(&text).unwrap().overall, 5);
    }

    #[test]
    fn out_of_range_missing_and_non_json_answers_are_errors() {
        assert!(matches!(
            parse(&answer(json!(6))),
            Err(JudgeError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse(&answer(json!(2.5))),
            Err(JudgeError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse(r#"{"overall": 3}"#),
            Err(JudgeError::Missing(c)) if c == "naturalness"
        ));
        assert!(matches!(parse("I think 4"), Err(JudgeError::NotJson(_))));
        assert!(matches!(parse(""), Err(JudgeError::NotJson(_))));
    }

    #[test]
    fn the_strict_schema_uses_only_openais_subset() {
        let text = schema(JudgeSchema::Strict).to_string();
        for refused in ["minLength", "maxLength", "minimum", "maximum"] {
            assert!(!text.contains(refused), "{refused} in {text}");
        }
        assert!(schema(JudgeSchema::Full).to_string().contains("maxLength"));
    }
}
