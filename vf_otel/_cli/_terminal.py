"""Writing to the terminal: ANSI colour only on a TTY without NO_COLOR, and safe text."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TextIO

__all__ = ["Style", "counted", "one_line", "printable", "to_json"]

_RESET: Final = "\033[0m"
_BOLD: Final = "1"
_DIM: Final = "2"
_RED: Final = "31"
_GREEN: Final = "32"
_YELLOW: Final = "33"
_CYAN: Final = "36"
#: Server messages shown in a diagnosis are cut to this many characters.
MAX_SHOWN_CHARS: Final = 200


@dataclass(frozen=True, slots=True)
class Style:
    """Wraps text in ANSI colours, or leaves it alone when ``colour`` is off."""

    colour: bool

    @classmethod
    def for_stream(cls, stream: TextIO, environ: Mapping[str, str] | None = None) -> Style:
        """Colour when ``stream`` is a terminal and NO_COLOR is unset or empty (no-color.org)."""
        env = os.environ if environ is None else environ
        isatty = getattr(stream, "isatty", None)
        return cls(bool(isatty is not None and isatty()) and not env.get("NO_COLOR"))

    def _paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}{_RESET}" if self.colour else text

    def bold(self, text: str) -> str:
        """Bold text."""
        return self._paint(text, _BOLD)

    def dim(self, text: str) -> str:
        """Faint text."""
        return self._paint(text, _DIM)

    def red(self, text: str) -> str:
        """Red text: failures."""
        return self._paint(text, _RED)

    def green(self, text: str) -> str:
        """Green text: success, events."""
        return self._paint(text, _GREEN)

    def yellow(self, text: str) -> str:
        """Yellow text: warnings, replays."""
        return self._paint(text, _YELLOW)

    def cyan(self, text: str) -> str:
        """Cyan text: users."""
        return self._paint(text, _CYAN)


def printable(text: str) -> str:
    """``text`` itself, or JSON-quoted when it holds control characters (no terminal tricks)."""
    return text if text.isprintable() else json.dumps(text)


def to_json(value: Any) -> str:
    """Compact one-line JSON; non-ASCII is kept unless it includes control characters."""
    shown = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return shown if shown.isprintable() else json.dumps(value, default=str)


def one_line(text: str) -> str:
    """Whitespace collapsed, control characters escaped, cut to MAX_SHOWN_CHARS."""
    flat = printable(" ".join(text.split()))
    return flat if len(flat) <= MAX_SHOWN_CHARS else flat[: MAX_SHOWN_CHARS - 1] + "…"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 user upsert``, ``2 user upserts``: the count and the noun in the right number."""
    return f"{count} {noun if count == 1 else (plural or noun + 's')}"
