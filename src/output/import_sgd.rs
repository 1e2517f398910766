//! `dgen import` of Schema-Guided Dialogue (SGD) and MultiWOZ 2.2 dialogue files: a dialogue
//! whose turns carry a `speaker` becomes a dgen record (a user turn and the system turn after it
//! make one [`ParsedTurn`]) with an [`Annotation`] holding every turn's frames as given.
//!
//! What does not fit is refused per dialogue, with its reason, and the rest is imported: turns
//! that do not alternate USER, SYSTEM starting with USER, a dialogue that ends on a USER turn (a
//! dgen turn is a user utterance and its reply), an empty utterance, a frame or span that is not
//! SGD's shape. MultiWOZ 2.2's spans without offsets (`copy_from`: a value copied from another
//! slot) and spans' `value` (it is the text at the offsets) are not kept.

use serde_json::Value;

use crate::annotation::{Annotation, Frame, TurnFrames};
use crate::llm::Usage;
use crate::parse::ParsedTurn;
use crate::record::GeneratedDialogue;

/// Whether `v` is a dialogue in SGD's (or MultiWOZ 2.2's) layout: its first turn names a
/// speaker. dgen's own records and the original script's have no speakers.
pub fn is_sgd(v: &Value) -> bool {
    v["turns"][0]["speaker"].is_string()
}

/// The record and its annotation, or why the dialogue cannot be imported.
pub fn dialogue(v: &Value) -> Result<(GeneratedDialogue, Annotation), String> {
    let dialogue_id = v["dialogue_id"]
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .ok_or("it has no dialogue_id")?
        .to_string();
    let turns = v["turns"].as_array().ok_or("it has no turns")?;
    let mut parsed = Vec::with_capacity(turns.len() / 2);
    let mut frames = Vec::with_capacity(turns.len() / 2);
    for (i, pair) in turns.chunks(2).enumerate() {
        let user = turn(&pair[0], 2 * i, "USER")?;
        let Some(system) = pair.get(1) else {
            return Err(format!(
                "it ends on a USER turn (turn {}) with no SYSTEM reply; dgen keeps a user utterance with its reply, so drop the last turn to import it",
                2 * i
            ));
        };
        let system = turn(system, 2 * i + 1, "SYSTEM")?;
        let intent = user
            .1
            .iter()
            .filter_map(|f| f.state.as_ref())
            .map(|s| s.active_intent.as_str())
            .find(|intent| *intent != "NONE" && !intent.is_empty())
            .unwrap_or("NONE")
            .to_string();
        parsed.push(ParsedTurn {
            utterance: user.0,
            intent,
            assistant_response: system.0,
        });
        frames.push(TurnFrames {
            user: user.1,
            assistant: system.1,
            handover: false,
        });
    }
    let mut services = crate::dataset::rows::strings(&v["services"]);
    if services.is_empty() {
        for f in frames
            .iter()
            .flat_map(|t| t.user.iter().chain(&t.assistant))
        {
            if !services.contains(&f.service) {
                services.push(f.service.clone());
            }
        }
    }
    let record = GeneratedDialogue {
        item_index: None,
        attempt: 0,
        dialogue_id,
        services,
        turns: parsed,
        user_emotion: String::new(),
        assistant_emotion: String::new(),
        scenario_category: String::new(),
        generated_scenario: String::new(),
        time_slot: (0, 0, String::new()),
        regions: Vec::new(),
        resolution_status: String::new(),
        persona: String::new(),
        specific_time: String::new(),
        base_dialogue_id: String::new(),
        model: String::new(),
        temperature: 0.0,
        top_p: 0.0,
        frequency_penalty: 0.0,
        presence_penalty: 0.0,
        seed: 0,
        usage: Usage::default(),
        hash: [0; 32],
    };
    let annotation = Annotation {
        goals: Vec::new(),
        turns: frames,
        labels: None,
        simulated_results: false,
    };
    Ok((record, annotation))
}

/// One turn's utterance and frames, checked to be `speaker`'s.
fn turn(t: &Value, index: usize, speaker: &str) -> Result<(String, Vec<Frame>), String> {
    let said = t["speaker"].as_str().unwrap_or_default();
    if said != speaker {
        return Err(format!(
            "turn {index} is spoken by {} where a {speaker} turn belongs; the turns must alternate USER, SYSTEM, starting with USER",
            t["speaker"]
        ));
    }
    let utterance = t["utterance"]
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("turn {index} has no utterance"))?
        .to_string();
    let length = utterance.chars().count();
    let mut frames = Vec::new();
    for (k, raw) in t["frames"].as_array().into_iter().flatten().enumerate() {
        let mut raw = raw.clone();
        // Only spans with offsets are kept, as SGD's three fields.
        if let Some(slots) = raw.get_mut("slots").and_then(Value::as_array_mut) {
            let kept: Vec<Value> = slots
                .iter()
                .filter(|s| s["start"].is_u64() && s["exclusive_end"].is_u64())
                .map(|s| {
                    serde_json::json!({
                        "slot": s["slot"],
                        "start": s["start"],
                        "exclusive_end": s["exclusive_end"],
                    })
                })
                .collect();
            *slots = kept;
        }
        let frame: Frame = serde_json::from_value(raw).map_err(|e| {
            format!("turn {index} frame {k} is not an SGD frame ({e}); fix or remove it")
        })?;
        if speaker == "USER" && frame.state.is_none() {
            return Err(format!(
                "turn {index} frame {k} (service {}) is a USER frame without a state",
                frame.service
            ));
        }
        if let Some(span) = frame
            .slots
            .iter()
            .find(|s| s.start > s.exclusive_end || s.exclusive_end > length)
        {
            return Err(format!(
                "turn {index} frame {k}: the span of slot {} ({}..{}) lies outside the utterance of {length} characters",
                span.slot, span.start, span.exclusive_end
            ));
        }
        frames.push(frame);
    }
    Ok((utterance, frames))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sgd(turns: Value) -> Value {
        json!({"dialogue_id": "1_00001", "services": ["Hotels_1"], "turns": turns})
    }

    fn user(text: &str) -> Value {
        json!({"speaker": "USER", "utterance": text, "frames": [{
            "service": "Hotels_1", "slots": [{"slot": "location", "start": 0, "exclusive_end": 5,
            "copy_from": "x"}, {"slot": "area", "copy_from": "taxi-area", "value": "north"}],
            "actions": [], "state": {"active_intent": "SearchHotel", "requested_slots": [],
            "slot_values": {"location": ["Paris"]}}}]})
    }

    fn system(text: &str) -> Value {
        json!({"speaker": "SYSTEM", "utterance": text, "frames": []})
    }

    #[test]
    fn turns_pair_up_and_spans_without_offsets_are_dropped() {
        let (record, annotation) =
            dialogue(&sgd(json!([user("Paris, please"), system("Sure.")]))).unwrap();
        assert_eq!(record.turns[0].intent, "SearchHotel");
        assert_eq!(record.turns[0].assistant_response, "Sure.");
        assert_eq!(annotation.turns[0].user[0].slots.len(), 1);
        assert!(annotation.labels.is_none() && !annotation.simulated_results);
    }

    #[test]
    fn dialogues_that_do_not_alternate_or_end_on_the_user_are_refused_with_the_turn() {
        let odd = dialogue(&sgd(json!([user("Paris"), system("Ok."), user("Bye now")])));
        assert!(odd.unwrap_err().contains("ends on a USER turn (turn 2)"));
        let twice = dialogue(&sgd(json!([user("Paris"), user("Paris")])));
        assert!(twice.unwrap_err().contains("turn 1 is spoken by \"USER\""));
        let long = dialogue(&sgd(json!([user("Pa"), system("Ok.")])));
        assert!(long.unwrap_err().contains("lies outside the utterance"));
    }
}
