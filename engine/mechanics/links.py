"""Linked cases that move each other: a transition's ``linked:`` takes a transition on linked cases (the case a
``type: case`` field names, the parent it was started from, or its children), and a state's ``waits_for:`` moves a
parent on by itself when all (or any) of its children reach given states.

Every such move is a move of the linked case through the one transition path (``engine.transition.take``), as
:data:`SYSTEM` (the linked transition lists ``system`` among its roles: the definition of the linked process says
it may be moved from outside), along an edge of its state graph, in the same store transaction as the step that
caused it (all or nothing). The moved case's history entry names the case and the person that moved it; the case
that caused the move gets a ``linked`` entry naming the moved case and where it went. A chain of such moves never
revisits a case (:func:`after` raises); ``check_refs`` reports at load time every cycle of linked moves it can see.

Holds the specs (:class:`MoveSpec`, :class:`WaitSpec`), their load-time checks (:func:`build_moves`,
:func:`build_wait`, :func:`check_refs`) and the runtime hook :func:`after` (step 7 of the transition path).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .. import transition as moves
from ..cases import CASES, Case
from ..errors import TransitionError
from ..loadkit import did_you_mean, msg
from ..spec import tr
from .base import SYSTEM, Step

if TYPE_CHECKING:
    from ..loader import Loader
    from ..spec import EdgeSpec, FieldSpec, FormSpec, StateSpec, WorkflowSpec
    from ..store.base import Transaction
    from ..users import User
    from ..yamlsource import PathItem, YamlSource

#: A chain of linked moves deeper than this is refused (a loop the load-time check could not see).
MAX_CHAIN = 12
LINKED_LABEL = {"zh": "带动关联事项", "en": "Moved a linked case"}
RELATIONS = ("parent", "children")


@dataclass(frozen=True)
class MoveSpec:
    """After the transition, take transition ``take`` on the linked cases ``case`` names: ``parent``, ``children``
    or a ``type: case`` field of this case; ``workflow``: the linked cases' process (a case field's own)."""

    case: str
    take: str
    workflow: str


@dataclass(frozen=True)
class WaitSpec:
    """While a case is in this state, it takes ``take`` (as the system) as soon as ``when`` (all | any) of its
    children of workflow ``children`` are in one of ``states`` (all: at least one child, and every one)."""

    children: str
    states: tuple[str, ...]
    take: str
    when: str = "all"


# --------------------------------------------------------------------------- load time

def build_moves(ld: "Loader", source: "YamlSource", path: list["PathItem"], items: list[dict],
                case_fields: Mapping[str, "FieldSpec"] | None, workflow: str, transition: str) -> tuple[MoveSpec, ...]:
    """``linked:`` of a transition; ``case_fields``: the ``type: case`` fields of the workflow's forms (None: a form
    is missing, so they are not all known)."""
    found = []
    for i, item in enumerate(items):
        here = path + [i]
        relation, target = item["case"], item.get("workflow")
        if relation not in RELATIONS:
            if case_fields is not None and relation not in case_fields:
                ld.problems.append(source.problem(here + ["case"], f"{relation!r} is neither parent, children nor a case field",
                                                  did_you_mean(relation, list(case_fields) + list(RELATIONS)) or
                                                  "name parent, children or a field with type: case"))
                continue
            declared = case_fields[relation].workflow if case_fields is not None else None
            if target is not None and declared is not None and target != declared:
                ld.problems.append(source.problem(here + ["workflow"], f"field {relation!r} holds cases of {declared!r}, not {target!r}",
                                                  f"leave workflow out, or write workflow: {declared}"))
            target = target or declared
        elif target is None:
            ld.problems.append(source.problem(here, f"moves of the {relation} case need 'workflow'",
                                              f"say which process the {relation} case belongs to, e.g. workflow: needs_list"))
            continue
        if target is None:
            continue
        spec = MoveSpec(relation, item["take"], target)
        ld.link_refs.append((source, here, workflow, transition, spec))
        found.append(spec)
    return tuple(found)


def build_wait(ld: "Loader", source: "YamlSource", path: list["PathItem"], raw: dict | None,
               transitions: dict[str, list[str]], workflow: str) -> WaitSpec | None:
    if raw is None:
        return None
    if raw["take"] not in transitions:
        ld.problems.append(source.problem(path + ["take"], f"unknown transition {raw['take']!r} in this state",
                                          did_you_mean(raw["take"], transitions) or f"transitions here: {', '.join(sorted(transitions)) or '(none)'}"))
    elif "system" not in transitions[raw["take"]]:
        ld.problems.append(source.problem(path + ["take"], f"the case moves on by itself along {raw['take']!r}, but its roles lack 'system'",
                                          f"add system to its roles, e.g. roles: [{', '.join(transitions[raw['take']] + ['system'])}]"))
    spec = WaitSpec(raw["children"], tuple(raw["states"]), raw["take"], raw.get("when", "all"))
    ld.wait_refs.append((source, path, workflow, spec))
    return spec


def check_refs(ld: "Loader", forms: Mapping[str, "FormSpec"], workflows: Mapping[str, "WorkflowSpec"],
               known: set[str]) -> None:
    """Once every workflow is loaded: the linked workflows, their transitions (listing ``system``, asking nothing a
    linked move cannot give) and states exist; no cycle of linked moves."""
    for source, path, _, _, spec in ld.link_refs:
        if spec.workflow not in known:
            ld.problems.append(source.problem(path + (["workflow"] if spec.case in RELATIONS else ["case"]),
                                              f"unknown workflow {spec.workflow!r}",
                                              did_you_mean(spec.workflow, known) or "workflows live in workflows/*.yaml"))
            continue
        wf = workflows.get(spec.workflow)
        if wf is None:
            continue
        found = [t for t in wf.transitions() if t.id == spec.take]
        if not found:
            ld.problems.append(source.problem(path + ["take"], f"workflow {spec.workflow!r} has no transition {spec.take!r}",
                                              did_you_mean(spec.take, {t.id for t in wf.transitions()}) or "name one of its transitions"))
            continue
        for t in found:
            if "system" not in t.roles:
                ld.problems.append(source.problem(path + ["take"], f"transition {spec.take!r} of {spec.workflow!r} lacks the role 'system'",
                                                  f"a linked move is taken by the system: add system to its roles in {wf.file or spec.workflow}"))
                break
            form = forms.get(t.form) if t.form else None
            required = [f.id for f in form.fields if f.required] if form is not None else []
            if required or (t.assign is not None and t.assign.mode == "choose"):
                what = f"its form asks for {', '.join(required)}" if required else "it asks whom to assign"
                ld.problems.append(source.problem(path + ["take"], f"a linked move cannot take {spec.workflow}.{spec.take}: {what}",
                                                  "nobody fills a form in a linked move: take a transition without required fields"))
                break
    for source, path, _, spec in ld.wait_refs:
        if spec.children not in known:
            ld.problems.append(source.problem(path + ["children"], f"unknown workflow {spec.children!r}",
                                              did_you_mean(spec.children, known) or "workflows live in workflows/*.yaml"))
        elif spec.children in workflows:
            states = workflows[spec.children].states
            for i, sid in enumerate(spec.states):
                if sid not in states:
                    ld.problems.append(source.problem(path + ["states", i], f"unknown state {sid!r} of workflow {spec.children!r}",
                                                      did_you_mean(sid, states) or f"states: {', '.join(states)}"))
    _check_cycles(ld, workflows)


def _check_cycles(ld: "Loader", workflows: Mapping[str, "WorkflowSpec"]) -> None:
    """A cycle of (workflow, transition) nodes, each moving the next: reported at the first ``linked`` entry in it."""
    onward: dict[tuple[str, str], list[tuple[str, str]]] = {}
    where: dict[tuple[str, str], tuple[Any, list[Any]]] = {}
    for source, path, wid, tid, spec in ld.link_refs:
        onward.setdefault((wid, tid), []).append((spec.workflow, spec.take))
        where.setdefault((wid, tid), (source, path))
    for source, path, wid, spec in ld.wait_refs:  # a child's move into the awaited states moves the parent on
        child = workflows.get(spec.children)
        for t in child.transitions() if child else ():
            if t.target in spec.states:
                onward.setdefault((spec.children, t.id), []).append((wid, spec.take))
                where.setdefault((spec.children, t.id), (source, path))
    reported: set[frozenset[tuple[str, str]]] = set()
    for start in list(onward):
        stack, seen = [(start, [start])], {start}
        while stack:
            node, trail = stack.pop()
            for nxt in onward.get(node, ()):
                if nxt == start:
                    cycle = frozenset(trail)
                    if cycle not in reported and start in where:
                        reported.add(cycle)
                        source, path = where[start]
                        names = " → ".join(f"{w}.{t}" for w, t in trail + [start])
                        ld.problems.append(source.problem(path, f"linked moves go round in a cycle: {names}",
                                                          "a case would move itself again through its linked cases: "
                                                          "drop one of these moves"))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))


# --------------------------------------------------------------------------- run time

def after(engine: Any, tx: "Transaction", case: Case, edge: "EdgeSpec", actor: "User", step: Step,
          now: dt.datetime) -> None:
    """Step 7 of every move: the transition's linked moves, the parent waiting for this child, and this case's
    own wait for its children (the state it arrived in may already be satisfied)."""
    chain = step.chain + (case.id,)
    if len(chain) > MAX_CHAIN:
        raise TransitionError(msg("关联事项相互带动，形成循环，操作未执行。", "Linked cases keep moving each other: refused."))
    if edge.kind == "transition" and step.transition is not None:
        for spec in step.transition.linked:
            for linked in _linked(engine, tx, case, spec, chain):
                if _take(engine, tx, linked, spec.take, case, actor, chain, now):
                    _note(engine, case, linked, actor, now)
    if case.parent and case.parent not in chain:
        parent = _load(engine, tx, case.parent)
        state = engine.workflow_of(parent).states.get(parent.state) if parent is not None else None
        wait = state.waits_for if state is not None else None
        if parent is not None and wait is not None and wait.children == case.workflow and _ready(engine, tx, parent, wait, case):
            tx.replace(CASES, case.id, case.to_doc())  # the parent's own checks read its children from the store
            if _take(engine, tx, parent, wait.take, case, actor, chain, now):
                _note(engine, case, parent, actor, now)
    state = engine.workflow_of(case).states.get(case.state)
    wait = state.waits_for if state is not None else None
    if wait is not None and _ready(engine, tx, case, wait, None):
        t = state.transition(wait.take) if state is not None else None
        if t is not None:
            moves.take(engine, tx, case, moves.find(engine, case, wait.take), SYSTEM,
                       Step(comment=_children_note(engine, tx, case, wait), chain=chain))


def _load(engine: Any, tx: "Transaction", case_id: Any) -> Case | None:
    try:
        doc = tx.get(CASES, int(case_id))
    except (TypeError, ValueError):
        return None
    return Case.from_doc(doc, owned=True) if doc is not None else None


def _linked(engine: Any, tx: "Transaction", case: Case, spec: MoveSpec, chain: tuple[int, ...]) -> list[Case]:
    """The linked cases a move names, found by id or through the ``("parent", id)`` index, never by a scan."""
    from ..readmodel import CASE_INDEX  # the read model imports the engine's modules
    if spec.case == "children":
        found = [Case.from_doc(d, owned=True) for d in tx.lookup(CASE_INDEX, [("parent", case.id)], newest=False).docs]
    else:
        ref = case.parent if spec.case == "parent" else case.data.get(spec.case)
        one = _load(engine, tx, ref) if ref else None
        found = [one] if one is not None else []
    result = []
    for linked in found:
        if linked.workflow != spec.workflow:
            continue
        if linked.id in chain:
            raise TransitionError(msg(f"关联事项 #{linked.id} 会被再次带动（循环），操作未执行。",
                                      f"Linked case #{linked.id} would be moved again (a loop): refused."))
        result.append(linked)
    return result


def _take(engine: Any, tx: "Transaction", linked: Case, transition_id: str, cause: Case, actor: "User",
          chain: tuple[int, ...], now: dt.datetime) -> bool:
    """Move ``linked`` along its transition ``transition_id`` as the system, if its state has it now; written back."""
    if engine.state_of(linked).transition(transition_id) is None:
        return False  # e.g. the need is already in a project another one signed: it stays where it is
    wf = engine.workflow_of(cause)
    note = f"由 #{cause.id}（{tr(wf.title, 'zh')}）带动 · {actor.name}"
    moves.take(engine, tx, linked, moves.find(engine, linked, transition_id), SYSTEM, Step(comment=note, chain=chain))
    tx.replace(CASES, linked.id, linked.to_doc())
    return True


def _note(engine: Any, case: Case, moved: Case, actor: "User", now: dt.datetime) -> None:
    wf = engine.workflow_of(moved)
    title = tr(wf.states[moved.state].title, "zh")
    engine._record(case, actor, "linked", LINKED_LABEL, case.state, case.state,
                   f"#{moved.id}（{tr(wf.title, 'zh')}）→ {title}", [], now)


def _children(engine: Any, tx: "Transaction", parent: Case, wait: WaitSpec, fresh: Case | None) -> list[Case]:
    from ..readmodel import CASE_INDEX
    found = [Case.from_doc(d, owned=True) for d in tx.lookup(CASE_INDEX, [("parent", parent.id)], newest=False).docs]
    found = [fresh if fresh is not None and c.id == fresh.id else c for c in found]  # the moving child is newer
    return [c for c in found if c.workflow == wait.children]


def _ready(engine: Any, tx: "Transaction", parent: Case, wait: WaitSpec, fresh: Case | None) -> bool:
    children = _children(engine, tx, parent, wait, fresh)
    done = [c for c in children if c.state in wait.states]
    return bool(done) and (wait.when == "any" or len(done) == len(children))


def _children_note(engine: Any, tx: "Transaction", case: Case, wait: WaitSpec) -> str:
    done = [c for c in _children(engine, tx, case, wait, None) if c.state in wait.states]
    return ("全部" if wait.when == "all" else "") + "子事项已到达：" + "、".join(f"#{c.id}" for c in done)


def pending(engine: Any, case: Case, state: "StateSpec", children: Iterable[Case]) -> dict[str, Any] | None:
    """For the case page: what a waiting state waits for (how many children are there)."""
    wait = state.waits_for
    if wait is None:
        return None
    mine = [c for c in children if c.workflow == wait.children]
    done = [c for c in mine if c.state in wait.states]
    return {"spec": wait, "done": len(done), "total": len(mine)}
