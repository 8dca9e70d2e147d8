"""Load-time building of forms: choice-list files, form files, their fields (checked per field type through
``engine.fieldtypes``), cross-field rules and computed-field cycles.

Functions taking the :class:`engine.loader.Loader` (its ``problems``, ``expression``...), called by it in order.
"""
from __future__ import annotations

import re
from collections import deque
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .expressions import BUILTINS
from .fieldtypes import FIELD_KINDS, check_keys
from .loadkit import GUARD_NAMES, did_you_mean, text
from .spec import Choice, FieldSpec, FormSpec, RuleSpec
from .yamlsource import PathItem, YamlSource

if TYPE_CHECKING:
    from .loader import Loader

_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024 * 1024}


def _choices(items: Sequence[Any]) -> tuple[Choice, ...]:
    result = []
    for item in items:
        if isinstance(item, dict):
            result.append(Choice(str(item["value"]), text(item["label"]) or {}, dict(item.get("data") or {})))
        else:
            result.append(Choice(str(item), {"zh": str(item), "en": str(item)}))
    return tuple(result)


def _data_kind(value: Any) -> str:
    return "true / false" if isinstance(value, bool) else "a number" if isinstance(value, (int, float)) else "text"


def check_choice_data(ld: "Loader", source: YamlSource, path: list[PathItem], items: Sequence[Any]) -> None:
    """Every choice of one list gives a data key the same kind of value: ``choice_sum`` over points that are
    sometimes text would be unknown for some picks only."""
    first: dict[str, tuple[str, str]] = {}  # key -> (kind, the choice that set it)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        for key, value in (item.get("data") or {}).items():
            kind = _data_kind(value)
            seen = first.setdefault(key, (kind, str(item["value"])))
            if seen[0] != kind:
                ld.problems.append(source.problem(
                    path + [i, "data", key], f"data {key!r} of choice {str(item['value'])!r} is {kind}, "
                    f"but {seen[0]} in choice {seen[1]!r}",
                    f"give {key} the same kind of value in every choice (a number, a text, or true / false)"))


def check_choice_refs(ld: "Loader", source: YamlSource, path: list[PathItem], expr: Any,
                      scope: Mapping[str, FieldSpec]) -> None:
    """The fields and keys ``choice(field, 'key')`` and ``choice_sum`` read: a choice field of ``scope`` (or one
    in a repeat's rows) whose choices carry the key. Unknown names are reported by the loader already."""
    for ref in getattr(expr, "choice_refs", ()):
        name, _, sub = ref.field.partition(".")
        target = scope.get(name)
        if target is None:
            continue  # an unknown name: said already
        if sub:
            if not target.kind.holds_rows:
                ld.problems.append(source.problem(path, f"{ref.helper}() reads {ref.field!r}, but {name!r} is a {target.type} "
                                                  "field, not a repeat", f"write {ref.helper}({name}, {ref.key!r})"))
                continue
            inner = {f.id: f for f in target.fields}
            if sub not in inner:
                ld.problems.append(source.problem(path, f"repeat {name!r} has no field {sub!r}",
                                                  did_you_mean(sub, inner) or f"its fields: {', '.join(inner)}"))
                continue
            target = inner[sub]
        if not target.kind.holds_choices:
            ld.problems.append(source.problem(path, f"{ref.helper}() reads what a choice carries, but {ref.field!r} is a "
                                              f"{target.type} field", "name a select or multiselect field"))
            continue
        if ref.helper == "choice_sum" and not sub and not target.kind.multiple:
            ld.problems.append(source.problem(path, f"choice_sum() adds up several picks, but {ref.field!r} is a {target.type} "
                                              "field with one", f"use choice({ref.field}, {ref.key!r})"))
        keys = sorted({k for c in target.choices for k in c.data})
        if not target.choices and ld.choices_broken:
            continue  # its list is in a choice-list file that is broken itself: said there
        if ref.key not in keys:
            ld.problems.append(source.problem(
                path, f"no choice of field {ref.field!r} carries {ref.key!r}",
                did_you_mean(ref.key, keys) or (f"its choices carry: {', '.join(keys)}" if keys else
                                                "give its choices data, e.g. {value: rice, label: 大米, data: {points: 100}}")))
        if ref.weight is not None:
            wname, _, wsub = ref.weight.partition(".")
            weight = {f.id: f for f in target_rows(scope, wname)}.get(wsub)
            if not sub or wname != name or weight is None or not weight.kind.numeric:
                ld.problems.append(source.problem(path, f"choice_sum() multiplies by {ref.weight!r}, which is not a number "
                                                  f"field of the rows of {name!r}",
                                                  f"e.g. choice_sum({name}.{sub or 'item'}, {ref.key!r}, {name}.quantity)"))


def target_rows(scope: Mapping[str, FieldSpec], name: str) -> tuple[FieldSpec, ...]:
    return scope[name].fields if name in scope else ()


def check_field_choice_refs(ld: "Loader", source: YamlSource, fields: Sequence[FieldSpec], paths: Sequence[list[PathItem]],
                            outer: Mapping[str, FieldSpec]) -> None:
    """:func:`check_choice_refs` for the expressions of ``fields`` (a row's read its own fields and the form's)."""
    scope = {**outer, **{f.id: f for f in fields}}
    for f, path in zip(fields, paths):
        for key in ("show_if", "compute", "required_if"):
            check_choice_refs(ld, source, path + [key], getattr(f, key), scope)
        if f.fields:
            check_field_choice_refs(ld, source, f.fields, [path + ["fields", i] for i in range(len(f.fields))], scope)


def parse_size(text: str) -> int:
    number, unit = re.fullmatch(r"([0-9.]+)\s*(B|KB|MB)", text).groups()  # type: ignore[union-attr]
    return int(float(number) * _SIZE_UNITS[unit])



def load_form_files(ld: "Loader") -> tuple[list[YamlSource], dict[str, tuple[Choice, ...]]]:
    form_sources, choice_lists = [], {}
    list_files: dict[str, str] = {}
    for path in sorted((ld.root / "forms").glob("*.yaml")):
        source, problems = ld.parse(path)
        if source is None:
            ld.problems += problems
            ld.note_unparsed(path)
            continue
        is_choices = isinstance(source.data, dict) and "choice_lists" in source.data
        source = ld.read(path, "choices" if is_choices else "form", parsed=source)
        if source is None:
            ld.choices_broken |= is_choices
            continue
        if is_choices:
            for name, items in source.data["choice_lists"].items():
                if name in choice_lists:
                    ld.problems.append(source.problem(["choice_lists", name], f"duplicate choice list {name!r}",
                                                        f"already defined in {list_files[name]}", key=True))
                choice_lists[name] = _choices(items)
                check_choice_data(ld, source, ["choice_lists", name], items)
                list_files.setdefault(name, source.file)
        else:
            form_sources.append(source)
    return form_sources, choice_lists


def build_form(ld: "Loader", source: YamlSource, choice_lists: dict[str, tuple[Choice, ...]]) -> FormSpec:
    doc = source.data
    fields = build_fields(ld, source, doc["fields"], ["fields"], choice_lists, outer=())
    check_layout(ld, source, doc["fields"])
    names = {f.id for f in fields if f.kind.holds_value}
    rules = []
    for i, rule in enumerate(doc.get("rules", [])):
        check = ld.expression(source, ["rules", i, "check"], rule["check"], names, "a form rule")
        if "field" in rule and rule["field"] not in names:
            ld.problems.append(source.problem(["rules", i, "field"], f"unknown field {rule['field']!r}",
                                                did_you_mean(rule["field"], names) or "name a field of this form"))
        if check is not None:
            check_choice_refs(ld, source, ["rules", i, "check"], check, {f.id: f for f in fields})
            rules.append(RuleSpec(check, text(rule["message"]) or {}, rule.get("field")))
    return FormSpec(doc["id"], doc["version"], text(doc["title"]) or {}, fields, source.file, tuple(rules),
                    description=text(doc.get("description")))


def build_fields(ld: "Loader", source: YamlSource, items: list[dict], path: list[PathItem],
                 choice_lists: dict[str, tuple[Choice, ...]], outer: Sequence[str]) -> tuple[FieldSpec, ...]:
    seen: set[str] = set()
    paths: list[list[PathItem]] = []  # where each built field is in the YAML (duplicates are skipped)
    # the names expressions may read: fields holding a value (a note has none), and the row's outer form
    visible_names = {item["id"] for item in items if FIELD_KINDS[item["type"]].holds_value} | set(outer)
    fields = []
    for i, item in enumerate(items):
        here = path + [i]
        fid = item["id"]
        if fid in seen:
            ld.problems.append(source.problem(here + ["id"], f"duplicate field id {fid!r}",
                                                "each field id may appear once per form"))
            continue
        seen.add(fid)
        if outer and FIELD_KINDS[item["type"]].holds_user:  # people are checked against the store per form field
            ld.problems.append(source.problem(here + ["type"], "a user field cannot be a column of a repeat",
                                              "put it in the form itself (multiple: true names several people)"))
        if fid in BUILTINS or fid in GUARD_NAMES:
            ld.problems.append(source.problem(here + ["id"], f"field id {fid!r} hides the name of a built-in",
                                                f"rename it, e.g. {fid}_value; built-ins: {', '.join(sorted(BUILTINS | GUARD_NAMES))}"))
        fields.append(build_field(ld, source, item, here, choice_lists, visible_names))
        paths.append(here)
    check_compute_cycles(ld, source, fields, paths)
    if not outer:  # (a repeat's rows are checked with their form, reading its fields too)
        check_field_choice_refs(ld, source, fields, paths, {})
    return tuple(fields)


def build_field(ld: "Loader", source: YamlSource, item: dict, here: list[PathItem],
                choice_lists: dict[str, tuple[Choice, ...]], names: set[str]) -> FieldSpec:
    ftype = item["type"]
    kind = FIELD_KINDS[ftype]

    def report(below: list[PathItem], message: str, hint: str = "", key: bool = False) -> None:
        ld.problems.append(source.problem(here + below, message, hint, key=key))

    check_keys(ftype, item, report)  # what the type needs, and keys that belong to another type
    choices: tuple[Choice, ...] = ()
    raw_choices = item.get("choices") if kind.holds_choices else None
    if isinstance(raw_choices, str):
        if raw_choices not in choice_lists and not ld.choices_broken:
            ld.problems.append(source.problem(here + ["choices"], f"unknown choice list {raw_choices!r}",
                                                did_you_mean(raw_choices, choice_lists) or "declare it in forms/choices.yaml"))
        choices = choice_lists.get(raw_choices, ())
    elif raw_choices is not None:
        choices = _choices(raw_choices)
        check_choice_data(ld, source, here + ["choices"], raw_choices)
        values = [c.value for c in choices]
        for dup in {v for v in values if values.count(v) > 1}:
            ld.problems.append(source.problem(here + ["choices"], f"duplicate choice value {dup!r}"))
    for low, high in (("min", "max"), ("min_length", "max_length"), ("min_rows", "max_rows")):
        if low in item and high in item and item[low] > item[high]:
            ld.problems.append(source.problem(here + [low], f"{low} ({item[low]}) is greater than {high} ({item[high]})"))
    if item.get("required") and "required_if" in item:
        ld.problems.append(source.problem(here + ["required_if"], "'required_if' has no effect: the field is always required",
                                            "remove required: true, or required_if", key=True))
    if "required_message" in item and not item.get("required") and "required_if" not in item and kind.holds_value:
        ld.problems.append(source.problem(here + ["required_message"], "'required_message' has no effect: the field is never required",
                                            "add required: true or required_if", key=True))
    if "pattern" in item:
        try:
            re.compile(item["pattern"])
        except re.error as exc:
            ld.problems.append(source.problem(here + ["pattern"], f"invalid regular expression: {exc}"))
    if kind.holds_case and "workflow" in item:  # checked once every workflow is loaded
        ld.case_refs.append((source, here + ["workflow"], item["workflow"], tuple(item.get("states", []))))
    if kind.holds_user and ld.role_names is not None:  # roles of org/roles.yaml (not checked when it is broken)
        for i, role in enumerate(item.get("roles", [])):
            if role not in ld.role_names:
                ld.problems.append(source.problem(here + ["roles", i], f"unknown role {role!r}",
                                                  did_you_mean(role, ld.role_names) or "roles are declared in org/roles.yaml"))
    if choices and "default" in item:
        defaults = item["default"] if isinstance(item["default"], list) else [item["default"]]
        for value in defaults:
            if str(value) not in {c.value for c in choices}:
                values = [c.value for c in choices]
                ld.problems.append(source.problem(here + ["default"], f"default {value!r} is not one of the choices",
                                                    did_you_mean(value, values) or f"choices: {', '.join(values)}"))
    subfields: tuple[FieldSpec, ...] = ()
    if kind.holds_rows and "fields" in item:
        subfields = build_fields(ld, source, item["fields"], here + ["fields"], choice_lists, outer=tuple(names))
    filled = kind.defaults(item)  # what the type fills in when the definition leaves it out
    return FieldSpec(
        id=item["id"], type=ftype, label=text(item["label"]) or {}, required=item.get("required", False),
        help=text(item.get("help")), placeholder=text(item.get("placeholder")), default=item.get("default"),
        min=item.get("min", filled.get("min")), max=item.get("max", filled.get("max")),
        min_length=item.get("min_length"), max_length=item.get("max_length"), pattern=item.get("pattern"),
        message=text(item.get("message")), choices=choices,
        show_if=ld.expression(source, here + ["show_if"], item.get("show_if"), names, f"field {item['id']!r}"),
        compute=ld.expression(source, here + ["compute"], item.get("compute"), names, f"field {item['id']!r}"),
        sensitive=item.get("sensitive", False), fields=subfields, min_rows=item.get("min_rows", filled.get("min_rows", 0)),
        max_rows=item.get("max_rows"), accept=tuple(item.get("accept", filled.get("accept", ()))),
        max_size=parse_size(item["max_size"]) if "max_size" in item else filled.get("max_size"),
        level=item.get("level"), workflow=item.get("workflow"), states=tuple(item.get("states", ())),
        multiple=item.get("multiple", False), roles=tuple(item.get("roles", ())), scope=item.get("scope", filled.get("scope")),
        required_if=ld.expression(source, here + ["required_if"], item.get("required_if"), names, f"field {item['id']!r}"),
        required_message=text(item.get("required_message")),
    )


def check_layout(ld: "Loader", source: YamlSource, items: list[dict]) -> None:
    """Sections and pages (``type: section`` / ``type: page`` markers) group the form's own questions: not inside
    repeat rows, none empty, none before the first page; a repeat with an upload column bounds its rows."""
    kinds = [FIELD_KINDS[item["type"]] for item in items]
    if any(k.starts_page for k in kinds) and not kinds[0].starts_page:
        ld.problems.append(source.problem(["fields", 0], "the questions before the first page belong to no page",
                                          "start the fields with a page, e.g. - {id: basics, type: page, label: 基本信息}"))
    for i, (item, kind) in enumerate(zip(items, kinds)):
        if kind.starts_page or kind.starts_section:
            after = kinds[i + 1] if i + 1 < len(items) else None
            ends = after is None or after.starts_page or (kind.starts_section and after.starts_section)
            if ends:
                ld.problems.append(source.problem(["fields", i], f"{item['type']} {item['id']!r} holds no questions",
                                                  "put its questions after it, or remove it"))
        if kind.holds_rows:
            unbounded = "max_rows" not in item
            for j, sub in enumerate(item.get("fields", [])):
                sub_kind = FIELD_KINDS[sub["type"]]
                if sub_kind.starts_page or sub_kind.starts_section:
                    ld.problems.append(source.problem(
                        ["fields", i, "fields", j, "type"], f"a {sub['type']} cannot be a column of a repeat row",
                        "sections and pages group the form's own questions; put it before the repeat field"))
                elif sub_kind.holds_files and unbounded:
                    unbounded = False  # said once per repeat
                    ld.problems.append(source.problem(
                        ["fields", i], f"repeat {item['id']!r} has an upload column ({sub['id']!r}) but no 'max_rows'",
                        "every row may carry a file: bound the rows, e.g. max_rows: 20"))


def check_compute_cycles(ld: "Loader", source: YamlSource, fields: list[FieldSpec], paths: list[list[PathItem]]) -> None:
    """A computed field may not depend on itself, directly (x: x + 1) or through others."""
    deps = {f.id: sorted(f.compute.names) for f in fields if f.compute}
    for f, path in zip(fields, paths):
        if f.id not in deps:
            continue
        came_from: dict[str, str] = {}
        queue = deque([f.id])
        while queue:
            name = queue.popleft()
            if f.id in deps.get(name, ()):
                chain = [f.id, name]
                while chain[-1] != f.id:
                    chain.append(came_from[chain[-1]])
                cycle = " -> ".join(reversed(chain))
                ld.problems.append(source.problem(path + ["compute"], f"computed field {f.id!r} depends on itself: {cycle}",
                                                    "break the cycle between computed fields"))
                break
            for dep in deps.get(name, ()):
                if dep in deps and dep not in came_from and dep != f.id:
                    came_from[dep] = name
                    queue.append(dep)

