//! The price table: model -> USD per million input, cached input and output tokens, and the
//! batch API's factor. Built in (`assets/prices.json`, dated), extended or replaced per model by
//! `--prices FILE`, and overridden field by field by `--price_input`, `--price_cached_input` and
//! `--price_output`. A model without a price stays without one: it is never priced at zero.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::llm::Usage;

const BUILTIN_PRICES: &str = include_str!("../../assets/prices.json");

/// One model's prices, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    /// Prompt tokens served from the provider's prompt cache.
    pub cached_input: f64,
    pub output: f64,
    /// What the batch API charges relative to the online one (OpenAI: 0.5).
    pub batch_factor: f64,
}

/// Nano-dollars in one USD: spent amounts are stored as whole nano-dollars in the counters.
pub const NANO_PER_USD: f64 = 1e9;

impl Price {
    /// The Batch API's price: every rate times the batch factor.
    pub fn batch(self) -> Price {
        Price {
            input: self.input * self.batch_factor,
            cached_input: self.cached_input * self.batch_factor,
            output: self.output * self.batch_factor,
            batch_factor: 1.0,
        }
    }

    /// USD for `usage`: cached prompt tokens at the cached rate, the rest at the input rate.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = usage.cached_tokens.min(usage.prompt_tokens);
        let fresh = usage.prompt_tokens - cached;
        (fresh as f64 * self.input
            + cached as f64 * self.cached_input
            + usage.completion_tokens as f64 * self.output)
            / 1_000_000.0
    }

    /// [`Price::cost`] in whole nano-dollars (saturating), for the store's counters.
    pub fn cost_nano(&self, usage: &Usage) -> u64 {
        let nano = (self.cost(usage) * NANO_PER_USD).ceil();
        if nano.is_finite() && nano >= 0.0 {
            nano.min(u64::MAX as f64) as u64
        } else {
            u64::MAX
        }
    }

    fn check(&self, model: &str) -> Result<(), String> {
        let fields = [
            ("input", self.input),
            ("cached_input", self.cached_input),
            ("output", self.output),
        ];
        for (name, value) in fields {
            if !value.is_finite() || value < 0.0 {
                return Err(format!(
                    "model \"{model}\": {name} is {value}; give a finite USD price per 1M tokens, 0 or more"
                ));
            }
        }
        if !self.batch_factor.is_finite() || self.batch_factor <= 0.0 || self.batch_factor > 1.0 {
            return Err(format!(
                "model \"{model}\": batch_factor is {}; give a number in (0, 1] (OpenAI's batch API: 0.5)",
                self.batch_factor
            ));
        }
        Ok(())
    }
}

/// The file format of the table (built in and `--prices FILE`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceFile {
    /// The date the prices were read off the provider's price page.
    pub as_of: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub unit: String,
    pub models: BTreeMap<String, Price>,
}

/// A `--prices FILE` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PricesError {
    #[error("cannot read --prices {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--prices {path} is not a price table: {message}. Give JSON shaped like assets/prices.json: {{\"as_of\": \"YYYY-MM-DD\", \"models\": {{\"MODEL\": {{\"input\": USD, \"cached_input\": USD, \"output\": USD, \"batch_factor\": 0.5}}}}}} (USD per 1M tokens)")]
    Invalid { path: PathBuf, message: String },
}

/// Per-run overrides, from the command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceOverrides {
    pub prices_file: Option<PathBuf>,
    pub input: Option<f64>,
    pub cached_input: Option<f64>,
    pub output: Option<f64>,
}

/// The table in force: the built-in one with `--prices FILE`'s models over it.
#[derive(Debug, Clone)]
pub struct PriceTable {
    pub as_of: String,
    pub models: BTreeMap<String, Price>,
}

/// How a model came to have a price, or why it has none.
#[derive(Debug, Clone, PartialEq)]
pub enum Pricing {
    Known {
        price: Price,
        /// "built-in table of 2025-08-01", "--prices FILE", "--price_input/--price_output".
        source: String,
    },
    Unknown {
        model: String,
    },
}

impl Pricing {
    pub fn price(&self) -> Option<Price> {
        match self {
            Pricing::Known { price, .. } => Some(*price),
            Pricing::Unknown { .. } => None,
        }
    }

    /// What to tell a user whose model has no price.
    pub fn unknown_message(model: &str) -> String {
        format!(
            "no price for model {model}; pass --price_input/--price_output (USD per 1M tokens) or --prices FILE"
        )
    }
}

impl PriceTable {
    pub fn builtin() -> PriceTable {
        let file: PriceFile = serde_json::from_str(BUILTIN_PRICES).expect("assets/prices.json");
        PriceTable {
            as_of: file.as_of,
            models: file.models,
        }
    }

    /// The built-in table, with the models of `--prices FILE` replacing or adding entries.
    pub fn load(path: Option<&Path>) -> Result<PriceTable, PricesError> {
        let mut table = PriceTable::builtin();
        let Some(path) = path else {
            return Ok(table);
        };
        let text = std::fs::read_to_string(path).map_err(|source| PricesError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| PricesError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file: PriceFile = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if file.models.is_empty() {
            return Err(invalid("it names no model".to_string()));
        }
        for (model, price) in &file.models {
            price.check(model).map_err(invalid)?;
        }
        table.as_of = format!("{} (--prices {})", file.as_of, path.display());
        table.models.extend(file.models);
        Ok(table)
    }

    /// The price of `model` with the flags over it. Without a table entry, the flags must give
    /// at least the input and output prices; the cached rate then defaults to the input one
    /// (no discount assumed) and the batch factor to 0.5.
    pub fn pricing(&self, model: &str, flags: &PriceOverrides) -> Pricing {
        let flagged =
            flags.input.is_some() || flags.output.is_some() || flags.cached_input.is_some();
        let source = |base: &str| {
            if flagged {
                format!("{base}, with the --price_* flags")
            } else {
                base.to_string()
            }
        };
        match self.models.get(model) {
            Some(base) => Pricing::Known {
                price: Price {
                    input: flags.input.unwrap_or(base.input),
                    cached_input: flags.cached_input.unwrap_or(base.cached_input),
                    output: flags.output.unwrap_or(base.output),
                    batch_factor: base.batch_factor,
                },
                source: source(&format!("prices of {}", self.as_of)),
            },
            None => match (flags.input, flags.output) {
                (Some(input), Some(output)) => Pricing::Known {
                    price: Price {
                        input,
                        cached_input: flags.cached_input.unwrap_or(input),
                        output,
                        batch_factor: 0.5,
                    },
                    source: "--price_input/--price_output".to_string(),
                },
                _ => Pricing::Unknown {
                    model: model.to_string(),
                },
            },
        }
    }

    /// [`PriceTable::load`] then [`PriceTable::pricing`].
    pub fn resolve(model: &str, flags: &PriceOverrides) -> Result<Pricing, PricesError> {
        Ok(PriceTable::load(flags.prices_file.as_deref())?.pricing(model, flags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_table_parses_and_every_entry_is_valid() {
        let table = PriceTable::builtin();
        assert!(table.models.contains_key("gpt-4o-mini"));
        for (model, price) in &table.models {
            price.check(model).unwrap();
            assert!(price.cached_input <= price.input, "{model}");
        }
    }

    #[test]
    fn cached_tokens_are_priced_at_the_cached_rate() {
        let price = PriceTable::builtin().models["gpt-4o-mini"];
        let usage = Usage {
            calls: 1,
            prompt_tokens: 1_000_000,
            completion_tokens: 0,
            cached_tokens: 400_000,
        };
        let expected = 0.6 * 0.15 + 0.4 * 0.075;
        assert!((price.cost(&usage) - expected).abs() < 1e-12);
    }

    #[test]
    fn an_unknown_model_has_no_price_unless_both_flags_give_one() {
        let table = PriceTable::builtin();
        let mut flags = PriceOverrides {
            input: Some(1.0),
            ..PriceOverrides::default()
        };
        assert!(table.pricing("my-model", &flags).price().is_none());
        flags.output = Some(2.0);
        let price = table.pricing("my-model", &flags).price().unwrap();
        assert_eq!(
            (price.input, price.cached_input, price.output),
            (1.0, 1.0, 2.0)
        );
    }
}
