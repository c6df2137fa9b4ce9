"""Screenshot a tagtree report with headless Chromium (the README's and docs/report.md's image).

    python scripts/report_screenshot.py --report out/report.html --out docs/img/report.png

Uses the system Chromium (Debian: ``apt-get install chromium``) through Playwright; never
downloads a browser. The report works offline, so the page is opened straight from the file.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

# The same flags as the Prefect UI screenshot (no sandbox as root, no background traffic).
from ui_screenshot import CHROMIUM_ARGS  # noqa: E402 - scripts/ is on sys.path when run


def screenshot(report: Path, out: Path, *, chromium: str, width: int = 1280,
               height: int = 1100) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(report.resolve().as_uri(), wait_until="load")
            page.wait_for_timeout(500)  # the charts draw after load
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=False)
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", default="out/report.html", type=Path)
    parser.add_argument("--out", default="docs/img/report.png", type=Path)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"error: no report at {args.report} (run `make demo` first)", file=sys.stderr)
        return 2
    if not Path(args.chromium).exists():
        print(f"error: no Chromium at {args.chromium} (apt-get install chromium)", file=sys.stderr)
        return 2
    screenshot(args.report, args.out, chromium=args.chromium)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
