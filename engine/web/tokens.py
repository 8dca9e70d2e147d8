"""Signing without repeated set-up: session cookies and CSRF tokens, each request.

itsdangerous derives the signing key from the secret and the salt (an HMAC) on every signature it makes or
checks, and Flask and Flask-WTF build a new serializer each time; a page signs its CSRF token and often its
session cookie, and checks the cookie. :class:`Signer` keeps the derived keys; :func:`csrf_token` is
Flask-WTF's ``generate_csrf`` (the same token format, checked by Flask-WTF's ``CSRFProtect`` as before) that
signs a session's raw token once and hands out that signed token again on the session's later pages, as long
as tokens do not expire (``WTF_CSRF_TIME_LIMIT`` None, the app's default: a long form on a phone must not
expire); with a time limit every page signs anew, as Flask-WTF does.
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from threading import Lock
from typing import Any

from flask import current_app, g, session
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import want_bytes

#: signed CSRF tokens kept (one per open session; the oldest go first)
TOKENS = 20000
CSRF_SALT = "wtf-csrf-token"  # Flask-WTF's


class Signer(TimestampSigner):
    """itsdangerous' signer with the derived key kept per (secret, salt, derivation, digest)."""

    _keys: dict[tuple[Any, ...], bytes] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        secret = self.secret_keys[-1] if secret_key is None else want_bytes(secret_key)
        key = (secret, self.salt, self.key_derivation, self.digest_method)
        found = self._keys.get(key)
        if found is None:
            found = super().derive_key(secret)
            if len(self._keys) > 64:  # secrets change rarely (tests make many apps): never grow without bound
                self._keys.clear()
            self._keys[key] = found
        return found


class _Tokens:
    def __init__(self) -> None:
        self.signed: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.serializers: dict[Any, URLSafeTimedSerializer] = {}
        self.lock = Lock()

    def serializer(self, secret: Any) -> URLSafeTimedSerializer:
        found = self.serializers.get(secret)
        if found is None:
            found = URLSafeTimedSerializer(secret, salt=CSRF_SALT, signer=Signer)
            if len(self.serializers) > 64:
                self.serializers.clear()
            self.serializers[secret] = found
        return found

    def sign(self, secret: Any, raw: str, keep: bool) -> str:
        key = (str(secret), raw)
        found = self.signed.get(key) if keep else None
        if found is None:
            found = self.serializer(secret).dumps(raw)
            if keep:
                with self.lock:
                    self.signed[key] = found
                    while len(self.signed) > TOKENS:
                        self.signed.popitem(last=False)
        return found  # type: ignore[return-value]


_tokens = _Tokens()


def csrf_token() -> str:
    """The page's CSRF token: what ``flask_wtf.csrf.generate_csrf()`` returns, with its defaults."""
    config = current_app.config
    field = config.get("WTF_CSRF_FIELD_NAME") or "csrf_token"
    if field not in g:
        secret = config.get("WTF_CSRF_SECRET_KEY") or current_app.secret_key
        if not secret:
            raise RuntimeError("A secret key is required to use CSRF.")
        raw = session.get(field)
        if not isinstance(raw, str):
            raw = session[field] = hashlib.sha1(os.urandom(64)).hexdigest()
        setattr(g, field, _tokens.sign(secret, raw, keep=config.get("WTF_CSRF_TIME_LIMIT") is None))
    return g.get(field)  # type: ignore[no-any-return]
