"""Runs due timers in the background of the web app (``civicflow tick`` does the same from cron).

Safe with several processes or a cron job at the same time: each timer fires inside its own store
transaction, which is exclusive across processes, and is marked done there.
"""
from __future__ import annotations

import threading

from flask import Flask


class Ticker:
    def __init__(self, app: Flask, seconds: float):
        self.app = app
        self.seconds = seconds
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name="civicflow-timers", daemon=True)

    def run(self) -> None:
        engine = self.app.extensions["civicflow"]
        while not self.stopped.wait(self.seconds):
            try:
                fired = engine.tick()
                if fired:
                    self.app.logger.info("timers fired: %s", fired)
            except Exception:  # noqa: BLE001 - keep ticking; the next tick retries
                self.app.logger.exception("running due timers failed")

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


def start(app: Flask) -> Ticker | None:
    seconds = app.config.get("TICK_SECONDS") or 0
    if seconds <= 0 or app.testing:
        return None
    ticker = Ticker(app, seconds)
    app.extensions["civicflow_ticker"] = ticker
    ticker.thread.start()
    return ticker
