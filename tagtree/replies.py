"""Reading JSON out of a model's reply (tags, critiques, judge ratings, tree names): the one
parser every caller shares. Models wrap JSON in code fences, chat around it, or answer with
Python literals (single quotes, trailing commas); a hostile reply may nest a thousand levels."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON|javascript|js)?\s*(.*?)```", re.DOTALL)


def json_candidates(text: str) -> Iterable[str]:
    """The spans of ``text`` that may hold the JSON value, most likely first: fenced blocks,
    the whole text, the outermost {...} and [...] spans (chatter before/after dropped)."""
    for m in _FENCE.finditer(text):
        yield m.group(1)
    yield text
    for open_, close in (("{", "}"), ("[", "]")):
        start, end = text.find(open_), text.rfind(close)
        if 0 <= start < end:
            yield text[start:end + 1]


def loads_lenient(candidate: str) -> Any:
    """A JSON (or Python-literal) value, or None. Never raises: a hostile answer nested a
    thousand levels deep is just unreadable (RecursionError), not a crash of the whole run."""
    candidate = candidate.strip()
    try:
        return json.loads(candidate)
    except (ValueError, RecursionError):
        pass
    try:  # single quotes, trailing commas and Python literals: {'tags': ['a', 'b',]}
        return ast.literal_eval(candidate)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def json_object(text: str | None) -> dict[str, Any] | None:
    """The first JSON object found in the reply, or None."""
    for candidate in json_candidates(text or ""):
        value = loads_lenient(candidate)
        if isinstance(value, dict):
            return value
    return None
