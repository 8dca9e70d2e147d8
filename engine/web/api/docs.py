"""The API described: OpenAPI 3.1 at ``/api/v1/openapi.json``, generated from the loaded definitions (each
workflow's start form and step forms are the request schemas of its paths), and a browsable page at
``/api/v1/docs`` (Swagger UI, vendored under ``static/vendor/``)."""
from __future__ import annotations

from typing import Any

from flask import current_app, jsonify, render_template, request

from ...inbox import SORTS
from ...spec import FormSpec, TransitionSpec, WorkflowSpec
from .. import get_engine
from . import bp

VERSION = "1"

_TEXT = {"type": "object", "properties": {"zh": {"type": "string"}, "en": {"type": "string"}}}
_NTEXT = {"oneOf": [_TEXT, {"type": "null"}]}
_STR_OR_NULL = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Text": _TEXT,
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["status", "message"],
            "properties": {
                "status": {"type": "integer"},
                "message": {"type": "string"},
                "fields": {"type": "object", "description": "field path -> messages (e.g. `attendees.0.name`)",
                           "additionalProperties": {"type": "array", "items": {"type": "string"}}},
            }}},
    },
    "Transition": {
        "type": "object", "required": ["id", "label", "from", "to"],
        "properties": {"id": {"type": "string"}, "label": _TEXT, "from": {"type": "string"}, "to": {"type": "string"},
                       "form": _STR_OR_NULL, "comment": {"enum": ["required", "optional", "none"]},
                       "assign": _STR_OR_NULL, "claim": {"type": "boolean"}},
    },
    "CaseSummary": {
        "type": "object",
        "required": ["id", "workflow", "workflow_version", "version", "state", "title", "org_unit", "created_by",
                     "created_at", "updated_at", "assignees", "data"],
        "properties": {
            "id": {"type": "integer"}, "workflow": {"type": "string"}, "workflow_version": {"type": "integer"},
            "version": {"type": "integer"}, "state": {"type": "string"}, "state_title": _NTEXT,
            "final": {"type": "boolean"}, "title": {"type": "string"}, "org_unit": {"type": "string"},
            "created_by": {"type": "string"}, "created_at": {"type": "string"}, "updated_at": {"type": "string"},
            "assignees": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "object", "description": "the declared fields present; sensitive values masked "
                                                      "(always on lists, on a case unless the caller may see them)"},
            "names": {"type": "object", "additionalProperties": {"type": "string"},
                      "description": "username -> display name of each person a user field in data names"},
        },
    },
    "Case": {
        "allOf": [{"$ref": "#/components/schemas/CaseSummary"}, {
            "type": "object",
            "required": ["history", "transitions", "sensitive_shown"],
            "properties": {
                "history": {"type": "array", "items": {"type": "object"}},
                "transitions": {"type": "array", "items": {"$ref": "#/components/schemas/Transition"},
                                "description": "what the caller may do now"},
                "contribution": {"type": ["object", "null"]},
                "notice_ends": _STR_OR_NULL,
                "results": {"type": "array", "items": {"type": "object"}},
                "sensitive_shown": {"type": "boolean"},
            }}],
    },
    "CasePage": {
        "type": "object", "required": ["items", "page", "pages", "size", "total"],
        "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/CaseSummary"}},
                       "page": {"type": "integer"}, "pages": {"type": "integer"}, "size": {"type": "integer"},
                       "total": {"type": "integer"}, "state": _STR_OR_NULL,
                       "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                       "state_counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                       "sort": {"type": "string"}},
    },
    "ObjectionResult": {
        "type": "object", "required": ["id", "state"],
        "properties": {"id": {"type": "integer"}, "state": {"type": "string"},
                       "case": {"oneOf": [{"$ref": "#/components/schemas/Case"}, {"type": "null"}]}},
    },
    "Notifications": {
        "type": "object", "required": ["items"],
        "properties": {"items": {"type": "array", "items": {
            "type": "object", "required": ["id", "read"],
            "properties": {"id": {"type": "integer"}, "case": {"type": ["integer", "null"]}, "at": _STR_OR_NULL,
                           "read": {"type": "boolean"}, "kind": _STR_OR_NULL, "kind_label": {"type": "object"},
                           "title": _STR_OR_NULL, "label": {"type": ["object", "null"]}, "state": _STR_OR_NULL}}}},
    },
    "Marked": {"type": "object", "required": ["marked"], "properties": {"marked": {"type": "integer"}}},
    "Figures": {
        "type": "object", "required": ["unit", "period", "buckets", "rows", "charts"],
        "properties": {"unit": {"type": "string"}, "period": {"enum": ["month", "quarter"]},
                       "buckets": {"type": "array", "items": {"type": "string"}},
                       "units": {"type": "array", "items": {"type": "string"}},
                       "rows": {"type": "array", "items": {
                           "type": "object", "required": ["workflow", "metric", "month", "unit", "value"],
                           "properties": {"workflow": {"type": "string"}, "metric": {"type": "string"},
                                          "month": {"type": "string"}, "unit": {"type": "string"},
                                          "value": {"type": "number"}}}},
                       "charts": {"type": "array", "items": {"type": "object"}}},
    },
    "WorkflowList": {
        "type": "object", "required": ["items"],
        "properties": {"items": {"type": "array", "items": {
            "type": "object", "required": ["id", "version", "title", "start_form", "may_start"],
            "properties": {"id": {"type": "string"}, "version": {"type": "integer"}, "title": _TEXT,
                           "start_form": {"type": "string"}, "may_start": {"type": "boolean"}}}}},
    },
    "Workflow": {
        "type": "object", "required": ["id", "version", "title", "start_form", "states", "forms"],
        "properties": {"id": {"type": "string"}, "version": {"type": "integer"}, "title": _TEXT,
                       "description": _NTEXT, "start_form": {"type": "string"},
                       "start_roles": {"type": "array", "items": {"type": "string"}},
                       "roles": {"type": "array", "items": {"type": "string"}}, "initial": {"type": "string"},
                       "may_start": {"type": "boolean"}, "states": {"type": "array", "items": {"type": "object"}},
                       "filters": {"type": "array", "items": {"type": "string"}},
                       "forms": {"type": "array", "items": {"type": "string"}}},
    },
    "Form": {
        "type": "object", "required": ["id", "title", "fields", "schema", "request_schema"],
        "properties": {"id": {"type": "string"}, "version": {"type": "integer"}, "title": _TEXT,
                       "fields": {"type": "array", "items": {"type": "object"}},
                       "schema": {"type": "object", "description": "the form as one JSON Schema (2020-12)"},
                       "request_schema": {"type": "object",
                                          "description": "what the API accepts: the schema without file fields"}},
    },
}

_ERRORS = {"default": {"description": "an error (JSON, in the language of `Accept-Language`)",
                       "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}


def _ok(schema: str, status: str = "200", description: str = "OK") -> dict[str, Any]:
    return {status: {"description": description,
                     "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}},
            **_ERRORS}


def _op(op_id: str, summary: str, response: str, tag: str, status: str = "200", **extra: Any) -> dict[str, Any]:
    return {"operationId": op_id, "summary": summary, "tags": [tag], "responses": _ok(response, status), **extra}


def _form_ref(form: FormSpec) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/form.{form.id}"}


def _path_int(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "integer", "minimum": 1}}


_PAGE = {"name": "page", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}}
_CASE_ID = _path_int("case_id", "the case number")


def _filters(wf: WorkflowSpec, form: FormSpec) -> list[dict[str, Any]]:
    """The list page's query parameters: ``state``, ``page`` and each declared filter (ranges as _from/_to)."""
    params = [{"name": "state", "in": "query", "required": False, "schema": {"enum": list(wf.states)}}, _PAGE]
    for name in wf.listing.filters:
        f = form.field(name)
        if f is None:
            continue
        names = [f"{f.id}_from", f"{f.id}_to"] if f.kind.search == "range" else [f.id]
        params += [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in names]
    return params


def _transition_body(wf: WorkflowSpec, steps: list[TransitionSpec]) -> dict[str, Any]:
    engine = get_engine()
    forms = {t.form for t in steps if t.form}
    props: dict[str, Any] = {
        "comment": {"type": "string", "maxLength": 1000},
        "version": {"type": "integer", "description": "the case version the caller saw (409 if it changed)"},
        "assignees": {"type": "array", "items": {"type": "string"}, "description": "usernames picked in a dispatch"},
    }
    if forms:
        refs = [_form_ref(engine.definitions.form_of(wf, fid)) for fid in sorted(forms)]
        props["data"] = refs[0] if len(refs) == 1 else {"oneOf": refs}
    return {"required": False, "content": {"application/json": {"schema": {"type": "object", "properties": props}}}}


def build_spec(server: str = "/api/v1") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API for the loaded definitions (the same for every caller)."""
    from .routes import request_schema

    engine = get_engine()
    defs = engine.definitions
    schemas = dict(SCHEMAS)
    for form in defs.forms.values():
        schemas[f"form.{form.id}"] = request_schema(form)
    wf_ids = sorted(defs.workflows)
    paths: dict[str, Any] = {
        "/workflows": {"get": _op("listWorkflows", "Processes the caller may start or takes part in",
                                  "WorkflowList", "definitions")},
        "/workflows/{workflow_id}": {"get": _op(
            "getWorkflow", "A process: its states, transitions and forms", "Workflow", "definitions",
            parameters=[{"name": "workflow_id", "in": "path", "required": True, "schema": {"enum": wf_ids}}])},
        "/forms/{form_id}": {"get": _op(
            "getForm", "A form with its JSON Schema", "Form", "definitions",
            parameters=[{"name": "form_id", "in": "path", "required": True, "schema": {"enum": sorted(defs.forms)}}])},
        "/cases/{case_id}": {"get": _op("getCase", "A case, as its page shows it to the caller", "Case", "cases",
                                        parameters=[_CASE_ID])},
        "/cases/{case_id}/claim": {"post": _op(
            "claimCase", "Claim the case (its transition that assigns it to whoever takes it)", "Case", "cases",
            parameters=[_CASE_ID],
            requestBody={"required": False, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"comment": {"type": "string", "maxLength": 1000},
                                                 "version": {"type": "integer"}}}}}})},
        "/cases/{case_id}/contributions": {"post": _op(
            "contribute", "Submit the caller's own rating / score sheet / vote for the case's current state", "Case",
            "cases", parameters=[_CASE_ID],
            requestBody={"required": True, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"data": {"type": "object",
                                                          "description": "the state's collect form (see the workflow)"}}}}}})},
        "/cases/{case_id}/objections": {"post": _op(
            "object", "Object to a case on public notice", "ObjectionResult", "cases", parameters=[_CASE_ID],
            requestBody={"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["reason"],
                "properties": {"reason": {"type": "string", "maxLength": 1000}}}}}})},
        "/inbox": {"get": _op("inbox", "Cases waiting for the caller", "CasePage", "mine", parameters=[
            _PAGE, {"name": "process", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "state", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "sort", "in": "query", "required": False, "schema": {"enum": list(SORTS)}},
            {"name": "q", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 100}}])},
        "/mine": {"get": _op("mine", "Cases the caller started", "CasePage", "mine", parameters=[_PAGE])},
        "/notifications": {"get": _op("notifications", "The caller's notifications, newest first", "Notifications",
                                      "mine")},
        "/notifications/read": {"post": _op("markNotificationsRead", "Mark all of the caller's notifications read",
                                            "Marked", "mine")},
        "/figures": {"get": _op(
            "figures", "The dashboard's figures for a unit the caller reaches", "Figures", "figures",
            parameters=[{"name": "unit", "in": "query", "required": False, "schema": {"type": "string"}},
                        {"name": "period", "in": "query", "required": False,
                         "schema": {"enum": ["month", "quarter"]}}])},
    }
    for wf in defs.workflows.values():
        start_form = defs.forms[wf.start_form]
        title = wf.title.get("en") or wf.id
        paths[f"/workflows/{wf.id}/cases"] = {
            "get": _op(f"list_{wf.id}", f"List {title} cases (as the list page: scope, state, filters, pages)",
                       "CasePage", wf.id, parameters=_filters(wf, start_form)),
            "post": _op(f"start_{wf.id}", f"Start a {title} case", "Case", wf.id, status="201", requestBody={
                "required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["data"],
                    "properties": {"data": _form_ref(start_form),
                                   "parent": {"type": "integer", "minimum": 1,
                                              "description": "the case this one is started from (its offer)"}}}}}}),
        }
        by_id: dict[str, list[TransitionSpec]] = {}
        for t in wf.transitions():
            if t.roles != ("system",):
                by_id.setdefault(t.id, []).append(t)
        for tid, steps in by_id.items():
            label = steps[0].label.get("en") or tid
            paths[f"/workflows/{wf.id}/cases/{{case_id}}/transitions/{tid}"] = {"post": _op(
                f"{wf.id}__{tid}", f"{title}: {label}", "Case", wf.id, parameters=[_CASE_ID],
                requestBody=_transition_body(wf, steps))}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Civicflow API", "version": VERSION,
                 "description": "Cases, processes and figures of Civicflow, with the same roles, scope and masking "
                                "as the pages. Authenticate with a personal API token "
                                "(`Authorization: Bearer cf_…`, made on your account page)."},
        "servers": [{"url": server}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "a personal API token (read or read+write)"}}},
    }


@bp.get("/openapi.json")
def openapi() -> Any:
    kept = current_app.extensions.setdefault("civicflow.openapi", {})
    server = request.script_root + bp.url_prefix
    if server not in kept:  # the definitions do not change while the app runs
        kept[server] = build_spec(server)
    return jsonify(kept[server])


@bp.get("/docs")
def docs() -> Any:
    return render_template("api_docs.html")
