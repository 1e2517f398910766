//! The wire format: one JSON line each way, a request then its response, each in an envelope
//! carrying [`VERSION`]. These types are the protocol's own, so the command line and the
//! library can change without changing what crosses the process boundary.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; both sides refuse another version. 2: the report
/// request (a run speaking 1 could not have answered it). 3: the export-format request
/// (`--sgd`, `--chat`, `--multiwoz`). 4: the item request (`dgen extract --item`).
pub const VERSION: u32 = 4;

/// The longest request line the server reads.
pub const MAX_REQUEST_BYTES: u64 = 64 << 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status(StatusRequest),
    ExportDialogues(ExportDialoguesRequest),
    ExportPlan(ExportPlanRequest),
    ExportHf(ExportHfRequest),
    ExportFormat(ExportFormatRequest),
    Report(ReportRequest),
    Item(ItemRequest),
}

/// `dgen extract --item`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemRequest {
    pub index: u64,
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    pub json: bool,
    pub price_input: Option<f64>,
    pub price_output: Option<f64>,
}

/// Absolute paths of the files to write; `None` is not written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportDialoguesRequest {
    pub dialogues: Option<PathBuf>,
    pub hashes: Option<PathBuf>,
    pub embeddings: Option<PathBuf>,
    pub jsonl: Option<PathBuf>,
    pub include_imported: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportPlanRequest {
    /// An absolute path.
    pub plan_file: PathBuf,
}

/// A Hugging Face dataset folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHfRequest {
    /// An absolute path.
    pub dir: PathBuf,
    /// `(name, fraction)` in order.
    pub splits: Vec<(String, f64)>,
    pub split_seed: u64,
    /// `snappy` or `zstd`.
    pub compression: String,
    pub shard_rows: u64,
    pub shard_bytes: u64,
    pub embeddings: bool,
    pub include_imported: bool,
}

/// `dgen export --sgd/--chat/--multiwoz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportFormatRequest {
    /// Absolute paths; `None` is not written.
    pub sgd: Option<PathBuf>,
    pub chat: Option<PathBuf>,
    pub multiwoz: Option<PathBuf>,
    pub include_imported: bool,
}

/// `dgen report`: absolute paths of the page and its JSON, and the prices for the cost figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    pub html: PathBuf,
    pub json: PathBuf,
    pub price_input: Option<f64>,
    pub price_output: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// What the command prints.
    Ok { output: String },
    /// Why the run could not do it.
    Err { message: String },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<T> {
    pub version: u32,
    pub body: T,
}

/// One line: the envelope of `body` and a newline.
pub fn encode<T: Serialize>(body: T) -> Vec<u8> {
    let mut line = serde_json::to_vec(&Envelope {
        version: VERSION,
        body,
    })
    .expect("protocol types serialize");
    line.push(b'\n');
    line
}

/// The body of one line, or why it cannot be read (another version, not the protocol).
pub fn decode<T: serde::de::DeserializeOwned>(line: &str) -> Result<T, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not a dgen request or answer: {e}"))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(format!(
                "the other side speaks protocol version {v}, this dgen speaks {VERSION}; use the same dgen version for the run and the command"
            ))
        }
        None => return Err("not a dgen request or answer: no protocol version".into()),
    }
    serde_json::from_value::<Envelope<T>>(value)
        .map(|e| e.body)
        .map_err(|e| format!("not a dgen request or answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_other_versions_are_refused() {
        let request = Request::Status(StatusRequest {
            json: true,
            price_input: Some(0.1),
            price_output: None,
        });
        let line = String::from_utf8(encode(&request)).unwrap();
        assert_eq!(decode::<Request>(&line).unwrap(), request);
        let other = line.replace(&format!("\"version\":{VERSION}"), "\"version\":2");
        assert!(decode::<Request>(&other)
            .unwrap_err()
            .contains("speaks protocol version 2"));
        let unknown = format!("{{\"version\":{VERSION},\"body\":{{\"kind\":\"shell\"}}}}");
        assert!(decode::<Request>(&unknown).is_err());
        let report = Request::Report(ReportRequest {
            html: "/tmp/r.html".into(),
            json: "/tmp/r.json".into(),
            price_input: None,
            price_output: Some(0.6),
        });
        let line = String::from_utf8(encode(&report)).unwrap();
        assert_eq!(decode::<Request>(&line).unwrap(), report);
        let format = Request::ExportFormat(ExportFormatRequest {
            sgd: Some("/tmp/sgd".into()),
            chat: None,
            multiwoz: Some("/tmp/mw.json".into()),
            include_imported: true,
        });
        let line = String::from_utf8(encode(&format)).unwrap();
        assert_eq!(decode::<Request>(&line).unwrap(), format);
        let item = Request::Item(ItemRequest {
            index: 7,
            json: true,
        });
        let line = String::from_utf8(encode(&item)).unwrap();
        assert_eq!(decode::<Request>(&line).unwrap(), item);
    }
}
