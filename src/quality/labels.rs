//! The annotated mode's label checks: every label of a dialogue against the schema, the text and
//! the planned goal. Pure functions, like the text checks; each finding names the turn, the
//! service and the slot, so a reader can find it.
//!
//! - `unknown_label`: a service, intent or slot the schema does not have.
//! - `categorical_value`: a categorical slot's value outside its possible values.
//! - `ungrounded`: a non-categorical value in a state or call said nowhere in the dialogue so far.
//! - `dropped_slot`: a service's state loses a slot it held, though nobody changed it.
//! - `goal_unrealized`: a goal value missing from its service's final state, or a goal slot never
//!   asked about.
//! - `invalid_call`: a call with arguments its intent does not take, a required one missing, a
//!   value other than the state's, or results holding other than the intent's result slots.
//! - `outcome_calls`: the calls contradict the planned outcome (Resolved needs a call of the
//!   primary goal's intent that returns results, Failed none that does, Escalated none that does
//!   and a handover).

use std::collections::BTreeMap;

use super::{Check, Finding, QualityConfig, Verdict};
use crate::annotation::{mentions, same_value, Annotation, LabelSummary, State, UserGoal};
use crate::parse::annotated::NO_INTENT;
use crate::parse::ParsedTurn;
use crate::schema::{Schema, Service};

/// The value SGD uses for "any value is fine"; never looked for in the text.
const DONTCARE: &str = "dontcare";

/// What the label checks look at.
pub struct LabelSubject<'a> {
    pub turns: &'a [ParsedTurn],
    pub annotation: &'a Annotation,
    pub goals: &'a [UserGoal],
    pub schema: &'a Schema,
    pub resolution_status: &'a str,
}

/// Runs every label check that is not off, in [`Check::LABELS`] order, and summarises whether
/// the labels are grounded and the goal realized (whatever the checks' actions).
pub fn evaluate(subject: &LabelSubject<'_>, config: &QualityConfig) -> (Verdict, LabelSummary) {
    let mut verdict = Verdict::default();
    let mut summary = LabelSummary::default();
    for check in Check::LABELS {
        let detail = run(check, subject);
        match check {
            Check::Ungrounded => summary.grounded = detail.is_none(),
            Check::GoalUnrealized => summary.goal_realized = detail.is_none(),
            _ => {}
        }
        let (Some(detail), action) = (detail, config.action(check)) else {
            continue;
        };
        verdict.add(Finding { check, detail }, action);
    }
    (verdict, summary)
}

fn run(check: Check, s: &LabelSubject<'_>) -> Option<String> {
    match check {
        Check::UnknownLabel => unknown_label(s),
        Check::CategoricalValue => categorical_value(s),
        Check::Ungrounded => ungrounded(s),
        Check::DroppedSlot => dropped_slot(s),
        Check::GoalUnrealized => goal_unrealized(s),
        Check::InvalidCall => invalid_call(s),
        Check::OutcomeCalls => outcome_calls(s),
        _ => None,
    }
}

/// Every value of a state as (slot, value).
fn values(state: &State) -> impl Iterator<Item = (&str, &str)> {
    state
        .slot_values
        .iter()
        .flat_map(|(slot, vs)| vs.iter().map(move |v| (slot.as_str(), v.as_str())))
}

fn unknown_label(s: &LabelSubject<'_>) -> Option<String> {
    for (t, turn) in s.annotation.turns.iter().enumerate() {
        let n = t + 1;
        for frame in turn.user.iter().chain(&turn.assistant) {
            let Some(service) = s.schema.service(&frame.service) else {
                return Some(format!(
                    "turn {n}: service \"{}\" is not in the schema",
                    frame.service
                ));
            };
            let slot_known = |slot: &str| service.slot(slot).is_some();
            if let Some(state) = &frame.state {
                if state.active_intent != NO_INTENT
                    && service.intent(&state.active_intent).is_none()
                {
                    return Some(format!(
                        "turn {n}: intent \"{}\" is not an intent of {}",
                        state.active_intent, frame.service
                    ));
                }
                let named = state.slot_values.keys().chain(&state.requested_slots);
                if let Some(slot) = named.into_iter().find(|slot| !slot_known(slot)) {
                    return Some(format!(
                        "turn {n}: slot \"{slot}\" is not a slot of {}",
                        frame.service
                    ));
                }
            }
            if let Some(call) = &frame.service_call {
                if service.intent(&call.method).is_none() {
                    return Some(format!(
                        "turn {n}: the call's method \"{}\" is not an intent of {}",
                        call.method, frame.service
                    ));
                }
                let results = frame
                    .service_results
                    .iter()
                    .flatten()
                    .flat_map(|r| r.keys());
                if let Some(slot) = call
                    .parameters
                    .keys()
                    .chain(results)
                    .find(|slot| !slot_known(slot))
                {
                    return Some(format!(
                        "turn {n}: the call names slot \"{slot}\", which is not a slot of {}",
                        frame.service
                    ));
                }
            }
        }
    }
    None
}

/// Whether `value` is one of a categorical slot's possible values (letter case aside); true for
/// non-categorical and unknown slots.
fn allowed(service: Option<&Service>, slot: &str, value: &str) -> bool {
    match service.and_then(|s| s.slot(slot)) {
        Some(slot) if slot.is_categorical && !slot.possible_values.is_empty() => {
            same_value(value, DONTCARE) || slot.possible_values.iter().any(|p| same_value(p, value))
        }
        _ => true,
    }
}

fn categorical_value(s: &LabelSubject<'_>) -> Option<String> {
    for (t, turn) in s.annotation.turns.iter().enumerate() {
        for frame in turn.user.iter().chain(&turn.assistant) {
            let service = s.schema.service(&frame.service);
            let state = frame.state.iter().flat_map(values);
            let call = frame
                .service_call
                .iter()
                .flat_map(|c| c.parameters.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            for (slot, value) in state.chain(call) {
                if !allowed(service, slot, value) {
                    return Some(format!(
                        "turn {}: {slot} = \"{value}\" is not one of its possible values",
                        t + 1
                    ));
                }
            }
        }
    }
    None
}

fn categorical(schema: &Schema, service: &str, slot: &str) -> bool {
    schema
        .service(service)
        .and_then(|s| s.slot(slot))
        .is_some_and(|s| s.is_categorical)
}

fn ungrounded(s: &LabelSubject<'_>) -> Option<String> {
    let mut said = String::new();
    for (t, (turn, text)) in s.annotation.turns.iter().zip(s.turns).enumerate() {
        said.push_str(&text.utterance);
        said.push('\n');
        for frame in &turn.user {
            for (slot, value) in frame.state.iter().flat_map(values) {
                if !categorical(s.schema, &frame.service, slot)
                    && !same_value(value, DONTCARE)
                    && !mentions(&said, value)
                {
                    return Some(format!(
                        "turn {}: {slot} = \"{value}\" in the state was not said in the dialogue",
                        t + 1
                    ));
                }
            }
        }
        said.push_str(&text.assistant_response);
        said.push('\n');
        for frame in &turn.assistant {
            let Some(call) = &frame.service_call else {
                continue;
            };
            for (slot, value) in &call.parameters {
                if !categorical(s.schema, &frame.service, slot)
                    && !same_value(value, DONTCARE)
                    && !mentions(&said, value)
                {
                    return Some(format!(
                        "turn {}: the call's {slot} = \"{value}\" was not said in the dialogue",
                        t + 1
                    ));
                }
            }
        }
    }
    None
}

fn dropped_slot(s: &LabelSubject<'_>) -> Option<String> {
    let mut last: BTreeMap<&str, &State> = BTreeMap::new();
    for (t, turn) in s.annotation.turns.iter().enumerate() {
        for frame in &turn.user {
            let Some(state) = &frame.state else { continue };
            if let Some(before) = last.get(frame.service.as_str()) {
                if let Some(slot) = before
                    .slot_values
                    .keys()
                    .find(|slot| !state.slot_values.contains_key(*slot))
                {
                    return Some(format!(
                        "turn {}: {}'s state dropped {slot}, which it held in an earlier turn",
                        t + 1,
                        frame.service
                    ));
                }
            }
            last.insert(&frame.service, state);
        }
    }
    None
}

/// Each service's last user state.
fn final_states(a: &Annotation) -> BTreeMap<&str, &State> {
    let mut out = BTreeMap::new();
    for frame in a.turns.iter().flat_map(|t| &t.user) {
        if let Some(state) = &frame.state {
            out.insert(frame.service.as_str(), state);
        }
    }
    out
}

fn goal_unrealized(s: &LabelSubject<'_>) -> Option<String> {
    let finals = final_states(s.annotation);
    for goal in s.goals {
        let state = finals.get(goal.service.as_str());
        for (slot, value) in &goal.inform {
            let held = state
                .and_then(|st| st.slot_values.get(slot))
                .is_some_and(|vs| vs.iter().any(|v| same_value(v, value)));
            if !held {
                return Some(format!(
                    "{}: the goal's {slot} = \"{value}\" is not in the final state",
                    goal.service
                ));
            }
        }
        for slot in &goal.request {
            let asked = s.annotation.turns.iter().flat_map(|t| &t.user).any(|f| {
                f.service == goal.service
                    && f.state
                        .as_ref()
                        .is_some_and(|st| st.requested_slots.contains(slot))
            });
            if !asked {
                return Some(format!(
                    "{}: the goal's request for {slot} was never made",
                    goal.service
                ));
            }
        }
    }
    None
}

fn invalid_call(s: &LabelSubject<'_>) -> Option<String> {
    let mut state: BTreeMap<&str, &State> = BTreeMap::new();
    for (t, turn) in s.annotation.turns.iter().enumerate() {
        let n = t + 1;
        for frame in &turn.user {
            if let Some(st) = &frame.state {
                state.insert(&frame.service, st);
            }
        }
        for frame in &turn.assistant {
            let Some(call) = &frame.service_call else {
                continue;
            };
            // An unknown service or method is `unknown_label`'s finding.
            let Some(intent) = s
                .schema
                .service(&frame.service)
                .and_then(|sv| sv.intent(&call.method))
            else {
                continue;
            };
            let method = &call.method;
            if let Some(slot) = call.parameters.keys().find(|k| !intent.takes(k)) {
                return Some(format!("turn {n}: {method} does not take {slot}"));
            }
            if let Some(slot) = intent
                .required_slots
                .iter()
                .find(|r| !call.parameters.contains_key(*r))
            {
                return Some(format!(
                    "turn {n}: {method} is called without its required {slot}"
                ));
            }
            let current = state.get(frame.service.as_str());
            for (slot, value) in &call.parameters {
                let in_state = current
                    .and_then(|st| st.slot_values.get(slot))
                    .is_some_and(|vs| vs.iter().any(|v| same_value(v, value)));
                if !in_state {
                    return Some(format!(
                        "turn {n}: {method} is called with {slot} = \"{value}\", which is not the state's value"
                    ));
                }
            }
            let results = frame
                .service_results
                .iter()
                .flatten()
                .flat_map(|r| r.keys());
            let allowed = |slot: &str| {
                intent.result_slots.is_empty() || intent.result_slots.iter().any(|r| r == slot)
            };
            if let Some(slot) = results.into_iter().find(|k| !allowed(k)) {
                return Some(format!("turn {n}: {method}'s results hold {slot}, which is not one of its result slots"));
            }
        }
    }
    None
}

fn outcome_calls(s: &LabelSubject<'_>) -> Option<String> {
    let goal = s.goals.first()?;
    let calls = s
        .annotation
        .turns
        .iter()
        .flat_map(|t| &t.assistant)
        .filter(|f| {
            f.service == goal.service
                && f.service_call
                    .as_ref()
                    .is_some_and(|c| c.method == goal.intent)
        });
    let succeeded = calls
        .clone()
        .any(|f| f.service_results.as_ref().is_some_and(|r| !r.is_empty()));
    let called = calls.count() > 0;
    let handover = s.annotation.turns.iter().any(|t| t.handover);
    let intent = &goal.intent;
    match s.resolution_status {
        "Resolved" if !succeeded && called => Some(format!(
            "Resolved, but every call of {intent} returned no result"
        )),
        "Resolved" if !succeeded => Some(format!("Resolved, but {intent} is never called")),
        "Failed" if succeeded => Some(format!("Failed, but a call of {intent} returned a result")),
        "Escalated" if succeeded => Some(format!(
            "Escalated, but a call of {intent} returned a result"
        )),
        "Escalated" if !handover => Some("Escalated, but no turn hands the case over".to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::annotated::parse_annotated;
    use crate::quality::Action;

    /// A labelled answer as the model gives it, right in every label (shared with
    /// tests/annotated_export.rs); each test plants one fault in it by text replacement.
    const ANSWER: &str = include_str!("../../fixtures/annotated_answer.json");

    fn goal() -> Vec<UserGoal> {
        vec![UserGoal {
            service: "hotel".into(),
            intent: "book_hotel".into(),
            inform: vec![
                ("hotel-name".into(), "Maple Lodge".into()),
                ("hotel-bookstay".into(), "3".into()),
            ],
            request: vec!["hotel-phone".into()],
        }]
    }

    fn findings(answer: &str, status: &str) -> (Vec<(Check, String)>, LabelSummary) {
        let schema = Schema::builtin();
        let (turns, annotation) = parse_annotated(answer, 1, 9, "hotel", &schema).unwrap();
        let goals = goal();
        let subject = LabelSubject {
            turns: &turns,
            annotation: &annotation,
            goals: &goals,
            schema: &schema,
            resolution_status: status,
        };
        let mut config = QualityConfig::builtin();
        for check in Check::LABELS {
            config.actions.insert(check, Action::Flag);
        }
        let (verdict, summary) = evaluate(&subject, &config);
        let found = verdict
            .flagged
            .into_iter()
            .map(|f| (f.check, f.detail))
            .collect();
        (found, summary)
    }

    #[test]
    fn a_consistent_dialogue_passes_every_label_check() {
        let (found, summary) = findings(ANSWER, "Resolved");
        assert!(found.is_empty(), "{found:?}");
        assert!(summary.grounded && summary.goal_realized);
    }

    #[test]
    fn each_fault_is_caught_by_its_check() {
        let cases = [
            (ANSWER.replace("\"requested_slots\": [\"hotel-phone\"]", "\"requested_slots\": [\"hotel-wifi\"]"), Check::UnknownLabel, "hotel-wifi"),
            (ANSWER.replace("\"value\": \"2\"}", "\"value\": \"twelve\"}"), Check::CategoricalValue, "twelve"),
            (ANSWER.replacen("Please book Maple Lodge", "Please book it", 1), Check::Ungrounded, "Maple Lodge"),
            (ANSWER.replace("{\"slot\": \"hotel-bookday\", \"value\": \"friday\"},\n                                    {\"slot\": \"hotel-bookstay\"", "{\"slot\": \"hotel-bookstay\""), Check::DroppedSlot, "hotel-bookday"),
            (ANSWER.replace("{\"slot\": \"hotel-bookstay\", \"value\": \"3\"}]}", "{\"slot\": \"hotel-bookstay\", \"value\": \"4\"}]}"), Check::InvalidCall, "hotel-bookstay"),
            (ANSWER.replace("[[{\"slot\": \"hotel-ref\", \"value\": \"7GAWK\"}, {\"slot\": \"hotel-phone\", \"value\": \"01223 555\"}]]", "[]"), Check::OutcomeCalls, "no result"),
        ];
        for (answer, check, word) in cases {
            assert_ne!(answer, ANSWER, "{check}: the fault was not planted");
            let (found, _) = findings(&answer, "Resolved");
            let hit = found.iter().find(|(c, _)| *c == check);
            assert!(
                hit.is_some_and(|(_, d)| d.contains(word)),
                "{check}: {found:?}"
            );
        }
        let (found, summary) = findings(
            &ANSWER
                .replacen("Three nights", "Four nights", 1)
                .replace("\"value\": \"3\"", "\"value\": \"4\""),
            "Resolved",
        );
        assert!(
            found
                .iter()
                .any(|(c, d)| *c == Check::GoalUnrealized && d.contains("hotel-bookstay")),
            "{found:?}"
        );
        assert!(!summary.goal_realized && summary.grounded);
        let (found, _) = findings(ANSWER, "Escalated");
        assert!(found.iter().any(|(c, _)| *c == Check::OutcomeCalls));
    }
}
