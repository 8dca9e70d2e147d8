"""Rendered pieces of pages kept for the next request: ``{% call fragment(key...) %}...{% endcall %}``.

An inbox card or a list row is the same HTML every time for the same case version, language and what the
card is given beside the case (its deadline, how long it waits, the bulk steps the viewer may take): the
template puts all of that in the key, so a change of the case (its version), of the viewer's steps or of the
words needs no invalidation — it is another key. Rendering a card costs 50–100 µs (a dozen calls through
Jinja's runtime, escaping, translations); a hit is one dict lookup.

What a key does not need to carry: the definitions (labels, state titles, org names) are checked by identity
on every hit, so a reload (engine.web.reload) makes every older piece a miss; the mount point
(``SCRIPT_NAME``, which every link starts with) is added here. Only put in a fragment what its key decides:
nothing from the viewer (name, unread count) unless it is in the key; the CSRF token is passed as ``token``:
``{% call fragment('tools', lang, request.full_path, token=csrf_token()) %}``.
"""
from __future__ import annotations

from collections import OrderedDict
from threading import Lock
from typing import Any, Callable

from flask import current_app, request
from markupsafe import Markup, escape

#: stands for the CSRF token in a kept piece (no page holds these characters)
TOKEN_MARK = "\x00\x01csrf-token\x01\x00"
LIMIT = 10000  # pieces kept (a card is ~0.6 kB, the top bar ~1 kB: at most ~10 MB); the least recently used go first


class FragmentCache:
    """``cache(*key, caller=...)``: what ``caller()`` made for that key before, or makes it now (also for values
    other than HTML: engine.web.export keeps rows)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._items: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()
        self._lock = Lock()

    def __call__(self, *key: Any, caller: Callable[[], Any], token: str | None = None, keep: bool = True) -> Any:
        """``token``: the page's CSRF token, which the piece holds (a form): kept with a mark in its place and put
        back on every hit, so the piece is the same for every session. ``keep=False``: made, not kept (one-off
        keys, e.g. what someone typed)."""
        definitions = current_app.extensions["civicflow"].definitions
        full = (request.script_root, *key)
        found = self._items.get(full) if keep else None
        if found is not None and found[0] is definitions:
            with self._lock:
                if full in self._items:
                    self._items.move_to_end(full)
            if token is None:
                return found[1]
            return Markup(found[1].replace(TOKEN_MARK, str(escape(token))))
        made = caller()
        if keep:
            kept = made if token is None else str(made).replace(str(escape(token)), TOKEN_MARK)
            with self._lock:
                self._items[full] = (definitions, kept)
                self._items.move_to_end(full)
                while len(self._items) > self.limit:
                    self._items.popitem(last=False)
        return made

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
