//! Commands that glue the stages together: load inputs, call the pure parts, talk to the store.

pub mod bench_fill;
pub mod during_run;
pub mod export;
pub mod extract;
pub mod import;
pub mod judge;
pub mod judge_discrimination;
pub mod merge;
pub mod plan;
pub mod report;
pub mod run;
pub mod status;
