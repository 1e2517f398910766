//! dgen as a library: the pipeline stages the `dgen` binary is made of. Each module imports
//! only from the layers below it (`tests/layers.rs` checks that no import circle comes back):
//!
//! 1. Data and leaves: `annotation` (the annotated mode's goals and per-turn frames), `catalog` (services, weights, the quality data), `schema` (service
//!    schemas in SGD's format, value pools), `dataset` (base
//!    dialogues, personas), `parse` (the dialogue wire format), `quality` (the checks, pure
//!    functions), `record` (what the store keeps of a dialogue and its judge score), `llm`
//!    (endpoints, retries, pacing, credentials), `embed`, `dedup`, `process` (runtimes,
//!    signals), `ipc`.
//! 2. `plan` (seeded sampling), `prompt` (the requests), `cost` (prices, estimates).
//! 3. `store`: the redb tables, the single writer's transactions, plan verification.
//! 4. The stages: `run` (generation, online or through the Batch API), `judge`, `merge`,
//!    `metrics`, `status`, `output` (export, import, Hugging Face), `report`.
//! 5. `commands`: one per subcommand, gluing the stages; each turns its flags into the
//!    configuration its stage owns.
//! 6. `cli`: the flags (clap), which nothing below `commands` names.

pub mod annotation;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod cost;
pub mod dataset;
pub mod dedup;
pub mod embed;
pub mod ipc;
pub mod judge;
pub mod llm;
pub mod merge;
pub mod metrics;
pub mod output;
pub mod parse;
pub mod plan;
pub mod process;
pub mod prompt;
pub mod quality;
pub mod record;
pub mod report;
pub mod run;
pub mod schema;
pub mod status;
pub mod store;
