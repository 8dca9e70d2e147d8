"""``/healthz`` for load balancers and monitoring: 200 when the store answers, 503 with a reason when not.

No login, no session and no scan: one read of one document by id, which every store answers
in constant time, so probing it every second costs nothing even at 100,000 cases.
"""
from __future__ import annotations

import os
from typing import Any

from flask import Blueprint, current_app, jsonify

from ..cases import CASES
from . import ticker

bp = Blueprint("health", __name__)


@bp.route("/healthz")
def healthz() -> Any:
    engine = current_app.extensions["civicflow"]
    running = current_app.extensions.get(ticker.EXTENSION)
    timers = running.role if running is not None else "off"
    try:
        engine.store.get(CASES, 1)
    except Exception as exc:  # noqa: BLE001 - any failure means this process cannot serve
        current_app.logger.warning("health check failed: store: %s", exc)
        # The page is public: name the files the way an operator sees them in the instance, not by full path.
        folder = os.path.dirname(os.path.abspath(str(current_app.config["STORE"]))) + os.sep
        reason = "store: " + (str(exc).replace(folder, "") or type(exc).__name__)
        response = jsonify(status="unavailable", reason=reason, timers=timers)
        response.status_code = 503
    else:
        response = jsonify(status="ok", store="ok", workflows=len(engine.definitions.workflows), timers=timers)
    response.headers["Cache-Control"] = "no-store"
    return response
