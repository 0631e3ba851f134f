"""Secrets that never show themselves, and the scrubbing of secret values out of any text."""

from typing import Iterable


class Secret:
    """A string that never shows itself in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def redact(text: object, secrets: Iterable[str]) -> str:
    """Replace every secret value inside text with ***."""
    text = str(text)
    for value in sorted(secrets, key=len, reverse=True):
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text
