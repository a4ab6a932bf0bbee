"""The OpenAPI document (`reactor/serve/openapi.json`), loaded once, and a check that an
answer is what the document says it is (its schema followed through every `$ref`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOC_URI = "urn:pod5-reactor:openapi"


def load_document() -> dict[str, Any]:
    text = resources.files("reactor.serve").joinpath("openapi.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document


DOCUMENT = load_document()
REGISTRY: Registry[Any] = Registry().with_resource(
    DOC_URI, Resource.from_contents(DOCUMENT, default_specification=DRAFT202012)
)


def ecma_pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    """`pattern` as JSON Schema means it: an ECMA-262 regex, where a final `$` is the end
    of the string. In Python's `re` it also matches before a final newline, so the stock
    validator would take "gpu\n" as an engine id the handler refuses."""
    if not validator.is_type(instance, "string"):
        return
    python_pattern = pattern.removesuffix("$") + r"\Z" if pattern.endswith("$") else pattern
    if re.search(python_pattern, instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = validators.extend(Draft202012Validator, {"pattern": ecma_pattern})


def pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def response_entry(path: str, status: int, method: str = "get") -> tuple[str, dict[str, Any]]:
    """The documented response for `status` on `method` `path`, with `$ref`s followed;
    and its JSON pointer in the document."""
    where = pointer("paths", path, method, "responses", str(status))
    entry = DOCUMENT["paths"][path][method]["responses"].get(str(status))
    assert entry is not None, f"{method.upper()} {path} does not document status {status}"
    while "$ref" in entry:
        where = entry["$ref"].removeprefix("#/")
        entry = REGISTRY.resolver(DOC_URI).lookup(entry["$ref"]).contents
    return where, entry


def assert_documented(path: str, status: int, body: Any, method: str = "get") -> None:
    """`body` validates against the schema documented for (`method` `path`, `status`)."""
    where, entry = response_entry(path, status, method)
    assert "application/json" in entry["content"], where
    schema_ref = f"{DOC_URI}#/{where}/content/application~1json/schema"
    validator = Validator({"$ref": schema_ref}, registry=REGISTRY)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, (path, status, errors)
