"""Load-time building of a workflow: its roles, forms, states and transitions, each mechanism's part
(through ``engine.mechanics``: collect, approval, notice...), the state graph (``WorkflowSpec.edges``) and the graph's checks.

Functions taking the :class:`engine.loader.Loader` (its ``problems``, ``expression``...); the loader calls
:func:`build_workflow` once per workflow file.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from . import spelling
from .loadkit import GUARD_NAMES, did_you_mean, text
from .mechanics.approval import build as build_approval
from .mechanics.assign import build as build_assign
from .mechanics.cc import build as build_cc
from .mechanics.collect import build as build_collect
from .mechanics.links import build_moves, build_wait
from .mechanics.notice import build as build_notice
from .mechanics.points import build as build_points
from .mechanics.ranking import build as build_ranking
from .mechanics.reports import build_listing, build_metrics, build_targets
from .mechanics.spawn import build as build_spawns
from .mechanics import taskmoves
from .mechanics.timers import build_deadline, build_timeout
from .mechanics.urge import build as build_urge
from .spec import (PSEUDO_ROLES, EdgeSpec, FormSpec, MigrationSpec, RoleSpec, StateSpec, TransitionSpec, WorkflowSpec,
                   reachable, role_field, role_name, state_graph)
from .mechanics.unique import build as build_unique
from .yamlsource import PathItem, YamlSource

if TYPE_CHECKING:
    from .loader import Loader


def check_bulk(ld: "Loader", source: YamlSource, path: list[PathItem], t: dict, forms: dict[str, FormSpec],
               roles: list[str]) -> bool:
    """``bulk: true`` only where a step asks nothing of the person case by case: the inbox takes it for several
    cases with one button, so a required field, a required comment or a choice of people cannot be answered."""
    if not t.get("bulk"):
        return False
    form = forms.get(t["form"]) if "form" in t else None
    required = [f.id for f in form.fields if f.required] if form is not None else []
    why = None
    if required:
        why = (f"form {form.id!r} has required fields ({', '.join(required)})",  # type: ignore[union-attr]
               "remove bulk: true, or make the fields optional")
    elif t.get("comment") == "required":
        why = ("it requires a comment", "remove bulk: true, or make the comment optional")
    elif isinstance(t.get("assign"), dict) and "choose" in t["assign"]:
        why = ("the person chooses whom to assign", "remove bulk: true, or route the assignment")
    elif set(roles) == {"system"}:
        why = ("only the clock takes it", "remove bulk: true")
    if why is None:
        return True
    ld.problems.append(source.problem(path + ["bulk"], f"transition {t['id']!r} cannot be taken in bulk: {why[0]}",
                                      why[1]))
    return False


def check_public(ld: "Loader", source: YamlSource, here: list[PathItem], state: dict) -> None:
    """``public`` (listed on the public page) and ``public_record`` (a tamper-evident record) both show a
    state's ``public_fields``; fields listed for neither, or beside a notice (which shows its own), have no
    effect: a warning, since one of the two was probably meant."""
    if "public_fields" not in state:
        return
    if "notice" in state:
        ld.warnings.append(spelling.warning(source, here + ["public_fields"], "'public_fields' of a notice state has "
                                            "no effect: the notice shows its own", "move them into notice: {public_fields: [...]}"))
    elif not state.get("public") and not state.get("public_record"):
        ld.warnings.append(spelling.warning(
            source, here + ["public_fields"], "'public_fields' has no effect: the state is neither public nor recorded",
            "add public: true to list its cases on the public page (居务公开), or public_record: true to keep a "
            "tamper-evident record of these fields (公示存证)"))


def build_workflow(ld: "Loader", source: YamlSource, forms: dict[str, FormSpec], roles: dict[str, RoleSpec]) -> WorkflowSpec | None:
    try:
        return _build_workflow(ld, source, forms, roles)
    finally:
        ld.choice_scope = None


def _build_workflow(ld: "Loader", source: YamlSource, forms: dict[str, FormSpec], roles: dict[str, RoleSpec]) -> WorkflowSpec | None:
    doc = source.data
    problems_before = len(ld.problems)

    missing_forms: list[str] = []

    def check_form(path: list[PathItem], form_id: str) -> FormSpec | None:
        if form_id in forms:
            return forms[form_id]
        missing_forms.append(form_id)
        if form_id not in ld.broken_ids:
            ld.problems.append(source.problem(path, f"unknown form {form_id!r}",
                                                did_you_mean(form_id, forms) or "forms live in forms/*.yaml"))
        return None

    def check_roles(path: list[PathItem], used: list[str], allowed: Iterable[str], where: str) -> None:
        allowed = set(allowed)
        for i, role in enumerate(used):
            name = role_field(role)
            if name is not None and user_fields is not None:
                if name not in user_fields:
                    ld.problems.append(source.problem(path + [i, "field"], _not_a_user_field(name, user_fields, data_types),
                                                      did_you_mean(name, user_fields) or
                                                      "name a field with type: user of the start form or a step's form"))
            elif name is None and role not in allowed:
                ld.problems.append(source.problem(path + [i], f"unknown role {role!r}",
                                                    did_you_mean(role, allowed) or f"roles here must be listed in {where}"))

    if not ld.roles_broken:
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
        data_names |= {fld.id for fld in f.fields if fld.kind.holds_value}  # a note holds no data
    case_fields = {fld.id: fld for f in step_forms for fld in f.fields if fld.kind.holds_case}
    # the fields whose people a step's {field: x} role names (None: a form is missing, so not all are known)
    user_fields: set[str] | None = None if missing_forms else {
        fld.id for f in step_forms for fld in f.fields if fld.kind.holds_user}
    data_types = {fld.id: fld.type for f in step_forms for fld in f.fields}
    # the fields of the case by id (the first form's field of each id, as Engine.data_fields): what choice(field,
    # 'key') in the workflow's expressions reads, and what a unique rule compares
    ld.choice_scope = {}
    for f in step_forms:
        for fld in f.fields:
            ld.choice_scope.setdefault(fld.id, fld)
    # results the engine writes into the case data are readable by guards too
    data_names |= {st["collect"]["aggregate"]["into"] for st in doc["states"].values()
                   if "aggregate" in st.get("collect", {})}
    for item in ([doc["ranking"]] if isinstance(doc.get("ranking"), dict) else doc.get("ranking", [])):
        data_names.add(item.get("into", "award_level"))
    if "round" in doc:
        data_names.add("round")

    if start_form and "org_unit_field" in start:
        name = start["org_unit_field"]
        fld = start_form.field(name)
        unit_fields = [x.id for x in start_form.fields if x.kind.holds_unit]
        if fld is None or not fld.kind.holds_unit:
            what = f"form {start_form.id!r} has no field {name!r}" if fld is None else \
                f"{name!r} is a {fld.type} field of form {start_form.id!r}, not an orgunit field"
            ld.problems.append(source.problem(
                ["start", "org_unit_field"], what,
                did_you_mean(name, unit_fields) or (f"orgunit fields: {', '.join(unit_fields)}" if unit_fields
                                                    else "add a field with type: orgunit to the start form")))
    case_title = ld.expression(source, ["start", "title"], start.get("title"),
                                 {f.id for f in start_form.fields} if start_form else set(), "start.title") if start_form else None
    if case_title is not None and start_form is not None:
        for name in sorted(case_title.names & {f.id for f in start_form.fields if f.sensitive}):
            ld.problems.append(source.problem(
                ["start", "title"], f"the case title uses sensitive field {name!r}",
                "a title is shown unmasked to everyone who sees the case (cards, lists, choice lists); "
                "build it from fields that are not sensitive"))

    states = doc["states"]
    if doc["initial"] not in states:
        ld.problems.append(source.problem(["initial"], f"unknown state {doc['initial']!r}",
                                            did_you_mean(doc["initial"], states)))
    built_states: dict[str, StateSpec] = {}
    for sid, state in states.items():
        here: list[PathItem] = ["states", sid]
        transitions = []
        seen_ids: set[str] = set()
        final = state.get("final", False)
        raw = state.get("transitions", [])
        if final and raw:
            ld.problems.append(source.problem(here + ["transitions"], f"final state {sid!r} has transitions",
                                                "remove 'final: true' or the transitions", key=True))
        if final and "approval" in state:
            ld.problems.append(source.problem(here + ["approval"], f"final state {sid!r} has an approval",
                                              "remove 'final: true' or the approval", key=True))
        inbox = [role_name(r) for r in state["inbox"]] if "inbox" in state else None
        check_roles(here + ["inbox"], inbox or [], wf_roles, "the workflow's roles (or creator / assignee)")
        for i, t in enumerate(raw):
            tpath = here + ["transitions", i]
            if t["id"] in seen_ids:
                ld.problems.append(source.problem(tpath + ["id"], f"duplicate transition id {t['id']!r} in state {sid!r}"))
            seen_ids.add(t["id"])
            if t["to"] not in states:
                ld.problems.append(source.problem(tpath + ["to"], f"unknown state {t['to']!r}",
                                                    did_you_mean(t["to"], states) or f"states: {', '.join(states)}"))
            roles = [role_name(r) for r in t["roles"]]
            check_roles(tpath + ["roles"], roles, wf_roles, "the workflow's roles (or creator / assignee, or {field: x})")
            # with a form missing, the names a guard may use are not all known: check syntax only
            guard = ld.expression(source, tpath + ["when"], t.get("when"),
                                    None if missing_forms else data_names | GUARD_NAMES, f"transition {t['id']!r}")
            bulk = check_bulk(ld, source, tpath, t, forms, roles)
            transitions.append(TransitionSpec(
                id=t["id"], source=sid, target=t["to"], label=text(t["label"]) or {}, roles=tuple(roles),
                guard=guard, form=t.get("form"), comment=t.get("comment", "optional"),
                before_actions=ld.action_calls(source, tpath + ["before_actions"], t.get("before_actions", [])),
                actions=ld.action_calls(source, tpath + ["actions"], t.get("actions", [])),
                style=t.get("style", "primary"),
                assign=build_assign(ld, source, tpath + ["assign"], t.get("assign"), wf_roles),
                points=build_points(ld, source, tpath + ["points"], t.get("points", []),
                                   None if missing_forms else data_names | GUARD_NAMES),
                spawn=build_spawns(ld, source, tpath + ["spawn"], t.get("spawn", []), None if missing_forms else data_names,
                                  step_forms, rows_allowed=True),
                bulk=bulk,
                linked=build_moves(ld, source, tpath + ["linked"], t.get("linked", []),
                                  None if missing_forms else case_fields, doc["id"], t["id"]),
                cc=build_cc(ld, source, tpath + ["cc"], t.get("cc"), wf_roles, None if missing_forms else data_names),
            ))
        by_id = {t["id"]: [role_name(r) for r in t["roles"]] for t in reversed(raw)}  # the first of duplicate ids
        timed = {state["timeout"]["then"]} if "timeout" in state else set()
        timed |= {state["notice"]["then"]} if "notice" in state else set()
        timed |= {state["collect"]["then"]} if "then" in state.get("collect", {}) else set()
        timed |= {state["waits_for"]["take"]} if "waits_for" in state else set()
        for i, t in enumerate(raw):  # (a timer naming a misspelt transition says so already)
            if set(by_id.get(t["id"], ())) == {"system"} and t["id"] not in timed and timed <= set(by_id):
                ld.problems.append(source.problem(
                    here + ["transitions", i, "roles"], f"only the clock takes transition {t['id']!r}, but no timer names it",
                    "name it in the state's timeout, notice or collect (then: ...), or add a role that takes it"))
        check_public(ld, source, here, state)
        moves, return_to = taskmoves.build(ld, source, here, state, states)
        built_states[sid] = StateSpec(
            sid, text(state["title"]) or {}, final, tuple(inbox) if inbox is not None else None, tuple(transitions),
            collect=build_collect(ld, source, here + ["collect"], state.get("collect"), forms, wf_roles, by_id, check_form,
                                 None if missing_forms else data_names),
            after=build_timeout(ld, source, here + ["timeout"], state.get("timeout"), by_id),
            deadline=build_deadline(ld, source, here + ["deadline"], state.get("deadline"), wf_roles,
                                   None if missing_forms else {f.id for form in step_forms for f in form.fields
                                                               if f.kind.date_like}),
            notice=build_notice(ld, source, here + ["notice"], state.get("notice"), states, by_id, wf_roles, data_names),
            public=state.get("public", False),
            public_fields=ld.field_names(source, here + ["public_fields"], state.get("public_fields", []), data_names),
            publish=state.get("public_record", False),
            offers=build_spawns(ld, source, here + ["offers"], state.get("offers", []), None if missing_forms else data_names,
                               step_forms, rows_allowed=False),
            certificate=state.get("certificate", False),
            approval=build_approval(ld, source, here + ["approval"], state.get("approval"), sid, states, wf_roles,
                                    None if missing_forms else data_names),
            waits_for=build_wait(ld, source, here + ["waits_for"], state.get("waits_for"), by_id, doc["id"]),
            moves=moves, return_to=return_to,
        )

    reopen = doc.get("round", {}).get("reopen")
    if reopen is not None:
        people = wf_roles - PSEUDO_ROLES
        check_roles(["round", "reopen", "roles"], reopen["roles"], people, "the workflow's roles")
        if "ranking" not in doc:
            ld.problems.append(source.problem(["round", "reopen"], "round.reopen needs a ranking",
                                              "a round is reopened to rank it again: add a ranking, or remove reopen", key=True))
    rankings = build_ranking(ld, source, doc.get("ranking"), states, wf_roles, data_names,
                             reopen["roles"] if reopen is not None else None)
    if "ranking" in doc and "round" not in doc:
        ld.problems.append(source.problem(["ranking"], "a ranking needs a round",
                                            "add e.g. round: {period: quarter}; cases are ranked round by round", key=True))
    role_scope = ld.role_scope(source, doc.get("role_scope", {}), doc["roles"])
    sensitive_to = doc.get("sensitive_to")
    if sensitive_to is not None:
        check_roles(["sensitive_to"], sensitive_to, set(doc["roles"]) | {"assignee"},
                    "the workflow's roles (or assignee)")
    urge = build_urge(ld, source, doc.get("urge"))
    withdraw = taskmoves.build_withdraw(ld, source, doc.get("withdraw"), states)
    edges = state_graph(built_states, rankings or (), urge=urge is not None, withdraw=withdraw)
    unbuilt = None
    if rankings is None:  # a ranking that could not be built: the state its cases wait in (of the first one)
        unbuilt = (doc["ranking"] if isinstance(doc["ranking"], dict) else doc["ranking"][0])["state"]
    check_graph(ld, source, built_states, doc["initial"], edges, unbuilt)
    taskmoves.check_returns(ld, source, built_states, edges)
    metrics = build_metrics(ld, source, doc.get("metrics", []), None if missing_forms else data_names, step_forms)
    targets = build_targets(ld, source, doc.get("targets", []), start_form, set(doc["roles"]))
    listing = build_listing(ld, source, doc.get("list", {}), start_form)
    migrations = build_migrations(ld, source, doc.get("migrate"), doc["version"], built_states)
    unique = build_unique(ld, source, doc.get("unique", []), states, None if missing_forms else ld.choice_scope)
    if len(ld.problems) > problems_before or start_form is None:
        return None
    return WorkflowSpec(
        id=doc["id"], version=doc["version"], title=text(doc["title"]) or {}, description=text(doc.get("description")),
        start_form=start["form"], start_roles=tuple(start["roles"]), roles=tuple(doc["roles"]), initial=doc["initial"],
        states=built_states, org_unit_field=start.get("org_unit_field"), case_title=case_title, file=source.file,
        round=doc.get("round", {}).get("period"), round_title=text(doc.get("round", {}).get("title")),
        ranking=rankings[0] if rankings else None, more_rankings=tuple(rankings[1:]) if rankings else (),
        role_scope=role_scope,
        sensitive_to=tuple(sensitive_to) if sensitive_to is not None else None, metrics=metrics, targets=targets, listing=listing, edges=edges,
        migrations=migrations, urge=urge, withdraw=withdraw, unique=unique,
    )


def _not_a_user_field(name: str, user_fields: set[str], types: dict[str, str]) -> str:
    if name in types:
        return f"{name!r} is a {types[name]} field, not a user field: only a type: user field names people for a role"
    return f"unknown field {name!r}"


def build_migrations(ld: "Loader", source: YamlSource, raw: dict | list | None, version: int,
                     states: dict[str, StateSpec]) -> tuple[MigrationSpec, ...]:
    """``migrate:`` (one mapping or a list): what can be checked without the store. Whether the old states
    and fields exist, and which running cases would be stranded, ``engine.versions`` checks against the
    versions kept in the store (``civicflow lint``)."""
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, dict) else raw
    base: list[PathItem] = ["migrate"]
    found, seen = [], set()
    for i, item in enumerate(items):
        here = base if isinstance(raw, dict) else base + [i]
        sources = tuple(item["from"]) if isinstance(item["from"], list) else (item["from"],)
        for v in sources:
            if v >= version:
                ld.problems.append(source.problem(here + ["from"], f"migrate from version {v}: not older than this version {version}",
                                                  f"cases move from an older version to this one; list versions below {version}"))
            elif v in seen:
                ld.problems.append(source.problem(here + ["from"], f"version {v} is migrated twice",
                                                  "name each older version in one migrate entry"))
            seen.add(v)
        for old, new in item.get("states", {}).items():
            if new not in states:
                ld.problems.append(source.problem(here + ["states", old], f"unknown state {new!r}",
                                                  did_you_mean(new, states) or f"states of this version: {', '.join(states)}"))
        found.append(MigrationSpec(sources, dict(item.get("states", {})), dict(item.get("fields", {}))))
    return tuple(found)


def check_graph(ld: "Loader", source: YamlSource, states: dict[str, StateSpec], initial: str, edges: tuple[EdgeSpec, ...],
                unbuilt_ranking: str | None) -> None:
    """Along the workflow's edges (transitions, objections, ranking outcomes): every state but a final one
    has a way out, and every state can be reached from the initial one.

    No cascades: a misspelt target already says so, and would also make its real target "unreachable", so
    reachability is judged only when every edge ends in a known state; a ranking that could not be built
    (its own problem says why; ``unbuilt_ranking`` is the state its cases wait in) has no edges, so neither
    check judges what only those edges would explain.
    """
    # urging or copying in leads nowhere; a person's moves on their task (transfer, withdraw, send back) are no way
    # forward either: a state left only by them is still a dead end
    leaving = {e.source for e in edges if not e.aside and e.kind != "move"}
    edges = tuple(e for e in edges if not e.aside)
    for sid, state in states.items():
        if not state.final and sid not in leaving and sid != unbuilt_ranking:
            ld.problems.append(source.problem(["states", sid], f"state {sid!r} has no way out",
                                                "add a transition, or mark it 'final: true'", key=True))
    known = all(e.source in states and e.target in states for e in edges)
    if initial in states and known and unbuilt_ranking is None:
        reached = reachable(edges, initial)
        for sid in states:
            if sid not in reached:
                ld.problems.append(source.problem(["states", sid], f"state {sid!r} is unreachable from {initial!r}",
                                                    "add a transition to it, or remove it", key=True))

