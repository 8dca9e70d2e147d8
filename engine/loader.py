"""Load a definitions directory into specs, collecting every mistake with its file:line:col.

Layout of a definitions directory::

    org/roles.yaml        roles and their scope
    org/units.yaml        district -> street -> community -> grid -> building
    forms/*.yaml          forms (a file with ``choice_lists:`` holds named choice lists)
    workflows/*.yaml      state machines

Checks run in two passes: the JSON Schema of each file kind (shipped in
``engine/schema``), then semantic checks across files (names that must exist, the
state graph, expressions). Nothing stops at the first mistake.
"""
from __future__ import annotations

import difflib
import json
import re
from collections import deque
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource

from .actions import ACTIONS, ActionRegistry
from .errors import DefinitionError, Problem
from .expressions import BUILTINS, Expression, ExpressionSyntaxError
from .durations import Duration
from .fieldtypes import FIELD_KINDS, check_keys
from .spec import (
    AggregateSpec, AssignSpec, CollectSpec, DeadlineSpec, LevelSpec, ListSpec, MetricSpec, NoticeSpec, PointsSpec,
    RankingSpec, RuleSpec, SpawnSpec, TargetSpec, TimerSpec,
    LEVELS, PSEUDO_ROLES, ActionCall, Choice, Definitions, FieldSpec,
    FormSpec, OrgTree, OrgUnit, RoleSpec, StateSpec, TransitionSpec, WorkflowSpec,
)
from .yamlsource import PathItem, YamlSource, read_yaml
from .spec import EdgeSpec, reachable, state_graph  # kept apart: the field-type work edits the block above

SCHEMA_FILES = ("form", "choices", "workflow", "roles", "orgunits")
#: Names a guard may read besides the case's fields.
GUARD_NAMES = frozenset({"user", "case", "state"})
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024 * 1024}


# --------------------------------------------------------------------------- schemas

@lru_cache(maxsize=None)
def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema for one kind of definition file, as shipped in ``engine/schema``."""
    text = resources.files("engine").joinpath("schema", f"{kind}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=None)
def _validator(kind: str) -> Draft202012Validator:
    registry: Registry = Registry()
    for name in SCHEMA_FILES:
        doc = schema(name)
        resource = Resource.from_contents(doc)
        # no $id: relative $refs ("form.schema.json#/$defs/text") resolve by file name, in editors too
        registry = registry.with_resource(f"{name}.schema.json", resource)
    return Draft202012Validator(schema(kind), registry=registry)


def did_you_mean(name: Any, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(str(name), sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else ""


def _schema_problems(source: YamlSource, kind: str) -> list[Problem]:
    problems = []
    for error in _validator(kind).iter_errors(source.data):
        problems.extend(_explain(source, error))
    return problems


def _explain(source: YamlSource, error: ValidationError) -> list[Problem]:
    """Turn one jsonschema error into problems a person can act on."""
    path: list[PathItem] = list(error.absolute_path)
    if error.validator in ("oneOf", "anyOf") and error.context:
        # Explain the branch the value was meant for: one that failed on more than the
        # value's own type ({zh: ""} is a text object with an empty zh, not "not a string").
        meant = [e for e in error.context if e.validator != "type" or len(e.absolute_path) > len(error.absolute_path)]
        if meant:
            branch = best_match(meant).relative_schema_path[0]
            return [p for e in meant if e.relative_schema_path[0] == branch for p in _explain(source, e)]
        types = set()
        for e in error.context:
            types.update([e.validator_value] if isinstance(e.validator_value, str) else e.validator_value)
        wanted = " or ".join(sorted(types))
        return [source.problem(path, f"expected {wanted or 'a different value'}, got {_show(error.instance)}",
                               hint=_hint_for(error.schema))]
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        return [source.problem(path + [extra], f"unknown key {extra!r}", did_you_mean(extra, allowed) or
                               f"allowed keys: {', '.join(allowed)}", key=True)
                for extra in error.instance if extra not in allowed]
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        if error.schema.get("additionalProperties") is False:
            # "lable" is reported once, as an unknown key with "did you mean 'label'?"
            allowed = list(error.schema.get("properties", {}))
            typos = {did_you_mean(k, allowed) for k in error.instance if k not in allowed}
            missing = [k for k in missing if f"did you mean {k!r}?" not in typos]
        return [source.problem(path, f"missing required key {k!r}") for k in missing]
    if error.validator == "enum":
        options = [str(o) for o in error.validator_value]
        return [source.problem(path, f"{_show(error.instance)} is not one of: {', '.join(options)}",
                               did_you_mean(error.instance, options))]
    if list(error.relative_schema_path)[-2:-1] == ["propertyNames"]:
        # jsonschema reports a bad key as the key's own error, at the mapping's path
        return [source.problem(path + [error.instance], f"{_show(error.instance)}: names must be lower_snake_case",
                               "use lowercase letters, digits and _, starting with a letter", key=True)]
    if error.validator == "pattern":
        return [source.problem(path, f"{_show(error.instance)} does not match {error.validator_value}",
                               error.schema.get("description", ""))]
    if error.validator == "type":
        return [source.problem(path, f"expected {error.validator_value}, got {_show(error.instance)}")]
    return [source.problem(path, error.message)]


def _hint_for(subschema: dict[str, Any]) -> str:
    return subschema.get("description", "")


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)  # YAML tags and sets are not JSON
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- loading

def _text(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"zh": value, "en": value}
    return {"zh": value["zh"], "en": value.get("en") or value["zh"]}


def _choices(items: Sequence[Any]) -> tuple[Choice, ...]:
    result = []
    for item in items:
        if isinstance(item, dict):
            result.append(Choice(str(item["value"]), _text(item["label"]) or {}))
        else:
            result.append(Choice(str(item), {"zh": str(item), "en": str(item)}))
    return tuple(result)


def parse_size(text: str) -> int:
    number, unit = re.fullmatch(r"([0-9.]+)\s*(B|KB|MB)", text).groups()  # type: ignore[union-attr]
    return int(float(number) * _SIZE_UNITS[unit])


class Loader:
    """Collects problems while building specs. Use :func:`load_definitions`."""

    def __init__(self, root: Path, actions: ActionRegistry):
        self.root = root
        self.actions = actions
        self.problems: list[Problem] = []
        self.broken_ids: set[str] = set()  # ids of files that failed the schema: no cascades
        # references to other workflows, checked once every workflow is loaded: (source, path, workflow id, extra)
        self.case_refs: list[tuple[YamlSource, list[PathItem], str, tuple[str, ...]]] = []
        self.spawn_refs: list[tuple[YamlSource, list[PathItem], SpawnSpec]] = []
        self.roles_broken = False  # org/roles.yaml missing or invalid: do not also blame every workflow
        self.choices_broken = False  # a choice-list file is invalid: do not also blame every form using a list

    def display(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def read(self, path: Path, kind: str, parsed: YamlSource | None = None) -> YamlSource | None:
        source, problems = (parsed, []) if parsed is not None else read_yaml(path, self.display(path))
        self.problems += problems
        if source is None:
            self.note_unparsed(path)  # e.g. a workflow that is not YAML: its users are not blamed too
            return None
        if not isinstance(source.data, dict):
            self.problems.append(source.problem([], "expected a mapping at the top of the file"))
            return None
        schema_problems = _schema_problems(source, kind)
        if schema_problems:
            self.problems += schema_problems
            if isinstance(source.data.get("id"), str):
                self.broken_ids.add(source.data["id"])
            return None
        return source

    def note_unparsed(self, path: Path) -> None:
        """A file that is not YAML still says what it was meant to be: do not blame its users too."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return
        if match := re.search(r"^id:\s*([a-z][a-z0-9_]*)\s*$", text, re.MULTILINE):
            self.broken_ids.add(match.group(1))
        self.choices_broken |= bool(re.search(r"^choice_lists:", text, re.MULTILINE))

    # -- roles and org units ------------------------------------------------
    def load_roles(self) -> dict[str, RoleSpec]:
        path = self.root / "org" / "roles.yaml"
        if not path.exists():
            self.problems.append(Problem(self.display(path), 1, 1, "", "file is missing", "declare every role here"))
            self.roles_broken = True
            return {}
        source = self.read(path, "roles")
        if source is None:
            self.roles_broken = True
            return {}
        return {rid: RoleSpec(rid, _text(r["title"]) or {}, r.get("scope", "unit"))
                for rid, r in source.data["roles"].items()}

    def load_org(self) -> OrgTree:
        path = self.root / "org" / "units.yaml"
        if not path.exists():
            self.problems.append(Problem(self.display(path), 1, 1, "", "file is missing", "declare the org units here"))
            return OrgTree({})
        source = self.read(path, "orgunits")
        units: dict[str, OrgUnit] = {}
        if source is None:
            return OrgTree(units)

        def visit(items: list[dict], parent: OrgUnit | None, path: list[PathItem]) -> None:
            for i, item in enumerate(items):
                here = path + [i]
                if item["id"] in units:
                    self.problems.append(source.problem(here + ["id"], f"duplicate org unit id {item['id']!r}"))
                    continue
                if parent and LEVELS.index(item["level"]) <= LEVELS.index(parent.level):
                    self.problems.append(source.problem(
                        here + ["level"], f"a {item['level']} cannot sit under a {parent.level}",
                        f"levels go {' > '.join(LEVELS)}"))
                unit = OrgUnit(item["id"], _text(item["name"]) or {}, item["level"], parent.id if parent else None)
                units[unit.id] = unit
                visit(item.get("units", []), unit, here + ["units"])

        visit(source.data["units"], None, ["units"])
        return OrgTree(units)

    # -- forms ----------------------------------------------------------------
    def load_form_files(self) -> tuple[list[YamlSource], dict[str, tuple[Choice, ...]]]:
        form_sources, choice_lists = [], {}
        list_files: dict[str, str] = {}
        for path in sorted((self.root / "forms").glob("*.yaml")):
            source, problems = read_yaml(path, self.display(path))
            if source is None:
                self.problems += problems
                self.note_unparsed(path)
                continue
            is_choices = isinstance(source.data, dict) and "choice_lists" in source.data
            source = self.read(path, "choices" if is_choices else "form", parsed=source)
            if source is None:
                self.choices_broken |= is_choices
                continue
            if is_choices:
                for name, items in source.data["choice_lists"].items():
                    if name in choice_lists:
                        self.problems.append(source.problem(["choice_lists", name], f"duplicate choice list {name!r}",
                                                            f"already defined in {list_files[name]}", key=True))
                    choice_lists[name] = _choices(items)
                    list_files.setdefault(name, source.file)
            else:
                form_sources.append(source)
        return form_sources, choice_lists

    def build_form(self, source: YamlSource, choice_lists: dict[str, tuple[Choice, ...]]) -> FormSpec:
        doc = source.data
        fields = self.build_fields(source, doc["fields"], ["fields"], choice_lists, outer=())
        names = {f.id for f in fields}
        rules = []
        for i, rule in enumerate(doc.get("rules", [])):
            check = self.expression(source, ["rules", i, "check"], rule["check"], names, "a form rule")
            if "field" in rule and rule["field"] not in names:
                self.problems.append(source.problem(["rules", i, "field"], f"unknown field {rule['field']!r}",
                                                    did_you_mean(rule["field"], names) or "name a field of this form"))
            if check is not None:
                rules.append(RuleSpec(check, _text(rule["message"]) or {}, rule.get("field")))
        return FormSpec(doc["id"], doc["version"], _text(doc["title"]) or {}, fields, source.file, tuple(rules))

    def build_fields(self, source: YamlSource, items: list[dict], path: list[PathItem],
                     choice_lists: dict[str, tuple[Choice, ...]], outer: Sequence[str]) -> tuple[FieldSpec, ...]:
        seen: set[str] = set()
        paths: list[list[PathItem]] = []  # where each built field is in the YAML (duplicates are skipped)
        ids = [item["id"] for item in items]
        visible_names = set(ids) | set(outer)
        fields = []
        for i, item in enumerate(items):
            here = path + [i]
            fid = item["id"]
            if fid in seen:
                self.problems.append(source.problem(here + ["id"], f"duplicate field id {fid!r}",
                                                    "each field id may appear once per form"))
                continue
            seen.add(fid)
            if fid in BUILTINS or fid in GUARD_NAMES:
                self.problems.append(source.problem(here + ["id"], f"field id {fid!r} hides the name of a built-in",
                                                    f"rename it, e.g. {fid}_value; built-ins: {', '.join(sorted(BUILTINS | GUARD_NAMES))}"))
            fields.append(self.build_field(source, item, here, choice_lists, visible_names))
            paths.append(here)
        self.check_compute_cycles(source, fields, paths)
        return tuple(fields)

    def build_field(self, source: YamlSource, item: dict, here: list[PathItem],
                    choice_lists: dict[str, tuple[Choice, ...]], names: set[str]) -> FieldSpec:
        ftype = item["type"]
        kind = FIELD_KINDS[ftype]

        def report(below: list[PathItem], message: str, hint: str = "", key: bool = False) -> None:
            self.problems.append(source.problem(here + below, message, hint, key=key))

        check_keys(ftype, item, report)  # what the type needs, and keys that belong to another type
        choices: tuple[Choice, ...] = ()
        raw_choices = item.get("choices") if kind.holds_choices else None
        if isinstance(raw_choices, str):
            if raw_choices not in choice_lists and not self.choices_broken:
                self.problems.append(source.problem(here + ["choices"], f"unknown choice list {raw_choices!r}",
                                                    did_you_mean(raw_choices, choice_lists) or "declare it in forms/choices.yaml"))
            choices = choice_lists.get(raw_choices, ())
        elif raw_choices is not None:
            choices = _choices(raw_choices)
            values = [c.value for c in choices]
            for dup in {v for v in values if values.count(v) > 1}:
                self.problems.append(source.problem(here + ["choices"], f"duplicate choice value {dup!r}"))
        for low, high in (("min", "max"), ("min_length", "max_length"), ("min_rows", "max_rows")):
            if low in item and high in item and item[low] > item[high]:
                self.problems.append(source.problem(here + [low], f"{low} ({item[low]}) is greater than {high} ({item[high]})"))
        if "pattern" in item:
            try:
                re.compile(item["pattern"])
            except re.error as exc:
                self.problems.append(source.problem(here + ["pattern"], f"invalid regular expression: {exc}"))
        if kind.holds_case and "workflow" in item:  # checked once every workflow is loaded
            self.case_refs.append((source, here + ["workflow"], item["workflow"], tuple(item.get("states", []))))
        if choices and "default" in item:
            defaults = item["default"] if isinstance(item["default"], list) else [item["default"]]
            for value in defaults:
                if str(value) not in {c.value for c in choices}:
                    values = [c.value for c in choices]
                    self.problems.append(source.problem(here + ["default"], f"default {value!r} is not one of the choices",
                                                        did_you_mean(value, values) or f"choices: {', '.join(values)}"))
        subfields: tuple[FieldSpec, ...] = ()
        if kind.holds_rows and "fields" in item:
            subfields = self.build_fields(source, item["fields"], here + ["fields"], choice_lists, outer=tuple(names))
        filled = kind.defaults(item)  # what the type fills in when the definition leaves it out
        return FieldSpec(
            id=item["id"], type=ftype, label=_text(item["label"]) or {}, required=item.get("required", False),
            help=_text(item.get("help")), placeholder=_text(item.get("placeholder")), default=item.get("default"),
            min=item.get("min", filled.get("min")), max=item.get("max", filled.get("max")),
            min_length=item.get("min_length"), max_length=item.get("max_length"), pattern=item.get("pattern"),
            message=_text(item.get("message")), choices=choices,
            show_if=self.expression(source, here + ["show_if"], item.get("show_if"), names, f"field {item['id']!r}"),
            compute=self.expression(source, here + ["compute"], item.get("compute"), names, f"field {item['id']!r}"),
            sensitive=item.get("sensitive", False), fields=subfields, min_rows=item.get("min_rows", filled.get("min_rows", 0)),
            max_rows=item.get("max_rows"), accept=tuple(item.get("accept", filled.get("accept", ()))),
            max_size=parse_size(item["max_size"]) if "max_size" in item else filled.get("max_size"),
            level=item.get("level"), workflow=item.get("workflow"), states=tuple(item.get("states", ())),
        )

    def check_compute_cycles(self, source: YamlSource, fields: list[FieldSpec], paths: list[list[PathItem]]) -> None:
        """A computed field may not depend on itself, directly (x: x + 1) or through others."""
        deps = {f.id: sorted(f.compute.names) for f in fields if f.compute}
        for f, path in zip(fields, paths):
            if f.id not in deps:
                continue
            came_from: dict[str, str] = {}
            queue = deque([f.id])
            while queue:
                name = queue.popleft()
                if f.id in deps.get(name, ()):
                    chain = [f.id, name]
                    while chain[-1] != f.id:
                        chain.append(came_from[chain[-1]])
                    cycle = " -> ".join(reversed(chain))
                    self.problems.append(source.problem(path + ["compute"], f"computed field {f.id!r} depends on itself: {cycle}",
                                                        "break the cycle between computed fields"))
                    break
                for dep in deps.get(name, ()):
                    if dep in deps and dep not in came_from and dep != f.id:
                        came_from[dep] = name
                        queue.append(dep)

    def expression(self, source: YamlSource, path: list[PathItem], text: str | None,
                   names: Iterable[str] | None, what: str) -> Expression | None:
        if text is None:
            return None
        try:
            expr = Expression(text)
        except ExpressionSyntaxError as exc:
            self.problems.append(source.problem(path, f"expression does not parse: {exc.message}",
                                                "expressions use Jinja2 syntax, e.g. age >= 18 and 'other' in skills"))
            return None
        if names is None:
            return expr
        known = set(names)
        for name in sorted(expr.names - known):
            self.problems.append(source.problem(
                path, f"expression of {what} uses unknown name {name!r}",
                did_you_mean(name, known | BUILTINS) or f"known names: {', '.join(sorted(known)) or '(none)'}"))
        return expr

    # -- workflows --------------------------------------------------------
    def build_workflow(self, source: YamlSource, forms: dict[str, FormSpec], roles: dict[str, RoleSpec]) -> WorkflowSpec | None:
        doc = source.data
        problems_before = len(self.problems)

        missing_forms: list[str] = []

        def check_form(path: list[PathItem], form_id: str) -> FormSpec | None:
            if form_id in forms:
                return forms[form_id]
            missing_forms.append(form_id)
            if form_id not in self.broken_ids:
                self.problems.append(source.problem(path, f"unknown form {form_id!r}",
                                                    did_you_mean(form_id, forms) or "forms live in forms/*.yaml"))
            return None

        def check_roles(path: list[PathItem], used: list[str], allowed: Iterable[str], where: str) -> None:
            allowed = set(allowed)
            for i, role in enumerate(used):
                if role not in allowed:
                    self.problems.append(source.problem(path + [i], f"unknown role {role!r}",
                                                        did_you_mean(role, allowed) or f"roles here must be listed in {where}"))

        if not self.roles_broken:
            check_roles(["roles"], doc["roles"], roles, "org/roles.yaml")
        wf_roles = set(doc["roles"]) | PSEUDO_ROLES
        start = doc["start"]
        start_form = check_form(["start", "form"], start["form"])
        check_roles(["start", "roles"], start["roles"], doc["roles"], "the workflow's roles")

        data_names: set[str] = set()
        step_forms: list[FormSpec] = [start_form] if start_form else []
        for sid, state in doc["states"].items():
            for i, t in enumerate(state.get("transitions", [])):
                if "form" in t:
                    f = check_form(["states", sid, "transitions", i, "form"], t["form"])
                    if f:
                        step_forms.append(f)
        for f in step_forms:
            data_names |= {fld.id for fld in f.fields}
        # results the engine writes into the case data are readable by guards too
        data_names |= {st["collect"]["aggregate"]["into"] for st in doc["states"].values()
                       if "aggregate" in st.get("collect", {})}
        if "ranking" in doc:
            data_names.add(doc["ranking"].get("into", "award_level"))
        if "round" in doc:
            data_names.add("round")

        if start_form and "org_unit_field" in start:
            name = start["org_unit_field"]
            fld = start_form.field(name)
            unit_fields = [x.id for x in start_form.fields if x.kind.holds_unit]
            if fld is None or not fld.kind.holds_unit:
                what = f"form {start_form.id!r} has no field {name!r}" if fld is None else \
                    f"{name!r} is a {fld.type} field of form {start_form.id!r}, not an orgunit field"
                self.problems.append(source.problem(
                    ["start", "org_unit_field"], what,
                    did_you_mean(name, unit_fields) or (f"orgunit fields: {', '.join(unit_fields)}" if unit_fields
                                                        else "add a field with type: orgunit to the start form")))
        case_title = self.expression(source, ["start", "title"], start.get("title"),
                                     {f.id for f in start_form.fields} if start_form else set(), "start.title") if start_form else None

        states = doc["states"]
        if doc["initial"] not in states:
            self.problems.append(source.problem(["initial"], f"unknown state {doc['initial']!r}",
                                                did_you_mean(doc["initial"], states)))
        built_states: dict[str, StateSpec] = {}
        for sid, state in states.items():
            here: list[PathItem] = ["states", sid]
            transitions = []
            seen_ids: set[str] = set()
            final = state.get("final", False)
            raw = state.get("transitions", [])
            if final and raw:
                self.problems.append(source.problem(here + ["transitions"], f"final state {sid!r} has transitions",
                                                    "remove 'final: true' or the transitions", key=True))
            check_roles(here + ["inbox"], state.get("inbox", []), wf_roles, "the workflow's roles (or creator / assignee)")
            for i, t in enumerate(raw):
                tpath = here + ["transitions", i]
                if t["id"] in seen_ids:
                    self.problems.append(source.problem(tpath + ["id"], f"duplicate transition id {t['id']!r} in state {sid!r}"))
                seen_ids.add(t["id"])
                if t["to"] not in states:
                    self.problems.append(source.problem(tpath + ["to"], f"unknown state {t['to']!r}",
                                                        did_you_mean(t["to"], states) or f"states: {', '.join(states)}"))
                check_roles(tpath + ["roles"], t["roles"], wf_roles, "the workflow's roles (or creator / assignee)")
                # with a form missing, the names a guard may use are not all known: check syntax only
                guard = self.expression(source, tpath + ["guard"], t.get("guard"),
                                        None if missing_forms else data_names | GUARD_NAMES, f"transition {t['id']!r}")
                transitions.append(TransitionSpec(
                    id=t["id"], source=sid, target=t["to"], label=_text(t["label"]) or {}, roles=tuple(t["roles"]),
                    guard=guard, form=t.get("form"), comment=t.get("comment", "optional"),
                    before_actions=self.action_calls(source, tpath + ["before_actions"], t.get("before_actions", [])),
                    actions=self.action_calls(source, tpath + ["actions"], t.get("actions", [])),
                    style=t.get("style", "primary"),
                    assign=self.assign(source, tpath + ["assign"], t.get("assign"), wf_roles),
                    points=self.points(source, tpath + ["points"], t.get("points", []),
                                       None if missing_forms else data_names | GUARD_NAMES),
                    spawn=self.spawns(source, tpath + ["spawn"], t.get("spawn", []), None if missing_forms else data_names,
                                      step_forms, rows_allowed=True),
                ))
            by_id = {t["id"]: t["roles"] for t in reversed(raw)}  # the first of duplicate ids
            timed = {state["after"].partition("->")[2].strip()} if "after" in state else set()
            timed |= {state["notice"]["on_expiry"]} if "notice" in state else set()
            timed |= {state["collect"]["on_deadline"]} if "on_deadline" in state.get("collect", {}) else set()
            for i, t in enumerate(raw):  # (a timer naming a misspelt transition says so already)
                if set(t["roles"]) == {"system"} and t["id"] not in timed and timed <= set(by_id):
                    self.problems.append(source.problem(
                        here + ["transitions", i, "roles"], f"only the clock takes transition {t['id']!r}, but no timer names it",
                        "name it in the state's after, notice.on_expiry or collect.on_deadline, or add a role that takes it"))
            built_states[sid] = StateSpec(
                sid, _text(state["title"]) or {}, final, tuple(state["inbox"]) if "inbox" in state else None, tuple(transitions),
                collect=self.collect(source, here + ["collect"], state.get("collect"), forms, wf_roles, by_id, check_form,
                                     None if missing_forms else data_names),
                after=self.timer(source, here + ["after"], state.get("after"), by_id),
                deadline=self.deadline(source, here + ["deadline"], state.get("deadline"), wf_roles,
                                       None if missing_forms else {f.id for form in step_forms for f in form.fields
                                                                   if f.kind.date_like}),
                notice=self.notice(source, here + ["notice"], state.get("notice"), states, by_id, wf_roles, data_names),
                public=state.get("public", False),
                public_fields=self.field_names(source, here + ["public_fields"], state.get("public_fields", []), data_names),
                publish=state.get("publish", False),
                offers=self.spawns(source, here + ["offers"], state.get("offers", []), None if missing_forms else data_names,
                                   step_forms, rows_allowed=False),
                certificate=state.get("certificate", False),
            )

        ranking = self.ranking(source, doc.get("ranking"), states, wf_roles, data_names)
        if "ranking" in doc and "round" not in doc:
            self.problems.append(source.problem(["ranking"], "a ranking needs a round",
                                                "add e.g. round: {period: quarter}; cases are ranked round by round", key=True))
        role_scope = self.role_scope(source, doc.get("role_scope", {}), doc["roles"])
        edges = state_graph(built_states, ranking)
        self.check_graph(source, built_states, doc["initial"], edges,
                         doc["ranking"]["state"] if "ranking" in doc and ranking is None else None)
        metrics = self.metrics(source, doc.get("metrics", []), None if missing_forms else data_names, step_forms)
        targets = self.targets(source, doc.get("targets", []), start_form, set(doc["roles"]))
        listing = self.listing(source, doc.get("list", {}), start_form)
        if len(self.problems) > problems_before or start_form is None:
            return None
        return WorkflowSpec(
            id=doc["id"], version=doc["version"], title=_text(doc["title"]) or {}, description=_text(doc.get("description")),
            start_form=start["form"], start_roles=tuple(start["roles"]), roles=tuple(doc["roles"]), initial=doc["initial"],
            states=built_states, org_unit_field=start.get("org_unit_field"), case_title=case_title, file=source.file,
            round=doc.get("round", {}).get("period"), round_title=_text(doc.get("round", {}).get("title")),
            ranking=ranking, role_scope=role_scope, metrics=metrics, targets=targets, listing=listing, edges=edges,
        )

    def check_graph(self, source: YamlSource, states: dict[str, StateSpec], initial: str, edges: tuple[EdgeSpec, ...],
                    unbuilt_ranking: str | None) -> None:
        """Along the workflow's edges (transitions, objections, ranking outcomes): every state but a final one
        has a way out, and every state can be reached from the initial one.

        No cascades: a misspelt target already says so, and would also make its real target "unreachable", so
        reachability is judged only when every edge ends in a known state; a ranking that could not be built
        (its own problem says why; ``unbuilt_ranking`` is the state its cases wait in) has no edges, so neither
        check judges what only those edges would explain.
        """
        leaving = {e.source for e in edges}
        for sid, state in states.items():
            if not state.final and sid not in leaving and sid != unbuilt_ranking:
                self.problems.append(source.problem(["states", sid], f"state {sid!r} has no way out",
                                                    "add a transition, or mark it 'final: true'", key=True))
        known = all(e.source in states and e.target in states for e in edges)
        if initial in states and known and unbuilt_ranking is None:
            reached = reachable(edges, initial)
            for sid in states:
                if sid not in reached:
                    self.problems.append(source.problem(["states", sid], f"state {sid!r} is unreachable from {initial!r}",
                                                        "add a transition to it, or remove it", key=True))

    # -- links between processes, reports, list pages (issue 5) ------------------------------------------
    def spawns(self, source: YamlSource, path: list[PathItem], items: list[dict], names: set[str] | None,
               step_forms: list[FormSpec], rows_allowed: bool) -> tuple[SpawnSpec, ...]:
        result = []
        repeats = {f.id: f for form in step_forms for f in form.fields if f.is_repeat}
        offered: set[str] = set()
        for i, item in enumerate(items):
            here = path + [i]
            known = None if names is None else names | GUARD_NAMES
            if not rows_allowed and item["workflow"] in offered:  # a case page offers a workflow once (Engine.offer)
                self.problems.append(source.problem(here + ["workflow"], f"workflow {item['workflow']!r} is offered twice in this state",
                                                    "a state offers each workflow once: keep one offer"))
            offered.add(item["workflow"])
            if "rows" in item:
                if not rows_allowed:
                    self.problems.append(source.problem(here + ["rows"], "'rows' only works in a transition's spawn", key=True))
                elif names is not None and item["rows"] not in repeats:
                    self.problems.append(source.problem(here + ["rows"], f"{item['rows']!r} is not a repeat field",
                                                        did_you_mean(item["rows"], repeats) or "name a repeat field of this workflow's forms"))
                if known is not None:
                    known = known | {"row"}
            mapping = {}
            for target, text in item["map"].items():
                # 'row' without rows gets its own message below, not "unknown name 'row' (did you mean 'now'?)"
                expr = self.expression(source, here + ["map", target], text, None if known is None else known | {"row"},
                                       f"map.{target}")
                if expr is not None and known is not None and "row" not in known and "row" in expr.names:
                    self.problems.append(source.problem(
                        here + ["map", target], f"expression of map.{target} uses 'row', but there is no 'rows'",
                        "row is a row of the repeat field that rows names: add rows to a transition's spawn, "
                        "or map from this case's fields"))
                if expr is not None:
                    mapping[target] = expr
            spec = SpawnSpec(item["workflow"], _text(item["label"]) or {}, mapping, item.get("rows"))
            self.spawn_refs.append((source, here, spec))
            result.append(spec)
        return tuple(result)

    def metrics(self, source: YamlSource, items: list[dict], names: set[str] | None,
                step_forms: list[FormSpec]) -> tuple[MetricSpec, ...]:
        numeric = {f.id for form in step_forms for f in form.fields if f.kind.numeric}
        result, seen = [], set()
        for i, item in enumerate(items):
            here: list[PathItem] = ["metrics", i]
            if item["id"] in seen:
                self.problems.append(source.problem(here + ["id"], f"duplicate metric id {item['id']!r}"))
            seen.add(item["id"])
            if "sum" in item and names is not None and item["sum"] not in numeric:
                self.problems.append(source.problem(here + ["sum"], f"{item['sum']!r} is not a numeric field of this workflow",
                                                    did_you_mean(item["sum"], numeric) or
                                                    (f"numeric fields: {', '.join(sorted(numeric))}" if numeric else
                                                     "sum an integer, number, score or rating field, or leave out sum to count cases")))
            where = self.expression(source, here + ["where"], item.get("where"),
                                    None if names is None else names | GUARD_NAMES, f"metric {item['id']!r}")
            result.append(MetricSpec(item["id"], _text(item["label"]) or {}, item.get("sum"), where))
        return tuple(result)

    def targets(self, source: YamlSource, items: list[dict], start_form: FormSpec | None,
                roles: set[str]) -> tuple[TargetSpec, ...]:
        result, seen = [], set()
        for i, item in enumerate(items):
            here: list[PathItem] = ["targets", i]
            if item["id"] in seen:
                self.problems.append(source.problem(here + ["id"], f"duplicate target id {item['id']!r}"))
            seen.add(item["id"])
            if "date" in item and start_form is not None:
                f = start_form.field(item["date"])
                if f is None or not f.kind.date_like:
                    dates = [x.id for x in start_form.fields if x.kind.date_like]
                    self.problems.append(source.problem(here + ["date"], f"{item['date']!r} is not a date field of the start form",
                                                        did_you_mean(item["date"], dates) or
                                                        (f"date fields: {', '.join(dates)}" if dates else
                                                         "leave out date to count cases by the day they were started")))
            for j, role in enumerate(item.get("roles", [])):
                if role not in roles:
                    self.problems.append(source.problem(here + ["roles", j], f"unknown role {role!r}",
                                                        did_you_mean(role, roles) or "list it in the workflow's roles"))
            result.append(TargetSpec(item["id"], _text(item["label"]) or {}, item["count"], item.get("period", "week"),
                                     item.get("date"), tuple(item.get("roles", []))))
        return tuple(result)

    def listing(self, source: YamlSource, raw: dict, start_form: FormSpec | None) -> ListSpec:
        if start_form is not None:
            fields = {f.id for f in start_form.fields}
            for key in ("columns", "filters"):
                for i, name in enumerate(raw.get(key, [])):
                    if name not in fields:
                        self.problems.append(source.problem(["list", key, i], f"unknown field {name!r} of the start form",
                                                            did_you_mean(name, fields) or
                                                            f"fields of form {start_form.id!r}: {', '.join(f.id for f in start_form.fields)}"))
        return ListSpec(tuple(raw.get("columns", [])), tuple(raw.get("filters", [])))

    def check_references(self, forms: dict[str, FormSpec], workflows: dict[str, WorkflowSpec], known: set[str]) -> None:
        """References across workflows, once all are loaded (``known``: ids of every workflow file, broken or not)."""
        for source, path, wid, states in self.case_refs:
            if wid not in known:
                self.problems.append(source.problem(path, f"unknown workflow {wid!r}",
                                                    did_you_mean(wid, known) or "workflows live in workflows/*.yaml"))
            elif wid in workflows:
                for i, state in enumerate(states):
                    if state not in workflows[wid].states:
                        self.problems.append(source.problem(path[:-1] + ["states", i], f"unknown state {state!r} of workflow {wid!r}",
                                                            did_you_mean(state, workflows[wid].states) or
                                                            f"states: {', '.join(workflows[wid].states)}"))
        for source, path, spec in self.spawn_refs:
            if spec.workflow not in known:
                self.problems.append(source.problem(path + ["workflow"], f"unknown workflow {spec.workflow!r}",
                                                    did_you_mean(spec.workflow, known) or "workflows live in workflows/*.yaml"))
            elif spec.workflow in workflows:
                start = forms[workflows[spec.workflow].start_form]
                fields = {f.id for f in start.fields}
                for target in spec.map:
                    if target not in fields:
                        self.problems.append(source.problem(path + ["map", target], f"{target!r} is not a field of form {start.id!r}",
                                                            did_you_mean(target, fields) or
                                                            f"the start form of {spec.workflow!r} has: {', '.join(f.id for f in start.fields)}",
                                                            key=True))

    # -- governance mechanics (issue 4): each returns a spec or None, adding problems as it goes --------
    def assign(self, source: YamlSource, path: list[PathItem], raw: Any, wf_roles: set[str]) -> AssignSpec | None:
        if raw is None:
            return None
        if isinstance(raw, str):
            return AssignSpec(raw)
        mode = "choose" if "choose" in raw else "route"
        role = raw[mode]
        if role not in wf_roles - PSEUDO_ROLES:
            self.problems.append(source.problem(path + [mode], f"unknown role {role!r}",
                                                did_you_mean(role, wf_roles - PSEUDO_ROLES) or "list it in the workflow's roles"))
        return AssignSpec(mode, role, raw.get("unit"), raw.get("multiple", False))

    def points(self, source: YamlSource, path: list[PathItem], items: list[dict], names: set[str] | None) -> tuple[PointsSpec, ...]:
        result = []
        for i, item in enumerate(items):
            amount = self.expression(source, path + [i, "amount"], str(item["amount"]), names, "points amount")
            if amount is not None:
                result.append(PointsSpec(item["to"], amount, _text(item["reason"]) or {}))
        return tuple(result)

    def field_names(self, source: YamlSource, path: list[PathItem], names: list[str], known: set[str]) -> tuple[str, ...]:
        for i, name in enumerate(names):
            if name not in known:
                self.problems.append(source.problem(path + [i], f"unknown field {name!r}",
                                                    did_you_mean(name, known) or "use a field of the workflow's forms"))
        return tuple(names)

    def collect(self, source: YamlSource, path: list[PathItem], raw: dict | None, forms: dict[str, FormSpec],
                wf_roles: set[str], transition_ids: dict[str, list[str]], check_form: Any,
                data_names: set[str] | None = None) -> CollectSpec | None:
        if raw is None:
            return None
        form = check_form(path + ["form"], raw["form"])
        roles = raw.get("roles", [])
        people = wf_roles - PSEUDO_ROLES  # contributors hold a role; who: assignees is for the people assigned
        for i, role in enumerate(roles):
            if role not in people:
                self.problems.append(source.problem(path + ["roles", i], f"unknown role {role!r}",
                                                    did_you_mean(role, people) or "list it in the workflow's roles"))
        who = raw.get("who", "roles")
        if who == "roles" and not roles:
            self.problems.append(source.problem(path, "collect needs 'roles' (who may contribute) or who: assignees"))
        for key in ("on_deadline",):
            if key in raw and raw[key] not in transition_ids:
                self.problems.append(source.problem(path + [key], f"unknown transition {raw[key]!r} in this state",
                                                    did_you_mean(raw[key], transition_ids) or f"transitions here: {', '.join(sorted(transition_ids))}"))
        if "on_deadline" in raw and "deadline" not in raw:
            self.problems.append(source.problem(path + ["on_deadline"], "on_deadline needs a deadline", key=True))
        if "on_deadline" in raw:
            self.clock_takes(source, path + ["on_deadline"], raw["on_deadline"], transition_ids)
        for i, role in enumerate(raw.get("visible_to", [])):
            if role not in wf_roles - {"system"}:
                self.problems.append(source.problem(path + ["visible_to", i], f"unknown role {role!r}",
                                                    did_you_mean(role, wf_roles - {"system"}) or "list it in the workflow's roles"))
        fields = {f.id: f for f in form.fields} if form else {}
        for i, rule in enumerate(raw.get("recuse", [])):
            if rule.startswith("field:") and data_names is not None and rule[6:] not in data_names:
                self.problems.append(source.problem(path + ["recuse", i], f"unknown field {rule[6:]!r} in recusal rule",
                                                    did_you_mean(rule[6:], data_names) or
                                                    "name a field of the case that holds a username, e.g. field:nominee_user"))
        aggregate = None
        if "aggregate" in raw:
            agg = raw["aggregate"]
            apath = path + ["aggregate"]
            named = ([(["field"], agg["field"], False)] if "field" in agg else []) + \
                [(["criteria", name], name, True) for name in agg.get("criteria", {})]
            for where, name, key in named:
                if form is not None and (name not in fields or not fields[name].kind.numeric):
                    usable = [f for f, x in fields.items() if x.kind.numeric]
                    self.problems.append(source.problem(
                        apath + where, f"{name!r} is not a numeric field of form {raw['form']!r}",
                        did_you_mean(name, usable) or (f"numeric fields: {', '.join(usable)}" if usable else
                                                       "use an integer, number, score or rating field"), key=key))
            if "tally" in agg and form is not None and (agg["tally"] not in fields or not fields[agg["tally"]].kind.tally):
                usable = [f for f, x in fields.items() if x.kind.tally]
                self.problems.append(source.problem(
                    apath + ["tally"], f"{agg['tally']!r} is not a choice field of form {raw['form']!r}",
                    did_you_mean(agg["tally"], usable) or (f"choice fields: {', '.join(usable)}" if usable else
                                                           "tally a select, multiselect or checkbox field")))
            method = agg.get("method", "mean")
            if "field" not in agg and "criteria" not in agg and "tally" not in agg:
                self.problems.append(source.problem(apath, "aggregate needs 'field', 'criteria' or 'tally'"))
            if "field" in agg and "criteria" in agg:
                self.problems.append(source.problem(apath, "use either 'field' or 'criteria', not both"))
            for role in agg.get("role_weights", {}):
                if role not in people:
                    self.problems.append(source.problem(apath + ["role_weights", role], f"unknown role {role!r}",
                                                        did_you_mean(role, people) or "weigh roles of the workflow", key=True))
            if method == "weighted_mean" and not agg.get("role_weights"):
                self.problems.append(source.problem(apath + ["method"], "weighted_mean needs role_weights",
                                                    "e.g. role_weights: {district_evaluator: 2, street_evaluator: 1}"))
            aggregate = AggregateSpec(agg["into"], method, agg.get("field"), dict(agg.get("criteria", {})),
                                      dict(agg.get("role_weights", {})), agg.get("tally"))
        return CollectSpec(
            form=raw["form"], label=_text(raw["label"]) or {}, roles=tuple(roles), who=who, min=raw.get("min"),
            once=raw.get("once", "replace"), deadline=Duration.parse(raw["deadline"]) if "deadline" in raw else None,
            on_deadline=raw.get("on_deadline"), recuse=tuple(raw.get("recuse", [])),
            visible_to=tuple(raw.get("visible_to", [])), scope=raw.get("scope", "unit"), aggregate=aggregate)

    def clock_takes(self, source: YamlSource, path: list[PathItem], target: str, transitions: dict[str, list[str]],
                    key: bool = False) -> None:
        """A transition the clock takes (a timer, a notice's expiry, a collect deadline) must list ``system``."""
        if target in transitions and "system" not in transitions[target]:
            self.problems.append(source.problem(path, f"the clock takes transition {target!r}, but its roles lack 'system'",
                                                f"add system to its roles, e.g. roles: [{', '.join(transitions[target] + ['system'])}]",
                                                key=key))

    def timer(self, source: YamlSource, path: list[PathItem], raw: str | None,
              transition_ids: dict[str, list[str]]) -> TimerSpec | None:
        if raw is None:
            return None
        duration, _, target = (part.strip() for part in raw.partition("->"))
        if target not in transition_ids:
            self.problems.append(source.problem(path, f"unknown transition {target!r} in this state",
                                                did_you_mean(target, transition_ids) or "the timer takes one of this state's transitions"))
        self.clock_takes(source, path, target, transition_ids)
        return TimerSpec(Duration.parse(duration), target)

    def deadline(self, source: YamlSource, path: list[PathItem], raw: dict | None, wf_roles: set[str],
                 date_fields: set[str] | None = None) -> DeadlineSpec | None:
        if raw is None:
            return None
        escalate = raw.get("escalate")
        if escalate == "self" or isinstance(escalate, dict) and "choose" in escalate:
            what = "it cannot choose people" if isinstance(escalate, dict) else "'self' would be the system"
            self.problems.append(source.problem(path + ["escalate"], f"the clock escalates a deadline: {what}",
                                                "route it, e.g. escalate: {route: community_staff, unit: community}"))
        if "at" in raw and date_fields is not None and raw["at"] not in date_fields:
            self.problems.append(source.problem(path + ["at"], f"{raw['at']!r} is not a date field of this workflow",
                                                did_you_mean(raw["at"], date_fields) or
                                                (f"date fields: {', '.join(sorted(date_fields))}" if date_fields else "add a date field")))
        return DeadlineSpec(Duration.parse(raw["within"]) if "within" in raw else None,
                            self.assign(source, path + ["escalate"], raw.get("escalate"), wf_roles), raw.get("at"))

    def notice(self, source: YamlSource, path: list[PathItem], raw: dict | None, states: dict,
               transition_ids: dict[str, list[str]], wf_roles: set[str], data_names: set[str]) -> NoticeSpec | None:
        if raw is None:
            return None
        if raw["on_expiry"] not in transition_ids:
            self.problems.append(source.problem(path + ["on_expiry"], f"unknown transition {raw['on_expiry']!r} in this state",
                                                did_you_mean(raw["on_expiry"], transition_ids) or "name one of this state's transitions"))
        self.clock_takes(source, path + ["on_expiry"], raw["on_expiry"], transition_ids)
        target = raw["objection"]["to"]
        if target not in states:
            self.problems.append(source.problem(path + ["objection", "to"], f"unknown state {target!r}", did_you_mean(target, states)))
        people = wf_roles - PSEUDO_ROLES  # objections come from people holding a role, never creator / assignee / system
        roles = raw["objection"].get("roles", ["resident"])
        if "roles" not in raw["objection"] and "resident" not in people:
            self.problems.append(source.problem(path + ["objection"], "objections come from 'resident' by default, "
                                                "but it is not a role of this workflow",
                                                "say who may object, e.g. objection: {roles: [resident], to: ...}, "
                                                "and list that role in the workflow's roles"))
        for i, role in enumerate(raw["objection"].get("roles", [])):
            if role not in people:
                self.problems.append(source.problem(path + ["objection", "roles", i], f"unknown role {role!r}",
                                                    did_you_mean(role, people) or "list it in the workflow's roles"))
        return NoticeSpec(Duration.parse(raw["duration"]), raw["on_expiry"], tuple(roles), target,
                          self.field_names(source, path + ["public_fields"], raw.get("public_fields", []), data_names))

    def ranking(self, source: YamlSource, raw: dict | None, states: dict, wf_roles: set[str],
                data_names: set[str]) -> RankingSpec | None:
        if raw is None:
            return None
        path: list[PathItem] = ["ranking"]
        for key in ("state", "selected", "rest"):
            if raw[key] not in states:
                self.problems.append(source.problem(path + [key], f"unknown state {raw[key]!r}", did_you_mean(raw[key], states)))
        people = wf_roles - PSEUDO_ROLES  # closing a round is done by a person holding the role
        for i, role in enumerate(raw["roles"]):
            if role not in people:
                self.problems.append(source.problem(path + ["roles", i], f"unknown role {role!r}",
                                                    did_you_mean(role, people) or "list it in the workflow's roles"))
        names = data_names | GUARD_NAMES
        by = self.expression(source, path + ["by"], raw["by"], names, "ranking.by")
        ties = []
        for i, rule in enumerate(raw.get("tie_break", [])):
            expr = self.expression(source, path + ["tie_break", i, "by"], rule["by"], names, "ranking.tie_break")
            if expr is not None:
                ties.append((expr, rule.get("order", "desc")))
        seen: set[str] = set()
        for i, level in enumerate(raw["levels"]):
            if level["id"] in seen:
                self.problems.append(source.problem(path + ["levels", i, "id"], f"duplicate level {level['id']!r}"))
            seen.add(level["id"])
        if by is None:
            return None
        return RankingSpec(
            state=raw["state"], by=by, levels=tuple(LevelSpec(x["id"], _text(x["label"]) or {}, x["quota"]) for x in raw["levels"]),
            selected=raw["selected"], rest=raw["rest"], roles=tuple(raw["roles"]), into=raw.get("into", "award_level"),
            order=raw.get("order", "desc"), tie_break=tuple(ties), on_tie=raw.get("on_tie", "refuse"))

    def role_scope(self, source: YamlSource, raw: dict[str, str], roles: list[str]) -> dict[str, str]:
        for role in raw:
            if role not in roles:
                self.problems.append(source.problem(["role_scope", role], f"unknown role {role!r}",
                                                    did_you_mean(role, roles) or "list it in the workflow's roles", key=True))
        return dict(raw)

    def action_calls(self, source: YamlSource, path: list[PathItem], items: list[Any]) -> tuple[ActionCall, ...]:
        calls = []
        for i, item in enumerate(items):
            name, args = (item, {}) if isinstance(item, str) else (item["name"], item.get("args", {}))
            if name not in self.actions:
                self.problems.append(source.problem(path + [i], f"unknown action {name!r}",
                                                    did_you_mean(name, self.actions.names()) or
                                                    f"registered actions: {', '.join(sorted(self.actions.names()))}"))
            calls.append(ActionCall(name, args))
        return tuple(calls)

    # -- all ----------------------------------------------------------------
    def load(self) -> Definitions:
        roles = self.load_roles()
        org = self.load_org()
        form_sources, choice_lists = self.load_form_files()
        forms: dict[str, FormSpec] = {}
        for source in form_sources:
            form = self.build_form(source, choice_lists)
            if form.id in forms:
                self.problems.append(source.problem(["id"], f"duplicate form id {form.id!r}",
                                                    f"already defined in {forms[form.id].file}"))
                continue
            forms[form.id] = form
        workflows: dict[str, WorkflowSpec] = {}
        workflow_files: dict[str, str] = {}  # also the ids of workflows that have problems of their own
        for path in sorted((self.root / "workflows").glob("*.yaml")):
            source = self.read(path, "workflow")
            if source is None:
                continue
            wf = self.build_workflow(source, forms, roles)
            wid = source.data["id"]
            if wid in workflow_files:
                self.problems.append(source.problem(["id"], f"duplicate workflow id {wid!r}",
                                                    f"already defined in {workflow_files[wid]}"))
                continue
            workflow_files[wid] = source.file
            if wf is not None:
                workflows[wid] = wf
        self.check_references(forms, workflows, set(workflow_files) | self.broken_ids)
        if self.problems:
            raise DefinitionError(self.problems)
        return Definitions(forms=forms, workflows=workflows, roles=roles, org=org, choice_lists=choice_lists)


_LOADED: dict[tuple[Any, ...], Definitions] = {}


def _signature(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Which definition files there are and when they last changed."""
    files = [*root.glob("org/*.yaml"), *root.glob("forms/*.yaml"), *root.glob("workflows/*.yaml")]
    return tuple(sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files))


def load_definitions(root: str | Path, actions: ActionRegistry | None = None) -> Definitions:
    """Load and check every definition under ``root``; raise :class:`DefinitionError` listing all problems.

    Specs are immutable, so a directory whose files have not changed since the last load (same names,
    sizes and modification times, same registered actions) is not parsed again.
    """
    from . import builtin_actions  # noqa: F401 - registers the shipped actions

    root = Path(root).resolve()
    registry = actions or ACTIONS
    key = (str(root), _signature(root), id(registry), registry.names())
    if key not in _LOADED:
        if len(_LOADED) >= 32:
            _LOADED.clear()
        _LOADED[key] = Loader(root, registry).load()
    return _LOADED[key]


def lint(root: str | Path, actions: ActionRegistry | None = None) -> list[Problem]:
    try:
        load_definitions(root, actions)
    except DefinitionError as exc:
        return exc.problems
    return []
