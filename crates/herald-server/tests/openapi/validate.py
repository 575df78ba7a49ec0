"""Checks crates/herald-hub/openapi.json for tests/openapi.rs, with real validators.

    validate.py DOC spec            the document is valid OpenAPI 3.1 (openapi-spec-validator)
    validate.py DOC check SAMPLES   each sample agrees with the document (jsonschema, 2020-12)

SAMPLES is a JSON list. A response sample is {"method", "path" (the document's template),
"status", "contentType", "headers" (lower-case names), "body" (parsed JSON or null)}: its status
must be documented for that operation, its content type and required headers too, and its body
must match the response schema. A schema sample is {"schema": component name, "body"}. Prints one
line per disagreement and exits 1 if there is any.
"""

import json
import sys

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate


def pointer(*parts):
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def resolve(doc, node, at):
    """Follows a $ref (local only); returns the node and its JSON pointer."""
    while isinstance(node, dict) and "$ref" in node:
        at = node["$ref"]
        node = doc
        for part in at[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, at


def schema_errors(doc, at, body):
    # The whole document is the root resource, so every local $ref resolves.
    validator = Draft202012Validator(dict(doc, **{"$ref": at}))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(body)]


def check_response(doc, sample):
    where = f"{sample['method'].upper()} {sample['path']} -> {sample['status']}"
    operation = doc["paths"].get(sample["path"], {}).get(sample["method"].lower())
    if operation is None:
        return [f"{where}: no such operation in the document"]
    responses_at = pointer("paths", sample["path"], sample["method"].lower(), "responses")
    status = str(sample["status"])
    if status not in operation["responses"]:
        return [f"{where}: status not documented (documented: {', '.join(operation['responses'])})"]
    response, at = resolve(doc, operation["responses"][status], responses_at + "/" + status)
    problems = []
    for name, header in response.get("headers", {}).items():
        if header.get("required") and name.lower() not in sample.get("headers", {}):
            problems.append(f"{where}: required header {name} missing")
    content = response.get("content")
    media = (sample.get("contentType") or "").split(";")[0].strip()
    if not content:
        if media:
            problems.append(f"{where}: documented without a body, answered {media}")
        return problems
    if media not in content:
        return problems + [f"{where}: content type {media!r} not documented ({', '.join(content)})"]
    if media == "application/json":
        for error in schema_errors(doc, f"{at}/content/{pointer(media)[2:]}/schema", sample["body"]):
            problems.append(f"{where}: {error} in {json.dumps(sample['body'])[:300]}")
    return problems


def main():
    doc_path, command = sys.argv[1], sys.argv[2]
    with open(doc_path) as file:
        doc = json.load(file)
    if command == "spec":
        validate(doc)
        print("valid OpenAPI", doc["openapi"])
        return 0
    with open(sys.argv[3]) as file:
        samples = json.load(file)
    problems = []
    for sample in samples:
        if "schema" in sample:
            for error in schema_errors(doc, pointer("components", "schemas", sample["schema"]), sample["body"]):
                problems.append(f"{sample['schema']}: {error} in {json.dumps(sample['body'])[:300]}")
        else:
            problems.extend(check_response(doc, sample))
    for problem in problems:
        print(problem)
    print(f"{len(samples)} samples, {len(problems)} disagreements")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
