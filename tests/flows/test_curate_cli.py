"""`tagtree curate` from the command line under Prefect's test harness: a Hugging Face
DatasetDict saved to disk in (split chosen), `--out sel.jsonl` out as a file with its sidecars."""

from __future__ import annotations

import json

# The test extra installs it: these tests fail, never skip, without the real library.
import datasets
import orjson
import pytest
from typer.testing import CliRunner

from tagtree.cli import app
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_curate_a_dataset_dict_into_one_file(tmp_path, fake_llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    rows = [orjson.loads(line) for line in
            (EXAMPLES / "self_instruct_alpaca.jsonl").read_text().splitlines()]
    src = tmp_path / "pool"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:200]),
                          "test": datasets.Dataset.from_list(rows[200:])}).save_to_disk(str(src))
    out = tmp_path / "sel.jsonl"
    res = CliRunner().invoke(app, [
        "curate", str(src), "--split", "train", "--budget", "10", "--out", str(out),
        "--db", str(tmp_path / "c.duckdb"), "--llm-base-url", fake_llm.base_url,
        "--llm-model", "fake-tagger"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert out.is_file()  # a file, not a directory named sel.jsonl
    picked = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(picked) == 10
    train = {r["instruction"] for r in rows[:200]}
    assert all(p["instruction"] in train for p in picked)  # from the split asked for
    assert (tmp_path / "sel.manifest.json").is_file() and (tmp_path / "sel.report.html").is_file()
