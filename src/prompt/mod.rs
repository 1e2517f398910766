//! The two prompts of each attempt, written from the original pipeline's requirements: a short
//! scenario grounded in persona, place and time, then the dialogue itself with its services,
//! emotions, turn bounds, outcome and a base conversation as reference. `PROMPT_VERSION` goes
//! into the store, so a store is never continued with different prompts.

pub mod annotated;

use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestUserMessage, CreateChatCompletionRequest, ResponseFormat,
    ResponseFormatJsonSchema,
};

use crate::catalog::Catalog;
use crate::llm::ChatRequest;
/// The tag format's texts live with the format, in `parse`, below the quality checks that
/// look for them in answers.
pub use crate::parse::{FIXED_TEXTS, TAG_ASSISTANT, TAG_INTENT, TAG_USER};
use crate::parse::{MAX_FIELD_CHARS, MAX_INTENT_CHARS};
use crate::plan::WorkItem;

/// Bump when the wording or parameters of a request change.
pub const PROMPT_VERSION: &str = "dgen-prompts-v5";

/// What one attempt of an item uses: the plan's choices on attempt 0, re-drawn afterwards.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttemptSpec {
    pub attempt: u32,
    pub persona_index: u32,
    pub persona: String,
    pub temperature: f64,
    pub top_p: f64,
    pub frequency_penalty: f64,
    pub presence_penalty: f64,
    /// Sent as the request `seed`.
    pub seed: u64,
}

/// How the dialogue comes back: the original's tagged text, or JSON constrained by a schema.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum Structured {
    /// `<User>…</User><Intent>…</Intent><Assistant>…</Assistant>` turns (the original format).
    Tags,
    /// `response_format: json_schema` (strict), turns of user / intent / assistant.
    Json,
}

impl Structured {
    pub fn name(self) -> &'static str {
        match self {
            Structured::Tags => "tags",
            Structured::Json => "json",
        }
    }
}

/// Which JSON schema `--structured json` sends.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum Schema {
    /// The subset OpenAI's strict Structured Outputs accept (every property required,
    /// `additionalProperties: false`, no length or item-count keywords); turn bounds and field
    /// caps are checked after parsing.
    Strict,
    /// Turn bounds (`minItems`/`maxItems`) and field caps (`minLength`/`maxLength`) in the
    /// schema, for servers that enforce full JSON Schema (llama-server).
    Full,
}

/// Settings shared by every request of a run.
#[derive(Debug, Clone)]
pub struct RequestSettings {
    pub model: String,
    pub dialogue_max_tokens: u32,
    pub structured: Structured,
    /// The schema sent with `Structured::Json`.
    pub schema: Schema,
    /// Constrain the tag format with a GBNF grammar (llama-server only).
    pub grammar: bool,
    /// The plan's schema and value pools, when it is annotated: the dialogue call asks for
    /// labelled turns (always JSON, in `schema`'s variant).
    pub annotate: Option<crate::plan::Annotate>,
}

impl RequestSettings {
    /// The wire format as the store records it (with `PROMPT_VERSION`): `tags`, `json` (the
    /// full schema, as before the strict one existed) or `json-strict`.
    /// The prompts' version as the store records it.
    pub fn prompt_version(&self) -> &'static str {
        match self.annotate {
            Some(_) => annotated::ANNOTATED_PROMPT_VERSION,
            None => PROMPT_VERSION,
        }
    }

    pub fn wire_format(&self) -> &'static str {
        if self.annotate.is_some() {
            return match self.schema {
                Schema::Full => "annotated-json",
                Schema::Strict => "annotated-json-strict",
            };
        }
        match (self.structured, self.schema) {
            (Structured::Tags, _) => "tags",
            (Structured::Json, Schema::Full) => "json",
            (Structured::Json, Schema::Strict) => "json-strict",
        }
    }
}

/// A GBNF grammar (llama.cpp) for `min..=max` turns of the tag format.
pub fn tags_grammar(min: u32, max: u32) -> String {
    format!(
        "root ::= turn{{{min},{max}}}\n\
         turn ::= \"<User>\" text \"</User>\\n<Intent>\" label \"</Intent>\\n<Assistant>\" text \"</Assistant>\\n\"\n\
         text ::= [^<\\n]{{1,{MAX_FIELD_CHARS}}}\n\
         label ::= [a-z_]{{1,{MAX_INTENT_CHARS}}}\n"
    )
}

/// The JSON schema of a dialogue with `min..=max` turns, bounds and caps included: for servers
/// that enforce full JSON Schema.
pub fn dialogue_schema(min: u32, max: u32) -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "turns": {
                "type": "array",
                "minItems": min,
                "maxItems": max,
                "items": {
                    "type": "object",
                    "properties": {
                        "user": {"type": "string", "minLength": 1, "maxLength": MAX_FIELD_CHARS},
                        "intent": {"type": "string", "minLength": 1, "maxLength": MAX_INTENT_CHARS},
                        "assistant": {"type": "string", "minLength": 1, "maxLength": MAX_FIELD_CHARS}
                    },
                    "required": ["user", "intent", "assistant"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["turns"],
        "additionalProperties": false
    })
}

/// The same shape in the subset OpenAI's strict Structured Outputs accept: every property
/// required, `additionalProperties: false`, and no `minItems`/`maxItems`/`minLength`/
/// `maxLength` (refused with a 400 on every call). The bounds go into descriptions, which the
/// model reads; the parser enforces them.
pub fn strict_dialogue_schema(min: u32, max: u32) -> serde_json::Value {
    let text = |what: &str, cap: usize| serde_json::json!({"type": "string", "description": format!("{what}, at most {cap} characters")});
    serde_json::json!({
        "type": "object",
        "properties": {
            "turns": {
                "type": "array",
                "description": format!("Between {min} and {max} turns."),
                "items": {
                    "type": "object",
                    "properties": {
                        "user": text("What the user says", MAX_FIELD_CHARS),
                        "intent": text("The user's intent as a short snake_case label", MAX_INTENT_CHARS),
                        "assistant": text("What the assistant replies", MAX_FIELD_CHARS)
                    },
                    "required": ["user", "intent", "assistant"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["turns"],
        "additionalProperties": false
    })
}

/// The request `seed`: 31 bits of the attempt's seed, which every server accepts (llama-server
/// reads it as an unsigned 32-bit value and treats -1 as "random").
pub fn request_seed(seed: u64) -> i64 {
    (seed & 0x7FFF_FFFF) as i64
}

fn system(text: String) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage::from(text))
}

fn user(text: String) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage::from(text))
}

fn services_phrase(services: &[String]) -> String {
    match services {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn category_phrase(category: &str) -> String {
    category.replace('_', " ")
}

/// The opening of the scenario call's system message: the same for every item, so that a
/// provider's prompt cache can serve it (OpenAI caches identical prefixes of 1,024 tokens or
/// more); everything about the item comes after it.
pub fn scenario_static_prefix() -> &'static str {
    "You write short, specific scenarios for customer-service conversations.\n\
     Be concrete: names, times, amounts. Write 2-3 lines of plain text, no title, no list."
}

/// The opening of the dialogue call's system message, the same for every item of a wire
/// format: the role, the rules and the format come first, the item's scenario, services,
/// emotions, length and outcome after them (see [`scenario_static_prefix`]).
pub fn dialogue_static_prefix(structured: Structured) -> String {
    format!(
        "You are an expert dialogue generator for customer service.\n\
         Create one new, realistic conversation between a USER (the customer) and an ASSISTANT (the service agent).\n\
         A turn is one user message, its intent, and one assistant reply.\n\
         Every turn moves the conversation forward with new details: never repeat a sentence from an earlier turn.\n\
         {format}",
        format = format_instruction(structured),
    )
}

// `max_tokens` and `seed` are deprecated in OpenAI's schema but are what every
// OpenAI-compatible server (llama-server, vLLM, Ollama) understands, and the seed makes a
// retried item reproducible where the server honours it.
#[allow(deprecated)]
pub fn scenario_request(
    settings: &RequestSettings,
    catalog: &Catalog,
    item: &WorkItem,
    spec: &AttemptSpec,
) -> ChatRequest {
    let slot = &catalog.time_slots[item.time_slot as usize];
    let services = services_phrase(&item.services);
    let category = category_phrase(&item.category);
    let system_text = format!(
        "{static_part}\n\n\
         Write one scenario about {services} services in the category \"{category}\" from the point of view of this customer:\n\
         {persona}\n\
         It takes place in {region} at {time} ({slot_name}). Use local details of {region} (places, transport, customs) where they fit, and make the time of day matter.",
        static_part = scenario_static_prefix(),
        persona = spec.persona,
        region = item.region,
        time = item.specific_time_hhmm(),
        slot_name = slot.name(),
    );
    let user_text = format!(
        "Write the scenario for category \"{category}\" involving {services} in {region}, {slot_name} at {time}.",
        region = item.region,
        slot_name = slot.name(),
        time = item.specific_time_hhmm(),
    );
    let call = &catalog.generation_defaults.scenario_call;
    let chat = CreateChatCompletionRequest {
        model: settings.model.clone(),
        messages: vec![system(system_text), user(user_text)],
        max_tokens: Some(call.max_tokens),
        temperature: Some(call.temperature as f32),
        top_p: Some(call.top_p as f32),
        seed: Some(request_seed(spec.seed)),
        n: Some(1),
        ..Default::default()
    };
    ChatRequest {
        chat,
        grammar: None,
    }
}

/// How the conversation must end, by resolution status: what the last turn says, in the words
/// a reader (and the `outcome_mismatch` check) recognises the outcome by.
pub fn resolution_instruction(status: &str) -> String {
    match status {
        "Resolved" => "The assistant fully resolves the user's request: in the last turn the assistant confirms what is now booked, fixed or refunded, and the user thanks them.".to_string(),
        "Failed" => "The request cannot be fulfilled: in the last turn the assistant says that unfortunately it is not possible and why, and the user is left disappointed.".to_string(),
        "Escalated" => "The assistant cannot resolve the issue alone: in the last turn the assistant escalates the case to a supervisor or a specialist team and says they will get back to the user.".to_string(),
        other => format!("The conversation ends with the outcome \"{other}\"."),
    }
}

/// How to write the turns. The JSON format shows no example turn: the schema (enforced by the
/// server) already gives the shape, and small models copied a fixed example into a third of
/// their dialogues (see BENCHMARKS.md).
fn format_instruction(structured: Structured) -> String {
    match structured {
        Structured::Tags => format!(
            "Format every turn exactly like this, with nothing between turns:\n\
             <User>{TAG_USER}</User>\n\
             <Intent>{TAG_INTENT}</Intent>\n\
             <Assistant>{TAG_ASSISTANT}</Assistant>"
        ),
        Structured::Json => "Answer with JSON only: an object with a \"turns\" list. In each turn, \"user\" \
             holds the customer's own words, \"intent\" a short snake_case label of what the customer \
             wants in that turn, and \"assistant\" the agent's reply in the agent's own words."
            .to_string(),
    }
}

/// The dialogue call's body, plain or annotated: the attempt's sampling, the settings'
/// `max_tokens`, and the named JSON schema of the answer, if any.
#[allow(deprecated)]
fn dialogue_chat(
    settings: &RequestSettings,
    spec: &AttemptSpec,
    system_text: String,
    user_text: String,
    schema: Option<(&str, serde_json::Value)>,
) -> CreateChatCompletionRequest {
    CreateChatCompletionRequest {
        model: settings.model.clone(),
        messages: vec![system(system_text), user(user_text)],
        max_tokens: Some(settings.dialogue_max_tokens),
        temperature: Some(spec.temperature as f32),
        top_p: Some(spec.top_p as f32),
        frequency_penalty: Some(spec.frequency_penalty as f32),
        presence_penalty: Some(spec.presence_penalty as f32),
        seed: Some(request_seed(spec.seed)),
        n: Some(1),
        response_format: schema.map(|(name, schema)| ResponseFormat::JsonSchema {
            json_schema: ResponseFormatJsonSchema {
                description: None,
                name: name.to_string(),
                schema,
                strict: Some(true),
            },
        }),
        ..Default::default()
    }
}

pub fn dialogue_request(
    settings: &RequestSettings,
    catalog: &Catalog,
    item: &WorkItem,
    spec: &AttemptSpec,
    scenario: &str,
    base_conversation: &str,
) -> ChatRequest {
    if let Some(annotate) = &settings.annotate {
        return annotated::dialogue_request(
            settings,
            catalog,
            item,
            spec,
            scenario,
            base_conversation,
            annotate,
        );
    }
    let slot = &catalog.time_slots[item.time_slot as usize];
    let services = services_phrase(&item.services);
    let system_text = format!(
        "{static_part}\n\n\
         Scenario: {scenario}\n\
         Region: {region}. Time: {time} ({slot_name}).\n\
         Services involved: {services}; the conversation starts with {primary}.\n\
         Emotions: the user is {user_emotion}; the assistant is {assistant_emotion}. Let both show in the wording of every turn.\n\
         Length: between {min} and {max} turns.\n\
         Outcome: {status}. {outcome}",
        static_part = dialogue_static_prefix(settings.structured),
        scenario = scenario.trim(),
        region = item.region,
        time = item.specific_time_hhmm(),
        slot_name = slot.name(),
        primary = item.primary_service(),
        user_emotion = item.user_emotion,
        assistant_emotion = item.assistant_emotion,
        min = item.min_turns,
        max = item.max_turns,
        status = item.resolution_status,
        outcome = resolution_instruction(&item.resolution_status),
    );
    let user_text = format!(
        "Here is an existing conversation, for reference only:\n\
         {base_conversation}\n\n\
         Write a new dialogue that fits the scenario and services above. Do not copy the reference: \
         make it different and more engaging, with concrete details. Use between {min} and {max} \
         turns in the format above. Resolution status: {status}. {outcome}",
        status = item.resolution_status,
        outcome = resolution_instruction(&item.resolution_status),
        min = item.min_turns,
        max = item.max_turns,
    );
    let schema = (settings.structured == Structured::Json).then(|| {
        let schema = match settings.schema {
            Schema::Strict => strict_dialogue_schema(item.min_turns, item.max_turns),
            Schema::Full => dialogue_schema(item.min_turns, item.max_turns),
        };
        ("dialogue", schema)
    });
    let chat = dialogue_chat(settings, spec, system_text, user_text, schema);
    let grammar = (settings.grammar && settings.structured == Structured::Tags)
        .then(|| tags_grammar(item.min_turns, item.max_turns));
    ChatRequest { chat, grammar }
}
