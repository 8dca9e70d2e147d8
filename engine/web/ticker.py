"""Runs due timers and sends due webhooks in the background of the web app (``civicflow tick`` does the same
from cron).

With several server processes on one instance, only one of them ticks: before each tick a
ticker tries a non-blocking exclusive ``flock`` on the instance's ``ticker.lock`` and keeps it
while it lives, so it stays the leader; the others try again every interval and take over
when the leader's process ends (the kernel drops its lock). The lock only saves the others
the same scan: each timer fires inside its own store transaction, which is exclusive across
processes, and is marked done there, so a cron ``civicflow tick`` running alongside is safe.

A ``flock`` only excludes processes on one host. A store shared across hosts (PostgreSQL) offers its own
lock (:meth:`engine.store.base.Store.leader_lock`: there a session-level advisory lock), and the ticker
uses that instead, so one process among every host on the database runs the timers.
"""
from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from flask import Flask

from ..store import StoreError
from ..store.base import LeaderLock as StoreLeaderLock
from ..webhooks import Deliverer

EXTENSION = "civicflow_ticker"


class LeaderLock:
    """A non-blocking exclusive ``flock`` on one file, held for as long as this object wants it.

    ``flock`` locks belong to an open file description, so two ``LeaderLock`` objects on one
    path exclude each other even inside one process, exactly as two processes do.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"LeaderLock({str(self.path)!r})"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """True if this object holds the lock now (it may have held it already)."""
        if self._fd is not None:
            if self._still_ours():
                return True
            self.release()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        # Who leads, for a person looking at the instance directory; the lock itself is the flock.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return True

    def _still_ours(self) -> bool:
        """False if the lock file was deleted or replaced: another process may lock the new one."""
        try:
            return os.stat(self.path).st_ino == os.fstat(self._fd).st_ino  # type: ignore[arg-type]
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)  # no stale pid left behind for a person to misread
            finally:
                os.close(fd)  # closing the last descriptor drops the flock


class Ticker:
    """A daemon thread ticking the app's engine every ``seconds``, while it holds ``lock`` (if any)."""

    def __init__(self, app: Flask, seconds: float, lock: LeaderLock | StoreLeaderLock | None = None):
        self.app = app
        self.seconds = seconds
        self.lock = lock
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name="civicflow-timers", daemon=True)

    @property
    def role(self) -> str:
        """``leader`` (ticks), ``standby`` (another process ticks) or ``stopped``."""
        if self.stopped.is_set() or not self.thread.is_alive():
            return "stopped"
        return "leader" if self.lock is None or self.lock.held else "standby"

    def lead(self) -> bool:
        """Become (or stay) the one that ticks; False while another process holds the lock."""
        if self.lock is None:
            return True
        try:
            return self.lock.try_acquire()
        except (OSError, StoreError):
            self.app.logger.exception("cannot take the timer lock %r; timers are not run here now", self.lock)
            return False

    def run(self) -> None:
        from .reload import check as check_definitions

        try:
            # Try at once, so `role` shows who leads from the start; the first tick waits an interval.
            self.lead()
            while not self.stopped.wait(self.seconds):
                if not self.lead():
                    continue
                try:
                    check_definitions(self.app)  # definitions saved in the editor meanwhile
                    fired = self.app.extensions["civicflow"].tick()
                    if fired:
                        self.app.logger.info("timers fired: %s", fired)
                except Exception:  # noqa: BLE001 - keep ticking; the next tick retries
                    self.app.logger.exception("running due timers failed")
                try:  # the leader alone sends webhooks, as it alone runs timers
                    engine = self.app.extensions["civicflow"]
                    sent = Deliverer(engine.store, engine.clock,
                                     channels=self.app.extensions.get("civicflow_channels")).deliver_due()
                    if any(sent.values()):
                        self.app.logger.info("webhooks: %s", sent)
                except Exception:  # noqa: BLE001 - a delivery left pending is sent at the next tick
                    self.app.logger.exception("sending webhooks failed")
        finally:
            if self.lock is not None:
                self.lock.release()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)


def start(app: Flask) -> Ticker | None:
    """Start the app's ticker once (later calls return the running one); None when timers are off."""
    running = app.extensions.get(EXTENSION)
    if running is not None:
        return running
    seconds = app.config.get("TICK_SECONDS") or 0
    if seconds <= 0 or app.testing:
        return None
    lock_path = app.config.get("TICKER_LOCK")
    lock = app.extensions["civicflow"].store.leader_lock("timers") or (LeaderLock(lock_path) if lock_path else None)
    ticker = Ticker(app, seconds, lock)
    app.extensions[EXTENSION] = ticker
    ticker.thread.start()
    return ticker


def stop(app: Flask) -> None:
    ticker = app.extensions.get(EXTENSION)
    if ticker is not None:
        ticker.stop()
