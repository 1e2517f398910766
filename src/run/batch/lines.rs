//! The Batch API's JSONL: one request line per item and stage, named by a `custom_id` that
//! says which item, attempt and call it answers; the output and error files' lines read back.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::llm::{usage_of, Usage};
use crate::store::BatchStage;

/// The custom_id of an item's request: `scenario-12-0`, `dialogue-12-0` (item 12, attempt 0).
pub fn custom_id(stage: BatchStage, item: u64, attempt: u32) -> String {
    format!("{}-{item}-{attempt}", stage.name())
}

/// One request line of an input file.
pub fn request_line(custom_id: &str, body: &impl serde::Serialize) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": body,
    }))
    .expect("a request serializes");
    line.push(b'\n');
    line
}

/// What the provider returned for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A chat completion: its text, whether it stopped at max_tokens, its tokens.
    Completed {
        content: String,
        truncated: bool,
        usage: Usage,
    },
    /// Refused for this request alone (a 4xx): the attempt is used up.
    Refused { message: String, usage: Usage },
    /// A transient failure (429, 5xx, a batch-level error line): sent again, same attempt.
    Unfinished { message: String },
}

/// The answers of an output file and an error file, by custom_id. Lines that do not parse
/// are skipped (and counted in the second value): their requests count as unfinished. Of two
/// lines for one request, the one [`merge`] keeps.
pub fn read_answers(files: &[&[u8]]) -> (HashMap<String, Answer>, usize) {
    let mut answers = HashMap::new();
    let mut unreadable = 0;
    for file in files {
        for line in file.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let Ok(v) = serde_json::from_slice::<Value>(line) else {
                unreadable += 1;
                continue;
            };
            let Some(id) = v["custom_id"].as_str() else {
                unreadable += 1;
                continue;
            };
            keep(&mut answers, id.to_string(), answer(&v));
        }
    }
    (answers, unreadable)
}

/// Adds the answers of another file: a completion wins over a refusal, a refusal over a
/// failure, so an error line never undoes an answer that was given (and billed).
pub fn merge(into: &mut HashMap<String, Answer>, from: HashMap<String, Answer>) {
    for (id, answer) in from {
        keep(into, id, answer);
    }
}

fn keep(answers: &mut HashMap<String, Answer>, id: String, answer: Answer) {
    let rank = |a: &Answer| match a {
        Answer::Completed { .. } => 2,
        Answer::Refused { .. } => 1,
        Answer::Unfinished { .. } => 0,
    };
    match answers.get(&id) {
        Some(held) if rank(held) >= rank(&answer) => {}
        _ => {
            answers.insert(id, answer);
        }
    }
}

fn answer(v: &Value) -> Answer {
    let response = &v["response"];
    let status = response["status_code"].as_u64().unwrap_or(0);
    let body = &response["body"];
    if status == 200 && body["choices"].is_array() {
        return Answer::Completed {
            content: body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            truncated: body["choices"][0]["finish_reason"] == "length",
            usage: usage_of(body),
        };
    }
    let error = if body["error"].is_object() {
        &body["error"]
    } else {
        &v["error"]
    };
    let code = error["code"].as_str().unwrap_or("");
    let message = match (status, error["message"].as_str()) {
        (0, Some(m)) => format!("{code}: {m}"),
        (s, Some(m)) => format!("HTTP {s} {code}: {m}"),
        (s, None) => format!(
            "HTTP {s}: {}",
            v.to_string().chars().take(200).collect::<String>()
        ),
    };
    if status == 429 || status >= 500 || status == 0 {
        Answer::Unfinished { message }
    } else {
        Answer::Refused {
            message,
            usage: if body["usage"].is_object() {
                usage_of(body)
            } else {
                Usage::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_completions_refusals_and_unfinished_requests() {
        let output = br#"{"id":"r1","custom_id":"dialogue-3-1","response":{"status_code":200,"body":{"choices":[{"finish_reason":"length","message":{"content":"<User>hi"}}],"usage":{"prompt_tokens":10,"completion_tokens":4}}},"error":null}
{"id":"r2","custom_id":"scenario-4-0","response":{"status_code":400,"body":{"error":{"message":"context too long","code":"context_length_exceeded"}}},"error":null}
not json
"#;
        let errors = br#"{"id":"r3","custom_id":"scenario-5-0","response":null,"error":{"code":"batch_expired","message":"This request could not be executed before the completion window expired."}}
{"id":"r4","custom_id":"scenario-6-0","response":{"status_code":500,"body":{"error":{"message":"boom"}}},"error":null}
"#;
        let (answers, unreadable) = read_answers(&[output, errors]);
        assert_eq!(unreadable, 1);
        assert_eq!(
            answers["dialogue-3-1"],
            Answer::Completed {
                content: "<User>hi".into(),
                truncated: true,
                usage: Usage {
                    calls: 1,
                    prompt_tokens: 10,
                    completion_tokens: 4,
                    cached_tokens: 0
                }
            }
        );
        assert!(
            matches!(&answers["scenario-4-0"], Answer::Refused { message, .. } if message.contains("context_length_exceeded"))
        );
        assert!(
            matches!(&answers["scenario-5-0"], Answer::Unfinished { message } if message.contains("batch_expired"))
        );
        assert!(matches!(
            &answers["scenario-6-0"],
            Answer::Unfinished { .. }
        ));
    }

    #[test]
    fn an_error_line_never_replaces_an_answer() {
        let output = br#"{"custom_id":"dialogue-1-0","response":{"status_code":200,"body":{"choices":[{"finish_reason":"stop","message":{"content":"hi"}}]}}}
"#;
        let errors = br#"{"custom_id":"dialogue-1-0","response":{"status_code":500,"body":{"error":{"message":"boom"}}}}
{"custom_id":"dialogue-2-0","response":{"status_code":500,"body":{"error":{"message":"boom"}}}}
{"custom_id":"dialogue-2-0","response":{"status_code":400,"body":{"error":{"message":"bad"}}}}
"#;
        for files in [[&output[..], &errors[..]], [&errors[..], &output[..]]] {
            let (answers, _) = read_answers(&files);
            assert!(matches!(answers["dialogue-1-0"], Answer::Completed { .. }));
            assert!(matches!(answers["dialogue-2-0"], Answer::Refused { .. }));
        }
        let (mut answers, _) = read_answers(&[output]);
        merge(&mut answers, read_answers(&[errors]).0);
        assert!(matches!(answers["dialogue-1-0"], Answer::Completed { .. }));
    }

    #[test]
    fn custom_ids_name_stage_item_and_attempt() {
        assert_eq!(custom_id(BatchStage::Dialogue, 12, 3), "dialogue-12-3");
        let line = request_line("scenario-1-0", &json!({"model": "m"}));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["url"], "/v1/chat/completions");
        assert_eq!(v["body"]["model"], "m");
        assert!(line.ends_with(b"\n"));
    }
}
