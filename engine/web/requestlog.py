"""One log line per request on the logger ``civicflow.requests``: method, path, status, duration, client.

Only the path is logged, never the query string, which can carry what people typed (a search,
a phone number); control characters in the path are escaped so a crafted URL cannot forge lines.
Nothing is formatted unless the logger is enabled for INFO (``civicflow serve`` enables it;
tests and the CLI leave it off, so they stay quiet).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable

from werkzeug.wsgi import ClosingIterator

log = logging.getLogger("civicflow.requests")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _path(environ: dict[str, Any]) -> str:
    raw = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    # WSGI hands the path over as latin-1 decoded bytes; people's URLs are UTF-8 (Chinese file names).
    try:
        raw = raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        pass
    return _printable(raw) or "/"


class RequestLog:
    """WSGI middleware; install it inside ``ProxyFix`` so the client address is the forwarded one."""

    def __init__(self, app: WSGIApp):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not log.isEnabledFor(logging.INFO):
            return self.app(environ, start_response)
        started = time.perf_counter()
        status = ["-"]

        def logged_start_response(code: str, headers: Any, exc_info: Any = None) -> Any:
            status[0] = code.split(" ", 1)[0]
            return start_response(code, headers, exc_info)

        def done() -> None:
            # Measured until the body is sent and closed, which is what the person waited for.
            log.info("%s %s %s %.1f ms %s", _printable(environ.get("REQUEST_METHOD", "-")), _path(environ),
                     status[0], (time.perf_counter() - started) * 1000, environ.get("REMOTE_ADDR") or "-")

        try:
            body = self.app(environ, logged_start_response)
        except BaseException:
            status[0] = "500"
            done()
            raise
        return ClosingIterator(body, done)
