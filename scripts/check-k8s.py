#!/usr/bin/env python3
"""Checks dgen's Kubernetes manifests: each document against deploy/k8s/job.schema.json (the
batch/v1 Job fields they use, unknown keys refused, and the settings dgen's Jobs must hold),
then what the schema cannot say: an Indexed Job's DGEN_SHARD_COUNT equals its completions, its
command is the entrypoint the image installs, every volume mount names a volume, the first
podFailurePolicy rule that matches exit code 3 (the budget) of each container fails the Job or
the index; and the Dockerfile's base images are pinned by digest.

Usage: check-k8s.py SCHEMA DOCKERFILE MANIFEST...   (exit 1 with every problem listed)"""

import json
import re
import sys

import jsonschema
import yaml

ENTRYPOINT = "/usr/local/bin/dgen-entrypoint"
# dgen run's exit code when it stopped at --max_cost (src/run/budget.rs, EXIT_BUDGET).
EXIT_BUDGET = 3


def exit_rule(rules, container, code):
    """The first rule that decides a failure of `container` with exit `code` (rules are
    evaluated in order; pod-condition rules are not about exit codes)."""
    for rule in rules:
        on = rule.get("onExitCodes")
        if on is None or on.get("containerName", container) != container:
            continue
        hit = code in on["values"]
        if hit == (on["operator"] == "In"):
            return rule
    return None


def unpinned_images(dockerfile):
    """FROM lines whose image is not pinned by digest (a stage named earlier is fine)."""
    stages, bad = set(), []
    for line in dockerfile.splitlines():
        m = re.match(r"\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if not m:
            continue
        image, name = m.group(1), m.group(2)
        if image not in stages and not re.search(r"@sha256:[0-9a-f]{64}$", image):
            bad.append(image)
        if name:
            stages.add(name)
    return bad


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def semantic(doc, dockerfile):
    problems = []
    spec = doc["spec"]
    pod = spec["template"]["spec"]
    volumes = {v["name"] for v in pod.get("volumes", [])}
    for c in pod["containers"]:
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                problems.append(f"container {c['name']} mounts volume {m['name']!r}, which the Pod does not define")
    rules = spec.get("podFailurePolicy", {}).get("rules", [])
    for c in pod["containers"]:
        rule = exit_rule(rules, c["name"], EXIT_BUDGET)
        if rule is None or rule["action"] not in ("FailJob", "FailIndex"):
            action = "no rule" if rule is None else f"the rule {rule['action']}"
            problems.append(
                f"container {c['name']}: exit code {EXIT_BUDGET} (dgen run stopped at --max_cost) "
                f"meets {action} first; a retry would stop at the budget again: make the first "
                f"rule for it FailIndex or FailJob"
            )
    if spec.get("completionMode") == "Indexed":
        for c in pod["containers"]:
            env = env_of(c)
            count = env.get("DGEN_SHARD_COUNT")
            if count != str(spec["completions"]):
                problems.append(
                    f"container {c['name']}: DGEN_SHARD_COUNT is {count!r} but completions is "
                    f"{spec['completions']}; the shard count must equal the completions"
                )
            if "DGEN_TOTAL" not in env:
                problems.append(f"container {c['name']}: DGEN_TOTAL (the full plan's size) is not set")
            if c.get("command", [None])[0] != ENTRYPOINT:
                problems.append(f"container {c['name']}: the command must be {ENTRYPOINT}, the entrypoint the image installs")
        if f"COPY deploy/entrypoint.sh {ENTRYPOINT}" not in dockerfile:
            problems.append(f"{sys.argv[2]} does not install deploy/entrypoint.sh as {ENTRYPOINT}")
    return problems


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    schema = json.load(open(sys.argv[1]))
    dockerfile = open(sys.argv[2]).read()
    validator = jsonschema.Draft202012Validator(schema)
    failed = False
    for image in unpinned_images(dockerfile):
        print(f"{sys.argv[2]}: FROM {image} is not pinned by digest (IMAGE:TAG@sha256:...)", file=sys.stderr)
        failed = True
    for path in sys.argv[3:]:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        if not docs:
            print(f"{path}: no document", file=sys.stderr)
            failed = True
        for n, doc in enumerate(docs):
            where = f"{path} (document {n + 1})"
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            for e in errors:
                at = "/".join(str(p) for p in e.absolute_path) or "(top)"
                print(f"{where}: {at}: {e.message}", file=sys.stderr)
            problems = [] if errors else semantic(doc, dockerfile)
            for p in problems:
                print(f"{where}: {p}", file=sys.stderr)
            if errors or problems:
                failed = True
            else:
                mode = doc["spec"].get("completionMode", "NonIndexed")
                print(f"{where}: valid {doc['kind']} {doc['metadata']['name']} ({mode})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
