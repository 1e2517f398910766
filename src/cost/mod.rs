//! What generation costs: the price table (`prices`), the estimate of a plan before a run
//! (`estimate`), and the counters a run's bills go to.

pub mod estimate;
pub mod prices;

pub use estimate::{dollars, from_nano, Estimate, Estimator, Expectation, TokenCounter};
pub use prices::{Price, PriceOverrides, PriceTable, PricesError, Pricing};

/// Counter of the prompt tokens the provider served from its cache.
pub const CACHED_TOKENS: &str = "tokens/cached";
/// Counter of the judge's cached prompt tokens.
pub const JUDGE_CACHED_TOKENS: &str = "judge/tokens/cached";
/// Counter of what the run's calls (and its judge's) cost at the prices in force when they
/// were billed, in nano-dollars: what `--max_cost` holds against, across resumes.
pub const SPENT_NANO_USD: &str = "cost/spent_nano_usd";

/// Counter of the upper bounds charged to [`SPENT_NANO_USD`] for tries that were sent and timed
/// out (the provider may have billed them; nobody can tell), in nano-dollars.
pub const UPPER_BOUND_NANO_USD: &str = "cost/upper_bound_nano_usd";
/// Counter of those tries.
pub const TIMED_OUT_CALLS: &str = "calls/timed_out";
/// Counters of the tokens billed through the Batch API (at the batch price), which the
/// `tokens/*` counters include: prompt, completion and cached prompt tokens.
pub const BATCH_PROMPT_TOKENS: &str = "batch_tokens/prompt";
pub const BATCH_COMPLETION_TOKENS: &str = "batch_tokens/completion";
pub const BATCH_CACHED_TOKENS: &str = "batch_tokens/cached";

/// The generation tokens of a store's counters, split into those billed online and those
/// billed through the Batch API. Stores from before the batch counters count everything
/// as online.
pub fn generation_usage(
    counters: &std::collections::BTreeMap<String, u64>,
) -> (crate::llm::Usage, crate::llm::Usage) {
    let get = |k: &str| counters.get(k).copied().unwrap_or(0);
    let batch = crate::llm::Usage {
        calls: 0,
        prompt_tokens: get(BATCH_PROMPT_TOKENS),
        completion_tokens: get(BATCH_COMPLETION_TOKENS),
        cached_tokens: get(BATCH_CACHED_TOKENS),
    };
    let online = crate::llm::Usage {
        calls: 0,
        prompt_tokens: get("tokens/prompt").saturating_sub(batch.prompt_tokens),
        completion_tokens: get("tokens/completion").saturating_sub(batch.completion_tokens),
        cached_tokens: get(CACHED_TOKENS).saturating_sub(batch.cached_tokens),
    };
    (online, batch)
}

/// What the token counters of a store cost at `run` (generation; its batch price for the
/// tokens billed through the Batch API) and `judge` (judge calls) prices, in nano-dollars: the least a store has spent, whatever its runs recorded. Calls of a
/// run without a price added nothing to [`SPENT_NANO_USD`]; `--max_cost` starts from this
/// amount when it is the larger, so those calls count against the budget too.
pub fn spent_floor(
    counters: &std::collections::BTreeMap<String, u64>,
    run: Price,
    judge: Price,
) -> u64 {
    let get = |k: &str| counters.get(k).copied().unwrap_or(0);
    let (online, batch) = generation_usage(counters);
    let judged = crate::llm::Usage {
        calls: 0,
        prompt_tokens: get("judge/tokens/prompt"),
        completion_tokens: get("judge/tokens/completion"),
        cached_tokens: get(JUDGE_CACHED_TOKENS),
    };
    run.cost_nano(&online)
        .saturating_add(run.batch().cost_nano(&batch))
        .saturating_add(judge.cost_nano(&judged))
}
