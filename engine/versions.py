"""Versions of workflows that running cases keep: every version of a workflow and its forms that started a
case is kept in the store as text, and a case runs on the version it started with until it is migrated.

A kept version is one document of the ``definitions`` table::

    {workflow, version, digest, files: [{file, kind, text}], loaded_at}

``digest`` is the sha256 of the normalised texts (line ends, trailing blanks), so the same texts are kept
once however often they start a case. A version is the pair (workflow id, ``version:``); the texts of the
current files are that version while ``version:`` is theirs; once ``version:`` is bumped, cases of the old
number resolve to the newest kept texts of that number, parsed once per digest (virtual file names such as
``workflows/leave.yaml@v1`` keep problems at file:line). Roles, org units and choice lists are shared by
every version: they are not versioned.

Changing states, transitions or fields without bumping ``version:`` is a lint error (:func:`lint`), checked
against the versions kept in the live store. The engine core: no Flask, no TinyDB.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from .errors import DefinitionError, Problem
from .spec import Definitions, WorkflowSpec
from .store.base import Doc, Index, Store, Transaction

if TYPE_CHECKING:
    from .actions import ActionRegistry

DEFINITIONS = "definitions"
VERSION_INDEX = "definition_versions"
#: saves from the definition editor (``engine.definition_edit``); the newest one's number is the generation
SAVES = "definition_saves"
SAVES_INDEX = "definition_saves_by_file"


def normalised(text: str) -> str:
    """What a version's digest is taken over: the text without CR line ends, trailing blanks or blank end lines."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(lines).strip("\n") + "\n"


def digest_of(files: Iterable[Mapping[str, str]]) -> str:
    hasher = hashlib.sha256()
    for item in sorted(files, key=lambda f: (f["kind"] != "workflow", f["file"])):
        hasher.update(f"{item['kind']}:{item['file']}\n{normalised(item['text'])}\0".encode())
    return hasher.hexdigest()


def files_of(definitions: Definitions, wf: WorkflowSpec) -> list[dict[str, str]] | None:
    """The texts version ``wf`` is made of: its workflow file and the files of the forms it uses (None: the
    definitions were not loaded from files, nothing can be kept)."""
    sources = definitions.sources
    if wf.file not in sources:
        return None
    files = [{"file": wf.file, "kind": "workflow", "text": sources[wf.file]}]
    for form_id in wf.form_ids():
        form = definitions.forms.get(form_id)
        if form is None or form.file not in sources:
            return None
        files.append({"file": form.file, "kind": "form", "text": sources[form.file]})
    return files


def index() -> Index:
    return Index(VERSION_INDEX, DEFINITIONS, keys=lambda d: [("digest", d["digest"]),
                                                             ("workflow", d["workflow"], d["version"])],
                 order=lambda d: (d.get("loaded_at") or "", d["id"]), version="1")


def saves_index() -> Index:
    """The editor's saves, newest first: all of them (the generation) and per file (its history)."""
    return Index(SAVES_INDEX, SAVES, keys=lambda d: [("all",), ("file", d["file"])],
                 order=lambda d: d.get("generation", 0), version="1")


def generation(store: Store) -> int:
    """How many definition saves the instance has seen (one indexed read): a process whose definitions were
    loaded at an older generation loads them again (``engine.web.reload``)."""
    return newest_generation(store)


def newest_generation(reader: Store | Transaction) -> int:
    found = reader.lookup(SAVES_INDEX, [("all",)], limit=1).docs  # highest generation first
    return int(found[0]["generation"]) if found else 0


#: kept versions parsed, per (digest, Versions.base_key): (spec, None) or (None, why its texts no longer load)
_PARSED: dict[tuple[str, str], tuple[WorkflowSpec | None, list[Problem]]] = {}


class Versions:
    """The kept versions of every workflow (read from the store when the engine starts) and the specs of
    the old ones, parsed once per digest. ``current``: the digest of each workflow's current files."""

    def __init__(self, definitions: Definitions, store: Store, actions: "ActionRegistry",
                 now: Callable[[], str]):
        self.definitions = definitions
        self.store = store
        self.actions = actions
        self.now = now
        self.files: dict[str, list[dict[str, str]]] = {}
        self.current: dict[str, str] = {}
        for wid, wf in definitions.workflows.items():
            files = files_of(definitions, wf)
            if files is not None:
                self.files[wid], self.current[wid] = files, digest_of(files)
        self._specs: dict[str, WorkflowSpec | None] = {}
        self._base_key: str | None = None
        self.broken: dict[str, list[Problem]] = {}  # digest -> why its texts no longer load
        self.refresh()

    def refresh(self) -> None:
        """Read the kept versions again (the newest texts of each (workflow, version) number win)."""
        self.docs: dict[tuple[str, int], Doc] = {}
        self.all_docs = sorted(self.store.search(DEFINITIONS), key=lambda d: (d.get("loaded_at") or "", d["id"]))
        for doc in self.all_docs:
            self.docs[(doc["workflow"], doc["version"])] = doc
        self.numbers: dict[str, list[int]] = {}
        for wid, number in sorted(self.docs):
            self.numbers.setdefault(wid, []).append(number)

    # -- resolving ---------------------------------------------------------------------------
    def spec(self, workflow_id: str, version: int) -> WorkflowSpec | None:
        """Version ``version`` of a workflow: the current spec if it is the current number, else the kept
        texts parsed (None: never kept, or its texts no longer load: see :attr:`broken`)."""
        wf = self.definitions.workflows.get(workflow_id)
        if wf is not None and wf.version == version:
            return wf
        doc = self.docs.get((workflow_id, version))
        return None if doc is None else self.parse(doc)

    def resolve(self, workflow_id: str, version: Any) -> WorkflowSpec | None:
        """The spec a case of (workflow, version) runs on. A version never kept (a case from before versions
        were kept) or whose texts no longer load (``civicflow lint`` says why) runs on the current files."""
        wf = self.definitions.workflows.get(workflow_id)
        if wf is None or wf.version == version:
            return wf
        return self.spec(workflow_id, version) or wf

    def parse(self, doc: Doc) -> WorkflowSpec | None:
        digest = doc["digest"]
        if digest not in self._specs:
            key = (digest_of(doc["files"]), self.base_key)  # the texts as stored, whatever the doc says
            if key not in _PARSED:
                if len(_PARSED) >= 2048:
                    _PARSED.clear()
                _PARSED[key] = self._load(doc)
            spec, problems = _PARSED[key]
            if spec is None:
                self.broken[digest] = problems
            self._specs[digest] = spec
        return self._specs[digest]

    def _load(self, doc: Doc) -> tuple[WorkflowSpec | None, list[Problem]]:
        from .loader import load_workflow_text  # the loader imports the mechanics: only when needed

        tag = f"@v{doc['version']}"
        workflow = next(f for f in doc["files"] if f["kind"] == "workflow")
        forms = [(f["file"] + tag, f["text"]) for f in doc["files"] if f["kind"] == "form"]
        try:
            wf = load_workflow_text((workflow["file"] + tag, workflow["text"]), forms, self.definitions, self.actions)
        except DefinitionError as exc:
            return None, exc.problems
        return replace(wf, digest=doc["digest"]), []

    @property
    def base_key(self) -> str:
        """What loading a kept version depends on besides its own texts: the roles, the choice lists, the
        actions, the states of every workflow and the fields of every form (references across workflows are
        checked against them). Kept versions parsed against the same are shared (``_PARSED``), so the
        definition editor, which checks a draft against every kept version as the admin types, and a
        reload after a save, parse each kept text once."""
        if self._base_key is None:
            d = self.definitions
            parts = [repr(sorted(d.roles)), repr(sorted(d.choice_lists.items())), repr(sorted(self.actions.names())),
                     str(id(self.actions))]
            parts += [f"{wid}:{sorted(wf.states)}:{wf.start_form}" for wid, wf in sorted(d.workflows.items())]
            parts += [f"{fid}:{[(p, f.type, f.required) for p, f in form.walk()]}" for fid, form in sorted(d.forms.items())]
            self._base_key = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        return self._base_key

    def kept_numbers(self, workflow_id: str) -> list[int]:
        return self.numbers.get(workflow_id, [])

    def specs(self, workflow_id: str) -> list[WorkflowSpec]:
        """The current version of a workflow, then every kept older one that loads (oldest first)."""
        wf = self.definitions.workflows.get(workflow_id)
        found = [wf] if wf is not None else []
        for number in self.kept_numbers(workflow_id):
            if wf is None or number != wf.version:
                old = self.spec(workflow_id, number)
                if old is not None:
                    found.append(old)
        return found

    def summary(self, workflow_id: str, running: Mapping[int, int]) -> list[tuple[int, str, int]]:
        """``(version, digest, running cases)`` per version number in ``running`` (see ``Engine.versions``)."""
        current = self.definitions.workflows.get(workflow_id)
        result = []
        for number, count in sorted(running.items()):
            if current is not None and number == current.version:
                digest = self.current.get(workflow_id, "")
            else:
                doc = self.docs.get((workflow_id, number))
                digest = doc["digest"] if doc else ""
            result.append((number, digest, count))
        return result

    def fingerprint(self) -> str:
        """Which texts old versions resolve to (part of the read model's index version)."""
        return ",".join(sorted(f"{wid}@{v}={d['digest'][:12]}" for (wid, v), d in self.docs.items()))

    # -- keeping -----------------------------------------------------------------------------
    def keep(self, tx: Transaction, wf: WorkflowSpec) -> None:
        """Keep the texts of ``wf`` (a current version) in the transaction that starts a case on it."""
        digest = self.current.get(wf.id)
        if digest is None or wf is not self.definitions.workflows.get(wf.id):
            return
        if tx.first(VERSION_INDEX, ("digest", digest)) is None:
            tx.insert(DEFINITIONS, {"workflow": wf.id, "version": wf.version, "digest": digest,
                                    "files": self.files[wf.id], "loaded_at": self.now()})

    def keep_current(self) -> int:
        """Keep every current version not kept yet (at app start); how many were written."""
        written = 0
        with self.store.transaction() as tx:
            for wid, digest in self.current.items():
                if tx.first(VERSION_INDEX, ("digest", digest)) is None:
                    self.keep(tx, self.definitions.workflows[wid])
                    written += 1
        self.refresh()
        return written
