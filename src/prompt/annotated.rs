//! The annotated mode's dialogue request: the plain request's scenario, services, emotions,
//! length and outcome, plus the schema excerpt of the item's services and the user goals, and an
//! answer format that labels every turn (the dialogue state per service, the service call and its
//! results, a handover). The JSON schema comes in OpenAI's strict subset for remote endpoints and
//! in full for llama-server, where each slot's values are constrained by grammar (the
//! categorical ones to their possible values). The scenario call is the plain one.

use serde_json::{json, Value};

use super::{category_phrase, services_phrase, AttemptSpec, RequestSettings, Schema};
use crate::annotation::UserGoal;
use crate::catalog::Catalog;
use crate::llm::ChatRequest;
use crate::parse::{MAX_FIELD_CHARS, MAX_INTENT_CHARS};
use crate::plan::{Annotate, WorkItem};
use crate::schema::Service;

/// Bump when the wording or parameters of an annotated request change (plain requests keep
/// [`super::PROMPT_VERSION`]).
pub const ANNOTATED_PROMPT_VERSION: &str = "dgen-prompts-annotated-v1";

/// An annotated plan's default dialogue `max_tokens` is the catalog's times this: the labels
/// make an answer about three times as long as its plain turns.
pub const MAX_TOKENS_FACTOR: u32 = 4;

/// Marks the line of the request that carries the goals as JSON (the tests' mock reads it).
pub const GOAL_MARK: &str = "User goal (JSON): ";
/// Marks the line that carries the schema excerpt as JSON.
pub const SCHEMA_MARK: &str = "Schema (JSON): ";

/// The opening of the annotated dialogue call's system message, the same for every item.
pub fn static_prefix() -> &'static str {
    "You are an expert dialogue generator for customer service, and you label what you write for a dialogue state tracker.\n\
     Create one new, realistic conversation between a USER (the customer) and an ASSISTANT (the service agent), driven by the user's goal.\n\
     Every turn moves the conversation forward with new details: never repeat a sentence from an earlier turn.\n\
     Answer with JSON only: an object with a \"turns\" list. In each turn:\n\
     - \"user\": the customer's own words;\n\
     - \"state\": for every service the customer has talked about so far, the state after this message: \"active_intent\" (one of the service's intents, or \"NONE\"), \"slot_values\" (every slot the customer has given a value for so far: a categorical slot's value is one of its possible_values, or dontcare; any other value is written exactly as it was said), \"requested_slots\" (the slots the customer asks about in this message);\n\
     - \"assistant\": the agent's reply in the agent's own words;\n\
     - \"service_call\": when the agent acts on the system in this turn, {\"service\", \"method\" (one of the service's intents), \"parameters\" (the state's values of the slots the intent takes)}, else null;\n\
     - \"service_results\": what the call returned, a list of results, each a list of {\"slot\", \"value\"} of the intent's result slots; an empty list when the call found nothing or failed, or when there is no call;\n\
     - \"handover\": true only in a turn where the agent hands the case over to a person.\n\
     Keep every value in the state until the customer changes it. A value appears in a state only after it was said in the conversation."
}

/// The schema excerpt the request shows: the item's services as SGD writes them.
fn excerpt<'a>(annotate: &'a Annotate, item: &WorkItem) -> Vec<&'a Service> {
    item.services
        .iter()
        .filter_map(|s| annotate.schema.service(s))
        .collect()
}

/// How the conversation must end, in terms of the calls: the primary goal's intent succeeds,
/// fails, or is handed over.
pub fn outcome_instruction(status: &str, primary: Option<&UserGoal>) -> String {
    let (service, intent) = primary.map_or(("the service", "the user's request"), |g| {
        (g.service.as_str(), g.intent.as_str())
    });
    match status {
        "Resolved" => format!("The assistant calls {intent} of {service} with the customer's values, the call returns a result, and in the last turn the assistant confirms what is done and the user thanks them."),
        "Failed" => format!("The assistant calls {intent} of {service}, the call returns an empty list (nothing is available), and in the last turn the assistant says that unfortunately it is not possible and why."),
        "Escalated" => format!("The assistant cannot complete {intent} of {service}: no call of it succeeds, and in the last turn the assistant hands the case over to a supervisor or a specialist team (handover true) who will get back to the user."),
        other => format!("The conversation ends with the outcome \"{other}\"."),
    }
}

/// The goals in words, one line per service.
fn goal_text(goals: &[UserGoal]) -> String {
    goals
        .iter()
        .map(|g| {
            let gives: Vec<String> = g.inform.iter().map(|(s, v)| format!("{s} = {v}")).collect();
            let mut line = format!("- {}: wants {}", g.service, g.intent);
            if !gives.is_empty() {
                line.push_str(&format!("; gives {}", gives.join(", ")));
            }
            if !g.request.is_empty() {
                line.push_str(&format!("; asks for {}", g.request.join(", ")));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn dialogue_request(
    settings: &RequestSettings,
    catalog: &Catalog,
    item: &WorkItem,
    spec: &AttemptSpec,
    scenario: &str,
    base_conversation: &str,
    annotate: &Annotate,
) -> ChatRequest {
    let slot = &catalog.time_slots[item.time_slot as usize];
    let goals = annotate.goals(item);
    let services = excerpt(annotate, item);
    let outcome = outcome_instruction(&item.resolution_status, goals.first());
    let system_text = format!(
        "{static_part}\n\n\
         {SCHEMA_MARK}{schema}\n\
         {GOAL_MARK}{goal_json}\n\
         The user's goal in words (the user gives these values over the conversation, not all at once, and asks for the listed slots):\n{goal_text}\n\
         Scenario: {scenario}\n\
         Category: {category}. Region: {region}. Time: {time} ({slot_name}).\n\
         Services involved: {services_phrase}; the conversation starts with {primary}.\n\
         Emotions: the user is {user_emotion}; the assistant is {assistant_emotion}. Let both show in the wording of every turn.\n\
         Length: between {min} and {max} turns.\n\
         Outcome: {status}. {outcome}",
        static_part = static_prefix(),
        schema = serde_json::to_string(&services).expect("a schema serializes"),
        goal_json = serde_json::to_string(&goals).expect("goals serialize"),
        goal_text = goal_text(&goals),
        scenario = scenario.trim(),
        category = category_phrase(&item.category),
        region = item.region,
        time = item.specific_time_hhmm(),
        slot_name = slot.name(),
        services_phrase = services_phrase(&item.services),
        primary = item.primary_service(),
        user_emotion = item.user_emotion,
        assistant_emotion = item.assistant_emotion,
        min = item.min_turns,
        max = item.max_turns,
        status = item.resolution_status,
    );
    let user_text = format!(
        "Here is an existing conversation, for reference only:\n\
         {base_conversation}\n\n\
         Write a new, labelled dialogue that pursues the user's goal above. Do not copy the reference. \
         Use between {min} and {max} turns in the JSON format above. Resolution status: {status}. {outcome}",
        status = item.resolution_status,
        min = item.min_turns,
        max = item.max_turns,
    );
    let schema = match settings.schema {
        Schema::Strict => strict_schema(&services),
        Schema::Full => full_schema(&services, item.min_turns, item.max_turns),
    };
    let chat = super::dialogue_chat(
        settings,
        spec,
        system_text,
        user_text,
        Some(("annotated_dialogue", schema)),
    );
    ChatRequest {
        chat,
        grammar: None,
    }
}

fn object(properties: Value) -> Value {
    let required: Vec<&String> = properties
        .as_object()
        .expect("properties are an object")
        .keys()
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn names<'a>(services: &[&'a Service], of: impl Fn(&'a Service) -> Vec<&'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = services.iter().flat_map(|s| of(s)).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The answer's schema with `pair` as the shape of a slot-value pair.
fn turn_schema(services: &[&Service], pair: Value, text: Value, turns: Value) -> Value {
    let service_names = names(services, |s| vec![s.service_name.as_str()]);
    let mut intents = names(services, |s| {
        s.intents.iter().map(|i| i.name.as_str()).collect()
    });
    let slots = names(services, |s| {
        s.slots.iter().map(|i| i.name.as_str()).collect()
    });
    let method = json!({"type": "string", "enum": intents.clone()});
    intents.push(crate::parse::annotated::NO_INTENT);
    let state = object(json!({
        "service": {"type": "string", "enum": service_names},
        "active_intent": {"type": "string", "enum": intents},
        "slot_values": {"type": "array", "items": pair.clone()},
        "requested_slots": {"type": "array", "items": {"type": "string", "enum": slots}},
    }));
    let call = object(json!({
        "service": {"type": "string", "enum": service_names},
        "method": method,
        "parameters": {"type": "array", "items": pair.clone()},
    }));
    let turn = object(json!({
        "user": text.clone(),
        "state": {"type": "array", "items": state},
        "assistant": text,
        "service_call": {"anyOf": [call, {"type": "null"}]},
        "service_results": {"type": "array", "items": {"type": "array", "items": pair}},
        "handover": {"type": "boolean"},
    }));
    let mut list = json!({"type": "array", "items": turn});
    if let (Some(l), Some(t)) = (list.as_object_mut(), turns.as_object()) {
        l.extend(t.clone());
    }
    object(json!({ "turns": list }))
}

/// OpenAI's strict subset: every property required, no length keywords; slot names, intents
/// and services still enumerated.
pub fn strict_schema(services: &[&Service]) -> Value {
    let slots = names(services, |s| {
        s.slots.iter().map(|i| i.name.as_str()).collect()
    });
    let pair = object(json!({
        "slot": {"type": "string", "enum": slots},
        "value": {"type": "string"},
    }));
    turn_schema(services, pair, json!({"type": "string"}), json!({}))
}

/// Full JSON Schema for llama-server: each slot its own alternative, a categorical one's value
/// limited to its possible values, fields capped, the turn count bounded.
pub fn full_schema(services: &[&Service], min: u32, max: u32) -> Value {
    // A slot name several services share (SGD's `city`, `date`) takes the union of their
    // possible values, or any text where one of them is free text.
    let mut values: std::collections::BTreeMap<&str, Option<Vec<&str>>> = Default::default();
    for service in services {
        for slot in &service.slots {
            let own = (slot.is_categorical && !slot.possible_values.is_empty()).then(|| {
                slot.possible_values
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
            });
            match (values.get_mut(slot.name.as_str()), own) {
                (None, own) => {
                    values.insert(&slot.name, own);
                }
                (Some(Some(known)), Some(own)) => {
                    known.extend(
                        own.into_iter()
                            .filter(|v| !known.contains(v))
                            .collect::<Vec<_>>(),
                    );
                }
                (Some(known), _) => *known = None,
            }
        }
    }
    let alternatives: Vec<Value> = values
        .into_iter()
        .map(|(name, values)| {
            let value = match values {
                // `dontcare`: the user accepts any value, as in SGD.
                Some(mut list) => {
                    list.push("dontcare");
                    json!({"type": "string", "enum": list})
                }
                None => json!({"type": "string", "minLength": 1, "maxLength": MAX_INTENT_CHARS}),
            };
            object(json!({
                "slot": {"type": "string", "const": name},
                "value": value,
            }))
        })
        .collect();
    let text = json!({"type": "string", "minLength": 1, "maxLength": MAX_FIELD_CHARS});
    turn_schema(
        services,
        json!({ "anyOf": alternatives }),
        text,
        json!({"minItems": min, "maxItems": max}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Schema as Services, ValuePools};

    #[test]
    fn the_strict_schema_keeps_to_openais_subset_and_the_full_one_constrains_values() {
        let schema = Services::builtin();
        let services = vec![
            schema.service("hotel").unwrap(),
            schema.service("taxi").unwrap(),
        ];
        let strict = serde_json::to_string(&strict_schema(&services)).unwrap();
        for banned in ["minLength", "maxLength", "minItems", "maxItems", "const"] {
            assert!(!strict.contains(banned), "{banned} in {strict}");
        }
        assert!(strict.contains("\"book_taxi\"") && strict.contains("\"NONE\""));
        let full = serde_json::to_string(&full_schema(&services, 2, 6)).unwrap();
        assert!(full.contains(r#""slot":{"type":"string","const":"hotel-pricerange"},"value":{"type":"string","enum":["cheap","moderate","expensive","dontcare"]"#), "{full}");
        assert!(full.contains("\"minItems\":2") && full.contains("\"maxItems\":6"));
    }

    #[test]
    fn a_slot_name_two_services_share_takes_both_definitions() {
        let two: Services = serde_json::from_str(
            r#"[{"service_name": "a", "slots": [{"name": "count", "is_categorical": true, "possible_values": ["1", "2"]},
                                                 {"name": "city", "is_categorical": true, "possible_values": ["x"]}],
                 "intents": [{"name": "i"}]},
                {"service_name": "b", "slots": [{"name": "count", "is_categorical": true, "possible_values": ["2", "9"]},
                                                 {"name": "city", "is_categorical": false}],
                 "intents": [{"name": "j"}]}]"#,
        )
        .unwrap();
        let services: Vec<&Service> = two.services.iter().collect();
        let full = serde_json::to_string(&full_schema(&services, 1, 3)).unwrap();
        assert!(
            full.contains(
                r#""const":"count"},"value":{"type":"string","enum":["1","2","9","dontcare"]}"#
            ),
            "{full}"
        );
        assert!(
            full.contains(r#""const":"city"},"value":{"type":"string","minLength""#),
            "{full}"
        );
    }

    #[test]
    fn the_outcome_names_the_primary_goal_and_what_the_calls_must_show() {
        let goal = UserGoal {
            service: "hotel".into(),
            intent: "book_hotel".into(),
            inform: vec![],
            request: vec![],
        };
        assert!(outcome_instruction("Failed", Some(&goal)).contains("empty list"));
        assert!(outcome_instruction("Escalated", Some(&goal)).contains("handover true"));
        assert!(outcome_instruction("Resolved", Some(&goal)).contains("book_hotel of hotel"));
        let _ = ValuePools::builtin();
    }
}
