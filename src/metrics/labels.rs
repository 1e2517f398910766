//! The annotated mode's label figures, for `dgen status` and the report: of the stored
//! dialogues with an annotation, how many the label checks passed as grounded (every
//! non-categorical value said by then) and goal-realized (every goal slot's value in the final
//! state), and each label check's findings — accepted dialogues it flagged (read from their
//! quality records) and attempts it rejected (the run's counters).
//!
//! Imported dialogues carry frames but were never checked (`labels` is `None`): they count as
//! annotated, not as checked, and the shares are over the checked ones.
//!
//! Memory is a handful of counters.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::quality::{Check, QualityRecord};

#[derive(Debug, Default)]
pub struct LabelStats {
    annotated: u64,
    checked: u64,
    grounded: u64,
    goal_realized: u64,
    both: u64,
    flagged: [u64; Check::LABELS.len()],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelReport {
    /// Stored dialogues with an annotation, imported ones included.
    pub annotated: u64,
    /// Of those, the ones the label checks ran on (generated ones).
    pub checked: u64,
    /// Checked dialogues with every label grounded in the text.
    pub grounded: u64,
    /// `grounded / checked`, when any were checked.
    pub grounded_share: Option<f64>,
    /// Checked dialogues whose final state holds every goal slot's value.
    pub goal_realized: u64,
    pub goal_realized_share: Option<f64>,
    /// Checked dialogues both grounded and goal-realized.
    pub grounded_and_realized: u64,
    pub grounded_and_realized_share: Option<f64>,
    /// Per label check, in [`Check::LABELS`] order.
    pub checks: Vec<LabelCheckCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelCheckCount {
    pub check: &'static str,
    /// Stored dialogues flagged by it.
    pub flagged: u64,
    /// Attempts it rejected (each may have been retried).
    pub rejected: u64,
}

impl LabelStats {
    pub fn add(&mut self, quality: &QualityRecord) {
        let Some(annotation) = &quality.annotation else {
            return;
        };
        self.annotated += 1;
        for finding in &quality.checks {
            if let Some(i) = Check::LABELS.iter().position(|c| *c == finding.check) {
                self.flagged[i] += 1;
            }
        }
        let Some(labels) = annotation.labels else {
            return;
        };
        self.checked += 1;
        self.grounded += u64::from(labels.grounded);
        self.goal_realized += u64::from(labels.goal_realized);
        self.both += u64::from(labels.grounded && labels.goal_realized);
    }

    /// The report, with the rejections of each label check from `rejections` (attempts by
    /// reason); `None` when nothing is annotated and `annotated_plan` is false, so a plain
    /// store's status is what it was.
    pub fn report(
        &self,
        rejections: &BTreeMap<String, u64>,
        annotated_plan: bool,
    ) -> Option<LabelReport> {
        if self.annotated == 0 && !annotated_plan {
            return None;
        }
        let share = |n: u64| (self.checked > 0).then(|| n as f64 / self.checked as f64);
        let checks = Check::LABELS
            .iter()
            .zip(self.flagged)
            .map(|(c, flagged)| LabelCheckCount {
                check: c.name(),
                flagged,
                rejected: rejections.get(c.name()).copied().unwrap_or(0),
            })
            .collect();
        Some(LabelReport {
            annotated: self.annotated,
            checked: self.checked,
            grounded: self.grounded,
            grounded_share: share(self.grounded),
            goal_realized: self.goal_realized,
            goal_realized_share: share(self.goal_realized),
            grounded_and_realized: self.both,
            grounded_and_realized_share: share(self.both),
            checks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotation::{Annotation, LabelSummary};
    use crate::quality::Finding;

    fn record(labels: Option<(bool, bool)>, flags: &[Check]) -> QualityRecord {
        QualityRecord {
            checks: flags
                .iter()
                .map(|c| Finding {
                    check: *c,
                    detail: "d".into(),
                })
                .collect(),
            judge: None,
            annotation: Some(Box::new(Annotation {
                labels: labels.map(|(grounded, goal_realized)| LabelSummary {
                    grounded,
                    goal_realized,
                }),
                ..Annotation::default()
            })),
        }
    }

    #[test]
    fn shares_are_over_checked_dialogues_and_findings_are_counted_per_label_check() {
        let mut s = LabelStats::default();
        s.add(&record(Some((true, true)), &[]));
        s.add(&record(Some((true, false)), &[Check::GoalUnrealized]));
        s.add(&record(
            Some((false, false)),
            &[Check::Ungrounded, Check::GoalUnrealized, Check::Repetitive],
        ));
        s.add(&record(Some((false, true)), &[Check::Ungrounded]));
        // Imported: annotated, never checked.
        s.add(&record(None, &[]));
        // Plain: not counted at all.
        s.add(&QualityRecord::default());
        let rejections = BTreeMap::from([
            ("dropped_slot".to_string(), 3),
            ("repetitive".to_string(), 7),
        ]);
        let r = s.report(&rejections, true).unwrap();
        assert_eq!((r.annotated, r.checked), (5, 4));
        assert_eq!((r.grounded, r.grounded_share), (2, Some(0.5)));
        assert_eq!((r.goal_realized, r.goal_realized_share), (2, Some(0.5)));
        assert_eq!(
            (r.grounded_and_realized, r.grounded_and_realized_share),
            (1, Some(0.25))
        );
        let by: BTreeMap<&str, (u64, u64)> = r
            .checks
            .iter()
            .map(|c| (c.check, (c.flagged, c.rejected)))
            .collect();
        assert_eq!(
            by.len(),
            Check::LABELS.len(),
            "every label check, text ones not"
        );
        assert_eq!(by["ungrounded"], (2, 0));
        assert_eq!(by["goal_unrealized"], (2, 0));
        assert_eq!(by["dropped_slot"], (0, 3));
        assert_eq!(by["invalid_call"], (0, 0));
    }

    #[test]
    fn a_plain_store_has_no_label_report_and_an_annotated_plan_before_its_run_has_one() {
        let mut s = LabelStats::default();
        s.add(&QualityRecord::default());
        assert_eq!(s.report(&BTreeMap::new(), false), None);
        let r = s.report(&BTreeMap::new(), true).unwrap();
        assert_eq!((r.annotated, r.checked, r.grounded_share), (0, 0, None));
    }
}
