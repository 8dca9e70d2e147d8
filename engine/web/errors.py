"""Error pages: 403 / 404 / 409 with a message a person understands, never a traceback."""
from __future__ import annotations

from typing import Any

from flask import Flask, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from ..errors import TransitionError
from .i18n import tr


def register(app: Flask) -> None:
    @app.errorhandler(TransitionError)
    def transition_error(exc: TransitionError) -> Any:
        return render_template("error.html", code=exc.status, message=tr(exc.message)), exc.status

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> Any:
        return render_template("error.html", code=400,
                               message=_("The form expired or came from another site. Go back, reload the page and send it again.")), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if request.path.startswith("/api/"):  # no route matched, so the API blueprint's own handler did not run
            from .api import http_error as api_http_error
            return api_http_error(exc)
        messages = {
            403: _("You are not allowed to do this."),
            404: _("This page does not exist, or you may not see it."),
            413: _("The upload is too large."),
        }
        return render_template("error.html", code=exc.code, message=messages.get(exc.code or 0, exc.description)), exc.code
