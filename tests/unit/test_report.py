"""Report stage: aggregates gathered from a real DuckDB store, the HTML page, task, CLI, summary."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape

from tagtree.errors import TagtreeError
from tagtree.io.store import Store
from tagtree.io.store.report import gather_report_data
from tagtree.report_figures import kl_divergence, normalized_entropy
from tagtree.report_page import render_report, script_json

XSS = "<script>alert(1)</script>"
STUB_JS = "window.TTCharts = {};"  # the real chart code is drawn by the browser test


@pytest.fixture
def data(report_db):
    with Store(report_db, read_only=True) as store:
        return gather_report_data(store)


def _top(data, name):
    return next(n for n in data["tree"]["nodes"] if n["name"] == name and n["parent"] < 0)


def _ids_under(db, node_id, extra_sql="", params=()):
    """Independent count: grounding rows name the node itself (the fixture writes ancestors)."""
    with Store(db, read_only=True) as store:
        return store.scalar(
            "SELECT count(DISTINCT i.instance_id) FROM instance_nodes i JOIN instance_sources s "
            "ON s.instance_id = i.instance_id JOIN datasets d ON d.name = s.dataset "
            f"WHERE i.node_id = ? AND d.role = 'pool' {extra_sql}", [node_id, *params])


def test_defaults_pick_the_run_tree_and_method(data):
    assert data["meta"]["run_id"] == "run-1"
    assert data["meta"]["tree_version"] == "tv1"
    assert data["meta"]["method"] == "tags"  # the run's configured sample.method
    assert data["meta"]["methods"] == ["random", "tags"]
    assert data["tree"]["n_selected"] == 40 and data["tree"]["n_target"] == 20


def test_node_counts_match_an_independent_query(data, report_db):
    for name in data["top_level"]["names"]:
        node = _top(data, name)
        assert node["pool"] == _ids_under(report_db, node["id"])
        assert node["selected"] == _ids_under(
            report_db, node["id"], "AND i.instance_id IN (SELECT instance_id FROM selections "
            "WHERE run_id = ? AND method = ?)", ("run-1", "tags"))


def test_grounding_on_leaves_only_gives_the_same_counts(data, report_db):
    """Grounding may store leaf rows only: ancestors are derived from the tree."""
    with Store(report_db) as store:
        store.run("DELETE FROM instance_nodes WHERE node_id NOT IN (SELECT node_id FROM "
                  "tree_nodes WHERE level = 0)")
        leaves_only = gather_report_data(store)
    for a, b in zip(data["tree"]["nodes"], leaves_only["tree"]["nodes"], strict=True):
        assert (a["pool"], a["selected"], a["pool_mass"]) == (b["pool"], b["selected"],
                                                              b["pool_mass"])


def test_shares_add_up_and_alignment_moves_toward_the_target(data):
    top = data["top_level"]
    for group in ("pool", "selected", "target"):
        assert sum(top[group]) == pytest.approx(1.0, abs=1e-3)
    coding = top["names"].index("Coding & Math")
    assert top["target"][coding] == pytest.approx(1.0)  # the target is coding and math only
    assert top["selected"][coding] > top["pool"][coding]
    kl = {r["method"]: r["kl"] for r in data["kl"]}
    assert kl["tags"] < kl["pool"] < kl["random"]
    assert data["levels"]["coverage"]["pool"] == [1.0, 1.0, 1.0]


def test_examples_put_selected_first_and_are_cut(report_db):
    cfg = {"report": {"examples_per_node": 2, "example_chars": 40, "tags_per_node": 3}}
    with Store(report_db, read_only=True) as store:
        data = gather_report_data(store, cfg=cfg)
    coding = _top(data, "Coding & Math")
    assert [e["selected"] for e in coding["examples"]] == [True, True]
    assert coding["examples"][0]["text"] == "Fix this page: " + XSS  # rank 0 of the selection
    assert all(len(e["text"]) <= 42 for n in data["tree"]["nodes"] for e in n["examples"])
    assert any(e["text"].endswith(" …") for n in data["tree"]["nodes"] for e in n["examples"])
    assert all(len(n["tags"]) <= 3 for n in data["tree"]["nodes"])


def test_details_only_for_the_most_prominent_nodes(report_db):
    with Store(report_db, read_only=True) as store:
        data = gather_report_data(store, cfg={"report": {"detail_nodes": 3}})
    nodes = data["tree"]["nodes"]
    detailed = [n for n in nodes if n["detail"]]
    assert [n["level"] for n in detailed] == [2, 2, 2]  # the top level first
    assert {n["name"] for n in detailed} == set(data["top_level"]["names"][:3])  # most mass
    assert all(n["tags"] and n["examples"] for n in detailed)
    assert not any(n["tags"] or n["examples"] or n["description"] for n in nodes
                   if not n["detail"])
    page = render_report(data, chart_js=STUB_JS)
    payload = re.search(r'id="report-data">(.*?)</script>', page, flags=re.DOTALL).group(1)
    assert len(json.loads(payload)["tree"]["details"]) == 3


def test_baselines_merge_computed_and_stored_metrics(data):
    rows = {r["method"]: r for r in data["baselines"]["rows"]}
    assert list(rows) == ["pool", "random", "tags"]
    assert rows["tags"]["win rate"] == pytest.approx(0.61)  # from selection_metrics
    assert rows["tags"]["selected"] == 40 and rows["pool"]["selected"] == 333
    assert rows["pool"]["leaf_coverage"] == 1.0 and 0 < rows["tags"]["leaf_coverage"] < 1
    assert rows["tags"]["mean_quality"] > rows["random"]["mean_quality"]
    assert rows["tags"]["kl_target"] == {r["method"]: r["kl"] for r in data["kl"]}["tags"]
    assert data["quality"]["selected_mean"] == pytest.approx(rows["tags"]["mean_quality"],
                                                             abs=1e-3)
    assert sum(data["quality"]["pool"]) == 333


def test_stored_metrics_win_over_computed_ones(report_db):
    with Store(report_db) as store:
        store.run("INSERT INTO selection_metrics VALUES ('run-1', 'tags', 'kl_target', 9.5)")
        data = gather_report_data(store)
    rows = {r["method"]: r for r in data["baselines"]["rows"]}
    assert rows["tags"]["kl_target"] == 9.5


def test_kl_matches_the_sampling_stage(data):
    """Same smoothing and formula as tagtree.align, which the sampler optimises."""
    from tagtree import align

    nodes = data["tree"]["nodes"]
    leaves = [n for n in nodes if n["level"] == 0]
    target = np.array([n["target_share"] for n in leaves])
    pool = np.array([n["pool_share"] for n in leaves])
    eps = data["meta"]["kl_smoothing"]
    expected = align.kl_divergence(align.smoothed(target, eps), align.smoothed(pool, eps))
    assert {r["method"]: r["kl"] for r in data["kl"]}["pool"] == pytest.approx(expected, abs=1e-3)


def test_manifest(data):
    man = data["manifest"]
    assert man["run"]["status"] == "completed"
    assert {r["dataset"] for r in man["inputs"]} >= {"mt_bench", "target_coding_math"}
    assert man["quarantine"] == [{"reason": "invalid_json", "field": "", "rows": 1}]
    assert man["fingerprints"]["prompt"] == "tags-v1"  # the run's own fingerprints
    assert man["fingerprints"]["tagger keyphrase:v1:3f2a"].startswith("353 annotations")
    assert man["timings"]["annotate"] == 12.5 and "run wall clock" in man["timings"]
    assert man["cost"]["estimated USD"] == pytest.approx((353 * 120 * 0.15 + 353 * 20 * 0.6) / 1e6,
                                                         abs=1e-4)
    assert man["counts"]["tree nodes per level (top→leaves)"] == "4 / 9 / 18"


def test_unknown_run_and_missing_tree_are_user_errors(report_db, store):
    with Store(report_db, read_only=True) as s, pytest.raises(TagtreeError, match="no run 'nope'"):
        gather_report_data(s, run_id="nope")
    with Store(report_db, read_only=True) as s, pytest.raises(TagtreeError, match="no selection"):
        gather_report_data(s, method="deita")
    with pytest.raises(TagtreeError, match="no knowledge tree"):
        gather_report_data(store)


def test_a_tree_without_selection_or_target_still_renders(report_db):
    with Store(report_db) as store:
        store.run("DELETE FROM selections")
        store.run("DELETE FROM runs")
        store.run("UPDATE datasets SET role = 'pool'")
        data = gather_report_data(store)
    assert data["meta"]["method"] is None and data["kl"] == []
    assert data["tree"]["n_selected"] == 0
    assert "<html" in render_report(data, chart_js=STUB_JS)


def test_metric_helpers():
    p = np.array([0.5, 0.5, 0.0])
    assert kl_divergence(p, p, 1e-6) == pytest.approx(0.0, abs=1e-9)
    assert kl_divergence(p, np.array([0.0, 0.5, 0.5]), 1e-6) > 5  # misses half the target
    assert kl_divergence(p, np.array([0.0, 0.5, 0.5]), 1e-2) < kl_divergence(
        p, np.array([0.0, 0.5, 0.5]), 1e-6)
    assert normalized_entropy(np.ones(4)) == pytest.approx(1.0)
    assert normalized_entropy(np.array([3.0, 0, 0])) == 0.0
    assert normalized_entropy(np.array([1.0, 1.0, 0, 0]), n_reachable=2) == pytest.approx(1.0)


_CHARS = st.characters(blacklist_categories=("Cs",))  # DuckDB text is valid UTF-8
_TEXT = st.text(_CHARS) | st.sampled_from(
    ["</script>", "</SCRIPT ", "<!--<script>", "&amp;", "\u2028", XSS])


@settings(max_examples=60, deadline=None)
@given(st.recursive(_TEXT | st.integers(-(2**63), 2**63 - 1) | st.none(),
                    lambda kids: st.lists(kids, max_size=3)
                    | st.dictionaries(st.text(_CHARS, max_size=5), kids, max_size=3), max_leaves=8))
def test_script_json_never_contains_markup_and_round_trips(value):
    text = script_json(value)
    assert not set(text) & {"<", ">", "&"}
    assert json.loads(text) == value


def test_page_escapes_data_and_runs_only_its_own_scripts(data):
    data["manifest"]["fingerprints"]["<img src=x onerror=alert(2)>"] = "</td><script>x()</script>"
    page = render_report(data, chart_js=STUB_JS + " // </script> in a comment")
    assert XSS not in page and "<img src=x" not in page and "<script>x()" not in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page  # static tables show it as text
    scripts = re.findall(r"<script\b[^>]*>", page, flags=re.IGNORECASE)
    assert len(scripts) == 3 and len(re.findall(r"</script", page, flags=re.IGNORECASE)) == 3
    nonce = re.search(r"script-src 'nonce-([0-9a-f]+)'", page).group(1)
    assert scripts[1:] == [f'<script nonce="{nonce}">'] * 2
    payload = re.search(r'id="report-data">(.*?)</script>', page, flags=re.DOTALL).group(1)
    tree = json.loads(payload)["tree"]
    assert tree["columns"]["name"] == [n["name"] for n in data["tree"]["nodes"]]
    coding = _top(data, "Coding & Math")
    assert tree["details"][str(coding["id"])]["examples"][0]["text"] == "Fix this page: " + XSS
    assert "connect-src 'none'" in page and "default-src 'none'" in page


HOSTILE = ["</script><script>alert(3)</script>", "</SCRIPT\t><img src=x onerror=alert(4)>",
           "<!--<script>", "\u2028</script >&lt;b&gt;", "{{ 7*7 }}{% raw %}"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_tag_instruction_and_names_stay_text(data, hostile):
    """A tag, an instruction, a node name, a run id and a manifest value holding markup (or
    template syntax) reach the page as text: no element of theirs, the JSON round-trips."""
    coding = _top(data, "Coding & Math")
    coding["name"] = "node " + hostile
    coding["tags"] = [hostile, "plain tag"]
    coding["examples"] = [{"text": "Instruction: " + hostile, "selected": True}]
    data["meta"]["run_id"] = "run " + hostile
    data["manifest"]["inputs"] = [{"path": hostile, "rows": 1}]
    page = render_report(data, chart_js=STUB_JS)
    assert hostile not in page or "<" not in hostile  # markup never arrives as markup
    assert len(re.findall(r"<script\b", page, flags=re.IGNORECASE)) == 3
    assert len(re.findall(r"</script", page, flags=re.IGNORECASE)) == 3
    body = page.split('<script type="application/json"', 1)[0]
    assert "<img" not in body and "<!--" not in body
    assert str(escape(hostile)) in body  # shown as text (template syntax not evaluated either)
    payload = re.search(r'id="report-data">(.*?)</script>', page, flags=re.DOTALL).group(1)
    assert not set(payload) & {"<", ">", "&"}
    parsed = json.loads(payload)
    assert parsed["meta"]["run_id"] == "run " + hostile
    assert parsed["tree"]["details"][str(coding["id"])]["tags"][0] == hostile
    assert parsed["tree"]["details"][str(coding["id"])]["examples"][0]["text"].endswith(hostile)
    assert "node " + hostile in parsed["tree"]["columns"]["name"]


def test_page_carries_only_its_own_chart_code(data):
    page = render_report(data)
    library = re.search(r"<script nonce=[^>]*>(.*?)</script>", page, flags=re.DOTALL).group(1)
    assert "TTCharts" in library and "function sunburst" in library
    assert len(library) < 40_000  # a sunburst, bars and lines, not a whole charting library
    assert "plotly" not in page.lower()
    assert not re.search(r"(src|href)=", page) and "<link" not in page
    assert len(page.encode()) < 2_000_000


def test_task_writes_the_file_and_returns_a_summary(report_db, tmp_path):
    from tasks.report import report

    out = tmp_path / "sub" / "report.html"
    summary = report.fn(report_db, {"report": {"examples_per_node": 1}}, "run-1", str(out))
    assert summary["path"] == str(out.resolve()) and out.stat().st_size == summary["bytes"]
    assert summary["run_id"] == "run-1" and summary["selected"] == 40
    assert summary["kl"]["tags"] < summary["kl"]["pool"]
    json.dumps(summary)  # JSON-able, for Prefect results


def test_cli_report(report_db, tmp_path):
    from typer.testing import CliRunner

    from tagtree.cli import app

    out = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["report", "--db", report_db, "--run", "run-1", "--method",
                                   "random", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "selected by random" in res.output and out.exists()
    res = CliRunner().invoke(app, ["report", "--db", str(tmp_path / "none.duckdb")])
    assert isinstance(res.exception, TagtreeError)


def test_summary_table_prints_stage_figures_as_text():
    from rich.console import Console

    from tagtree.cli.summary import print_summary

    console = Console(record=True, width=200)
    print_summary({"run_id": "r1", "db": "x.duckdb",
                   "ingest": {"line": "ingested 2 file(s): loaded 332", "seconds": 1.25},
                   "sample": {"method": "[bold]tags[/]", "selected": 17000, "kl": 0.25,
                              "files": [1, 2]},
                   "report": {"path": "out/report.html", "bytes": 5_000_000},
                   "outputs": {"selection": ["out/a.jsonl", "out/b.jsonl"]},
                   "timings": {"sample": 3.25}}, console)
    text = console.export_text()
    assert "out/a.jsonl, out/b.jsonl" in text and "3.2" in text and "timings" not in text
    assert "ingested 2 file(s): loaded 332" in text and "1.2" in text
    assert "method [bold]tags[/], selected 17,000, kl 0.25" in text
    assert "report: out/report.html" in text and "curate run r1" in text
    assert "bytes 5.0 MB" in text
