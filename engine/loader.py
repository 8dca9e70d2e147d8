"""Load a definitions directory into specs, collecting every mistake with its file:line:col.

Layout of a definitions directory::

    org/roles.yaml        roles and their scope
    org/units.yaml        district -> street -> community -> grid -> building
    org/holidays.yaml     (optional) holidays and 调休 make-up working days over chinese-calendar
    forms/*.yaml          forms (a file with ``choice_lists:`` holds named choice lists)
    workflows/*.yaml      state machines

Checks run in two passes: the JSON Schema of each file kind (shipped in
``engine/schema``), then semantic checks across files (names that must exist, the
state graph, expressions). Nothing stops at the first mistake.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource

from .actions import ACTIONS, ActionRegistry
from .errors import DefinitionError, Problem
from .expressions import BUILTINS, Expression, ExpressionSyntaxError
from .form_loader import build_form, check_choice_refs, load_form_files, parse_size  # noqa: F401 - parse_size for callers
from .loadkit import GUARD_NAMES, did_you_mean, text  # noqa: F401 - GUARD_NAMES for callers
from . import spelling, workdays
from .mechanics import links, spawn
from .spec import LEVELS, ActionCall, Definitions, FieldSpec, FormSpec, OrgTree, OrgUnit, RoleSpec, WorkflowSpec
from .workdays import WorkCalendar
from .workflow_loader import build_workflow
from .yamlsource import PathItem, YamlSource, parse_yaml, read_yaml

if TYPE_CHECKING:
    from .mechanics.spawn import SpawnSpec

SCHEMA_FILES = ("form", "choices", "workflow", "roles", "orgunits", "holidays")


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


# --------------------------------------------------------------------------- loading

#: Kept for old imports: bilingual text from YAML is ``engine.loadkit.text``.
_text = text


class Loader:
    """Collects problems while building specs. Use :func:`load_definitions`."""

    def __init__(self, root: Path, actions: ActionRegistry, overlay: Mapping[str, str] | None = None,
                 cache: bool = False):
        self.root = root
        self.actions = actions
        #: texts read instead of the files (relative path -> text): a draft checked before it is saved
        self.overlay = dict(overlay or {})
        #: share parsed files and schema results by text with earlier loads (drafts, reloads after a save)
        self.cache = cache or bool(overlay)
        self.problems: list[Problem] = []
        #: what loads but ``civicflow lint`` should still say (old spellings, ``engine.spelling``; a state's
        #: ``public`` / ``public_record`` mix-ups)
        self.warnings: list[Problem] = []
        self.broken_ids: set[str] = set()  # ids of files that failed the schema: no cascades
        # references to other workflows, checked once every workflow is loaded: (source, path, workflow id, extra)
        self.case_refs: list[tuple[YamlSource, list[PathItem], str, tuple[str, ...]]] = []
        self.spawn_refs: list[tuple[YamlSource, list[PathItem], SpawnSpec]] = []
        self.link_refs: list[tuple[YamlSource, list[PathItem], str, str, Any]] = []   # moves: (…, workflow, transition, spec)
        self.wait_refs: list[tuple[YamlSource, list[PathItem], str, Any]] = []        # waits_for: (…, workflow, spec)
        self.roles_broken = False  # org/roles.yaml missing or invalid: do not also blame every workflow
        #: the roles of org/roles.yaml a user field's ``roles`` may name (None: not known, e.g. the file is broken)
        self.role_names: set[str] | None = None
        #: the fields a workflow's expressions read while it is built, for the checks of choice(field, 'key')
        self.choice_scope: dict[str, FieldSpec] | None = None
        self.choices_broken = False  # a choice-list file is invalid: do not also blame every form using a list
        self.sources: dict[str, str] = {}  # text of each workflow and form file read (kept versions are text)

    def display(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def parse(self, path: Path) -> tuple[YamlSource | None, list[Problem]]:
        """One definition file parsed (its text from :attr:`overlay` if there is one for it)."""
        name = self.display(path)
        if not self.cache:
            return read_yaml(path, name)
        body = self.read_text(path)
        if body is None:
            return read_yaml(path, name)  # says why it cannot be read
        return _draft_cached(("parse", name, body), lambda: parse_yaml(body, name))

    def read_text(self, path: Path) -> str | None:
        name = self.display(path)
        if name in self.overlay:
            return self.overlay[name]
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def read(self, path: Path, kind: str, parsed: YamlSource | None = None) -> YamlSource | None:
        source, problems = (parsed, []) if parsed is not None else self.parse(path)
        self.problems += problems
        if source is None:
            self.note_unparsed(path)  # e.g. a workflow that is not YAML: its users are not blamed too
            return None
        return self.check(source, kind)

    def check(self, source: YamlSource, kind: str) -> YamlSource | None:
        """A parsed file against the schema of its kind (None: it failed, its problems are noted)."""
        self.sources[source.file] = source.text
        if not isinstance(source.data, dict):
            self.problems.append(source.problem([], "expected a mapping at the top of the file"))
            return None
        source, warnings, problems = spelling.respell(source, kind)
        self.warnings += warnings
        if problems:
            self.problems += problems
            if isinstance(source.data.get("id"), str):
                self.broken_ids.add(source.data["id"])
            return None
        schema_problems = (_draft_cached(("schema", source.file, source.text, kind), lambda: _schema_problems(source, kind))
                           if self.cache else _schema_problems(source, kind))
        if schema_problems:
            self.problems += schema_problems
            if isinstance(source.data.get("id"), str):
                self.broken_ids.add(source.data["id"])
            return None
        return source

    def note_unparsed(self, path: Path) -> None:
        """A file that is not YAML still says what it was meant to be: do not blame its users too."""
        text = self.read_text(path)
        if text is None:
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
        return {rid: RoleSpec(rid, text(r["title"]) or {}, r.get("scope", "unit"))
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
                unit = OrgUnit(item["id"], text(item["name"]) or {}, item["level"], parent.id if parent else None)
                units[unit.id] = unit
                visit(item.get("units", []), unit, here + ["units"])

        visit(source.data["units"], None, ["units"])
        return OrgTree(units)

    def load_holidays(self) -> WorkCalendar:
        """org/holidays.yaml (optional): the admin's holidays and 调休 days over ``chinese-calendar``."""
        path = self.root / "org" / "holidays.yaml"
        if not path.exists():
            return workdays.WorkCalendar()
        source = self.read(path, "holidays")
        if source is None:
            return workdays.WorkCalendar(file=self.display(path))

        def problem(where: list[PathItem], message: str, hint: str = "") -> None:
            self.problems.append(source.problem(where, message, hint))

        return workdays.build(source.data, problem, source.file)

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
        if self.choice_scope is not None:
            check_choice_refs(self, source, path, expr, self.choice_scope)
        for name in sorted(expr.names - known):
            self.problems.append(source.problem(
                path, f"expression of {what} uses unknown name {name!r}",
                did_you_mean(name, known | BUILTINS) or f"known names: {', '.join(sorted(known)) or '(none)'}"))
        return expr

    # -- workflows (engine.workflow_loader; each mechanism's part in engine.mechanics) ----------------------
    def field_names(self, source: YamlSource, path: list[PathItem], names: list[str], known: set[str]) -> tuple[str, ...]:
        for i, name in enumerate(names):
            if name not in known:
                self.problems.append(source.problem(path + [i], f"unknown field {name!r}",
                                                    did_you_mean(name, known) or "use a field of the workflow's forms"))
        return tuple(names)


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
        spawn.check_refs(self, forms, workflows, known)
        links.check_refs(self, forms, workflows, known)

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
        self.role_names = None if self.roles_broken else set(roles)
        org = self.load_org()
        calendar = self.load_holidays()
        form_sources, choice_lists = load_form_files(self)
        forms: dict[str, FormSpec] = {}
        for source in form_sources:
            form = build_form(self, source, choice_lists)
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
            wf = build_workflow(self, source, forms, roles)
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
            raise DefinitionError(self.problems, self.warnings)
        return Definitions(forms=forms, workflows=workflows, roles=roles, org=org, choice_lists=choice_lists,
                           calendar=calendar,
                           sources=self.sources, warnings=tuple(sorted(set(self.warnings))))

    def load_text(self, workflow: tuple[str, str], forms: Iterable[tuple[str, str]], base: Definitions) -> WorkflowSpec:
        """One workflow and its forms from text ``(virtual file name, text)`` (a version kept in the store),
        against ``base`` for what is not versioned (roles, org units, choice lists, other workflows and
        forms). Raises :class:`DefinitionError` with every problem at its virtual file:line."""
        built: dict[str, FormSpec] = {}
        self.role_names = set(base.roles)
        for name, body in forms:
            parsed, problems = parse_yaml(body, name)
            self.problems += problems
            source = self.check(parsed, "form") if parsed is not None else None
            if source is not None:
                form = build_form(self, source, dict(base.choice_lists))
                built[form.id] = form
        wf = None
        parsed, problems = parse_yaml(workflow[1], workflow[0])
        self.problems += problems
        source = self.check(parsed, "workflow") if parsed is not None else None
        all_forms = {**base.forms, **built}
        if source is not None:
            wf = build_workflow(self, source, all_forms, dict(base.roles))
        if wf is not None:
            self.check_references(all_forms, {**base.workflows, wf.id: wf}, set(base.workflows) | {wf.id})
        if self.problems or wf is None:
            raise DefinitionError(self.problems)
        return replace(wf, forms={fid: built[fid] for fid in wf.form_ids() if fid in built})


_LOADED: dict[tuple[Any, ...], Definitions] = {}
_DRAFT_CACHE: dict[tuple[str, ...], Any] = {}


def _draft_cached(key: tuple[str, ...], make: Any) -> Any:
    """Parsing and schema checks of one file's text, kept for the next draft or reload: an editor checks the whole
    directory as the admin types, and every file but the one edited is the same text each time. Parsed
    sources are never changed by the loader, so they can be shared."""
    if key not in _DRAFT_CACHE:
        if len(_DRAFT_CACHE) >= 1024:
            _DRAFT_CACHE.clear()
        _DRAFT_CACHE[key] = make()
    return _DRAFT_CACHE[key]


def _signature(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Which definition files there are and when they last changed."""
    files = [*root.glob("org/*.yaml"), *root.glob("forms/*.yaml"), *root.glob("workflows/*.yaml")]
    return tuple(sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files))


def load_definitions(root: str | Path, actions: ActionRegistry | None = None, *, fresh: bool = False) -> Definitions:
    """Load and check every definition under ``root``; raise :class:`DefinitionError` listing all problems.

    Specs are immutable, so a directory whose files have not changed since the last load (same names,
    sizes and modification times, same registered actions) is not parsed again. ``fresh``: parse anyway
    (a file just saved may keep its size and, within the file system's clock tick, its time).
    """
    from . import builtin_actions  # noqa: F401 - registers the shipped actions

    root = Path(root).resolve()
    registry = actions or ACTIONS
    key = (str(root), _signature(root), id(registry), registry.names())
    if fresh or key not in _LOADED:
        if len(_LOADED) >= 32:
            _LOADED.clear()
        _LOADED[key] = Loader(root, registry, cache=fresh).load()
    return _LOADED[key]


def load_workflow_text(workflow: tuple[str, str], forms: Iterable[tuple[str, str]], base: Definitions,
                       actions: ActionRegistry | None = None) -> WorkflowSpec:
    """See :meth:`Loader.load_text`; ``actions``: the registry the names of actions are checked against."""
    from . import builtin_actions  # noqa: F401 - registers the shipped actions

    return Loader(Path("."), actions or ACTIONS).load_text(workflow, forms, base)


def load_draft(root: str | Path, overlay: Mapping[str, str], actions: ActionRegistry | None = None) -> Definitions:
    """Load ``root`` as if the files named in ``overlay`` (relative path -> text) held those texts: a draft
    checked before it is written (never cached). Raises :class:`DefinitionError` like :func:`load_definitions`."""
    from . import builtin_actions  # noqa: F401 - registers the shipped actions

    return Loader(Path(root).resolve(), actions or ACTIONS, overlay, cache=True).load()


def lint(root: str | Path, actions: ActionRegistry | None = None, *, warnings: bool = False) -> list[Problem]:
    """Every problem of the definitions under ``root``; with ``warnings``, also what loads but should still be
    said (``Problem.warning``: old spellings and the like), which ``civicflow lint`` prints without failing."""
    try:
        definitions = load_definitions(root, actions)
    except DefinitionError as exc:
        return exc.problems + (exc.warnings if warnings else [])
    return list(definitions.warnings) if warnings else []
