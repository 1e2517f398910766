//! `dgen extract --index N`: one base dialogue exactly as the prompts will see it;
//! `dgen extract --item N`: one work item of the store's plan, with an annotated plan's goals.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::cli::ExtractArgs;
use crate::commands::during_run;
use crate::dataset::{self, DatasetSource, Speaker};
use crate::ipc::protocol::ItemRequest;
use crate::ipc::Request;
use crate::output::export::plan_record;
use crate::store::Store;

pub fn run(store_path: &Path, args: ExtractArgs) -> Result<ExitCode> {
    if let Some(index) = args.item {
        return item(store_path, index, args.json);
    }
    let source = DatasetSource {
        path: args.dataset.dataset.clone(),
        name: args.dataset.dataset_name.clone(),
        split: args.dataset.split.clone(),
    };
    let path = source.resolve()?;
    let loaded = dataset::load_dialogues(&path, &source.split)?;
    let count = loaded.dialogues.len();
    let Some(d) = loaded.dialogues.get(args.index) else {
        bail!(
            "--index {} is out of range: {} has {count} usable dialogues (valid indices 0..={})",
            args.index,
            path.display(),
            count - 1
        );
    };
    let users = d
        .turns
        .iter()
        .filter(|t| t.speaker == Speaker::User)
        .count();
    let mut out = std::io::stdout().lock();
    writeln!(out, "index: {} of {count}", args.index)?;
    writeln!(out, "dialogue_id: {}", d.dialogue_id)?;
    writeln!(
        out,
        "services: {}",
        if d.services.is_empty() {
            "(none)".to_string()
        } else {
            d.services.join(", ")
        }
    )?;
    writeln!(
        out,
        "turns: {} (USER {users}, ASSISTANT {})",
        d.turns.len(),
        d.turns.len() - users
    )?;
    writeln!(out)?;
    writeln!(out, "{}", d.base_conversation())?;
    Ok(ExitCode::SUCCESS)
}

/// What the plan drew for item `index` and where it stands, from the store or, while a run
/// holds it, from the run.
fn item(store_path: &Path, index: u64, as_json: bool) -> Result<ExitCode> {
    during_run::here_or_by_the_run(
        store_path,
        None,
        |store| render_item(store, index, as_json),
        || {
            Ok(Request::Item(ItemRequest {
                index,
                json: as_json,
            }))
        },
    )
}

/// `dgen extract --item`'s text (or JSON) for item `index` of `store`'s plan.
pub fn render_item(store: &Store, index: u64, as_json: bool) -> Result<String> {
    let store_path = store.path();
    let meta = store.meta()?.with_context(|| {
        format!(
            "store {} holds no plan; run `dgen plan` first",
            store_path.display()
        )
    })?;
    let total = meta.config.total_generations;
    if index >= total {
        bail!(
            "work item {index} is not in {}: its plan has {total} items (valid indices 0..={})",
            store_path.display(),
            total.saturating_sub(1)
        );
    }
    if let Some(shard) = meta.shard.as_ref().map(|s| s.shard()) {
        if !shard.holds(index) {
            bail!(
                "work item {index} is not in {}: it holds shard {shard} (the items whose index divided by {} leaves {}); item {index} is in the store of shard {}/{}, or the merged one",
                store_path.display(),
                shard.count,
                shard.index,
                index % u64::from(shard.count),
                shard.count
            );
        }
    }
    let item = store.item(index)?;
    let state = store.item_state(index)?;
    let persona = store.persona(item.persona_index)?;
    let goals = meta
        .config
        .annotate
        .as_ref()
        .map(|a| a.goals(&item))
        .unwrap_or_default();
    let mut out = String::new();
    if as_json {
        let mut record = plan_record(&item, &meta.catalog, persona.as_deref().unwrap_or(""));
        record["state"] = json!(state.as_ref().map(|s| json!({
            "state": s.state.name(), "attempts": s.attempts, "reason": s.reason,
        })));
        if meta.config.annotate.is_some() {
            record["goals"] = json!(goals);
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&record)?)?;
        return Ok(out);
    }
    writeln!(
        out,
        "item: {index} of {} (plan {})",
        meta.config.total_generations, meta.plan_fingerprint
    )?;
    if let Some(s) = &state {
        writeln!(
            out,
            "state: {} after {} attempt(s){}",
            s.state.name(),
            s.attempts,
            s.reason
                .as_deref()
                .map(|r| format!(", last rejected: {r}"))
                .unwrap_or_default()
        )?;
    }
    writeln!(out, "services: {}", item.services.join(", "))?;
    writeln!(out, "category: {}", item.category)?;
    writeln!(
        out,
        "region: {}, time: {} (slot {})",
        item.region,
        item.specific_time_hhmm(),
        item.time_slot
    )?;
    writeln!(
        out,
        "emotions: user {}, assistant {}",
        item.user_emotion, item.assistant_emotion
    )?;
    writeln!(out, "outcome: {}", item.resolution_status)?;
    writeln!(out, "turns: {} to {}", item.min_turns, item.max_turns)?;
    writeln!(
        out,
        "sampling: temperature {}, top_p {}, frequency_penalty {}, presence_penalty {}",
        item.temperature, item.top_p, item.frequency_penalty, item.presence_penalty
    )?;
    writeln!(
        out,
        "base dialogue: {} (`dgen extract --index {} --dataset {} --split {}` prints it)",
        item.base_dialogue_id,
        item.base_dialogue_index,
        meta.datasets.dialogues.source,
        meta.datasets.split
    )?;
    writeln!(
        out,
        "persona {}: {}",
        item.persona_index,
        persona.as_deref().unwrap_or("(not stored)")
    )?;
    if meta.config.annotate.is_some() {
        writeln!(out, "user goals:")?;
        for goal in &goals {
            writeln!(out, "  {goal}")?;
        }
    }
    Ok(out)
}
