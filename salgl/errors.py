"""One exception type for problems the user can fix; the CLI prints it as one line."""

from __future__ import annotations

import unicodedata
from typing import Any

# A value quoted in an error message is cut here: the message stays one readable line even
# when the value is a whole expanded YAML tree or a megabyte string.
SHOWN_CHARS = 80


class SalglError(Exception):
    """Bad input or settings: the message names the file, line or params key to fix."""


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, control characters escaped (repr does)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 5]} ...{text[-1]}"


def _unsafe(char: str) -> bool:
    """Control, format, unassigned or private characters and line/paragraph separators:
    what could move the cursor, recolour a terminal or break a one-line message."""
    category = unicodedata.category(char)
    return category[0] == "C" or category in ("Zl", "Zp")


def printable(text: str, limit: int | None = None) -> str:
    """``text`` with every unsafe character escaped as Python writes it (\\x1b, \\n,
    \\u202e), so a stored name shown on a terminal is seen, never obeyed; ``limit`` cuts
    long text (error messages)."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    return "".join(repr(ch)[1:-1] if _unsafe(ch) else ch for ch in text)


def stored_value(value: Any) -> str:
    """A stored value (a model file's metadata) as a message shows it: short scalars and text
    as written (escaped, cut at 60 characters), containers by their kind only."""
    if isinstance(value, str):
        return f"'{printable(value, 60)}'"
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)[:60]
    return f"a {type(value).__name__}"
