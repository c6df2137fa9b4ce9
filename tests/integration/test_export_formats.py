"""Export: ``--out`` file or directory, one merged training file for mixed inputs, and the
trainer formats (Hugging Face ``datasets``, LLaMA-Factory, axolotl) checked against each tool's
documented schema. Real DuckDB files, the real ``datasets`` library."""

from __future__ import annotations

import json

# The test extra installs it: these tests fail, never skip, without the real library.
import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
import yaml
from typer.testing import CliRunner

from tagtree.cli import app
from tagtree.errors import TagtreeError
from tagtree.hierarchy import KnowledgeTree
from tagtree.io.export import plan_out, report_path
from tagtree.io.ingest import ingest_files
from tagtree.io.store import Store
from tagtree.scoring import node_weights
from tagtree.stages.export import run_export
from tagtree.stages.sample import run_sample
from tests.integration.test_sample_store import VERSION, cfg, grounded  # noqa: F401

# LLaMA-Factory's dataset_info.json attributes (LLaMA-Factory data/README.md: "dataset_name":
# {hf_hub_url, ms_hub_url, script_url, cloud_file_name, file_name, formatting, ranking, subset,
# split, folder, num_samples, columns, tags}); the sharegpt "columns" and "tags" keys.
LLAMAFACTORY_ATTRS = {"hf_hub_url", "ms_hub_url", "script_url", "cloud_file_name", "file_name",
                      "formatting", "ranking", "subset", "split", "folder", "num_samples",
                      "columns", "tags"}
LLAMAFACTORY_COLUMNS = {"messages", "system", "tools", "images", "videos", "audios", "chosen",
                        "rejected", "kto_tag"}
LLAMAFACTORY_TAGS = {"role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag",
                     "function_tag", "system_tag"}
# axolotl's SFTDataset fields for a local chat_template dataset (axolotl's dataset schema and
# docs/dataset-formats/conversation.qmd).
AXOLOTL_FIELDS = {"path", "split", "type", "ds_type", "data_files", "name", "chat_template",
                  "field_messages", "message_property_mappings", "roles_to_train",
                  "train_on_eos", "roles", "drop_system_message", "shards", "revision"}


def _selected_instructions(db: str, run_id: str = "run1") -> list[str]:
    with Store(db) as store:
        return store.selection_records(run_id, "tags").column("instruction").to_pylist()


@pytest.fixture
def mixed(db_path, tmp_path):
    """9 instances from two formats in two containers (Alpaca JSON array, ShareGPT Parquet),
    all selected by run 'all'."""
    alpaca = [{"instruction": f"Task {i}", "input": "", "output": f"Answer {i}"} for i in range(5)]
    (tmp_path / "a.json").write_text(json.dumps(alpaca, indent=1))
    chats = [{"conversations": [{"from": "system", "value": "Be brief."},
                                {"from": "human", "value": f"Q{i}"},
                                {"from": "gpt", "value": f"A{i}"}]} for i in range(4)]
    pq.write_table(pa.Table.from_pylist(chats), tmp_path / "c.parquet")
    with Store(db_path) as store:
        ingest_files(store, [str(tmp_path / "a.json"), str(tmp_path / "c.parquet")])
        tree = KnowledgeTree(np.array([2, 2, -1]), np.array([0, 0, 1]), ["x", "y", "r"],
                             size=np.ones(3, dtype=np.int64), version=VERSION)
        store.write_tree(VERSION, tree, np.zeros((3, 2), np.float32), [], np.zeros(0, int),
                         np.zeros(0), {}, {})
        ids = store.pool_ids()
        g = sp.csr_matrix((np.ones(9), (np.arange(9), np.arange(9) % 2)), shape=(9, 2))
        store.write_instance_nodes(VERSION, ids, node_weights(tree, g))
    run_sample(db_path, cfg(budget="100"), VERSION, "all")
    return db_path


def fmt(name: str) -> dict:
    c = cfg()
    c["export"]["format"] = name
    return c


def test_out_with_an_extension_is_a_file_and_without_one_a_directory(grounded, tmp_path):  # noqa: F811
    assert plan_out(tmp_path / "sel.jsonl").file == tmp_path / "sel.jsonl"
    assert plan_out(tmp_path / "sel").file is None
    assert plan_out(f"{tmp_path}/run.v1/").file is None  # a trailing slash: a directory
    assert report_path(tmp_path / "sel.jsonl", "selection") == tmp_path / "sel.report.html"
    assert report_path(tmp_path / "d", "selection") == tmp_path / "d" / "report.html"
    run_sample(grounded, cfg(budget="0.05"), VERSION, "run1")
    out = run_export(grounded, cfg(), "run1", str(tmp_path / "sel.jsonl"))
    assert (tmp_path / "sel.jsonl").is_file()
    assert len((tmp_path / "sel.jsonl").read_text().splitlines()) == 13
    manifest = json.loads((tmp_path / "sel.manifest.json").read_text())
    assert manifest["files"][0]["path"] == str(tmp_path / "sel.jsonl")
    assert out["manifest"] == str(tmp_path / "sel.manifest.json")
    run_export(grounded, cfg(), "run1", str(tmp_path / "picked"))
    assert (tmp_path / "picked").is_dir() and (tmp_path / "picked" / "selection.jsonl").is_file()
    # an extension picks the container: Alpaca records as a Parquet table
    run_export(grounded, cfg(), "run1", str(tmp_path / "sel.parquet"))
    assert pq.read_table(tmp_path / "sel.parquet").column("instruction").length() == 13


def test_an_extension_the_format_cannot_write_is_a_clear_error(grounded, tmp_path):  # noqa: F811
    run_sample(grounded, cfg(budget="5"), VERSION, "run1")
    with pytest.raises(TagtreeError, match="format 'parquet' writes .parquet"):
        run_export(grounded, fmt("parquet"), "run1", str(tmp_path / "sel.csv"))
    # hf writes a directory: a file name for it would again be a directory named sel.jsonl
    with pytest.raises(TagtreeError, match="format 'hf' writes a datasets directory"):
        run_export(grounded, fmt("hf"), "run1", str(tmp_path / "sel.jsonl"))
    assert not (tmp_path / "sel.jsonl").exists()


def test_mixed_inputs_give_one_merged_chat_file_by_default(mixed, tmp_path):
    out = run_export(mixed, cfg(), "all", str(tmp_path / "out"))
    assert out["format"] == "jsonl" and out["rows"] == 9
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "selection.jsonl", "selection.manifest.json"]
    rows = [json.loads(line) for line in (tmp_path / "out" / "selection.jsonl").open()]
    assert len(rows) == 9 and all(set(r) == {"messages"} for r in rows)
    users = sorted(m["content"] for r in rows for m in r["messages"] if m["role"] == "user")
    assert users == sorted([f"Task {i}" for i in range(5)] + [f"Q{i}" for i in range(4)])
    systems = [r["messages"][0] for r in rows if r["messages"][0]["role"] == "system"]
    assert len(systems) == 4 and systems[0]["content"] == "Be brief."


def test_format_input_keeps_one_file_per_input_format(mixed, tmp_path):
    run_export(mixed, fmt("input"), "all", str(tmp_path / "out"))
    array = json.loads((tmp_path / "out" / "selection.alpaca.json").read_text())
    assert sorted(r["instruction"] for r in array) == [f"Task {i}" for i in range(5)]
    table = pq.read_table(tmp_path / "out" / "selection.sharegpt.parquet").to_pylist()
    assert sorted(r["conversations"][1]["value"] for r in table) == [f"Q{i}" for i in range(4)]


def test_hf_export_loads_with_load_from_disk_and_has_the_same_rows(grounded, tmp_path,  # noqa: F811
                                                                    capfd):
    run_sample(grounded, cfg(budget="0.05"), VERSION, "run1")
    run_export(grounded, fmt("jsonl"), "run1", str(tmp_path / "chat.jsonl"))
    capfd.readouterr()
    out = run_export(grounded, fmt("hf"), "run1", str(tmp_path / "hf"))
    assert "Saving the dataset" not in capfd.readouterr().err  # no progress bars of datasets
    assert datasets.utils.logging.is_progress_bar_enabled()  # the caller's setting is back
    ds = datasets.load_from_disk(out["files"][0])
    assert isinstance(ds, datasets.Dataset) and ds.column_names == ["messages"]
    chat = [json.loads(line)["messages"] for line in (tmp_path / "chat.jsonl").open()]
    assert len(ds) == 13 and ds["messages"] == chat
    # the same instances in rank order, as the store holds them
    firsts = [next(m["content"] for m in row if m["role"] == "user") for row in ds["messages"]]
    assert firsts == _selected_instructions(grounded)


def test_a_selection_as_a_dataset_object_in_memory(grounded, tmp_path):  # noqa: F811
    from tagtree.io.hf import selection_dataset

    run_sample(grounded, cfg(budget="0.05"), VERSION, "run1")
    run_export(grounded, fmt("jsonl"), "run1", str(tmp_path / "chat.jsonl"))
    with Store(grounded) as store:
        ds = selection_dataset(store, "run1")
    chat = [json.loads(line)["messages"] for line in (tmp_path / "chat.jsonl").open()]
    assert isinstance(ds, datasets.Dataset) and ds["messages"] == chat


def test_llamafactory_export_matches_its_dataset_info_schema(mixed, tmp_path):
    out_dir = tmp_path / "data"
    out_dir.mkdir()
    (out_dir / "dataset_info.json").write_text(json.dumps({"alpaca_en": {"file_name": "a.json"}}))
    run_export(mixed, fmt("llamafactory"), "all", str(out_dir / "picked.json"))
    info = json.loads((out_dir / "dataset_info.json").read_text())
    assert set(info) == {"alpaca_en", "picked"}  # an existing entry is kept
    entry = info["picked"]
    assert set(entry) <= LLAMAFACTORY_ATTRS and entry["formatting"] == "sharegpt"
    assert set(entry["columns"]) <= LLAMAFACTORY_COLUMNS
    assert set(entry["tags"]) <= LLAMAFACTORY_TAGS
    data = json.loads((out_dir / entry["file_name"]).read_text())
    assert isinstance(data, list) and len(data) == 9
    tags = entry["tags"]
    roles = {tags["user_tag"], tags["assistant_tag"], tags["system_tag"]}
    for record in data:
        messages = record[entry["columns"]["messages"]]
        assert all(set(m) == {tags["role_tag"], tags["content_tag"]} for m in messages)
        assert {m[tags["role_tag"]] for m in messages} <= roles
        turns = [m for m in messages if m[tags["role_tag"]] != tags["system_tag"]]
        # LLaMA-Factory's sharegpt converter wants user/assistant turns in alternation
        assert [m[tags["role_tag"]] for m in turns] == [tags["user_tag"], tags["assistant_tag"]]


def test_axolotl_export_gives_a_dataset_block_to_paste(mixed, tmp_path):
    out = run_export(mixed, fmt("axolotl"), "all", str(tmp_path / "ax"))
    block = yaml.safe_load((tmp_path / "ax" / "selection.axolotl.yml").read_text())
    assert out["config"] == [str(tmp_path / "ax" / "selection.axolotl.yml")]
    (entry,) = block["datasets"]
    assert set(entry) <= AXOLOTL_FIELDS
    assert entry["type"] == "chat_template" and entry["ds_type"] == "json"
    rows = [json.loads(line) for line in open(entry["path"])]
    assert len(rows) == 9
    mapping = entry["message_property_mappings"]
    for row in rows:
        for m in row[entry["field_messages"]]:
            assert set(m) == {mapping["role"], mapping["content"]}
    assert entry["roles_to_train"] == ["assistant"]


def test_sample_cli_out_file_and_formats(grounded, tmp_path):  # noqa: F811
    runner = CliRunner()
    res = runner.invoke(app, ["sample", "--db", grounded, "--budget", "5", "--format", "axolotl",
                              "--out", str(tmp_path / "ax.jsonl")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ax.jsonl").is_file() and (tmp_path / "ax.axolotl.yml").is_file()
    assert "type: chat_template" in res.output  # the block to paste is printed
