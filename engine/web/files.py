"""Uploads for file and photo fields: size- and type-limited, type read from the bytes, served only to those allowed."""
from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any, Iterator

from flask import Blueprint, abort, current_app, g, request, send_file

from .. import forms, readmodel
from ..clock import iso
from ..spec import FieldSpec, FormSpec
from ..users import User
from . import get_engine
from .auth import login_required

bp = Blueprint("files", __name__)
UPLOADS = readmodel.UPLOADS

_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"GIF87a", "image/gif", ".gif"),
    (b"GIF89a", "image/gif", ".gif"),
    (b"%PDF-", "application/pdf", ".pdf"),
)


def sniff(head: bytes) -> tuple[str, str]:
    """The content type from the first bytes; the browser's claim is not trusted."""
    for magic, ctype, ext in _MAGIC:
        if head.startswith(magic):
            return ctype, ext
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", ".webp"
    return "application/octet-stream", ".bin"


def upload_inputs(form: FormSpec) -> Iterator[tuple[FieldSpec, str, str]]:
    """Each file input of the posted form: ``(its field, input name, error path)``, for upload fields and for
    the upload columns of every posted repeat row (``items-0-receipt`` / ``items.0.receipt``)."""
    posted = [*request.form, *request.files]
    for f in form.fields:
        if f.kind.holds_files:
            yield f, f.id, f.id
        elif f.is_repeat and any(sub.kind.holds_files for sub in f.fields):
            rows = sorted({int(m.group(1)) for k in posted if (m := re.fullmatch(re.escape(f.id) + r"-(\d+)-.+", k))})
            for i in rows[: f.max_rows]:  # a row past max_rows is refused by validation; its file is not saved
                for sub in f.fields:
                    if sub.kind.holds_files:
                        yield sub, f"{f.id}-{i}-{sub.id}", f"{f.id}.{i}.{sub.id}"


def collect_uploads(form: FormSpec, user: User) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    """Save the uploaded files of ``form`` that fit their field (or repeat column); the rest become field errors.

    Returns ``{input name: file_ref}`` (also for files kept from an earlier attempt) and errors by field path.
    """
    engine = get_engine()
    refs: dict[str, Any] = {}
    errors: dict[str, list[dict[str, str]]] = {}
    for f, name, path in upload_inputs(form):
        upload = request.files.get(name)
        if upload is None or not upload.filename:
            ref = _kept(name, user)
            if ref is not None:
                refs[name] = ref
            continue
        data = upload.stream.read((f.max_size or 0) + 1 if f.max_size else -1)
        ctype, ext = sniff(data[:16])
        if f.max_size and len(data) > f.max_size:
            errors[path] = [forms.message("file_size", limit=forms.human_size(f.max_size))]
            continue
        if f.accept and ctype not in f.accept:
            errors[path] = [forms.message("file_type", limit=", ".join(a.split("/")[-1] for a in f.accept))]
            continue
        key = secrets.token_urlsafe(16) + ext
        folder = Path(current_app.config["UPLOADS"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(data)
        ref = {"name": Path(upload.filename).name[:200], "key": key, "size": len(data), "content_type": ctype}
        with engine.store.transaction() as tx:
            tx.insert(UPLOADS, {**ref, "by": user.username, "at": iso(engine.clock())})
        refs[name] = ref
    return refs, errors


def kept_uploads(form: FormSpec, user: User) -> dict[str, Any]:
    """The files uploaded earlier and sent back as ``<input name>__keep`` (no new upload is read or saved)."""
    refs = {}
    for _f, name, _path in upload_inputs(form):
        if (ref := _kept(name, user)) is not None:
            refs[name] = ref
    return refs


def _kept(field_id: str, user: User) -> dict[str, Any] | None:
    kept = request.form.get(field_id + "__keep")
    if not kept:
        return None
    doc = get_engine().read.upload(kept)
    if doc and (doc["by"] == user.username or _visible_in_case(kept, user)):
        return {k: doc[k] for k in ("name", "key", "size", "content_type")}
    return None


def _visible_in_case(key: str, user: User) -> bool:
    """Whether a case the user may see holds the file (found through the read model's file index), and, if it
    holds it in a sensitive field, the user may see that case's sensitive values."""
    engine = get_engine()
    return any(engine.may_see_file(case, user, key) for case in engine.read.mentioning(key))


@bp.route("/files/<key>")
@login_required
def download(key: str) -> Any:
    doc = get_engine().read.upload(key)
    if not doc or not (doc["by"] == g.user.username or _visible_in_case(key, g.user)):
        abort(404)
    path = Path(current_app.config["UPLOADS"]) / doc["key"]
    if not path.is_file():
        abort(404)
    inline = doc["content_type"].startswith("image/")
    return send_file(path, mimetype=doc["content_type"], as_attachment=not inline,
                     download_name=doc["name"], max_age=0)
