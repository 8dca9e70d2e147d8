"""docs/definitions.md and the meta-schemas cannot drift apart.

* Every property name and enum value in engine/schema/*.schema.json appears in the doc in backticks,
  and every key in a doc table headed "Key" exists in a schema.
* Every ```yaml example is checked: a whole file (``# file: <path>``) against the meta-schema for
  that path, and all of them together load as one definitions directory; a piece of a file
  (``# fragment: <schema>#<pointer>``) against that part of the schema.
* Every example error message is the real output for a file in tests/data/invalid/.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from ruamel.yaml import YAML

from engine import builtin_actions  # noqa: F401 - registers the shipped actions
from engine.actions import ACTIONS
from engine.expressions import BUILTINS
from engine.loader import SCHEMA_FILES, load_definitions
from engine.spec import FIELD_TYPES, LEVELS
from engine.yamlsource import plain

from .test_loader import INVALID, read_case

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "definitions.md"
OLD_SPELLING = ROOT / "tests" / "data" / "old_spelling"
TEXT = DOC.read_text(encoding="utf-8")
SCHEMAS = {name: json.loads((ROOT / "engine" / "schema" / f"{name}.schema.json").read_text(encoding="utf-8"))
           for name in SCHEMA_FILES}
BASE_URI = ""

Block = tuple[int, str, str]  # (line in the doc, language, body)


def code_blocks(text: str) -> list[Block]:
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if m := re.fullmatch(r"```(\w*)", lines[i]):
            start, body = i + 1, []
            i += 1
            while lines[i] != "```":
                body.append(lines[i])
                i += 1
            blocks.append((start, m.group(1), "\n".join(body) + "\n"))
        i += 1
    return blocks


BLOCKS = code_blocks(TEXT)
YAML_BLOCKS = [b for b in BLOCKS if b[1] == "yaml"]


def backticked(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", text))


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def property_names() -> set[str]:
    return {name for schema in SCHEMAS.values() for node in walk(schema)
            if isinstance(node.get("properties"), dict) for name in node["properties"]}


def enum_values() -> set[str]:
    return {str(v) for schema in SCHEMAS.values() for node in walk(schema)
            if isinstance(node.get("enum"), list) for v in node["enum"]}


def table_rows(header: str) -> list[str]:
    """First cells (inside backticks) of every table whose header's first cell is ``header``."""
    cells, in_table = [], False
    for line in TEXT.splitlines():
        if not line.startswith("|"):
            in_table = False
            continue
        first = line.split("|")[1].strip()
        if re.fullmatch(r"-+", first):
            continue
        if not in_table:
            in_table = first == header
            continue
        if m := re.fullmatch(r"`([^`]+)`", first):
            cells.append(m.group(1))
    return cells


# --------------------------------------------------------------------------- keys

@pytest.mark.parametrize("name", sorted(property_names()))
def test_every_schema_key_is_documented(name: str) -> None:
    assert name in backticked(TEXT), f"`{name}` is a key in engine/schema but not in docs/definitions.md"
    assert name in table_rows("Key"), f"`{name}` needs a row in a '| Key | ...' table of docs/definitions.md"


@pytest.mark.parametrize("value", sorted(enum_values()))
def test_every_schema_enum_value_is_documented(value: str) -> None:
    assert value in backticked(TEXT), f"`{value}` is allowed by engine/schema but not in docs/definitions.md"


def test_every_documented_key_exists_in_a_schema() -> None:
    documented = set(table_rows("Key"))
    assert len(documented) >= 40  # the tables were found at all
    assert documented <= property_names(), f"documented but in no schema: {documented - property_names()}"


def test_every_field_type_has_a_row_and_the_schema_agrees_with_the_engine() -> None:
    (type_enum,) = [n["properties"]["type"]["enum"] for n in walk(SCHEMAS["form"])
                    if isinstance(n.get("properties"), dict) and "enum" in n["properties"].get("type", {})]
    assert set(type_enum) == FIELD_TYPES
    assert sorted(table_rows("Type")) == sorted(FIELD_TYPES)
    # every enum naming org levels names all of them, in order (role scope, role_scope and assign.unit add
    # their own values: unit, all, parent)
    level_enums = [n["enum"] for n in walk(SCHEMAS) if n.get("enum") and "grid" in n["enum"]]
    assert len(level_enums) >= 2 and all(tuple(v for v in e if v in LEVELS) == LEVELS for e in level_enums)


def test_every_helper_and_action_is_documented() -> None:
    assert sorted(table_rows("Helper")) == sorted(BUILTINS)
    assert sorted(table_rows("Action")) == sorted(ACTIONS.names())


# --------------------------------------------------------------------------- YAML examples

def registry() -> Registry:
    reg: Registry = Registry()
    for kind, schema in SCHEMAS.items():
        reg = reg.with_resource(f"{kind}.schema.json", Resource.from_contents(schema))
    return reg


def kind_of(path: str) -> str:
    if path in ("org/roles.yaml", "org/units.yaml", "org/holidays.yaml"):
        return {"org/roles.yaml": "roles", "org/units.yaml": "orgunits", "org/holidays.yaml": "holidays"}[path]
    if re.fullmatch(r"forms/choices\.yaml", path):
        return "choices"
    if re.fullmatch(r"forms/\w+\.yaml", path):
        return "form"
    if re.fullmatch(r"workflows/\w+\.yaml", path):
        return "workflow"
    raise AssertionError(f"'# file: {path}' is not a place for a definition file")


def markers(body: str) -> dict[str, str]:
    found = {}
    for line in body.splitlines():
        if not line.startswith("#"):
            break
        if m := re.fullmatch(r"# (file|fragment|yaml-language-server): (.+)", line):
            found[m.group(1)] = m.group(2).strip()
    return found


def load_yaml(body: str) -> Any:
    return plain(YAML(typ="rt", pure=True).load(body))


def errors_against(instance: Any, schema: dict[str, Any]) -> list[str]:
    validator = Draft202012Validator(schema, registry=registry())
    return [f"{'.'.join(map(str, e.absolute_path)) or '<document>'}: {e.message}" for e in validator.iter_errors(instance)]


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[f"line{b[0]}" for b in YAML_BLOCKS])
def test_every_yaml_example_validates(block: Block) -> None:
    line, _, body = block
    marks = markers(body)
    assert ("file" in marks) != ("fragment" in marks), \
        f"docs/definitions.md:{line}: a yaml example needs '# file: <path>' or '# fragment: <schema>#<pointer>'"
    data = load_yaml(body)
    if "file" in marks:
        kind = kind_of(marks["file"])
        if "yaml-language-server" in marks:
            assert marks["yaml-language-server"] == f"$schema=../engine/schema/{kind}.schema.json"
        schema = SCHEMAS[kind]
    else:
        assert re.fullmatch(r"\w+\.schema\.json#/.+", marks["fragment"]), marks["fragment"]
        schema = {"$ref": BASE_URI + marks["fragment"]}
    assert errors_against(data, schema) == [], f"docs/definitions.md:{line}"


def test_the_whole_file_examples_load_together(tmp_path: Path) -> None:
    files = {markers(body)["file"]: body for _, _, body in YAML_BLOCKS if "file" in markers(body)}
    assert {kind_of(path) for path in files} == set(SCHEMA_FILES)
    for path, body in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(body, encoding="utf-8")

    defs = load_definitions(tmp_path)

    declared = {kind: {load_yaml(body)["id"] for path, body in files.items() if kind_of(path) == kind}
                for kind in ("workflow", "form")}
    assert {"repair", "award", "service_order", "wish"} <= declared["workflow"]  # the governance examples too
    assert set(defs.workflows) == declared["workflow"]
    assert set(defs.forms) == declared["form"] >= {"repair_request", "repair_visit"}


def test_the_doc_examples_are_checked_at_all() -> None:
    """The yaml example test must not pass by finding nothing."""
    assert len(YAML_BLOCKS) >= 10
    assert all(markers(body) for _, _, body in YAML_BLOCKS)
    bad = "id: x\nversion: 1\ntitle: t\nfields:\n  - {id: a, type: txt, label: a}\n"
    assert errors_against(load_yaml(bad), SCHEMAS["form"])
    assert errors_against(load_yaml("- {id: a, type: text}\n"), {"$ref": BASE_URI + "form.schema.json#/properties/fields"})


# --------------------------------------------------------------------------- error examples

PROBLEM_LINE = re.compile(r"(?P<file>(?:org|forms|workflows)/[\w.]+\.yaml):(?P<rest>\d+:\d+: .+)")
EXAMPLES = [m for _, lang, body in BLOCKS if lang == "text"
            for line in body.splitlines() if (m := PROBLEM_LINE.fullmatch(line))]


def test_there_are_error_examples_for_every_file_kind() -> None:
    assert len(EXAMPLES) >= 40
    assert {m["file"].split("/")[0] for m in EXAMPLES} == {"org", "forms", "workflows"}


WARNING_EXAMPLES = [m for m in EXAMPLES if m["rest"].split(": ", 2)[1] == "warning"]


@pytest.mark.parametrize("example", WARNING_EXAMPLES, ids=[m["file"] for m in WARNING_EXAMPLES])
def test_every_warning_example_is_real_output(example: re.Match[str]) -> None:
    """A ``file:line:col: warning: ...`` example is a warning one of tests/data/old_spelling/ gives (its
    ``# warn:`` lines, which tests/test_spelling.py checks against the loader)."""
    old = OLD_SPELLING / Path(example["file"]).name
    said = {f"{w[:w.index(': ') + 2]}warning: {w[w.index(': ') + 2:]}"
            for w in re.findall(r"^# warn: (.+)$", old.read_text(encoding="utf-8"), re.MULTILINE)} if old.exists() else set()
    assert example["rest"] in said, f"{example[0]!r} is not a warning of tests/data/old_spelling/"


def test_there_are_warning_examples() -> None:
    assert len(WARNING_EXAMPLES) >= 3


@pytest.mark.parametrize("example", [m for m in EXAMPLES if m not in WARNING_EXAMPLES],
                         ids=[m["file"] for m in EXAMPLES if m not in WARNING_EXAMPLES])
def test_every_error_example_is_real_output(example: re.Match[str]) -> None:
    cases = [read_case(p) for p in INVALID]
    expected = {e for c in cases if c.target == example["file"] for e in c.expects}
    assert example["rest"] in expected, f"{example[0]!r} is not produced by any file in tests/data/invalid/"
