"""Ingest from Hugging Face ``datasets``: save_to_disk directories (Dataset, DatasetDict with a
split chosen), Hub-style Parquet folders, and a Dataset object through the Python API. The real
``datasets`` library builds the inputs in the test (no downloads)."""

from __future__ import annotations

import json

# The test extra installs it: these tests fail, never skip, without the real library.
import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tagtree.cli import app
from tagtree.errors import TagtreeError
from tagtree.io.hf import ingest_dataset
from tagtree.io.ingest import ingest_files
from tagtree.io.store import Store

TRAIN = [{"instruction": f"Write a haiku about {w}", "input": "", "output": f"{w} haiku"}
         for w in ("rain", "snow", "wind", "sun", "fog")]
TEST = [{"messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                      {"role": "assistant", "content": str(2 * i)}]} for i in range(3)]


@pytest.fixture
def dataset_dict(tmp_path):
    path = tmp_path / "mydata"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(TRAIN),
                          "test": datasets.Dataset.from_list(TEST)}).save_to_disk(str(path))
    return path


def _instructions(store, dataset: str) -> list[str]:
    return sorted(r[0] for r in store.rows(
        "SELECT i.instruction FROM instances i JOIN instance_sources s ON s.instance_id = i.id "
        "WHERE s.dataset = ?", [dataset]))


def test_a_dataset_dict_saved_to_disk_ingests_the_split_chosen(dataset_dict, db_path):
    with Store(db_path) as store:
        summary = ingest_files(store, [str(dataset_dict)], split="test")
        assert summary.loaded == 3 and summary.quarantined == 0
        assert summary.files[0].format == "openai" and summary.files[0].dataset == "mydata-test"
        assert _instructions(store, "mydata-test") == [f"What is {i} + {i}?" for i in range(3)]
        # no split named: 'train' of several
        summary = ingest_files(store, [str(dataset_dict)])
        assert summary.loaded == 5 and summary.files[0].format == "alpaca"
        assert _instructions(store, "mydata-train") == sorted(r["instruction"] for r in TRAIN)
        # both splits kept side by side: re-reading one does not forget the other
        assert store.count("instances") == 8
        with pytest.raises(TagtreeError, match="no split 'dev'.*train, test|no split 'dev'.*test"):
            ingest_files(store, [str(dataset_dict)], split="dev")


def test_a_plain_dataset_directory_and_the_cli_split_option(dataset_dict, tmp_path, db_path):
    single = tmp_path / "single"
    datasets.Dataset.from_list(TRAIN[:2]).save_to_disk(str(single))
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", str(single), "--db", db_path])
    assert res.exit_code == 0, res.output
    assert "loaded 2" in res.output
    res = runner.invoke(app, ["ingest", str(dataset_dict), "--split", "test", "--db", db_path])
    assert res.exit_code == 0, res.output
    assert "loaded 3" in res.output
    with Store(db_path) as store:
        assert {r[0] for r in store.rows("SELECT name FROM datasets")} == {"single",
                                                                          "mydata-test"}


def test_several_splits_without_train_need_split(tmp_path, db_path):
    path = tmp_path / "evals"
    datasets.DatasetDict({"a": datasets.Dataset.from_list(TEST),
                          "b": datasets.Dataset.from_list(TEST)}).save_to_disk(str(path))
    with Store(db_path) as store, pytest.raises(TagtreeError, match="choose one with --split"):
        ingest_files(store, [str(path)])


def test_a_hub_style_parquet_folder(tmp_path, db_path):
    root = tmp_path / "hub"
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(TRAIN[:3]), root / "data" / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(TRAIN[3:]), root / "data" / "train-00001-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(TEST), root / "data" / "test-00000-of-00001.parquet")
    (root / "README.md").write_text("---\nconfigs: []\n---\n")
    with Store(db_path) as store:
        summary = ingest_files(store, [str(root)], split="train")
        assert summary.loaded == 5  # both shards of the split
        assert _instructions(store, "hub-train") == sorted(r["instruction"] for r in TRAIN)
        summary = ingest_files(store, [str(root)], split="test")
        assert summary.loaded == 3
        lines = sorted(r[0] for r in store.rows(
            "SELECT source_line FROM instance_sources WHERE dataset = 'hub-train'"))
        assert lines == [1, 2, 3, 4, 5]  # rows count on across the shards


def test_a_dataset_object_through_the_python_api(db_path):
    rows = TRAIN + [{"instruction": "", "input": "", "output": "no instruction"}]
    ds = datasets.Dataset.from_list(rows)
    with Store(db_path) as store:
        summary = ingest_dataset(store, ds, name="notebook")
        assert summary.loaded == 5 and summary.quarantined == 1  # the empty one, not lost
        again = ingest_dataset(store, ds, name="notebook")  # idempotent
        assert again.loaded == 0 and again.duplicates == 5
        assert store.count("instances") == 5
        raw = store.rows("SELECT raw FROM instances ORDER BY source_line LIMIT 1")[0][0]
        assert json.loads(raw) == TRAIN[0]  # exported as it came in
        dd = datasets.DatasetDict({"train": ds, "test": datasets.Dataset.from_list(TEST)})
        assert ingest_dataset(store, dd, name="dd", split="test").loaded == 3


def test_the_public_ingest_takes_dataset_objects_and_paths(tmp_path, db_path):
    """`tagtree.ingest` (the library's stage function) takes a notebook's objects too: one
    Dataset, or a list mixing a DatasetDict (split from ingest.split) and a file."""
    import tagtree

    result = tagtree.ingest(db_path, datasets.Dataset.from_list(TRAIN), dataset="nb")
    assert result.loaded == 5 and result["files"][0]["dataset"] == "nb"
    alpaca = tmp_path / "more.jsonl"
    alpaca.write_text(json.dumps({"instruction": "Name a prime", "input": "",
                                  "output": "7"}) + "\n")
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(TRAIN),
                               "test": datasets.Dataset.from_list(TEST)})
    result = tagtree.ingest(db_path, [dd, alpaca], config={"ingest": {"split": "test"}})
    assert result.loaded == 4 and len(result["files"]) == 2  # 3 test rows + the file's row
    with Store(db_path) as store:
        assert store.count("instances") == 9
        assert _instructions(store, "more") == ["Name a prime"]
    with pytest.raises(TagtreeError, match="no split 'dev'"):
        tagtree.ingest(db_path, dd, config={"ingest": {"split": "dev"}})


def test_curate_a_dataset_object_in_a_notebook(tmp_path, monkeypatch):
    """`tagtree.curate(store, [ds])`: a notebook's Dataset is the pool, no file in between
    (offline tagger and tree on 40 example rows: seconds)."""
    import tagtree
    from tests.conftest import EXAMPLES

    for name in list(__import__("os").environ):
        if name.startswith("TAGTREE_") or name == "OPENAI_BASE_URL":
            monkeypatch.delenv(name)
    rows = [json.loads(line) for line in
            (EXAMPLES / "self_instruct_alpaca.jsonl").read_text().splitlines()[:40]]
    ds = datasets.Dataset.from_list(rows)
    out = tmp_path / "sel.jsonl"
    result = tagtree.curate(tmp_path / "nb.duckdb", [ds], datasets=["notebook"], budget=4,
                            out=out)
    assert result["ingest"]["loaded"] == 40 and result["sample"]["selected"] == 4
    picked = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(picked) == 4 and all(p in rows for p in picked)  # records as they came in
    with Store(tmp_path / "nb.duckdb") as store:
        assert store.rows("SELECT name FROM datasets WHERE role = 'pool'") == [("notebook",)]


def test_a_directory_that_is_not_a_dataset_is_still_refused(tmp_path, db_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hi")
    with Store(db_path) as store, pytest.raises(TagtreeError, match="is a directory"):
        ingest_files(store, [str(tmp_path / "plain")])
