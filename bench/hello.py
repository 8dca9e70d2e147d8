"""A Flask hello world: the ceiling the app's pages are compared with, served by the same server."""
from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello() -> str:
    return "Hello, World!"
