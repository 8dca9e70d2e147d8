"""Moving running cases of an older version of a workflow to the current one (``migrate:`` in the workflow),
checked before it happens, and the lint that needs the live store (``civicflow lint`` of an instance).

A migration is all-or-nothing: :func:`apply` plans it inside one store transaction and refuses the whole of
it if any case would be stranded (its state has no place in the new version, or a required field of the
new start form is missing), so a case is never half-migrated and never a few of them. Each migrated case
gets one history entry, written by the engine's one history writer (``Engine._record``). Cases of versions
``migrate.from`` does not name, and finished ones, keep running on (or resting in) their own version.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from . import transition as moves
from .cases import CASES, Case
from .errors import EngineError, Problem
from .mechanics import approval
from .mechanics.base import SYSTEM
from .spec import MigrationSpec, WorkflowSpec
from .yamlsource import PathItem, YamlSource, parse_yaml

if TYPE_CHECKING:
    from .runtime import Engine
    from .spec import Definitions
    from .store.base import Transaction
    from .users import User


@dataclass
class CaseMove:
    """What migrating one case would change, or why it cannot be migrated (``problems``)."""

    case_id: int
    source: int                     # the version it runs on
    state: str
    new_state: str
    fields: dict[str, str] = field(default_factory=dict)   # renamed fields it holds: old -> new
    problems: list[str] = field(default_factory=list)

    def describe(self, target: int) -> str:
        """One line for a person: ``#12 v1 -> v2: state review -> checking; field phone_no -> phone``."""
        head = f"#{self.case_id} v{self.source} -> v{target}"
        if self.problems:
            return f"{head}: stranded: {'; '.join(self.problems)}"
        parts = [f"state {self.state} -> {self.new_state}" if self.new_state != self.state else f"stays in {self.state}"]
        parts += [f"field {old} -> {new}" for old, new in self.fields.items()]
        return f"{head}: {'; '.join(parts)}"


@dataclass
class Plan:
    workflow: str
    version: int                    # the version cases move to (the current one)
    moves: list[CaseMove] = field(default_factory=list)

    @property
    def stranded(self) -> list[CaseMove]:
        return [m for m in self.moves if m.problems]


class MigrationRefused(EngineError):
    """A migration that would strand cases: nothing was changed."""

    def __init__(self, plan: Plan):
        self.plan = plan
        ids = ", ".join(f"#{m.case_id}" for m in plan.stranded)
        super().__init__(f"migration of {plan.workflow} refused: {len(plan.stranded)} case(s) would be stranded "
                         f"({ids}); nothing was changed")


def move_of(engine: "Engine", wf: WorkflowSpec, spec: MigrationSpec, case: Case) -> CaseMove:
    """What migrating ``case`` to ``wf`` along ``spec`` would do (nothing is changed)."""
    new_state = spec.states.get(case.state, case.state)
    found = CaseMove(case.id or 0, case.workflow_version, case.state, new_state,
                     {old: new for old, new in spec.fields.items() if old in case.data})
    if new_state not in wf.states:
        found.problems.append(f"state {case.state!r} has no place in version {wf.version} (map it under migrate.states)")
    data = renamed(case.data, spec)
    start = engine.definitions.form_of(wf, wf.start_form)
    for f in start.fields:
        if f.required and f.show_if is None and f.compute is None and data.get(f.id) in (None, "", [], {}):
            found.problems.append(f"required field {f.id!r} of form {start.id!r} is missing (rename an old field "
                                  "to it under migrate.fields)")
    return found


def renamed(data: dict[str, Any], spec: MigrationSpec) -> dict[str, Any]:
    return {spec.fields.get(k, k): v for k, v in data.items()}


def plan(engine: "Engine", workflow_id: str, tx: "Transaction | None" = None) -> Plan:
    """Every running case a migration of ``workflow_id`` would move, and how (from the store or ``tx``)."""
    wf = engine.definitions.workflows[workflow_id]
    result = Plan(workflow_id, wf.version)
    for spec in wf.migrations:
        for version in spec.sources:
            for case in engine.read.cases_of_version(tx, workflow_id, version):
                result.moves.append(move_of(engine, wf, spec, case))
    return result


def apply(engine: "Engine", workflow_id: str, actor: "User" = SYSTEM) -> Plan:
    """Migrate every running case ``migrate:`` names, in one transaction; raises :class:`MigrationRefused`
    (nothing changed) if any would be stranded."""
    wf = engine.definitions.workflows[workflow_id]
    with engine.store.transaction() as tx:
        found = plan(engine, workflow_id, tx)
        if found.stranded:
            raise MigrationRefused(found)
        now = engine.clock()
        for item in found.moves:
            doc = tx.get(CASES, item.case_id)
            assert doc is not None
            case = Case.from_doc(doc, owned=True)
            spec = wf.migration_from(case.workflow_version)
            assert spec is not None
            old_version, old_state = case.workflow_version, case.state
            case.data = renamed(case.data, spec)
            case.workflow_version = wf.version
            case.state = item.new_state
            if item.new_state != old_state:
                moves.enter(engine, tx, case, wf, item.new_state, actor, now)
            else:
                case.waiting_for = moves.waiting_for(wf, case.state)
                # a state that gained an approval in this version opens its round (an open one goes on)
                approval.open_round(engine, tx, case, wf, wf.states[case.state], actor, now)
            case.title = engine._title(wf, case)
            note = "; ".join([f"v{old_version} -> v{wf.version}"] + [f"{o} -> {n}" for o, n in item.fields.items()])
            engine._record(case, actor, "migrate", {"zh": f"迁移到第 {wf.version} 版", "en": f"Moved to version {wf.version}"},
                           old_state, item.new_state, note, [], now)
            tx.replace(CASES, item.case_id, case.to_doc())
    return found


# --------------------------------------------------------------------------- lint against the live store

def shape(definitions: "Definitions", wf: WorkflowSpec) -> dict[str, Any]:
    """What may not change without a new ``version:``: states, transitions, the forms used and their fields."""
    forms = {}
    for form_id in wf.form_ids():
        form = wf.forms.get(form_id) or definitions.forms.get(form_id)
        forms[form_id] = {path: (f.type, f.required) for path, f in form.walk()} if form else {}
    return {"initial": wf.initial,
            "states": {sid: s.final for sid, s in wf.states.items()},
            "transitions": {f"{t.source}.{t.id}": (t.target, t.form) for t in wf.transitions()},
            "forms": forms}


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed between two shapes, in words (``state 'review' removed``, ``field 'phone' added to form x``)."""
    found = []
    if old["initial"] != new["initial"]:
        found.append(f"initial state {old['initial']!r} -> {new['initial']!r}")
    found += _diff(old["states"], new["states"], "state {!r}",
                   lambda k, a, b: f"state {k!r} {'is now final' if b else 'is no longer final'}")
    found += _diff(old["transitions"], new["transitions"], "transition {!r}",
                   lambda k, a, b: f"transition {k!r} now goes to {b[0]!r} (was {a[0]!r})" if a[0] != b[0]
                   else f"transition {k!r} now uses form {b[1]!r} (was {a[1]!r})")
    for form_id in sorted(set(old["forms"]) - set(new["forms"])):
        found.append(f"form {form_id!r} no longer used")
    for form_id in sorted(set(new["forms"]) - set(old["forms"])):
        found.append(f"form {form_id!r} now used")
    for form_id in sorted(set(old["forms"]) & set(new["forms"])):
        a, b = old["forms"][form_id], new["forms"][form_id]
        found += [f"field {k!r} removed from form {form_id!r}" for k in a if k not in b]
        found += [f"field {k!r} added to form {form_id!r}" for k in b if k not in a]
        for k in (k for k in a if k in b and a[k] != b[k]):
            (t0, r0), (t1, r1) = a[k], b[k]
            found.append(f"field {k!r} of form {form_id!r} " + (f"is now a {t1} (was {t0})" if t0 != t1 else
                                                                 "is now required" if r1 else "is no longer required"))
    return found


def _diff(old: dict[str, Any], new: dict[str, Any], name: str, changed: Any) -> list[str]:
    found = [f"{name.format(k)} removed" for k in old if k not in new]
    found += [f"{name.format(k)} added" for k in new if k not in old]
    found += [changed(k, old[k], new[k]) for k in old if k in new and old[k] != new[k]]
    return found


def lint(engine: "Engine") -> list[Problem]:
    """Problems only the live store shows: a changed workflow whose ``version:`` was not bumped, kept versions
    that no longer load, ``migrate:`` naming what the old version does not have, and running cases a
    migration would strand (with their ids)."""
    kept, definitions = engine.kept, engine.definitions
    problems: list[Problem] = []
    for doc in kept.all_docs:  # every kept text, also of versions no case is on any more
        kept.parse(doc)
    for found in kept.broken.values():
        problems += found
    for wid, wf in definitions.workflows.items():
        text = definitions.sources.get(wf.file)
        source = parse_yaml(text, wf.file)[0] if text is not None else None
        if source is None:
            continue
        problems += _unbumped(engine, wf, source)
        problems += _migrations(engine, wf, source)
    return problems


def _unbumped(engine: "Engine", wf: WorkflowSpec, source: YamlSource) -> list[Problem]:
    kept = engine.kept
    current = kept.current.get(wf.id)
    said: list[str] = []
    for doc in kept.all_docs:
        if doc["workflow"] != wf.id or doc["version"] != wf.version or doc["digest"] == current:
            continue
        old = kept.parse(doc)
        if old is not None:
            said += [c for c in changes(shape(engine.definitions, old), shape(engine.definitions, wf)) if c not in said]
    if not said:
        return []
    bump = max([wf.version, *kept.kept_numbers(wf.id)]) + 1
    return [source.problem(["version"], f"workflow {wf.id!r} changed since version {wf.version} started cases, "
                                        f"but its version was not bumped: {'; '.join(said)}",
                           f"bump version to {bump}")]


def _migrations(engine: "Engine", wf: WorkflowSpec, source: YamlSource) -> list[Problem]:
    problems = []
    single = isinstance(source.data.get("migrate"), dict)
    stranded: dict[int, list[CaseMove]] = {}
    for item in plan(engine, wf.id).stranded:
        stranded.setdefault(item.source, []).append(item)
    for i, spec in enumerate(wf.migrations):
        here: list[PathItem] = ["migrate"] if single else ["migrate", i]
        for version in spec.sources:
            old = engine.kept.spec(wf.id, version)
            if old is not None:
                problems += _names(source, here, "states", spec.states, set(old.states), version)
                fields = {f.id for _, f in engine.data_fields(old)}
                problems += _names(source, here, "fields", spec.fields, fields, version)
            if version in stranded:
                cases = stranded[version]
                ids = ", ".join(f"#{m.case_id} ({'; '.join(m.problems)})" for m in cases)
                problems.append(source.problem(
                    here + ["from"], f"{len(cases)} running case(s) of version {version} would be stranded by "
                                     f"migrating: {ids}",
                    f"map their states and fields here, or leave version {version} out of migrate.from "
                    "(its cases keep running on it)"))
    return problems


def _names(source: YamlSource, here: list[PathItem], what: str, mapping: dict[str, str], known: Iterable[str],
           version: int) -> list[Problem]:
    known = set(known)
    singular = what[:-1]
    return [source.problem(here + [what, old], f"{singular} {old!r} is not a {singular} of version {version}",
                           f"{what} of version {version}: {', '.join(sorted(known))}", key=True)
            for old in mapping if old not in known]
