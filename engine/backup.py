"""Backups and restores, for any store (memory, TinyDB file, PostgreSQL): through the ``Store`` interface, by
way of :mod:`engine.transfer`.

A backup is a directory (not a tarball: it can be checked, listed and restored without unpacking, and
``tar czf`` makes one of it when it has to travel)::

    DEST/civicflow.json   every table, as a TinyDB store file (``TinyDBStore(path)`` or plain TinyDB reads it)
    DEST/civicflow.json.offsets  its sidecar: where each document's bytes are, so it is opened without parsing
    DEST/uploads/...      the uploaded files (file and photo fields)
    DEST/manifest.json    counts per table, both ledger chain heads, when, which Civicflow, a sha256 of
                          every file and a checksum of the manifest itself

Why not just copy ``instance/civicflow.json``: the TinyDB store is a snapshot *plus* an append-only journal
(``civicflow.json.journal``, see :mod:`engine.store.tinydb_store`). A commit is durable once its journal
line is fsynced; it reaches the ``.json`` only at the next compaction, which happens when the journal
outgrows 1/16 of the snapshot. So the ``.json`` alone silently misses every write since the last
compaction, and copying the two files one after the other while the app serves can catch a compaction
between them (an old journal with a new snapshot, or the reverse). Instead the backup reads every table
from one committed state (``Store.reading``) and writes each document into the backup's file as it comes
(``fileformat.write_store_file``): the TinyDB store reads inside ONE ``store.transaction()``, exclusive
across threads and processes, so no write lands half-way, and holds the lock only while reading; PostgreSQL
streams from one REPEATABLE READ snapshot, taking no lock and holding a few hundred documents at a time, so a
backup of a large database never holds the database in memory. The check after writing opens the file
through its sidecar and parses only the ledgers.

A restore is likewise ONE transaction on the target (:func:`engine.transfer.write_all`: ids kept, documents
the backup does not have deleted, atomic on every store, the id counter continuing after the highest id),
and nothing is replaced before the backup has been checked whole: manifest checksum, every file's size and
sha256, the counts per table and both hash-chained ledgers (:func:`engine.ledger.verify`).

Why a transaction and not a rename of the backup's file over the store's: a TinyDB store is several files
(snapshot, journal, sidecar) and a rename swaps one, so a crash between two renames leaves a mix, and a
process that still has the old snapshot mapped would not notice; a transaction is atomic, every process
that has the store open catches up with it like with any other write, and it works the same on PostgreSQL.
The app should still be stopped (people's sessions and open forms refer to the data being replaced): for a
TinyDB store :func:`restore` refuses when another process has its files open.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from . import ledger
from .store.base import Store
from .store.fileformat import SIDECAR_SUFFIX, write_store_file
from .transfer import Dump, TransferError, chain_heads, check_store, describe, read_all, store_counts, write_all

FORMAT = "civicflow-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STORE_FILE = "civicflow.json"
#: The store file's sidecar (where each document's bytes are), so checking or restoring reads it lazily.
SIDECAR = STORE_FILE + SIDECAR_SUFFIX
UPLOADS_DIR = "uploads"


class BackupError(TransferError):
    """A backup cannot be made, or a backup is refused (damaged, not a backup); the message says what to do."""


def civicflow_version() -> str:
    try:
        return metadata.version("civicflow")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


# -- files ---------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files_under(folder: Path) -> Iterator[Path]:
    """Regular files below ``folder`` (symlinks are not followed: an upload is never one)."""
    if not folder.is_dir():
        return
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                yield path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def manifest_checksum(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in manifest.items() if k != "checksum"})).hexdigest()


@dataclass
class Manifest:
    """What a backup holds, read back from ``manifest.json`` (already checked against its checksum)."""

    created_at: str
    civicflow: str
    counts: dict[str, int]
    chains: dict[str, dict[str, Any]]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def uploads(self) -> list[str]:
        return [name for name in self.files if name.startswith(UPLOADS_DIR + "/")]

    def summary(self) -> str:
        docs = sum(self.counts.values())
        return (f"{docs} documents in {len(self.counts)} tables, {len(self.uploads)} uploaded files, "
                f"ledger to entry {self.chains[ledger.LEDGER]['seq']}, publications to entry "
                f"{self.chains[ledger.PUBLICATIONS]['seq']}; made {self.created_at} by Civicflow {self.civicflow}")


def _file_entry(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def _os_error(action: str, exc: OSError) -> BackupError:
    where = f" ({exc.filename})" if exc.filename else ""
    return BackupError(f"cannot {action}: {exc.strerror or exc}{where}")


# -- making a backup ---------------------------------------------------------------------------


def backup(store: Store, dest: str | os.PathLike[str], uploads: str | os.PathLike[str] | None = None,
           now: dt.datetime | None = None) -> Manifest:
    """Write a backup of ``store`` (and the files under ``uploads``) to the new directory ``dest``.

    It is built under a temporary name beside ``dest``, checked exactly as a restore would check it, and only
    then renamed to ``dest``: a directory called ``dest`` is always a whole, checked backup, never half of one.
    """
    target = Path(dest).absolute()
    if target.name.endswith((".tar.gz", ".tgz", ".tar", ".zip")):
        raise BackupError(f"{target.name}: a backup is a directory, not an archive; name a directory "
                          f"(and `tar czf` it afterwards if it has to travel)")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} exists already; a backup never overwrites anything: name a new directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    except OSError as exc:
        raise _os_error(f"make the backup {target}", exc) from exc
    try:
        with store.reading() as tables:  # one committed state, streamed into the file as it is read
            found, kept = write_store_file(str(work / STORE_FILE), tables, keep=(ledger.HEADS,))
        _write_backup(work, found, chain_heads(kept), Path(uploads) if uploads else None,
                      now or dt.datetime.now(dt.timezone.utc))
        manifest = check_backup(work, contents=False)[0]
        if target.exists():
            target.rmdir()
        os.rename(work, target)
        _fsync(target.parent)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise _os_error(f"write the backup {target}", exc) from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def _write_backup(work: Path, found: dict[str, int], chains: dict[str, Any], uploads: Path | None,
                  now: dt.datetime) -> None:
    """The uploads and the manifest beside the store file (and its sidecar) already written."""
    files = {name: _file_entry(work / name) for name in (STORE_FILE, SIDECAR) if (work / name).exists()}
    if uploads is not None:
        for path in _files_under(uploads):
            name = f"{UPLOADS_DIR}/{path.relative_to(uploads).as_posix()}"
            copy = work / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
            _fsync(copy)
            files[name] = _file_entry(copy)
    manifest: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "civicflow": civicflow_version(),
        "created_at": now.isoformat(timespec="seconds"), "counts": found, "chains": chains,
        "files": files,
    }
    manifest["checksum"] = manifest_checksum(manifest)
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    _fsync(work / MANIFEST)


# -- checking and restoring --------------------------------------------------------------------


def read_manifest(src: Path) -> Manifest:
    """The manifest of the backup ``src``, refused unless it is one and unchanged since it was written."""
    if not src.exists():
        raise BackupError(f"{src} does not exist")
    if src.is_file() and src.name.endswith((".tar.gz", ".tgz", ".tar")):
        raise BackupError(f"{src} is an archive: unpack it (`tar xzf {src.name}`) and restore the directory it holds")
    if not src.is_dir() or not (src / MANIFEST).is_file():
        raise BackupError(f"{src} is not a Civicflow backup: a backup is a directory made by `civicflow backup`, "
                          f"holding {MANIFEST} and {STORE_FILE}")
    try:
        raw = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"{src / MANIFEST} is damaged (not valid JSON: {exc}); nothing was restored") from exc
    except OSError as exc:
        raise _os_error(f"read {src / MANIFEST}", exc) from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise BackupError(f"{src / MANIFEST} is not the manifest of a Civicflow backup")
    if raw.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"{src} is a backup in format {raw.get('format_version')!r}, this Civicflow "
                          f"({civicflow_version()}) reads format {FORMAT_VERSION}: restore it with a matching version")
    if raw.get("checksum") != manifest_checksum(raw):
        raise BackupError(f"{src / MANIFEST} was changed after the backup was made (its checksum does not match); "
                          f"nothing was restored")
    try:
        return Manifest(str(raw["created_at"]), str(raw["civicflow"]),
                        {str(k): int(v) for k, v in raw["counts"].items()},
                        {str(k): {"seq": int(v["seq"]), "hash": str(v["hash"])} for k, v in raw["chains"].items()},
                        {str(k): {"size": int(v["size"]), "sha256": str(v["sha256"])} for k, v in raw["files"].items()})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BackupError(f"{src / MANIFEST} is malformed ({exc!r}); nothing was restored") from exc


def check_backup(src: str | os.PathLike[str], contents: bool = True) -> tuple[Manifest, Dump]:
    """Check the backup ``src`` whole and return its manifest and contents (``contents`` False: an empty dump,
    so checking a backup just made never holds its documents: the store file is opened through its sidecar and
    only the ledgers are parsed); raise ``BackupError`` listing every problem found (a file missing, truncated
    or changed, a count or a ledger chain that disagrees)."""
    folder = Path(src).absolute()
    manifest = read_manifest(folder)
    problems = []
    if STORE_FILE not in manifest.files:
        problems.append(f"the manifest lists no {STORE_FILE}")
    for name, entry in manifest.files.items():
        path = folder / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            problems.append(f"{name}: not a path inside the backup")
        elif not path.is_file():
            problems.append(f"{name} is missing")
        elif (size := path.stat().st_size) != entry["size"]:
            problems.append(f"{name} is {size} bytes, {entry['size']} expected (truncated or changed)")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{name} was changed after the backup was made (its sha256 differs)")
    if not problems:
        dump, problems = _read_store_file(folder / STORE_FILE, manifest, contents)
    if problems:
        raise BackupError(f"{folder} is not a good backup; nothing was restored:\n  " + "\n  ".join(problems))
    return manifest, dump


def _read_store_file(path: Path, manifest: Manifest, contents: bool = True) -> tuple[Dump, list[str]]:
    """Open the backup's store file (a copy of it: opening a TinyDB store creates its lock and journal beside
    it, and a backup may sit on a read-only disk) and check it against the manifest."""
    from .store.memory import StoreError
    from .store.tinydb_store import TinyDBStore

    with tempfile.TemporaryDirectory(prefix="civicflow-check-") as tmp:
        copy = Path(tmp) / STORE_FILE
        shutil.copyfile(path, copy)
        if SIDECAR in manifest.files:  # checked with the other files: lets the copy open without parsing all
            shutil.copyfile(path.parent / SIDECAR, Path(tmp) / SIDECAR)
        if SIDECAR in manifest.files:  # checked above with the other files: lets the copy open lazily
            shutil.copyfile(path.parent / SIDECAR, Path(tmp) / SIDECAR)
        try:
            store = TinyDBStore(copy)
        except StoreError as exc:
            return {}, [f"{STORE_FILE} cannot be opened: {str(exc).replace(str(copy), STORE_FILE)}"]
        try:
            problems = check_store(store, manifest.counts, manifest.chains, "the backup")
            return (read_all(store) if contents else {}), problems
        finally:
            store.close()


def processes_using(store: Store) -> list[int]:
    """Other processes that have ``store``'s files open (a TinyDB store keeps its lock file and journal open
    for as long as it is open), found through ``/proc``; empty for stores without files, and it only sees
    processes this user may inspect (run it as the user the app runs as)."""
    names = {getattr(store, attr, None) for attr in ("lock_path", "journal_path")} - {None}
    found = []
    if not names or not os.path.isdir("/proc"):
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") in names for fd in fds):
                found.append(int(entry))
        except OSError:  # gone, or not ours to look at
            continue
    return sorted(found)


def restore(store: Store, src: str | os.PathLike[str], uploads: str | os.PathLike[str] | None = None, *,
            force: bool = False) -> Manifest:
    """Replace what ``store`` holds by the backup ``src``, after checking the backup whole.

    Uploaded files are put in place first (each written beside its final name and renamed), the store last, in
    one transaction: if anything fails on the way, the store still holds what it held, and at worst some
    files nobody refers to are left in the uploads directory.
    """
    manifest, dump = check_backup(src)
    users = processes_using(store)
    if users:
        raise BackupError(f"{describe(store)} is open in another process (pid {', '.join(map(str, users))}): stop the app "
                          f"(and any `civicflow` command) using it, then restore; nothing was changed")
    held = store_counts(store)
    if held and not force:
        what = ", ".join(f"{n} {table}" for table, n in sorted(held.items()))
        raise BackupError(f"{describe(store)} is not empty ({what}); nothing was changed. Use --force to replace what it "
                          f"holds by the backup")
    if manifest.uploads and uploads is not None:
        try:
            _restore_uploads(Path(src).absolute(), manifest, Path(uploads))
        except OSError as exc:
            raise _os_error(f"restore the uploaded files into {uploads}", exc) from exc
    write_all(store, dump, force=force, what=describe(store))
    problems = check_store(store, manifest.counts, manifest.chains, "the restored store")
    if problems:
        raise BackupError("the store was restored but does not match the backup:\n  " + "\n  ".join(problems))
    return manifest


def _restore_uploads(src: Path, manifest: Manifest, uploads: Path) -> None:
    for name in manifest.uploads:
        target = uploads / name[len(UPLOADS_DIR) + 1:]
        if target.is_file() and sha256_file(target) == manifest.files[name]["sha256"]:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.restore-{os.getpid()}")
        shutil.copyfile(src / name, temp)
        _fsync(temp)
        os.replace(temp, target)
    if manifest.uploads:
        _fsync(uploads)
