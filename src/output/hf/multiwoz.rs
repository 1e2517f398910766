//! The `turns` column of an annotated store's dataset in the feature layout of Hugging Face's
//! `multi_woz_v22` (MultiWOZ 2.2), so code written for that dataset reads it unchanged:
//! a struct of lists `{turn_id, speaker, utterance, frames, dialogue_acts}` with one entry per
//! utterance (each dgen turn is a USER utterance, then a SYSTEM one), `speaker` 0 = USER,
//! 1 = SYSTEM (a class label in the card), and per utterance the frames (`service`, `state`
//! with `active_intent`, `requested_slots` and `slots_values`, and the value spans in `slots`)
//! and the dialogue acts.
//!
//! What the layout has no place for stays in other columns or in `dgen export --sgd`: the
//! assistant's service calls and results, and the user goals (the `goals` column).
//! Spans are written as named — `start` before `exclusive_end` — although the Hub's own
//! `multi_woz_v22` loader swaps the two.
//!
//! Built bottom-up from plain rows at the end of each record batch: nested list-of-struct
//! builders are much harder to read than offsets and child arrays.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, Int64Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, ListArray, StringArray, StructArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields};

use crate::annotation::{Annotation, Frame, UserGoal};
use crate::parse::ParsedTurn;

/// Field metadata marking a list of int64 as a `datasets` class label, for the card's features.
pub const CLASS_LABEL: &str = "class_label";
/// The names of `speaker`'s classes, in their order.
pub const SPEAKERS: [&str; 2] = ["USER", "SYSTEM"];

fn item(data_type: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", data_type, true))
}

fn list(data_type: DataType) -> DataType {
    DataType::List(item(data_type))
}

fn strings() -> DataType {
    list(DataType::Utf8)
}

fn string_lists() -> DataType {
    list(strings())
}

fn fields(names: &[(&str, DataType)]) -> Fields {
    names
        .iter()
        .map(|(n, t)| Field::new(*n, t.clone(), false))
        .collect()
}

fn slots_values_fields() -> Fields {
    fields(&[
        ("slots_values_name", strings()),
        ("slots_values_list", string_lists()),
    ])
}

fn state_fields() -> Fields {
    fields(&[
        ("active_intent", DataType::Utf8),
        ("requested_slots", strings()),
        ("slots_values", DataType::Struct(slots_values_fields())),
    ])
}

fn slots_fields() -> Fields {
    fields(&[
        ("slot", strings()),
        ("value", strings()),
        ("start", list(DataType::Int32)),
        ("exclusive_end", list(DataType::Int32)),
        ("copy_from", strings()),
        ("copy_from_value", string_lists()),
    ])
}

fn frames_fields() -> Fields {
    fields(&[
        ("service", strings()),
        ("state", list(DataType::Struct(state_fields()))),
        ("slots", list(DataType::Struct(slots_fields()))),
    ])
}

fn act_slots_fields() -> Fields {
    fields(&[("slot_name", strings()), ("slot_value", strings())])
}

fn dialog_act_fields() -> Fields {
    fields(&[
        ("act_type", strings()),
        ("act_slots", list(DataType::Struct(act_slots_fields()))),
    ])
}

fn span_info_fields() -> Fields {
    fields(&[
        ("act_type", strings()),
        ("act_slot_name", strings()),
        ("act_slot_value", strings()),
        ("span_start", list(DataType::Int32)),
        ("span_end", list(DataType::Int32)),
    ])
}

fn dialogue_acts_fields() -> Fields {
    fields(&[
        ("dialog_act", DataType::Struct(dialog_act_fields())),
        ("span_info", DataType::Struct(span_info_fields())),
    ])
}

fn speaker_field() -> Field {
    let label =
        Field::new("item", DataType::Int64, true).with_metadata(std::collections::HashMap::from([
            (CLASS_LABEL.to_string(), SPEAKERS.join(",")),
        ]));
    Field::new("speaker", DataType::List(Arc::new(label)), false)
}

fn turns_fields() -> Fields {
    Fields::from(vec![
        Field::new("turn_id", strings(), false),
        speaker_field(),
        Field::new("utterance", strings(), false),
        Field::new("frames", list(DataType::Struct(frames_fields())), false),
        Field::new(
            "dialogue_acts",
            list(DataType::Struct(dialogue_acts_fields())),
            false,
        ),
    ])
}

/// The type of the `turns` column.
pub fn turns_type() -> DataType {
    DataType::Struct(turns_fields())
}

fn goal_fields() -> Fields {
    fields(&[
        ("service", DataType::Utf8),
        ("intent", DataType::Utf8),
        ("inform_slots", strings()),
        ("inform_values", strings()),
        ("request_slots", strings()),
    ])
}

/// The type of the `goals` column: the user goals the dialogue was planned with.
pub fn goals_type() -> DataType {
    list(DataType::Struct(goal_fields()))
}

/// One frame as the layout has it.
#[derive(Debug, Default, Clone, PartialEq)]
struct FrameRow {
    service: String,
    active_intent: String,
    requested_slots: Vec<String>,
    names: Vec<String>,
    values: Vec<Vec<String>>,
    slot: Vec<String>,
    value: Vec<String>,
    start: Vec<i32>,
    end: Vec<i32>,
}

/// The acts of one utterance, grouped by act type as MultiWOZ groups them.
#[derive(Debug, Default, Clone, PartialEq)]
struct Acts {
    /// (act type, [(slot, value)]), in first-appearance order.
    acts: Vec<(String, Vec<(String, String)>)>,
    /// (act type, slot, value, start, end)
    spans: Vec<(String, String, String, i32, i32)>,
}

#[derive(Debug, Clone, PartialEq)]
struct Utterance {
    text: String,
    speaker: i64,
    frames: Vec<FrameRow>,
    acts: Acts,
}

/// One dialogue's rows of the `turns` and `goals` columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Dialogue {
    utterances: Vec<Utterance>,
    goals: Vec<UserGoal>,
}

fn clamp(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// MultiWOZ's domain in act types: `hotel` → `Hotel`.
fn domain(service: &str) -> String {
    let mut chars = service.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().chain(chars).collect::<String>()
    })
}

/// MultiWOZ's acts name slots without their domain: `hotel-area` → `area`.
fn bare(service: &str, slot: &str) -> String {
    slot.strip_prefix(service)
        .and_then(|s| s.strip_prefix('-'))
        .unwrap_or(slot)
        .to_string()
}

/// `INFORM` → `Inform`, `REQUEST_ALTS` → `Request_alts`.
fn act_name(act: &str) -> String {
    domain(&act.to_lowercase())
}

fn frame_row(text: &str, f: &Frame) -> FrameRow {
    let chars: Vec<char> = text.chars().collect();
    let mut row = FrameRow {
        service: f.service.clone(),
        ..FrameRow::default()
    };
    if let Some(state) = &f.state {
        row.active_intent = state.active_intent.clone();
        row.requested_slots = state.requested_slots.clone();
        for (name, values) in &state.slot_values {
            row.names.push(name.clone());
            row.values.push(values.clone());
        }
    }
    for span in &f.slots {
        let said: String = chars
            .get(span.start..span.exclusive_end)
            .map_or_else(String::new, |c| c.iter().collect());
        row.slot.push(span.slot.clone());
        row.value.push(said);
        row.start.push(clamp(span.start));
        row.end.push(clamp(span.exclusive_end));
    }
    row
}

/// The acts of `frames`: SGD-style acts as MultiWOZ writes them (`Hotel-Inform` with `area`
/// = `east`, `Hotel-Request` with `phone` = `?`); the intent, which MultiWOZ's acts do not
/// carry, is left to the state. Each span of an informed slot is a `span_info` entry.
fn acts(text: &str, frames: &[Frame]) -> Acts {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Acts::default();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for f in frames {
        for a in &f.actions {
            if a.act == "INFORM_INTENT" {
                continue;
            }
            let act_type = format!("{}-{}", domain(&f.service), act_name(&a.act));
            let i = *index.entry(act_type.clone()).or_insert_with(|| {
                out.acts.push((act_type.clone(), Vec::new()));
                out.acts.len() - 1
            });
            let slot = bare(&f.service, &a.slot);
            if a.values.is_empty() {
                out.acts[i].1.push((slot.clone(), "?".into()));
            }
            for v in &a.values {
                out.acts[i].1.push((slot.clone(), v.clone()));
            }
        }
        for span in &f.slots {
            let said: String = chars
                .get(span.start..span.exclusive_end)
                .map_or_else(String::new, |c| c.iter().collect());
            out.spans.push((
                format!("{}-Inform", domain(&f.service)),
                bare(&f.service, &span.slot),
                said,
                clamp(span.start),
                clamp(span.exclusive_end),
            ));
        }
    }
    out
}

/// A dialogue's rows: its turns, with the annotation's frames where it has one (an imported
/// dialogue without frames has empty ones).
pub fn dialogue(turns: &[ParsedTurn], annotation: Option<&Annotation>) -> Dialogue {
    let mut utterances = Vec::with_capacity(2 * turns.len());
    for (i, t) in turns.iter().enumerate() {
        let frames = annotation.and_then(|a| a.turns.get(i));
        for (speaker, text, frames) in [
            (0, &t.utterance, frames.map(|f| &f.user[..])),
            (1, &t.assistant_response, frames.map(|f| &f.assistant[..])),
        ] {
            let frames = frames.unwrap_or_default();
            utterances.push(Utterance {
                text: text.clone(),
                speaker,
                frames: frames.iter().map(|f| frame_row(text, f)).collect(),
                acts: acts(text, frames),
            });
        }
    }
    Dialogue {
        utterances,
        goals: annotation.map(|a| a.goals.clone()).unwrap_or_default(),
    }
}

fn string_list<'a, I, S>(rows: I) -> ArrayRef
where
    I: IntoIterator<Item = &'a [S]>,
    S: AsRef<str> + 'a,
{
    let mut b = ListBuilder::new(StringBuilder::new()).with_field(item(DataType::Utf8));
    for row in rows {
        for s in row {
            b.values().append_value(s.as_ref());
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn string_list_list<'a>(rows: impl IntoIterator<Item = &'a [Vec<String>]>) -> ArrayRef {
    let inner = ListBuilder::new(StringBuilder::new()).with_field(item(DataType::Utf8));
    let mut b = ListBuilder::new(inner).with_field(item(strings()));
    for row in rows {
        for values in row {
            for v in values {
                b.values().values().append_value(v);
            }
            b.values().append(true);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn int32_list<'a>(rows: impl IntoIterator<Item = &'a [i32]>) -> ArrayRef {
    let mut b = ListBuilder::new(Int32Builder::new()).with_field(item(DataType::Int32));
    for row in rows {
        b.values().append_slice(row);
        b.append(true);
    }
    Arc::new(b.finish())
}

/// A list array of `values` cut into lists of `lengths`.
fn lists_of(values: ArrayRef, lengths: impl IntoIterator<Item = usize>) -> ArrayRef {
    let field = item(values.data_type().clone());
    Arc::new(ListArray::new(
        field,
        OffsetBuffer::from_lengths(lengths),
        values,
        None,
    ))
}

fn structs(fields: Fields, arrays: Vec<ArrayRef>) -> ArrayRef {
    Arc::new(StructArray::new(fields, arrays, None))
}

/// Empty lists for rows that have no value there (a frame with no state has an empty one,
/// as the Hub's loader writes a SYSTEM turn's).
fn frames_array(utterances: &[&Utterance]) -> ArrayRef {
    let frames: Vec<&FrameRow> = utterances.iter().flat_map(|u| &u.frames).collect();
    let state = structs(
        state_fields(),
        vec![
            Arc::new(StringArray::from_iter_values(
                frames.iter().map(|f| f.active_intent.as_str()),
            )),
            string_list(frames.iter().map(|f| &f.requested_slots[..])),
            structs(
                slots_values_fields(),
                vec![
                    string_list(frames.iter().map(|f| &f.names[..])),
                    string_list_list(frames.iter().map(|f| &f.values[..])),
                ],
            ),
        ],
    );
    let no_copy: Vec<Vec<String>> = frames
        .iter()
        .map(|f| vec![String::new(); f.slot.len()])
        .collect();
    let no_copy_values: Vec<Vec<Vec<String>>> = frames
        .iter()
        .map(|f| vec![Vec::new(); f.slot.len()])
        .collect();
    let slots = structs(
        slots_fields(),
        vec![
            string_list(frames.iter().map(|f| &f.slot[..])),
            string_list(frames.iter().map(|f| &f.value[..])),
            int32_list(frames.iter().map(|f| &f.start[..])),
            int32_list(frames.iter().map(|f| &f.end[..])),
            string_list(no_copy.iter().map(|v| &v[..])),
            string_list_list(no_copy_values.iter().map(|v| &v[..])),
        ],
    );
    // Per utterance, one struct of lists over its frames (one state and one slots struct each).
    let services: Vec<Vec<&str>> = utterances
        .iter()
        .map(|u| u.frames.iter().map(|f| f.service.as_str()).collect())
        .collect();
    let per_utterance = utterances.iter().map(|u| u.frames.len());
    structs(
        frames_fields(),
        vec![
            string_list(services.iter().map(|v| &v[..])),
            lists_of(state, per_utterance.clone()),
            lists_of(slots, per_utterance),
        ],
    )
}

fn acts_array(utterances: &[&Utterance]) -> ArrayRef {
    let acts: Vec<&Acts> = utterances.iter().map(|u| &u.acts).collect();
    let act_types: Vec<Vec<&str>> = acts
        .iter()
        .map(|a| a.acts.iter().map(|(t, _)| t.as_str()).collect())
        .collect();
    let pairs: Vec<&Vec<(String, String)>> = acts
        .iter()
        .flat_map(|a| a.acts.iter().map(|(_, p)| p))
        .collect();
    let names: Vec<Vec<&str>> = pairs
        .iter()
        .map(|p| p.iter().map(|(s, _)| s.as_str()).collect())
        .collect();
    let values: Vec<Vec<&str>> = pairs
        .iter()
        .map(|p| p.iter().map(|(_, v)| v.as_str()).collect())
        .collect();
    let act_slots = structs(
        act_slots_fields(),
        vec![
            string_list(names.iter().map(|v| &v[..])),
            string_list(values.iter().map(|v| &v[..])),
        ],
    );
    let dialog_act = structs(
        dialog_act_fields(),
        vec![
            string_list(act_types.iter().map(|v| &v[..])),
            lists_of(act_slots, acts.iter().map(|a| a.acts.len())),
        ],
    );
    let span = |f: fn(&(String, String, String, i32, i32)) -> &str| -> Vec<Vec<&str>> {
        acts.iter()
            .map(|a| a.spans.iter().map(f).collect())
            .collect()
    };
    let (types, slots, said) = (span(|s| &s.0), span(|s| &s.1), span(|s| &s.2));
    let starts: Vec<Vec<i32>> = acts
        .iter()
        .map(|a| a.spans.iter().map(|s| s.3).collect())
        .collect();
    let ends: Vec<Vec<i32>> = acts
        .iter()
        .map(|a| a.spans.iter().map(|s| s.4).collect())
        .collect();
    let span_info = structs(
        span_info_fields(),
        vec![
            string_list(types.iter().map(|v| &v[..])),
            string_list(slots.iter().map(|v| &v[..])),
            string_list(said.iter().map(|v| &v[..])),
            int32_list(starts.iter().map(|v| &v[..])),
            int32_list(ends.iter().map(|v| &v[..])),
        ],
    );
    structs(dialogue_acts_fields(), vec![dialog_act, span_info])
}

/// The `turns` column of `dialogues`, one row each.
pub fn turns_array(dialogues: &[Dialogue]) -> ArrayRef {
    let utterances: Vec<&Utterance> = dialogues.iter().flat_map(|d| &d.utterances).collect();
    let per_dialogue = || dialogues.iter().map(|d| d.utterances.len());
    let ids: Vec<Vec<String>> = dialogues
        .iter()
        .map(|d| (0..d.utterances.len()).map(|i| i.to_string()).collect())
        .collect();
    let texts: Vec<Vec<&str>> = dialogues
        .iter()
        .map(|d| d.utterances.iter().map(|u| u.text.as_str()).collect())
        .collect();
    let mut speakers = Int64Builder::new();
    for u in &utterances {
        speakers.append_value(u.speaker);
    }
    let speaker_item = match speaker_field().data_type() {
        DataType::List(f) => f.clone(),
        _ => unreachable!("speaker is a list"),
    };
    let speaker: ArrayRef = Arc::new(ListArray::new(
        speaker_item,
        OffsetBuffer::from_lengths(per_dialogue()),
        Arc::new(speakers.finish()),
        None,
    ));
    structs(
        turns_fields(),
        vec![
            string_list(ids.iter().map(|v| &v[..])),
            speaker,
            string_list(texts.iter().map(|v| &v[..])),
            lists_of(frames_array(&utterances), per_dialogue()),
            lists_of(acts_array(&utterances), per_dialogue()),
        ],
    )
}

/// The `goals` column of `dialogues`.
pub fn goals_array(dialogues: &[Dialogue]) -> ArrayRef {
    let goals: Vec<&UserGoal> = dialogues.iter().flat_map(|d| &d.goals).collect();
    let slots: Vec<Vec<&str>> = goals
        .iter()
        .map(|g| g.inform.iter().map(|(s, _)| s.as_str()).collect())
        .collect();
    let values: Vec<Vec<&str>> = goals
        .iter()
        .map(|g| g.inform.iter().map(|(_, v)| v.as_str()).collect())
        .collect();
    let each = structs(
        goal_fields(),
        vec![
            Arc::new(StringArray::from_iter_values(
                goals.iter().map(|g| g.service.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                goals.iter().map(|g| g.intent.as_str()),
            )),
            string_list(slots.iter().map(|v| &v[..])),
            string_list(values.iter().map(|v| &v[..])),
            string_list(goals.iter().map(|g| &g.request[..])),
        ],
    );
    lists_of(each, dialogues.iter().map(|d| d.goals.len()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type};
    use arrow_array::{Array, RecordBatch};
    use arrow_schema::Schema;

    use super::*;
    use crate::annotation::{Act, Span, State, TurnFrames};

    fn turn(user: &str, assistant: &str) -> ParsedTurn {
        ParsedTurn {
            utterance: user.into(),
            intent: "x".into(),
            assistant_response: assistant.into(),
        }
    }

    /// Two turns: the user books a hotel in Café Rouge's street, then asks for the phone.
    pub(crate) fn annotated() -> (Vec<ParsedTurn>, Annotation) {
        let turns = vec![
            turn("A room at the Café Rouge for 2", "Which day?"),
            turn("Friday, and its phone please", "Booked, 01223."),
        ];
        let mut first = Frame::new("hotel");
        first.slots = vec![
            Span {
                slot: "hotel-name".into(),
                start: 14,
                exclusive_end: 24,
            },
            Span {
                slot: "hotel-bookpeople".into(),
                start: 29,
                exclusive_end: 30,
            },
        ];
        first.actions = vec![
            Act {
                act: "INFORM_INTENT".into(),
                slot: "intent".into(),
                values: vec!["book_hotel".into()],
                canonical_values: vec![],
            },
            Act {
                act: "INFORM".into(),
                slot: "hotel-name".into(),
                values: vec!["Café Rouge".into()],
                canonical_values: vec![],
            },
        ];
        first.state = Some(State {
            active_intent: "book_hotel".into(),
            requested_slots: vec![],
            slot_values: BTreeMap::from([
                ("hotel-bookpeople".into(), vec!["2".into()]),
                ("hotel-name".into(), vec!["Café Rouge".into()]),
            ]),
        });
        let mut second = first.clone();
        second.slots = vec![Span {
            slot: "hotel-bookday".into(),
            start: 0,
            exclusive_end: 6,
        }];
        second.actions = vec![Act {
            act: "REQUEST".into(),
            slot: "hotel-phone".into(),
            values: vec![],
            canonical_values: vec![],
        }];
        let state = second.state.as_mut().unwrap();
        state.requested_slots = vec!["hotel-phone".into()];
        state
            .slot_values
            .insert("hotel-bookday".into(), vec!["friday".into()]);
        let mut call = Frame::new("hotel");
        call.service_call = Some(crate::annotation::ServiceCall {
            method: "book_hotel".into(),
            parameters: BTreeMap::new(),
        });
        let annotation = Annotation {
            goals: vec![UserGoal {
                service: "hotel".into(),
                intent: "book_hotel".into(),
                inform: vec![("hotel-name".into(), "Café Rouge".into())],
                request: vec!["hotel-phone".into()],
            }],
            turns: vec![
                TurnFrames {
                    user: vec![first],
                    assistant: vec![],
                    handover: false,
                },
                TurnFrames {
                    user: vec![second],
                    assistant: vec![call],
                    handover: false,
                },
            ],
            labels: None,
            simulated_results: true,
        };
        (turns, annotation)
    }

    fn strings_at(a: &dyn Array, i: usize) -> Vec<String> {
        let l = a.as_list::<i32>().value(i);
        let s = l.as_string::<i32>();
        (0..s.len()).map(|j| s.value(j).to_string()).collect()
    }

    #[test]
    fn turns_follow_multi_woz_v22_one_utterance_each_with_frames_state_spans_and_acts() {
        let (turns, annotation) = annotated();
        let rows = vec![
            dialogue(&turns, Some(&annotation)),
            dialogue(&turns[..1], None),
        ];
        let schema = Arc::new(Schema::new(vec![
            Field::new("turns", turns_type(), false),
            Field::new("goals", goals_type(), false),
        ]));
        let batch =
            RecordBatch::try_new(schema, vec![turns_array(&rows), goals_array(&rows)]).unwrap();
        let t = batch.column(0).as_struct();
        assert_eq!(
            strings_at(t.column_by_name("turn_id").unwrap(), 0),
            ["0", "1", "2", "3"]
        );
        let speaker = t
            .column_by_name("speaker")
            .unwrap()
            .as_list::<i32>()
            .value(0);
        assert_eq!(speaker.as_primitive::<Int64Type>().values(), &[0, 1, 0, 1]);
        assert_eq!(
            strings_at(t.column_by_name("utterance").unwrap(), 0)[3],
            "Booked, 01223."
        );
        // Dialogue 0's third utterance (the second user turn): one hotel frame.
        let frames = t
            .column_by_name("frames")
            .unwrap()
            .as_list::<i32>()
            .value(0);
        let frames = frames.as_struct();
        assert_eq!(frames.len(), 4, "one frames struct per utterance");
        assert_eq!(
            strings_at(frames.column_by_name("service").unwrap(), 2),
            ["hotel"]
        );
        let state = frames
            .column_by_name("state")
            .unwrap()
            .as_list::<i32>()
            .value(2);
        let state = state.as_struct();
        assert_eq!(state.column(0).as_string::<i32>().value(0), "book_hotel");
        assert_eq!(strings_at(state.column(1), 0), ["hotel-phone"]);
        let sv = state.column(2).as_struct();
        assert_eq!(
            strings_at(sv.column(0), 0),
            ["hotel-bookday", "hotel-bookpeople", "hotel-name"]
        );
        let lists = sv.column(1).as_list::<i32>().value(0);
        assert_eq!(strings_at(&lists, 0), ["friday"]);
        // The spans of the first utterance, by characters ("é" is one).
        let slots = frames
            .column_by_name("slots")
            .unwrap()
            .as_list::<i32>()
            .value(0);
        let slots = slots.as_struct();
        assert_eq!(strings_at(slots.column(1), 0), ["Café Rouge", "2"]);
        let starts = slots.column(2).as_list::<i32>().value(0);
        assert_eq!(starts.as_primitive::<Int32Type>().values(), &[14, 29]);
        let ends = slots.column(3).as_list::<i32>().value(0);
        assert_eq!(ends.as_primitive::<Int32Type>().values(), &[24, 30]);
        assert_eq!(strings_at(slots.column(4), 0), ["", ""]);
        // The system turn with a service call has a frame without state.
        assert_eq!(
            strings_at(frames.column_by_name("service").unwrap(), 3),
            ["hotel"]
        );
        let state = frames
            .column_by_name("state")
            .unwrap()
            .as_list::<i32>()
            .value(3);
        assert_eq!(state.as_struct().column(0).as_string::<i32>().value(0), "");
        assert_eq!(
            strings_at(frames.column_by_name("service").unwrap(), 1),
            Vec::<String>::new()
        );
        // Acts: MultiWOZ's names, the intent left to the state; requests valued "?".
        let acts = t
            .column_by_name("dialogue_acts")
            .unwrap()
            .as_list::<i32>()
            .value(0);
        let acts = acts.as_struct();
        let dialog_act = acts.column(0).as_struct();
        assert_eq!(strings_at(dialog_act.column(0), 0), ["Hotel-Inform"]);
        assert_eq!(strings_at(dialog_act.column(0), 2), ["Hotel-Request"]);
        let pairs = dialog_act.column(1).as_list::<i32>().value(2);
        assert_eq!(strings_at(pairs.as_struct().column(0), 0), ["phone"]);
        assert_eq!(strings_at(pairs.as_struct().column(1), 0), ["?"]);
        let spans = acts.column(1).as_struct();
        assert_eq!(strings_at(spans.column(1), 0), ["name", "bookpeople"]);
        assert_eq!(strings_at(spans.column(2), 2), ["Friday"]);
        // A dialogue without an annotation: its utterances, no frames, no goals.
        assert_eq!(
            strings_at(t.column_by_name("turn_id").unwrap(), 1),
            ["0", "1"]
        );
        let frames = t
            .column_by_name("frames")
            .unwrap()
            .as_list::<i32>()
            .value(1);
        assert_eq!(
            strings_at(frames.as_struct().column(0), 0),
            Vec::<String>::new()
        );
        let goals = batch.column(1).as_list::<i32>();
        assert_eq!((goals.value(0).len(), goals.value(1).len()), (1, 0));
        let goal = goals.value(0);
        assert_eq!(strings_at(goal.as_struct().column(3), 0), ["Café Rouge"]);
    }

    /// The card's features of `turns`, as `datasets` 5.2 writes those of `multi_woz_v22`'s
    /// `turns` (`DatasetInfo._to_yaml_dict`).
    const MULTI_WOZ_V22_TURNS_YAML: &str = r#"  - name: turns
    struct:
    - name: turn_id
      list: string
    - name: speaker
      list:
        class_label:
          names:
            '0': USER
            '1': SYSTEM
    - name: utterance
      list: string
    - name: frames
      list:
      - name: service
        list: string
      - name: state
        list:
        - name: active_intent
          dtype: string
        - name: requested_slots
          list: string
        - name: slots_values
          struct:
          - name: slots_values_name
            list: string
          - name: slots_values_list
            list:
              list: string
      - name: slots
        list:
        - name: slot
          list: string
        - name: value
          list: string
        - name: start
          list: int32
        - name: exclusive_end
          list: int32
        - name: copy_from
          list: string
        - name: copy_from_value
          list:
            list: string
    - name: dialogue_acts
      list:
      - name: dialog_act
        struct:
        - name: act_type
          list: string
        - name: act_slots
          list:
          - name: slot_name
            list: string
          - name: slot_value
            list: string
      - name: span_info
        struct:
        - name: act_type
          list: string
        - name: act_slot_name
          list: string
        - name: act_slot_value
          list: string
        - name: span_start
          list: int32
        - name: span_end
          list: int32
"#;

    #[test]
    fn the_card_describes_turns_as_datasets_describes_multi_woz_v22() {
        let schema = Schema::new(vec![Field::new("turns", turns_type(), false)]);
        let yaml = crate::output::hf::columns::features_yaml(&schema);
        assert_eq!(yaml, MULTI_WOZ_V22_TURNS_YAML);
    }
}
