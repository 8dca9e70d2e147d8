"""Uniqueness across cases (``unique:``): fields no two cases of a workflow may share while they are in given
states — one booking per room, date and slot; one registration per ID number.

Holds the spec (:class:`UniqueSpec`), its load-time checks (:func:`build`), the keys of the claim index
(:func:`claim_keys`, declared with the read model by ``engine.readmodel.install``) and the runtime check
(:func:`check`), which ``Engine._open`` and the one transition path (``engine.transition.move``) call inside the
store transaction that writes the case.

A case *holds a claim* while it is in one of the rule's states with every field of the rule filled: its document
is filed in the index under ``("claim", workflow, fields, value...)``, the values as their field type compares
them (``FieldType.claim_term``: spaces trimmed, an ID number's ``x`` upper case, text case-folded). The store keeps
that index in the same transaction as every write of the case, so a claim is freed by the very write that moves
the case out of those states (or empties a field), and a rebuilt read model rebuilds the claims from the cases.
Two submissions can never both win: both stores run write transactions one at a time (the file store's lock,
PostgreSQL's transaction-scoped advisory lock, see ``engine.store.postgres_store``), and the check reads the index
inside the transaction that will write the claim, so the second one sees the first one's claim.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from ..errors import SubmissionError
from ..loadkit import did_you_mean, text
from ..spec import FieldSpec, Text, tr

if TYPE_CHECKING:
    from ..cases import Case
    from ..loader import Loader
    from ..spec import WorkflowSpec
    from ..store.base import Doc, Key, Transaction
    from ..users import User
    from ..yamlsource import PathItem, YamlSource

#: The read model's index of claims (``engine.readmodel.install`` declares it).
CLAIM_INDEX = "case_claims"
DEFAULT_MESSAGE: Text = {"zh": "已有事项使用了相同的信息", "en": "Another case already holds these details"}


@dataclass(frozen=True)
class UniqueSpec:
    """``fields`` may not be the same in two cases of the workflow while both are in one of ``states``."""

    fields: tuple[str, ...]
    states: frozenset[str]
    message: Text | None = None
    #: the field of each id (the first form of the workflow that has it), which says how values compare
    specs: tuple[FieldSpec, ...] = field(default=(), repr=False, compare=False)

    @property
    def name(self) -> str:
        return "+".join(self.fields)

    def key(self, workflow: str, state: str, data: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The claim a case in ``state`` with ``data`` holds under this rule, or None."""
        if state not in self.states:
            return None
        terms = []
        for f in self.specs:
            term = f.kind.claim_term(f, data.get(f.id))
            if term is None:
                return None  # a rule claims a full set of values; a missing one claims nothing
            terms.append(term)
        return ("claim", workflow, self.name, *terms)


def build(ld: "Loader", source: "YamlSource", items: list[dict], states: Iterable[str],
          fields: Mapping[str, FieldSpec] | None) -> tuple[UniqueSpec, ...]:
    """``fields``: every field a case of the workflow holds, by id (None: a form is missing, check states only)."""
    states = list(states)
    found, seen = [], set()
    for i, item in enumerate(items):
        here: list[PathItem] = ["unique", i]
        ok = True
        for j, state in enumerate(item["while"]):
            if state not in states:
                ld.problems.append(source.problem(here + ["while", j], f"unknown state {state!r}",
                                                  did_you_mean(state, states) or f"states: {', '.join(states)}"))
                ok = False
        specs = []
        for j, fid in enumerate(item["fields"]):
            f = None if fields is None else fields.get(fid)
            if fields is not None and f is None:
                ld.problems.append(source.problem(here + ["fields", j], f"unknown field {fid!r}",
                                                  did_you_mean(fid, fields) or "use a field of the workflow's forms"))
                ok = False
            elif f is not None and not f.kind.claimable:
                ld.problems.append(source.problem(here + ["fields", j], f"a {f.type} field cannot be unique across cases",
                                                  "name fields holding one value (text, ID number, date, select...)"))
                ok = False
            elif f is not None:
                specs.append(f)
        names = tuple(item["fields"])
        if len(set(names)) != len(names):
            ld.problems.append(source.problem(here + ["fields"], "a field is named twice", "name each field once"))
            ok = False
        if frozenset(names) in seen:
            ld.problems.append(source.problem(here + ["fields"], f"another unique rule has the same fields: {', '.join(names)}",
                                              "merge the two rules (list every state in one 'while')"))
            ok = False
        seen.add(frozenset(names))
        if ok and fields is not None:
            found.append(UniqueSpec(names, frozenset(item["while"]), text(item.get("message")), tuple(specs)))
    return tuple(found)


def claim_keys(resolve: Callable[[str, Any], "WorkflowSpec | None"]) -> Callable[["Doc"], list["Key"]]:
    """The claim index's keys of a case document: one per rule of its workflow's version that it holds."""
    def keys(doc: "Doc") -> list["Key"]:
        wf = resolve(doc["workflow"], doc.get("workflow_version"))
        if wf is None or not wf.unique:
            return []
        data = doc.get("data") or {}
        return [k for rule in wf.unique if (k := rule.key(wf.id, doc["state"], data)) is not None]
    return keys


def check(engine: Any, tx: "Transaction", case: "Case", wf: "WorkflowSpec", state: str, actor: "User",
          shown: Iterable[str] = (), values: Mapping[str, Any] | None = None) -> None:
    """Refuse (a :class:`SubmissionError`) to put ``case`` in ``state`` when another case holds one of its claims.

    The message names the case that holds it: its number and title, as a link, to someone who may see that case;
    only its number to anyone else (the title is built from fields that are not sensitive, and still not shown).
    It stands under the first of the rule's fields in the form being filled (``shown``), else above the form;
    ``values``: what was typed in it, kept for the form shown again."""
    shown = set(shown)
    for rule in wf.unique:
        key = rule.key(wf.id, state, case.data)
        if key is None:
            continue
        holder = next((d for d in tx.lookup(CLAIM_INDEX, [key], limit=2, newest=False).docs
                       if d["id"] != case.id), None)
        if holder is None:
            continue
        from ..cases import Case as CaseType  # (engine.cases imports the mechanics' specs)
        visible = engine.can_see(CaseType.from_doc(holder), actor)
        ref = f"#{holder['id']} {holder.get('title') or ''}".strip() if visible else f"#{holder['id']}"
        said = rule.message or DEFAULT_MESSAGE
        message: dict[str, Any] = {"zh": f"{tr(said, 'zh')}（{ref}）", "en": f"{tr(said, 'en')} ({ref})"}
        if visible:
            message["case"] = holder["id"]  # the page links the message to that case
        where = next((f for f in rule.fields if f in shown), "")
        raise SubmissionError({where: [message]}, values=dict(values or {}))
