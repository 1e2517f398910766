//! dgen as a library: the pipeline stages the `dgen` binary is made of, in pipeline order.
//! `cli` -> `catalog` / `dataset` -> `plan` -> `store` -> `llm` -> `prompt` -> `parse` ->
//! `embed` / `dedup` -> `run` -> `merge` (shard stores into one) -> `output` (export, import) /
//! `status` / `report`. `ipc` carries export, status and report requests to a running
//! `dgen run`; `commands` glue the stages into subcommands.

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
pub mod status;
pub mod store;
