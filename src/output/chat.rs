//! `dgen export --chat FILE`: OpenAI's chat fine-tuning format, one dialogue a line,
//! `{"messages": [...], "tools": [...]}`. A turn is the user message, then for each service the
//! assistant called an assistant message with its `tool_calls` and one `tool` message per call
//! with the results, then the assistant's reply. `tools` holds one function per intent of the
//! dialogue's services (the plan's schema, else the intents the dialogue called, with the
//! parameters it passed). Plain dialogues have messages only. There is no system message: the
//! scenario and persona dgen generated with are not what a deployed assistant is told.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::{json, Value};

use crate::annotation::Annotation;
use crate::output::atomic_file::AtomicFile;
use crate::output::formats::{self, Seen};
use crate::quality::QualityRecord;
use crate::record::GeneratedDialogue;
use crate::schema::{Schema, Service};

/// A function name OpenAI accepts (`^[a-zA-Z0-9_-]{1,64}$`): other characters become `_`.
fn function_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if clean.is_empty() {
        "_".into()
    } else {
        clean
    }
}

/// The tool names of a dialogue's intents: the intent's name, or `<service>__<intent>` for an
/// intent name two of the dialogue's services share, so each call names one service's intent.
fn tool_names(services: &[Service]) -> BTreeMap<(String, String), String> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for s in services {
        for i in &s.intents {
            *count.entry(i.name.as_str()).or_default() += 1;
        }
    }
    let mut names = BTreeMap::new();
    for s in services {
        for i in &s.intents {
            let name = if count[i.name.as_str()] > 1 {
                format!("{}__{}", s.service_name, i.name)
            } else {
                i.name.clone()
            };
            names.insert(
                (s.service_name.clone(), i.name.clone()),
                function_name(&name),
            );
        }
    }
    names
}

fn tools(services: &[Service], names: &BTreeMap<(String, String), String>) -> Vec<Value> {
    let mut tools = Vec::new();
    for s in services {
        for i in &s.intents {
            let mut properties = serde_json::Map::new();
            for slot in i.argument_slots() {
                let mut p = json!({"type": "string"});
                if let Some(def) = s.slot(slot) {
                    if !def.description.is_empty() {
                        p["description"] = json!(def.description);
                    }
                    if def.is_categorical && !def.possible_values.is_empty() {
                        p["enum"] = json!(def.possible_values);
                    }
                }
                properties.insert(slot.to_string(), p);
            }
            let description = if i.description.is_empty() {
                format!("{} of the {} service", i.name, s.service_name)
            } else {
                i.description.clone()
            };
            tools.push(json!({
                "type": "function",
                "function": {
                    "name": names[&(s.service_name.clone(), i.name.clone())],
                    "description": description,
                    "parameters": {
                        "type": "object",
                        "properties": properties,
                        "required": i.required_slots,
                    },
                },
            }));
        }
    }
    tools
}

/// One line of the file.
pub fn line(d: &GeneratedDialogue, annotation: Option<&Annotation>, plan: &Schema) -> Value {
    let mut messages = Vec::new();
    let Some(a) = annotation else {
        for t in &d.turns {
            messages.push(json!({"role": "user", "content": t.utterance}));
            messages.push(json!({"role": "assistant", "content": t.assistant_response}));
        }
        return json!({ "messages": messages });
    };
    let mut seen = Seen::default();
    seen.add(&formats::frames(a).collect::<Vec<_>>());
    let services = seen.services(plan);
    let names = tool_names(&services);
    for (n, (t, frames)) in d.turns.iter().zip(&a.turns).enumerate() {
        messages.push(json!({"role": "user", "content": t.utterance}));
        let calls: Vec<_> = frames
            .assistant
            .iter()
            .filter_map(|f| Some((f, f.service_call.as_ref()?)))
            .collect();
        if !calls.is_empty() {
            let id = |k: usize| format!("call_{n}_{k}");
            let tool_calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(k, (f, call))| {
                    let name = names
                        .get(&(f.service.clone(), call.method.clone()))
                        .cloned()
                        .unwrap_or_else(|| function_name(&call.method));
                    json!({
                        "id": id(k),
                        "type": "function",
                        "function": {
                            "name": name,
                            "arguments": serde_json::to_string(&call.parameters)
                                .expect("parameters serialize"),
                        },
                    })
                })
                .collect();
            messages.push(json!({"role": "assistant", "tool_calls": tool_calls}));
            for (k, (f, _)) in calls.iter().enumerate() {
                let results = f.service_results.clone().unwrap_or_default();
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": id(k),
                    "content": serde_json::to_string(&results).expect("results serialize"),
                }));
            }
        }
        messages.push(json!({"role": "assistant", "content": t.assistant_response}));
    }
    json!({"messages": messages, "tools": tools(&services, &names)})
}

/// The JSONL file being written.
pub struct Writer {
    file: AtomicFile,
    path: PathBuf,
    written: u64,
    with_tools: u64,
}

impl Writer {
    pub fn create(path: &Path) -> Result<Writer> {
        Ok(Writer {
            file: AtomicFile::create(path)?,
            path: path.to_path_buf(),
            written: 0,
            with_tools: 0,
        })
    }

    pub fn add(
        &mut self,
        record: &GeneratedDialogue,
        quality: &QualityRecord,
        plan: &Schema,
    ) -> Result<()> {
        let annotation = match &quality.annotation {
            Some(a) => Some(formats::checked(record, a)?),
            None => None,
        };
        let w = self.file.writer();
        serde_json::to_writer(&mut *w, &line(record, annotation, plan))?;
        w.write_all(b"\n")?;
        self.written += 1;
        self.with_tools += u64::from(annotation.is_some());
        Ok(())
    }

    pub fn finish(self) -> Result<String> {
        self.file.commit()?;
        Ok(format!(
            "exported {} dialogues ({} annotated, with tools) to {} as chat fine-tuning JSONL\n",
            self.written,
            self.with_tools,
            self.path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Intent;

    fn service(name: &str, intents: &[&str]) -> Service {
        Service {
            service_name: name.into(),
            description: String::new(),
            slots: Vec::new(),
            intents: intents
                .iter()
                .map(|i| Intent {
                    name: (*i).into(),
                    description: String::new(),
                    is_transactional: false,
                    required_slots: Vec::new(),
                    optional_slots: BTreeMap::new(),
                    result_slots: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn an_intent_name_two_services_share_is_prefixed_with_each_service() {
        let names = tool_names(&[
            service("Hotels_1", &["Search", "ReserveHotel"]),
            service("Flights 2", &["Search"]),
        ]);
        assert_eq!(
            names[&("Hotels_1".into(), "ReserveHotel".into())],
            "ReserveHotel"
        );
        assert_eq!(
            names[&("Hotels_1".into(), "Search".into())],
            "Hotels_1__Search"
        );
        assert_eq!(
            names[&("Flights 2".into(), "Search".into())],
            "Flights_2__Search"
        );
    }
}
