//! Shards: K workers plan the same full plan from the same inputs and seed, and each keeps the
//! items whose index falls to it (`index % K == I`), so they need no shared state. Item indexes
//! stay those of the full plan: the shards are disjoint and together they are the full plan.
//!
//! The shard comes from `--shard I/K` (or `--shard_index I --shard_count K`), else from a
//! scheduler's variables: a Slurm job array's `SLURM_ARRAY_TASK_ID`, or a Kubernetes Indexed
//! Job's `JOB_COMPLETION_INDEX`, with K from `--shard_count` or `DGEN_SHARD_COUNT`. The task
//! id is the shard's index as it is, so a task run again alone (`sbatch --array=3`, where Slurm
//! says the array has one task) is the same shard it was. Only without K does a Slurm task take
//! K from `SLURM_ARRAY_TASK_COUNT`, and then only in an array that is every shard, `0..K-1`.

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
    /// The task id with K from `--shard_count` / `DGEN_SHARD_COUNT`.
    Slurm,
    /// The task id with K from the array's own size.
    SlurmArray,
    Kubernetes,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Flags => "the command line",
            Source::Slurm => "SLURM_ARRAY_TASK_ID and --shard_count/DGEN_SHARD_COUNT",
            Source::SlurmArray => "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT",
            Source::Kubernetes => "JOB_COMPLETION_INDEX and --shard_count/DGEN_SHARD_COUNT",
        }
    }
}

const SLURM_ID: &str = "SLURM_ARRAY_TASK_ID";
const SLURM_COUNT: &str = "SLURM_ARRAY_TASK_COUNT";
const SLURM_MIN: &str = "SLURM_ARRAY_TASK_MIN";
const SLURM_MAX: &str = "SLURM_ARRAY_TASK_MAX";
const K8S_INDEX: &str = "JOB_COMPLETION_INDEX";
/// The number of shards, for a scheduler's task (the sbatch file and the manifests set it).
pub const SHARD_COUNT_ENV: &str = "DGEN_SHARD_COUNT";

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
    if slurm_id.is_none() && k8s_index.is_none() {
        if let Some(count) = flags.count {
            bail!(
                "--shard_count {count} without a shard index: pass --shard_index I, or run inside a Slurm job array ({SLURM_ID}) or a Kubernetes Indexed Job ({K8S_INDEX})"
            );
        }
        // DGEN_SHARD_COUNT outside a scheduler's task says nothing: the whole plan.
        return Ok(None);
    }
    let count = shard_count(flags.count, env)?;
    if let Some(id) = slurm_id {
        return slurm(id, count, env);
    }
    let index = k8s_index.expect("one of the two is set");
    let Some(count) = count else {
        bail!(
            "{K8S_INDEX}={index} is set (a Kubernetes Indexed Job) but --shard_count is not; pass --shard_count (or set {SHARD_COUNT_ENV}) equal to the Job's completions"
        );
    };
    Shard::new(index, count)
        .map(|s| Some((s, Source::Kubernetes)))
        .map_err(|e| e.context(format!("{K8S_INDEX}={index} with a shard count of {count}")))
}

/// K for a scheduler's task: `--shard_count`, else `DGEN_SHARD_COUNT`; the two must agree.
fn shard_count(flag: Option<u32>, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<u32>> {
    let var = number(env, SHARD_COUNT_ENV)?;
    if var == Some(0) {
        bail!("{SHARD_COUNT_ENV}=0 is meaningless; set it to the number of shards");
    }
    match (flag, var) {
        (Some(flag), Some(var)) if flag != var => bail!(
            "--shard_count {flag} disagrees with {SHARD_COUNT_ENV}={var}; give the number of shards once"
        ),
        (Some(k), _) | (None, Some(k)) => Ok(Some(k)),
        (None, None) => Ok(None),
    }
}

/// A Slurm array task's shard: the task id is the index. K comes from `count` when given; a
/// task of an array submitted with more tasks than K is refused (every task of it, so no shard
/// of a mistaken split runs). Without `count`, K is the array's size, but only in an array that
/// is every shard once (`--array=0-K-1`): a task run again alone (`--array=3`: one task, from
/// 3) or a few (`--array=1,3`) cannot tell K, and planning `0/1` there would buy the whole
/// plan for one shard.
fn slurm(
    id: u32,
    count: Option<u32>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(Shard, Source)>> {
    let tasks = number(env, SLURM_COUNT)?;
    let min = number(env, SLURM_MIN)?;
    let max = number(env, SLURM_MAX)?;
    if let Some(count) = count {
        let last = max.or(tasks.map(|t| t.saturating_sub(1)));
        if let Some(last) = last.filter(|&last| last >= count) {
            bail!(
                "this Slurm array reaches task {last} but there are {count} shards (--shard_count/{SHARD_COUNT_ENV}); submit the array as --array=0-{}, or set {SHARD_COUNT_ENV} to the number of shards",
                count - 1
            );
        }
        let shard = Shard::new(id, count).map_err(|e| {
            e.context(format!(
                "{SLURM_ID}={id} with {count} shards: the task id is the shard index; submit the array as --array=0-{}",
                count - 1
            ))
        })?;
        return Ok(Some((shard, Source::Slurm)));
    }
    let fix = format!(
        "set {SHARD_COUNT_ENV}=K (or pass --shard_count K), the number of shards, as deploy/slurm/dgen-array.sbatch does"
    );
    let Some(tasks) = tasks else {
        bail!("{SLURM_ID}={id} is set but {SLURM_COUNT} is not; {fix}");
    };
    let min = min.unwrap_or(0);
    if tasks == 1 && min > 0 {
        bail!(
            "{SLURM_ID}={id} in an array of one task ({SLURM_COUNT}=1, {SLURM_MIN}={min}): one task of a larger array run again (sbatch --array={id}) cannot tell how many shards there are; {fix}"
        );
    }
    let last = tasks.saturating_sub(1);
    if min > 0 || max.is_some_and(|max| max != last) {
        bail!(
            "this Slurm array's {tasks} tasks are not numbered 0 to {last} ({SLURM_MIN}={min}{}): the task id is the shard index, so either submit every shard as --array=0-{last}, or, running some of them again, {fix}",
            max.map_or(String::new(), |m| format!(", {SLURM_MAX}={m}")),
        );
    }
    Shard::new(id, tasks)
        .map(|s| Some((s, Source::SlurmArray)))
        .map_err(|e| {
            e.context(format!(
                "{SLURM_ID}={id} with {SLURM_COUNT}={tasks}; submit the array as --array=0-{last}, or {fix}"
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
        // --array=0-2 without a count: the array's size is K.
        let vars = [
            (SLURM_ID, "2"),
            (SLURM_COUNT, "3"),
            (SLURM_MIN, "0"),
            (SLURM_MAX, "2"),
        ];
        assert_eq!(
            resolve(none, &env(&vars)).unwrap(),
            Some((Shard { index: 2, count: 3 }, Source::SlurmArray))
        );
        let err = shard(none, &[(SLURM_ID, "1")]).unwrap_err().to_string();
        assert!(err.contains("SLURM_ARRAY_TASK_COUNT is not"), "{err}");
        assert!(err.contains("DGEN_SHARD_COUNT=K"), "{err}");
        let err = format!(
            "{:#}",
            shard(none, &[(SLURM_ID, "3"), (SLURM_COUNT, "3")]).unwrap_err()
        );
        assert!(err.contains("--array=0-2"), "{err}");
        // --array=1-3 is not numbered from 0: the ids are the indexes, so it is refused.
        let vars = [
            (SLURM_ID, "2"),
            (SLURM_COUNT, "3"),
            (SLURM_MIN, "1"),
            (SLURM_MAX, "3"),
        ];
        let err = shard(none, &vars).unwrap_err().to_string();
        assert!(err.contains("not numbered 0 to 2"), "{err}");
        // --array=0,2 (a few tasks run again): the ids run past the count.
        let vars = [
            (SLURM_ID, "0"),
            (SLURM_COUNT, "2"),
            (SLURM_MIN, "0"),
            (SLURM_MAX, "2"),
        ];
        assert!(shard(none, &vars).is_err());
    }

    /// `sbatch --array=3`, the documented way to run one failed task again, sets
    /// SLURM_ARRAY_TASK_COUNT=1: it used to plan shard 0 of 1, the whole plan.
    #[test]
    fn one_slurm_task_run_again_is_its_own_shard() {
        let rerun = [
            (SLURM_ID, "3"),
            (SLURM_COUNT, "1"),
            (SLURM_MIN, "3"),
            (SLURM_MAX, "3"),
        ];
        let none = ShardFlags::default();
        let err = shard(none, &rerun).unwrap_err().to_string();
        assert!(err.contains("SLURM_ARRAY_TASK_COUNT=1"), "{err}");
        assert!(err.contains("DGEN_SHARD_COUNT=K"), "{err}");
        // K from the sbatch file's DGEN_SHARD_COUNT, or from the flag.
        let with_env = [&rerun[..], &[(SHARD_COUNT_ENV, "4")]].concat();
        assert_eq!(
            resolve(none, &env(&with_env)).unwrap(),
            Some((Shard { index: 3, count: 4 }, Source::Slurm))
        );
        let flags = ShardFlags {
            count: Some(4),
            ..none
        };
        assert_eq!(
            shard(flags, &rerun).unwrap(),
            Some(Shard { index: 3, count: 4 })
        );
        // Two of the tasks again (--array=1,3), and the whole array, with the count.
        let some = [
            (SLURM_ID, "1"),
            (SLURM_COUNT, "2"),
            (SLURM_MIN, "1"),
            (SLURM_MAX, "3"),
        ];
        assert_eq!(
            shard(flags, &some).unwrap(),
            Some(Shard { index: 1, count: 4 })
        );
        let whole = [
            (SLURM_ID, "0"),
            (SLURM_COUNT, "4"),
            (SLURM_MIN, "0"),
            (SLURM_MAX, "3"),
        ];
        assert_eq!(
            shard(flags, &whole).unwrap(),
            Some(Shard { index: 0, count: 4 })
        );
    }

    #[test]
    fn a_slurm_array_larger_than_the_count_is_refused_in_every_task() {
        // --array=0-7 with DGEN_SHARD_COUNT=4: task 1 is refused too, not only tasks 4 to 7.
        let vars = [
            (SLURM_ID, "1"),
            (SLURM_COUNT, "8"),
            (SLURM_MIN, "0"),
            (SLURM_MAX, "7"),
            (SHARD_COUNT_ENV, "4"),
        ];
        let err = shard(ShardFlags::default(), &vars).unwrap_err().to_string();
        assert!(
            err.contains("reaches task 7 but there are 4 shards"),
            "{err}"
        );
        assert!(err.contains("--array=0-3"), "{err}");
        // Without SLURM_ARRAY_TASK_MAX, the task count says it.
        let vars = [(SLURM_ID, "1"), (SLURM_COUNT, "8"), (SHARD_COUNT_ENV, "4")];
        assert!(shard(ShardFlags::default(), &vars).is_err());
        // An id past the count.
        let vars = [(SLURM_ID, "4"), (SLURM_COUNT, "1"), (SHARD_COUNT_ENV, "4")];
        let err = format!("{:#}", shard(ShardFlags::default(), &vars).unwrap_err());
        assert!(err.contains("outside 0..4"), "{err}");
        // The flag and the variable must agree; 0 is no count.
        let flags = ShardFlags {
            count: Some(3),
            ..ShardFlags::default()
        };
        let vars = [(SLURM_ID, "1"), (SLURM_COUNT, "1"), (SHARD_COUNT_ENV, "4")];
        let err = shard(flags, &vars).unwrap_err().to_string();
        assert!(
            err.contains("--shard_count 3 disagrees with DGEN_SHARD_COUNT=4"),
            "{err}"
        );
        let vars = [(SLURM_ID, "1"), (SLURM_COUNT, "1"), (SHARD_COUNT_ENV, "0")];
        assert!(shard(ShardFlags::default(), &vars).is_err());
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
        assert_eq!(
            shard(none, &[(K8S_INDEX, "3"), (SHARD_COUNT_ENV, "4")]).unwrap(),
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
        // DGEN_SHARD_COUNT outside a scheduler's task: the whole plan.
        assert_eq!(
            shard(ShardFlags::default(), &[(SHARD_COUNT_ENV, "4")]).unwrap(),
            None
        );
        // A one-task array from 0 is a whole plan of one shard, as before.
        let one = [(SLURM_ID, "0"), (SLURM_COUNT, "1"), (SLURM_MIN, "0")];
        assert_eq!(shard(ShardFlags::default(), &one).unwrap(), None);
    }
}
