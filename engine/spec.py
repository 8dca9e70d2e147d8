"""Immutable specs parsed once from the YAML definitions (forms, workflows, roles, org units).

A running case never holds a copy of its definition: it stores the workflow id and
version, and spec methods take the case as an argument.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from .expressions import Expression

Text = Mapping[str, str]
LANGS = ("zh", "en")

#: Field types that hold a list of choice values / rows / uploaded files.
CHOICE_TYPES = frozenset({"select", "multiselect"})
FILE_TYPES = frozenset({"file", "photo"})
FIELD_TYPES = frozenset({
    "text", "textarea", "integer", "number", "date", "datetime", "phone", "id_number",
    "email", "select", "multiselect", "checkbox", "rating", "score", "file", "photo",
    "repeat", "orgunit",
})
#: Roles every workflow knows without declaring them: who started the case, who it is assigned to.
PSEUDO_ROLES = frozenset({"creator", "assignee"})


def tr(text: Text | None, lang: str = "zh") -> str:
    """The text in ``lang``, falling back to the other language."""
    if not text:
        return ""
    return text.get(lang) or text.get("zh") or text.get("en") or ""


@dataclass(frozen=True)
class Choice:
    value: str
    label: Text


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

    @property
    def is_repeat(self) -> bool:
        return self.type == "repeat"

    def choice_label(self, value: Any, lang: str = "zh") -> str:
        for choice in self.choices:
            if choice.value == value:
                return tr(choice.label, lang)
        return "" if value is None else str(value)


@dataclass(frozen=True)
class FormSpec:
    id: str
    version: int
    title: Text
    fields: tuple[FieldSpec, ...]
    file: str = ""

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
    guard: Expression | None = None
    form: str | None = None
    comment: str = "optional"          # "required" | "optional" | "none"
    before_actions: tuple[ActionCall, ...] = ()
    actions: tuple[ActionCall, ...] = ()
    style: str = "primary"             # "primary" | "secondary" | "danger"
    assign: str | None = None          # "creator" | "none": who the case is assigned to after


@dataclass(frozen=True)
class StateSpec:
    id: str
    title: Text
    final: bool = False
    inbox: tuple[str, ...] = ()
    transitions: tuple[TransitionSpec, ...] = ()

    def transition(self, transition_id: str) -> TransitionSpec | None:
        return next((t for t in self.transitions if t.id == transition_id), None)


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

    def state(self, state_id: str) -> StateSpec:
        return self.states[state_id]

    def transitions(self) -> Iterator[TransitionSpec]:
        for state in self.states.values():
            yield from state.transitions


@dataclass(frozen=True)
class RoleSpec:
    id: str
    title: Text
    scope: str = "unit"                 # "unit": own org unit and below; "all": everywhere


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

    def ancestors(self, unit_id: str) -> list[str]:
        """``unit_id`` and every unit above it, nearest first."""
        chain = []
        while unit_id in self.units:
            chain.append(unit_id)
            unit_id = self.units[unit_id].parent  # type: ignore[assignment]
        return chain

    def contains(self, outer: str, inner: str) -> bool:
        return outer in self.ancestors(inner)

    def below(self, unit_id: str) -> list[str]:
        return [u for u in self.units if self.contains(unit_id, u)]

    def at_level(self, level: str | None) -> list[OrgUnit]:
        return [u for u in self.units.values() if level is None or u.level == level]

    def path_name(self, unit_id: str, lang: str = "zh") -> str:
        names = [tr(self.units[u].name, lang) for u in reversed(self.ancestors(unit_id))]
        return " / ".join(names) or unit_id


@dataclass(frozen=True)
class Definitions:
    """Everything loaded from one definitions directory."""

    forms: Mapping[str, FormSpec]
    workflows: Mapping[str, WorkflowSpec]
    roles: Mapping[str, RoleSpec]
    org: OrgTree
    choice_lists: Mapping[str, tuple[Choice, ...]] = field(default_factory=dict)

    def form(self, form_id: str) -> FormSpec:
        return self.forms[form_id]

    def workflow(self, workflow_id: str) -> WorkflowSpec:
        return self.workflows[workflow_id]
