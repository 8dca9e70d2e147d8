"""Links between processes: a transition starting linked cases (``spawn:``, one per row of ``rows``), and a
state offering "start a linked case" buttons (``offers:``), both prefilled from the parent through ``map``.

Holds the spec (:class:`SpawnSpec`), its load-time checks (:func:`build`, :func:`check_refs` once every
workflow is loaded) and its runtime: :func:`spawn` (an after-action of the transition path) and
:class:`SpawnMixin` (the Engine's ``offer``, ``prefill``, ``children``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import SubmissionError, TransitionError
from ..expressions import Expression
from ..loadkit import GUARD_NAMES, did_you_mean, msg, text
from ..spec import Text, tr
from .base import EngineBase

if TYPE_CHECKING:
    from ..cases import Case
    from ..loader import Loader
    from ..spec import FormSpec, WorkflowSpec
    from ..store.base import Transaction
    from ..users import User
    from ..yamlsource import PathItem, YamlSource


@dataclass(frozen=True)
class SpawnSpec:
    """A linked case started from this one: automatically by a transition (one per row of ``rows``), or
    offered as a button on the case page. ``map`` fills the new case's start form: target field ->
    expression over this case (and ``row`` for rows)."""

    workflow: str
    label: Text
    map: Mapping[str, Expression]
    rows: str | None = None


# --------------------------------------------------------------------------- load time

def build(ld: "Loader", source: "YamlSource", path: list["PathItem"], items: list[dict], names: set[str] | None,
          step_forms: list["FormSpec"], rows_allowed: bool) -> tuple[SpawnSpec, ...]:
    result = []
    repeats = {f.id: f for form in step_forms for f in form.fields if f.is_repeat}
    offered: set[str] = set()
    for i, item in enumerate(items):
        here = path + [i]
        known = None if names is None else names | GUARD_NAMES
        if not rows_allowed and item["workflow"] in offered:  # a case page offers a workflow once (Engine.offer)
            ld.problems.append(source.problem(here + ["workflow"], f"workflow {item['workflow']!r} is offered twice in this state",
                                              "a state offers each workflow once: keep one offer"))
        offered.add(item["workflow"])
        if "rows" in item:
            if not rows_allowed:
                ld.problems.append(source.problem(here + ["rows"], "'rows' only works in a transition's spawn", key=True))
            elif names is not None and item["rows"] not in repeats:
                ld.problems.append(source.problem(here + ["rows"], f"{item['rows']!r} is not a repeat field",
                                                  did_you_mean(item["rows"], repeats) or "name a repeat field of this workflow's forms"))
            if known is not None:
                known = known | {"row"}
        mapping = {}
        for target, expr_text in item["map"].items():
            # 'row' without rows gets its own message below, not "unknown name 'row' (did you mean 'now'?)"
            expr = ld.expression(source, here + ["map", target], expr_text, None if known is None else known | {"row"},
                                 f"map.{target}")
            if expr is not None and known is not None and "row" not in known and "row" in expr.names:
                ld.problems.append(source.problem(
                    here + ["map", target], f"expression of map.{target} uses 'row', but there is no 'rows'",
                    "row is a row of the repeat field that rows names: add rows to a transition's spawn, "
                    "or map from this case's fields"))
            if expr is not None:
                mapping[target] = expr
        spec = SpawnSpec(item["workflow"], text(item["label"]) or {}, mapping, item.get("rows"))
        ld.spawn_refs.append((source, here, spec))
        result.append(spec)
    return tuple(result)


def check_refs(ld: "Loader", forms: Mapping[str, "FormSpec"], workflows: Mapping[str, "WorkflowSpec"],
               known: set[str]) -> None:
    """Every spawned or offered workflow exists, and ``map`` fills fields of its start form."""
    for source, path, spec in ld.spawn_refs:
        if spec.workflow not in known:
            ld.problems.append(source.problem(path + ["workflow"], f"unknown workflow {spec.workflow!r}",
                                              did_you_mean(spec.workflow, known) or "workflows live in workflows/*.yaml"))
        elif spec.workflow in workflows:
            start = forms[workflows[spec.workflow].start_form]
            fields = {f.id for f in start.fields}
            for target in spec.map:
                if target not in fields:
                    ld.problems.append(source.problem(path + ["map", target], f"{target!r} is not a field of form {start.id!r}",
                                                      did_you_mean(target, fields) or
                                                      f"the start form of {spec.workflow!r} has: {', '.join(f.id for f in start.fields)}",
                                                      key=True))


# --------------------------------------------------------------------------- run time

def spawn(engine: Any, tx: "Transaction", case: "Case", spec: SpawnSpec, actor: "User") -> None:
    """Start linked cases from this one: one per row of ``spec.rows``, or one."""
    wf = engine.definitions.workflows[spec.workflow]
    rows = case.data.get(spec.rows) or [] if spec.rows else [None]
    for i, row in enumerate(rows):
        values = engine.prefill(case, spec, actor, row)
        try:
            engine._open(tx, wf, actor, values, case.id, note=f"#{case.id}")
        except SubmissionError as exc:
            where = f"第 {i + 1} 行" if spec.rows else ""
            detail = "; ".join(f"{k}: {v[0]['zh']}" for k, v in exc.errors.items())
            raise TransitionError(msg(f"{where}无法生成“{tr(spec.label, 'zh')}”：{detail}",
                                      f"Cannot start '{tr(spec.label, 'en')}' {('from row ' + str(i + 1)) if spec.rows else ''}: "
                                      + "; ".join(f"{k}: {v[0]['en']}" for k, v in exc.errors.items()))) from None


class SpawnMixin(EngineBase):
    """The Engine's links between cases (mixed into :class:`engine.runtime.Engine`)."""

    def offer(self, parent_id: int, workflow_id: str, user: "User") -> tuple["Case", Any]:
        """The parent case and its offer to start ``workflow_id`` from it (raises if there is none now)."""
        parent = self.get(parent_id, user)
        state = self.state_of(parent)
        spec = next((o for o in state.offers if o.workflow == workflow_id), None)
        if spec is None:
            raise TransitionError(msg("此事项现在不能生成该类事项。", "This case does not offer that now."))
        return parent, spec

    def prefill(self, parent: "Case", spec: Any, user: "User", row: Mapping[str, Any] | None = None,
                shown: bool = False) -> dict[str, Any]:
        """Start-form values for a linked case, from ``spec.map`` over the parent (and a repeat row).

        ``shown``: the values go into a form the user sees (an offer), so a value computed from the parent's
        sensitive fields is left out unless the user may see them (``may_see_sensitive``)."""
        ctx = self.guard_context(parent, user)
        if row is not None:
            ctx["row"] = dict(row)
        hidden: set[str] = set()
        if shown and not self.may_see_sensitive(parent, user):
            wf = self.workflow_of(parent)
            for form_id in wf.form_ids():
                hidden |= {p.split(".")[0] for p in self.definitions.form_of(wf, form_id).sensitive_paths()}
        values = {}
        for target, expr in spec.map.items():
            if hidden and expr.names & hidden:
                continue
            value = expr.evaluate(ctx, self.clock())
            if value is not None:
                values[target] = value
        return values

    def children(self, case: "Case", user: "User") -> list["Case"]:
        return self.read.children(case, user)
