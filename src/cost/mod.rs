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

/// What the token counters of a store cost at `run` (generation) and `judge` (judge calls)
/// prices, in nano-dollars: the least a store has spent, whatever its runs recorded. Calls of a
/// run without a price added nothing to [`SPENT_NANO_USD`]; `--max_cost` starts from this
/// amount when it is the larger, so those calls count against the budget too.
pub fn spent_floor(
    counters: &std::collections::BTreeMap<String, u64>,
    run: Price,
    judge: Price,
) -> u64 {
    let get = |k: &str| counters.get(k).copied().unwrap_or(0);
    let generation = crate::llm::Usage {
        calls: 0,
        prompt_tokens: get("tokens/prompt"),
        completion_tokens: get("tokens/completion"),
        cached_tokens: get(CACHED_TOKENS),
    };
    let judged = crate::llm::Usage {
        calls: 0,
        prompt_tokens: get("judge/tokens/prompt"),
        completion_tokens: get("judge/tokens/completion"),
        cached_tokens: get(JUDGE_CACHED_TOKENS),
    };
    run.cost_nano(&generation)
        .saturating_add(judge.cost_nano(&judged))
}
