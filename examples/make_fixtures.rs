//! Writes the bundled sample data under `fixtures/`: base dialogues and personas that this
//! project composed itself from the templates below (no copied text), in every input layout dgen
//! reads. Run `cargo run --example make_fixtures` after changing it; the output is committed.
//!
//! Every dialogue layout holds the same dialogues, so each must give the same plan fingerprint.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, Int64Array, ListArray, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use serde_json::{json, Value};

struct Dialogue {
    id: String,
    services: Vec<&'static str>,
    turns: Vec<(i64, String)>,
}

const SERVICES: [&str; 8] = [
    "hotel",
    "restaurant",
    "train",
    "attraction",
    "taxi",
    "bus",
    "hospital",
    "flight",
];

const AREAS: [&str; 5] = ["north", "south", "east", "west", "centre"];
const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// (user request, assistant answer, user follow-up, assistant confirmation) per service.
fn lines(service: &str, n: usize) -> [String; 4] {
    let area = AREAS[n % AREAS.len()];
    let day = DAYS[n % DAYS.len()];
    let people = 1 + n % 6;
    let hour = 7 + n % 12;
    match service {
        "hotel" => [
            format!("I need a place to stay in the {area} for {people} people from {day}."),
            format!("The Larkspur Lodge in the {area} has rooms free from {day}. Shall I book it?"),
            format!("Yes please, for {} nights, and I would like free parking.", 1 + n % 4),
            format!("Booked with parking included. Your reference is HT{n:04}."),
        ],
        "restaurant" => [
            format!("Can you find me a moderately priced restaurant in the {area}?"),
            format!("Copper Kettle in the {area} serves seasonal dishes at moderate prices."),
            format!("Please reserve a table for {people} on {day} at {hour}:30."),
            format!("Your table for {people} is reserved. Reference RS{n:04}."),
        ],
        "train" => [
            format!("I am looking for a train leaving on {day} after {hour}:00."),
            format!("The {hour}:15 service departs on {day} and takes about 50 minutes."),
            format!("That works. I need {people} tickets, please."),
            format!("I bought {people} tickets; the total is {} pounds, reference TR{n:04}.", 12 * people),
        ],
        "attraction" => [
            format!("What museums or galleries are there in the {area}?"),
            format!("The Weaving Gallery in the {area} is free to enter and opens at 10:00."),
            "Could I get its phone number and postcode?".to_string(),
            format!("Certainly: the phone is 01223 55{n:04} and the postcode is CB{} 4QA.", 1 + n % 9),
        ],
        "taxi" => [
            format!("I need a taxi to pick me up at {hour}:45 from the station."),
            "Where would you like to be taken?".to_string(),
            format!("To the hotel in the {area}, please."),
            format!("A grey saloon is booked; the driver's number is 07700 9{n:05}."),
        ],
        "bus" => [
            format!("Which bus goes to the {area} side of town on {day}?"),
            format!("Route {} runs every 20 minutes from the central stop.", 10 + n % 30),
            "When is the last one back at night?".to_string(),
            format!("The last return leaves at {}:40.", 22 + n % 2),
        ],
        "hospital" => [
            format!("I need the number for the hospital's {} department.", ["paediatrics", "cardiology", "neurology", "urology"][n % 4]),
            "Let me look that up for you.".to_string(),
            "And the address of the main entrance?".to_string(),
            format!("The main entrance is on Hills Road, postcode CB2 0Q{}; the line is 01223 21{n:04}.", (b'A' + (n % 26) as u8) as char),
        ],
        _ => [
            format!("I want to fly out on {day} morning for {people} passengers."),
            format!("Flight SK{} leaves on {day} at {hour}:05 with seats available.", 100 + n),
            "Is checked baggage included in the fare?".to_string(),
            "One checked bag of 23 kg per passenger is included. Shall I book?".to_string(),
        ],
    }
}

fn dialogues(count: usize, offset: usize, prefix: &str) -> Vec<Dialogue> {
    (0..count)
        .map(|i| {
            let n = i + offset;
            let primary = SERVICES[n % SERVICES.len()];
            let mut services = vec![primary];
            if n % 3 == 1 {
                services.push(SERVICES[(n + 3) % SERVICES.len()]);
            }
            let mut turns = Vec::new();
            for (k, service) in services.iter().enumerate() {
                let [a, b, c, d] = lines(service, n + k);
                turns.push((0, a));
                turns.push((1, b));
                if (n + k).is_multiple_of(2) || services.len() == 1 {
                    turns.push((0, c));
                    turns.push((1, d));
                }
            }
            turns.push((0, "That is all, thank you.".to_string()));
            turns.push((1, "You are welcome. Have a good day!".to_string()));
            Dialogue {
                id: format!("{prefix}{n:04}.json"),
                services,
                turns,
            }
        })
        .collect()
}

fn speaker_name(s: i64) -> &'static str {
    if s == 0 {
        "USER"
    } else {
        "SYSTEM"
    }
}

fn services_array(ds: &[Dialogue]) -> ArrayRef {
    let mut b = ListBuilder::new(StringBuilder::new());
    for d in ds {
        for s in &d.services {
            b.values().append_value(s);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

/// `turns` as a struct of lists, the way `pfb30/multi_woz_v22` stores it.
fn turns_struct_of_lists(ds: &[Dialogue]) -> ArrayRef {
    let mut ids = ListBuilder::new(StringBuilder::new());
    let mut speakers = ListBuilder::new(Int64Builder::new());
    let mut utterances = ListBuilder::new(StringBuilder::new());
    for d in ds {
        for (k, (s, u)) in d.turns.iter().enumerate() {
            ids.values().append_value(k.to_string());
            speakers.values().append_value(*s);
            utterances.values().append_value(u);
        }
        ids.append(true);
        speakers.append(true);
        utterances.append(true);
    }
    let ids: ArrayRef = Arc::new(ids.finish());
    let speakers: ArrayRef = Arc::new(speakers.finish());
    let utterances: ArrayRef = Arc::new(utterances.finish());
    Arc::new(StructArray::from(vec![
        (
            Arc::new(Field::new("turn_id", ids.data_type().clone(), true)),
            ids,
        ),
        (
            Arc::new(Field::new("speaker", speakers.data_type().clone(), true)),
            speakers,
        ),
        (
            Arc::new(Field::new(
                "utterance",
                utterances.data_type().clone(),
                true,
            )),
            utterances,
        ),
    ]))
}

/// `turns` as a list of structs with string speakers and integer turn ids.
fn turns_list_of_structs(ds: &[Dialogue]) -> ArrayRef {
    let mut ids = Vec::new();
    let mut speakers = Vec::new();
    let mut utterances = Vec::new();
    let mut offsets = vec![0i32];
    for d in ds {
        for (k, (s, u)) in d.turns.iter().enumerate() {
            ids.push(k as i64);
            speakers.push(speaker_name(*s));
            utterances.push(u.as_str());
        }
        offsets.push(offsets.last().unwrap() + d.turns.len() as i32);
    }
    let fields = Fields::from(vec![
        Field::new("turn_id", DataType::Int64, true),
        Field::new("speaker", DataType::Utf8, true),
        Field::new("utterance", DataType::Utf8, true),
    ]);
    let values = StructArray::new(
        fields.clone(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(speakers)),
            Arc::new(StringArray::from(utterances)),
        ],
        None,
    );
    let item = Arc::new(Field::new("item", DataType::Struct(fields), true));
    Arc::new(ListArray::new(
        item,
        arrow_buffer::OffsetBuffer::new(offsets.into()),
        Arc::new(values),
        None,
    ))
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

fn dialogue_batch(ds: &[Dialogue], struct_of_lists: bool) -> RecordBatch {
    let ids: ArrayRef = Arc::new(StringArray::from_iter_values(
        ds.iter().map(|d| d.id.as_str()),
    ));
    let turns = if struct_of_lists {
        turns_struct_of_lists(ds)
    } else {
        turns_list_of_structs(ds)
    };
    batch(vec![
        ("dialogue_id", ids),
        ("services", services_array(ds)),
        ("turns", turns),
    ])
}

/// A save_to_disk Dataset folder: one Arrow IPC stream shard plus state.json.
fn write_hf_dataset(dir: &Path, batch: &RecordBatch) {
    fs::create_dir_all(dir).unwrap();
    let file = fs::File::create(dir.join("data-00000-of-00001.arrow")).unwrap();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(file, &batch.schema()).unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
    let state = json!({
        "_data_files": [{"filename": "data-00000-of-00001.arrow"}],
        "_fingerprint": "dgen-fixture",
        "_format_columns": null,
        "_format_kwargs": {},
        "_format_type": null,
        "_output_all_columns": false,
        "_split": null
    });
    write_json(&dir.join("state.json"), &state);
    write_json(
        &dir.join("dataset_info.json"),
        &json!({"description": "dgen sample data", "features": {}}),
    );
}

fn write_json(path: &Path, value: &Value) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, serde_json::to_string_pretty(value).unwrap() + "\n").unwrap();
}

fn json_dialogue(d: &Dialogue, int_ids: bool) -> Value {
    let turns: Vec<Value> = d
        .turns
        .iter()
        .enumerate()
        .map(|(k, (s, u))| {
            let id = if int_ids {
                json!(k)
            } else {
                json!(k.to_string())
            };
            json!({"turn_id": id, "speaker": speaker_name(*s), "utterance": u})
        })
        .collect();
    json!({"dialogue_id": d.id, "services": d.services, "turns": turns})
}

const PERSONA_PARTS: [(&str, &str, &str); 12] = [
    (
        "A retired ferry engineer",
        "who plans rail holidays around heritage lines",
        "Transportation",
    ),
    (
        "A paediatric nurse",
        "who works rotating night shifts",
        "Healthcare",
    ),
    (
        "A food blogger",
        "who reviews family-run restaurants",
        "Food",
    ),
    (
        "A university lecturer in geology",
        "who takes students on field trips",
        "Education",
    ),
    (
        "A wheelchair user and amateur photographer",
        "who checks venue access before every trip",
        "Accessibility",
    ),
    (
        "A sales manager",
        "who flies twice a month and hates delays",
        "Business",
    ),
    (
        "A parent of three young children",
        "who books everything on a tight budget",
        "Family",
    ),
    (
        "A jazz saxophonist",
        "who tours small venues across Europe",
        "Music",
    ),
    (
        "A software developer",
        "who works remotely from a different city each month",
        "Technology",
    ),
    (
        "A wedding planner",
        "who coordinates transport for large groups",
        "Events",
    ),
    (
        "A marathon runner",
        "who travels to races and cares about diet",
        "Sports",
    ),
    (
        "A first-year medical student",
        "who is new to the city",
        "Science",
    ),
];

fn personas() -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for round in 0..3 {
        for (i, (who, what, label)) in PERSONA_PARTS.iter().enumerate() {
            let detail = [
                "and prefers quiet places",
                "and is always in a hurry",
                "and likes to ask many questions",
            ][round];
            let text = format!("{who} {what}, {detail}.");
            let cluster = (i % 5) as i64;
            let other = PERSONA_PARTS[(i + round + 1) % PERSONA_PARTS.len()].2;
            let labels = if round == 0 {
                vec![*label]
            } else {
                vec![*label, other]
            };
            out.push((text, cluster, serde_json::to_string(&labels).unwrap()));
        }
    }
    out
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let _ = fs::remove_dir_all(&root);
    let train = dialogues(40, 0, "SMP");
    let validation = dialogues(8, 40, "SMPV");

    // Hugging Face DatasetDict (train + validation), turns as a struct of lists.
    let hf = root.join("multiwoz_hf");
    write_hf_dataset(&hf.join("train"), &dialogue_batch(&train, true));
    write_hf_dataset(&hf.join("validation"), &dialogue_batch(&validation, true));
    write_json(
        &hf.join("dataset_dict.json"),
        &json!({"splits": ["train", "validation"]}),
    );

    // A single save_to_disk Dataset, turns as a list of structs with string speakers.
    write_hf_dataset(
        &root.join("multiwoz_hf_list"),
        &dialogue_batch(&train, false),
    );

    // The MultiWOZ 2.2 repository layout: <split>/dialogues_NNN.json.
    let mw = root.join("multiwoz_json");
    let (a, b) = train.split_at(25);
    write_json(
        &mw.join("train/dialogues_001.json"),
        &Value::Array(a.iter().map(|d| json_dialogue(d, false)).collect()),
    );
    write_json(
        &mw.join("train/dialogues_002.json"),
        &Value::Array(b.iter().map(|d| json_dialogue(d, false)).collect()),
    );
    write_json(
        &mw.join("dev/dialogues_001.json"),
        &Value::Array(validation.iter().map(|d| json_dialogue(d, false)).collect()),
    );

    // JSONL and Parquet with integer turn ids.
    let jsonl: String = train
        .iter()
        .map(|d| json_dialogue(d, true).to_string() + "\n")
        .collect();
    fs::write(root.join("multiwoz.jsonl"), jsonl).unwrap();
    let pq = dialogue_batch(&train, true);
    let file = fs::File::create(root.join("multiwoz.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, pq.schema(), None).unwrap();
    w.write(&pq).unwrap();
    w.close().unwrap();

    // Personas with FinePersonas' label columns.
    let ps = personas();
    let texts: ArrayRef = Arc::new(StringArray::from_iter_values(
        ps.iter().map(|p| p.0.as_str()),
    ));
    let clusters: ArrayRef = Arc::new(Int64Array::from_iter_values(ps.iter().map(|p| p.1)));
    let summaries: ArrayRef = Arc::new(StringArray::from_iter_values(
        ps.iter().map(|p| p.2.as_str()),
    ));
    write_hf_dataset(
        &root.join("personas_hf"),
        &batch(vec![
            ("persona", texts),
            ("cluster_label", clusters),
            ("summary_label", summaries),
        ]),
    );
    let jsonl: String = ps
        .iter()
        .map(|p| {
            json!({"persona": p.0, "cluster_label": p.1, "summary_label": p.2}).to_string() + "\n"
        })
        .collect();
    fs::write(root.join("personas.jsonl"), jsonl).unwrap();
    println!("wrote {}", root.display());
}
