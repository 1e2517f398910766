#!/usr/bin/env python3
"""Reads dgen's exports the way their consumers do and checks what they rely on (stdlib only).

  format_checks.py sgd DIR     SGD split: what google-research's schema_guided_dst code
                               (baseline/data_utils.py, schema.py, evaluate.py) assumes when it
                               reads dialogues_*.json against schema.json.
  format_checks.py chat FILE   OpenAI chat fine-tuning JSONL: the documented format rules.

Prints "ok: ..." and exits 0, or prints every problem found and exits 1.
"""

import glob
import json
import os
import re
import sys

SYSTEM_ACTS = {"INFORM", "REQUEST", "CONFIRM", "OFFER", "NOTIFY_SUCCESS", "NOTIFY_FAILURE",
               "INFORM_COUNT", "OFFER_INTENT", "REQ_MORE", "GOODBYE"}
USER_ACTS = {"INFORM_INTENT", "NEGATE_INTENT", "AFFIRM_INTENT", "INFORM", "REQUEST", "AFFIRM",
             "NEGATE", "SELECT", "REQUEST_ALTS", "THANK_YOU", "GOODBYE"}
DONTCARE = "dontcare"


def token_bounds(utterance):
    """data_utils.py's alignments: the characters where its naive tokens (runs of ASCII letters
    and digits, and every other character alone) start and end, white space left out. A span
    must start and end on them, or the reader's lookup fails (a KeyError)."""
    starts, ends = set(), set()
    at = 0
    for token in (t for t in re.split(r"([^a-zA-Z0-9])", utterance) if t):
        if token.strip():
            starts.add(at)
            ends.add(at + len(token) - 1)
        at += len(token)
    return starts, ends


def check_sgd(folder):
    problems = []
    bad = problems.append
    with open(os.path.join(folder, "schema.json"), encoding="utf-8") as f:
        schema = {s["service_name"]: s for s in json.load(f)}
    for name, s in schema.items():
        # schema.py: ServiceSchema reads these fields of every service.
        for key in ("slots", "intents"):
            if not isinstance(s.get(key), list):
                bad(f"schema {name}: no {key} list")
        slot_names = {x["name"] for x in s["slots"]}
        for x in s["slots"]:
            if x.get("is_categorical") and not x.get("possible_values"):
                bad(f"schema {name}: categorical slot {x['name']} has no possible_values")
        for i in s["intents"]:
            used = list(i.get("required_slots", [])) + list(i.get("optional_slots", {}))
            for slot in used + list(i.get("result_slots", [])):
                if slot not in slot_names:
                    bad(f"schema {name}: intent {i['name']} names unknown slot {slot}")
            if not isinstance(i.get("optional_slots", {}), dict):
                bad(f"schema {name}: intent {i['name']}: optional_slots is not a map")
    files = sorted(glob.glob(os.path.join(folder, "dialogues_*.json")))
    if not files:
        bad(f"{folder}: no dialogues_*.json")
    ids = set()
    count = 0
    for path in files:
        with open(path, encoding="utf-8") as f:
            dialogues = json.load(f)
        if not isinstance(dialogues, list):
            bad(f"{path}: not a list")
            continue
        for d in dialogues:
            count += 1
            check_sgd_dialogue(d, schema, ids, bad)
    if not problems:
        print(f"ok: {count} dialogues in {len(files)} files, {len(schema)} services")
    return problems


def check_sgd_dialogue(d, schema, ids, bad):
    did = d.get("dialogue_id")
    # evaluate.py: dialogues are keyed by their id.
    if not isinstance(did, str) or did in ids:
        bad(f"dialogue {did!r}: missing or repeated dialogue_id")
    ids.add(did)
    for s in d.get("services", []):
        if s not in schema:
            bad(f"{did}: service {s} is not in schema.json")
    turns = d.get("turns", [])
    states = {}
    if not turns or len(turns) % 2:
        bad(f"{did}: {len(turns)} turns; SGD dialogues are USER, SYSTEM pairs")
    for t_idx, turn in enumerate(turns):
        # data_utils.py: even turns are the user's, odd the system's.
        speaker = "USER" if t_idx % 2 == 0 else "SYSTEM"
        where = f"{did} turn {t_idx}"
        if turn.get("speaker") != speaker:
            bad(f"{where}: speaker {turn.get('speaker')!r}, expected {speaker}")
        utterance = turn.get("utterance")
        if not isinstance(utterance, str) or not utterance:
            bad(f"{where}: no utterance")
            continue
        for frame in turn.get("frames", []):
            service = frame.get("service")
            if speaker == "USER":
                state = (frame.get("state") or {}).get("slot_values", {})
                states.setdefault(service, {}).update(state)
            check_frame(frame, speaker, utterance, schema, d.get("services", []),
                        states.get(service, {}), where, bad)


def check_frame(frame, speaker, utterance, schema, services, states, where, bad):
    name = frame.get("service")
    if name not in services:
        bad(f"{where}: frame service {name} is not one of the dialogue's services")
    service = schema.get(name)
    if service is None:
        return
    where = f"{where} {name}"
    slots = {x["name"]: x for x in service["slots"]}
    intents = {i["name"] for i in service["intents"]}
    noncat = {n for n, x in slots.items() if not x.get("is_categorical")}
    for key in ("actions", "slots"):
        if not isinstance(frame.get(key), list):
            bad(f"{where}: frame has no {key} list")
            return
    said = {}
    for act in frame["actions"]:
        kinds = USER_ACTS if speaker == "USER" else SYSTEM_ACTS
        if act.get("act") not in kinds:
            bad(f"{where}: act {act.get('act')} is not a {speaker} act")
        slot = act.get("slot", "")
        if slot not in ("", "intent", "count") and slot not in slots:
            bad(f"{where}: act on unknown slot {slot}")
        for key in ("values", "canonical_values"):
            if not isinstance(act.get(key), list):
                bad(f"{where}: act {act.get('act')} has no {key} list")
        said.setdefault(slot, set()).update(act.get("values", []))
    if speaker == "SYSTEM":
        # The reader matches a system span against the next user state's values; the call's
        # and results' values are what a system says.
        call = frame.get("service_call") or {}
        for slot, value in call.get("parameters", {}).items():
            said.setdefault(slot, set()).add(value)
        for result in frame.get("service_results", []) or []:
            for slot, value in result.items():
                said.setdefault(slot, set()).add(value)
        for slot, values in states.items():
            said.setdefault(slot, set()).update(values)
    if speaker == "USER":
        state = frame.get("state")
        if not isinstance(state, dict):
            bad(f"{where}: user frame without state")
            return
        # data_utils.py: the intent, requested slots and slot values index the schema.
        if state.get("active_intent") != "NONE" and state.get("active_intent") not in intents:
            bad(f"{where}: active_intent {state.get('active_intent')} is not an intent or NONE")
        for slot in state.get("requested_slots", []):
            if slot not in slots:
                bad(f"{where}: requested slot {slot} is not a slot of {name}")
        for slot, values in state.get("slot_values", {}).items():
            if slot not in slots:
                bad(f"{where}: state slot {slot} is not a slot of {name}")
                continue
            if not isinstance(values, list) or not values:
                bad(f"{where}: state slot {slot} has no values")
                continue
            if slot not in noncat and values[0] != DONTCARE:
                if values[0] not in slots[slot].get("possible_values", []):
                    bad(f"{where}: categorical {slot}={values[0]} is not a possible value")
            said.setdefault(slot, set()).update(values)
        for key in ("service_call", "service_results"):
            if key in frame:
                bad(f"{where}: a user frame has {key}")
    else:
        if "state" in frame:
            bad(f"{where}: a system frame has a state")
        call = frame.get("service_call")
        if call is not None:
            if call.get("method") not in intents:
                bad(f"{where}: service_call.method {call.get('method')} is not an intent")
            for slot in call.get("parameters", {}):
                if slot not in slots:
                    bad(f"{where}: call parameter {slot} is not a slot")
            if not isinstance(frame.get("service_results"), list):
                bad(f"{where}: a service_call without a service_results list")
        for result in frame.get("service_results", []) or []:
            for slot in result:
                if slot not in slots:
                    bad(f"{where}: result slot {slot} is not a slot")
    for span in frame["slots"]:
        slot, start, end = span.get("slot"), span.get("start"), span.get("exclusive_end")
        # data_utils.py: spans are of non-categorical slots, character offsets.
        if slot not in noncat:
            bad(f"{where}: span of {slot}, not a non-categorical slot")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(utterance)):
            bad(f"{where}: span {start}..{end} outside the utterance")
            continue
        starts, ends = token_bounds(utterance)
        if start not in starts or end - 1 not in ends:
            bad(f"{where}: span {start}..{end} of {slot} cuts a word ({utterance[start:end]!r})")
        text = utterance[start:end]
        if text not in said.get(slot, set()):
            bad(f"{where}: span text {text!r} of {slot} is none of its values {sorted(said.get(slot, []))}")


def check_chat(path):
    problems = []
    bad = problems.append
    roles = {"system", "user", "assistant", "tool"}
    count = 0
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            count += 1
            where = f"line {n}"
            example = json.loads(line)
            messages = example.get("messages")
            if not isinstance(messages, list) or not messages:
                bad(f"{where}: no messages")
                continue
            if set(example) - {"messages", "tools", "parallel_tool_calls"}:
                bad(f"{where}: unknown keys {sorted(set(example))}")
            tools = {}
            for tool in example.get("tools", []):
                fn = tool.get("function", {})
                if tool.get("type") != "function" or not isinstance(fn.get("name"), str):
                    bad(f"{where}: a tool is not {{type: function, function: {{name}}}}")
                    continue
                name = fn["name"]
                if not name or len(name) > 64 or any(not (c.isascii() and (c.isalnum() or c in "_-")) for c in name):
                    bad(f"{where}: tool name {name!r} is not ^[a-zA-Z0-9_-]{{1,64}}$")
                if name in tools:
                    bad(f"{where}: tool {name} twice")
                params = fn.get("parameters", {})
                if params.get("type") != "object" or not isinstance(params.get("properties"), dict):
                    bad(f"{where}: tool {name}: parameters is not a JSON schema object")
                for r in params.get("required", []):
                    if r not in params.get("properties", {}):
                        bad(f"{where}: tool {name} requires undeclared {r}")
                tools[name] = params
            pending = []
            has_assistant = False
            for m_idx, m in enumerate(messages):
                at = f"{where} message {m_idx}"
                role = m.get("role")
                if role not in roles:
                    bad(f"{at}: role {role!r}")
                    continue
                if role == "tool":
                    if not pending or m.get("tool_call_id") != pending[0]:
                        bad(f"{at}: tool message answers {m.get('tool_call_id')!r}, expected {pending[:1]}")
                    else:
                        pending.pop(0)
                    if not isinstance(m.get("content"), str):
                        bad(f"{at}: tool message without string content")
                    continue
                if pending:
                    bad(f"{at}: tool calls {pending} were not answered before the next message")
                    pending = []
                calls = m.get("tool_calls")
                if role == "assistant":
                    has_assistant = True
                if calls is not None:
                    if role != "assistant" or not isinstance(calls, list) or not calls:
                        bad(f"{at}: tool_calls on a {role} message or empty")
                        continue
                    for c in calls:
                        fn = c.get("function", {})
                        if c.get("type") != "function" or not c.get("id"):
                            bad(f"{at}: a tool call without id or type function")
                        if tools and fn.get("name") not in tools:
                            bad(f"{at}: call of {fn.get('name')}, not a listed tool")
                        try:
                            args = json.loads(fn.get("arguments"))
                            if not isinstance(args, dict):
                                bad(f"{at}: arguments are not a JSON object")
                        except (TypeError, ValueError):
                            bad(f"{at}: arguments are not valid JSON")
                        pending.append(c.get("id"))
                elif not isinstance(m.get("content"), str) or not m["content"]:
                    bad(f"{at}: a {role} message needs content or tool_calls")
            if pending:
                bad(f"{where}: tool calls {pending} never answered")
            if not has_assistant:
                bad(f"{where}: no assistant message to learn from")
    if not problems:
        print(f"ok: {count} examples")
    return problems


def main():
    kind, path = sys.argv[1], sys.argv[2]
    problems = check_sgd(path) if kind == "sgd" else check_chat(path)
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
