"""Accessibility checks in the browser tests: axe-core (vendored, tests/browser/vendor/) run in the page."""
from __future__ import annotations

from pathlib import Path
from typing import Any

AXE = (Path(__file__).parent / "vendor" / "axe-4.14.1.min.js").read_text(encoding="utf-8")
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Every axe violation on the page as it is now: rule id, impact, and the first few elements."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE)
    return page.evaluate("""async (tags) => {
        const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}});
        return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                            nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
    }""", RULES)


def assert_accessible(page: Any, where: str = "") -> None:
    found = axe_violations(page)
    assert found == [], f"axe violations{' on ' + where if where else ''}: {found}"


violations = axe_violations  # the name the editor's browser tests use
