//! The LLM judge: a rubric, scored 1–5 per criterion by any OpenAI-compatible model, stored per
//! dialogue (table `judge`, keyed by the dialogue's sequence number) with the judge model, the
//! rubric's prompt version and the tokens it cost.
//!
//! Scores are kept apart from the dialogue record so that `dgen judge` can add them to a store
//! long after the dialogues were committed, and re-scoring with another model replaces only them.
//!
//! `rubric` owns the prompt, schema and parser; `scorer` one judge call; `endpoint` where the
//! judge is reached; `pass` the resumable `dgen judge` over a store; `corrupt` and
//! `discrimination` the check that the judge tells good dialogues from broken ones.

pub mod corrupt;
pub mod discrimination;
pub mod endpoint;
pub mod pass;
pub mod rubric;
pub mod scorer;

pub use rubric::{JudgeSchema, JudgeSettings, Subject, JUDGE_PROMPT_VERSION};
pub use scorer::{Judge, Judged};

/// The stored score lives with the records, below the store.
pub use crate::record::judge::{JudgeScore, CRITERIA};

/// Why one dialogue got no score. None of these stops a pass: the dialogue stays unjudged and
/// a later `dgen judge` tries it again. (Errors about the key, model or endpoint are
/// [`JudgeError::Call`] with a fatal [`CallError`](crate::llm::CallError); callers stop on those.)
#[derive(Debug, Clone, thiserror::Error)]
pub enum JudgeError {
    #[error("the judge's answer is not a JSON object: {0}")]
    NotJson(String),
    #[error("the judge's answer lacks the score `{0}`")]
    Missing(String),
    #[error("the judge's score `{criterion}` is {value}, not a whole number from 1 to 5")]
    OutOfRange { criterion: String, value: String },
    #[error("the judge call failed: {0}")]
    Call(crate::llm::CallError),
}

impl JudgeError {
    /// The counter and log name: `invalid_answer` or `api_error`.
    pub fn kind(&self) -> &'static str {
        match self {
            JudgeError::Call(_) => "api_error",
            _ => "invalid_answer",
        }
    }

    /// About the key, the model or the endpoint: every further call would fail the same way.
    pub fn is_fatal(&self) -> bool {
        matches!(self, JudgeError::Call(e) if e.is_fatal())
    }
}
