"""Rendered pieces of pages kept for the next request: ``{% call fragment(key...) %}...{% endcall %}``.

An inbox card or a list row is the same HTML every time for the same case version, language and what the
card is given beside the case (its deadline, how long it waits, the bulk steps the viewer may take): the
template puts all of that in the key, so a change of the case (its version), of the viewer's steps or of the
words needs no invalidation — it is another key. Rendering a card costs 50–100 µs (a dozen calls through
Jinja's runtime, escaping, translations); a hit is one dict lookup.

What a key does not need to carry: the definitions (labels, state titles, org names) are checked by identity
on every hit, so a reload (engine.web.reload) makes every older piece a miss; the mount point
(``SCRIPT_NAME``, which every link starts with) is added here. Only put in a fragment what its key decides:
nothing from the viewer (name, CSRF token, unread count) unless it is in the key.
"""
from __future__ import annotations

from collections import OrderedDict
from threading import Lock
from typing import Any, Callable

from flask import current_app, request

LIMIT = 10000  # pieces kept (a card is ~0.6 kB, the top bar ~1 kB: at most ~10 MB); the least recently used go first


class FragmentCache:
    """``cache(*key, caller=...)``: what ``caller()`` made for that key before, or makes it now (also for values
    other than HTML: engine.web.export keeps rows)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._items: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()
        self._lock = Lock()

    def __call__(self, *key: Any, caller: Callable[[], Any]) -> Any:
        definitions = current_app.extensions["civicflow"].definitions
        full = (request.script_root, *key)
        found = self._items.get(full)
        if found is not None and found[0] is definitions:
            with self._lock:
                if full in self._items:
                    self._items.move_to_end(full)
            return found[1]
        html = caller()
        with self._lock:
            self._items[full] = (definitions, html)
            self._items.move_to_end(full)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)
        return html

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
