"""Immutable specs parsed once from the YAML definitions (forms, workflows, roles, org units).

A running case never holds a copy of its definition: it stores the workflow id and
version, and spec methods take the case as an argument.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
from importlib import import_module
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from .durations import Duration
from .expressions import Expression
from .fieldtypes import FIELD_KINDS, FieldType, names_where
from .workdays import WorkCalendar

if TYPE_CHECKING:
    from .mechanics.approval import ApprovalSpec
    from .mechanics.assign import AssignSpec
    from .mechanics.cc import CcSpec
    from .mechanics.collect import AggregateSpec, CollectSpec
    from .mechanics.links import MoveSpec, WaitSpec
    from .mechanics.notice import NoticeSpec
    from .mechanics.points import PointsSpec
    from .mechanics.ranking import LevelSpec, RankingSpec
    from .mechanics.reports import MetricSpec, TargetSpec
    from .mechanics.spawn import SpawnSpec
    from .mechanics.timers import DeadlineSpec, TimerSpec
    from .mechanics.unique import UniqueSpec

#: The mechanisms' specs live with their mechanism (``engine.mechanics``); ``from engine.spec import
#: CollectSpec`` keeps working through :func:`__getattr__` (imported on first use: the mechanics modules
#: import this one, so importing them here at load time would be a cycle).
MOVED = {
    "ApprovalSpec": "approval", "AssignSpec": "assign", "CcSpec": "cc", "AggregateSpec": "collect", "CollectSpec": "collect", "NoticeSpec": "notice",
    "PointsSpec": "points", "LevelSpec": "ranking", "RankingSpec": "ranking", "MetricSpec": "reports",
    "MoveSpec": "links", "WaitSpec": "links",
    "TargetSpec": "reports", "SpawnSpec": "spawn", "DeadlineSpec": "timers", "TimerSpec": "timers",
    "UniqueSpec": "unique",
}


def __getattr__(name: str) -> Any:
    if name in MOVED:
        return getattr(import_module(f"engine.mechanics.{MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Text = Mapping[str, str]
LANGS = ("zh", "en")

#: Field type names, as registered in engine/fieldtypes.py (the one place that lists them and their facts).
FIELD_TYPES = frozenset(FIELD_KINDS)
CHOICE_TYPES = names_where("holds_choices")
FILE_TYPES = names_where("holds_files")
#: Roles every workflow knows without declaring them: who started the case, who it is assigned to,
#: and the system itself (timers: a transition only the clock takes).
PSEUDO_ROLES = frozenset({"creator", "assignee", "system"})
#: A step's role "the person named in field X" (``roles: [{field: inspector}]`` in YAML) is kept as the text
#: ``field:inspector`` among the role names; whoever a ``type: user`` field of the case names holds it on the case.
FIELD_ROLE = "field:"


def field_role(field_id: str) -> str:
    return FIELD_ROLE + field_id


def role_field(role: str) -> str | None:
    """The field a "named in field" role reads (None: a role of org/roles.yaml or a pseudo-role)."""
    return role[len(FIELD_ROLE):] if role.startswith(FIELD_ROLE) else None


def person_roles(roles: Iterable[str]) -> list[str]:
    """Roles people hold through org/roles.yaml (in the order given, once each): without pseudo-roles and
    "named in field" roles."""
    return list(dict.fromkeys(r for r in roles if r not in PSEUDO_ROLES and not r.startswith(FIELD_ROLE)))


def role_name(raw: Any) -> str:
    """A role as the YAML writes it (a name, or ``{field: inspector}``) as the engine keeps it."""
    return field_role(str(raw["field"])) if isinstance(raw, Mapping) else str(raw)


#: Edge kinds that are moves beside the process on every open state (催办 urge, 抄送 cc): self-loops taken without
#: entering the state again; they neither lead anywhere nor count as a way out (``engine.mechanics.urge``, ``cc``).
ASIDE_KINDS = frozenset({"urge", "cc"})


def tr(text: Text | None, lang: str = "zh") -> str:
    """The text in ``lang``, falling back to the other language."""
    if not text:
        return ""
    return text.get(lang) or text.get("zh") or text.get("en") or ""


@dataclass(frozen=True)
class Choice:
    value: str
    label: Text
    #: What the choice carries besides its label (``{points: 100, category: food}``): read by expressions with
    #: ``choice(field, 'points')`` and ``choice_sum``; scalars only (text, numbers, true / false).
    data: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class FieldSpec:
    id: str
    type: str
    label: Text
    required: bool = False
    help: Text | None = None
    placeholder: Text | None = None
    default: Any = None
    min: float | None = None
    max: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    message: Text | None = None
    choices: tuple[Choice, ...] = ()
    show_if: Expression | None = None
    compute: Expression | None = None
    sensitive: bool = False
    fields: tuple["FieldSpec", ...] = ()
    min_rows: int = 0
    max_rows: int | None = None
    accept: tuple[str, ...] = ()
    max_size: int | None = None
    level: str | None = None
    workflow: str | None = None          # type: case — which workflow the referenced case belongs to
    states: tuple[str, ...] = ()         # type: case — and which states it may be in
    multiple: bool = False               # type: user — several people (a list of usernames)
    roles: tuple[str, ...] = ()          # type: user — only holders of one of these roles
    scope: str | None = None             # type: user — whose unit they are in, seen from the case's unit
    required_if: Expression | None = None  # required while this is true (and the field is shown)
    required_message: Text | None = None   # the message when a required field is left empty

    @property
    def kind(self) -> FieldType:
        """What this field's type means everywhere: ``f.kind.numeric``, ``f.kind.display(f, value)``..."""
        return FIELD_KINDS[self.type]

    @property
    def is_repeat(self) -> bool:
        return self.kind.holds_rows

    def choice_data(self, value: Any) -> Mapping[str, Any]:
        """The data the chosen ``value`` carries (empty for no choice, or a choice without data)."""
        for choice in self.choices:
            if choice.value == value:
                return choice.data
        return {}

    def choice_label(self, value: Any, lang: str = "zh") -> str:
        for choice in self.choices:
            if choice.value == value:
                return tr(choice.label, lang)
        return "" if value is None else str(value)


@dataclass(frozen=True)
class RuleSpec:
    """A check across fields (``votes_for <= present``); when it is false the form is refused with ``message``."""

    check: Expression
    message: Text
    field: str | None = None


@dataclass(frozen=True)
class SectionSpec:
    """A fieldset of a form: a ``type: section`` marker and the questions after it (``id`` None: the questions
    of a page before its first section, shown without a legend)."""

    id: str | None
    title: Text | None
    help: Text | None
    fields: tuple[FieldSpec, ...]


@dataclass(frozen=True)
class PageSpec:
    """One step of a paged form: a ``type: page`` marker and its sections (``id`` None: a form without pages
    is one page)."""

    id: str | None
    title: Text | None
    help: Text | None
    sections: tuple[SectionSpec, ...]

    @property
    def fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for s in self.sections for f in s.fields)

    @property
    def has_uploads(self) -> bool:
        """An upload field or a repeat with an upload column is on the page (leaving it posts the files)."""
        return any(f.kind.holds_files or any(sub.kind.holds_files for sub in f.fields) for f in self.fields)


def layout(fields: Iterable[FieldSpec]) -> tuple[PageSpec, ...]:
    """The pages and sections that the ``section`` / ``page`` markers among ``fields`` make (the markers
    themselves are not in them). Questions before the first marker are a section (or page) without a heading."""
    pages: list[tuple[FieldSpec | None, list[tuple[FieldSpec | None, list[FieldSpec]]]]] = [(None, [(None, [])])]
    for f in fields:
        if f.kind.starts_page:
            if not any(fs for _, fs in pages[-1][1]) and pages[-1][0] is None:
                pages.pop()  # nothing before the first page
            pages.append((f, [(None, [])]))
        elif f.kind.starts_section:
            pages[-1][1].append((f, []))
        else:
            pages[-1][1][-1][1].append(f)
    return tuple(PageSpec(p.id if p else None, p.label if p else None, p.help if p else None,
                          tuple(SectionSpec(s.id if s else None, s.label if s else None, s.help if s else None,
                                            tuple(fs)) for s, fs in sections if s is not None or fs))
                 for p, sections in pages)


@dataclass(frozen=True)
class FormSpec:
    id: str
    version: int
    title: Text
    fields: tuple[FieldSpec, ...]
    file: str = ""
    rules: tuple[RuleSpec, ...] = ()
    description: Text | None = None  # shown above the fields

    def field(self, field_id: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.id == field_id), None)

    def walk(self) -> Iterator[tuple[str, FieldSpec]]:
        """Every field with its dotted path (``attendees.*.name`` inside repeats)."""
        def visit(prefix: str, fields: tuple[FieldSpec, ...]) -> Iterator[tuple[str, FieldSpec]]:
            for f in fields:
                path = f"{prefix}{f.id}"
                yield path, f
                if f.is_repeat:
                    yield from visit(f"{path}.*.", f.fields)
        return visit("", self.fields)

    def sensitive_paths(self) -> frozenset[str]:
        return frozenset(p for p, f in self.walk() if f.sensitive)

    @cached_property
    def pages(self) -> tuple[PageSpec, ...]:
        """The steps of the form and the sections of each (one page when it has no ``page`` marker)."""
        return layout(self.fields)

    @property
    def paged(self) -> bool:
        return len(self.pages) > 1

    def page_of(self, path: str) -> int:
        """The index of the page that holds the field at an error path (``name``, ``items.0.receipt``); 0 for
        a message of the whole form."""
        top = path.split(".", 1)[0]
        return next((i for i, p in enumerate(self.pages) if any(f.id == top for f in p.fields)), 0)

    def upload_inputs(self) -> list[str]:
        """The names of every file input the form may have: upload fields, and upload columns of repeat rows
        for each row it may have (the loader makes a repeat with an upload column say ``max_rows``)."""
        names = []
        for f in self.fields:
            if f.kind.holds_files:
                names.append(f.id)
            elif f.is_repeat:
                columns = [sub.id for sub in f.fields if sub.kind.holds_files]
                names += [f"{f.id}-{i}-{c}" for i in range(f.max_rows or 0) for c in columns]
        return names


@dataclass(frozen=True)
class ActionCall:
    name: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TransitionSpec:
    id: str
    source: str
    target: str
    label: Text
    roles: tuple[str, ...]
    guard: Expression | None = None     # YAML ``when``: the step is offered only while it is true
    form: str | None = None
    comment: str = "optional"          # "required" | "optional" | "none"
    before_actions: tuple[ActionCall, ...] = ()
    actions: tuple[ActionCall, ...] = ()
    style: str = "primary"             # "primary" | "secondary" | "danger"
    assign: AssignSpec | None = None
    points: tuple[PointsSpec, ...] = ()
    spawn: tuple[SpawnSpec, ...] = ()
    bulk: bool = False                 # offered in the inbox for several cases at once (nothing asked per case)
    linked: tuple[MoveSpec, ...] = ()   # afterwards, linked cases take a transition of theirs (engine.mechanics.links)
    cc: "CcSpec | None" = None           # 抄送: who taking the step copies in on the case (engine.mechanics.cc)


@dataclass(frozen=True)
class StateSpec:
    id: str
    title: Text
    final: bool = False
    inbox: tuple[str, ...] | None = None    # None: whoever may take a transition; () : nobody's inbox
    transitions: tuple[TransitionSpec, ...] = ()
    collect: CollectSpec | None = None
    after: TimerSpec | None = None      # YAML ``timeout: {after, then}``
    deadline: DeadlineSpec | None = None
    notice: NoticeSpec | None = None
    public: bool = False                # cases in this state are listed on the public page (居务公开)
    public_fields: tuple[str, ...] = ()
    publish: bool = False               # YAML ``public_record``: entering this state appends to the tamper-evident publication chain
    offers: tuple[SpawnSpec, ...] = ()  # "start a linked case" buttons while a case is in this state
    certificate: bool = False           # cases in this state have a printable certificate
    approval: ApprovalSpec | None = None  # several approvers decide the step (会签 / 或签 / 依次审批)
    waits_for: WaitSpec | None = None   # moves on by itself when its children reach given states (links)
    moves: tuple[str, ...] = ()         # a person's moves on their own task here: transfer, add_approver (转交 / 加签)
    return_to: tuple[str, ...] = ()     # earlier states the case may be sent back to (退回)

    def transition(self, transition_id: str) -> TransitionSpec | None:
        return next((t for t in self.transitions if t.id == transition_id), None)


#: The clocks that take a transition by themselves (``EdgeSpec.triggers``), named by the YAML block whose
#: ``then:`` names it: the state's ``timeout``, the end of its public ``notice`` and the end of its ``collect``
#: (each ``{after: <duration>, then: <transition>}``).
TRIGGERS = ("timeout", "notice", "collect")
#: Besides the clocks, a trigger of an edge the system takes: the state's ``waits_for`` (its children arrived).
CHILDREN_TRIGGER = "children"
EDGE_KINDS = ("transition", "objection", "ranking", "approval", "move", "urge", "cc")
OBJECTION_LABEL: Text = {"zh": "提出异议", "en": "Objection filed"}
RANKING_LABELS: Mapping[str, Text] = {
    "selected": {"zh": "确定排名 · 入选", "en": "Ranking closed · selected"},
    "rest": {"zh": "确定排名 · 未入选", "en": "Ranking closed · not selected"},
    "reopen": {"zh": "重新开启排名", "en": "Ranking reopened"},
}


@dataclass(frozen=True)
class EdgeSpec:
    """One way a case can move from ``source`` to ``target``: an edge of the workflow's state graph.

    * kind ``transition``: ``via`` is the transition id, ``roles`` its roles; ``triggers`` names the clocks
      that take it (:data:`TRIGGERS`; empty: only people do).
    * kind ``objection``: during the public notice in ``source`` a holder of one of ``roles`` objects and the
      case moves to ``notice.objection_to``; ``via`` is ``object``.
    * kind ``ranking``: closing the round moves a case waiting in ``ranking.state`` to ``ranking.selected``
      (``outcome`` ``selected``) or ``ranking.rest`` (``outcome`` ``rest``); ``via`` is ``ranking``. A round
      that may be reopened (``round.reopen``) has the way back from both, ``via`` and ``outcome`` ``reopen``.
    * kind ``approval`` (``engine.mechanics.approval``): an approver's act, a self-loop with ``via``
      ``approve`` or ``reject``; and the round's outcome, ``via`` ``approved`` (to ``approval.approved``) or
      ``rejected`` (to ``approval.rejected``); ``outcome`` is the same as ``via``.
    * kinds ``urge`` (催办, ``engine.mechanics.urge``) and ``cc`` (抄送, ``engine.mechanics.cc``): self-loops on every
      state that is not final (urge unless the workflow says ``urge: false``); ``via`` is the kind. They are
      :data:`ASIDE_KINDS`: no way out of a state, not drawn in the diagram.
    * kind ``move`` (``engine.mechanics.taskmoves``): a person's move on their own task: ``transfer`` (转交) and
      ``add_approver`` (加签), self-loops; ``return`` (退回) to each of the state's ``return_to`` (``outcome``
      ``return-<state>``); ``withdraw`` (撤回) to the workflow's ``withdraw.to``.

    ``via`` is also the ``action`` of the history entry the move writes, so ``(from, action, to)`` of a
    history entry names the edge the case took.
    """

    source: str
    target: str
    kind: str                           # transition | objection | ranking | approval | move | urge | cc
    via: str                            # transition id | "object" | "ranking" | approve | reject | approved | rejected
                                        # | transfer | add_approver | return | withdraw
    label: Text
    roles: tuple[str, ...]
    triggers: tuple[str, ...] = ()      # transition: the clocks that take it
    outcome: str | None = None          # ranking: selected | rest; approval: its via

    @property
    def key(self) -> str:
        """Unique in the workflow: ``state.transition_id``, ``state:objection``, ``state:ranking:selected``
        (ids never hold ``.`` or ``:``, so the forms cannot clash)."""
        if self.kind == "transition":
            return f"{self.source}.{self.via}"
        return ":".join(p for p in (self.source, self.kind, self.outcome) if p)

    @property
    def automatic(self) -> bool:
        """The clock takes it (possibly people too)."""
        return bool(self.triggers)

    @property
    def loop(self) -> bool:
        return self.source == self.target

    @property
    def aside(self) -> bool:
        """A move beside the process (urge, cc): a self-loop every open state has, no step of the process."""
        return self.kind in ASIDE_KINDS

def state_graph(states: Mapping[str, StateSpec], rankings: "tuple[RankingSpec, ...] | RankingSpec | None",
                urge: bool = True, withdraw: str | None = None) -> tuple[EdgeSpec, ...]:
    """Every way a case can move, in definition order: per state its transitions, its approval's acts and
    outcomes, then its objection, then a person's moves on their task (``withdraw``: the workflow's
    ``withdraw.to``); the rankings' two edges after the state cases wait in (and, for a round that may be
    reopened, the way back from where they went); last, on every state that is not final, the moves beside the
    process (urge unless ``urge`` is false, cc). Deadlines are no edges: they flag and escalate only.

    Edges may name states that do not exist (a misspelt ``to``): the loader reports those and checks the
    graph only when every end is known.
    """
    edges: list[EdgeSpec] = []

    from .mechanics import ranking as ranking_mod  # imported here: the mechanics modules import this one
    if rankings is None:
        rankings = ()
    elif not isinstance(rankings, tuple):
        rankings = (rankings,)
    ranked = ranking_mod.edges(rankings)
    ranking_sources = {source for source, _, _, _ in ranked}

    def ranking_edges(sid: str) -> list[EdgeSpec]:
        return [EdgeSpec(source, target, "ranking", "reopen" if outcome == "reopen" else "ranking",
                         RANKING_LABELS[outcome], roles, outcome=outcome)
                for source, target, outcome, roles in ranked if source == sid]

    for sid, state in states.items():
        for t in state.transitions:
            triggers = tuple(name for name, takes in (
                ("timeout", state.after is not None and state.after.transition == t.id),
                ("notice", state.notice is not None and state.notice.on_expiry == t.id),
                ("collect", state.collect is not None and state.collect.deadline is not None
                 and state.collect.on_deadline == t.id),
                (CHILDREN_TRIGGER, state.waits_for is not None and state.waits_for.take == t.id)) if takes)
            edges.append(EdgeSpec(sid, t.target, "transition", t.id, t.label, t.roles, triggers))
        if state.approval is not None:
            from .mechanics import approval  # imported here: the mechanics modules import this one
            edges += approval.edges(sid, state.approval)
        if state.notice is not None:
            edges.append(EdgeSpec(sid, state.notice.objection_to, "objection", "object", OBJECTION_LABEL,
                                  state.notice.objection_roles))
        if state.moves or state.return_to or withdraw is not None:
            from .mechanics import taskmoves
            edges += taskmoves.edges(sid, state, withdraw)
        edges += ranking_edges(sid)
    for sid in ranking_sources - set(states):
        edges += ranking_edges(sid)
    from .mechanics import cc as cc_mechanism, urge as urge_mechanism  # here: they import this module
    for sid, state in states.items():
        if not state.final:
            edges += (urge_mechanism.edges(sid) if urge else []) + cc_mechanism.edges(sid)
    return tuple(edges)


def reachable(edges: Iterable[EdgeSpec], start: str) -> set[str]:
    """The states a case starting in ``start`` can get to along ``edges`` (``start`` included)."""
    onward: dict[str, list[str]] = {}
    for e in edges:
        onward.setdefault(e.source, []).append(e.target)
    reached, queue = {start}, deque([start])
    while queue:
        for target in onward.get(queue.popleft(), ()):
            if target not in reached:
                reached.add(target)
                queue.append(target)
    return reached


@dataclass(frozen=True)
class ListSpec:
    """The workflow's list page: which start-form fields are columns and which can be filtered (search)."""

    columns: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()


@dataclass(frozen=True)
class MigrationSpec:
    """How running cases of older versions (``sources``) move to the workflow's version: a state renamed
    (``states``, old -> new; a state not named keeps its id) and fields renamed (``fields``, old -> new)."""

    sources: tuple[int, ...]
    states: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkflowSpec:
    id: str
    version: int
    title: Text
    description: Text | None
    start_form: str
    start_roles: tuple[str, ...]
    roles: tuple[str, ...]
    initial: str
    states: Mapping[str, StateSpec]
    org_unit_field: str | None = None
    case_title: Expression | None = None
    file: str = ""
    round: str | None = None            # month | quarter | year: cases belong to a round by start date
    round_title: Text | None = None
    ranking: RankingSpec | None = None  # the first ranking (of several closed together: ``rankings``)
    more_rankings: tuple[RankingSpec, ...] = ()
    role_scope: Mapping[str, str] = field(default_factory=dict)   # role -> level it reaches in this workflow
    #: who sees sensitive values unmasked besides the case's creator (``engine.access.Access.may_see_sensitive``);
    #: None: the roles that take a transition, within their reach
    sensitive_to: tuple[str, ...] | None = None
    metrics: tuple[MetricSpec, ...] = ()
    targets: tuple[TargetSpec, ...] = ()
    listing: ListSpec = field(default_factory=ListSpec)
    #: 催办: how often a case may be urged (``urge: {every: 1d}``, the default); None: ``urge: false``
    urge: "Duration | None" = None
    #: fields no two cases may share while in given states (``engine.mechanics.unique``)
    unique: tuple[UniqueSpec, ...] = ()
    #: every way a case can move (:func:`state_graph`), built once by the loader; the loader's checks, the
    #: diagram and the runtime all read this one graph
    edges: tuple[EdgeSpec, ...] = ()
    migrations: tuple[MigrationSpec, ...] = ()
    #: ``withdraw: {to: ...}``: the state the person who started a case withdraws it to (撤回); None: no withdrawal
    withdraw: str | None = None
    #: a version kept in the store (``engine.versions``): the forms of that version (the current version
    #: reads ``Definitions.forms``) and the digest of its texts; not part of what the version *is*
    forms: Mapping[str, FormSpec] = field(default_factory=dict, repr=False, compare=False)
    digest: str = field(default="", repr=False, compare=False)

    @property
    def key(self) -> tuple[str, int, str]:
        """Tells apart the current version of a workflow and every kept one (caches of per-workflow facts)."""
        return (self.id, self.version, self.digest)

    @property
    def rankings(self) -> tuple[RankingSpec, ...]:
        """Every ranking closed in a round, in definition order (one per award title...)."""
        return ((self.ranking,) if self.ranking is not None else ()) + self.more_rankings

    def form_ids(self) -> list[str]:
        """The forms a case of this workflow fills in: the start form, step forms, contribution forms."""
        ids = [self.start_form] + [t.form for t in self.transitions() if t.form]
        ids += [s.collect.form for s in self.states.values() if s.collect]
        return list(dict.fromkeys(ids))

    @cached_property
    def named_fields(self) -> tuple[str, ...]:
        """The user fields whose people hold a "named in field" role (``{field: x}``) in a step or an inbox."""
        roles = {r for t in self.transitions() for r in t.roles}
        roles |= {r for state in self.states.values() for r in state.inbox or ()}
        return tuple(sorted(name for r in roles if (name := role_field(r)) is not None))

    def migration_from(self, version: int) -> MigrationSpec | None:
        return next((m for m in self.migrations if version in m.sources), None)

    def state(self, state_id: str) -> StateSpec:
        return self.states[state_id]

    def transitions(self) -> Iterator[TransitionSpec]:
        for state in self.states.values():
            yield from state.transitions

    def edges_from(self, state_id: str) -> tuple[EdgeSpec, ...]:
        return tuple(e for e in self.edges if e.source == state_id)

    def edges_to(self, state_id: str) -> tuple[EdgeSpec, ...]:
        return tuple(e for e in self.edges if e.target == state_id)

    def edge(self, source: str, target: str, kind: str | None = None, via: str | None = None) -> EdgeSpec | None:
        """The edge from ``source`` to ``target`` (of that ``kind``, taken by ``via``), or None: a move that
        is not an edge is not allowed."""
        return next((e for e in self.edges if e.source == source and e.target == target
                     and kind in (None, e.kind) and via in (None, e.via)), None)

    def reachable(self, start: str | None = None) -> set[str]:
        """The states a case can get to from ``start`` (default: the initial state)."""
        return reachable(self.edges, self.initial if start is None else start)


@dataclass(frozen=True)
class RoleSpec:
    id: str
    title: Text
    scope: str = "unit"                 # unit: own org unit and below; all: everywhere; or a level
                                        # (e.g. community): everything under the user's unit at that level


@dataclass(frozen=True)
class OrgUnit:
    id: str
    name: Text
    level: str
    parent: str | None


LEVELS = ("district", "street", "community", "grid", "building")


@dataclass(frozen=True)
class OrgTree:
    units: Mapping[str, OrgUnit]

    @cached_property
    def _chains(self) -> dict[str, tuple[tuple[str, ...], frozenset[str]]]:
        """Each unit's ancestors (nearest first, and as a set), worked out once: every permission check and
        every list row asks for them."""
        chains = {}
        for start in self.units:
            chain, unit_id = [], start
            while unit_id in self.units and unit_id not in chain:
                chain.append(unit_id)
                unit_id = self.units[unit_id].parent  # type: ignore[assignment]
            chains[start] = (tuple(chain), frozenset(chain))
        return chains

    def ancestors(self, unit_id: str) -> list[str]:
        """``unit_id`` and every unit above it, nearest first."""
        found = self._chains.get(unit_id)
        return list(found[0]) if found else []

    def contains(self, outer: str, inner: str) -> bool:
        found = self._chains.get(inner)
        return found is not None and outer in found[1]

    def ancestor_at(self, unit_id: str, level: str) -> str | None:
        """The unit at ``level`` above (or equal to) ``unit_id``; None if it sits higher than that level."""
        return next((u for u in self.ancestors(unit_id) if self.units[u].level == level), None)

    def parent(self, unit_id: str) -> str | None:
        unit = self.units.get(unit_id)
        return unit.parent if unit else None

    def below(self, unit_id: str) -> list[str]:
        return [u for u in self.units if self.contains(unit_id, u)]

    def at_level(self, level: str | None) -> list[OrgUnit]:
        return [u for u in self.units.values() if level is None or u.level == level]

    def path_name(self, unit_id: str, lang: str = "zh") -> str:
        """"District / street / community" for a unit (kept once per unit and language: every list row shows one)."""
        key = (unit_id, lang)
        name = self._path_names.get(key)
        if name is None:
            names = [tr(self.units[u].name, lang) for u in reversed(self.ancestors(unit_id))]
            name = self._path_names[key] = " / ".join(names) or unit_id
        return name

    @cached_property
    def _path_names(self) -> dict[tuple[str, str], str]:
        return {}


@dataclass(frozen=True)
class Definitions:
    """Everything loaded from one definitions directory."""

    forms: Mapping[str, FormSpec]
    workflows: Mapping[str, WorkflowSpec]
    roles: Mapping[str, RoleSpec]
    org: OrgTree
    choice_lists: Mapping[str, tuple[Choice, ...]] = field(default_factory=dict)
    #: which days are working days (``5wd``): org/holidays.yaml over the chinese-calendar package
    calendar: WorkCalendar = field(default_factory=WorkCalendar, compare=False)
    #: the text of every workflow and form file as loaded (file name as problems show it -> text): what a
    #: version kept in the store is made of
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    #: what loads but ``civicflow lint`` says (``Problem.warning``: old spellings, ``engine.spelling``)
    warnings: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def form(self, form_id: str) -> FormSpec:
        return self.forms[form_id]

    def form_of(self, wf: WorkflowSpec, form_id: str) -> FormSpec:
        """Form ``form_id`` as version ``wf`` of its workflow uses it (a kept version brings its own forms)."""
        return wf.forms.get(form_id) or self.forms[form_id]

    def workflow(self, workflow_id: str) -> WorkflowSpec:
        return self.workflows[workflow_id]
