"""Picking up definitions saved in the editor without a restart, in every process serving the instance.

Each save from the editor (``engine.definition_edit``) writes the files and, in the same store transaction,
a save document whose number is the instance's definitions *generation*. Before a request (and before the
background ticker's run) a process compares the newest generation with the one its definitions were loaded
at: one indexed read, done at most once per ``DEFINITIONS_CHECK_SECONDS`` (default 1 s) per process. When
it moved on, the process loads the definitions directory again and swaps in a new engine over the same
store; requests already running finish on the engine they started with. Cases keep their version
(``engine.versions``), so nothing running changes under them.

Every process must see the same definitions directory (one host, or a shared folder): the files are the
definitions, the store only says that they changed.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from flask import Flask

from ..errors import DefinitionError
from ..loader import load_definitions
from ..runtime import Engine
from ..store import StoreError
from ..versions import generation

EXTENSION = "civicflow.definitions_watch"


class DefinitionsWatch:
    """The generation this process's definitions were loaded at, and the check for a newer one."""

    def __init__(self, app: Flask, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.app = app
        self.seconds = seconds
        self.clock = clock
        self.loaded = generation(app.extensions["civicflow"].store)
        self._checked = clock()
        self._lock = threading.Lock()

    def check(self) -> bool:
        """Reload if another save happened since the last load; True if it did reload. Cheap when nothing
        changed: at most one indexed read per interval."""
        now = self.clock()
        if now - self._checked < self.seconds:
            return False
        self._checked = now
        try:
            newest = generation(self.app.extensions["civicflow"].store)
        except StoreError:
            return False  # the request itself will meet the store's trouble and say so
        if newest == self.loaded:
            return False
        return self.reload(newest)

    def reload(self, newest: int | None = None) -> bool:
        """Load the definitions directory again and swap in an engine on them (one thread at a time)."""
        with self._lock:
            old = self.app.extensions["civicflow"]
            newest = generation(old.store) if newest is None else newest
            if newest == self.loaded:
                return False  # another thread of this process reloaded meanwhile
            try:
                definitions = load_definitions(self.app.config["DEFINITIONS"], old.actions, fresh=True)
            except DefinitionError as exc:
                # Not through the editor (it never writes a broken file): keep serving what was loaded.
                self.app.logger.error("definitions of generation %s do not load, keeping the loaded ones:\n%s",
                                      newest, exc)
                self.loaded = newest
                return False
            install(self.app, Engine(definitions, old.store, old.actions, clock=old.clock))
            self.loaded = newest
            self.app.logger.info("definitions reloaded at generation %s", newest)
            return True


def install(app: Flask, engine: Engine) -> None:
    """Make ``engine`` the app's: views (``get_engine``), the ticker and the templates' labels use it."""
    app.extensions["civicflow"] = engine
    app.extensions.pop("civicflow.diagrams", None)  # drawn with the old roles and specs
    definitions = engine.definitions
    app.jinja_env.globals.update(org=definitions.org, workflows_by_id=definitions.workflows,
                                 forms_by_id=definitions.forms)


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = DefinitionsWatch(app, float(app.config.get("DEFINITIONS_CHECK_SECONDS", 1.0)))


def check(app: Flask) -> Any:
    watch = app.extensions.get(EXTENSION)
    return watch.check() if watch is not None else False


def reload_now(app: Flask) -> Any:
    """After a save in this process: load at once, do not wait for the interval."""
    watch = app.extensions.get(EXTENSION)
    return watch.reload() if watch is not None else False
