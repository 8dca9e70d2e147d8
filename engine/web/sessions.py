"""Flask's signed-cookie session, without re-sending an unchanged cookie on every request.

A logged-in session is permanent (``PERMANENT_SESSION_LIFETIME``, 8 hours since the last request), so Flask
serialises, signs and sends it again on every response to move its expiry along (``SESSION_REFRESH_EACH_REQUEST``).
Here an unchanged session is sent again only once it is :data:`REFRESH_AFTER` old: the 8 hours still count from
the last request, give or take that minute. A changed session (login, logout, language, a flashed message,
the CSRF token made for a new session) is sent at once, as before; the cookie's attributes (HttpOnly,
SameSite, Secure) are Flask's. The signing serializer is built once per key instead of on every request, its
signer keeps the key it derives (engine.web.tokens), and a cookie whose signature was checked is not decoded again.
"""
from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from threading import Lock
from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from itsdangerous import BadSignature, URLSafeTimedSerializer

from .tokens import Signer

#: cookies whose signature was checked, kept (the oldest go first)
OPENED = 4096
#: How old (by its signature's time) an unchanged permanent session's cookie may be before it is sent again.
REFRESH_AFTER = dt.timedelta(seconds=60)


class Session(SecureCookieSession):
    #: when the cookie the session came in was signed (None: a new session)
    signed_at: dt.datetime | None = None


class CookieSessions(SecureCookieSessionInterface):
    session_class = Session

    def __init__(self) -> None:
        self._serializer: tuple[tuple[Any, ...], URLSafeTimedSerializer | None] | None = None
        #: (keys, cookie) -> (its data, when it was signed): a cookie whose signature was checked once is the same
        #: data next time (its age is still checked); the page after next sends the same cookie
        self._opened: OrderedDict[tuple[Any, str], tuple[dict[str, Any], dt.datetime]] = OrderedDict()
        self._lock = Lock()

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            return None
        keys = (*(app.config["SECRET_KEY_FALLBACKS"] or ()), app.secret_key)  # Flask's order: the current key last
        cached = self._serializer
        if cached is None or cached[0] != keys:  # a test may change the key
            serializer = URLSafeTimedSerializer(
                list(keys), salt=self.salt, serializer=self.serializer, signer=Signer,  # type: ignore[arg-type]
                signer_kwargs={"key_derivation": self.key_derivation, "digest_method": self.digest_method})
            cached = self._serializer = (keys, serializer)
        return cached[1]

    def open_session(self, app: Flask, request: Request) -> Session | None:
        s = self.get_signing_serializer(app)
        if s is None:
            return None
        val = request.cookies.get(self.get_cookie_name(app))
        if not val:
            return self.session_class()
        max_age = int(app.permanent_session_lifetime.total_seconds())
        key = (self._serializer[0] if self._serializer else None, val)
        found = self._opened.get(key)
        if found is not None and 0 <= (_now() - found[1]).total_seconds() <= max_age:
            data, signed_at = _copy(found[0]), found[1]  # checked before, still within its lifetime
        else:
            try:
                data, signed_at = s.loads(val, max_age=max_age, return_timestamp=True)
            except BadSignature:
                return self.session_class()
            with self._lock:
                self._opened[key] = (_copy(data), signed_at)
                while len(self._opened) > OPENED:
                    self._opened.popitem(last=False)
        session = self.session_class(data)
        session.signed_at = signed_at
        return session

    def should_set_cookie(self, app: Flask, session: SessionMixin) -> bool:
        if session.modified:
            return True
        if not (session.permanent and app.config["SESSION_REFRESH_EACH_REQUEST"]):
            return False
        signed_at = getattr(session, "signed_at", None)
        return signed_at is None or _now() - signed_at >= REFRESH_AFTER


def _copy(value: Any) -> Any:
    """A copy of session data a request may change in place (the list of flashed messages)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
