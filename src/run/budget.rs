//! `--max_cost`: before an attempt is dispatched, what was committed as spent (in the store, so
//! it holds across resumes) plus what the attempts in flight may still cost plus the most this
//! attempt may cost must stay within the budget; otherwise dispatching stops. An attempt in
//! flight reserves its upper bound (both prompts with a scenario as long as its call allows,
//! both completions at max_tokens, a judge call with `--judge` at the judge model's price)
//! until the writer acknowledges it, by which time its bills are committed. A refused attempt
//! waits while others are in flight (their reservations usually exceed what they cost); the
//! run stops at the budget only when nothing is in flight and the next attempt is refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::cost::{dollars, from_nano, Estimator, Expectation, Price};
use crate::dataset::Dialogue;
use crate::llm::Usage;
use crate::plan::WorkItem;

use super::attempt::{attempt_spec, Ctx};

/// Exit code of a run that stopped at `--max_cost` with items left (documented in README).
pub const EXIT_BUDGET: u8 = 3;

/// Judge prompt tokens besides the rubric and the dialogue: scenario, persona, labels.
const JUDGE_EXTRA_PROMPT: u64 = 400;

pub struct CostBudget {
    ctx: Arc<Ctx>,
    price: Price,
    /// The judge model's price (the run's when they are the same model).
    judge_price: Price,
    limit_nano: u64,
    /// Committed spent, raised by the writer after each commit.
    spent: Arc<AtomicU64>,
    reserved: HashMap<u64, u64>,
    reserved_total: u64,
}

impl CostBudget {
    pub fn new(
        ctx: Arc<Ctx>,
        price: Price,
        judge_price: Price,
        limit_usd: f64,
        spent: Arc<AtomicU64>,
    ) -> CostBudget {
        CostBudget {
            ctx,
            price,
            judge_price,
            limit_nano: (limit_usd * crate::cost::prices::NANO_PER_USD).floor() as u64,
            spent,
            reserved: HashMap::new(),
            reserved_total: 0,
        }
    }

    /// The most one attempt at `item` may cost, in nano-dollars: its generation calls at the
    /// run's price, its judge call at the judge's.
    fn bound(&self, item: &WorkItem, attempt: u32) -> u64 {
        let ctx = &self.ctx;
        let spec = attempt_spec(item, attempt, &ctx.config, &ctx.personas);
        let base = ctx
            .bases
            .get(&item.base_dialogue_index)
            .map(Dialogue::base_conversation)
            .unwrap_or_default();
        let estimator = Estimator::new(&ctx.settings, &ctx.catalog, Expectation::Guess);
        let usage = estimator.attempt_bound(item, &spec, &base);
        let mut cost = self.price.cost_nano(&usage);
        if let Some(inline) = &ctx.judge {
            let judge = Usage {
                calls: 1,
                prompt_tokens: estimator.counter.text(crate::judge::rubric::RUBRIC)
                    + u64::from(ctx.settings.dialogue_max_tokens)
                    + JUDGE_EXTRA_PROMPT,
                completion_tokens: u64::from(inline.judge.settings.max_tokens),
                cached_tokens: 0,
            };
            cost = cost.saturating_add(self.judge_price.cost_nano(&judge));
        }
        cost
    }

    /// Reserves the attempt's bound, or says why it may not be dispatched.
    pub fn admit(&mut self, item: &WorkItem, attempt: u32) -> Result<(), String> {
        let cost = self.bound(item, attempt);
        let spent = self.spent.load(Ordering::SeqCst);
        let total = spent
            .saturating_add(self.reserved_total)
            .saturating_add(cost);
        if total > self.limit_nano {
            return Err(format!(
                "--max_cost ${} reached: ${} spent, ${} reserved by attempts in flight, and the next attempt could cost up to ${}. Raise --max_cost to go on (the amount spent is kept in the store)",
                dollars(from_nano(self.limit_nano)),
                dollars(from_nano(spent)),
                dollars(from_nano(self.reserved_total)),
                dollars(from_nano(cost)),
            ));
        }
        self.reserved_total += cost;
        *self.reserved.entry(item.index).or_default() += cost;
        Ok(())
    }

    /// The item's attempt was acknowledged: its bills are committed, its reservation ends.
    pub fn release(&mut self, item: u64) {
        if let Some(cost) = self.reserved.remove(&item) {
            self.reserved_total -= cost;
        }
    }
}
