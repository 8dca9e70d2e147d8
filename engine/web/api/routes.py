"""The resources of ``/api/v1``: definitions, cases (list, get, start, transition, contribute, object, claim),
the caller's inbox and notifications, and the dashboard's figures. Each view makes the call its page makes."""
from __future__ import annotations

from typing import Any, Mapping

from flask import g, jsonify, request

from ... import caseview, forms
from ...cases import Case
from ...inbox import InboxQuery
from ...errors import NotAllowed, NotFound, SubmissionError, TransitionError
from ...loadkit import msg
from ...notify import KINDS, NOTIFICATIONS
from ...readmodel import PAGE_SIZE
from ...spec import FormSpec, TransitionSpec, WorkflowSpec
from .. import get_engine
from ..cases import _initial_values, listed_cases, page_number
from ..dashboard import charts, figure_query
from . import api_lang, body, bp

NO_FILES = msg("文件暂不能通过 API 上传，请在网页上提交。", "Files cannot be sent through the API yet: use the web page.")
UNKNOWN_FIELD = msg("表单中没有此字段。", "The form has no such field.")


# --------------------------------------------------------------------------- helpers

def visible_workflow(wf: WorkflowSpec, user: Any) -> bool:
    """The rule of the processes page: the user may start it or holds one of its roles."""
    return get_engine().may_start(wf, user) or bool(set(user.roles) & set(wf.roles))


def _workflow(workflow_id: str) -> WorkflowSpec:
    wf = get_engine().definitions.workflows.get(workflow_id)
    if wf is None or not visible_workflow(wf, g.user):
        raise NotFound(msg(f"流程 {workflow_id} 不存在", f"workflow {workflow_id} does not exist"))
    return wf


def request_schema(form: FormSpec) -> dict[str, Any]:
    """The JSON Schema a client sends for ``form``: the form's own (``engine.forms.json_schema``), without the
    fields that hold files, which the API does not take."""
    schema = forms.json_schema(form, get_engine().definitions.org)
    files = {f.id for f in form.fields if f.kind.holds_files}
    for name in files:
        schema["properties"].pop(name, None)
    schema["required"] = [r for r in schema["required"] if r not in files]
    for f in form.fields:  # nor the upload columns of repeat rows
        columns = {sub.id for sub in f.fields if sub.kind.holds_files} if f.is_repeat else set()
        items = schema["properties"].get(f.id, {}).get("items", {})
        for name in columns:
            items.get("properties", {}).pop(name, None)
        if columns and "required" in items:
            items["required"] = [r for r in items["required"] if r not in columns]
    schema.pop("$schema", None)
    return schema


def _values(form: FormSpec, given: Any, base: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` (what the page's form would show) overlaid with what the client sent for ``form``."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise SubmissionError({"data": [msg("请提交一个 JSON 对象。", "Send a JSON object.")]})
    by_id = {f.id: f for f in form.fields}
    errors = {}
    for key in given:
        f = by_id.get(key)
        if f is None:
            errors[key] = [UNKNOWN_FIELD]
        elif f.kind.holds_files:
            errors[key] = [NO_FILES]
        elif f.is_repeat and isinstance(given[key], list):
            # an upload column of a row takes no file, only the file the case's row already holds (sent back as read)
            held = [ref for row in base.get(key) or [] if isinstance(row, dict)
                    for sub in f.fields if sub.kind.holds_files and isinstance(ref := row.get(sub.id), dict)]
            for i, row in enumerate(given[key]):
                for sub in f.fields:
                    if sub.kind.holds_files and isinstance(row, dict) and row.get(sub.id) not in (None, *held):
                        errors[f"{key}.{i}.{sub.id}"] = [NO_FILES]
    if errors:
        raise SubmissionError(errors, dict(given))
    return {**base, **given}


def _text(data: Mapping[str, Any], key: str, limit: int = 1000) -> str:
    value = data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SubmissionError({key: [msg("请填写文字。", "Enter text.")]})
    if len(value) > limit:
        raise SubmissionError({key: [forms.message("maxLength", limit=limit)]})
    return value


def transition_json(t: TransitionSpec) -> dict[str, Any]:
    return {"id": t.id, "label": dict(t.label), "from": t.source, "to": t.target, "form": t.form,
            "comment": t.comment, "assign": t.assign.mode if t.assign else None,
            "claim": bool(t.assign and t.assign.mode == "self")}


def case_json(case: Case, full: bool = True) -> dict[str, Any]:
    """A case as the caller may see it: on a list (``full`` False) sensitive values are masked for everyone, as
    the list page does; in full they are masked unless the case page shows them to this caller."""
    engine = get_engine()
    wf = engine.spec_of(case)
    state = wf.states.get(case.state) if wf is not None else None
    out: dict[str, Any] = {
        "id": case.id, "workflow": case.workflow, "workflow_version": case.workflow_version, "version": case.version,
        "state": case.state, "state_title": dict(state.title) if state else None,
        "final": bool(state and state.final), "title": case.title, "org_unit": case.org_unit,
        "created_by": case.created_by, "created_at": case.created_at, "updated_at": case.updated_at,
        "assignees": list(case.assignees),
        "data": caseview.shown_data(engine, case, g.user, always_mask=not full),
    }
    out["names"] = caseview.shown_names(engine, case, out["data"])
    if full:
        may, reason = engine.may_contribute(case, g.user)
        collect = state.collect if state else None
        out.update(
            history=[{k: h.get(k) for k in ("at", "by", "by_name", "action", "label", "from", "to", "comment",
                                          "changes", "on_behalf_of", "on_behalf_of_name")} for h in case.history],
            transitions=[transition_json(t) for t in engine.available_transitions(case, g.user)] if state else [],
            contribution={"form": collect.form, "label": dict(collect.label), "allowed": may,
                          "reason": dict(reason) if reason else None} if collect else None,
            notice_ends=engine.notice_ends(case) if state else None,
            results=engine.results(case) if wf is not None else [],
            sensitive_shown=engine.may_see_sensitive(case, g.user),
        )
    return out


def paged_json(page: Any, **extra: Any) -> dict[str, Any]:
    return {"items": [case_json(c, full=False) for c in page.items], "page": page.page, "pages": page.pages,
            "size": page.size, "total": page.total, **extra}


def _created(case: Case) -> Any:
    response = jsonify(case_json(case))
    response.status_code = 201
    response.headers["Location"] = f"{bp.url_prefix}/cases/{case.id}"
    return response


# --------------------------------------------------------------------------- definitions

@bp.get("/workflows")
def workflows() -> Any:
    engine = get_engine()
    return jsonify({"items": [{"id": wf.id, "version": wf.version, "title": dict(wf.title),
                               "start_form": wf.start_form, "may_start": engine.may_start(wf, g.user)}
                              for wf in engine.definitions.workflows.values() if visible_workflow(wf, g.user)]})


@bp.get("/workflows/<workflow_id>")
def workflow(workflow_id: str) -> Any:
    engine = get_engine()
    wf = _workflow(workflow_id)
    states = [{"id": s.id, "title": dict(s.title), "final": s.final,
               "transitions": [transition_json(t) for t in s.transitions if t.roles != ("system",)],
               "collect": {"form": s.collect.form, "label": dict(s.collect.label)} if s.collect else None,
               "notice": bool(s.notice)} for s in wf.states.values()]
    return jsonify({"id": wf.id, "version": wf.version, "title": dict(wf.title),
                    "description": dict(wf.description) if wf.description else None,
                    "start_form": wf.start_form, "start_roles": list(wf.start_roles), "roles": list(wf.roles),
                    "initial": wf.initial, "may_start": engine.may_start(wf, g.user), "states": states,
                    "filters": list(wf.listing.filters), "forms": wf.form_ids()})


@bp.get("/forms/<form_id>")
def form(form_id: str) -> Any:
    engine = get_engine()
    for wf in engine.definitions.workflows.values():
        if form_id in wf.form_ids() and visible_workflow(wf, g.user):
            f = engine.definitions.form_of(wf, form_id)
            return jsonify({"id": f.id, "version": f.version, "title": dict(f.title),
                            "fields": [{"id": x.id, "type": x.type, "label": dict(x.label), "required": x.required,
                                        "sensitive": x.sensitive} for x in f.fields],
                            "schema": forms.json_schema(f, engine.definitions.org), "request_schema": request_schema(f)})
    raise NotFound(msg(f"表单 {form_id} 不存在", f"form {form_id} does not exist"))


# --------------------------------------------------------------------------- cases

@bp.get("/workflows/<workflow_id>/cases")
def list_cases(workflow_id: str) -> Any:
    wf, state, shown, counts = listed_cases(workflow_id)  # the list page's own query: scope, state, filters, page
    return jsonify(paged_json(shown, state=state, counts=counts))


@bp.post("/workflows/<workflow_id>/cases")
def start(workflow_id: str) -> Any:
    engine = get_engine()
    wf = engine.definitions.workflows.get(workflow_id)
    if wf is None:
        raise NotFound(msg(f"流程 {workflow_id} 不存在", f"workflow {workflow_id} does not exist"))
    payload = body()
    parent = payload.get("parent")
    if parent is not None and (not isinstance(parent, int) or isinstance(parent, bool) or parent < 1):
        raise SubmissionError({"parent": [forms.message("integer")]})
    if not engine.may_start(wf, g.user):  # before reading the form: the page answers 403 first too
        raise NotAllowed(msg(f"您的角色不能发起“{wf.title.get('zh', wf.id)}”。",
                             f"Your role may not start '{wf.title.get('en', wf.id)}'."))
    form = engine.definitions.forms[wf.start_form]
    base = _initial_values(form)
    if parent is not None:
        parent_case, offer = engine.offer(parent, workflow_id, g.user)
        base.update(engine.prefill(parent_case, offer, g.user))
    values = _values(form, payload.get("data"), base)
    return _created(engine.start(workflow_id, g.user, values, parent=parent))


@bp.get("/cases/<int:case_id>")
def case(case_id: int) -> Any:
    return jsonify(case_json(get_engine().get(case_id, g.user)))


@bp.post("/workflows/<workflow_id>/cases/<int:case_id>/transitions/<transition_id>")
def fire(workflow_id: str, case_id: int, transition_id: str) -> Any:
    engine = get_engine()
    current = engine.get(case_id, g.user)
    if current.workflow != workflow_id:
        raise NotFound(msg(f"事项 #{case_id} 不存在", f"case #{case_id} does not exist"))
    return jsonify(case_json(_fire(current, transition_id, body())))


def _fire(current: Case, transition_id: str, payload: Mapping[str, Any]) -> Case:
    """The page's step: the step form pre-filled from the case as the page shows it, overlaid with ``data``."""
    engine = get_engine()
    wf = engine.workflow_of(current)
    t = engine.state_of(current).transition(transition_id)
    version = payload.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise SubmissionError({"version": [forms.message("integer")]})
    assignees = payload.get("assignees") or []
    if not isinstance(assignees, list) or not all(isinstance(a, str) for a in assignees):
        raise SubmissionError({"assignees": [msg("请提交用户名列表。", "Send a list of usernames.")]})
    comment = _text(payload, "comment")
    values: dict[str, Any] = {}
    if t is not None and t.form:
        form = engine.definitions.form_of(wf, t.form)
        values = _values(form, payload.get("data"), _initial_values(form, current.data))
    elif payload.get("data"):
        raise SubmissionError({"data": [msg("此操作没有表单。", "This action has no form.")]})
    return engine.fire(current.id, transition_id, g.user, values, comment=comment,
                       expected_version=version, assignees=assignees)


@bp.post("/cases/<int:case_id>/claim")
def claim(case_id: int) -> Any:
    """Take the case's claim step (a transition that assigns the case to whoever takes it), if it has one now."""
    engine = get_engine()
    current = engine.get(case_id, g.user)
    payload = body()
    wf = engine.workflow_of(current)
    claims = [t for t in engine.state_of(current).transitions if t.assign and t.assign.mode == "self"]
    if not claims:
        declared = any(t.assign and t.assign.mode == "self" for t in wf.transitions())
        if declared and current.assignees:
            holder = engine.read.display_names(current.assignees[:1])[0]
            raise TransitionError(msg(f"已被 {holder} 认领，您来晚了一步。", f"Already claimed by {holder}."))
        raise TransitionError(msg("此事项现在不能认领。", "This case cannot be claimed now."))
    open_to_me = [t for t in claims if t in engine.available_transitions(current, g.user)]
    return jsonify(case_json(_fire(current, (open_to_me or claims)[0].id, payload)))


@bp.post("/cases/<int:case_id>/contributions")
def contribute(case_id: int) -> Any:
    engine = get_engine()
    current = engine.get(case_id, g.user)
    _spec, form, mine = engine.contribution_form(current, g.user)  # the page's own check
    values = _values(form, body().get("data"), dict(mine["data"]) if mine else {})
    return jsonify(case_json(engine.contribute(case_id, g.user, values)))


@bp.post("/cases/<int:case_id>/objections")
def object_(case_id: int) -> Any:
    """An objection during a public notice: the case must be on the public page, as on the page."""
    engine = get_engine()
    if engine.public_case(case_id) is None:
        raise NotFound(msg(f"事项 #{case_id} 不存在", f"case #{case_id} does not exist"))
    reason = _text(body(), "reason")
    case = engine.object(case_id, g.user, reason)
    found = case if engine.can_see(case, g.user) else None
    return jsonify({"id": case_id, "state": case.state, "case": case_json(found) if found else None})


# --------------------------------------------------------------------------- the caller's own

@bp.get("/inbox")
def inbox() -> Any:
    """The inbox page's own query: ``process``, ``state``, ``sort`` (waiting | due | recent), ``q``, ``page``; with
    the counts per process (and per state of the process asked for)."""
    engine = get_engine()
    query = InboxQuery.from_args(request.args, engine.read)
    found = engine.read.work.page(g.user, query, PAGE_SIZE)
    return jsonify(paged_json(found.cases, counts=found.counts, state_counts=found.state_counts, sort=query.sort))


@bp.get("/mine")
def mine() -> Any:
    return jsonify(paged_json(get_engine().read.started_by(g.user, page_number())))


@bp.get("/notifications")
def notifications() -> Any:
    items = get_engine().read.notifications(g.user.username)
    return jsonify({"items": [{"id": d["id"], "case": d.get("case"), "at": d.get("at"), "read": bool(d.get("read")),
                               "kind": d.get("kind"), "kind_label": dict(KINDS.get(d.get("kind") or "", {})),
                               "title": d.get("title"), "label": d.get("label"), "state": d.get("state")}
                              for d in items]})


@bp.post("/notifications/read")
def notifications_read() -> Any:
    """Mark every notification of the caller read (what the notifications page's button does)."""
    engine = get_engine()
    with engine.store.transaction() as tx:
        unread = engine.read.unread(g.user.username)
        for doc in unread:
            doc["read"] = True
            tx.replace(NOTIFICATIONS, doc["id"], doc)
    return jsonify({"marked": len(unread)})


@bp.get("/figures")
def figures() -> Any:
    engine = get_engine()
    q = figure_query(engine, g.user, request.args)
    return jsonify({"unit": q["unit"], "period": q["period"], "buckets": q["buckets"],
                    "units": [u.id for u in q["choices"]], "rows": q["rows"],
                    "charts": charts(engine, q["rows"], q["unit"], q["period"], q["buckets"], api_lang())})
