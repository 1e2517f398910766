//! `dgen status`: where a store stands (items per state) and what the plan looks like (each
//! distribution next to its target), as text or JSON.

mod text;

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::catalog::{Catalog, SIZE_NAMES};
use crate::cost::{self, PriceTable, Pricing};
use crate::llm::Usage;
use crate::metrics::judge::JudgeCosts;
use crate::metrics::{self, Metrics, RunTotals};
use crate::store::{State, Store};

/// How to report: text or JSON, and the prices for the cost estimate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusOptions {
    pub json: bool,
    /// USD per million prompt tokens [default: built in for known models].
    pub price_input: Option<f64>,
    /// USD per million completion tokens [default: built in for known models].
    pub price_output: Option<f64>,
    /// USD per million cached prompt tokens [default: the price table's].
    pub price_cached_input: Option<f64>,
    /// `--prices FILE` over the built-in table.
    pub prices_file: Option<std::path::PathBuf>,
}

impl StatusOptions {
    fn overrides(&self) -> crate::cost::PriceOverrides {
        crate::cost::PriceOverrides {
            prices_file: self.prices_file.clone(),
            input: self.price_input,
            cached_input: self.price_cached_input,
            output: self.price_output,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Distributions {
    pub service_count: BTreeMap<String, Share>,
    pub combinations: BTreeMap<String, u64>,
    pub primary_services: BTreeMap<String, u64>,
    pub categories: BTreeMap<String, u64>,
    pub regions: BTreeMap<String, u64>,
    pub time_slots: BTreeMap<String, u64>,
    pub user_emotions: BTreeMap<String, u64>,
    pub assistant_emotions: BTreeMap<String, u64>,
    pub resolution_statuses: BTreeMap<String, Share>,
    pub min_turns: BTreeMap<u32, u64>,
    pub max_turns: BTreeMap<u32, u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Share {
    pub count: u64,
    pub share: f64,
    pub target: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub store: String,
    pub store_bytes: u64,
    pub dgen_version: String,
    pub plan_fingerprint: String,
    /// The shard this store holds, for a shard store (`dgen plan --shard`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::store::ShardMeta>,
    /// How many shards `dgen merge` made this store from, for a merged store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_shards: Option<u32>,
    pub seed: u64,
    pub total_items: u64,
    /// Items per state, in lifecycle order.
    pub states: Vec<StateCount>,
    pub dataset: DatasetSummary,
    pub personas: DatasetSummary,
    pub run: RunReport,
    pub distributions: Distributions,
    /// Diversity, semantic spread, plan coverage and the funnel (see `metrics`).
    pub metrics: Metrics,
    /// `dgen run --batch`: every provider batch, in submission order.
    pub batches: Vec<BatchSummary>,
}

/// One batch of `dgen run --batch`.
#[derive(Debug, Serialize)]
pub struct BatchSummary {
    pub id: u64,
    pub stage: &'static str,
    pub requests: usize,
    /// The provider's status, or `prepared` / `uploaded` before it was submitted, or
    /// `given_up` (the reason in `note`).
    pub status: String,
    /// Its results are committed (or it failed or was given up, and its requests went back
    /// to the pool).
    pub collected: bool,
    pub batch_id: Option<String>,
    pub completed: u64,
    pub failed: u64,
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ConcurrencySample {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub in_flight: u32,
    pub limit: u32,
}

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub model: Option<String>,
    pub dialogues: u64,
    /// Of `dialogues`, brought in by `dgen import`.
    pub imported: u64,
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Calls and tokens of the LLM judge (`dgen judge`, `dgen run --judge`), apart from the
    /// generation's above; the estimated cost includes them.
    pub judge_calls: u64,
    pub judge_prompt_tokens: u64,
    pub judge_completion_tokens: u64,
    /// Calls answered 429 or 503, on which the adaptive limiter backed off.
    pub overloaded_calls: u64,
    /// The latest sample of the adaptive limiter: requests in flight and the limit then.
    pub concurrency: Option<ConcurrencySample>,
    /// Of `prompt_tokens`, those the provider served from its prompt cache.
    pub cached_tokens: u64,
    /// `cached_tokens / prompt_tokens`, when there were prompt tokens.
    pub cache_hit_share: Option<f64>,
    /// USD per million tokens (input, output) used for the estimate; calls through the Batch
    /// API are priced at these times the price table's batch factor.
    pub prices: Option<(f64, f64)>,
    /// USD per million cached prompt tokens used for the estimate.
    pub price_cached_input: Option<f64>,
    /// Why there is no estimate: the model has no price.
    pub price_note: Option<String>,
    pub estimated_cost: Option<f64>,
    /// Of the tokens above, those billed through the Batch API (at the batch price).
    pub batch_prompt_tokens: u64,
    pub batch_completion_tokens: u64,
    /// USD the runs recorded as spent, at the prices in force when each call was billed
    /// (what `--max_cost` holds against).
    pub spent: f64,
    /// Of `spent`, the upper bounds charged for tries that were sent and timed out (each its
    /// prompt and max_tokens): the provider may have billed them, nobody can tell.
    pub spent_upper_bound: f64,
    /// Those tries.
    pub timed_out_calls: u64,
    /// The last run's `--max_cost`.
    pub max_cost: Option<f64>,
    /// Rejected attempts by reason (each may have been retried).
    pub rejections: BTreeMap<String, u64>,
    /// Items that ran out of attempts, by the reason of their last one.
    pub failures: BTreeMap<String, u64>,
    /// Accepted dialogues flagged by each quality check (rejections by a check are under
    /// `rejections`, by the check's name).
    pub checks: BTreeMap<String, u64>,
    pub elapsed_seconds: f64,
    pub dialogues_per_second: Option<f64>,
    pub eta_seconds: Option<f64>,
    /// What each endpoint did, by name (runs over several endpoints; empty before any).
    pub endpoints: BTreeMap<String, EndpointReport>,
}

/// One endpoint's counters over every run of the store.
#[derive(Debug, Default, Serialize)]
pub struct EndpointReport {
    /// Tries sent to it, answered or not.
    pub calls: u64,
    /// Tries that failed (no answer, an error status, an unusable body).
    pub errors: u64,
    /// Mean time of the answered tries, in milliseconds.
    pub mean_latency_ms: Option<u64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Times it was taken out of a run (and probed again later).
    pub taken_out: u64,
}

/// The `endpoint/NAME/...` counters, by endpoint.
fn endpoint_reports(counters: &BTreeMap<String, u64>) -> BTreeMap<String, EndpointReport> {
    let mut latency: BTreeMap<String, u64> = BTreeMap::new();
    let mut out: BTreeMap<String, EndpointReport> = BTreeMap::new();
    for (key, &n) in counters {
        let Some((name, what)) = key
            .strip_prefix(crate::store::ENDPOINT_PREFIX)
            .and_then(|rest| rest.rsplit_once('/'))
        else {
            continue;
        };
        let e = out.entry(name.to_string()).or_default();
        match what {
            "calls" => e.calls = n,
            "errors" => e.errors = n,
            "prompt_tokens" => e.prompt_tokens = n,
            "completion_tokens" => e.completion_tokens = n,
            "outs" => e.taken_out = n,
            "latency_ms" => {
                latency.insert(name.to_string(), n);
            }
            _ => {}
        }
    }
    for (name, e) in &mut out {
        let answered = e.calls.saturating_sub(e.errors);
        e.mean_latency_ms = latency.get(name).and_then(|ms| ms.checked_div(answered));
    }
    out
}

#[derive(Debug, Serialize)]
pub struct StateCount {
    pub state: &'static str,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct DatasetSummary {
    pub source: String,
    pub format: String,
    pub rows: u64,
    pub skipped: BTreeMap<String, u64>,
}

fn bump<K: Ord>(map: &mut BTreeMap<K, u64>, key: K) {
    *map.entry(key).or_default() += 1;
}

fn run_report(store: &Store, args: &StatusOptions, remaining: u64) -> Result<RunReport> {
    let counters = store.counters()?;
    let get = |k: &str| counters.get(k).copied().unwrap_or(0);
    let by_prefix = |prefix: &str| -> BTreeMap<String, u64> {
        counters
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|r| (r.to_string(), *v)))
            .collect()
    };
    let model = store.run_settings()?.map(|r| r.model);
    let pricing = PriceTable::resolve(model.as_deref().unwrap_or(""), &args.overrides())?;
    let price_note = match (&pricing, &model) {
        (Pricing::Unknown { .. }, Some(m)) => Some(Pricing::unknown_message(m)),
        _ => None,
    };
    let price = pricing.price();
    let (prompt_tokens, completion_tokens) = (get("tokens/prompt"), get("tokens/completion"));
    let (judge_prompt, judge_completion) =
        (get("judge/tokens/prompt"), get("judge/tokens/completion"));
    let cached_tokens = get(cost::CACHED_TOKENS);
    let (online, batch) = cost::generation_usage(&counters);
    // The judge's tokens at the same prices: a judge on another model is priced like the
    // run's unless the --price_* flags say otherwise.
    let judged = Usage {
        calls: 0,
        prompt_tokens: judge_prompt,
        completion_tokens: judge_completion,
        cached_tokens: get(cost::JUDGE_CACHED_TOKENS),
    };
    let mut at_online_price = online;
    at_online_price += judged;
    let elapsed = get("run/elapsed_ms") as f64 / 1000.0;
    let accepted = get("accepted");
    let rate = (elapsed > 0.0 && accepted > 0).then(|| accepted as f64 / elapsed);
    Ok(RunReport {
        model,
        dialogues: store.dialogue_count()?,
        imported: get("imported"),
        calls: get("calls"),
        prompt_tokens,
        completion_tokens,
        overloaded_calls: get("calls_overloaded"),
        concurrency: store.last_in_flight()?.map(|s| ConcurrencySample {
            at_ms: s.at_ms,
            in_flight: s.in_flight,
            limit: s.limit,
        }),
        cached_tokens,
        cache_hit_share: (prompt_tokens > 0).then(|| cached_tokens as f64 / prompt_tokens as f64),
        prices: price.map(|p| (p.input, p.output)),
        price_cached_input: price.map(|p| p.cached_input),
        price_note,
        estimated_cost: price.map(|p| p.cost(&at_online_price) + p.batch().cost(&batch)),
        batch_prompt_tokens: batch.prompt_tokens,
        batch_completion_tokens: batch.completion_tokens,
        spent: cost::from_nano(get(cost::SPENT_NANO_USD)),
        spent_upper_bound: cost::from_nano(get(cost::UPPER_BOUND_NANO_USD)),
        timed_out_calls: get(cost::TIMED_OUT_CALLS),
        max_cost: store.max_cost()?,
        judge_calls: get("judge/calls"),
        judge_prompt_tokens: judge_prompt,
        judge_completion_tokens: judge_completion,
        rejections: by_prefix("rejected/"),
        failures: store.failure_reasons()?,
        checks: by_prefix("flagged/"),
        elapsed_seconds: elapsed,
        dialogues_per_second: rate,
        eta_seconds: rate.map(|r| remaining as f64 / r),
        endpoints: endpoint_reports(&counters),
    })
}

/// The plan's distributions, each next to its target, and the number of items.
fn distributions(store: &Store, catalog: &Catalog) -> Result<(Distributions, u64)> {
    let mut d = Distributions::default();
    let mut sizes = [0u64; 4];
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0u64;
    store.for_each_item(|item| {
        total += 1;
        sizes[item.services.len().clamp(1, 4) - 1] += 1;
        bump(&mut d.primary_services, item.primary_service().to_string());
        bump(&mut d.categories, item.category);
        bump(&mut d.regions, item.region);
        let slot = catalog
            .time_slots
            .get(item.time_slot as usize)
            .map_or("?", |s| s.name());
        bump(&mut d.time_slots, slot.to_string());
        bump(&mut d.user_emotions, item.user_emotion);
        bump(&mut d.assistant_emotions, item.assistant_emotion);
        bump(&mut statuses, item.resolution_status);
        bump(&mut d.min_turns, item.min_turns);
        bump(&mut d.max_turns, item.max_turns);
        Ok(())
    })?;
    let share = |count: u64| {
        if total == 0 {
            0.0
        } else {
            count as f64 / total as f64
        }
    };
    let weights = catalog.service_count_weights.as_array();
    let weight_sum: f64 = weights.iter().sum();
    for (i, name) in SIZE_NAMES.iter().enumerate() {
        d.service_count.insert(
            name.to_string(),
            Share {
                count: sizes[i],
                share: share(sizes[i]),
                target: weights[i] / weight_sum,
            },
        );
    }
    let status_sum: f64 = catalog.resolution_statuses.values().sum();
    for (name, weight) in &catalog.resolution_statuses {
        let count = statuses.get(name).copied().unwrap_or(0);
        d.resolution_statuses.insert(
            name.clone(),
            Share {
                count,
                share: share(count),
                target: weight / status_sum,
            },
        );
    }
    d.combinations = store.combination_usage()?;
    Ok((d, total))
}

pub fn report(store: &Store, args: &StatusOptions) -> Result<Report> {
    report_with(store, args, &mut metrics::NoSink)
}

/// [`report`], handing every stored dialogue to `also` during the metrics' pass over them.
pub fn report_with(
    store: &Store,
    args: &StatusOptions,
    also: &mut impl crate::store::DialogueSink,
) -> Result<Report> {
    let meta = store.meta()?.context("the store holds no plan")?;
    let (d, total) = distributions(store, &meta.catalog)?;

    let counts = store.state_counts()?;
    let remaining = counts[&State::Pending] + counts[&State::InFlight] + counts[&State::Rejected];
    let run = run_report(store, args, remaining)?;
    let counters = store.counters()?;
    let totals = RunTotals {
        rejections: run.rejections.clone(),
        tokens: [
            run.prompt_tokens,
            run.completion_tokens,
            run.judge_prompt_tokens,
            run.judge_completion_tokens,
        ]
        .into_iter()
        .fold(0u64, u64::saturating_add),
        estimated_cost: run.estimated_cost,
        judge: JudgeCosts {
            calls: run.judge_calls,
            prompt_tokens: run.judge_prompt_tokens,
            completion_tokens: run.judge_completion_tokens,
            errors: counters
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("judge/errors/")?.to_string(), *v)))
                .collect(),
        },
    };
    let metrics = metrics::compute(
        store,
        &meta.catalog,
        meta.config.annotate.as_ref(),
        meta.config.seed,
        totals,
        also,
    )?;
    let states = counts
        .into_iter()
        .map(|(s, count)| StateCount {
            state: s.name(),
            count,
        })
        .collect();
    let summary = |r: &crate::dataset::LoadReport| DatasetSummary {
        source: r.source.clone(),
        format: r.format.clone(),
        rows: r.rows,
        skipped: r.skipped.clone(),
    };
    Ok(Report {
        store: store.path().display().to_string(),
        store_bytes: std::fs::metadata(store.path())
            .map(|m| m.len())
            .unwrap_or(0),
        dgen_version: meta.dgen_version.clone(),
        plan_fingerprint: meta.plan_fingerprint.clone(),
        shard: meta.shard.clone(),
        merged_shards: meta.merge.as_ref().map(|m| m.shard_count),
        seed: meta.config.seed,
        total_items: total,
        states,
        dataset: summary(&meta.datasets.dialogues),
        personas: summary(&meta.datasets.personas),
        run,
        distributions: d,
        metrics,
        batches: store
            .batch_jobs()?
            .into_iter()
            .map(|j| BatchSummary {
                id: j.id,
                stage: j.stage.name(),
                requests: j.requests.len(),
                status: j.status,
                collected: j.collected,
                batch_id: j.batch_id,
                completed: j.completed,
                failed: j.failed,
                note: j.note,
            })
            .collect(),
    })
}

/// The status report of an open store, as text or JSON.
pub fn render(store: &Store, args: &StatusOptions) -> Result<String> {
    let report = report(store, args)?;
    let mut out = Vec::new();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        text::write_text(&mut out, &report)?;
    }
    Ok(String::from_utf8(out)?)
}
