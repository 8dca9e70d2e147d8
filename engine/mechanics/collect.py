"""Many contributors on one case: score sheets, ratings, approvals; aggregation, recusal and deadlines.

Holds the specs (:class:`CollectSpec`, :class:`AggregateSpec`), their load-time checks (:func:`build`), the
pure aggregation (:func:`aggregate`: contributions ``{username: {"data": ..., "roles": [...]}}`` -> the result
stored in the case data under ``aggregate.into``) and the runtime: :func:`arm` (the collect deadline timer),
:func:`refresh` (re-aggregate), :func:`results` and :class:`CollectMixin` (the Engine's ``may_contribute``,
``recusal``, ``contribute``, ``declare_conflict``, ``needed``, ``progress``). Contributions and declared
conflicts are no moves: they stay in the state, but each is a new version of the case.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from statistics import mean
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ..cases import CASES
from ..clock import iso
from ..durations import Duration
from ..workdays import WorkCalendar
from ..errors import NotAllowed, TransitionError
from ..loadkit import did_you_mean, msg, text
from ..spec import PSEUDO_ROLES, Text, tr
from . import timers
from .base import EngineBase

if TYPE_CHECKING:
    from ..cases import Case
    from ..loader import Loader
    from ..spec import FormSpec, StateSpec, WorkflowSpec
    from ..users import User
    from ..yamlsource import PathItem, YamlSource


@dataclass(frozen=True)
class AggregateSpec:
    """How contributions become one result in the case data (``into``), usable in guards.

    Each sheet's score is ``field`` (``score_field`` here), or the weighted mean of ``criteria`` {field: weight};
    sheets are combined by ``method``: mean | sum | trimmed_mean (drop highest and lowest) |
    weighted_mean (by the contributor's role, ``role_weights``). ``tally`` counts the values of a
    choice field (N-of-M approvals).
    """

    into: str
    method: str = "mean"
    score_field: str | None = None      # YAML: field
    criteria: Mapping[str, float] = field(default_factory=dict)
    role_weights: Mapping[str, float] = field(default_factory=dict)
    tally: str | None = None


@dataclass(frozen=True)
class CollectSpec:
    """Many people each submit their own input on the same case (ratings, score sheets, approvals)."""

    form: str
    label: Text
    roles: tuple[str, ...] = ()
    who: str = "roles"                  # roles | assignees
    min: int | None = None              # how many are needed (default: all assignees / 1)
    once: str = "replace"               # replace | refuse
    deadline: Duration | None = None
    on_deadline: str | None = None      # a transition the system takes at the deadline
    recuse: tuple[str, ...] = ()        # creator | same_unit | field:<id>
    visible_to: tuple[str, ...] = ()    # roles that may see who contributed what
    scope: str = "unit"                 # unit (the contributor's scope covers the case) | any
    aggregate: AggregateSpec | None = None
    on_reenter: str = "fresh"           # fresh (a new round; the earlier one is kept apart) | keep


# --------------------------------------------------------------------------- load time

def build(ld: "Loader", source: "YamlSource", path: list["PathItem"], raw: dict | None, forms: dict[str, "FormSpec"],
          wf_roles: set[str], transition_ids: dict[str, list[str]], check_form: Any,
          data_names: set[str] | None = None) -> CollectSpec | None:
    if raw is None:
        return None
    form = check_form(path + ["form"], raw["form"])
    roles = raw.get("roles", [])
    people = wf_roles - PSEUDO_ROLES  # contributors hold a role; who: assignees is for the people assigned
    for i, role in enumerate(roles):
        if role not in people:
            ld.problems.append(source.problem(path + ["roles", i], f"unknown role {role!r}",
                                              did_you_mean(role, people) or "list it in the workflow's roles"))
    who = raw.get("who", "roles")
    if who == "roles" and not roles:
        ld.problems.append(source.problem(path, "collect needs 'roles' (who may contribute) or who: assignees"))
    # ``after`` / ``then``: the timed move, spelt as everywhere (old ``deadline`` / ``on_deadline``: engine.spelling)
    if "then" in raw and raw["then"] not in transition_ids:
        ld.problems.append(source.problem(path + ["then"], f"unknown transition {raw['then']!r} in this state",
                                          did_you_mean(raw["then"], transition_ids) or f"transitions here: {', '.join(sorted(transition_ids))}"))
    if "then" in raw and "after" not in raw:
        ld.problems.append(source.problem(path + ["then"], "'then' needs 'after': the move is taken when that time has passed",
                                          "add e.g. after: 7d", key=True))
    if "then" in raw:
        timers.clock_takes(ld, source, path + ["then"], raw["then"], transition_ids)
    for i, role in enumerate(raw.get("visible_to", [])):
        if role not in wf_roles - {"system"}:
            ld.problems.append(source.problem(path + ["visible_to", i], f"unknown role {role!r}",
                                              did_you_mean(role, wf_roles - {"system"}) or "list it in the workflow's roles"))
    fields = {f.id: f for f in form.fields} if form else {}
    for i, rule in enumerate(raw.get("recuse", [])):
        if rule.startswith("field:") and data_names is not None and rule[6:] not in data_names:
            ld.problems.append(source.problem(path + ["recuse", i], f"unknown field {rule[6:]!r} in recusal rule",
                                              did_you_mean(rule[6:], data_names) or
                                              "name a field of the case that holds a username, e.g. field:nominee_user"))
    aggregate_spec = None
    if "aggregate" in raw:
        aggregate_spec = build_aggregate(ld, source, path + ["aggregate"], raw["aggregate"], raw["form"], form, fields, people)
    return CollectSpec(
        form=raw["form"], label=text(raw["label"]) or {}, roles=tuple(roles), who=who, min=raw.get("min"),
        once=raw.get("once", "replace"), deadline=Duration.parse(raw["after"]) if "after" in raw else None,
        on_deadline=raw.get("then"), recuse=tuple(raw.get("recuse", [])),
        visible_to=tuple(raw.get("visible_to", [])), scope=raw.get("scope", "unit"), aggregate=aggregate_spec,
        on_reenter=raw.get("on_reenter", "fresh"))


def build_aggregate(ld: "Loader", source: "YamlSource", apath: list["PathItem"], agg: dict, form_id: str,
                    form: "FormSpec | None", fields: dict[str, Any], people: set[str]) -> AggregateSpec:
    named = ([(["field"], agg["field"], False)] if "field" in agg else []) + \
        [(["criteria", name], name, True) for name in agg.get("criteria", {})]
    for where, name, key in named:
        if form is not None and (name not in fields or not fields[name].kind.numeric):
            usable = [f for f, x in fields.items() if x.kind.numeric]
            ld.problems.append(source.problem(
                apath + where, f"{name!r} is not a numeric field of form {form_id!r}",
                did_you_mean(name, usable) or (f"numeric fields: {', '.join(usable)}" if usable else
                                               "use an integer, number, score or rating field"), key=key))
    if "tally" in agg and form is not None and (agg["tally"] not in fields or not fields[agg["tally"]].kind.tally):
        usable = [f for f, x in fields.items() if x.kind.tally]
        ld.problems.append(source.problem(
            apath + ["tally"], f"{agg['tally']!r} is not a choice field of form {form_id!r}",
            did_you_mean(agg["tally"], usable) or (f"choice fields: {', '.join(usable)}" if usable else
                                                   "tally a select, multiselect or checkbox field")))
    method = agg.get("method", "mean")
    if "field" not in agg and "criteria" not in agg and "tally" not in agg:
        ld.problems.append(source.problem(apath, "aggregate needs 'field', 'criteria' or 'tally'"))
    if "field" in agg and "criteria" in agg:
        ld.problems.append(source.problem(apath, "use either 'field' or 'criteria', not both"))
    for role in agg.get("role_weights", {}):
        if role not in people:
            ld.problems.append(source.problem(apath + ["role_weights", role], f"unknown role {role!r}",
                                              did_you_mean(role, people) or "weigh roles of the workflow", key=True))
    if method == "weighted_mean" and not agg.get("role_weights"):
        ld.problems.append(source.problem(apath + ["method"], "weighted_mean needs role_weights",
                                          "e.g. role_weights: {district_evaluator: 2, street_evaluator: 1}"))
    return AggregateSpec(agg["into"], method, agg.get("field"), dict(agg.get("criteria", {})),
                         dict(agg.get("role_weights", {})), agg.get("tally"))


# --------------------------------------------------------------------------- aggregation (pure)

def sheet_score(spec: AggregateSpec, data: Mapping[str, Any]) -> float | None:
    """One contributor's score: a single field, or the weighted mean of the criteria."""
    if spec.score_field:
        value = data.get(spec.score_field)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if spec.criteria:
        total = weight = 0.0
        for name, w in spec.criteria.items():
            value = data.get(name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return None
            total += w * value
            weight += w
        return total / weight if weight else None
    return None


def combine(method: str, scores: list[tuple[float, float]]) -> float | None:
    """Combine (score, weight) pairs: mean | sum | trimmed_mean | weighted_mean."""
    if not scores:
        return None
    values = [s for s, _ in scores]
    if method == "sum":
        return sum(values)
    if method == "trimmed_mean":
        if len(values) >= 3:  # drop one highest and one lowest
            values = sorted(values)[1:-1]
        return mean(values)
    if method == "weighted_mean":
        weight = sum(w for _, w in scores)
        return sum(s * w for s, w in scores) / weight if weight else None
    return mean(values)


def aggregate(spec: AggregateSpec, contributions: Mapping[str, Mapping[str, Any]], needed: int) -> dict[str, Any]:
    """The result stored in the case: ``total``, ``count``, ``needed``, ``complete``, per-criterion means, tallies."""
    scores: list[tuple[float, float]] = []
    for contribution in contributions.values():
        score = sheet_score(spec, contribution["data"])
        if score is not None:
            weight = max((spec.role_weights.get(r, 0) for r in contribution.get("roles", [])), default=0) or 1
            scores.append((score, float(weight)))
    total = combine(spec.method, scores)
    result: dict[str, Any] = {
        "total": round(total, 2) if total is not None else None,
        "count": len(contributions),
        "needed": needed,
        "complete": len(contributions) >= needed,
        "method": spec.method,
    }
    if spec.criteria:
        result["criteria"] = {
            name: round(mean(c["data"][name] for c in contributions.values() if isinstance(c["data"].get(name), (int, float))), 2)
            for name in spec.criteria
            if any(isinstance(c["data"].get(name), (int, float)) for c in contributions.values())
        }
    if spec.tally:
        tally: dict[str, int] = {}
        for contribution in contributions.values():
            value = contribution["data"].get(spec.tally)
            for v in value if isinstance(value, list) else [value]:
                if v is not None:
                    key = str(v).lower() if isinstance(v, bool) else str(v)
                    tally[key] = tally.get(key, 0) + 1
        result["tally"] = tally
    return result


# --------------------------------------------------------------------------- run time: the transition path's hooks

def arm(state: "StateSpec", now: dt.datetime, calendar: WorkCalendar | None = None) -> list[dict[str, Any]]:
    """The collect deadline timer of a collecting state."""
    if not (state.collect and state.collect.deadline):
        return []
    return [{"kind": "collect_deadline", "state": state.id, "due": iso(state.collect.deadline.after(now, calendar)),
             "transition": state.collect.on_deadline, "done": False}]


def needed(case: "Case", state: "StateSpec") -> int:
    spec = state.collect
    assert spec is not None
    if spec.who == "assignees":
        active = [u for u in case.assignees if u not in case.conflicts]
        return spec.min or len(active)
    return spec.min or 1


def refresh(case: "Case", state: "StateSpec") -> None:
    """Recompute the aggregate of the state's contributions into the case data."""
    spec = state.collect
    if spec is None or spec.aggregate is None:
        return
    bucket = case.contributions.get(state.id, {})
    case.data[spec.aggregate.into] = aggregate(spec.aggregate, bucket, needed(case, state))


def start_round(case: "Case", state: "StateSpec", now: dt.datetime) -> None:
    """The case enters a collecting state again (sent back and resubmitted): unless the state keeps them
    (``on_reenter: keep``), the contributions so far become an earlier round (shown on the case page, 第 1 轮) and
    contributors start afresh."""
    spec = state.collect
    bucket = case.contributions.get(state.id)
    if spec is None or spec.on_reenter == "keep" or not bucket:
        return
    earlier = case.earlier_contributions.setdefault(state.id, [])
    result = case.data.get(spec.aggregate.into) if spec.aggregate else None
    earlier.append({"round": len(earlier) + 1, "ended_at": iso(now), "contributions": bucket,
                    "result": result if isinstance(result, dict) else None})
    case.contributions[state.id] = {}


def tally_rows(form: "FormSpec | None", spec: AggregateSpec, tally: Mapping[str, int]) -> list[dict[str, Any]]:
    """A tally as people read it: ``[{"value", "label": {zh, en}, "count"}]`` in the order of the choices, each
    counted value named by its choice label (``agree`` -> 同意 / Agree; a tick box's ``true`` -> 是 / Yes); a value the form no longer
    offers keeps its raw text."""
    f = form.field(spec.tally) if form is not None and spec.tally else None
    rows = []
    for value, count in tally.items():
        if f is None:
            label = {"zh": value, "en": value}
        elif f.kind.holds_choices:
            label = {lang: f.choice_label(value, lang) for lang in ("zh", "en")}
        else:
            label = {lang: f.kind.display(f, value == "true", lang) for lang in ("zh", "en")}
        rows.append({"value": value, "label": label, "count": count})
    if f is not None and f.kind.holds_choices:  # in the order the form offers the choices
        order = {c.value: i for i, c in enumerate(f.choices)}
        rows.sort(key=lambda r: order.get(r["value"], len(order)))
    return rows


def results(case: "Case", wf: "WorkflowSpec", found: list[dict[str, Any]], form_of: Any = None) -> None:
    """Add the labelled aggregates the case holds to ``found`` (see ``Engine.results``); ``form_of(form_id)``:
    the contribution form as the case's version uses it (tallies are shown by their choice labels)."""
    for state in wf.states.values():
        agg = state.collect.aggregate if state.collect else None
        if agg and isinstance(case.data.get(agg.into), dict) and agg.into not in {r["name"] for r in found}:
            result = case.data[agg.into]
            assert state.collect is not None
            rows = tally_rows(form_of(state.collect.form) if form_of else None, agg, result.get("tally") or {})
            votes = {lang: ("，" if lang == "zh" else ", ").join(
                f"{tr(r['label'], lang)}{'：' if lang == 'zh' else ': '}{r['count']}" for r in rows) for lang in ("zh", "en")}
            if result.get("total") is not None:
                found.append({"name": agg.into, "label": state.collect.label,
                              "value": {"zh": f"{result['total']:g}（{result['count']} 份）",
                                        "en": f"{result['total']:g} ({result['count']} submitted)"}})
            elif rows:
                found.append({"name": agg.into, "label": state.collect.label, "value": votes})


# --------------------------------------------------------------------------- run time: the Engine's methods

class CollectMixin(EngineBase):
    """Contributions on one case (mixed into :class:`engine.runtime.Engine`)."""

    def contribution_form(self, case: "Case", user: "User") -> tuple["CollectSpec", Any, dict[str, Any] | None]:
        """The state's collect spec, the form ``user`` contributes with on ``case`` now and their earlier
        contribution (None); raises :class:`TransitionError` (with the reason) when they may not contribute."""
        spec = self.state_of(case).collect
        allowed, reason = self.may_contribute(case, user)
        if spec is None or not allowed:
            raise TransitionError(reason or msg("现在不需要您提交。", "Nothing to submit here now."))
        form = self.definitions.form_of(self.workflow_of(case), spec.form)
        return spec, form, case.contributions.get(case.state, {}).get(user.username)

    def may_contribute(self, case: "Case", user: "User") -> tuple[bool, dict[str, str] | None]:
        """Whether ``user`` may submit their own input on ``case`` now, and if not, why."""
        wf = self.spec_of(case)
        state = wf.states.get(case.state) if wf else None
        spec = state.collect if state else None
        if spec is None:
            return False, None
        if spec.who == "assignees":
            if user.username not in case.assignees:
                return False, msg("您不是本事项的评审人。", "You are not one of the assigned reviewers.")
        elif not any(r in user.roles and (spec.scope == "any" or self.reaches(user, r, case.org_unit, wf))
                     for r in spec.roles):
            return False, msg("您的角色不能参与此项。", "Your role does not take part in this.")
        reason = self.recusal(case, user, spec.recuse)
        if reason:
            return False, reason
        mine = case.contributions.get(case.state, {}).get(user.username)
        if mine and spec.once == "refuse":
            return False, msg("您已经提交过，不能重复提交。", "You have already submitted; a second submission is not accepted.")
        return True, None

    def recusal(self, case: "Case", user: "User", rules: Iterable[str]) -> dict[str, str] | None:
        if user.username in case.conflicts:
            return msg("您已声明回避。", "You declared a conflict of interest.")
        for rule in rules:
            if rule == "creator" and case.created_by == user.username:
                return msg("本人事项需回避。", "You may not rate your own case.")
            if rule == "same_unit" and case.org_unit == user.org_unit:
                return msg("本单位事项需回避。", "You may not rate a case of your own unit.")
            if rule.startswith("field:"):
                value = case.data.get(rule[6:])
                if value == user.username or (isinstance(value, list) and user.username in value):
                    return msg("您是本事项的当事人，需回避。", "You are party to this case and must recuse yourself.")
        return None

    def contribute(self, case_id: int, user: "User", values: Mapping[str, Any]) -> "Case":
        """Store ``user``'s own input for the current collecting state and update the aggregate."""
        with self.store.transaction() as tx:
            case = self._load(tx, case_id, user)
            allowed, reason = self.may_contribute(case, user)
            if not allowed:
                raise NotAllowed(reason or msg("现在不能提交。", "Nothing to submit now."))
            state = self.state_of(case)
            spec = state.collect
            assert spec is not None
            data = self._validate(self.definitions.form_of(self.workflow_of(case), spec.form), values, user, tx, case=case)
            now = iso(self.clock())
            bucket = case.contributions.setdefault(case.state, {})
            previous = bucket.get(user.username)
            revisions = (previous.get("revisions", []) + [{"data": previous["data"], "at": previous["at"]}]) if previous else []
            bucket[user.username] = {"by": user.username, "name": user.name, "unit": user.org_unit,
                                     "roles": sorted(set(user.roles) & (set(spec.roles) or set(user.roles))),
                                     "data": data, "at": now, "revisions": revisions}
            refresh(case, state)
            self._touch(case, self.clock())  # a contribution changes the case: a page loaded before is stale
            tx.replace(CASES, case_id, case.to_doc())
        return case

    def declare_conflict(self, case_id: int, user: "User", reason: str) -> "Case":
        """A contributor declares a conflict of interest: they are left out (and their input, if any, removed)."""
        with self.store.transaction() as tx:
            case = self._load(tx, case_id, user)
            state = self.state_of(case)
            if state.collect is None or not reason.strip():
                raise TransitionError(msg("请说明回避理由。", "Give a reason for recusing yourself."))
            if user.username not in case.conflicts:
                case.conflicts.append(user.username)
            case.contributions.get(case.state, {}).pop(user.username, None)
            self._record(case, user, "recuse", msg("声明回避", "Declared a conflict of interest"),
                         case.state, case.state, reason.strip(), [], self.clock())  # a new version too
            refresh(case, state)
            tx.replace(CASES, case_id, case.to_doc())
        return case

    def needed(self, case: "Case", state: "StateSpec") -> int:
        return needed(case, state)

    def earlier_rounds(self, case: "Case", user: "User") -> list[dict[str, Any]]:
        """For the case page: the rounds of each collecting state before the case entered it again (第 1 轮...),
        with who gave what for those who may see it."""
        wf = self.workflow_of(case)
        found = []
        for state_id, rounds in case.earlier_contributions.items():
            spec = wf.states[state_id].collect if state_id in wf.states else None
            if spec is None or not rounds:
                continue
            may_see = bool(set(spec.visible_to) & self.roles_for(case, user))
            found.append({"spec": spec, "form": self.definitions.form_of(wf, spec.form), "may_see": may_see,
                          "rounds": [{"round": r["round"], "ended_at": r["ended_at"], "result": r.get("result") or {},
                                      "count": len(r["contributions"]),
                                      "contributions": list(r["contributions"].values()) if may_see else []}
                                     for r in rounds]})
        return found

    def progress(self, case: "Case", user: "User") -> dict[str, Any] | None:
        """For the case page: how many have contributed, who is pending, and (if allowed) who gave what."""
        state = self.state_of(case)
        spec = state.collect
        if spec is None:
            return None
        bucket = case.contributions.get(case.state, {})
        pending = [u for u in case.assignees if u not in bucket and u not in case.conflicts] if spec.who == "assignees" else []
        names = {u.username: u.name for u in self.users()} if pending else {}
        may_see = bool(set(spec.visible_to) & self.roles_for(case, user))
        form = self.definitions.form_of(self.workflow_of(case), spec.form)
        result = case.data.get(spec.aggregate.into) if spec.aggregate else None
        result = result if isinstance(result, dict) else None
        return {
            "spec": spec, "form": form, "done": len(bucket), "needed": needed(case, state),
            "pending": [names.get(u, u) for u in pending],
            "contributions": list(bucket.values()) if may_see else [],
            "mine": bucket.get(user.username),
            "may_see": may_see,
            "result": result,
            "tally": tally_rows(form, spec.aggregate, result.get("tally") or {}) if spec.aggregate and result else [],
        }
