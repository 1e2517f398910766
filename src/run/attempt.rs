//! One attempt at one work item: the scenario call, the dialogue call, parsing and embedding.
//! An attempt never touches the store; what it produced goes to the writer as an [`Outcome`].

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::catalog::Catalog;
use crate::dataset::Dialogue;
use crate::dedup;
use crate::embed::EmbedService;
use crate::llm::{LlmClient, Usage};
use crate::parse;
use crate::plan::{PlanConfig, WorkItem};
use crate::prompt::{self, AttemptSpec, RequestSettings, Structured};
use crate::record::{self, GeneratedDialogue};

/// Everything an attempt needs, shared by all tasks.
pub struct Ctx {
    pub settings: RequestSettings,
    pub catalog: Catalog,
    pub config: PlanConfig,
    pub client: LlmClient,
    pub embedder: EmbedService,
    /// Personas the plan stored, sorted by index: looked up on attempt 0, re-drawn later.
    pub personas: Vec<(u32, String)>,
    pub bases: BTreeMap<u32, Dialogue>,
}

/// The persona and sampling of one attempt: the plan's on attempt 0, re-drawn from
/// (item seed, attempt) afterwards; services, category and outcome never change.
pub fn attempt_spec(
    item: &WorkItem,
    attempt: u32,
    config: &PlanConfig,
    personas: &[(u32, String)],
) -> AttemptSpec {
    if attempt == 0 {
        let persona = personas
            .binary_search_by_key(&item.persona_index, |(i, _)| *i)
            .map(|at| personas[at].1.clone())
            .unwrap_or_default();
        return AttemptSpec {
            attempt,
            persona_index: item.persona_index,
            persona,
            temperature: item.temperature,
            top_p: item.top_p,
            frequency_penalty: item.frequency_penalty,
            presence_penalty: item.presence_penalty,
            seed: item.seed,
        };
    }
    let mut rng = ChaCha20Rng::seed_from_u64(
        item.seed ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let mut pick = |list: &[f64]| list[rng.random_range(0..list.len() as u64) as usize];
    let temperature = pick(&config.temperature);
    let top_p = pick(&config.top_p);
    let frequency_penalty = pick(&config.frequency_penalty);
    let presence_penalty = pick(&config.presence_penalty);
    let (persona_index, persona) =
        personas[rng.random_range(0..personas.len() as u64) as usize].clone();
    AttemptSpec {
        attempt,
        persona_index,
        persona,
        temperature,
        top_p,
        frequency_penalty,
        presence_penalty,
        seed: rng.next_u64(),
    }
}

/// What an attempt produced, on its way to the writer.
pub enum Outcome {
    Candidate {
        item: u64,
        attempt: u32,
        record: Box<GeneratedDialogue>,
        embedding: Vec<f32>,
    },
    Rejected {
        item: u64,
        attempt: u32,
        kind: String,
        message: String,
        usage: Usage,
        /// A call failed or the answer was unusable (counts toward the breaker).
        failure: bool,
    },
}

pub enum TaskResult {
    Done(Outcome),
    /// The endpoint refused in a way every further call would repeat (bad key, unknown model).
    Fatal(String),
}

fn rejected(
    item: u64,
    attempt: u32,
    kind: &str,
    message: String,
    usage: Usage,
    failure: bool,
) -> TaskResult {
    TaskResult::Done(Outcome::Rejected {
        item,
        attempt,
        kind: kind.to_string(),
        message,
        usage,
        failure,
    })
}

pub async fn attempt_item(ctx: Arc<Ctx>, item: WorkItem, attempt: u32) -> TaskResult {
    let spec = attempt_spec(&item, attempt, &ctx.config, &ctx.personas);
    let mut usage = Usage::default();

    let request = prompt::scenario_request(&ctx.settings, &ctx.catalog, &item, &spec);
    let scenario = match ctx.client.complete(&request).await {
        Ok(c) => {
            usage += c.usage;
            c.content.trim().to_string()
        }
        Err(f) if f.error.is_fatal() => return TaskResult::Fatal(f.error.to_string()),
        Err(f) => {
            usage += f.usage;
            let message = format!("scenario call: {}", f.error);
            return rejected(item.index, attempt, "api_error", message, usage, true);
        }
    };
    if scenario.is_empty() {
        return rejected(
            item.index,
            attempt,
            "empty_scenario",
            "the scenario call returned no text".into(),
            usage,
            true,
        );
    }

    let base = ctx
        .bases
        .get(&item.base_dialogue_index)
        .map(Dialogue::base_conversation)
        .unwrap_or_default();
    let request =
        prompt::dialogue_request(&ctx.settings, &ctx.catalog, &item, &spec, &scenario, &base);
    let (content, truncated) = match ctx.client.complete(&request).await {
        Ok(c) => {
            usage += c.usage;
            (c.content, c.truncated)
        }
        Err(f) if f.error.is_fatal() => return TaskResult::Fatal(f.error.to_string()),
        Err(f) => {
            usage += f.usage;
            let message = format!("dialogue call: {}", f.error);
            return rejected(item.index, attempt, "api_error", message, usage, true);
        }
    };
    let parsed = match ctx.settings.structured {
        Structured::Tags => parse::parse_dialogue(&content, item.min_turns, item.max_turns),
        Structured::Json => parse::parse_json_dialogue(&content, item.min_turns, item.max_turns),
    };
    let turns = match parsed {
        Ok(t) => t,
        Err(e) if truncated => {
            let message = format!(
                "invalid dialogue ({e}): the answer was cut off at max_tokens {}; raise --max_tokens",
                ctx.settings.dialogue_max_tokens
            );
            return rejected(item.index, attempt, "truncated", message, usage, true);
        }
        Err(e) => {
            return rejected(
                item.index,
                attempt,
                e.kind(),
                format!("invalid dialogue: {e}"),
                usage,
                true,
            )
        }
    };

    let hash = dedup::sha256(&record::canonical_text(&turns));
    let embedding = match ctx.embedder.embed(record::embedding_text(&turns)).await {
        Ok(v) => v,
        Err(e) => return TaskResult::Fatal(format!("{e:#}")),
    };
    let slot = &ctx.catalog.time_slots[item.time_slot as usize];
    let record = GeneratedDialogue {
        item_index: Some(item.index),
        attempt,
        dialogue_id: record::dialogue_id(&item.base_dialogue_id, item.seed),
        services: item.services.clone(),
        turns,
        user_emotion: item.user_emotion.clone(),
        assistant_emotion: item.assistant_emotion.clone(),
        scenario_category: item.category.clone(),
        generated_scenario: scenario,
        time_slot: (slot.start(), slot.end(), slot.name().to_string()),
        regions: vec![item.region.clone()],
        resolution_status: item.resolution_status.clone(),
        persona: spec.persona.clone(),
        specific_time: item.specific_time_hhmm(),
        base_dialogue_id: item.base_dialogue_id.clone(),
        model: ctx.settings.model.clone(),
        temperature: spec.temperature,
        top_p: spec.top_p,
        frequency_penalty: spec.frequency_penalty,
        presence_penalty: spec.presence_penalty,
        seed: spec.seed,
        usage,
        hash,
    };
    TaskResult::Done(Outcome::Candidate {
        item: item.index,
        attempt,
        record: Box::new(record),
        embedding,
    })
}
