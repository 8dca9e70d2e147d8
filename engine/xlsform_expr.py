"""XLSForm's expressions (an XPath subset: ``${age} >= 18 and selected(${skills}, 'first_aid')``) translated
to Civicflow's (sandboxed Jinja: ``age >= 18 and 'first_aid' in skills``) and back.

Both directions parse into a small tree and print it, so precedence and nesting survive, and anything
outside the subset both languages share raises :class:`Untranslatable` with the reason, which the importer
and exporter put in their report instead of guessing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping

from jinja2 import Environment, nodes
from jinja2.exceptions import TemplateSyntaxError


class Untranslatable(ValueError):
    """An expression the other side cannot say (the message says which part)."""


# -- a tiny tree both languages print -------------------------------------------------------------------

@dataclass(frozen=True)
class Node:
    op: str  # "or" "and" "not" "cmp" "arith" "neg" "name" "self" "num" "str" "call" "in"
    args: tuple = ()
    value: object = None


_TOKEN = re.compile(r"""\s*(?:
    (?P<ref>\$\{\s*(?P<refname>[A-Za-z_][\w.-]*)\s*\})
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<str>'[^']*'|"[^"]*")
  | (?P<op><=|>=|!=|=|<|>|\+|-|\*|\(|\)|,)
  | (?P<word>[A-Za-z_][\w-]*(?::[\w-]+)?)
  | (?P<dot>\.(?![\d]))
)""", re.VERBOSE)

_XPATH_FUNCTIONS = {"selected", "count-selected", "string-length", "not", "today", "now", "if", "int", "number",
                    "round", "concat", "coalesce", "true", "false", "string"}


def _tokens(text: str) -> list[tuple[str, str]]:
    found, at = [], 0
    text = text.strip()
    while at < len(text):
        match = _TOKEN.match(text, at)
        if not match or match.end() == at:
            raise Untranslatable(f"cannot read {text[at:at + 12]!r} in {text!r}")
        at = match.end()
        kind = match.lastgroup if match.lastgroup != "refname" else "ref"
        if match.group("ref"):
            found.append(("ref", match.group("refname")))
        else:
            found.append((kind or "", match.group(kind or 0)))
    return found


class _XPathParser:
    """Recursive descent over the tokens: or > and > comparison > + - > * div mod > unary > primary."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise Untranslatable(f"expected {value or 'more'} in {self.text!r}")
        self.at += 1
        return token

    def parse(self) -> Node:
        node = self.or_()
        if self.peek() is not None:
            raise Untranslatable(f"unexpected {self.peek()[1]!r} in {self.text!r}")  # type: ignore[index]
        return node

    def _binary(self, op: str, words: tuple[str, ...], below: Callable[[], Node]) -> Node:
        node = below()
        while (token := self.peek()) is not None and token[1] in words:
            self.take()
            node = Node(op, (node, below()), token[1])
        return node

    def or_(self) -> Node:
        return self._binary("or", ("or",), self.and_)

    def and_(self) -> Node:
        return self._binary("and", ("and",), self.cmp)

    def cmp(self) -> Node:
        node = self.add()
        token = self.peek()
        if token is not None and token[1] in ("=", "!=", "<", "<=", ">", ">="):
            self.take()
            node = Node("cmp", (node, self.add()), token[1])
        return node

    def add(self) -> Node:
        return self._binary("arith", ("+", "-"), self.mul)

    def mul(self) -> Node:
        return self._binary("arith", ("*", "div", "mod"), self.unary)

    def unary(self) -> Node:
        if (token := self.peek()) is not None and token[1] == "-":
            self.take()
            return Node("neg", (self.unary(),))
        return self.primary()

    def primary(self) -> Node:
        kind, value = self.take()
        if kind == "ref":
            return Node("name", value=value)
        if kind == "dot":
            return Node("self")
        if kind == "num":
            return Node("num", value=float(value) if "." in value else int(value))
        if kind == "str":
            return Node("str", value=value[1:-1])
        if value == "(":
            node = self.or_()
            self.take(")")
            return node
        if kind == "word" and (token := self.peek()) is not None and token[1] == "(":
            if value not in _XPATH_FUNCTIONS:
                raise Untranslatable(f"the function {value}() has no counterpart in Civicflow expressions")
            self.take("(")
            args: list[Node] = []
            if (token := self.peek()) is not None and token[1] != ")":
                args.append(self.or_())
                while (token := self.peek()) is not None and token[1] == ",":
                    self.take()
                    args.append(self.or_())
            self.take(")")
            return Node("call", tuple(args), value)
        raise Untranslatable(f"cannot read {value!r} in {self.text!r}")


def _jinja_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_JINJA_PRECEDENCE = {"or": 1, "and": 2, "not": 3, "in": 4, "cmp": 4, "arith+": 5, "arith*": 6, "neg": 7}


def to_jinja(text: "str | Node", names: Mapping[str, str], self_name: str | None = None) -> str:
    """``text`` (XLSForm) as a Civicflow expression; ``names`` maps XLSForm names to field ids, ``self_name``
    is what ``.`` means (the field a constraint belongs to)."""
    def level(node: Node) -> int:
        if node.op == "arith":
            return _JINJA_PRECEDENCE["arith+" if node.value in "+-" else "arith*"]
        return _JINJA_PRECEDENCE.get(node.op, 9)

    def wrap(node: Node, parent: int) -> str:
        out = emit(node)
        return f"({out})" if level(node) < parent else out

    def need(args: tuple, count: int, name: str) -> None:
        if len(args) != count:
            raise Untranslatable(f"{name}() takes {count} argument(s), {len(args)} given")

    def emit(node: Node) -> str:
        if node.op == "name":
            if node.value not in names:
                raise Untranslatable(f"${{{node.value}}} is not a field of this form")
            return names[node.value]  # type: ignore[index]
        if node.op == "self":
            if self_name is None:
                raise Untranslatable("'.' (this field) is only meaningful in a constraint")
            return self_name
        if node.op == "num":
            return repr(node.value)
        if node.op == "str":
            return _jinja_string(str(node.value))
        if node.op in ("or", "and"):
            return f"{wrap(node.args[0], level(node))} {node.op} {wrap(node.args[1], level(node) + 1)}"
        if node.op == "cmp":
            left, right = node.args
            if right.op == "str" and right.value == "" and node.value in ("=", "!="):
                # XLSForm's unanswered is ''; Civicflow's is none (or '' for a cleared text)
                return f"{wrap(left, 5)} {'in' if node.value == '=' else 'not in'} (none, '')"
            op = "==" if node.value == "=" else node.value
            return f"{wrap(node.args[0], 5)} {op} {wrap(node.args[1], 5)}"
        if node.op == "arith":
            op = {"div": "/", "mod": "%"}.get(str(node.value), str(node.value))
            return f"{wrap(node.args[0], level(node))} {op} {wrap(node.args[1], level(node) + 1)}"
        if node.op == "neg":
            return f"-{wrap(node.args[0], 7)}"
        name, args = str(node.value), node.args
        if name == "selected":
            need(args, 2, name)
            return f"{wrap(args[1], 5)} in {wrap(args[0], 5)}"
        if name in ("count-selected", "string-length"):
            need(args, 1, name)
            return f"count({emit(args[0])})"
        if name == "not":
            need(args, 1, name)
            return f"not {wrap(args[0], 4)}"
        if name in ("today", "now"):
            need(args, 0, name)
            return f"{name}()"
        if name in ("true", "false"):
            need(args, 0, name)
            return name
        if name == "if":
            need(args, 3, name)
            return f"({wrap(args[1], 2)} if {wrap(args[0], 2)} else {wrap(args[2], 2)})"
        if name in ("int", "number", "string"):
            need(args, 1, name)
            return f"{wrap(args[0], 9)}|{ {'int': 'int', 'number': 'float', 'string': 'string'}[name] }"
        if name == "round":
            need(args, 2, name)
            return f"{wrap(args[0], 9)}|round({emit(args[1])})"
        if name == "concat":
            return "(" + " ~ ".join(wrap(a, 6) for a in args) + ")" if args else "''"
        if name == "coalesce":
            need(args, 2, name)
            first = wrap(args[0], 9)
            return f"({first} if {first} not in (none, '') else {wrap(args[1], 2)})"
        raise Untranslatable(f"{name}() has no counterpart")  # pragma: no cover - _XPATH_FUNCTIONS guards it

    return emit(text if isinstance(text, Node) else _XPathParser(text).parse())


def _measured(node: Node, measure: str) -> bool:
    if measure == "value":
        return node.op == "self"
    return node.op == "call" and node.value == "string-length" and len(node.args) == 1 and node.args[0].op == "self"


def split_bounds(text: str, measure: str = "value") -> tuple[float | None, float | None, Node | None]:
    """A field's constraint as ``(low, high, the rest)``: ``. >= 0 and . <= 100 and . != 13`` gives
    ``(0, 100, <. != 13>)``, so bounds become ``min``/``max`` (shown on the input) and only the rest a rule;
    with ``measure="length"`` the bounds are on ``string-length(.)`` (``min_length``/``max_length``)."""
    parts: list[Node] = []

    def flatten(node: Node) -> None:
        if node.op == "and":
            flatten(node.args[0])
            flatten(node.args[1])
        else:
            parts.append(node)
    flatten(_XPathParser(text).parse())
    low = high = None
    rest = []
    for part in parts:
        if part.op == "cmp" and _measured(part.args[0], measure) and part.args[1].op == "num" \
                and part.value in (">=", "<="):
            if part.value == ">=" and low is None:
                low = part.args[1].value
                continue
            if part.value == "<=" and high is None:
                high = part.args[1].value
                continue
        rest.append(part)
    tail = None
    for part in rest:
        tail = part if tail is None else Node("and", (tail, part), "and")
    return low, high, tail  # type: ignore[return-value]


# -- Civicflow to XLSForm --------------------------------------------------------------------------------

_ENV = Environment()
_CMP = {"eq": "=", "ne": "!=", "lt": "<", "lteq": "<=", "gt": ">", "gteq": ">="}
_ARITH = {nodes.Add: "+", nodes.Sub: "-", nodes.Mul: "*", nodes.Div: "div", nodes.Mod: "mod"}


def to_xpath(source: str, self_name: str | None = None) -> str:
    """A Civicflow expression as XLSForm's; a field named ``self_name`` prints as ``.``."""
    try:
        body = _ENV.parse("{{ " + source + " }}").body
    except TemplateSyntaxError as exc:
        raise Untranslatable(f"cannot read {source!r}: {exc.message}") from None
    if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
        raise Untranslatable(f"cannot read {source!r}")

    def emit(node: nodes.Node) -> str:
        if isinstance(node, nodes.Name):
            if node.name in ("true", "false"):
                return f"{node.name}()"
            return "." if node.name == self_name else f"${{{node.name}}}"
        if isinstance(node, nodes.Test) and node.name == "none" and not node.args:
            return f"{emit(node.node)} = ''"  # XLSForm has no null: an unanswered field is ''
        if isinstance(node, nodes.Const):
            if node.value is None:
                return "''"
            if isinstance(node.value, bool):
                return "true()" if node.value else "false()"
            if isinstance(node.value, str):
                if "'" in node.value:
                    raise Untranslatable("a text holding ' cannot be written in XLSForm")
                return f"'{node.value}'"
            if isinstance(node.value, (int, float)):
                return repr(node.value)
            raise Untranslatable(f"the value {node.value!r} has no XLSForm form")
        if isinstance(node, nodes.And):
            return f"({emit(node.left)} and {emit(node.right)})"
        if isinstance(node, nodes.Or):
            return f"({emit(node.left)} or {emit(node.right)})"
        if isinstance(node, nodes.Not):
            return f"not({emit(node.node)})"
        if isinstance(node, nodes.Neg):
            return f"-{emit(node.node)}"
        if isinstance(node, nodes.Compare):
            if len(node.ops) != 1:
                raise Untranslatable("chained comparisons have no XLSForm form")
            operand = node.ops[0]
            if operand.op in ("in", "notin") and isinstance(operand.expr, nodes.Tuple) \
                    and all(isinstance(i, nodes.Const) and i.value in (None, "") for i in operand.expr.items):
                return f"{emit(node.expr)} {'=' if operand.op == 'in' else '!='} ''"
            if operand.op in ("in", "notin"):
                shown = f"selected({emit(operand.expr)}, {emit(node.expr)})"
                return shown if operand.op == "in" else f"not({shown})"
            return f"{emit(node.expr)} {_CMP[operand.op]} {emit(operand.expr)}"
        if type(node) in _ARITH:
            return f"({emit(node.left)} {_ARITH[type(node)]} {emit(node.right)})"  # type: ignore[attr-defined]
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and not node.kwargs:
            name, args = node.node.name, node.args
            if name in ("today", "now") and not args:
                return f"{name}()"
            if name == "count" and len(args) == 1:
                return f"count-selected({emit(args[0])})"
            raise Untranslatable(f"{name}() has no XLSForm counterpart")
        if isinstance(node, nodes.CondExpr):
            otherwise = emit(node.expr2) if node.expr2 is not None else "''"
            return f"if({emit(node.test)}, {emit(node.expr1)}, {otherwise})"
        if isinstance(node, nodes.Concat):
            return "concat(" + ", ".join(emit(n) for n in node.nodes) + ")"
        if isinstance(node, nodes.Filter) and node.node is not None and not node.kwargs:
            inner = emit(node.node)
            if node.name in ("int", "float", "string") and not node.args:
                return f"{ {'int': 'int', 'float': 'number', 'string': 'string'}[node.name] }({inner})"
            if node.name == "round" and len(node.args) <= 1:
                return f"round({inner}, {emit(node.args[0]) if node.args else 0})"
            if node.name == "length" and not node.args:
                return f"string-length({inner})"
            raise Untranslatable(f"the filter |{node.name} has no XLSForm counterpart")
        raise Untranslatable(f"{type(node).__name__} in {source!r} has no XLSForm form")

    return emit(body[0].nodes[0])
