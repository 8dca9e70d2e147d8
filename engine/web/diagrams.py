"""Workflow diagrams: an SVG drawn from a ``WorkflowSpec``, laid out here in Python, inlined in the page.

Why our own layout rather than Graphviz (``dot -Tsvg``) or a JavaScript library (@viz-js/viz,
elkjs, mermaid):

* nothing extra at run time: no ``graphviz`` package on the server, no 1-3 MB of WASM or
  JavaScript in the browser, no ``'unsafe-eval'`` / ``'wasm-unsafe-eval'`` in the CSP; the
  diagram is in the HTML, so it shows without JavaScript, prints, and is in the page the
  tests read;
* workflows are small (a handful of states), so a plain layered (Sugiyama) layout is enough:
  states on rows by longest path from the initial state (edges going back, such as
  "return for changes", are reversed for the layering), each edge's label sits as a box
  of its own on the edge, a few barycenter sweeps order the rows, then a few sweeps pull every
  box towards its neighbours;
* the rows run top to bottom, which suits a phone: the SVG keeps its natural size (text
  stays readable) and scrolls sideways inside its container (``.diagram``), never the page.

The SVG is built as plain data (tag, attributes, text) and written out by an autoescaping Jinja macro
(``templates/_svg.html``), so no text from YAML reaches the page unescaped; styling is done with
presentation attributes (no ``style=``), which the CSP ``style-src 'self'`` allows.

What is drawn is the workflow's state graph, ``WorkflowSpec.edges``: transitions (those the clock takes
are marked ◷ and say when), objections during a public notice (dashed) and the two outcomes of closing a
ranking round, so no state a case can leave is drawn as a dead end. A person's moves on their own task
(``move`` edges: 转交, 加签, 撤回 from every open state) are left out, so they do not clutter it; a state's
``return_to`` is one compact line in its box (↩ 可退回：…) and in the text version.
"""
from __future__ import annotations

import functools
import unicodedata
from threading import Lock
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from flask import Blueprint, abort, current_app, g, render_template
from jinja2 import Environment, FileSystemLoader

from ..cases import Case
from ..durations import Duration
from ..spec import EdgeSpec, RoleSpec, StateSpec, WorkflowSpec, role_field, tr
from . import get_engine
from .auth import login_required
from .i18n import current_lang

bp = Blueprint("diagrams", __name__)

FONT = "system-ui, -apple-system, 'PingFang SC', 'Noto Sans CJK SC', 'Microsoft YaHei', sans-serif"
PSEUDO_ROLE_TITLES = {"creator": {"zh": "发起人", "en": "Applicant"}, "assignee": {"zh": "经办人", "en": "Assignee"},
                      "system": {"zh": "系统自动", "en": "automatic"},
                      "approver": {"zh": "审批人", "en": "Approvers"}}  # an approval naming users or a field
AUTOMATIC = {"zh": "自动", "en": "automatic"}
CLOCK = "◷ "                      # marks an edge the clock takes (a clock face most fonts have; ⏱ is emoji-only)
DURATION_UNITS = {"m": {"zh": "分钟", "en": "minute"}, "h": {"zh": "小时", "en": "hour"},
                  "d": {"zh": "天", "en": "day"}, "wd": {"zh": "个工作日", "en": "working day"}}
TAKEN = {"zh": "已走过", "en": "taken"}
COLORS = {
    "line": "#8a93a3", "text": "#1d2330", "muted": "#5b6475", "state": "#ffffff", "state_line": "#5b6475",
    "label": "#f3f5f8", "label_line": "#c5cad3", "current": "#b4232a", "current_text": "#ffffff",
    "visited": "#fdeced", "taken": "#b4232a",
}
STATE_FONT, LABEL_FONT, ROLE_FONT = 14, 13, 11
H_GAP, V_GAP, MARGIN, START_SPACE = 18, 20, 12, 30


# --------------------------------------------------------------------------- text

def text_width(text: str, size: float, bold: bool = False) -> float:
    """An estimate without font metrics: CJK characters are one em wide, others about 0.6 em."""
    width = 0.0
    for ch in text:
        if unicodedata.east_asian_width(ch) in ("W", "F"):
            width += 1.0
        elif ch == " ":
            width += 0.3
        else:
            width += 0.62 if bold else 0.57
    return width * size


#: Punctuation a Chinese line does not start with (it stays at the end of the line before).
NO_LINE_START = frozenset("，。、；：！？）》」』·,.;:!?)")


def _greedy(tokens: list[str], size: float, max_width: float, bold: bool) -> list[str]:
    lines, line = [], ""
    for token in tokens:
        candidate = line + token
        if line and token not in NO_LINE_START and text_width(candidate.rstrip(), size, bold) > max_width:
            lines.append(line.rstrip())
            line = token.lstrip()
        else:
            line = candidate
    if line.strip():
        lines.append(line.rstrip())
    return lines or [""]


def wrap(text: str, size: float, max_width: float, bold: bool = False) -> list[str]:
    """Break ``text`` into lines no wider than ``max_width`` (between CJK characters, or at spaces), as
    even as the same number of lines allows: no lone character on the last line."""
    tokens: list[str] = []
    word = ""
    for ch in text:
        if ch.isspace() or unicodedata.east_asian_width(ch) in ("W", "F"):
            if word:
                tokens.append(word)
                word = ""
            tokens.append(ch)
        else:
            word += ch
    if word:
        tokens.append(word)
    lines = _greedy(tokens, size, max_width, bold)
    width = text_width(text, size, bold) / len(lines)
    while len(lines) > 1 and width < max_width:
        even = _greedy(tokens, size, width, bold)
        if len(even) <= len(lines):
            return even
        width += size / 2
    return lines


# --------------------------------------------------------------------------- layout

@dataclass
class Node:
    key: str
    kind: str                     # "state" | "label" | "dummy"
    row: int
    width: float = 0.0
    height: float = 0.0
    lines: list[tuple[str, int, bool, str]] = field(default_factory=list)  # text, size, bold, role
    x: float = 0.0                # centre
    y: float = 0.0                # top
    state: str | None = None
    edge: EdgeSpec | None = None

    @property
    def bottom(self) -> float:
        return self.y + self.height


@dataclass
class Edge:
    spec: EdgeSpec
    chain: list[str]              # node keys from the upper end to the lower end
    back: bool                    # True: drawn upwards (the arrow is at the upper end)


def _drawn(wf: WorkflowSpec, sid: str) -> list[EdgeSpec]:
    """The edges leaving ``sid`` drawn as lines (loops are written inside the state's box)."""
    return [e for e in wf.edges_from(sid) if e.target in wf.states and not e.loop and e.kind != "move"]


RETURN_TO = {"zh": "可退回：", "en": "May send back to: "}


def _returns_line(wf: WorkflowSpec, sid: str, lang: str) -> str:
    """The states a case here may be sent back to (``return_to``), as one line for the state's box."""
    titles = [tr(wf.states[e.target].title, lang) for e in wf.edges_from(sid) if e.kind == "move" and e.via == "return"
              and e.target in wf.states]
    return "↩ " + tr(RETURN_TO, lang) + ("、" if lang == "zh" else ", ").join(titles) if titles else ""


def _ranks(wf: WorkflowSpec) -> tuple[dict[str, int], set[str]]:
    """Row of each state (longest path in the graph without back edges) and the keys of the back edges."""
    order = list(wf.states)
    roots = [wf.initial] + [s for s in order if s != wf.initial]
    seen: set[str] = set()
    on_stack: set[str] = set()
    back: set[str] = set()

    def visit(sid: str) -> None:  # iterative DFS would only matter for hundreds of states
        seen.add(sid)
        on_stack.add(sid)
        for e in _drawn(wf, sid):
            if e.target in on_stack:
                back.add(e.key)
            elif e.target not in seen:
                visit(e.target)
        on_stack.discard(sid)

    for root in roots:
        if root in wf.states and root not in seen:
            visit(root)

    preds: dict[str, set[str]] = {s: set() for s in order}
    for sid in order:
        for e in _drawn(wf, sid):
            if e.key in back:
                preds[sid].add(e.target)
            else:
                preds[e.target].add(sid)
    # With the back edges turned round every edge goes from a later to an earlier DFS finish: no cycles.
    rank: dict[str, int] = {}

    def depth(sid: str) -> int:
        if sid not in rank:
            rank[sid] = 1 + max((depth(p) for p in preds[sid]), default=-1)
        return rank[sid]

    for sid in order:
        depth(sid)
    return rank, back


def duration_text(d: Duration, lang: str) -> str:
    """``5wd`` as 5个工作日 / 5 working days."""
    unit = tr(DURATION_UNITS.get(d.unit), lang) or d.unit
    if lang == "zh":
        return f"{d.amount}{unit}"
    return f"{d.amount} {unit}" + ("" if d.amount == 1 else "s")


def clock_text(state: StateSpec, trigger: str, lang: str) -> str:
    """When the clock takes a transition: 3天后自动 / automatic after 3 days."""
    zh = lang == "zh"
    if trigger == "timeout" and state.after is not None:
        d = duration_text(state.after.after, lang)
        return f"{d}后自动" if zh else f"automatic after {d}"
    if trigger == "notice" and state.notice is not None:
        d = duration_text(state.notice.duration, lang)
        return f"公示{d}期满自动" if zh else f"automatic when the notice ends ({d})"
    if trigger == "collect" and state.collect is not None and state.collect.deadline is not None:
        d = duration_text(state.collect.deadline, lang)
        return f"{d}截止时自动" if zh else f"automatic at the deadline ({d})"
    if trigger == "children" and state.waits_for is not None:  # engine.mechanics.links
        every = state.waits_for.when == "all"
        return ("子事项全部到达后自动" if every else "任一子事项到达后自动") if zh else \
            ("automatic when all its linked cases arrive" if every else "automatic when one of its linked cases arrives")
    return tr(AUTOMATIC, lang)


def _role_names(e: EdgeSpec, roles: Mapping[str, RoleSpec], lang: str, wf: WorkflowSpec) -> str:
    """Who takes an edge; for one the clock takes, when (``system`` is then said by the clock's text)."""
    names = []
    for r in e.roles:
        if r == "system" and e.triggers:
            continue
        if r in roles:
            names.append(tr(roles[r].title, lang))
        elif r in PSEUDO_ROLE_TITLES:
            names.append(tr(PSEUDO_ROLE_TITLES[r], lang))
        elif (named := role_field(r)) is not None:
            names.append(f"“{named}”所指定的人员" if lang == "zh" else f"the person named in {named}")
        else:
            names.append(r)
    names += [clock_text(wf.states[e.source], trigger, lang) for trigger in e.triggers]
    if not names:
        return tr(AUTOMATIC, lang)
    return ("、" if lang == "zh" else ", ").join(names)


def edge_label(e: EdgeSpec, lang: str) -> str:
    """The edge's name, marked ◷ when the clock takes it."""
    return (CLOCK if e.automatic else "") + (tr(e.label, lang) or e.via)


class Layout:
    """States, transition labels and dummy points placed on rows; see the module docstring."""

    def __init__(self, wf: WorkflowSpec, roles: Mapping[str, RoleSpec], lang: str):
        self.wf = wf
        self.nodes: dict[str, Node] = {}
        self.edges: list[Edge] = []
        self.loops: dict[str, list[EdgeSpec]] = {}
        rank, back = _ranks(wf)
        for sid in wf.states:
            self.loops[sid] = [e for e in wf.edges_from(sid) if e.loop and not e.aside and e.kind != "move"]  # no 催办 / 抄送 / 转交 on every box
        for sid, state in wf.states.items():
            lines = [(line, STATE_FONT, True, "title") for line in wrap(tr(state.title, lang) or sid, STATE_FONT, 150, True)]
            for e in self.loops[sid]:
                lines += [("↻ " + line, ROLE_FONT, False, "loop") for line in
                          wrap(edge_label(e, lang) + " · " + _role_names(e, roles, lang, wf), ROLE_FONT, 150)]
            returns = _returns_line(wf, sid, lang)
            if returns:
                lines += [(line, ROLE_FONT, False, "loop") for line in wrap(returns, ROLE_FONT, 150)]
            self._add(Node(f"s:{sid}", "state", 2 * rank[sid], lines=lines, state=sid))
        dummies = 0
        for sid in wf.states:
            for e in _drawn(wf, sid):
                is_back = e.key in back
                upper, lower = (e.target, sid) if is_back else (sid, e.target)
                top, bottom = 2 * rank[upper], 2 * rank[lower]
                # the label sits next to the state the edge leaves
                label_row = bottom - 1 if is_back else top + 1
                lines = [(line, LABEL_FONT, True, "action") for line in wrap(edge_label(e, lang), LABEL_FONT, 120, True)]
                lines += [(line, ROLE_FONT, False, "roles") for line in wrap(_role_names(e, roles, lang, wf), ROLE_FONT, 120)]
                chain = [f"s:{upper}"]
                for row in range(top + 1, bottom):
                    if row == label_row:
                        key = f"l:{e.key}"
                        self._add(Node(key, "label", row, lines=lines, edge=e, state=sid))
                    else:
                        dummies += 1
                        key = f"d:{dummies}"
                        self._add(Node(key, "dummy", row))
                    chain.append(key)
                chain.append(f"s:{lower}")
                self.edges.append(Edge(e, chain, is_back))
        self.rows: list[list[Node]] = [[] for _ in range(max(n.row for n in self.nodes.values()) + 1)]
        for node in self.nodes.values():  # insertion order: states in definition order, then labels
            self.rows[node.row].append(node)
        self._order()
        self._place()

    def _add(self, node: Node) -> None:
        if node.kind == "dummy":
            node.width, node.height = 0, 0
        else:
            pad_x, pad_y = (14, 9) if node.kind == "state" else (10, 6)
            node.width = max(text_width(t, size, bold) for t, size, bold, _ in node.lines) + 2 * pad_x
            node.width = max(node.width, 72 if node.kind == "state" else 40)
            node.height = sum(size * 1.35 for _t, size, _b, _r in node.lines) + 2 * pad_y
        self.nodes[node.key] = node

    def _neighbours(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        up: dict[str, list[str]] = {k: [] for k in self.nodes}
        down: dict[str, list[str]] = {k: [] for k in self.nodes}
        for e in self.edges:
            for a, b in zip(e.chain, e.chain[1:]):
                down[a].append(b)
                up[b].append(a)
        return up, down

    def _crossings(self, up: dict[str, list[str]]) -> int:
        total = 0
        for row in self.rows[1:]:
            pos = {n.key: i for r in self.rows for i, n in enumerate(r)}
            segments = [(pos[a], pos[n.key]) for n in row for a in up[n.key]]
            total += sum(1 for i, (a1, b1) in enumerate(segments) for a2, b2 in segments[i + 1:]
                         if (a1 - a2) * (b1 - b2) < 0)
        return total

    def _order(self) -> None:
        """Barycenter sweeps, keeping the order with the fewest crossings."""
        up, down = self._neighbours()
        best = [list(r) for r in self.rows]
        best_score = self._crossings(up)
        for sweep in range(8):
            downwards = sweep % 2 == 0
            indices = range(1, len(self.rows)) if downwards else range(len(self.rows) - 2, -1, -1)
            for i in indices:
                ref = {n.key: j for j, n in enumerate(self.rows[i - 1 if downwards else i + 1])}
                links = up if downwards else down

                def weight(item: tuple[int, Node]) -> float:
                    j, n = item
                    near = [ref[k] for k in links[n.key] if k in ref]
                    return sum(near) / len(near) if near else j
                self.rows[i] = [n for _j, n in sorted(enumerate(self.rows[i]), key=weight)]
            score = self._crossings(up)
            if score < best_score:
                best, best_score = [list(r) for r in self.rows], score
        self.rows = best

    def _place(self) -> None:
        up, down = self._neighbours()
        for row in self.rows:  # first fit, left to right
            x = 0.0
            for n in row:
                n.x = x + n.width / 2
                x += n.width + H_GAP
        for sweep in range(12):
            downwards = sweep % 2 == 0
            indices = range(1, len(self.rows)) if downwards else range(len(self.rows) - 2, -1, -1)
            for i in indices:
                row = self.rows[i]
                links = up if downwards else down
                wanted = []
                for n in row:
                    near = [self.nodes[k].x for k in links[n.key]]
                    wanted.append(sum(near) / len(near) if near else n.x)
                self._fit(row, wanted)
        left = min(n.x - n.width / 2 for n in self.nodes.values())
        for n in self.nodes.values():
            n.x += MARGIN - left
        self.width = max(n.x + n.width / 2 for n in self.nodes.values()) + MARGIN
        y = MARGIN + START_SPACE
        for row in self.rows:
            height = max((n.height for n in row), default=0)
            for n in row:
                n.y = y + (height - n.height) / 2
            y += height + V_GAP
        self.height = y - V_GAP + MARGIN

    @staticmethod
    def _fit(row: list[Node], wanted: list[float]) -> None:
        """Centres as near the wanted ones as the order and the gaps allow (least squares, by pooling
        adjacent violators: with ``x[i] = z[i] + offset[i]`` the gaps hold exactly when ``z`` never decreases)."""
        offsets = [0.0]
        for a, b in zip(row, row[1:]):
            offsets.append(offsets[-1] + (a.width + b.width) / 2 + H_GAP)
        blocks: list[list[float]] = []  # [sum, count] of pooled targets
        for w, o in zip(wanted, offsets):
            blocks.append([w - o, 1])
            while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
                total, count = blocks.pop()
                blocks[-1][0] += total
                blocks[-1][1] += count
        z = [total / count for total, count in blocks for _ in range(int(count))]
        for n, zi, o in zip(row, z, offsets):
            n.x = zi + o


# --------------------------------------------------------------------------- drawing

def _ports(layout: Layout) -> dict[tuple[int, str], float]:
    """Where each edge meets a state: spread along the side, in the order of the next point's x."""
    ends: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for i, e in enumerate(layout.edges):
        ends.setdefault((e.chain[0], "bottom"), []).append((layout.nodes[e.chain[1]].x, i))
        ends.setdefault((e.chain[-1], "top"), []).append((layout.nodes[e.chain[-2]].x, i))
    ports: dict[tuple[int, str], float] = {}
    for (key, side), items in ends.items():
        node = layout.nodes[key]
        items.sort()
        step = min(14.0, node.width * 0.7 / max(len(items), 1))
        for j, (_x, i) in enumerate(items):
            ports[(i, side)] = node.x + (j - (len(items) - 1) / 2) * step
    return ports


def _path(points: Sequence[tuple[float, float]]) -> str:
    """Vertical S-curves between successive points (a straight line through a label box)."""
    (x0, y0), rest = points[0], points[1:]
    d = [f"M{x0:.1f},{y0:.1f}"]
    for x1, y1 in rest:
        if abs(x1 - x0) < 0.5:
            d.append(f"L{x1:.1f},{y1:.1f}")
        else:
            ym = (y0 + y1) / 2
            d.append(f"C{x0:.1f},{ym:.1f} {x1:.1f},{ym:.1f} {x1:.1f},{y1:.1f}")
        x0, y0 = x1, y1
    return " ".join(d)


def el(tag: str, *children: dict[str, Any], text: str | None = None, **attrs: Any) -> dict[str, Any]:
    """One SVG element as plain data: tag and attribute names come from this module; every value and text
    is escaped by the autoescaping template that writes it out (``templates/_svg.html``)."""
    return {"tag": tag, "attrs": [(k.rstrip("_").replace("_", "-"), v) for k, v in attrs.items() if v is not None],
            "text": text, "children": list(children)}


def _arrow(x: float, y: float, pointing_down: bool, color: str) -> dict[str, Any]:
    dy = -9 if pointing_down else 9
    return el("path", d=f"M{x - 5:.1f},{y + dy:.1f} L{x + 5:.1f},{y + dy:.1f} L{x:.1f},{y:.1f} Z", fill=color, stroke="none")


def _text_lines(node: Node, colors: Mapping[str, str]) -> list[dict[str, Any]]:
    out = []
    y = node.y + (9 if node.kind == "state" else 6)
    for text, size, bold, role in node.lines:
        y += size * 1.35
        color = colors["muted"] if role in ("roles", "loop") else colors["text"]
        if role == "title" and "title" in colors:
            color = colors["title"]
        out.append(el("text", text=text, x=f"{node.x:.1f}", y=f"{y - size * 0.35:.1f}", font_size=size,
                      text_anchor="middle", fill=color, font_weight="600" if bold else None))
    return out


def _rect(x: float, y: float, width: float, height: float, **attrs: Any) -> dict[str, Any]:
    return el("rect", x=f"{x:.1f}", y=f"{y:.1f}", width=f"{width:.1f}", height=f"{height:.1f}", **attrs)


def was_taken(e: EdgeSpec, taken: set[tuple[str, ...]]) -> bool:
    """``taken`` holds ``(from, action, to)`` of history entries, or ``(state, transition id)`` pairs."""
    return (e.source, e.via, e.target) in taken or (e.source, e.via) in taken


def _classes(base: str, e: EdgeSpec, taken: bool) -> str:
    return " ".join([base, f"dg-{e.kind}"] + (["dg-clock"] if e.automatic else []) + (["dg-taken"] if taken else []))


def diagram_scene(wf: WorkflowSpec, roles: Mapping[str, RoleSpec], lang: str = "zh", *, current: str | None = None,
                  path: Iterable[str] = (), taken: Iterable[tuple[str, ...]] = (),
                  id_prefix: str = "diagram") -> dict[str, Any]:
    """The workflow as an ``<svg>`` element tree: ``current`` state filled, states in ``path`` and edges
    in ``taken`` (see :func:`was_taken`) outlined in red."""
    layout = Layout(wf, roles, lang)
    visited, done = set(path), set(taken)
    ports = _ports(layout)
    title_id, desc_id = f"{id_prefix}-title", f"{id_prefix}-desc"
    current_title = tr(wf.states[current].title, lang) if current in wf.states else ""
    desc = (("当前状态：" if lang == "zh" else "Current state: ") + current_title) if current_title else ""
    parts = [el("title", text=tr(wf.title, lang), id=title_id)]
    if desc:
        parts.append(el("desc", text=desc, id=desc_id))

    initial = layout.nodes[f"s:{wf.initial}"] if f"s:{wf.initial}" in layout.nodes else None
    if initial is not None:
        sx, sy = initial.x, initial.y - START_SPACE + 6
        parts.append(el("circle", cx=f"{sx:.1f}", cy=f"{sy:.1f}", r="6", fill=COLORS["text"]))
        parts.append(el("path", d=f"M{sx:.1f},{sy + 6:.1f} L{sx:.1f},{initial.y - 9:.1f}", stroke=COLORS["text"],
                        stroke_width="1.5", fill="none"))
        parts.append(_arrow(sx, initial.y, True, COLORS["text"]))

    for i, e in enumerate(layout.edges):
        edge_taken = was_taken(e.spec, done)
        color = COLORS["taken"] if edge_taken else COLORS["line"]
        upper, lower = layout.nodes[e.chain[0]], layout.nodes[e.chain[-1]]
        points = [(ports[(i, "bottom")], upper.bottom)]
        for key in e.chain[1:-1]:
            n = layout.nodes[key]
            points += [(n.x, n.y), (n.x, n.bottom)] if n.kind == "label" else [(n.x, n.y)]
        points.append((ports[(i, "top")], lower.y))
        # leave room for the arrowhead at whichever end it is
        if e.back:
            points[0] = (points[0][0], points[0][1] + 8)
        else:
            points[-1] = (points[-1][0], points[-1][1] - 8)
        head = (_arrow(ports[(i, "bottom")], upper.bottom, False, color) if e.back
                else _arrow(ports[(i, "top")], lower.y, True, color))
        # an objection is the exception to the notice's normal course: dashed
        line = el("path", d=_path(points), fill="none", stroke=color, stroke_width=2.5 if edge_taken else 1.5,
                  stroke_dasharray="6 4" if e.spec.kind == "objection" else None)
        parts.append(el("g", line, head, class_=_classes("dg-edge", e.spec, edge_taken), data_transition=e.spec.key,
                        data_kind=e.spec.kind))

    for n in layout.nodes.values():
        if n.kind == "label":
            assert n.edge is not None
            edge_taken = was_taken(n.edge, done)
            box = _rect(n.x - n.width / 2, n.y, n.width, n.height, rx="10", fill=COLORS["label"],
                        stroke=COLORS["taken"] if edge_taken else COLORS["label_line"], stroke_width=1.5 if edge_taken else 1,
                        stroke_dasharray="4 3" if n.edge.kind == "objection" else None)
            parts.append(el("g", box, *_text_lines(n, COLORS), class_=_classes("dg-label", n.edge, edge_taken),
                            data_transition=n.edge.key, data_kind=n.edge.kind))
        elif n.kind == "state":
            assert n.state is not None
            state = wf.states[n.state]
            is_current, was_visited = n.state == current, n.state in visited
            fill = COLORS["current"] if is_current else COLORS["visited"] if was_visited else COLORS["state"]
            stroke = COLORS["current"] if is_current or was_visited else COLORS["state_line"]
            colors = dict(COLORS, title=COLORS["current_text"], muted="#fbe3e4") if is_current else COLORS
            classes = "dg-state" + (" dg-current" if is_current else "") + (" dg-visited" if was_visited else "") + (
                " dg-final" if state.final else "")
            x0 = n.x - n.width / 2
            shapes = [_rect(x0, n.y, n.width, n.height, rx="6", fill=fill, stroke=stroke,
                            stroke_width=3 if is_current else 2 if was_visited else 1.5)]
            if state.final:  # a double border, as final states are drawn in UML
                shapes.append(_rect(x0 + 3, n.y + 3, n.width - 6, n.height - 6, rx="4", fill="none",
                                    stroke=colors["title"] if is_current else stroke, stroke_width="1"))
            parts.append(el("g", *shapes, *_text_lines(n, colors), class_=classes, data_state=n.state))
    return el("svg", *parts, xmlns="http://www.w3.org/2000/svg", class_="workflow-diagram", role="img",
              aria_labelledby=f"{title_id} {desc_id}" if desc else title_id,
              width=f"{layout.width:.0f}", height=f"{layout.height:.0f}",
              viewBox=f"0 0 {layout.width:.0f} {layout.height:.0f}", font_family=FONT, data_workflow=wf.id)


#: Writes a scene out, escaping every value; the same macro the pages use.
_SVG = Environment(loader=FileSystemLoader(str(Path(__file__).resolve().parents[2] / "templates")), autoescape=True)


def render_svg(wf: WorkflowSpec, roles: Mapping[str, RoleSpec], lang: str = "zh", **marks: Any) -> str:
    """The diagram as SVG text (outside a request: the pages call the ``svg`` macro on :func:`diagram_scene`)."""
    return _SVG.get_template("_svg.html").module.svg(diagram_scene(wf, roles, lang, **marks))


def case_marks(case: Case) -> dict[str, Any]:
    """The current state, the states visited and the edges taken, for :func:`render_svg`: each history entry
    names its edge by ``(from, action, to)`` (``action`` is the transition id, ``object`` or ``ranking``)."""
    taken = {(h["from"], h["action"], h.get("to")) for h in case.history if h.get("from") and h.get("action")}
    return {"current": case.state, "path": case.path_taken(), "taken": taken}


# --------------------------------------------------------------------------- pages

class DiagramCache:
    """Rendered diagrams, kept per app: a case page draws its workflow highlighted for the case, and laying a
    workflow out costs more than the rest of the page. The picture depends only on the workflow, the
    language and the marks (current state, states passed, edges taken), which a few paths through a
    workflow share, so the SVG text (the escaping macro's output) is kept under those, the oldest going first.
    Workflows are told apart by identity: a reloaded definition never meets an old picture."""

    def __init__(self, roles: Mapping[str, RoleSpec], limit: int = 512) -> None:
        self.roles, self.limit = roles, limit
        self._svgs: dict[tuple[Any, ...], tuple[WorkflowSpec, Any]] = {}
        self._lock = Lock()

    def svg(self, wf: WorkflowSpec, lang: str, case: Case | None = None) -> Any:
        marks = case_marks(case) if case is not None else {}
        key = (id(wf), lang, marks.get("current"), tuple(marks.get("path", ())),
               frozenset(marks.get("taken", ())))
        found = self._svgs.get(key)
        if found is not None and found[0] is wf:
            return found[1]
        drawn = _SVG.get_template("_svg.html").module.svg(  # type: ignore[attr-defined]
            diagram_scene(wf, self.roles, lang, id_prefix=f"diagram-{wf.id}", **marks))
        with self._lock:
            if len(self._svgs) >= self.limit:
                self._svgs.pop(next(iter(self._svgs)))
            self._svgs[key] = (wf, drawn)
        return drawn


def diagram_for(workflow: WorkflowSpec, case: Case | None = None) -> "Diagram":
    """What ``_diagram.html`` / ``diagram.html`` show: the picture (SVG text, escaped by the ``svg`` macro)
    and the same moves as text; a view passes it as ``diagram``. Each is worked out when the template first
    reads it (a case page kept rendered, engine.web.fragments, reads neither)."""
    cache = current_app.extensions.get("civicflow.diagrams")
    if cache is None:
        cache = current_app.extensions["civicflow.diagrams"] = DiagramCache(get_engine().definitions.roles)
    return Diagram(cache, workflow, case, current_lang())


class Diagram:
    def __init__(self, cache: DiagramCache, workflow: WorkflowSpec, case: Case | None, lang: str) -> None:
        self._cache, self._workflow, self._case, self._lang = cache, workflow, case, lang

    @functools.cached_property
    def svg(self) -> Any:
        return self._cache.svg(self._workflow, self._lang, self._case)

    @functools.cached_property
    def moves(self) -> dict[str, list[dict[str, Any]]]:
        return diagram_moves(self._workflow, self._case, self._lang)


def diagram_moves(workflow: WorkflowSpec, case: Case | None, lang: str) -> dict[str, list[dict[str, Any]]]:
    """The ways out of each state, for the diagram's text version (``templates/_diagram_text.html``): the
    same edges, names, roles and clock marks as the picture, and whether ``case`` took each."""
    roles = get_engine().definitions.roles
    taken = case_marks(case)["taken"] if case is not None else set()
    moves: dict[str, list[dict[str, Any]]] = {sid: [] for sid in workflow.states}
    for e in workflow.edges:
        if e.aside or (e.kind == "move" and e.via != "return"):  # 催办 / 抄送 and a person's own moves on their task are not drawn
            continue
        target = workflow.states.get(e.target)
        moves.setdefault(e.source, []).append({
            "edge": e, "label": edge_label(e, lang), "roles": _role_names(e, roles, lang, workflow),
            "target": tr(target.title, lang) if target else e.target,
            "taken": tr(TAKEN, lang) if was_taken(e, taken) else "",
            "linked": linked_text(workflow, e, lang)})
    return moves


def linked_text(workflow: WorkflowSpec, e: EdgeSpec, lang: str) -> str:
    """What a transition's ``linked`` moves do to linked cases (需求清单：已签约立项), for the text version."""
    state = workflow.states.get(e.source)
    t = state.transition(e.via) if state is not None and e.kind == "transition" else None
    if t is None or not t.linked:
        return ""
    workflows = get_engine().definitions.workflows
    parts = []
    for spec in t.linked:
        other = workflows.get(spec.workflow)
        taken = next((x for x in other.transitions() if x.id == spec.take), None) if other else None
        name = tr(other.title, lang) if other else spec.workflow
        parts.append(f"{name}{'：' if lang == 'zh' else ': '}{tr(taken.label, lang) if taken else spec.take}")
    return ("；" if lang == "zh" else "; ").join(parts)


@bp.route("/workflows/<workflow_id>/diagram")
@login_required
def workflow(workflow_id: str) -> Any:
    engine = get_engine()
    wf = engine.definitions.workflows.get(workflow_id)
    if wf is None:
        abort(404)
    if not engine.may_start(wf, g.user) and not (set(g.user.roles) & set(wf.roles)):
        abort(403)
    return render_template("diagram.html", workflow=wf, diagram=diagram_for(wf))
