"""Per-user API tokens: made and revoked by their owner, kept only as a hash, scoped ``read`` or ``write``.

A token is shown to its owner once, when it is made; the store keeps its SHA-256 digest, found through an
index, so a request carrying ``Authorization: Bearer <token>`` is one lookup on any store (memory, TinyDB file,
PostgreSQL). Nothing here knows the web.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, Iterable

from .store.base import Doc, Index, Key, Store

API_TOKENS = "api_tokens"
TOKEN_INDEX = "api_tokens"
PREFIX = "cf_"
SCOPES = ("read", "write")  # write includes read
MAX_NAME = 60
MAX_PER_USER = 20


class TokenError(ValueError):
    """A token that cannot be made (a bad name or scope, too many tokens). ``message``: ``{zh, en}``."""

    def __init__(self, message: dict[str, str]):
        self.message = message
        super().__init__(message["en"])


def digest(token: str) -> str:
    """The SHA-256 of a token, as stored.

    A plain, fast, unsalted hash is enough here, unlike for passwords: a token is 32 random bytes from
    :mod:`secrets` (256 bits), so there is no dictionary to try and no way to guess one from its digest, and a
    salt adds nothing against a search of 2**256. What the fast hash buys: a request is authenticated by
    looking its digest up in an index (one read), where a slow, salted password hash would cost every API
    call tens of milliseconds of CPU and could not be looked up at all. A stolen copy of the store still gives
    no usable token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _keys(doc: Doc) -> list[Key]:
    keys: list[Key] = [("owner", doc["owner"])]
    if not doc.get("revoked_at"):
        keys.append(("hash", doc["hash"]))  # a revoked token is found by no request
    return keys


def index() -> Index:
    """The index :func:`find` and :func:`tokens_of` read (declared by ``engine.readmodel.install``)."""
    return Index(TOKEN_INDEX, API_TOKENS, keys=_keys, order=lambda d: d.get("created_at") or "", version="1")


def public(doc: Doc) -> dict[str, Any]:
    """What the owner's page and the API show of a token: never its digest."""
    return {"id": doc["id"], "name": doc["name"], "scope": doc["scope"], "hint": doc.get("hint", ""),
            "created_at": doc.get("created_at"), "revoked_at": doc.get("revoked_at")}


def create(store: Store, owner: str, name: str, scope: str, now: str) -> tuple[str, Doc]:
    """Make a token for ``owner``: ``(the token, its stored document)``. The token itself is never stored."""
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME:
        raise TokenError({"zh": f"请给令牌起一个名称（最多 {MAX_NAME} 字）。",
                          "en": f"Give the token a name (at most {MAX_NAME} characters)."})
    if scope not in SCOPES:
        raise TokenError({"zh": "请选择令牌的权限：只读或读写。", "en": "Choose the token's scope: read or read and write."})
    token = PREFIX + secrets.token_urlsafe(32)
    doc: Doc = {"owner": owner, "name": name, "scope": scope, "hash": digest(token),
                "hint": token[:len(PREFIX) + 4] + "…", "created_at": now, "revoked_at": None}
    with store.transaction() as tx:
        live = [d for d in tx.lookup(TOKEN_INDEX, [("owner", owner)]).docs if not d.get("revoked_at")]
        if len(live) >= MAX_PER_USER:
            raise TokenError({"zh": f"每人最多 {MAX_PER_USER} 个有效令牌，请先撤销不用的。",
                              "en": f"At most {MAX_PER_USER} live tokens per person: revoke one you no longer use."})
        doc["id"] = tx.insert(API_TOKENS, doc)
    return token, doc


def find(store: Store, token: str) -> Doc | None:
    """The live token document for ``token`` (None: unknown or revoked)."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    wanted = digest(token)
    doc = store.first(TOKEN_INDEX, ("hash", wanted))
    # the index matched the digest already; compare once more in constant time, as one compares secrets
    if doc is None or doc.get("revoked_at") or not hmac.compare_digest(doc["hash"], wanted):
        return None
    return doc


def tokens_of(store: Store, owner: str) -> list[Doc]:
    """``owner``'s tokens, newest first (revoked ones too, marked)."""
    return store.lookup(TOKEN_INDEX, [("owner", owner)]).docs


def revoke(store: Store, owner: str, token_id: int, now: str) -> bool:
    """Revoke one of ``owner``'s tokens (False: no such live token of theirs). Kept, marked, for the record."""
    with store.transaction() as tx:
        doc = tx.get(API_TOKENS, token_id)
        if doc is None or doc["owner"] != owner or doc.get("revoked_at"):
            return False
        doc["revoked_at"] = now
        tx.replace(API_TOKENS, token_id, doc)
    return True


def allows(doc: Doc, write: bool) -> bool:
    return doc["scope"] == "write" or not write


__all__: Iterable[str] = ["API_TOKENS", "SCOPES", "TokenError", "create", "digest", "find", "index", "revoke",
                          "tokens_of", "public", "allows"]
