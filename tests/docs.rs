//! The user guide keeps up with the binary: every flag that `dgen --help` and each subcommand's
//! `--help` show is mentioned in README.md or docs/*.md, and every relative link in those files
//! leads to a file (and a heading) that exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// Benchmark-only subcommands: clap hides them from `dgen --help`, so they are named here. They
/// are documented in docs/development.md like the others, flags included.
const HIDDEN_SUBCOMMANDS: [&str; 2] = ["bench-fill", "judge-discrimination"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and docs/*.md, by path relative to the repository root.
fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md")];
    let mut guide: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ holds the user guide")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| path.strip_prefix(root()).unwrap().to_path_buf())
        .collect();
    guide.sort();
    files.extend(guide);
    files
}

fn read(relative: &Path) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("reading {}: {e}", relative.display()))
}

fn help(subcommand: Option<&str>) -> String {
    let mut cmd = Command::cargo_bin("dgen").unwrap();
    cmd.args(subcommand).arg("--help").env_remove("RUST_LOG");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "dgen {} --help failed: {}",
        subcommand.unwrap_or(""),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands `dgen --help` lists under "Commands:" (clap's own `help` aside).
fn listed_subcommands(top: &str) -> Vec<String> {
    top.lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        // A description wrapped onto the next line is indented past the names' column.
        .filter(|line| line.starts_with("  ") && !line.starts_with("    "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

fn is_flag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The long flags of a help text: the first word of each option line (`  -v, --verbose` or
/// `      --store <FILE>`), and the aliases clap prints as `[alias: --x]` / `[aliases: --x, --y]`.
fn flags(help: &str) -> (Vec<String>, Vec<String>) {
    let long = help
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("      --").or_else(|| {
                line.strip_prefix("  -")
                    .and_then(|l| l.get(3..)?.strip_prefix("--"))
            })?;
            let name: String = rest.chars().take_while(|&c| is_flag_char(c)).collect();
            (!name.is_empty()).then(|| format!("--{name}"))
        })
        .collect();
    // clap wraps descriptions, so an alias list can span lines: read it with whitespace joined.
    let joined = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut aliases = Vec::new();
    for marker in ["[alias: ", "[aliases: "] {
        for (at, _) in joined.match_indices(marker) {
            let list = &joined[at + marker.len()..];
            let list = &list[..list.find(']').expect("an alias list ends with ]")];
            aliases.extend(list.split(',').map(|a| a.trim().to_string()));
        }
    }
    (long, aliases)
}

/// Whether `text` mentions `flag` as a whole flag (`--local` is not found in `--local_model`).
fn mentions(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + flag.len()..].chars().next();
        !before.is_some_and(is_flag_char) && !after.is_some_and(is_flag_char)
    })
}

#[test]
fn every_flag_in_help_is_documented() {
    let docs: String = doc_files().iter().map(|f| read(f) + "\n").collect();
    let top = help(None);
    let listed = listed_subcommands(&top);
    for expected in ["plan", "run", "status", "export", "report", "merge"] {
        assert!(
            listed.iter().any(|name| name == expected),
            "`dgen --help` lists no `{expected}` under Commands: (found {listed:?}); the test \
             reads the list from there"
        );
    }
    let mut subcommands: Vec<Option<&str>> = vec![None];
    subcommands.extend(listed.iter().map(|s| Some(s.as_str())));
    subcommands.extend(HIDDEN_SUBCOMMANDS.map(Some));

    // Kebab-case aliases (`--total-generations` for `--total_generations`) are one rule for all
    // flags, documented once, rather than a second spelling to mention for each.
    assert!(
        docs.to_lowercase().contains("kebab-case"),
        "README.md and docs/*.md no longer say that every flag takes its kebab-case spelling"
    );

    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for subcommand in subcommands {
        let name = format!("dgen {}", subcommand.unwrap_or(""))
            .trim()
            .to_string();
        let text = if subcommand.is_none() {
            top.clone()
        } else {
            help(subcommand)
        };
        let (long, aliases) = flags(&text);
        // Guards the parser: every command has --store and --help, so finding neither means
        // clap's layout changed and the test would otherwise check nothing.
        for always in ["--store", "--help"] {
            assert!(
                long.iter().any(|f| f == always),
                "found no {always} in `{name} --help`; the flag parser no longer matches clap's \
                 layout:\n{text}"
            );
        }
        let kebab: Vec<String> = long.iter().map(|f| f.replace('_', "-")).collect();
        let undocumented: Vec<String> = long
            .iter()
            .chain(aliases.iter().filter(|a| !kebab.contains(a)))
            .filter(|flag| !mentions(&docs, flag))
            .cloned()
            .collect();
        if !undocumented.is_empty() {
            missing.insert(name, undocumented);
        }
    }
    assert!(
        missing.is_empty(),
        "flags that --help shows and neither README.md nor docs/*.md mentions — document each \
         in the docs/*.md file of its topic (docs/README.md lists them):\n{}",
        missing
            .iter()
            .map(|(command, flags)| format!("  {command}: {}", flags.join(", ")))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// GitHub's anchor of a heading: lowercased, punctuation dropped, spaces turned into hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || c == ' ' || c == '-' || c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks); a repeated heading gets
/// `-1`, `-2`, … as on GitHub.
fn anchors(markdown: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            let base = anchor(line.trim_start_matches('#'));
            let repeats = seen.entry(base.clone()).or_insert(0);
            found.push(match *repeats {
                0 => base,
                n => format!("{base}-{n}"),
            });
            *repeats += 1;
        }
    }
    found
}

/// The targets of the inline links and images (`[text](target)`) of a Markdown file.
fn link_targets(markdown: &str) -> Vec<String> {
    markdown
        .match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &markdown[at + 2..];
            let end = rest.find(')')?;
            let target = rest[..end].split_whitespace().next()?;
            Some(target.to_string())
        })
        .collect()
}

#[test]
fn every_relative_link_in_the_docs_leads_somewhere() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in doc_files() {
        let text = read(&file);
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, fragment) = match target.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !root().join(&resolved).exists() {
                broken.push(format!(
                    "{}: {target} (no file {})",
                    file.display(),
                    resolved.display()
                ));
                continue;
            }
            if let Some(fragment) = fragment {
                if resolved.extension().is_some_and(|ext| ext == "md")
                    && !anchors(&read(&resolved)).iter().any(|a| a == fragment)
                {
                    broken.push(format!(
                        "{}: {target} ({} has no heading with the anchor #{fragment})",
                        file.display(),
                        resolved.display()
                    ));
                }
            }
        }
    }
    assert!(
        checked > 20,
        "found only {checked} relative links in README.md and docs/*.md; the link parser no \
         longer reads them"
    );
    assert!(
        broken.is_empty(),
        "links in README.md and docs/*.md that lead nowhere:\n  {}",
        broken.join("\n  ")
    );
}

/// Every file under `dir`, recursively, as paths relative to the repository root.
fn files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(root().join(dir)).unwrap() {
        let path = dir.join(entry.unwrap().file_name());
        if root().join(&path).is_dir() {
            files_under(&path, found);
        } else {
            found.push(path);
        }
    }
}

/// The words of a Markdown file's code blocks and inline code spans.
fn code_words(markdown: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if in_code {
            words.extend(line.split_whitespace().map(str::to_string));
        } else {
            words.extend(line.split('`').skip(1).step_by(2).flat_map(|span| {
                span.split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            }));
        }
    }
    words
}

#[test]
fn the_module_map_names_files_and_tables_that_exist() {
    let map = read(Path::new("docs/architecture.md"));
    let mut sources = Vec::new();
    for dir in ["src", "tests", "benches", "examples"] {
        files_under(Path::new(dir), &mut sources);
    }
    // A name alone (`sampler.rs`, `batch/`) may be anywhere under these folders; a path
    // (`run/queue.rs`) is under src/ or the repository root.
    let exists = |name: &str| {
        if root().join("src").join(name).exists() || root().join(name).exists() {
            return true;
        }
        let bare = name.trim_end_matches('/');
        !bare.contains('/')
            && sources.iter().any(|file| {
                let mut parts = file.iter().map(|p| p.to_string_lossy());
                if name.ends_with('/') {
                    parts.any(|part| part == bare)
                } else {
                    file.file_name()
                        .is_some_and(|f| f.to_string_lossy() == bare)
                }
            })
    };
    let mut named = 0;
    let mut missing = Vec::new();
    for word in code_words(&map) {
        let name = word.trim_matches(|c: char| ",;:()".contains(c));
        let is_path = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_./-".contains(c))
            && (name.ends_with(".rs") || name.ends_with('/'));
        if is_path {
            named += 1;
            if !exists(name) {
                missing.push(name.to_string());
            }
        }
    }
    assert!(
        named > 30,
        "found only {named} file names in docs/architecture.md; the test no longer reads them"
    );
    assert!(
        missing.is_empty(),
        "docs/architecture.md names files that do not exist (moved or renamed? update the module \
         map): {}",
        missing.join(", ")
    );

    let tables = read(Path::new("src/store/tables.rs"));
    let undocumented: Vec<&str> = tables
        .split("TableDefinition::new(\"")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .filter(|table| !map.contains(&format!("| `{table}` |")))
        .collect();
    assert!(
        tables.contains("TableDefinition::new(\"meta\")") && undocumented.is_empty(),
        "tables of src/store/tables.rs missing from the store's table in docs/architecture.md: \
         {undocumented:?}"
    );
}
