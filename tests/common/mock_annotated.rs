//! The mock's answers to annotated dialogue requests (response format `annotated_dialogue`): a
//! dialogue that pursues the request's user goals, labelled as the request asks. The user gives
//! the goals' values one or two a turn, each said in its words; the state of every service talked
//! about keeps every value given so far; the goals' requested slots are asked in the last turn;
//! the assistant calls the primary goal's intent with the state's values there, and the call
//! succeeds (Resolved), finds nothing (Failed) or is never made before a handover (Escalated).
//! The wording varies per call, as the plain answers do, so dedup keeps them.
//!
//! [`LabelFault`]s plant what the label checks must catch. The mock reads the request's own
//! text (the schema and goal lines, the turn bounds, the outcome) and enforces nothing.
#![allow(dead_code)]

use std::sync::Mutex;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use serde_json::{json, Value};

use super::State;

/// The name of the annotated request's response format, by which the mock knows one.
pub const FORMAT: &str = "annotated_dialogue";
const SCHEMA_MARK: &str = "Schema (JSON): ";
const GOAL_MARK: &str = "User goal (JSON): ";

/// A wrong label planted in an annotated answer (several may be planted in one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelFault {
    /// A non-categorical value in the state that the text never says.
    Ungrounded,
    /// A slot the schema does not have, in the first turn's state (its value said).
    UnknownSlot,
    /// A categorical slot in the state with a value outside its possible values (not planted
    /// where no service of the request has a categorical slot: the built-in taxi alone).
    Categorical,
    /// The first value given missing from the next turn's state, back in the turn after.
    DroppedSlot,
    /// The call lacks a required slot of its intent (or, for an intent without one, passes a
    /// slot the intent does not take, with a value said in the dialogue).
    WrongCall,
    /// The calls contradict the outcome: Resolved's call returns nothing, Failed's returns a
    /// result, Escalated's dialogue hands nothing over.
    OutcomeCalls,
}

impl LabelFault {
    pub const ALL: [LabelFault; 6] = [
        LabelFault::Ungrounded,
        LabelFault::UnknownSlot,
        LabelFault::Categorical,
        LabelFault::DroppedSlot,
        LabelFault::WrongCall,
        LabelFault::OutcomeCalls,
    ];

    /// The name `dgen-mock-llm --annotated-faults` takes.
    pub fn name(self) -> &'static str {
        match self {
            LabelFault::Ungrounded => "ungrounded",
            LabelFault::UnknownSlot => "unknown_slot",
            LabelFault::Categorical => "categorical",
            LabelFault::DroppedSlot => "dropped_slot",
            LabelFault::WrongCall => "wrong_call",
            LabelFault::OutcomeCalls => "outcome_calls",
        }
    }

    pub fn from_name(name: &str) -> Option<LabelFault> {
        LabelFault::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The dgen check that catches it.
    pub fn check(self) -> &'static str {
        match self {
            LabelFault::Ungrounded => "ungrounded",
            LabelFault::UnknownSlot => "unknown_label",
            LabelFault::Categorical => "categorical_value",
            LabelFault::DroppedSlot => "dropped_slot",
            LabelFault::WrongCall => "invalid_call",
            LabelFault::OutcomeCalls => "outcome_calls",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Service {
    service_name: String,
    slots: Vec<Slot>,
    intents: Vec<Intent>,
}

#[derive(Debug, Clone, Deserialize)]
struct Slot {
    name: String,
    #[serde(default)]
    is_categorical: bool,
    #[serde(default)]
    possible_values: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Intent {
    name: String,
    #[serde(default)]
    required_slots: Vec<String>,
    /// A map (SGD) or a list (MultiWOZ 2.2): only its names are read.
    #[serde(default)]
    optional_slots: Value,
    #[serde(default)]
    result_slots: Vec<String>,
}

impl Intent {
    fn takes(&self, slot: &str) -> bool {
        self.required_slots.iter().any(|s| s == slot)
            || match &self.optional_slots {
                Value::Object(m) => m.contains_key(slot),
                Value::Array(l) => l.iter().any(|s| s == slot),
                _ => false,
            }
    }
}

impl Service {
    fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.name == name)
    }

    fn categorical(&self, name: &str) -> bool {
        self.slot(name).is_some_and(|s| s.is_categorical)
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Goal {
    service: String,
    intent: String,
    #[serde(default)]
    inform: Vec<(String, String)>,
    #[serde(default)]
    request: Vec<String>,
}

/// What the request says: services, goals, turn bounds, outcome.
struct Request {
    services: Vec<Service>,
    goals: Vec<Goal>,
    min: usize,
    max: usize,
    outcome: String,
}

fn line_after<'a>(system: &'a str, mark: &str) -> Option<&'a str> {
    system.lines().find_map(|l| l.strip_prefix(mark))
}

fn read_request(system: &str) -> Option<Request> {
    let services: Vec<Service> = serde_json::from_str(line_after(system, SCHEMA_MARK)?).ok()?;
    let goals: Vec<Goal> = serde_json::from_str(line_after(system, GOAL_MARK)?).ok()?;
    let bounds = system.split("Length: between ").nth(1)?;
    let mut words = bounds.split(' ');
    let min = words.next()?.parse().ok()?;
    let max = words.nth(1)?.parse().ok()?;
    let outcome = system
        .split("Outcome: ")
        .nth(1)?
        .split('.')
        .next()?
        .to_string();
    (!goals.is_empty()).then_some(Request {
        services,
        goals,
        min,
        max,
        outcome,
    })
}

/// One service's state in one turn.
#[derive(Clone)]
struct Frame {
    service: String,
    intent: String,
    values: Vec<(String, String)>,
    requested: Vec<String>,
}

struct Call {
    service: String,
    method: String,
    parameters: Vec<(String, String)>,
}

struct Turn {
    user: String,
    assistant: String,
    state: Vec<Frame>,
    call: Option<Call>,
    results: Vec<Vec<(String, String)>>,
    handover: bool,
}

/// The words for a slot: its name without the service prefix, in words.
fn label(slot: &str) -> String {
    let bare = slot.rsplit_once('-').map_or(slot, |(_, s)| s);
    match bare {
        "bookday" | "day" => "day".into(),
        "bookpeople" => "number of people".into(),
        "bookstay" => "number of nights".into(),
        "booktime" => "time".into(),
        "pricerange" => "price range".into(),
        "leaveat" => "departure time".into(),
        "arriveby" => "arrival time".into(),
        "departure" => "starting point".into(),
        "destination" => "destination".into(),
        "entrancefee" => "entrance fee".into(),
        "openhours" => "opening hours".into(),
        "trainid" => "train ID".into(),
        "ref" => "reference".into(),
        "postcode" => "postcode".into(),
        other => other.replace(['_', '.'], " "),
    }
}

const OPENERS: &[&str] = &[
    "Right, so",
    "Also,",
    "One more detail:",
    "Let me add that",
    "To be precise,",
    "Just so you know,",
    "And",
    "Okay, then",
];
const ACKS: &[&str] = &[
    "Noted:",
    "Thanks, I have written down",
    "Got it:",
    "Understood, so",
    "All right, I am keeping",
    "Thank you, I have",
];
const QUESTIONS: &[&str] = &[
    "What else should I know before I look it up?",
    "Is there anything more you would like to add?",
    "Do you have any other preferences for this?",
    "Which other details matter to you here?",
    "Shall I check anything else while I am at it?",
    "Could you tell me the rest of what you need?",
    "Is there a detail I have not asked about yet?",
    "What would make this work best for you?",
    "Are there constraints I should plan around?",
    "Anything about timing I ought to know?",
    "How flexible are you on the remaining points?",
    "Would you like me to note any special requests?",
    "Is someone else travelling or coming with you?",
    "Should I compare a couple of options first?",
    "Do you want me to double-check availability next?",
    "Have you used this service with us before?",
    "What is the most important part for you?",
    "Shall we go through the remaining details now?",
    "Would a confirmation by text message help?",
    "Is there a budget I should keep in mind?",
];

/// Draws from word lists without repeating an entry within one dialogue until a list is used
/// up: turns that say the same thing read as repetitive (and dgen rejects them).
struct Decks {
    rng: ChaCha8Rng,
    left: Vec<Vec<&'static str>>,
}

const SUBJECT: usize = 0;
const PLACE: usize = 1;
const CONCERN: usize = 2;
const ACTION: usize = 3;
const QUESTION: usize = 4;

impl Decks {
    fn lists() -> [&'static [&'static str]; 5] {
        [
            super::SUBJECTS,
            super::PLACES,
            super::CONCERNS,
            super::ACTIONS,
            QUESTIONS,
        ]
    }

    fn new(rng: ChaCha8Rng) -> Decks {
        Decks {
            rng,
            left: Decks::lists().iter().map(|l| l.to_vec()).collect(),
        }
    }

    fn draw(&mut self, deck: usize) -> &'static str {
        if self.left[deck].is_empty() {
            self.left[deck] = Decks::lists()[deck].to_vec();
        }
        let at = self.rng.random_range(0..self.left[deck].len());
        self.left[deck].swap_remove(at)
    }

    fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }
}

/// An aside from the plain answers' word bank, so that dialogues with alike goals still differ
/// in meaning, and the subject and place it names (for the assistant's reply).
fn aside(decks: &mut Decks) -> (String, &'static str, &'static str) {
    let (subject, place, concern) = (decks.draw(SUBJECT), decks.draw(PLACE), decks.draw(CONCERN));
    let text = match decks.below(3) {
        0 => format!(" I am near {place} and still sorting out {subject}, since {concern}."),
        1 => format!(" Last time {concern}, and I am also dealing with {subject} at {place}."),
        _ => format!(" Because {concern}, I am handling {subject} from {place} myself today."),
    };
    (text, subject, place)
}

/// A result value for a slot of a successful call: the state's if it holds one, else one made
/// up in the slot's kind (a reference, a phone number, an address, …).
fn result_value(rng: &mut ChaCha8Rng, service: &Service, slot: &str, state: &Frame) -> String {
    if let Some((_, v)) = state.values.iter().find(|(s, _)| s == slot) {
        return v.clone();
    }
    if let Some(s) = service.slot(slot).filter(|s| !s.possible_values.is_empty()) {
        return s.possible_values[rng.random_range(0..s.possible_values.len())].clone();
    }
    let digits = |rng: &mut ChaCha8Rng, n: usize| -> String {
        (0..n)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect()
    };
    let bare = slot.rsplit_once('-').map_or(slot, |(_, s)| s);
    match bare {
        "ref" | "reference" => (0..8)
            .map(|_| char::from(b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789"[rng.random_range(0..32)]))
            .collect(),
        "phone" => format!("01223 {}", digits(rng, 6)),
        "address" => format!(
            "{} {}",
            rng.random_range(1..200),
            ["Mill Road", "Hills Road", "Regent Street", "Station Lane"][rng.random_range(0..4)]
        ),
        "postcode" => format!(
            "CB{} {}AX",
            rng.random_range(1..10),
            rng.random_range(1..10)
        ),
        "trainid" => format!("TR{}", digits(rng, 4)),
        "number" => format!("BA{}", digits(rng, 3)),
        "price" | "entrancefee" => format!("{}.{} pounds", rng.random_range(3..90), digits(rng, 2)),
        "duration" => format!("{} minutes", rng.random_range(20..200)),
        "openhours" => format!(
            "{}:00 to {}:00",
            rng.random_range(8..11),
            rng.random_range(16..22)
        ),
        "type" => {
            ["a white Toyota", "a black Skoda", "a grey Volvo"][rng.random_range(0..3)].into()
        }
        _ => format!("{} {}", label(slot), digits(rng, 3)),
    }
}

/// The answer to an annotated request with `faults` planted, or `None` when the request is not
/// one the mock can read (then it answers as to a plain request).
pub fn compose(state: &Mutex<State>, system: &str, faults: &[LabelFault]) -> Option<String> {
    let request = read_request(system)?;
    let (n, fixed_turns) = {
        let mut s = state.lock().unwrap();
        s.counter += 1;
        (s.counter, s.turns)
    };
    let mut rng = ChaCha8Rng::seed_from_u64(n * 6151 + 3);
    let service_of = |name: &str| request.services.iter().find(|s| s.service_name == name);
    let primary = &request.goals[0];
    let primary_service = service_of(&primary.service)?;
    let primary_intent = primary_service
        .intents
        .iter()
        .find(|i| i.name == primary.intent)?;

    // Every goal value in goal order, primary first: (goal, slot, value).
    let mut given: Vec<(usize, String, String)> = Vec::new();
    for (g, goal) in request.goals.iter().enumerate() {
        for (slot, value) in &goal.inform {
            given.push((g, slot.clone(), value.clone()));
        }
    }
    let turns = fixed_turns
        .unwrap_or_else(|| (given.len().div_ceil(2) + 1).clamp(request.min, request.max))
        .max(1);
    let giving = (turns - 1).max(1);
    // Turn t gives given[t * len / giving .. (t + 1) * len / giving]; the last turn gives what
    // is left when there is only one.
    let share = |t: usize| {
        if turns == 1 {
            return 0..given.len();
        }
        if t + 1 == turns {
            return given.len()..given.len();
        }
        t * given.len() / giving..(t + 1) * given.len() / giving
    };
    // The value the text never says (Ungrounded): a non-categorical goal value, else a
    // non-categorical slot of the primary service added to the first turn's state.
    let hidden: Option<(usize, String, String)> = faults
        .contains(&LabelFault::Ungrounded)
        .then(|| {
            // One no other value contains (nor equals), or saying that one would say it too.
            let inside_another = |g: usize, slot: &str, value: &str| {
                let value = value.to_lowercase();
                given
                    .iter()
                    .filter(|(g2, s2, _)| !(*g2 == g && s2 == slot))
                    .any(|(_, _, v)| v.to_lowercase().contains(&value))
            };
            given
                .iter()
                .find(|(g, slot, value)| {
                    service_of(&request.goals[*g].service).is_some_and(|s| !s.categorical(slot))
                        && !inside_another(*g, slot, value)
                })
                .cloned()
                .or_else(|| {
                    let slot = primary_service.slots.iter().find(|s| {
                        !s.is_categorical && !primary.inform.iter().any(|(i, _)| i == &s.name)
                    })?;
                    Some((0, slot.name.clone(), "Quillborough Yard".into()))
                })
        })
        .flatten();

    let mut frames: Vec<Frame> = Vec::new();
    let mut out: Vec<Turn> = Vec::new();
    let mut decks = Decks::new(ChaCha8Rng::seed_from_u64(n * 104_729 + 11));
    for t in 0..turns {
        let last = t + 1 == turns;
        let new = &given[share(t)];
        // The primary service is talked about from the first turn on.
        if t == 0 {
            frames.push(Frame {
                service: primary.service.clone(),
                intent: primary.intent.clone(),
                values: Vec::new(),
                requested: Vec::new(),
            });
        }
        let mut said: Vec<String> = Vec::new();
        let mut by_service: Vec<(String, Vec<String>)> = Vec::new();
        for (g, slot, value) in new {
            let goal = &request.goals[*g];
            let at = match frames.iter().position(|f| f.service == goal.service) {
                Some(at) => at,
                None => {
                    frames.push(Frame {
                        service: goal.service.clone(),
                        intent: goal.intent.clone(),
                        values: Vec::new(),
                        requested: Vec::new(),
                    });
                    frames.len() - 1
                }
            };
            frames[at].values.push((slot.clone(), value.clone()));
            let secret = hidden
                .as_ref()
                .is_some_and(|(hg, hs, _)| hg == g && hs == slot);
            if secret {
                continue;
            }
            let phrase = format!("the {} is {value}", label(slot));
            match by_service.iter_mut().find(|(s, _)| *s == goal.service) {
                Some((_, list)) => list.push(phrase),
                None => by_service.push((goal.service.clone(), vec![phrase])),
            }
            said.push(value.clone());
        }
        if t == 0 {
            if let Some((0, slot, value)) = &hidden {
                if !frames[0].values.iter().any(|(s, _)| s == slot) {
                    frames[0].values.push((slot.clone(), value.clone()));
                }
            }
        }
        for f in &mut frames {
            f.requested.clear();
        }
        let mut asks: Vec<String> = Vec::new();
        if last {
            for goal in &request.goals {
                if !frames.iter().any(|f| f.service == goal.service) {
                    frames.push(Frame {
                        service: goal.service.clone(),
                        intent: goal.intent.clone(),
                        values: Vec::new(),
                        requested: Vec::new(),
                    });
                }
                if let Some(f) = frames.iter_mut().find(|f| f.service == goal.service) {
                    f.requested = goal.request.clone();
                    let service = &goal.service;
                    asks.extend(
                        goal.request
                            .iter()
                            .map(|s| format!("the {service} {}", label(s))),
                    );
                }
            }
        }
        let mut user = String::new();
        if t == 0 {
            let words = primary.intent.replace('_', " ");
            let hello = ["Hello", "Hi there", "Good day", "Hey"][rng.random_range(0..4)];
            user.push_str(&format!(
                "{hello}, I need the {} service: I want to {words}.",
                primary.service
            ));
        }
        for (i, (service, phrases)) in by_service.iter().enumerate() {
            let opener = if t == 0 && i == 0 {
                "For that,".to_string()
            } else {
                OPENERS[rng.random_range(0..OPENERS.len())].to_string()
            };
            user.push_str(&format!(
                " {opener} for the {service} {}.",
                phrases.join(" and ")
            ));
        }
        if last {
            if !asks.is_empty() {
                let list = match asks.split_last() {
                    Some((one, [])) => one.clone(),
                    Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                    None => String::new(),
                };
                user.push_str(&format!(" Could you also tell me {list}?"));
            }
            user.push_str(match request.outcome.as_str() {
                "Resolved" => " Please go ahead with it now.",
                "Failed" => " Please check whether it can be done.",
                _ => " Please see what can be done about it.",
            });
        }
        let (text, subject, place) = aside(&mut decks);
        user.push_str(&text);
        let user = user.trim().to_string();

        let mut turn = Turn {
            user,
            assistant: String::new(),
            state: frames.clone(),
            call: None,
            results: Vec::new(),
            handover: false,
        };
        if !last {
            let ack = ACKS[rng.random_range(0..ACKS.len())];
            let question = decks.draw(QUESTION);
            let action = decks.draw(ACTION);
            let note = match rng.random_range(0..4) {
                0 => format!("I will keep {subject} in mind as well."),
                1 => format!("I am sorry to hear about {subject}."),
                2 => format!("Good to know you are near {place}."),
                _ => format!("Meanwhile {action} for {subject}."),
            };
            turn.assistant = if said.is_empty() {
                format!("{action} for {subject} near {place}. {question}")
            } else {
                format!("{ack} {}. {note} {question}", said.join(", "))
            };
        } else {
            let state = frames
                .iter()
                .find(|f| f.service == primary.service)
                .cloned()
                .expect("the primary service's frame");
            let parameters: Vec<(String, String)> = state
                .values
                .iter()
                .filter(|(s, _)| primary_intent.takes(s))
                .cloned()
                .collect();
            let words = primary.intent.replace('_', " ");
            let call = Call {
                service: primary.service.clone(),
                method: primary.intent.clone(),
                parameters,
            };
            match request.outcome.as_str() {
                "Resolved" => {
                    // An intent without result slots returns what it was called with.
                    let row: Vec<(String, String)> = if primary_intent.result_slots.is_empty() {
                        call.parameters.clone()
                    } else {
                        primary_intent
                            .result_slots
                            .iter()
                            .map(|s| {
                                (
                                    s.clone(),
                                    result_value(&mut rng, primary_service, s, &state),
                                )
                            })
                            .collect()
                    };
                    let told: Vec<String> = row
                        .iter()
                        .filter(|(s, _)| primary.request.contains(s) || s.ends_with("ref"))
                        .map(|(s, v)| format!("the {} is {v}", label(s)))
                        .collect();
                    let done = ["Done", "There we go", "All sorted"][rng.random_range(0..3)];
                    let extra = match rng.random_range(0..3) {
                        0 => format!(" Good luck with {subject}."),
                        1 => format!(" Enjoy your time near {place}."),
                        _ => String::new(),
                    };
                    turn.assistant = format!(
                        "{done}: your request to {words} is confirmed{}. You are all set.{extra}",
                        if told.is_empty() {
                            String::new()
                        } else {
                            format!(", and {}", told.join(", "))
                        }
                    );
                    turn.results = vec![row];
                    turn.call = Some(call);
                }
                "Failed" => {
                    turn.assistant = format!(
                        "Unfortunately the {} system has nothing for your request to {words}, so it is not possible today and I am unable to change that. {}",
                        primary.service,
                        [
                            format!("I know {subject} is weighing on you too."),
                            format!("Please take care around {place}."),
                        ][rng.random_range(0..2)]
                    );
                    turn.call = Some(call);
                }
                _ => {
                    turn.assistant = format!(
                        "This request to {words} needs a person, so I am escalating your case to a supervisor, who will contact you {}.",
                        ["tomorrow", "within a day", "this afternoon"][rng.random_range(0..3)]
                    );
                    turn.handover = true;
                }
            }
        }
        out.push(turn);
    }
    plant(&mut out, faults, &request, &mut rng);
    Some(render(&out))
}

/// Plants the structural faults (Ungrounded is planted while the text is written).
fn plant(turns: &mut [Turn], faults: &[LabelFault], request: &Request, rng: &mut ChaCha8Rng) {
    let primary = &request.goals[0];
    let service = request
        .services
        .iter()
        .find(|s| s.service_name == primary.service)
        .expect("read_request found it");
    let intent = service
        .intents
        .iter()
        .find(|i| i.name == primary.intent)
        .expect("read_request found it");
    let last = turns.len() - 1;
    for fault in faults {
        match fault {
            LabelFault::Ungrounded => {}
            LabelFault::UnknownSlot => {
                let slot = format!("{}-favourite_colour", primary.service);
                let colour = ["teal", "amber", "violet"][rng.random_range(0..3)];
                turns[0]
                    .user
                    .push_str(&format!(" My favourite colour is {colour}."));
                for turn in turns.iter_mut() {
                    if let Some(f) = turn.state.iter_mut().find(|f| f.service == primary.service) {
                        f.values.push((slot.clone(), colour.to_string()));
                    }
                }
            }
            LabelFault::Categorical => {
                // In the first goal's service that has a categorical slot (the primary's if it
                // has one): a slot its goal does not give, else one it gives, set out of range.
                let Some((goal, owner, slot)) = request.goals.iter().find_map(|goal| {
                    let owner = request
                        .services
                        .iter()
                        .find(|s| s.service_name == goal.service)?;
                    let given = |s: &str| goal.inform.iter().any(|(g, _)| g == s);
                    let slot = owner
                        .slots
                        .iter()
                        .filter(|s| s.is_categorical && !s.possible_values.is_empty())
                        .min_by_key(|s| given(&s.name))?;
                    Some((goal, owner, slot))
                }) else {
                    continue;
                };
                let bad = "somewhere odd".to_string();
                for turn in turns.iter_mut() {
                    if let Some(f) = turn.state.iter_mut().find(|f| f.service == goal.service) {
                        f.values.retain(|(s, _)| *s != slot.name);
                        f.values.push((slot.name.clone(), bad.clone()));
                    }
                    if owner.service_name != primary.service {
                        continue;
                    }
                    if let Some(call) = &mut turn.call {
                        call.parameters.retain(|(s, _)| *s != slot.name);
                        if intent.takes(&slot.name) {
                            call.parameters.push((slot.name.clone(), bad.clone()));
                        }
                    }
                }
            }
            LabelFault::DroppedSlot => {
                // The first value given, gone from the next turn's state (back after it).
                let Some((at, service, slot)) =
                    turns[..last].iter().enumerate().find_map(|(t, turn)| {
                        turn.state.iter().find_map(|f| {
                            f.values
                                .first()
                                .map(|(s, _)| (t + 1, f.service.clone(), s.clone()))
                        })
                    })
                else {
                    continue;
                };
                if let Some(f) = turns[at].state.iter_mut().find(|f| f.service == service) {
                    f.values.retain(|(s, _)| *s != slot);
                }
            }
            LabelFault::WrongCall => {
                if turns[last].call.is_none() {
                    // Escalated makes no call: one that found nothing, to be wrong in.
                    let state = turns[last]
                        .state
                        .iter()
                        .find(|f| f.service == primary.service)
                        .cloned();
                    turns[last].call = Some(Call {
                        service: primary.service.clone(),
                        method: primary.intent.clone(),
                        parameters: state
                            .map(|f| {
                                f.values
                                    .into_iter()
                                    .filter(|(s, _)| intent.takes(s))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    });
                    turns[last].results.clear();
                }
                let call = turns[last].call.as_mut().expect("a call");
                match intent.required_slots.first() {
                    Some(required) => call.parameters.retain(|(s, _)| s != required),
                    None => {
                        let said = turns[0].user.split(' ').next().unwrap_or("Hello");
                        let slot = service
                            .slots
                            .iter()
                            .find(|s| !s.is_categorical && !intent.takes(&s.name))
                            .or_else(|| service.slots.iter().find(|s| !intent.takes(&s.name)));
                        match slot {
                            Some(s) => call.parameters.push((
                                s.name.clone(),
                                said.trim_matches(|c: char| !c.is_alphanumeric())
                                    .to_string(),
                            )),
                            None => call.method = format!("{}_now", primary.intent),
                        }
                    }
                }
            }
            LabelFault::OutcomeCalls => match request.outcome.as_str() {
                "Resolved" => turns[last].results.clear(),
                "Failed" => {
                    let row: Vec<(String, String)> = intent
                        .result_slots
                        .iter()
                        .take(1)
                        .map(|s| (s.clone(), "12 Mill Road".to_string()))
                        .collect();
                    let row = if row.is_empty() {
                        vec![(
                            primary
                                .inform
                                .first()
                                .map_or_else(|| service.slots[0].name.clone(), |(s, _)| s.clone()),
                            "found".to_string(),
                        )]
                    } else {
                        row
                    };
                    turns[last].results = vec![row];
                }
                _ => turns[last].handover = false,
            },
        }
    }
}

fn pairs(list: &[(String, String)]) -> Value {
    list.iter()
        .map(|(slot, value)| json!({"slot": slot, "value": value}))
        .collect()
}

/// The answer's JSON, as the request's format asks.
fn render(turns: &[Turn]) -> String {
    let turns: Vec<Value> = turns
        .iter()
        .map(|t| {
            json!({
                "user": t.user,
                "state": t.state.iter().map(|f| json!({
                    "service": f.service,
                    "active_intent": f.intent,
                    "slot_values": pairs(&f.values),
                    "requested_slots": f.requested,
                })).collect::<Vec<_>>(),
                "assistant": t.assistant,
                "service_call": t.call.as_ref().map(|c| json!({
                    "service": c.service, "method": c.method, "parameters": pairs(&c.parameters),
                })),
                "service_results": t.results.iter().map(|r| pairs(r)).collect::<Vec<_>>(),
                "handover": t.handover,
            })
        })
        .collect();
    json!({ "turns": turns }).to_string()
}
