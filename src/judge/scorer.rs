//! One judge call: the rubric request for a dialogue, sent through the run's LLM client (retry,
//! backoff, error classes), and the answer parsed into a [`JudgeScore`].

use super::rubric::{self, JudgeSettings, Subject, JUDGE_PROMPT_VERSION};
use super::{JudgeError, JudgeScore};
use crate::llm::{LlmClient, Usage};

/// A judge: where it is reached and what it is asked.
pub struct Judge {
    pub client: LlmClient,
    pub settings: JudgeSettings,
}

/// What one judge call gave: a score or why not, and the tokens it was billed either way.
pub struct Judged {
    pub result: Result<JudgeScore, JudgeError>,
    pub usage: Usage,
}

impl Judge {
    pub async fn score(&self, subject: &Subject<'_>) -> Judged {
        let request = rubric::request(&self.settings, subject);
        let completion = match self.client.complete(&request).await {
            Ok(c) => c,
            Err(f) => {
                return Judged {
                    result: Err(JudgeError::Call(f.error)),
                    usage: f.usage,
                }
            }
        };
        let usage = completion.usage;
        let result = rubric::parse(&completion.content).map(|v| JudgeScore {
            overall: v.overall,
            scores: v.scores,
            reasoning: v.reasoning,
            model: self.settings.model.clone(),
            prompt_version: JUDGE_PROMPT_VERSION.to_string(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        });
        Judged { result, usage }
    }
}
