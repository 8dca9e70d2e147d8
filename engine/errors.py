"""The one family of errors the engine raises, each carrying what a person needs to act on it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


@dataclass(frozen=True, order=True)
class Problem:
    """One mistake in a definition file, with its position (1-based line and column)."""

    file: str
    line: int
    col: int
    path: str
    message: str
    hint: str = field(default="", compare=False)
    #: the definition loads all the same (an old spelling, ``engine.spelling``): ``civicflow lint`` prints it
    #: as ``file:line:col: warning: ...`` and still passes
    warning: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        text = (f"{self.file}:{self.line}:{self.col}: {'warning: ' if self.warning else ''}"
                f"{self.path or '<document>'}: {self.message}")
        return f"{text} ({self.hint})" if self.hint else text


class DefinitionError(EngineError):
    """One or more mistakes in the YAML definitions (for admins)."""

    def __init__(self, problems: Iterable[Problem], warnings: Iterable[Problem] = ()):
        self.problems = sorted(set(problems))
        #: what would load but is still said (``Problem.warning``), found on the way
        self.warnings = sorted(set(warnings))
        super().__init__("\n".join(str(p) for p in self.problems))


class SubmissionError(EngineError):
    """Form input that does not satisfy the form (for staff).

    ``errors`` maps a field path (``"phone"``, ``"attendees.0.name"``, or ``""`` for
    the whole form) to a list of localized messages ``{"zh": ..., "en": ...}``.
    """

    def __init__(self, errors: dict[str, list[dict[str, str]]], values: dict | None = None):
        self.errors = errors
        self.values = values or {}
        super().__init__("; ".join(f"{k or '<form>'}: {m[0]['en']}" for k, m in errors.items()))


class TransitionError(EngineError):
    """An action that is not allowed now (for anyone). ``message`` is localized."""

    status = 409

    def __init__(self, message: dict[str, str]):
        self.message = message
        super().__init__(message["en"])


class NotAllowed(TransitionError):
    status = 403


class NotFound(TransitionError):
    status = 404


class StaleVersion(TransitionError):
    """Someone else changed the case after the user loaded it."""

    def __init__(self) -> None:
        super().__init__({
            "zh": "该事项已被他人修改，请刷新后重试（您填写的内容已保留）。",
            "en": "This case was changed by someone else. Reload and try again (what you typed is kept).",
        })
