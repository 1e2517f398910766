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
