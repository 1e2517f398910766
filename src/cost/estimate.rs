//! Tokens and cost before a run: both prompts of every item rendered as `dgen run` sends them
//! and counted with the model's tokenizer (tiktoken's BPE files are compiled in, so this works
//! offline), plus an expected completion length: built-in guesses until the store has a run of
//! its own, then the store's average completion tokens per call.

use std::io::Write;

use tiktoken_rs::tokenizer::{get_tokenizer, Tokenizer};
use tiktoken_rs::CoreBPE;

use crate::catalog::Catalog;
use crate::llm::{ChatRequest, Usage};
use crate::plan::WorkItem;
use crate::prompt::{self, AttemptSpec, RequestSettings};

use super::prices::{Pricing, NANO_PER_USD};

/// OpenAI serves a prompt's prefix from its cache only from this many identical tokens on.
pub const CACHE_THRESHOLD: u64 = 1024;

/// Tokens OpenAI adds around each message and to prime the reply (its cookbook's count for
/// the gpt-4o family).
const PER_MESSAGE: u64 = 3;
const PER_REPLY: u64 = 3;

/// Expected length of a scenario (2-3 lines) before the store has history, capped by the
/// scenario call's max_tokens.
const SCENARIO_GUESS: u64 = 100;
/// Expected tokens per dialogue turn (user words, intent label, reply, tags) before history.
const TURN_GUESS: u64 = 80;
/// Calls a store must have made before its own averages replace the guesses.
const MIN_HISTORY_CALLS: u64 = 10;

/// The model's tokenizer, or o200k_base (said so) for a model tiktoken does not know.
pub struct TokenCounter {
    bpe: &'static CoreBPE,
    pub encoding: &'static str,
    /// tiktoken knows the model: the counts are the provider's own.
    pub exact: bool,
}

impl TokenCounter {
    pub fn for_model(model: &str) -> TokenCounter {
        match get_tokenizer(model) {
            Some(Tokenizer::Cl100kBase) => TokenCounter {
                bpe: tiktoken_rs::cl100k_base_singleton(),
                encoding: "cl100k_base",
                exact: true,
            },
            Some(Tokenizer::O200kBase) => TokenCounter {
                bpe: tiktoken_rs::o200k_base_singleton(),
                encoding: "o200k_base",
                exact: true,
            },
            _ => TokenCounter {
                bpe: tiktoken_rs::o200k_base_singleton(),
                encoding: "o200k_base",
                exact: false,
            },
        }
    }

    pub fn text(&self, text: &str) -> u64 {
        self.bpe.encode_ordinary(text).len() as u64
    }

    /// Prompt tokens of a request: each message's content with its overhead, the reply's
    /// priming, and the JSON schema when one is sent (the provider counts it as prompt).
    pub fn request(&self, request: &ChatRequest) -> u64 {
        let value = serde_json::to_value(&request.chat).unwrap_or_default();
        let messages = value["messages"].as_array().map_or(&[][..], Vec::as_slice);
        let content: u64 = messages
            .iter()
            .map(|m| PER_MESSAGE + self.text(m["content"].as_str().unwrap_or("")))
            .sum();
        let schema = match &value["response_format"]["json_schema"]["schema"] {
            serde_json::Value::Null => 0,
            schema => self.text(&schema.to_string()),
        };
        content + PER_REPLY + schema
    }
}

/// How long the completions are expected to be, and where that comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// [`SCENARIO_GUESS`] per scenario, [`TURN_GUESS`] per turn of the item's midpoint, each
    /// capped by its call's max_tokens.
    Guess,
    /// The store's own average completion tokens per call.
    History { per_call: u64, calls: u64 },
}

impl Expectation {
    /// The store's averages when its counters have enough calls, else the guesses.
    pub fn from_counters(calls: u64, completion_tokens: u64) -> Expectation {
        if calls >= MIN_HISTORY_CALLS && completion_tokens > 0 {
            Expectation::History {
                per_call: completion_tokens.div_ceil(calls),
                calls,
            }
        } else {
            Expectation::Guess
        }
    }

    fn describe(&self) -> String {
        match self {
            Expectation::Guess => format!(
                "built-in guesses ({SCENARIO_GUESS} per scenario, {TURN_GUESS} per turn); the store's own averages replace them once it has run"
            ),
            Expectation::History { per_call, calls } => {
                format!("the store's average, {per_call} per call over {calls} calls")
            }
        }
    }
}

/// Tokens of one attempt: its two prompts and its two completions.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AttemptTokens {
    pub scenario_prompt: u64,
    pub dialogue_prompt: u64,
    pub completion: u64,
}

/// Counts attempts with one tokenizer and one expectation.
pub struct Estimator<'a> {
    pub counter: TokenCounter,
    settings: &'a RequestSettings,
    catalog: &'a Catalog,
    expectation: Expectation,
    counted: u64,
    totals: AttemptTokens,
}

impl<'a> Estimator<'a> {
    pub fn new(
        settings: &'a RequestSettings,
        catalog: &'a Catalog,
        expectation: Expectation,
    ) -> Estimator<'a> {
        Estimator {
            counter: TokenCounter::for_model(&settings.model),
            settings,
            catalog,
            expectation,
            counted: 0,
            totals: AttemptTokens::default(),
        }
    }

    /// Both prompts of an attempt, the dialogue's with a scenario of `scenario_tokens` tokens
    /// (its text is not known before the scenario call).
    pub fn prompts(
        &self,
        item: &WorkItem,
        spec: &AttemptSpec,
        base: &str,
        scenario_tokens: u64,
    ) -> (u64, u64) {
        let scenario = prompt::scenario_request(self.settings, self.catalog, item, spec);
        let dialogue = prompt::dialogue_request(self.settings, self.catalog, item, spec, "", base);
        (
            self.counter.request(&scenario),
            self.counter.request(&dialogue) + scenario_tokens,
        )
    }

    fn scenario_guess(&self) -> u64 {
        SCENARIO_GUESS.min(
            self.catalog
                .generation_defaults
                .scenario_call
                .max_tokens
                .into(),
        )
    }

    /// The expected tokens of one attempt at `item`.
    pub fn attempt(&self, item: &WorkItem, spec: &AttemptSpec, base: &str) -> AttemptTokens {
        let scenario = self.scenario_guess();
        let (scenario_prompt, dialogue_prompt) = self.prompts(item, spec, base, scenario);
        let completion = match self.expectation {
            Expectation::Guess => {
                let turns = u64::from(item.min_turns + item.max_turns).div_ceil(2);
                // An annotated turn carries its state, call and results besides the text.
                let per_turn = match self.settings.annotate {
                    Some(_) => TURN_GUESS * u64::from(prompt::annotated::MAX_TOKENS_FACTOR),
                    None => TURN_GUESS,
                };
                scenario + (turns * per_turn).min(self.settings.dialogue_max_tokens.into())
            }
            Expectation::History { per_call, .. } => 2 * per_call,
        };
        AttemptTokens {
            scenario_prompt,
            dialogue_prompt,
            completion,
        }
    }

    /// The most one attempt at `item` can be billed when both calls answer: its prompts with
    /// a scenario as long as its call allows, and both completions at max_tokens.
    pub fn attempt_bound(&self, item: &WorkItem, spec: &AttemptSpec, base: &str) -> Usage {
        let scenario_max = u64::from(self.catalog.generation_defaults.scenario_call.max_tokens);
        let (scenario_prompt, dialogue_prompt) = self.prompts(item, spec, base, scenario_max);
        Usage {
            calls: 2,
            prompt_tokens: scenario_prompt + dialogue_prompt,
            completion_tokens: scenario_max + u64::from(self.settings.dialogue_max_tokens),
            cached_tokens: 0,
        }
    }

    pub fn add(&mut self, item: &WorkItem, spec: &AttemptSpec, base: &str) {
        let t = self.attempt(item, spec, base);
        self.counted += 1;
        self.totals.scenario_prompt += t.scenario_prompt;
        self.totals.dialogue_prompt += t.dialogue_prompt;
        self.totals.completion += t.completion;
    }

    /// The totals for `items` items, scaled up from the ones counted when only a sample was.
    pub fn finish(self, items: u64) -> Estimate {
        let scale = |v: u64| {
            if self.counted == 0 || self.counted == items {
                v
            } else {
                (v as f64 * items as f64 / self.counted as f64).round() as u64
            }
        };
        let structured = self.settings.structured;
        Estimate {
            items,
            counted: self.counted,
            scenario_prompt_tokens: scale(self.totals.scenario_prompt),
            dialogue_prompt_tokens: scale(self.totals.dialogue_prompt),
            completion_tokens: scale(self.totals.completion),
            encoding: self.counter.encoding,
            exact_tokenizer: self.counter.exact,
            expectation: self.expectation.describe(),
            static_prefix: StaticPrefix {
                scenario: self.counter.text(prompt::scenario_static_prefix()),
                dialogue: match self.settings.annotate {
                    Some(_) => self.counter.text(prompt::annotated::static_prefix()),
                    None => self
                        .counter
                        .text(&prompt::dialogue_static_prefix(structured)),
                },
            },
        }
    }
}

/// Tokens of the part of each system message that is the same for every item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StaticPrefix {
    pub scenario: u64,
    pub dialogue: u64,
}

/// What a plan (or the pending part of one) is expected to take.
#[derive(Debug, Clone)]
pub struct Estimate {
    pub items: u64,
    /// Items whose prompts were rendered and counted; the rest are extrapolated.
    pub counted: u64,
    pub scenario_prompt_tokens: u64,
    pub dialogue_prompt_tokens: u64,
    pub completion_tokens: u64,
    pub encoding: &'static str,
    pub exact_tokenizer: bool,
    pub expectation: String,
    pub static_prefix: StaticPrefix,
}

impl Estimate {
    pub fn usage(&self) -> Usage {
        Usage {
            calls: self.items * 2,
            prompt_tokens: self.scenario_prompt_tokens + self.dialogue_prompt_tokens,
            completion_tokens: self.completion_tokens,
            cached_tokens: 0,
        }
    }

    /// The estimate as `dgen plan` and `dgen run --dry_run` print it.
    pub fn write(
        &self,
        out: &mut impl Write,
        model: &str,
        pricing: &Pricing,
    ) -> std::io::Result<()> {
        let usage = self.usage();
        writeln!(
            out,
            "estimate for {} items ({} calls: a scenario and a dialogue each, no retries):",
            self.items, usage.calls
        )?;
        let tokenizer = if self.exact_tokenizer {
            format!("{}, {model}'s tokenizer", self.encoding)
        } else {
            format!(
                "{}: tiktoken does not know {model}, so the counts are approximate",
                self.encoding
            )
        };
        let sampled = if self.counted < self.items {
            format!(", {} items counted and the rest extrapolated", self.counted)
        } else {
            String::new()
        };
        writeln!(
            out,
            "  prompt tokens:     {} (scenario {} + dialogue {}; counted with {tokenizer}{sampled})",
            usage.prompt_tokens, self.scenario_prompt_tokens, self.dialogue_prompt_tokens
        )?;
        writeln!(
            out,
            "  completion tokens: {} (expected lengths: {})",
            usage.completion_tokens, self.expectation
        )?;
        match pricing {
            Pricing::Known { price, source } => {
                let online = price.cost(&usage);
                writeln!(
                    out,
                    "  cost ({model}, {source}): online ${}, batch ${}",
                    dollars(online),
                    dollars(online * price.batch_factor)
                )?;
            }
            Pricing::Unknown { model } => writeln!(
                out,
                "  cost: unknown price: {}",
                Pricing::unknown_message(model)
            )?,
        }
        let reached = |n: u64| {
            if n >= CACHE_THRESHOLD {
                "cached"
            } else {
                "below"
            }
        };
        writeln!(
            out,
            "  static prompt prefix: {} tokens (scenario, {}), {} tokens (dialogue, {}); OpenAI caches identical prefixes from {CACHE_THRESHOLD} tokens on",
            self.static_prefix.scenario,
            reached(self.static_prefix.scenario),
            self.static_prefix.dialogue,
            reached(self.static_prefix.dialogue)
        )
    }
}

/// USD with enough digits for small runs: cents for large amounts, more below a dollar.
pub fn dollars(usd: f64) -> String {
    if usd >= 100.0 {
        format!("{usd:.2}")
    } else {
        format!("{usd:.4}")
    }
}

/// USD from the nano-dollars the store's counters hold.
pub fn from_nano(nano: u64) -> f64 {
    nano as f64 / NANO_PER_USD
}
