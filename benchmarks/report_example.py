"""The report of the example data, as a new user gets it: the real offline pipeline
(``tagtree.curate``: keyphrase tagger, shipped MiniLM, no LLM) on the README demo's inputs,
then the report opened in headless Chromium (Debian's package through Playwright; never a
browser download) with every request the page makes recorded and every non-file one refused.
Prints the report's size in bytes, the requests, console errors and the load time.

    .venv/bin/python benchmarks/report_example.py [--dir /tmp/tagtree-report-example]

Budget (issue 18): <= 2 MB, and no network request (only the file itself is loaded). Exits 1
when either is missed. About a minute on 2 cores (the tagger takes most); a second run reuses
the store's annotations.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BUDGET_BYTES = 2_000_000
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-gpu"]


def curate_example(work: Path) -> Path:
    import tagtree

    result = tagtree.curate(work / "demo.duckdb", [EXAMPLES / "self_instruct_alpaca.jsonl"],
                            target=EXAMPLES / "target_coding_math.jsonl", out=work / "out")
    print(result.line)
    return Path(result["report"]["path"])


def open_offline(report: Path, chromium: str) -> dict:
    """Load the report; every request is recorded, anything but the file itself aborted."""
    from playwright.sync_api import sync_playwright

    seen: dict = {"requests": [], "refused": [], "errors": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def route(r):
                if r.request.url == report.as_uri():
                    r.continue_()
                else:
                    seen["refused"].append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.on("console", lambda m: m.type == "error" and seen["errors"].append(m.text))
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            started = time.perf_counter()
            page.goto(report.as_uri(), wait_until="load")
            page.wait_for_selector("body[data-rendered='1']", timeout=15_000)
            seen["load_s"] = time.perf_counter() - started
            page.wait_for_timeout(500)  # anything a chart would fetch after drawing
            seen["tree_labels"] = len(page.locator("#tree-chart text").all_text_contents())
        finally:
            browser.close()
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/tagtree-report-example", type=Path)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    report = curate_example(args.dir).resolve()
    size = report.stat().st_size
    print(f"report of the example data: {report} {size:,} bytes "
          f"({size / 1e6:.3f} MB; budget {BUDGET_BYTES / 1e6:.0f} MB)")
    if not Path(args.chromium).exists():
        print(f"no Chromium at {args.chromium} (apt-get install -y chromium): not opened")
        return 1
    seen = open_offline(report, args.chromium)
    others = [u for u in seen["requests"] if u != report.as_uri()]
    print(f"opened in headless Chromium in {seen['load_s']:.2f} s: {len(seen['requests'])} "
          f"request(s), {len(others)} besides the file itself {others}, console errors "
          f"{len(seen['errors'])} {seen['errors'][:3]}, tree labels drawn {seen['tree_labels']}")
    ok = size <= BUDGET_BYTES and not others and not seen["errors"] and seen["tree_labels"] > 0
    print("budget met" if ok else "budget MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
