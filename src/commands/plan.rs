//! `dgen plan`: validate the settings, load the inputs, draw the plan and commit it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::catalog::Catalog;
use crate::cli::PlanArgs;
use crate::cost::{Estimator, Expectation, PriceTable, Pricing};
use crate::dataset::frames::ObservedValues;
use crate::dataset::{self, DatasetSource, Dialogues, Personas};
use crate::plan::shard::{self, ShardFlags};
use crate::plan::{self, Fingerprinter, PlanConfig, Sampler, Shard};
use crate::prompt::{RequestSettings, Schema, Structured};
use crate::schema::{Schema as Services, ValuePools};
use crate::store::{DatasetsMeta, Meta, ShardMeta, State, Store};

fn pair(flag: Option<Vec<u32>>, default: [u32; 2]) -> [u32; 2] {
    match flag {
        Some(v) => [v[0], v[1]],
        None => default,
    }
}

/// The plan's settings from the flags, checked before any data is read. An annotated plan's
/// value pools are the built-in ones under `own` (the `--slot_values` file's);
/// [`adopt_frame_values`] puts the base dataset's frame values between them once it is read.
fn config_from_args(args: &PlanArgs, catalog: &Catalog, own: &ValuePools) -> Result<PlanConfig> {
    let d = &catalog.generation_defaults;
    let annotate = if args.annotate {
        let mut schema = Services::builtin();
        if let Some(path) = &args.services_schema {
            schema = schema.extended(Services::from_file(path)?);
        }
        // Only the services the catalog can plan are kept: the plan's encoding stays small
        // when a large schema file (SGD's has 45 services) is given.
        let dropped: Vec<&str> = schema
            .services
            .iter()
            .map(|s| s.service_name.as_str())
            .filter(|s| !catalog.core_services.iter().any(|c| c == s))
            .collect();
        if args.services_schema.is_some() && !dropped.is_empty() {
            tracing::warn!(
                "--services_schema: {} service(s) not in the catalog are not planned ({}); add them to the catalog's core_services (--catalog) to generate for them",
                dropped.len(),
                dropped.join(", ")
            );
        }
        let schema = schema.only(catalog.core_services.iter().map(String::as_str));
        let values = ValuePools::builtin().extended(own.clone());
        let annotate = plan::Annotate { schema, values };
        annotate.validate(&catalog.core_services)?;
        Some(annotate)
    } else {
        None
    };
    Ok(PlanConfig {
        total_generations: args.total_generations,
        seed: args.seed,
        similarity_threshold: args.similarity_threshold.unwrap_or(d.similarity_threshold),
        min_turns: pair(args.min_turns.clone(), d.min_turns),
        max_turns: pair(args.max_turns.clone(), d.max_turns),
        temperature: args
            .temperature
            .clone()
            .unwrap_or_else(|| d.temperature.clone()),
        top_p: args.top_p.clone().unwrap_or_else(|| d.top_p.clone()),
        frequency_penalty: args
            .frequency_penalty
            .clone()
            .unwrap_or_else(|| d.frequency_penalty.clone()),
        presence_penalty: args
            .presence_penalty
            .clone()
            .unwrap_or_else(|| d.presence_penalty.clone()),
        annotate,
    })
}

/// The `--slot_values` file's pools (none without the flag).
fn slot_values_file(args: &PlanArgs) -> Result<ValuePools> {
    match &args.slot_values {
        Some(path) => ValuePools::from_file(path),
        None => Ok(ValuePools::default()),
    }
}

/// An annotated plan's value pools with the base dataset's frame values: built in, then the
/// frames', then `--slot_values`, each replacing the one before slot by slot.
fn adopt_frame_values(
    annotate: &mut plan::Annotate,
    observed: &ObservedValues,
    own: &ValuePools,
    catalog: &Catalog,
) -> Result<()> {
    if observed.is_empty() {
        return Ok(());
    }
    let from_frames = ValuePools::observed(&annotate.schema, &observed.slots);
    annotate.values = ValuePools::builtin()
        .extended(from_frames)
        .extended(own.clone());
    annotate.validate(&catalog.core_services)
}

/// What an existing plan in `store` means for this one: `Some` when there is nothing to do,
/// an error when it may not be replaced, `None` to go on and write.
fn check_existing(
    store: &Store,
    fingerprint: &str,
    args: &PlanArgs,
    items: u64,
) -> Result<Option<ExitCode>> {
    let Some(existing) = store.meta()? else {
        return Ok(None);
    };
    if existing.plan_fingerprint == fingerprint {
        println!(
            "store {} already holds this plan ({} items); nothing to do",
            store.path().display(),
            items
        );
        println!("plan fingerprint: {fingerprint}");
        return Ok(Some(ExitCode::SUCCESS));
    }
    if !args.force {
        bail!(
            "store {} already holds a different plan (fingerprint {}); pass --force to replace it, or --store NEW to keep both",
            store.path().display(),
            existing.plan_fingerprint
        );
    }
    let done = store.state_counts()?[&State::Done];
    if done > 0 {
        bail!(
            "refusing --force on {}: {done} dialogues were already generated from its plan and would be lost; export them, then plan into another --store",
            store.path().display()
        );
    }
    Ok(None)
}

/// The plan's first pass: the fingerprint, the combination usage, and which personas and base
/// dialogues it uses. Only hashes, so memory does not grow with N; the second pass draws the
/// same items again and streams them into the store. A shard draws the whole plan too (each
/// item depends on the draws before it) and keeps its own items.
struct Drawn {
    /// The store's fingerprint: the full plan's, or the shard's.
    fingerprint: String,
    /// The full plan's, when this is a shard.
    shard: Option<ShardMeta>,
    /// Items this store holds.
    items: u64,
    usage: plan::CombinationUsage,
    personas: BTreeSet<u32>,
    bases: BTreeSet<u32>,
}

fn draw(
    catalog: &Catalog,
    config: &PlanConfig,
    dialogues: &Dialogues,
    personas: &Personas,
    shard: Option<Shard>,
) -> Drawn {
    let started = Instant::now();
    let fingerprints = [
        dialogues.report.fingerprint.as_str(),
        personas.report.fingerprint.as_str(),
    ];
    let mut sampler = Sampler::new(catalog, config, &dialogues.dialogues, &personas.personas);
    let mut used_personas = BTreeSet::new();
    let mut used_bases = BTreeSet::new();
    // The shard's own items, fingerprinted in the same pass (bound to the full plan's
    // fingerprint at the end), so memory does not grow with N.
    let mut shard_print =
        shard.map(|s| Fingerprinter::new(catalog, config, &fingerprints).for_shard(s));
    let mut kept = 0u64;
    let fingerprint = plan::fingerprint(
        catalog,
        config,
        &fingerprints,
        sampler.by_ref().inspect(|item| {
            if shard.is_none_or(|s| s.holds(item.index)) {
                used_personas.insert(item.persona_index);
                used_bases.insert(item.base_dialogue_index);
                if let Some(f) = shard_print.as_mut() {
                    f.add(item);
                    kept += 1;
                }
            }
        }),
    );
    tracing::info!(
        "drew {} work items in {:.2} s",
        config.total_generations,
        started.elapsed().as_secs_f64()
    );
    let usage = sampler.usage();
    let (Some(shard), Some(shard_print)) = (shard, shard_print) else {
        return Drawn {
            fingerprint,
            shard: None,
            items: config.total_generations,
            usage,
            personas: used_personas,
            bases: used_bases,
        };
    };
    Drawn {
        fingerprint: shard_print.finish_shard(&fingerprint),
        shard: Some(ShardMeta {
            index: shard.index,
            count: shard.count,
            full_fingerprint: fingerprint,
        }),
        items: kept,
        usage,
        personas: used_personas,
        bases: used_bases,
    }
}

/// The shard from the flags or the scheduler's variables, logged with where it came from.
fn shard_of(args: &PlanArgs, total: u64) -> Result<Option<Shard>> {
    let flags = ShardFlags {
        shard: args.shard,
        index: args.shard_index,
        count: args.shard_count,
    };
    let Some((shard, source)) = shard::resolve(flags, &|name| std::env::var(name).ok())? else {
        return Ok(None);
    };
    if u64::from(shard.count) > total {
        bail!(
            "{} shards for {total} items would leave some shards empty; use at most {total} shards",
            shard.count
        );
    }
    tracing::info!("planning shard {shard} (from {})", source.describe());
    Ok(Some(shard))
}

pub fn run(store_path: &Path, args: PlanArgs) -> Result<ExitCode> {
    let catalog = Catalog::load(args.catalog.as_deref())?;
    let own_values = slot_values_file(&args)?;
    let mut config = config_from_args(&args, &catalog, &own_values)?;
    config.validate()?;
    let model = args
        .model
        .clone()
        .unwrap_or_else(|| catalog.generation_defaults.model.clone());
    let pricing = PriceTable::resolve(&model, &args.prices.overrides())?;
    let source = DatasetSource {
        path: args.dataset.dataset.clone(),
        name: args.dataset.dataset_name.clone(),
        split: args.dataset.split.clone(),
    };
    let dialogues = match config.annotate.as_mut() {
        Some(annotate) => {
            let d = dataset::load_dialogues_and_values(&source.resolve()?, &source.split)?;
            adopt_frame_values(annotate, &d.observed, &own_values, &catalog)?;
            d
        }
        None => dataset::load_dialogues(&source.resolve()?, &source.split)?,
    };
    let personas = dataset::load_personas(
        &args.personas.persona_dataset,
        args.personas.persona_split.as_deref(),
    )?;
    let shard = shard_of(&args, config.total_generations)?;
    let drawn = draw(&catalog, &config, &dialogues, &personas, shard);

    let meta = Meta {
        dgen_version: env!("CARGO_PKG_VERSION").to_string(),
        config: config.clone(),
        catalog: catalog.clone(),
        datasets: DatasetsMeta {
            split: source.split.clone(),
            dialogues: dialogues.report.clone(),
            personas: personas.report.clone(),
        },
        plan_fingerprint: drawn.fingerprint.clone(),
        shard: drawn.shard.clone(),
        merge: None,
    };
    // Checked on a read-only handle first, so that a needless or refused plan leaves the store
    // file byte-identical; then again on the writable one, in case it changed in between.
    let store = match Store::inspect_for_plan(store_path)? {
        Some(existing) => {
            if let Some(code) = check_existing(&existing, &drawn.fingerprint, &args, drawn.items)? {
                return Ok(code);
            }
            drop(existing);
            let store = Store::create_or_open(store_path)?;
            if let Some(code) = check_existing(&store, &drawn.fingerprint, &args, drawn.items)? {
                return Ok(code);
            }
            if let Some(existing) = store.meta()? {
                tracing::warn!("--force: replacing plan {}", existing.plan_fingerprint);
            }
            commit(&store, &meta, &drawn, &dialogues, &personas)?;
            store
        }
        // A new store appears under its name only once it holds the plan.
        None => Store::create_in_place(store_path, |store| {
            commit(store, &meta, &drawn, &dialogues, &personas)
        })?,
    };
    println!(
        "planned {} work items from {} dialogues and {} personas into {}",
        drawn.items,
        dialogues.dialogues.len(),
        personas.personas.len(),
        store.path().display()
    );
    if let Some(shard) = &drawn.shard {
        println!(
            "shard {}/{} of a plan of {} items (full plan fingerprint: {}); merge the shards with `dgen merge SHARD.redb... --into ALL.redb`",
            shard.index, shard.count, config.total_generations, shard.full_fingerprint
        );
    }
    println!("plan fingerprint: {}", drawn.fingerprint);
    if let Some(annotate) = &config.annotate {
        print_goals(annotate, &catalog, &config, &dialogues, &personas);
    }
    let counters = store.counters()?;
    let get = |k: &str| counters.get(k).copied().unwrap_or(0);
    let expectation = Expectation::from_counters(get("calls"), get("tokens/completion"));
    estimate(
        &meta,
        &dialogues,
        &personas,
        &model,
        expectation,
        &pricing,
        drawn.items,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// An annotated plan's schema in one line and the first item's goals, as the run will ask for
/// them (`dgen run --dry_run` shows the whole request).
fn print_goals(
    annotate: &plan::Annotate,
    catalog: &Catalog,
    config: &PlanConfig,
    dialogues: &Dialogues,
    personas: &Personas,
) {
    let services = &annotate.schema.services;
    let intents: usize = services.iter().map(|s| s.intents.len()).sum();
    let slots: usize = services.iter().map(|s| s.slots.len()).sum();
    println!(
        "annotated: user goals from {} services' schemas ({intents} intents, {slots} slots)",
        services.len()
    );
    print_value_sources(annotate, dialogues);
    let first = Sampler::new(catalog, config, &dialogues.dialogues, &personas.personas).next();
    for goal in first.iter().flat_map(|item| annotate.goals(item)) {
        println!("  item 0, {goal}");
    }
    println!("  (`dgen extract --item N` shows any item's goals)");
}

/// Where the goals' non-categorical values come from: how many slots take the base dataset's
/// frame values, and why the others do not.
fn print_value_sources(annotate: &plan::Annotate, dialogues: &Dialogues) {
    let observed = &dialogues.observed;
    if observed.is_empty() {
        println!(
            "  value pools: built in or --slot_values (the base dialogues have no frames with slot values)"
        );
        return;
    }
    let free: BTreeSet<&str> = annotate
        .schema
        .services
        .iter()
        .flat_map(|s| &s.slots)
        .filter(|s| s.draws_from_pool())
        .map(|s| s.name.as_str())
        .collect();
    let matching: Vec<&String> = observed
        .slots
        .keys()
        .filter(|slot| free.contains(slot.as_str()))
        .collect();
    if matching.is_empty() {
        println!(
            "  value pools: built in or --slot_values; the base dialogues' frames name {} slot(s) (e.g. {}), none a free-text slot of the plan's schema (e.g. {}): an SGD dataset needs SGD's schema (--services_schema) and its services in the catalog (--catalog)",
            observed.slots.len(),
            observed.slots.keys().next().map_or("", String::as_str),
            free.iter().next().copied().unwrap_or("")
        );
        return;
    }
    let pools = ValuePools::observed(&annotate.schema, &observed.slots);
    let kept: Vec<usize> = pools
        .slots
        .iter()
        .filter(|(slot, values)| annotate.values.slots.get(*slot) == Some(values))
        .map(|(_, values)| values.len())
        .collect();
    let thin = matching.len() - pools.slots.len();
    let replaced = pools.slots.len() - kept.len();
    let mut notes = Vec::new();
    if thin > 0 {
        notes.push(format!(
            "{thin} with fewer than {} distinct values kept the built-in pool",
            crate::schema::MIN_OBSERVED
        ));
    }
    if replaced > 0 {
        notes.push(format!("{replaced} replaced by --slot_values"));
    }
    println!(
        "  value pools: {} slot(s) from the frames of {} base dialogues ({} values){}; the others built in or --slot_values",
        kept.len(),
        observed.dialogues,
        kept.iter().sum::<usize>(),
        if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        }
    );
}

/// Items counted one by one at most; a larger plan is counted on an even sample of this many
/// and scaled up (the output says so).
const ESTIMATE_SAMPLE: u64 = 20_000;

/// Prints the tokens and cost of the plan: both prompts of every item as `dgen run` sends them
/// with its default flags, counted with the model's tokenizer.
fn estimate(
    meta: &Meta,
    dialogues: &Dialogues,
    personas: &Personas,
    model: &str,
    expectation: Expectation,
    pricing: &Pricing,
    total: u64,
) -> Result<()> {
    let catalog = &meta.catalog;
    let shard = meta.shard.as_ref().map(ShardMeta::shard);
    let settings = RequestSettings {
        model: model.to_string(),
        dialogue_max_tokens: catalog.generation_defaults.dialogue_call.max_tokens
            * if meta.config.annotate.is_some() {
                crate::prompt::annotated::MAX_TOKENS_FACTOR
            } else {
                1
            },
        structured: Structured::Tags,
        schema: Schema::Strict,
        grammar: false,
        annotate: meta.config.annotate.clone(),
    };
    let mut estimator = Estimator::new(&settings, catalog, expectation);
    let stride = total.div_ceil(ESTIMATE_SAMPLE).max(1);
    let items = Sampler::new(
        catalog,
        &meta.config,
        &dialogues.dialogues,
        &personas.personas,
    )
    .filter(|item| shard.is_none_or(|s| s.holds(item.index)));
    for item in items.step_by(stride as usize) {
        let persona = [(
            item.persona_index,
            personas.personas[item.persona_index as usize].text.clone(),
        )];
        let spec = crate::run::attempt_spec(&item, 0, &meta.config, &persona);
        let base = dialogues.dialogues[item.base_dialogue_index as usize].base_conversation();
        estimator.add(&item, &spec, &base);
    }
    estimator
        .finish(total)
        .write(&mut std::io::stdout().lock(), model, pricing)?;
    Ok(())
}

/// The second pass: the same items drawn again, streamed into the store with the personas and
/// base dialogues they use, in one transaction.
fn commit(
    store: &Store,
    meta: &Meta,
    drawn: &Drawn,
    dialogues: &Dialogues,
    personas: &Personas,
) -> Result<()> {
    let writing = Instant::now();
    let persona_texts: BTreeMap<u32, &str> = drawn
        .personas
        .iter()
        .map(|&i| (i, personas.personas[i as usize].text.as_str()))
        .collect();
    let bases: BTreeMap<u32, &dataset::Dialogue> = drawn
        .bases
        .iter()
        .map(|&i| (i, &dialogues.dialogues[i as usize]))
        .collect();
    let shard = meta.shard.as_ref().map(ShardMeta::shard);
    let items = Sampler::new(
        &meta.catalog,
        &meta.config,
        &dialogues.dialogues,
        &personas.personas,
    )
    .filter(|item| shard.is_none_or(|s| s.holds(item.index)))
    .map(Ok);
    store.write_plan(meta, items, &drawn.usage, &persona_texts, &bases)?;
    tracing::info!(
        "committed the plan to {} in {:.2} s",
        store.path().display(),
        writing.elapsed().as_secs_f64()
    );
    Ok(())
}
