"""A case's data as a person may see it: the fields its workflow declares, sensitive values masked for those
``engine.access.Access.may_see_sensitive`` says may not see them.

The case page (``templates/case.html``, through the ``show_value`` filter), the list page (which masks always)
and the API all mask with :func:`engine.forms.mask`; the API takes its data from :func:`shown_data`, so it
shows what the pages show to the same person.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import forms
from .spec import FieldSpec

if TYPE_CHECKING:
    from .cases import Case
    from .runtime import Engine
    from .users import User


def shown_value(f: FieldSpec, value: Any, masked: bool) -> Any:
    """``value`` of field ``f``, its sensitive parts masked when ``masked`` (rows of a repeat one by one)."""
    if f.is_repeat and isinstance(value, list):
        return [{sub.id: shown_value(sub, row.get(sub.id), masked) for sub in f.fields if sub.id in row}
                if isinstance(row, dict) else row for row in value]
    if masked and f.sensitive and value not in (None, ""):
        return forms.mask(value)
    return value


def shown_data(engine: "Engine", case: "Case", user: "User", always_mask: bool = False) -> dict[str, Any]:
    """The declared fields of ``case`` present in its data, as the case page shows them to ``user``
    (``always_mask``: as a list page shows them, sensitive values masked for everyone)."""
    wf = engine.spec_of(case)
    if wf is None:
        return {}
    masked = always_mask or not engine.may_see_sensitive(case, user)
    return {f.id: shown_value(f, case.data[f.id], masked) for _form, f in engine.data_fields(wf) if f.id in case.data}


def shown_names(engine: "Engine", case: "Case", data: dict[str, Any]) -> dict[str, str]:
    """The display name of each person the user fields of ``data`` (as :func:`shown_data` gave it) name:
    ``{username: name}``, so an API client shows names where the data holds usernames."""
    wf = engine.spec_of(case)
    if wf is None:
        return {}
    people = engine.people()
    found: dict[str, str] = {}
    for _form, f in engine.data_fields(wf):
        if f.kind.holds_user and f.id in data:
            for username in f.kind.usernames(data[f.id]):
                name = people(username)
                if name is not None:
                    found[username] = name
    return found
