"""The machine interface ``/api/v1``: JSON over the same engine calls the pages make.

Who may see and do what is decided where the pages decide it (``engine.access`` through the engine,
``listed_cases`` for lists, ``figure_query`` for figures, ``engine.caseview`` for masking); this package only
reads JSON in and writes JSON out. Callers authenticate with a per-user token (``Authorization: Bearer``,
``engine.tokens``), which needs no CSRF token since a browser never sends it by itself; a logged-in browser
session may call the API too, and then keeps CSRF for writes (``X-CSRFToken`` header). Errors are JSON, in the
language ``Accept-Language`` asks for (zh or en): ``{"error": {"status", "message", "fields"}}`` where
``fields`` maps a field path (``phone``, ``attendees.0.name``) to its messages, the same ones the pages show.
"""
from __future__ import annotations

from typing import Any, Mapping

from flask import Blueprint, g, jsonify, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from ... import tokens
from ...errors import SubmissionError, TransitionError
from ...users import find_user
from .. import get_engine
from ..i18n import LANGS

bp = Blueprint("api", __name__, url_prefix="/api/v1")

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Paths anyone may read without a token: the description of the API and its browsable page.
OPEN = frozenset({"api.openapi", "api.docs"})

MESSAGES: Mapping[str, Mapping[str, str]] = {
    "unauthenticated": {"zh": "请提供有效的 API 令牌（Authorization: Bearer …）或先登录。",
                        "en": "Send a valid API token (Authorization: Bearer …) or log in first."},
    "bad_token": {"zh": "API 令牌无效或已撤销。", "en": "The API token is not valid or has been revoked."},
    "read_only": {"zh": "此令牌只读，不能修改数据。", "en": "This token is read-only: it may not change anything."},
    "csrf": {"zh": "缺少或无效的 CSRF 令牌（会话请求需在 X-CSRFToken 头中提供）。",
             "en": "The CSRF token is missing or invalid (a session request sends it in the X-CSRFToken header)."},
    "bad_json": {"zh": "请求体必须是 JSON 对象。", "en": "The request body must be a JSON object."},
    "invalid": {"zh": "请更正标出的字段。", "en": "Please correct the marked fields."},
    403: {"zh": "您无权执行此操作。", "en": "You are not allowed to do this."},
    404: {"zh": "不存在，或您无权查看。", "en": "This does not exist, or you may not see it."},
    405: {"zh": "不支持此请求方法。", "en": "This method is not allowed here."},
    413: {"zh": "请求太大。", "en": "The request is too large."},
    400: {"zh": "请求无效。", "en": "The request is not valid."},
}


def api_lang() -> str:
    """zh or en: what ``Accept-Language`` prefers, else the caller's own choice, else Chinese."""
    if request.accept_languages:
        best = request.accept_languages.best_match(LANGS)
        if best:
            return best
    user = g.get("user")
    return user.lang if user is not None and user.lang in LANGS else "zh"


def text(message: Mapping[str, str] | None, lang: str | None = None) -> str:
    if not message:
        return ""
    lang = lang or api_lang()
    return message.get(lang) or message.get("zh") or message.get("en") or ""


def error(status: int, message: Mapping[str, str], fields: Mapping[str, Any] | None = None,
          headers: Mapping[str, str] | None = None) -> Any:
    lang = api_lang()
    body: dict[str, Any] = {"status": status, "message": text(message, lang)}
    if fields:
        body["fields"] = {path: [text(m, lang) for m in msgs] for path, msgs in fields.items()}
    response = jsonify({"error": body})
    response.status_code = status
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


class ApiError(Exception):
    """An answer other than success, raised anywhere in a view: becomes :func:`error`."""

    def __init__(self, status: int, message: Mapping[str, str], fields: Mapping[str, Any] | None = None):
        self.status, self.message, self.fields = status, message, fields
        super().__init__(message.get("en", ""))


def body() -> dict[str, Any]:
    """The request's JSON object (400 if it is not one); no body at all is an empty object (a step without a
    form needs nothing)."""
    if not request.get_data(cache=True):
        return {}
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, MESSAGES["bad_json"])
    return data


@bp.before_request
def authenticate() -> Any:
    """A bearer token replaces the session's user; without one, the session's user (CSRF on writes)."""
    g.api_token = None
    header = request.headers.get("Authorization", "")
    scheme, _sep, credential = header.partition(" ")
    if scheme.lower() == "bearer":
        doc = tokens.find(get_engine().store, credential.strip())
        user = find_user(get_engine().store, doc["owner"]) if doc else None
        if user is None or not user.active:
            g.user = None
            return error(401, MESSAGES["bad_token"], headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        g.user, g.api_token = user, doc
        if request.method in WRITES and not tokens.allows(doc, write=True):
            return error(403, MESSAGES["read_only"])
        return None
    if request.endpoint in OPEN:
        return None
    if g.get("user") is None:
        return error(401, MESSAGES["unauthenticated"], headers={"WWW-Authenticate": "Bearer"})
    if request.method in WRITES:
        from .. import csrf
        csrf.protect()  # the session is sent by the browser on its own: a write must prove it came from our page
    return None


@bp.errorhandler(ApiError)
def api_error(exc: ApiError) -> Any:
    return error(exc.status, exc.message, exc.fields)


@bp.errorhandler(SubmissionError)
def submission_error(exc: SubmissionError) -> Any:
    return error(422, MESSAGES["invalid"], exc.errors)


@bp.errorhandler(TransitionError)
def transition_error(exc: TransitionError) -> Any:
    return error(exc.status, exc.message)


@bp.errorhandler(CSRFError)
def csrf_error(exc: CSRFError) -> Any:
    return error(400, MESSAGES["csrf"])


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Any:
    code = exc.code or 500
    return error(code, MESSAGES.get(code) or {"zh": exc.description or "", "en": exc.description or ""})


from . import docs, routes  # noqa: E402,F401  (the routes register themselves on bp)

__all__ = ["bp", "ApiError", "api_lang", "body", "error", "text"]
