//! `dgen run --dry_run`: the exact requests of the next pending items, and no call.

use std::process::ExitCode;

use anyhow::Result;

use crate::cost::{Estimator, Expectation, Pricing};
use crate::dataset::Dialogue;
use crate::prompt::{self, RequestSettings};
use crate::run::RunConfig;
use crate::store::{Meta, Store};

use super::attempt::attempt_spec;
use super::queue;

pub fn print(
    store: &Store,
    meta: &Meta,
    settings: &RequestSettings,
    config: &RunConfig,
    pricing: &Pricing,
) -> Result<ExitCode> {
    // An altered plan is refused here too: requests are built from the stored items.
    store.verify_plan(meta)?;
    let queue = queue::pending_work(store, config.max_attempts, config.retry_failed)?.queue;
    let personas: Vec<(u32, String)> = store.personas()?.into_iter().collect();
    let bases = store.base_dialogues()?;
    let url = if settings.grammar {
        "http://127.0.0.1:<port>/v1/chat/completions (the llama-server dgen starts for the run)"
            .to_string()
    } else {
        format!("{}/chat/completions", config.base_url.trim_end_matches('/'))
    };
    if queue.is_empty() {
        println!("no pending items: nothing would be sent");
    }
    for (index, attempt) in queue.iter().take(config.limit) {
        let item = store.item(*index)?;
        let spec = attempt_spec(&item, *attempt, &meta.config, &personas);
        let scenario = prompt::scenario_request(settings, &meta.catalog, &item, &spec);
        println!(
            "### item {index}, attempt {}: scenario request\nPOST {url}",
            attempt + 1
        );
        println!("{}", serde_json::to_string_pretty(&scenario)?);
        let base = bases
            .get(&item.base_dialogue_index)
            .map(Dialogue::base_conversation)
            .unwrap_or_default();
        let dialogue = prompt::dialogue_request(
            settings,
            &meta.catalog,
            &item,
            &spec,
            "<the text the scenario call returns>",
            &base,
        );
        println!(
            "### item {index}, attempt {}: dialogue request\nPOST {url}",
            attempt + 1
        );
        println!("{}", serde_json::to_string_pretty(&dialogue)?);
    }
    // What the pending work would take: every queued attempt, counted.
    let counters = store.counters()?;
    let get = |k: &str| counters.get(k).copied().unwrap_or(0);
    let expectation = Expectation::from_counters(get("calls"), get("tokens/completion"));
    let mut estimator = Estimator::new(settings, &meta.catalog, expectation);
    for (index, attempt) in &queue {
        let item = store.item(*index)?;
        let spec = attempt_spec(&item, *attempt, &meta.config, &personas);
        let base = bases
            .get(&item.base_dialogue_index)
            .map(Dialogue::base_conversation)
            .unwrap_or_default();
        estimator.add(&item, &spec, &base);
    }
    println!("### pending work: {} attempts", queue.len());
    estimator.finish(queue.len() as u64).write(
        &mut std::io::stdout().lock(),
        &settings.model,
        pricing,
    )?;
    Ok(ExitCode::SUCCESS)
}
