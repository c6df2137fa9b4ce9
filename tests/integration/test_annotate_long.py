"""A real 50 MB row through ingest, the DuckDB store, the LLM tagger and the loopback fake
OpenAI server: the request carries a truncated text (instruction head, response head + tail).
Its cost is measured by hand / in benchmarks, not asserted here."""

from __future__ import annotations

import json

from tagtree.annotation import TRUNCATION_MARK
from tagtree.config import load_config
from tagtree.io.annotator import annotate_store, open_tagger
from tagtree.io.ingest import ingest_files
from tagtree.io.store import Store
from tests.support.openai_server import FakeOpenAIServer


def test_a_50_mb_row_is_truncated_for_the_request(tmp_path):
    head = "Binary search halves the interval each step. "
    tail = " In the end the answer is item00000 found at index 41."
    body = "filler words about sorting arrays " * (50_000_000 // 34)
    path = tmp_path / "pool.jsonl"
    path.write_text(json.dumps({"instruction": "Explain item00000 binary search.",
                                "output": head + body + tail}) + "\n")
    with FakeOpenAIServer() as srv, Store(str(tmp_path / "s.duckdb")) as store:
        ingest_files(store, [str(path)])
        (size,) = store.rows("SELECT length(response) FROM instances")[0]
        assert size > 50_000_000
        cfg, _ = load_config(None, {"llm.base_url": srv.base_url, "llm.model": "fake-tagger",
                                    "llm.timeout_s": 5.0}, environ={})
        with open_tagger(cfg) as tagger:
            summary = annotate_store(store, tagger)
        assert summary.ok == 1, summary
        (request,) = [b for b in srv.chat_requests() if b and b.get("messages")]
        content = request["messages"][-1]["content"]
        assert len(content) < 20_000, len(content)  # 1,024 tokens, not 50 MB
        assert TRUNCATION_MARK.strip() in content and head.strip() in content
        assert content.rstrip().endswith(tail.strip()) or tail.strip()[-20:] in content
