//! `--embed_workers` and `--embed_threads`, shared by the commands that embed.

use clap::Args;

use super::values::whole;
use crate::embed::Parallelism;

/// Sessions and threads beyond this are a typo, not a machine.
const MAX_EMBED: usize = 1024;

#[derive(Debug, Clone, Args)]
pub struct EmbedArgs {
    /// Embedding sessions working side by side [default: the CPUs this process may use (affinity mask and cgroup quota) / --embed_threads].
    #[arg(long = "embed_workers", visible_alias = "embed-workers", value_name = "K", allow_negative_numbers = true, value_parser = whole::<usize>(1, MAX_EMBED))]
    pub embed_workers: Option<usize>,
    /// ONNX Runtime intra-op threads per embedding session [default: 1, or the CPUs / --embed_workers].
    #[arg(long = "embed_threads", visible_alias = "embed-threads", value_name = "T", allow_negative_numbers = true, value_parser = whole::<usize>(1, MAX_EMBED))]
    pub embed_threads: Option<usize>,
}

impl EmbedArgs {
    pub fn parallelism(&self) -> Parallelism {
        Parallelism::from_flags(self.embed_workers, self.embed_threads)
    }
}
