"""The topic vocabulary that names the tree's upper levels offline (see ``tagtree.naming``):
read the shipped outline or a user's file, embed its headings with the run's embedder."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from tagtree.errors import TagtreeError
from tagtree.naming import Vocabulary, make_vocabulary, parse_vocabulary

BUILTIN = "topics_v1.txt"


def vocabulary_text(spec: str) -> str | None:
    """The outline ``spec`` names ('builtin', a file path, or 'none' -> None)."""
    if spec in ("none", ""):
        return None
    if spec == "builtin":
        shipped = resources.files("tagtree") / "resources" / "vocabulary" / BUILTIN
        return shipped.read_text("utf-8")
    path = Path(spec).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TagtreeError(f"tree.vocabulary: no such file {path} (use 'builtin', 'none' or "
                           "the path of an outline with one heading per line)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TagtreeError(f"tree.vocabulary: cannot read {path}: {exc}") from None


def vocabulary_fingerprint(spec: str) -> str:
    """Changes whenever the headings do (a user editing their file rebuilds the tree)."""
    text = vocabulary_text(spec)
    if text is None:
        return "vocabulary:none"
    return "vocabulary:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def builtin_headings() -> list[str]:
    """Every heading of the shipped outline, disciplines and fields (the keyphrase tagger's
    tags for a row without a phrase of its own)."""
    return [h for h, _ in parse_vocabulary(vocabulary_text("builtin").splitlines())]


def load_vocabulary(spec: str, embedder) -> Vocabulary | None:
    text = vocabulary_text(spec)
    if text is None:
        return None
    pairs = parse_vocabulary(text.splitlines())
    if not pairs:
        raise TagtreeError(f"tree.vocabulary: {spec} holds no headings")
    return make_vocabulary(pairs, embedder.embed([h for h, _ in pairs]))
