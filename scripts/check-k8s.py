#!/usr/bin/env python3
"""Checks dgen's Kubernetes manifests: each document against deploy/k8s/job.schema.json (the
batch/v1 Job fields they use; unknown keys refused), then what the schema cannot say: an
Indexed Job's DGEN_SHARD_COUNT equals its completions, its command is the entrypoint the image
installs, every volume mount names a volume.

Usage: check-k8s.py SCHEMA DOCKERFILE MANIFEST...   (exit 1 with every problem listed)"""

import json
import sys

import jsonschema
import yaml

ENTRYPOINT = "/usr/local/bin/dgen-entrypoint"


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
