"""The production server: the WSGI app under waitress, with several threads, timers and a request log.

``civicflow serve`` calls :func:`serve`; ``civicflow run`` stays Flask's development server.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from flask import Flask
from flask.logging import default_handler
from waitress import create_server

from . import settings, ticker

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int) -> None:
    """Everything (requests, timers, waitress, errors) on stderr at ``level``, one format."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)


def serve(app: Flask, host: str = "127.0.0.1", port: int = 5000, threads: int = 8) -> None:
    """Serve ``app`` until interrupted (Ctrl+C or SIGTERM), running its timers in the background.

    Port 0 picks a free port; the line printed on start names the one bound.
    """
    configure_logging(settings.log_level(os.environ))
    # Flask gave its logger a handler of its own if it was used before; the root handler is enough.
    app.logger.removeHandler(default_handler)
    server: Any = create_server(
        app, host=host, port=port, threads=threads, ident="civicflow",
        # waitress drops X-Forwarded-* unless told otherwise; behind trusted proxies ProxyFix reads them.
        clear_untrusted_proxy_headers=not app.config.get("TRUSTED_PROXIES"),
    )
    shown = f"[{server.effective_host}]" if ":" in str(server.effective_host) else server.effective_host
    timers = ticker.start(app)

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)  # waitress's loop ends on SystemExit and lets running requests finish

    previous = signal.signal(signal.SIGTERM, stop)
    print(f"Civicflow serving on http://{shown}:{server.effective_port} (waitress, {threads} threads, "
          f"timers {'every %gs' % app.config['TICK_SECONDS'] if timers else 'off'}; Ctrl+C stops)", flush=True)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        ticker.stop(app)
        server.close()
        app.extensions["civicflow"].store.close()
