"""The stream half of scripts/fuzz-api: fuzzes the two SSE endpoints from crates/herald-hub/openapi.json.

Schemathesis's runner reads a whole body, and a stream never ends, so this drives its case
generator (valid and invalid requests, Hypothesis underneath) and reads each answer itself: a
documented status; for 200 the `text/event-stream` headers and the `connected` event first, its
data matching ConnectedEventData; for an error, the JSON error the document gives that status.

    python scripts/fuzz_streams.py crates/herald-hub/openapi.json http://127.0.0.1:8080 EXAMPLES

EXAMPLES is per operation and per mode (valid, invalid). Exits 1 on any disagreement.
"""

import json
import sys
import time

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from jsonschema import Draft202012Validator
from schemathesis.generation import GenerationMode

STREAM_PATHS = ("/api/stream", "/api/channels/{channel}/stream")


def main():
    doc_path, base, examples = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(doc_path) as file:
        doc = json.load(file)
    schema = schemathesis.openapi.from_path(doc_path)

    def validator(ref):
        # The whole document is the root resource, so every local $ref resolves.
        return Draft202012Validator(dict(doc, **{"$ref": ref}))

    connected = validator("#/components/schemas/ConnectedEventData")
    statuses, failures = {}, []

    def check(path, case):
        kwargs = case.as_transport_kwargs(base_url=base)
        kwargs.update(stream=True, timeout=5)
        try:
            response = requests.request(**kwargs)
        except requests.RequestException as err:
            failures.append(f"{kwargs['method']} {kwargs['url']}: no answer ({err})")
            return
        with response:
            status = str(response.status_code)
            statuses[status] = statuses.get(status, 0) + 1
            where = f"GET {response.url} headers={kwargs.get('headers')} -> {status}"
            responses = doc["paths"][path]["get"]["responses"]
            if status not in responses:
                failures.append(f"{where}: undocumented status; body {response.text[:200]!r}")
            elif status == "200":
                failures.extend(f"{where}: {p}" for p in stream_problems(response, connected))
            elif status != "204":
                ref = responses[status]["$ref"] + "/content/application~1json/schema"
                body = response.json()
                failures.extend(f"{where}: {body}: {e.message}" for e in validator(ref).iter_errors(body))

    for path in STREAM_PATHS:
        operation = schema[path]["GET"]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation.as_strategy(generation_mode=mode), lambda case, path=path: check(path, case), examples)

    cases = sum(statuses.values())
    print(f"streams: {cases} cases, statuses {dict(sorted(statuses.items()))}, {len(failures)} failures")
    for failure in dict.fromkeys(failures):
        print("  " + failure)
    return 1 if failures else 0


def fuzz(strategy, check, examples):
    """Runs `check` on `examples` cases drawn from `strategy` (derandomized: the same every run)."""

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case):
        check(case)

    run()


def stream_problems(response, connected):
    """What is wrong with an accepted stream's headers and first events."""
    problems = []
    if response.headers.get("content-type") != "text/event-stream":
        problems.append(f"content type {response.headers.get('content-type')}")
    for name in ("cache-control", "x-accel-buffering"):
        if name not in response.headers:
            problems.append(f"header {name} missing")
    # Byte by byte: a body without chunked encoding would otherwise be read to its end.
    head, deadline = b"", time.monotonic() + 5
    for byte in response.iter_content(chunk_size=1):
        head += byte
        if (b"event: connected" in head and head.endswith(b"\n\n")) or time.monotonic() > deadline:
            break
    text = head.decode("utf-8", "replace")
    data = [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]
    if "event: connected" not in text or not data:
        return problems + [f"no connected event first: {text[:200]!r}"]
    problems.extend(f"connected data {data[0]}: {e.message}" for e in connected.iter_errors(json.loads(data[0])))
    return problems


if __name__ == "__main__":
    sys.exit(main())
