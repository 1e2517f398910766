//! One accepted dialogue as the store keeps it, and the canonical texts it is hashed and
//! embedded by; `judge` holds the stored LLM-judge score.

pub mod judge;

use serde::{Deserialize, Serialize};

use crate::llm::Usage;
use crate::parse::ParsedTurn;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedDialogue {
    /// The work item it came from; `None` for imported dialogues.
    pub item_index: Option<u64>,
    pub attempt: u32,
    pub dialogue_id: String,
    pub services: Vec<String>,
    pub turns: Vec<ParsedTurn>,
    pub user_emotion: String,
    pub assistant_emotion: String,
    pub scenario_category: String,
    pub generated_scenario: String,
    pub time_slot: (u8, u8, String),
    pub regions: Vec<String>,
    pub resolution_status: String,
    pub persona: String,
    pub specific_time: String,
    pub base_dialogue_id: String,
    pub model: String,
    pub temperature: f64,
    pub top_p: f64,
    pub frequency_penalty: f64,
    pub presence_penalty: f64,
    pub seed: u64,
    pub usage: Usage,
    pub hash: [u8; 32],
}

/// The text hashed for exact dedup: every field of every turn, labelled, one per line.
pub fn canonical_text(turns: &[ParsedTurn]) -> String {
    render(turns, true)
}

/// The text embedded for semantic dedup: what the two speakers say (intent labels are noise).
pub fn embedding_text(turns: &[ParsedTurn]) -> String {
    render(turns, false)
}

fn render(turns: &[ParsedTurn], with_intent: bool) -> String {
    let mut out = String::new();
    for t in turns {
        out.push_str("USER: ");
        out.push_str(&t.utterance);
        if with_intent {
            out.push_str("\nINTENT: ");
            out.push_str(&t.intent);
        }
        out.push_str("\nASSISTANT: ");
        out.push_str(&t.assistant_response);
        out.push('\n');
    }
    out
}

/// `<base id>_generated_<uuid>`, the uuid drawn from the item seed so re-exports are identical.
pub fn dialogue_id(base_dialogue_id: &str, item_seed: u64) -> String {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(item_seed ^ 0x6469_616c_6f67_7565);
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let base = base_dialogue_id.trim_end_matches(".json");
    format!("{base}_generated_{uuid}")
}
