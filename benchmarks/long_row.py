"""One huge row through annotate: what a 50 MB instruction/response costs the annotate stage.

    .venv/bin/python benchmarks/long_row.py [--mb 50]

Writes one real-looking row of ``--mb`` MB (a response of repeated prose between a head and a
tail), ingests it into a DuckDB store, then times ``annotate_store`` against the loopback fake
OpenAI server (LLM tagger: truncation, token counting, the request) and the offline keyphrase
tagger (MiniLM), each on its own. Prints the seconds each spent and the size of the text that was
sent / embedded. Target (issue 14): a 50 MB row costs annotate no more than ~1 s and is truncated
for the request.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=50.0)
    args = ap.parse_args(argv)

    from tagtree.config import load_config
    from tagtree.io.annotator import annotate_store, open_tagger
    from tagtree.io.ingest import ingest_files
    from tagtree.io.store import Store
    from tests.support.openai_server import FakeOpenAIServer

    filler = "filler words about sorting arrays "
    body = filler * int(args.mb * 1e6 // len(filler))
    row = {"instruction": "Explain binary search on a sorted array.",
           "output": "Binary search halves the interval each step. " + body
           + " In the end the answer is found at index 41."}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.jsonl"
        path.write_text(json.dumps(row) + "\n")
        with Store(str(Path(tmp) / "s.duckdb")) as store:
            ingest_files(store, [str(path)])
            (size,) = store.rows("SELECT length(response) FROM instances")[0]
            print(f"one row, response {size / 1e6:.1f} MB")
            with FakeOpenAIServer() as srv:
                cfg, _ = load_config(None, {"llm.base_url": srv.base_url, "llm.model": "fake",
                                            "llm.timeout_s": 30.0}, environ={})
                with open_tagger(cfg) as tagger:
                    started = time.perf_counter()
                    summary = annotate_store(store, tagger)
                    llm_s = time.perf_counter() - started
                sent = max(len(m["content"]) for b in srv.chat_requests() if b
                           for m in b.get("messages", []))
            print(f"LLM tagger (loopback fake server): annotate {llm_s:.2f} s, {summary.ok} ok; "
                  f"longest message sent {sent:,} characters; target <= ~1 s")
            cfg, _ = load_config(None, {}, environ={})
            with open_tagger(cfg) as tagger:
                tagger.embedder.embed(["warm up"])  # the model load is not the row's cost
                started = time.perf_counter()
                summary = annotate_store(store, tagger)
                kp_s = time.perf_counter() - started
            print(f"keyphrase tagger (offline default): annotate {kp_s:.2f} s, {summary.ok} ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
