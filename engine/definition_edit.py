"""Editing workflow and form definitions from the admin area: check a draft exactly as ``civicflow lint`` does,
save it (the text as typed, written atomically, with an audit entry), list the earlier versions of a file,
show the difference between two of them, and roll back.

Every save is one document of the ``definition_saves`` table::

    {generation, kind, name, file, text, previous, version, action, by, at}

``generation`` counts saves across the instance; every process compares the newest one with the one its
definitions were loaded at (``engine.web.reload``) and loads the files again when it moved on, so a saved
version is picked up without a restart. Cases started before keep the version they started on
(``engine.versions``). The earlier versions of a file are the texts saves replaced and the texts kept with
the cases (``engine.versions``), each once.

The engine core: no Flask, no TinyDB. The caller checks who may do this (an admin of the root unit: the
definitions are shared by every unit).
"""
from __future__ import annotations

import difflib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .errors import DefinitionError, EngineError, NotFound, Problem
from .loader import load_draft
from .store.base import Doc
from .versions import SAVES, SAVES_INDEX, generation, newest_generation, normalised  # noqa: F401 - generation for callers

if TYPE_CHECKING:
    from .admin import UserAdmin
    from .runtime import Engine

KINDS = {"workflow": "workflows", "form": "forms"}
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_VERSION = re.compile(r"^version:\s*(\d+)\s*(?:#.*)?$", re.MULTILINE)


def digest(text: str) -> str:
    """Names one text of a file (line ends and trailing blanks do not count)."""
    return hashlib.sha256(normalised(text).encode()).hexdigest()[:16]


def version_in(text: str) -> int | None:
    found = _VERSION.search(text)
    return int(found.group(1)) if found else None


def as_typed(text: str) -> str:
    """The text to write: as typed, with the browser's CRLF line ends made LF and one final line end."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") or not text else text + "\n"


class DraftRefused(EngineError):
    """A draft that is not saved: ``problems`` says why (the text is the caller's to keep)."""

    def __init__(self, problems: list[Problem], message: dict[str, str] | None = None):
        self.problems = problems
        self.message = message
        super().__init__(message["en"] if message else "\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class DefinitionFile:
    kind: str           # workflow | form
    name: str           # the file name without .yaml
    file: str           # relative to the definitions directory: workflows/x.yaml

    @property
    def url_args(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name}


@dataclass
class Checked:
    """What checking a draft found: problems in the edited file (at their lines) and elsewhere (another file
    the change breaks, e.g. a workflow whose form lost a field); ``blocking``: what refuses a save."""

    here: list[Problem] = field(default_factory=list)
    elsewhere: list[Problem] = field(default_factory=list)
    known: list[Problem] = field(default_factory=list)  # in other files already before this draft
    warnings: list[Problem] = field(default_factory=list)  # in the edited file, not refusing a save (old spellings)
    definitions: Any = None                               # the draft loaded, when it loads

    @property
    def blocking(self) -> list[Problem]:
        return self.here + self.elsewhere


@dataclass(frozen=True)
class Earlier:
    """One version of a file: its text, when it was written or kept, by whom, how."""

    digest: str
    text: str
    at: str
    by: str
    how: str            # current | saved | rollback | kept (with a case) | before (the text a first save replaced)
    version: int | None


class DefinitionEditor:
    """One definitions directory, as the engine of the app uses it."""

    def __init__(self, engine: "Engine", root: str | Path):
        self.engine = engine
        self.root = Path(root).resolve()

    # -- files ---------------------------------------------------------------------------------
    def files(self) -> list[DefinitionFile]:
        found = []
        for kind, folder in KINDS.items():
            for path in sorted((self.root / folder).glob("*.yaml")):
                if NAME.match(path.stem):
                    found.append(DefinitionFile(kind, path.stem, f"{folder}/{path.name}"))
        return found

    def file(self, kind: str, name: str) -> DefinitionFile:
        if kind not in KINDS or not NAME.match(name) or not (self.root / KINDS[kind] / f"{name}.yaml").is_file():
            raise NotFound({"zh": f"没有定义文件 {kind}/{name}。", "en": f"There is no definition file {kind}/{name}."})
        return DefinitionFile(kind, name, f"{KINDS[kind]}/{name}.yaml")

    def text(self, item: DefinitionFile) -> str:
        return (self.root / item.file).read_text(encoding="utf-8")

    # -- checking --------------------------------------------------------------------------------
    def check(self, item: DefinitionFile, text: str) -> Checked:
        """The problems ``civicflow lint`` would list if ``item`` held ``text``: the files' own, then (when
        they load) those only the live store shows (a change without a new ``version:``, stranded cases)."""
        text = as_typed(text)
        found = self._problems({item.file: text})
        result = Checked(definitions=found[1])
        if found[1] is not None:
            result.warnings = [w for w in found[1].warnings if w.file == item.file]
        baseline = None
        for problem in found[0]:
            if problem.file == item.file:
                result.here.append(problem)
                continue
            if baseline is None:
                baseline = set(self._problems({})[0])
            (result.known if problem in baseline else result.elsewhere).append(problem)
        return result

    def _problems(self, overlay: dict[str, str]) -> tuple[list[Problem], Any]:
        from . import migration
        from .runtime import Engine

        try:
            definitions = load_draft(self.root, overlay, self.engine.actions)
        except DefinitionError as exc:
            return exc.problems, None
        # A throwaway engine on the draft, over the live store's indexes (it declares none: checking a draft
        # must not rebuild what the running app reads).
        probe = Engine(definitions, self.engine.store, self.engine.actions, clock=self.engine.clock, indexes=False)
        return sorted(set(migration.lint(probe))), definitions

    # -- saving ----------------------------------------------------------------------------------
    def save(self, admin: "UserAdmin", item: DefinitionFile, text: str, base: str = "",
             action: str = "save_definition") -> Doc:
        """Write ``text`` to the file as a new version and record the save (and its audit entry) in one store
        transaction. Refused (:class:`DraftRefused`, nothing written) if it has problems, if it is the text
        the file already holds, or if the file changed since the editor read it (``base``: its digest then)."""
        text = as_typed(text)
        checked = self.check(item, text)
        if checked.blocking:
            raise DraftRefused(checked.blocking)
        path = self.root / item.file
        written = False
        previous = ""
        try:
            with self.engine.store.transaction() as tx:  # exclusive across processes: saves do not interleave
                previous = path.read_text(encoding="utf-8")
                if base and digest(previous) != base:
                    raise DraftRefused([], {"zh": "此文件在您编辑期间已被他人保存。请查看最新版本后再修改。",
                                            "en": "Someone else saved this file while you edited it. "
                                                  "Look at the newest version, then make your change again."})
                if normalised(previous) == normalised(text):
                    raise DraftRefused([], {"zh": "没有修改，未保存。", "en": "Nothing changed: nothing was saved."})
                number = newest_generation(tx) + 1
                try:
                    write_atomically(path, text)
                except OSError as exc:
                    raise DraftRefused([], {"zh": f"无法写入文件 {item.file}：{exc.strerror or exc}。未保存。",
                                            "en": f"Cannot write {item.file}: {exc.strerror or exc}. Nothing was saved."}) from exc
                written = True
                at = self.engine.clock().isoformat(timespec="seconds")
                doc = {"generation": number, "kind": item.kind, "name": item.name, "file": item.file, "text": text,
                       "previous": previous, "version": version_in(text), "action": action,
                       "by": admin.actor.username, "at": at}
                doc["id"] = tx.insert(SAVES, doc)
                admin.write_audit(tx, action, item.file, admin.scope.units[:1],
                                  {"version": [version_in(previous), version_in(text)], "generation": number,
                                   "digest": digest(text)})
        except BaseException:
            if written:  # the store did not take the save: the file goes back to what it was
                write_atomically(path, previous)
            raise
        return doc

    def rollback(self, admin: "UserAdmin", item: DefinitionFile, to: str) -> Doc:
        """Save an earlier text of ``item`` (its digest ``to``) again, as a new save checked like any other."""
        for earlier in self.history(item):
            if earlier.digest == to:
                return self.save(admin, item, earlier.text, action="rollback_definition")
        raise NotFound({"zh": "没有这个版本。", "en": "There is no such version."})

    # -- history -----------------------------------------------------------------------------------
    def history(self, item: DefinitionFile) -> list[Earlier]:
        """The versions of the file, newest first, each text once: the current file, the texts saves wrote
        and replaced, and the texts kept with the cases that started on them."""
        found: dict[str, Earlier] = {}

        def add(text: str, at: str, by: str, how: str) -> None:
            key = digest(text)
            if key not in found:
                found[key] = Earlier(key, text, at, by, how, version_in(text))

        current = self.text(item)
        saves = self.engine.store.lookup(SAVES_INDEX, [("file", item.file)]).docs
        newest = saves[0] if saves else None
        add(current, newest["at"] if newest and digest(newest["text"]) == digest(current) else "",
            newest["by"] if newest and digest(newest["text"]) == digest(current) else "", "current")
        candidates: list[tuple[str, str, str, str]] = []
        for doc in saves:
            candidates.append((doc["at"], doc["text"], doc["by"], "rollback" if doc["action"] == "rollback_definition"
                               else "saved"))
            candidates.append((doc["at"], doc["previous"], "", "before"))
        for kept in self.engine.kept.all_docs:
            for f in kept.get("files") or ():
                if f.get("file") == item.file:
                    candidates.append((kept.get("loaded_at") or "", f["text"], "", "kept"))
        # newest first; a text a save replaced is older than the save (same time: the save first)
        order = {"saved": 0, "rollback": 0, "kept": 1, "before": 2}
        for at, text, by, how in sorted(candidates, key=lambda c: (c[0], -order[c[3]]), reverse=True):
            add(text, at, by, how)
        return list(found.values())

    def earlier(self, item: DefinitionFile, key: str) -> Earlier:
        for entry in self.history(item):
            if entry.digest == key:
                return entry
        raise NotFound({"zh": "没有这个版本。", "en": "There is no such version."})


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` whole (a temporary file in the same folder, fsynced, renamed over it): a reader or a
    crash sees the old text or the new one, never half of one. The file keeps its permissions."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


@dataclass(frozen=True)
class DiffRow:
    kind: str           # same | removed | added | gap
    old: int | None     # line number in the old text
    new: int | None
    text: str


def diff_rows(old: str, new: str, context: int = 3) -> list[DiffRow]:
    """The lines that differ between two texts with ``context`` lines around each change, as table rows
    (difflib); a ``gap`` row stands for unchanged lines left out. Empty: the texts are the same."""
    a, b = normalised(old).splitlines(), normalised(new).splitlines()
    rows: list[DiffRow] = []
    for group in difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(context):
        if rows:
            rows.append(DiffRow("gap", None, None, "…"))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                rows += [DiffRow("same", i1 + k + 1, j1 + k + 1, a[i1 + k]) for k in range(i2 - i1)]
                continue
            rows += [DiffRow("removed", i + 1, None, a[i]) for i in range(i1, i2)]
            rows += [DiffRow("added", None, j + 1, b[j]) for j in range(j1, j2)]
    return rows


def problem_json(problems: Iterable[Problem]) -> list[dict[str, Any]]:
    return [{"file": p.file, "line": p.line, "col": p.col, "path": p.path, "message": p.message, "hint": p.hint,
             "text": str(p)} for p in problems]
