"""Screenshot a completed flow run in the Prefect UI with headless Chromium (orchestration docs).

    python scripts/ui_screenshot.py --ui http://127.0.0.1:4200 --out docs/img/prefect-run.png

Picks the newest Completed run of ``--flow`` (default: curate) through the API unless
``--flow-run-id`` is given, opens its page and saves a PNG. Exits non-zero when the server has no
such run or the page does not show it as Completed. Uses the system Chromium (Debian:
``apt-get install chromium``) through Playwright; never downloads a browser.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]


def latest_completed_run(api: str, flow: str) -> dict | None:
    body = {"flows": {"name": {"any_": [flow]}},
            "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
            "sort": "END_TIME_DESC", "limit": 1}
    runs = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).raise_for_status().json()
    return runs[0] if runs else None


def screenshot(ui: str, run_id: str, out: Path, *, run_name: str | None = None,
               chromium: str = "/usr/bin/chromium", timeout_s: float = 60) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{ui.rstrip('/')}/runs/flow-run/{run_id}", wait_until="networkidle",
                      timeout=timeout_s * 1000)
            try:
                page.get_by_text("Completed", exact=True).first.wait_for(
                    state="visible", timeout=timeout_s * 1000)
                if run_name:
                    page.get_by_text(run_name).first.wait_for(state="visible", timeout=5000)
            except PlaywrightTimeout:
                raise SystemExit(f"the page of flow run {run_id} shows no Completed run") from None
            page.wait_for_timeout(1500)  # let the run graph finish drawing
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=False)
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ui", default="http://127.0.0.1:4200", help="Prefect server base URL")
    parser.add_argument("--out", default="docs/img/prefect-run.png", type=Path)
    parser.add_argument("--flow", default="curate", help="flow name whose newest run to show")
    parser.add_argument("--flow-run-id", help="show this run instead")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for the page")
    args = parser.parse_args(argv)
    api = args.ui.rstrip("/") + "/api"
    run_id, run_name = args.flow_run_id, None
    if not run_id:
        run = latest_completed_run(api, args.flow)
        if run is None:
            print(f"error: no Completed run of flow '{args.flow}' on {args.ui}", file=sys.stderr)
            return 1
        run_id, run_name = run["id"], run["name"]
    try:
        screenshot(args.ui, run_id, args.out, run_name=run_name, chromium=args.chromium,
                   timeout_s=args.timeout)
    except SystemExit as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"saved {args.out} (flow run {run_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
