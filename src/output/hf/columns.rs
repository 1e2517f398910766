//! The dataset's columns: the Arrow schema (nested where the data is nested) and a builder that
//! turns stored dialogues into record batches of it.

use std::sync::Arc;

use anyhow::Result;
use arrow_array::builder::{
    BooleanBuilder, FixedSizeListBuilder, Float32Builder, Float64Builder, Int32Builder,
    Int64Builder, Int8Builder, ListBuilder, StringBuilder, StructBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};

use super::multiwoz;
use crate::embed::DIM;
use crate::quality::QualityRecord;
use crate::record::judge::{JudgeScore, CRITERIA};
use crate::record::GeneratedDialogue;

/// Which optional columns the dataset has.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// `embedding`: 384 float32 per dialogue.
    pub embeddings: bool,
    /// `judge`: present when the store holds judge scores.
    pub judge: bool,
    /// An annotated plan's store: `turns` in `multi_woz_v22`'s layout ([`multiwoz`]), dgen's
    /// own turns as `dgen_turns` and the user goals as `goals`.
    pub multiwoz: bool,
}

fn item(data_type: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", data_type, true))
}

fn list_of(data_type: DataType) -> DataType {
    DataType::List(item(data_type))
}

fn turn_fields() -> Fields {
    Fields::from(vec![
        Field::new("turn_number", DataType::Int32, false),
        Field::new("utterance", DataType::Utf8, false),
        Field::new("intent", DataType::Utf8, false),
        Field::new("assistant_response", DataType::Utf8, false),
        Field::new("user_emotion", DataType::Utf8, false),
        Field::new("assistant_emotion", DataType::Utf8, false),
    ])
}

fn time_slot_fields() -> Fields {
    Fields::from(vec![
        Field::new("start_hour", DataType::Int8, false),
        Field::new("end_hour", DataType::Int8, false),
        Field::new("name", DataType::Utf8, false),
    ])
}

fn usage_fields() -> Fields {
    Fields::from(vec![
        Field::new("calls", DataType::Int64, false),
        Field::new("prompt_tokens", DataType::Int64, false),
        Field::new("completion_tokens", DataType::Int64, false),
    ])
}

fn check_fields() -> Fields {
    Fields::from(vec![
        Field::new("check", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
    ])
}

fn judge_fields() -> Fields {
    let mut fields = vec![Field::new("overall", DataType::Int8, true)];
    fields.extend(
        CRITERIA
            .iter()
            .map(|c| Field::new(*c, DataType::Int8, true)),
    );
    fields.extend([
        Field::new("reasoning", DataType::Utf8, true),
        Field::new("model", DataType::Utf8, true),
        Field::new("prompt_version", DataType::Utf8, true),
    ]);
    Fields::from(fields)
}

/// The schema of `layout`, in column order.
pub fn schema(layout: Layout) -> SchemaRef {
    let string = |name: &str| Field::new(name, DataType::Utf8, false);
    let real = |name: &str| Field::new(name, DataType::Float64, false);
    let dgen_turns = list_of(DataType::Struct(turn_fields()));
    let mut fields = vec![
        string("dialogue_id"),
        Field::new("services", list_of(DataType::Utf8), false),
    ];
    if layout.multiwoz {
        fields.extend([
            Field::new("turns", multiwoz::turns_type(), false),
            Field::new("dgen_turns", dgen_turns, false),
            Field::new("goals", multiwoz::goals_type(), false),
        ]);
    } else {
        fields.push(Field::new("turns", dgen_turns, false));
    }
    fields.extend([
        Field::new("num_lines", DataType::Int32, false),
        string("user_emotion"),
        string("assistant_emotion"),
        string("scenario_category"),
        string("generated_scenario"),
        Field::new("time_slot", DataType::Struct(time_slot_fields()), false),
        Field::new("regions", list_of(DataType::Utf8), false),
        string("resolution_status"),
        string("specific_time"),
        string("persona"),
        string("base_dialogue_id"),
        Field::new("item_index", DataType::Int64, true),
        Field::new("imported", DataType::Boolean, false),
        string("model"),
        real("temperature"),
        real("top_p"),
        real("frequency_penalty"),
        real("presence_penalty"),
        Field::new("seed", DataType::UInt64, false),
        Field::new("attempt", DataType::Int32, false),
        Field::new("usage", DataType::Struct(usage_fields()), false),
        Field::new(
            "quality_checks",
            list_of(DataType::Struct(check_fields())),
            false,
        ),
    ]);
    if layout.judge {
        fields.push(Field::new("judge", DataType::Struct(judge_fields()), true));
    }
    if layout.embeddings {
        fields.push(Field::new(
            "embedding",
            DataType::FixedSizeList(item(DataType::Float32), DIM as i32),
            false,
        ));
    }
    Arc::new(Schema::new(fields))
}

/// Rows being gathered into the next record batch.
pub struct Columns {
    layout: Layout,
    schema: SchemaRef,
    rows: usize,
    dialogue_id: StringBuilder,
    services: ListBuilder<StringBuilder>,
    turns: ListBuilder<StructBuilder>,
    /// The rows of `turns` and `goals` in the `multiwoz` layout.
    multiwoz: Vec<multiwoz::Dialogue>,
    num_lines: Int32Builder,
    user_emotion: StringBuilder,
    assistant_emotion: StringBuilder,
    scenario_category: StringBuilder,
    generated_scenario: StringBuilder,
    time_slot: StructBuilder,
    regions: ListBuilder<StringBuilder>,
    resolution_status: StringBuilder,
    specific_time: StringBuilder,
    persona: StringBuilder,
    base_dialogue_id: StringBuilder,
    item_index: Int64Builder,
    imported: BooleanBuilder,
    model: StringBuilder,
    temperature: Float64Builder,
    top_p: Float64Builder,
    frequency_penalty: Float64Builder,
    presence_penalty: Float64Builder,
    seed: UInt64Builder,
    attempt: Int32Builder,
    usage: StructBuilder,
    checks: ListBuilder<StructBuilder>,
    judge: StructBuilder,
    embedding: FixedSizeListBuilder<Float32Builder>,
}

fn strings() -> ListBuilder<StringBuilder> {
    ListBuilder::new(StringBuilder::new()).with_field(item(DataType::Utf8))
}

fn structs(fields: Fields) -> ListBuilder<StructBuilder> {
    ListBuilder::new(StructBuilder::from_fields(fields.clone(), 0))
        .with_field(item(DataType::Struct(fields)))
}

/// An i64 column from a u64 count: saturating, since Parquet has no unsigned 64-bit logical
/// type the Hub's viewer shows well and no count gets near 2^63.
fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Columns {
    pub fn new(layout: Layout) -> Columns {
        Columns {
            layout,
            schema: schema(layout),
            rows: 0,
            dialogue_id: StringBuilder::new(),
            services: strings(),
            turns: structs(turn_fields()),
            multiwoz: Vec::new(),
            num_lines: Int32Builder::new(),
            user_emotion: StringBuilder::new(),
            assistant_emotion: StringBuilder::new(),
            scenario_category: StringBuilder::new(),
            generated_scenario: StringBuilder::new(),
            time_slot: StructBuilder::from_fields(time_slot_fields(), 0),
            regions: strings(),
            resolution_status: StringBuilder::new(),
            specific_time: StringBuilder::new(),
            persona: StringBuilder::new(),
            base_dialogue_id: StringBuilder::new(),
            item_index: Int64Builder::new(),
            imported: BooleanBuilder::new(),
            model: StringBuilder::new(),
            temperature: Float64Builder::new(),
            top_p: Float64Builder::new(),
            frequency_penalty: Float64Builder::new(),
            presence_penalty: Float64Builder::new(),
            seed: UInt64Builder::new(),
            attempt: Int32Builder::new(),
            usage: StructBuilder::from_fields(usage_fields(), 0),
            checks: structs(check_fields()),
            judge: StructBuilder::from_fields(judge_fields(), 0),
            embedding: FixedSizeListBuilder::new(Float32Builder::new(), DIM as i32)
                .with_field(item(DataType::Float32)),
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Adds one dialogue; `embedding` is the store's 384 little-endian f32.
    pub fn push(&mut self, d: &GeneratedDialogue, embedding: &[u8], quality: &QualityRecord) {
        self.rows += 1;
        self.dialogue_id.append_value(&d.dialogue_id);
        for s in &d.services {
            self.services.values().append_value(s);
        }
        self.services.append(true);
        let turns = self.turns.values();
        for (i, t) in d.turns.iter().enumerate() {
            let number = i32::try_from(i + 1).unwrap_or(i32::MAX);
            field::<Int32Builder>(turns, 0).append_value(number);
            field::<StringBuilder>(turns, 1).append_value(&t.utterance);
            field::<StringBuilder>(turns, 2).append_value(&t.intent);
            field::<StringBuilder>(turns, 3).append_value(&t.assistant_response);
            field::<StringBuilder>(turns, 4).append_value(&d.user_emotion);
            field::<StringBuilder>(turns, 5).append_value(&d.assistant_emotion);
            turns.append(true);
        }
        self.turns.append(true);
        if self.layout.multiwoz {
            self.multiwoz
                .push(multiwoz::dialogue(&d.turns, quality.annotation.as_deref()));
        }
        self.num_lines
            .append_value(i32::try_from(d.turns.len()).unwrap_or(i32::MAX));
        self.user_emotion.append_value(&d.user_emotion);
        self.assistant_emotion.append_value(&d.assistant_emotion);
        self.scenario_category.append_value(&d.scenario_category);
        self.generated_scenario.append_value(&d.generated_scenario);
        let (start, end, name) = &d.time_slot;
        field::<Int8Builder>(&mut self.time_slot, 0).append_value(*start as i8);
        field::<Int8Builder>(&mut self.time_slot, 1).append_value(*end as i8);
        field::<StringBuilder>(&mut self.time_slot, 2).append_value(name);
        self.time_slot.append(true);
        for r in &d.regions {
            self.regions.values().append_value(r);
        }
        self.regions.append(true);
        self.resolution_status.append_value(&d.resolution_status);
        self.specific_time.append_value(&d.specific_time);
        self.persona.append_value(&d.persona);
        self.base_dialogue_id.append_value(&d.base_dialogue_id);
        self.item_index.append_option(d.item_index.map(signed));
        self.imported.append_value(d.item_index.is_none());
        self.model.append_value(&d.model);
        self.temperature.append_value(d.temperature);
        self.top_p.append_value(d.top_p);
        self.frequency_penalty.append_value(d.frequency_penalty);
        self.presence_penalty.append_value(d.presence_penalty);
        self.seed.append_value(d.seed);
        self.attempt
            .append_value(i32::try_from(d.attempt).unwrap_or(i32::MAX));
        field::<Int64Builder>(&mut self.usage, 0).append_value(signed(d.usage.calls));
        field::<Int64Builder>(&mut self.usage, 1).append_value(signed(d.usage.prompt_tokens));
        field::<Int64Builder>(&mut self.usage, 2).append_value(signed(d.usage.completion_tokens));
        self.usage.append(true);
        let checks = self.checks.values();
        for finding in &quality.checks {
            field::<StringBuilder>(checks, 0).append_value(finding.check.name());
            field::<StringBuilder>(checks, 1).append_value(&finding.detail);
            checks.append(true);
        }
        self.checks.append(true);
        if self.layout.judge {
            self.push_judge(quality.judge.as_ref());
        }
        if self.layout.embeddings {
            let values = self.embedding.values();
            for chunk in embedding.chunks_exact(4) {
                values.append_value(f32::from_le_bytes(chunk.try_into().expect("4 bytes")));
            }
            self.embedding.append(true);
        }
    }

    fn push_judge(&mut self, score: Option<&JudgeScore>) {
        let j = &mut self.judge;
        let score_of = |s: &JudgeScore, c: &str| s.scores.get(c).map(|v| *v as i8);
        field::<Int8Builder>(j, 0).append_option(score.map(|s| s.overall as i8));
        for (i, c) in CRITERIA.iter().enumerate() {
            field::<Int8Builder>(j, i + 1).append_option(score.and_then(|s| score_of(s, c)));
        }
        let base = CRITERIA.len() + 1;
        field::<StringBuilder>(j, base).append_option(score.map(|s| s.reasoning.as_str()));
        field::<StringBuilder>(j, base + 1).append_option(score.map(|s| s.model.as_str()));
        field::<StringBuilder>(j, base + 2).append_option(score.map(|s| s.prompt_version.as_str()));
        j.append(score.is_some());
    }

    /// The gathered rows as one record batch; the builders start over empty.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        self.rows = 0;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.dialogue_id.finish()),
            Arc::new(self.services.finish()),
        ];
        if self.layout.multiwoz {
            let rows = std::mem::take(&mut self.multiwoz);
            columns.extend([
                multiwoz::turns_array(&rows),
                Arc::new(self.turns.finish()),
                multiwoz::goals_array(&rows),
            ]);
        } else {
            columns.push(Arc::new(self.turns.finish()));
        }
        columns.extend([
            Arc::new(self.num_lines.finish()) as ArrayRef,
            Arc::new(self.user_emotion.finish()),
            Arc::new(self.assistant_emotion.finish()),
            Arc::new(self.scenario_category.finish()),
            Arc::new(self.generated_scenario.finish()),
            Arc::new(self.time_slot.finish()),
            Arc::new(self.regions.finish()),
            Arc::new(self.resolution_status.finish()),
            Arc::new(self.specific_time.finish()),
            Arc::new(self.persona.finish()),
            Arc::new(self.base_dialogue_id.finish()),
            Arc::new(self.item_index.finish()),
            Arc::new(self.imported.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.temperature.finish()),
            Arc::new(self.top_p.finish()),
            Arc::new(self.frequency_penalty.finish()),
            Arc::new(self.presence_penalty.finish()),
            Arc::new(self.seed.finish()),
            Arc::new(self.attempt.finish()),
            Arc::new(self.usage.finish()),
            Arc::new(self.checks.finish()),
        ]);
        if self.layout.judge {
            columns.push(Arc::new(self.judge.finish()));
        }
        if self.layout.embeddings {
            columns.push(Arc::new(self.embedding.finish()));
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

fn field<T: arrow_array::builder::ArrayBuilder>(s: &mut StructBuilder, i: usize) -> &mut T {
    s.field_builder::<T>(i)
        .expect("the struct's field builders follow its fields")
}

/// The `dataset_info.features` YAML of `schema`, in the Hub's notation (`dtype`, `list`,
/// `struct`, `length`), at two spaces of indentation under `features:`.
pub fn features_yaml(schema: &Schema) -> String {
    let mut out = String::new();
    for f in schema.fields() {
        feature(&mut out, 1, f.name(), f.data_type());
    }
    out
}

fn feature(out: &mut String, depth: usize, name: &str, data_type: &DataType) {
    let pad = "  ".repeat(depth);
    out.push_str(&format!("{pad}- name: {name}\n"));
    body(out, depth, data_type);
}

/// The lines after `- name:` describing `data_type`.
fn body(out: &mut String, depth: usize, data_type: &DataType) {
    let pad = "  ".repeat(depth);
    match data_type {
        DataType::List(inner) => match inner.data_type() {
            DataType::Struct(fields) => {
                out.push_str(&format!("{pad}  list:\n"));
                for f in fields {
                    feature(out, depth + 1, f.name(), f.data_type());
                }
            }
            DataType::List(_) => {
                out.push_str(&format!("{pad}  list:\n"));
                body(out, depth + 1, inner.data_type());
            }
            _ if inner.metadata().contains_key(multiwoz::CLASS_LABEL) => {
                out.push_str(&format!(
                    "{pad}  list:\n{pad}    class_label:\n{pad}      names:\n"
                ));
                let names = &inner.metadata()[multiwoz::CLASS_LABEL];
                for (i, name) in names.split(',').enumerate() {
                    out.push_str(&format!("{pad}        '{i}': {name}\n"));
                }
            }
            other => out.push_str(&format!("{pad}  list: {}\n", dtype(other))),
        },
        DataType::FixedSizeList(inner, length) => {
            out.push_str(&format!("{pad}  list: {}\n", dtype(inner.data_type())));
            out.push_str(&format!("{pad}  length: {length}\n"));
        }
        DataType::Struct(fields) => {
            out.push_str(&format!("{pad}  struct:\n"));
            for f in fields {
                feature(out, depth + 1, f.name(), f.data_type());
            }
        }
        other => out.push_str(&format!("{pad}  dtype: {}\n", dtype(other))),
    }
}

/// The Hub's name of a primitive Arrow type.
fn dtype(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Utf8 => "string",
        DataType::Boolean => "bool",
        DataType::Int8 => "int8",
        DataType::Int32 => "int32",
        DataType::Int64 => "int64",
        DataType::UInt64 => "uint64",
        DataType::Float32 => "float32",
        DataType::Float64 => "float64",
        other => unreachable!("the dataset has no {other} column"),
    }
}
