"""The languages Whisper knows, for the language picker ("auto" lets the model detect it)."""

from __future__ import annotations

from whisperfarm.languages import NAMES

__all__ = ["AUTO", "NAMES"]

AUTO = "auto"


def options() -> dict[str, str]:
    """Picker options: auto-detect first, then every language by name."""
    by_name = sorted(NAMES.items(), key=lambda item: item[1])
    return {AUTO: "Auto-detect", **{code: f"{name} ({code})" for code, name in by_name}}


def label(code: str | None) -> str:
    """How a job's language is shown: `English (en)`, or the code if unknown."""
    if not code:
        return ""
    name = NAMES.get(code)
    return f"{name} ({code})" if name else code


def to_request(choice: str | None) -> str | None:
    """The picker's value as the `start` message's `language` (None: detect)."""
    return None if not choice or choice == AUTO or choice not in NAMES else choice
