"""Hostile-text helpers (pure): secrets scrubbed from URLs and messages, terminal escapes removed.

One place for both, so every writer (store, report, manifest, logs, Prefect parameters, error
messages) and every terminal view uses the same rules:

- ``public_url``: an endpoint URL without ``user:password@`` and without its query string (where
  some gateways put ``?api-key=...``), safe to store or print.
- ``scrub_text`` / ``scrub``: the same for every URL inside a message or a nested structure.
- ``strip_controls``: a tag without ANSI/OSC escape sequences, control or bidi characters.
- ``printable``: any text made safe for a terminal (escapes shown as ``\\x1b``, never obeyed).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"

# scheme://user[:password]@  (userinfo never holds '/', '@' or whitespace)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@")
# ?key=... / &token=... style credentials in a query string
_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:api[-_]?key|key|token|access[-_]?token|secret|password|sig|signature)=)"
    r"[^&\s'\"#]+")
# ANSI CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), other 2-byte ESC sequences, C1 CSI.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]"
                   r"|\x9b[0-?]*[ -/]*[@-~]|\x9d[^\x07\x9c]*(?:\x07|\x9c)?")
# C0/C1 controls, DEL, bidi embeddings/overrides/isolates (which reorder what a terminal shows).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def public_url(url: str | None) -> str | None:
    """``url`` without ``user:password@`` and query string; unchanged when it is not a URL."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # not parseable as a URL: scrub it as text
        return scrub_text(url)
    if not parts.scheme or not parts.netloc:
        return scrub_text(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def scrub_text(text: str) -> str:
    """Every ``scheme://user:pass@`` and ``?key=...`` credential in ``text`` replaced by ***."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", text)
    return _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, text)


def scrub(value: Any) -> Any:
    """``value`` (dicts, lists, tuples, strings, anything else as is) with every string scrubbed."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v) for v in value)
    return value


def strip_controls(text: str) -> str:
    """``text`` without escape sequences and control/bidi characters (tabs and newlines become
    spaces): what a tag may hold."""
    text = _ANSI.sub("", text)
    text = re.sub(r"[\t\n\r\v\f]", " ", text)
    return _CONTROLS.sub("", text)


def printable(text: Any) -> str:
    """``str(text)`` safe to print on a terminal: escape sequences and control characters are
    shown escaped (``\\x1b``), newlines kept."""
    text = str(text)
    if not _CONTROLS.search(text):
        return text
    return _CONTROLS.sub(lambda m: m.group(0) if m.group(0) == "\n" else
                         m.group(0).encode("unicode_escape").decode("ascii"), text)
