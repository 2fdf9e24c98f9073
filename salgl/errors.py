"""One exception type for problems the user can fix; the CLI prints it as one line."""

from __future__ import annotations

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
