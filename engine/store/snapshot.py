"""How the file store reads its snapshot lazily and writes it back: the sidecar that maps every document's
bytes and every index's entries, parsing documents on first access, restoring saved index entries, and
compaction that copies unparsed documents' bytes. A mixin of ``TinyDBStore`` (see its module docstring)."""
from __future__ import annotations

import json
import mmap
import os
import time
import uuid
from collections.abc import Callable
from typing import Any
from engine.store.base import Doc, Index, Tally
from engine.store.memory import META_TABLE, CorruptStoreError, StoreError
from engine.store.fileformat import (
    FORMAT, Snapshot, _Output, _fsync_dir, _section_of, _write_all, decode_sidecar, dumps_doc, encode_sidecar, export_index, loads_doc, log, restore_index,
)


class SnapshotFiles:
    """The snapshot side of ``TinyDBStore``: reading through the sidecar, lazy documents, compaction."""

    def _read_through_sidecar(self, fd: int, size: int) -> Snapshot | None:
        """The snapshot as handles, if the sidecar belongs to it; None (after saying why) if not."""
        try:
            with open(self.offsets_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            log.info("%s: no sidecar %s: reading the whole snapshot", self.path, self.offsets_path)
            return None
        except OSError as exc:
            log.warning("%s: cannot read %s (%s): reading the whole snapshot", self.path, self.offsets_path, exc)
            return None
        body = decode_sidecar(raw)
        if body is None:
            log.warning("%s: %s is damaged or of another format: ignored, reading the whole snapshot",
                        self.path, self.offsets_path)
            return None
        mapped = None
        try:
            about = body["snapshot"]
            if about["size"] != size:
                raise ValueError(f"it describes a snapshot of {about['size']} bytes, not {size}")
            mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            start, length = about["meta"]
            meta = json.loads(mapped[start:start + length])
            if not isinstance(meta, dict) or meta.get("token") != about["token"] or meta.get("seq") != about["seq"]:
                raise ValueError("it belongs to another snapshot")
            seq = int(meta["seq"])
            last_ids = {str(k): int(v) for k, v in meta.get("last_ids", {}).items()}
            tables = {str(name): dict(zip(keys, zip(offsets, lengths)))
                      for name, (keys, offsets, lengths) in body["tables"].items()}
            sections = body.get("indexes", {})
            if not isinstance(sections, dict):
                raise ValueError("its index sections are not an object")
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            if mapped is not None:
                mapped.close()
            log.warning("%s: %s does not match the snapshot (%s): ignored, reading the whole snapshot",
                        self.path, self.offsets_path, exc)
            return None
        return Snapshot(tables, seq, last_ids, size, mapped, sections)

    # -- documents and indexes from the snapshot ----------------------------------------

    def _resolve(self, table: str, key: str, handle: Any) -> Doc:
        cached = self._cache.get((table, key))
        if cached is not None:
            self._cache.move_to_end((table, key))
            return cached
        if self._mapped is None:
            raise StoreError(f"{self.path}: {table}/{key} is not loaded (the store is closed or failed to reload)")
        start, length = handle
        try:
            doc = loads_doc(self._mapped[start:start + length])
        except ValueError:
            doc = None
        if type(doc) is not dict or doc.get("id") != int(key):
            raise CorruptStoreError(
                f"{self.path}: document {table}/{key} is not at byte {start} where {self.offsets_path} "
                f"says it is; that sidecar does not belong to this snapshot. Delete {self.offsets_path} "
                f"(the next compaction writes it again) and reopen; nothing was modified.")
        self._remember(table, key, doc)
        return doc

    def _remember(self, table: str, key: str, doc: Doc) -> None:
        if self.cache_docs is None or self.cache_docs > 0:
            self._cache[(table, key)] = doc
            if self.cache_docs is not None and len(self._cache) > self.cache_docs:
                self._cache.popitem(last=False)

    def _build_index(self, spec: Index | Tally) -> None:
        section = self._sections.pop(spec.name, None)
        if section is not None:
            if section.get("kind") != _section_of(spec)["kind"] or section.get("table") != spec.table \
                    or section.get("version") != spec.version:
                log.info("%s: index %r changed (version %r, saved %r): computing it from the documents",
                         self.path, spec.name, spec.version, section.get("version"))
            else:
                try:
                    redo = {int(doc_id) for doc_id in section["stale"]}
                    restore_index(spec, section, self._indexes)
                except (ValueError, TypeError, KeyError, IndexError) as exc:
                    log.warning("%s: saved entries of index %r in %s are malformed (%r): computing it",
                                self.path, spec.name, self.offsets_path, exc)
                else:
                    redo.update(int(key) for table, key in self._dirty if table == spec.table)
                    for doc_id in sorted(redo):
                        self._indexes.update_one(spec, doc_id, self._doc(spec.table, str(doc_id)))
                    return
        table = self._tables.get(spec.table, {})
        if self._mapped is not None and len(table) >= 1000:
            start = time.perf_counter()
            super()._build_index(spec)
            log.warning("%s: index %r computed from %d documents in %.1f s (no saved entries for version %r; "
                        "the next commit compacts, which saves them)", self.path, spec.name, len(table),
                        time.perf_counter() - start, spec.version)
            self._sidecar_wanted = True  # so the next open does not pay this again
            return
        super()._build_index(spec)


    def _compact(self) -> None:
        """Write a snapshot of everything applied, its sidecar, then an empty journal (exclusive lock held).

        Documents still unparsed are copied as bytes from the old snapshot; only those written since
        (parsed dicts) are serialised. Afterwards every document is a handle into the new snapshot.
        """
        token = uuid.uuid4().hex
        meta = dumps_doc({"format": FORMAT, "seq": self._seq, "last_ids": self._last_ids, "token": token})
        layout: dict[str, list[list[Any]]] = {}
        where: dict[str, int] = {}
        old = self._mapped

        def write_snapshot(out: _Output) -> None:
            out.write(b"{")
            for n, name in enumerate(list(self._tables)):
                out.write(b'%s%s:{' % (b"," if n else b"", json.dumps(name).encode()))
                keys: list[str] = []
                offsets: list[int] = []
                lengths: list[int] = []
                for i, (key, value) in enumerate(self._committed(name).items()):
                    if type(value) is dict:
                        data = dumps_doc(value)
                    else:
                        assert old is not None
                        start, length = value
                        data = old[start:start + length]
                    out.write(b'%s"%s":' % (b"," if i else b"", key.encode()))
                    keys.append(key)
                    offsets.append(out.pos)
                    lengths.append(len(data))
                    out.write(data)
                out.write(b"}")
                layout[name] = [keys, offsets, lengths]
            out.write(b'%s"%s":{"1":' % (b"," if layout else b"", META_TABLE.encode()))
            where["meta"] = out.pos
            out.write(meta)
            out.write(b"}}")
            where["size"] = out.pos

        sections: dict[str, Any] = {}
        for name, spec in self._indexes.specs.items():
            section = export_index(spec, self._indexes)
            if section is None:
                log.info("%s: index %r has keys or orders that are not plain JSON: not saved", self.path, name)
            else:
                sections[name] = section
        carried = {}
        for name, section in self._sections.items():  # saved by another process, not declared here
            if name not in sections:
                stale = set(section.get("stale", ()))
                stale.update(int(key) for table, key in self._dirty if table == section.get("table"))
                carried[name] = sections[name] = {**section, "stale": sorted(stale)}

        self._remove_stale_temp_files()
        self._replace_file(self.path, write_snapshot)
        # A crash from here until the sidecar is replaced leaves a sidecar naming the old snapshot's
        # token: the next open notices and reads the whole snapshot.
        body = {"snapshot": {"size": where["size"], "seq": self._seq, "token": token,
                             "meta": [where["meta"], len(meta)]},
                "tables": layout, "indexes": sections}
        self._replace_file(self.offsets_path, encode_sidecar(body))
        # A crash here leaves the old journal: replay skips what the snapshot holds.
        self._replace_file(self.journal_path, b"")
        fd = os.open(self.journal_path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        st = os.fstat(fd)
        if self._journal_fd is not None:
            os.close(self._journal_fd)
        self._journal_fd, self._journal_id, self._offset = fd, (st.st_dev, st.st_ino), 0
        self._snapshot_size = where["size"]
        self._sidecar_wanted = False
        self._sections = carried
        self._dirty.clear()
        self._point_into_new_snapshot(layout)

    def _point_into_new_snapshot(self, layout: dict[str, list[list[Any]]]) -> None:
        """Swap every document for a handle into the snapshot just written, so parsed ones can be freed."""
        try:
            with open(self.path, "rb") as f:
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            # The old handles and documents are still right, only not freed.
            log.warning("%s: cannot map the new snapshot; keeping the old one", self.path, exc_info=True)
            return
        tables = self._tables
        for name, (keys, offsets, lengths) in layout.items():
            for key, value in tables[name].items():
                if type(value) is dict:  # written lately: likely read again soon
                    self._remember(name, key, value)
            tables[name] = dict(zip(keys, zip(offsets, lengths)))
        if self._mapped is not None:
            self._mapped.close()
        self._mapped = mapped

    def _temp_prefix(self) -> str:
        return f".{os.path.basename(self.path)}.compact-"

    def _replace_file(self, path: str, data: bytes | Callable[[_Output], None]) -> None:
        """Write ``data`` (bytes, or a function writing to an ``_Output``) to a temp file, fsync, rename."""
        tmp = os.path.join(self._dir, f"{self._temp_prefix()}{os.getpid()}.tmp")
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            try:
                if isinstance(data, bytes):
                    _write_all(fd, data)
                else:
                    out = _Output(fd)
                    data(out)
                    out.flush()
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_dir(self._dir)

    def _remove_stale_temp_files(self) -> None:
        """Temp files left by a compaction that crashed (only one compacts at a time)."""
        prefix = self._temp_prefix()
        for name in os.listdir(self._dir):
            if name.startswith(prefix) and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(self._dir, name))
                except OSError:
                    pass
