//! Deterministic quality checks on every parsed dialogue (no model involved): whether the ending
//! matches the planned outcome, whether the prompt's example or the reference conversation was
//! copied, whether turns repeat, whether the item's services come up at all, whether
//! template leftovers remain, and whether the dialogue is degenerate (utterances of one or two
//! words, one text said again and again, intents that are not labels). Each check has an action — `reject` (the attempt is re-attempted,
//! like a duplicate), `flag` (kept and marked) or `off`.
//!
//! The cue lists, keywords and default actions are data: built in from `assets/quality.json`
//! and overridable key by key by a catalog's optional `quality` section. The section is absent
//! from the built-in catalog so that existing plan fingerprints stay what they were.

mod checks;
mod degenerate;
pub mod labels;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::parse::ParsedTurn;

pub use checks::normalize;

const BUILTIN_QUALITY: &str = include_str!("../../assets/quality.json");

/// One check, by the name used in flags, counters and exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    OutcomeMismatch,
    CopiedExample,
    CopiedReference,
    Repetitive,
    OffTopic,
    Placeholder,
    ShortUtterances,
    RepeatedReply,
    IntentLabels,
    UnknownLabel,
    CategoricalValue,
    Ungrounded,
    DroppedSlot,
    GoalUnrealized,
    InvalidCall,
    OutcomeCalls,
}

impl Check {
    /// Every check: the text checks, then the label checks.
    pub const ALL: [Check; 16] = concat(Check::TEXT, Check::LABELS);

    /// The checks of the text, run on every dialogue.
    pub const TEXT: [Check; 9] = [
        Check::OutcomeMismatch,
        Check::CopiedExample,
        Check::CopiedReference,
        Check::Repetitive,
        Check::OffTopic,
        Check::Placeholder,
        Check::ShortUtterances,
        Check::RepeatedReply,
        Check::IntentLabels,
    ];

    /// The annotated mode's label checks (`labels`), run on annotated dialogues only.
    pub const LABELS: [Check; 7] = [
        Check::UnknownLabel,
        Check::CategoricalValue,
        Check::Ungrounded,
        Check::DroppedSlot,
        Check::GoalUnrealized,
        Check::InvalidCall,
        Check::OutcomeCalls,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::OutcomeMismatch => "outcome_mismatch",
            Check::CopiedExample => "copied_example",
            Check::CopiedReference => "copied_reference",
            Check::Repetitive => "repetitive",
            Check::OffTopic => "off_topic",
            Check::Placeholder => "placeholder",
            Check::ShortUtterances => "short_utterances",
            Check::RepeatedReply => "repeated_reply",
            Check::IntentLabels => "intent_labels",
            Check::UnknownLabel => "unknown_label",
            Check::CategoricalValue => "categorical_value",
            Check::Ungrounded => "ungrounded",
            Check::DroppedSlot => "dropped_slot",
            Check::GoalUnrealized => "goal_unrealized",
            Check::InvalidCall => "invalid_call",
            Check::OutcomeCalls => "outcome_calls",
        }
    }
}

/// `text` then `labels`, as one list (a const, so `Check::ALL` is derived, not a third copy).
const fn concat(text: [Check; 9], labels: [Check; 7]) -> [Check; 16] {
    let mut out = [Check::OutcomeMismatch; 16];
    let mut i = 0;
    while i < text.len() {
        out[i] = text[i];
        i += 1;
    }
    let mut j = 0;
    while j < labels.len() {
        out[text.len() + j] = labels[j];
        j += 1;
    }
    out
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn names<T: fmt::Display>(all: &[T]) -> String {
    all.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Check {
    type Err = String;
    fn from_str(s: &str) -> Result<Check, String> {
        Check::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown check \"{s}\"; the checks are {}",
                    names(&Check::ALL)
                )
            })
    }
}

/// What a check's finding does to the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The attempt is rejected with the check's name as its reason and re-attempted.
    Reject,
    /// The dialogue is kept, marked with the finding.
    Flag,
    /// The check does not run.
    Off,
}

impl Action {
    const ALL: [Action; 3] = [Action::Reject, Action::Flag, Action::Off];

    pub fn name(self) -> &'static str {
        match self {
            Action::Reject => "reject",
            Action::Flag => "flag",
            Action::Off => "off",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Action, String> {
        Action::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown action \"{s}\"; the actions are {}",
                    names(&Action::ALL)
                )
            })
    }
}

/// The catalog's `quality` section, and the built-in defaults in the same shape. Every map is
/// merged key by key over the defaults, so a catalog names only what it changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// The action of each check.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub actions: BTreeMap<Check, Action>,
    /// Cues of each resolution status in the closing turns; a status without cues (or with an
    /// empty list) is not checked for `outcome_mismatch`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outcome_cues: BTreeMap<String, Vec<String>>,
    /// Words that show a service is talked about; a service without a list is looked for by
    /// its name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_keywords: BTreeMap<String, Vec<String>>,
}

impl QualityConfig {
    /// The built-in data: every check's default action, cues for Resolved / Failed / Escalated,
    /// keywords for the eight built-in services.
    pub fn builtin() -> QualityConfig {
        let mut value: serde_json::Value =
            serde_json::from_str(BUILTIN_QUALITY).expect("the built-in quality data is JSON");
        if let Some(map) = value.as_object_mut() {
            map.retain(|key, _| !key.starts_with('_'));
        }
        serde_json::from_value(value).expect("the built-in quality data has the quality shape")
    }

    /// `self` with `over`'s entries replacing its own, key by key.
    pub fn merged(mut self, over: &QualityConfig) -> QualityConfig {
        self.actions
            .extend(over.actions.iter().map(|(k, v)| (*k, *v)));
        self.outcome_cues.extend(over.outcome_cues.clone());
        self.service_keywords.extend(over.service_keywords.clone());
        self
    }

    /// The action of a check (a check no layer names is off).
    pub fn action(&self, check: Check) -> Action {
        self.actions.get(&check).copied().unwrap_or(Action::Off)
    }

    /// Refuses empty cues and keywords (they would match everything), and keyword lists for
    /// services the catalog does not have.
    pub fn validate(&self, services: &[String]) -> Result<()> {
        for (what, map) in [
            ("outcome_cues", &self.outcome_cues),
            ("service_keywords", &self.service_keywords),
        ] {
            for (key, list) in map {
                if let Some(i) = list.iter().position(|w| normalize(w).trim().is_empty()) {
                    bail!("quality.{what}.{key}[{i}] has no letters or digits; give a word or phrase, or remove the entry");
                }
            }
        }
        for service in self.service_keywords.keys() {
            if !services.contains(service) {
                bail!("quality.service_keywords names unknown service \"{service}\"; add it to core_services or remove the list");
            }
        }
        Ok(())
    }
}

/// `--checks name=action,...`: actions that replace the catalog's for this run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckOverrides(pub Vec<(Check, Action)>);

impl CheckOverrides {
    /// The `--checks` value parser: every pair named, every name and action known.
    pub fn parse(text: &str) -> Result<CheckOverrides, String> {
        let mut out = Vec::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (check, action) = pair.split_once('=').ok_or_else(|| {
                format!("\"{pair}\" is not check=action (e.g. outcome_mismatch=reject)")
            })?;
            out.push((check.trim().parse()?, action.trim().parse()?));
        }
        if out.is_empty() {
            return Err("give at least one check=action (e.g. off_topic=flag)".into());
        }
        Ok(CheckOverrides(out))
    }

    pub fn apply(&self, config: &mut QualityConfig) {
        config.actions.extend(self.0.iter().copied());
    }
}

/// A dialogue's check results as stored and exported: what was found by flagging checks, and
/// (read from the judge table, never stored here) the LLM judge's score when it has one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QualityRecord {
    pub checks: Vec<Finding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<crate::record::judge::JudgeScore>,
    /// The annotated mode's labels (read from the annotations table, never stored here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation: Option<Box<crate::annotation::Annotation>>,
}

impl QualityRecord {
    /// The stored encoding: JSON, so later versions can add fields and still read old entries.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a quality record serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<QualityRecord> {
        serde_json::from_slice(bytes)
            .context("the store holds a quality record this dgen cannot decode")
    }
}

/// One check that found something, and what it found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub check: Check,
    pub detail: String,
}

/// What the checks look at: the parsed turns and the item's plan.
pub struct Subject<'a> {
    pub turns: &'a [ParsedTurn],
    pub services: &'a [String],
    pub resolution_status: &'a str,
    /// The reference conversation the prompt showed (`USER: …` lines).
    pub base_conversation: &'a str,
}

/// What the checks decided: the first rejecting finding, if any, and the flagged ones.
#[derive(Debug, Default, PartialEq)]
pub struct Verdict {
    pub reject: Option<Finding>,
    pub flagged: Vec<Finding>,
}

/// Runs every text check that is not off, in [`Check::TEXT`] order.
pub fn evaluate(subject: &Subject<'_>, config: &QualityConfig) -> Verdict {
    let mut verdict = Verdict::default();
    for check in Check::TEXT {
        let action = config.action(check);
        if action == Action::Off {
            continue;
        }
        let Some(detail) = checks::run(check, subject, config) else {
            continue;
        };
        verdict.add(Finding { check, detail }, action);
    }
    verdict
}

impl Verdict {
    /// A finding under its check's action: the first rejecting one decides, flags are kept.
    pub fn add(&mut self, finding: Finding, action: Action) {
        match action {
            Action::Reject if self.reject.is_none() => self.reject = Some(finding),
            Action::Reject | Action::Off => {}
            Action::Flag => self.flagged.push(finding),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_data_has_an_action_for_every_check_and_the_three_statuses() {
        let q = QualityConfig::builtin();
        for check in Check::ALL {
            assert!(q.actions.contains_key(&check), "{check} has a default");
        }
        for status in ["Resolved", "Failed", "Escalated"] {
            assert!(!q.outcome_cues[status].is_empty());
        }
        let catalog = crate::catalog::Catalog::builtin();
        for service in &catalog.core_services {
            assert!(q.service_keywords.contains_key(service), "{service}");
        }
        q.validate(&catalog.core_services).unwrap();
    }

    #[test]
    fn overrides_name_unknown_checks_and_actions() {
        let o = CheckOverrides::parse("outcome_mismatch=reject, off_topic=off").unwrap();
        assert_eq!(
            o.0,
            vec![
                (Check::OutcomeMismatch, Action::Reject),
                (Check::OffTopic, Action::Off)
            ]
        );
        let e = CheckOverrides::parse("typo=reject").unwrap_err();
        assert!(
            e.contains("unknown check \"typo\"") && e.contains("off_topic"),
            "{e}"
        );
        let e = CheckOverrides::parse("repetitive=maybe").unwrap_err();
        assert!(
            e.contains("unknown action \"maybe\"") && e.contains("flag"),
            "{e}"
        );
        assert!(CheckOverrides::parse("repetitive").is_err());
        assert!(CheckOverrides::parse(" , ").is_err());
    }

    #[test]
    fn a_catalog_section_replaces_only_what_it_names() {
        let over: QualityConfig = serde_json::from_value(serde_json::json!({
            "actions": {"off_topic": "reject"},
            "outcome_cues": {"Resolved": ["erledigt"]}
        }))
        .unwrap();
        let q = QualityConfig::builtin().merged(&over);
        assert_eq!(q.action(Check::OffTopic), Action::Reject);
        assert_eq!(q.action(Check::CopiedExample), Action::Reject);
        assert_eq!(q.outcome_cues["Resolved"], vec!["erledigt".to_string()]);
        assert!(!q.outcome_cues["Failed"].is_empty());
        let bad: Result<QualityConfig, _> =
            serde_json::from_value(serde_json::json!({"actions": {"typo": "flag"}}));
        assert!(bad.is_err());
    }

    #[test]
    fn a_reject_wins_and_flags_are_kept() {
        let turns = vec![ParsedTurn {
            utterance: "Hello [name], about the hotel".into(),
            intent: "greet".into(),
            assistant_response: "Sure".into(),
        }];
        let subject = Subject {
            turns: &turns,
            services: &["hotel".to_string()],
            resolution_status: "Resolved",
            base_conversation: "",
        };
        let v = evaluate(&subject, &QualityConfig::builtin());
        assert_eq!(v.reject.unwrap().check, Check::Placeholder);
        assert_eq!(v.flagged.len(), 1);
        assert_eq!(v.flagged[0].check, Check::OutcomeMismatch);
    }
}
