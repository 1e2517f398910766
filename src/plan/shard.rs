//! Shards: K workers plan the same full plan from the same inputs and seed, and each keeps the
//! items whose index falls to it (`index % K == I`), so they need no shared state. Item indexes
//! stay those of the full plan: the shards are disjoint and together they are the full plan.
//!
//! The shard comes from `--shard I/K` (or `--shard_index I --shard_count K`), else from a
//! scheduler's variables: a Slurm job array's `SLURM_ARRAY_TASK_ID` / `SLURM_ARRAY_TASK_COUNT`,
//! or a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX` with `--shard_count`.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub fn new(index: u32, count: u32) -> Result<Shard> {
        if count == 0 {
            bail!(
                "a shard count of 0 is meaningless; give the number of workers, e.g. --shard 0/4"
            );
        }
        if index >= count {
            bail!(
                "shard index {index} is outside 0..{count}: shards are numbered from 0 to {}",
                count - 1
            );
        }
        Ok(Shard { index, count })
    }

    /// Whether the full plan's item `index` belongs to this shard.
    pub fn holds(&self, item: u64) -> bool {
        item % u64::from(self.count) == u64::from(self.index)
    }

    /// How many of `total` items this shard holds.
    pub fn items_of(&self, total: u64) -> u64 {
        let (k, i) = (u64::from(self.count), u64::from(self.index));
        total / k + u64::from(total % k > i)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Parses `I/K` (the `--shard` flag).
pub fn parse(text: &str) -> Result<Shard, String> {
    let bad = || {
        format!("\"{text}\" is not a shard; write INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4")
    };
    let (i, k) = text.trim().split_once('/').ok_or_else(bad)?;
    let i: u32 = i.trim().parse().map_err(|_| bad())?;
    let k: u32 = k.trim().parse().map_err(|_| bad())?;
    Shard::new(i, k).map_err(|e| format!("{e:#}"))
}

/// What the command line said about the shard.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShardFlags {
    /// `--shard I/K`.
    pub shard: Option<Shard>,
    pub index: Option<u32>,
    pub count: Option<u32>,
}

/// Where the shard came from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flags,
    Slurm,
    Kubernetes,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Flags => "the command line",
            Source::Slurm => "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT",
            Source::Kubernetes => "JOB_COMPLETION_INDEX and --shard_count",
        }
    }
}

const SLURM_ID: &str = "SLURM_ARRAY_TASK_ID";
const SLURM_COUNT: &str = "SLURM_ARRAY_TASK_COUNT";
const SLURM_MIN: &str = "SLURM_ARRAY_TASK_MIN";
const SLURM_STEP: &str = "SLURM_ARRAY_TASK_STEP";
const K8S_INDEX: &str = "JOB_COMPLETION_INDEX";

fn number(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Option<u32>> {
    match env(name) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => match v.trim().parse() {
            Ok(n) => Ok(Some(n)),
            Err(_) => bail!("{name}={v:?} is not a whole number; the scheduler sets it to one"),
        },
    }
}

/// The shard this process plans, from the flags or else from the scheduler's variables
/// (`env` looks one up); `None` for the whole plan. A count of 1 is the whole plan too, so
/// `--shard 0/1` plans everything even inside a job array.
pub fn resolve(
    flags: ShardFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(Shard, Source)>> {
    let resolved = resolve_any(flags, env)?;
    Ok(resolved.filter(|(s, _)| s.count > 1))
}

fn resolve_any(
    flags: ShardFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(Shard, Source)>> {
    if let Some(shard) = flags.shard {
        if flags.index.is_some() || flags.count.is_some() {
            bail!(
                "--shard {shard} and --shard_index/--shard_count both given; use one or the other"
            );
        }
        return Ok(Some((shard, Source::Flags)));
    }
    if let Some(index) = flags.index {
        let Some(count) = flags.count else {
            bail!("--shard_index {index} needs --shard_count K (the number of shards)");
        };
        return Ok(Some((Shard::new(index, count)?, Source::Flags)));
    }
    let slurm_id = number(env, SLURM_ID)?;
    let k8s_index = number(env, K8S_INDEX)?;
    if slurm_id.is_some() && k8s_index.is_some() {
        bail!(
            "both {SLURM_ID} and {K8S_INDEX} are set, so the shard is ambiguous; pass --shard I/K"
        );
    }
    if let Some(id) = slurm_id {
        return slurm(id, flags.count, env).map(|s| Some((s, Source::Slurm)));
    }
    if let Some(index) = k8s_index {
        let Some(count) = flags.count else {
            bail!(
                "{K8S_INDEX}={index} is set (a Kubernetes Indexed Job) but --shard_count is not; pass --shard_count equal to the Job's completions"
            );
        };
        return Shard::new(index, count)
            .map(|s| Some((s, Source::Kubernetes)))
            .map_err(|e| e.context(format!("{K8S_INDEX}={index} with --shard_count {count}")));
    }
    if let Some(count) = flags.count {
        bail!(
            "--shard_count {count} without a shard index: pass --shard_index I, or run inside a Slurm job array ({SLURM_ID}) or a Kubernetes Indexed Job ({K8S_INDEX})"
        );
    }
    Ok(None)
}

/// A Slurm array task's shard. Slurm numbers tasks by the `--array` range (`--array=1-3` gives
/// 1, 2, 3), so the index is the task's position in the range: (ID - MIN) / STEP.
fn slurm(id: u32, count_flag: Option<u32>, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard> {
    let Some(count) = number(env, SLURM_COUNT)? else {
        bail!("{SLURM_ID}={id} is set but {SLURM_COUNT} is not; pass --shard I/K");
    };
    if let Some(flag) = count_flag {
        if flag != count {
            bail!(
                "--shard_count {flag} disagrees with {SLURM_COUNT}={count}; submit the array with --array=0-{} or drop --shard_count",
                flag.saturating_sub(1)
            );
        }
    }
    let min = number(env, SLURM_MIN)?.unwrap_or(0);
    let step = number(env, SLURM_STEP)?.unwrap_or(1).max(1);
    if id < min || !(id - min).is_multiple_of(step) {
        bail!("{SLURM_ID}={id} is not in the array starting at {SLURM_MIN}={min} with step {step}");
    }
    let index = (id - min) / step;
    Shard::new(index, count).map_err(|e| {
        e.context(format!(
            "{SLURM_ID}={id} ({SLURM_MIN}={min}) with {SLURM_COUNT}={count}; submit the array as --array=0-{}",
            count.saturating_sub(1)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn shard(flags: ShardFlags, vars: &[(&str, &str)]) -> Result<Option<Shard>> {
        Ok(resolve(flags, &env(vars))?.map(|(s, _)| s))
    }

    #[test]
    fn parses_index_over_count() {
        assert_eq!(parse("2/5"), Ok(Shard { index: 2, count: 5 }));
        assert!(parse("5/5").unwrap_err().contains("outside 0..5"));
        assert!(parse("1/0").unwrap_err().contains("count of 0"));
        assert!(parse("x").unwrap_err().contains("INDEX/COUNT"));
    }

    #[test]
    fn shards_split_every_index_once() {
        for k in 1..6u32 {
            for total in 0..20u64 {
                let shards: Vec<Shard> = (0..k).map(|i| Shard::new(i, k).unwrap()).collect();
                let sum: u64 = shards.iter().map(|s| s.items_of(total)).sum();
                assert_eq!(sum, total);
                for i in 0..total {
                    assert_eq!(shards.iter().filter(|s| s.holds(i)).count(), 1);
                }
                for s in &shards {
                    assert_eq!(
                        s.items_of(total),
                        (0..total).filter(|&i| s.holds(i)).count() as u64
                    );
                }
            }
        }
    }

    #[test]
    fn slurm_variables_give_the_shard() {
        let none = ShardFlags::default();
        let vars = [(SLURM_ID, "2"), (SLURM_COUNT, "3"), (SLURM_MIN, "0")];
        assert_eq!(
            shard(none, &vars).unwrap(),
            Some(Shard { index: 2, count: 3 })
        );
        // --array=1-3: IDs 1, 2, 3 are shards 0, 1, 2.
        let vars = [(SLURM_ID, "3"), (SLURM_COUNT, "3"), (SLURM_MIN, "1")];
        assert_eq!(
            shard(none, &vars).unwrap(),
            Some(Shard { index: 2, count: 3 })
        );
        let err = shard(none, &[(SLURM_ID, "1")]).unwrap_err().to_string();
        assert!(err.contains("SLURM_ARRAY_TASK_COUNT is not"), "{err}");
        let err = format!(
            "{:#}",
            shard(none, &[(SLURM_ID, "3"), (SLURM_COUNT, "3")]).unwrap_err()
        );
        assert!(err.contains("--array=0-2"), "{err}");
        let flags = ShardFlags {
            count: Some(4),
            ..none
        };
        let err = shard(flags, &[(SLURM_ID, "1"), (SLURM_COUNT, "3")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("disagrees"), "{err}");
    }

    #[test]
    fn kubernetes_index_needs_the_count() {
        let none = ShardFlags::default();
        let err = shard(none, &[(K8S_INDEX, "1")]).unwrap_err().to_string();
        assert!(err.contains("--shard_count"), "{err}");
        let flags = ShardFlags {
            count: Some(4),
            ..none
        };
        assert_eq!(
            shard(flags, &[(K8S_INDEX, "3")]).unwrap(),
            Some(Shard { index: 3, count: 4 })
        );
        assert!(shard(flags, &[(K8S_INDEX, "4")]).is_err());
        assert!(shard(
            none,
            &[(K8S_INDEX, "1"), (SLURM_ID, "1"), (SLURM_COUNT, "2")]
        )
        .is_err());
    }

    #[test]
    fn flags_win_and_one_shard_is_the_whole_plan() {
        let vars = [(SLURM_ID, "1"), (SLURM_COUNT, "3")];
        let flags = ShardFlags {
            shard: Some(Shard { index: 0, count: 1 }),
            ..ShardFlags::default()
        };
        assert_eq!(shard(flags, &vars).unwrap(), None);
        assert_eq!(shard(ShardFlags::default(), &[]).unwrap(), None);
        let count_only = ShardFlags {
            count: Some(3),
            ..ShardFlags::default()
        };
        assert!(shard(count_only, &[]).is_err());
    }
}
