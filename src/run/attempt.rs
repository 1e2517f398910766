//! One attempt at one work item: the scenario call, the dialogue call, parsing, the quality
//! checks and embedding.
//! An attempt never touches the store; what it produced goes to the writer as an [`Outcome`].

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tokio::sync::mpsc;

use crate::annotation::Annotation;
use crate::catalog::Catalog;
use crate::dataset::Dialogue;
use crate::dedup;
use crate::embed::EmbedService;
use crate::judge::{self, Judge, JudgeError, JudgeScore};
use crate::llm::{ChatRequest, Pool, Usage};
use crate::parse;
use crate::plan::{PlanConfig, WorkItem};
use crate::prompt::{self, AttemptSpec, RequestSettings, Structured};
use crate::quality::{self, QualityConfig, QualityRecord, Subject};
use crate::record::{self, GeneratedDialogue};

/// Everything an attempt needs, shared by all tasks.
pub struct Ctx {
    pub settings: RequestSettings,
    pub catalog: Catalog,
    pub config: PlanConfig,
    /// The endpoints the calls go to (one, or several with `--endpoint`/`--endpoints`).
    pub pool: Arc<Pool>,
    pub embedder: EmbedService,
    /// Personas the plan stored, sorted by index: looked up on attempt 0, re-drawn later.
    pub personas: Vec<(u32, String)>,
    pub bases: BTreeMap<u32, Dialogue>,
    /// The catalog's quality data with this run's `--checks` applied.
    pub quality: QualityConfig,
    /// `--judge`: the judge, and `--min_judge_score`.
    pub judge: Option<InlineJudge>,
}

/// The judge of `dgen run --judge`.
pub struct InlineJudge {
    pub judge: Judge,
    pub min_score: Option<u8>,
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

/// What an attempt sends the writer: the tokens of each call as soon as it returns, then one
/// candidate or rejection.
pub enum Outcome {
    Billed(Usage),
    /// The upper bound of tries that were sent and timed out (their prompt plus max_tokens
    /// each): the provider may have billed them, so `--max_cost` counts them.
    TimedOut(Usage),
    /// A judge call's tokens, and the kind of error when it gave no score.
    Judged(Usage, Option<&'static str>),
    Candidate(Candidate),
    Rejected(Rejection),
}

/// A parsed, embedded dialogue waiting for the writer's duplicate checks.
pub struct Candidate {
    pub item: u64,
    pub attempt: u32,
    pub record: Box<GeneratedDialogue>,
    pub embedding: Vec<f32>,
    /// What the flagging checks found; stored with the dialogue.
    pub quality: QualityRecord,
}

impl Candidate {
    /// The writer turned it down (a duplicate): not a failure of the endpoint.
    pub fn rejection(&self, kind: &str, message: String) -> Rejection {
        Rejection {
            item: self.item,
            attempt: self.attempt,
            kind: kind.to_string(),
            message,
            failure: false,
        }
    }
}

pub struct Rejection {
    pub item: u64,
    pub attempt: u32,
    pub kind: String,
    pub message: String,
    /// A call failed or the answer was unusable (counts toward the breaker).
    pub failure: bool,
}

pub enum TaskResult {
    Done(Outcome),
    /// Something every further attempt would repeat (a bad key, an unknown model, a broken
    /// embedder): the message says what and what to check.
    Fatal(String),
}

/// One attempt in flight: its item, its number, and where its bills go.
struct Attempt<'a> {
    ctx: &'a Ctx,
    item: &'a WorkItem,
    attempt: u32,
    billing: &'a mpsc::Sender<Outcome>,
    usage: Usage,
    /// The endpoint that answered the latest call: the dialogue's provenance names its model.
    served_by: usize,
}

impl Attempt<'_> {
    /// A failed call or an unusable answer: counts toward the breaker.
    fn reject(&self, kind: &str, message: String) -> TaskResult {
        self.rejection(kind, message, true)
    }

    fn rejection(&self, kind: &str, message: String, failure: bool) -> TaskResult {
        TaskResult::Done(Outcome::Rejected(Rejection {
            item: self.item.index,
            attempt: self.attempt,
            kind: kind.to_string(),
            message,
            failure,
        }))
    }

    /// One call; its tokens are billed at once, whatever becomes of the attempt.
    async fn call(
        &mut self,
        what: &str,
        request: &ChatRequest,
    ) -> Result<(String, bool), TaskResult> {
        let result = self.ctx.pool.complete(request).await;
        let (billed, timed_out) = match &result {
            Ok(s) => (s.completion.usage, s.timed_out),
            Err(f) => (f.usage, f.timed_out),
        };
        self.usage += billed;
        if billed != Usage::default() {
            // The writer is gone only when the run is ending; the attempt's result is moot then.
            let _ = self.billing.send(Outcome::Billed(billed)).await;
        }
        if timed_out > 0 {
            let bound = timed_out_bound(&self.ctx.settings.model, request, timed_out);
            let _ = self.billing.send(Outcome::TimedOut(bound)).await;
        }
        match result {
            Ok(s) => {
                self.served_by = s.endpoint;
                Ok((s.completion.content, s.completion.truncated))
            }
            Err(f) if f.error.is_fatal() && self.ctx.pool.len() > 1 => Err(TaskResult::Fatal(
                format!(
                    "every endpoint is out of the run: {}. Check each endpoint's url, model and key (--endpoint, --endpoints)",
                    f.error
                ),
            )),
            Err(f) if f.error.is_fatal() => Err(TaskResult::Fatal(format!(
                "the endpoint refused the request: {}. Check --base_url, --model and the API key",
                f.error
            ))),
            Err(f) => Err(self.reject("api_error", format!("{what} call: {}", f.error))),
        }
    }
}

/// The most `tries` timed-out tries of `request` can have been billed: its prompt tokens and
/// its max_tokens each.
pub fn timed_out_bound(model: &str, request: &ChatRequest, tries: u32) -> Usage {
    let counter = crate::cost::TokenCounter::for_model(model);
    let max_tokens = request.max_tokens();
    let tries = u64::from(tries);
    Usage {
        calls: tries,
        prompt_tokens: counter.request(request).saturating_mul(tries),
        completion_tokens: u64::from(max_tokens).saturating_mul(tries),
        cached_tokens: 0,
    }
}

pub async fn attempt_item(
    ctx: Arc<Ctx>,
    item: WorkItem,
    attempt: u32,
    billing: mpsc::Sender<Outcome>,
) -> TaskResult {
    let mut a = Attempt {
        ctx: &ctx,
        item: &item,
        attempt,
        billing: &billing,
        usage: Usage::default(),
        served_by: 0,
    };
    match generate(&mut a).await {
        Ok(outcome) | Err(outcome) => outcome,
    }
}

async fn generate(a: &mut Attempt<'_>) -> Result<TaskResult, TaskResult> {
    let (ctx, item) = (a.ctx, a.item);
    let spec = attempt_spec(item, a.attempt, &ctx.config, &ctx.personas);
    let request = prompt::scenario_request(&ctx.settings, &ctx.catalog, item, &spec);
    let scenario = a.call("scenario", &request).await?.0.trim().to_string();
    if scenario.is_empty() {
        let message = "the scenario call returned no text".to_string();
        return Err(a.reject("empty_scenario", message));
    }
    let base = base_conversation(ctx, item);
    let request =
        prompt::dialogue_request(&ctx.settings, &ctx.catalog, item, &spec, &scenario, &base);
    let (content, truncated) = a.call("dialogue", &request).await?;
    let Checked {
        turns,
        flagged,
        annotation,
    } = checked_turns(ctx, item, &base, &content, truncated)
        .map_err(|r| a.rejection(&r.kind, r.message, r.failure))?;
    let judge = match &ctx.judge {
        Some(j) => judge(a, j, &spec, &scenario, &turns).await?,
        None => None,
    };
    let answered = Answered {
        spec,
        served_by: a.served_by,
        usage: a.usage,
        turns,
        scenario,
        flagged,
        annotation,
    };
    let candidate = candidate(ctx, item, answered, judge)
        .await
        .map_err(TaskResult::Fatal)?;
    Ok(TaskResult::Done(Outcome::Candidate(candidate)))
}

/// The base dialogue the item's prompt shows, as text.
pub fn base_conversation(ctx: &Ctx, item: &WorkItem) -> String {
    ctx.bases
        .get(&item.base_dialogue_index)
        .map(Dialogue::base_conversation)
        .unwrap_or_default()
}

/// A failed parse or a rejecting quality check, as the writer records it.
pub struct Unusable {
    pub kind: String,
    pub message: String,
    /// The answer was unusable (counts toward the breaker); a quality rejection is not.
    pub failure: bool,
}

/// A dialogue answer that parsed and passed the rejecting checks.
pub struct Checked {
    pub turns: Vec<parse::ParsedTurn>,
    /// What the flagging checks found.
    pub flagged: Vec<quality::Finding>,
    /// An annotated plan's labels, with the goals and the label summary.
    pub annotation: Option<Annotation>,
}

/// The dialogue answer parsed and checked: its turns, what the flagging checks found and, for an
/// annotated plan, its labels checked against the schema, the text and the goals.
pub fn checked_turns(
    ctx: &Ctx,
    item: &WorkItem,
    base: &str,
    content: &str,
    truncated: bool,
) -> Result<Checked, Unusable> {
    let parsed = match (&ctx.config.annotate, ctx.settings.structured) {
        (Some(annotate), _) => parse::annotated::parse_annotated(
            content,
            item.min_turns,
            item.max_turns,
            item.primary_service(),
            &annotate.schema,
        )
        .map(|(turns, annotation)| (turns, Some(annotation))),
        (None, Structured::Tags) => {
            parse::parse_dialogue(content, item.min_turns, item.max_turns).map(|t| (t, None))
        }
        (None, Structured::Json) => {
            parse::parse_json_dialogue(content, item.min_turns, item.max_turns).map(|t| (t, None))
        }
    };
    let (turns, annotation) = match parsed {
        Ok(t) => t,
        Err(e) if truncated => {
            return Err(Unusable {
                kind: "truncated".into(),
                message: format!(
                    "invalid dialogue ({e}): the answer was cut off at max_tokens {}; raise --max_tokens",
                    ctx.settings.dialogue_max_tokens
                ),
                failure: true,
            })
        }
        Err(e) => {
            return Err(Unusable {
                kind: e.kind().to_string(),
                message: format!("invalid dialogue: {e}"),
                failure: true,
            })
        }
    };
    let verdict = quality::evaluate(
        &Subject {
            turns: &turns,
            services: &item.services,
            resolution_status: &item.resolution_status,
            base_conversation: base,
        },
        &ctx.quality,
    );
    let mut flagged = verdict.flagged;
    let mut reject = verdict.reject;
    let annotation = match (annotation, &ctx.config.annotate) {
        (Some(mut annotation), Some(annotate)) => {
            annotation.goals = annotate.goals(item);
            let subject = quality::labels::LabelSubject {
                turns: &turns,
                annotation: &annotation,
                goals: &annotation.goals,
                schema: &annotate.schema,
                resolution_status: &item.resolution_status,
            };
            let (labels, summary) = quality::labels::evaluate(&subject, &ctx.quality);
            reject = reject.or(labels.reject);
            flagged.extend(labels.flagged);
            annotation.labels = Some(summary);
            Some(annotation)
        }
        _ => None,
    };
    if let Some(found) = reject {
        // Like a duplicate, not a failure: the endpoint answered and the answer parsed, so the
        // breaker (meant for a broken endpoint) is left alone; max_attempts bounds the item.
        return Err(Unusable {
            kind: found.check.name().to_string(),
            message: format!("quality check {}: {}", found.check, found.detail),
            failure: false,
        });
    }
    Ok(Checked {
        turns,
        flagged,
        annotation,
    })
}

/// What an attempt's calls produced and its checks passed: the parts of its record.
pub struct Answered {
    pub spec: AttemptSpec,
    /// The endpoint (of the pool) that wrote the dialogue: its model is the record's.
    pub served_by: usize,
    /// Both calls' tokens.
    pub usage: Usage,
    pub turns: Vec<parse::ParsedTurn>,
    pub scenario: String,
    /// What the flagging checks found.
    pub flagged: Vec<quality::Finding>,
    /// An annotated plan's labels.
    pub annotation: Option<Annotation>,
}

/// The checked dialogue hashed, embedded and recorded: a candidate for the writer. An error
/// (the embedder failed) concerns the whole run.
pub async fn candidate(
    ctx: &Ctx,
    item: &WorkItem,
    answered: Answered,
    judge: Option<JudgeScore>,
) -> Result<Candidate, String> {
    let hash = dedup::sha256(&record::canonical_text(&answered.turns));
    let embedding = ctx
        .embedder
        .embed(record::embedding_text(&answered.turns))
        .await
        .map_err(|e| format!("embedding failed: {e:#}"))?;
    let attempt = answered.spec.attempt;
    let flagged = answered.flagged.clone();
    let annotation = answered.annotation.clone().map(Box::new);
    let record = dialogue_record(ctx, item, answered, hash);
    Ok(Candidate {
        item: item.index,
        attempt,
        record: Box::new(record),
        embedding,
        quality: QualityRecord {
            checks: flagged,
            judge,
            annotation,
        },
    })
}

/// `--judge`: the dialogue's score, before dedup and the commit. A low score rejects the attempt
/// (`judge_low`, not a failure: the endpoint worked). A judge that fails keeps the dialogue
/// unjudged, unless `--min_judge_score` asks for a score: then the attempt is rejected as
/// `judge_error` and counts toward the breaker, since a broken judge would pass nothing.
async fn judge(
    a: &mut Attempt<'_>,
    inline: &InlineJudge,
    spec: &AttemptSpec,
    scenario: &str,
    turns: &[parse::ParsedTurn],
) -> Result<Option<JudgeScore>, TaskResult> {
    let item = a.item;
    let subject = judge::Subject {
        services: &item.services,
        category: &item.category,
        scenario,
        persona: &spec.persona,
        user_emotion: &item.user_emotion,
        assistant_emotion: &item.assistant_emotion,
        outcome: &item.resolution_status,
        turns,
    };
    let judged = inline.judge.score(&subject).await;
    let error = judged.result.as_ref().err().map(JudgeError::kind);
    if judged.usage != Usage::default() || error.is_some() {
        let _ = a.billing.send(Outcome::Judged(judged.usage, error)).await;
    }
    match (judged.result, inline.min_score) {
        (Ok(score), Some(min)) if score.overall < min => {
            let message = format!(
                "judge score {} below --min_judge_score {min}: {}",
                score.overall, score.reasoning
            );
            Err(a.rejection("judge_low", message, false))
        }
        (Ok(score), _) => Ok(Some(score)),
        (Err(e), _) if e.is_fatal() => Err(TaskResult::Fatal(format!(
            "the judge endpoint refused the request: {e}. Check --judge_base_url, --judge_model and the API key"
        ))),
        (Err(e), Some(_)) => Err(a.reject("judge_error", format!("{e}"))),
        (Err(e), None) => {
            tracing::warn!("item {}: kept unjudged: {e}", item.index);
            Ok(None)
        }
    }
}

fn dialogue_record(
    ctx: &Ctx,
    item: &WorkItem,
    answered: Answered,
    hash: dedup::Hash,
) -> GeneratedDialogue {
    let Answered {
        spec,
        served_by,
        usage,
        turns,
        scenario,
        ..
    } = answered;
    let slot = &ctx.catalog.time_slots[item.time_slot as usize];
    GeneratedDialogue {
        item_index: Some(item.index),
        attempt: spec.attempt,
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
        model: ctx.pool.model(served_by).to_string(),
        temperature: spec.temperature,
        top_p: spec.top_p,
        frequency_penalty: spec.frequency_penalty,
        presence_penalty: spec.presence_penalty,
        seed: spec.seed,
        usage,
        hash,
    }
}
