"""Regenerate the README's configuration reference from the code (`tagtree config show --markdown`).

Usage: python scripts/sync_readme.py [--check]   (--check exits 1 when the README is stale)
"""

from __future__ import annotations

import sys
from pathlib import Path

from tagtree.config import knobs_markdown

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- knobs:start -->", "<!-- knobs:end -->"


def synced(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{knobs_markdown()}\n{END}{tail}"


def main() -> int:
    text = README.read_text(encoding="utf-8")
    new = synced(text)
    if "--check" in sys.argv:
        if new != text:
            print("README.md configuration reference is stale: run python scripts/sync_readme.py")
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
