"""The one typed configuration: precedence, validation, documentation of every knob."""

import pytest

from tagtree.config import Config, env_name, knobs, load_config, parse_budget
from tagtree.errors import TagtreeError


def test_defaults_without_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg, sources = load_config(environ={})
    assert cfg == Config()
    assert sources == {}


def test_precedence_file_env_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tagtree.toml").write_text(
        '[annotate]\nconcurrency = 4\nmax_tags = 9\n[store]\ndb = "file.duckdb"\n')
    env = {"TAGTREE_ANNOTATE_CONCURRENCY": "7", "TAGTREE_DB": "env.duckdb"}
    cfg, sources = load_config(environ=env, overrides={"store.db": "flag.duckdb",
                                                       "annotate.min_tags": None})
    assert cfg.annotate.max_tags == 9 and sources["annotate.max_tags"] == "tagtree.toml"
    assert cfg.annotate.concurrency == 7 and sources["annotate.concurrency"].startswith("env")
    assert cfg.store.db == "flag.duckdb" and sources["store.db"] == "flag"
    assert cfg.annotate.min_tags == 2  # None means "flag not given"


def test_alias_env_vars(tmp_path):
    cfg, _ = load_config(None,
                         environ={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                                  "TAGTREE_LLM_MODEL": "m"})
    assert cfg.llm.base_url == "http://127.0.0.1:9/v1" and cfg.llm.model == "m"


@pytest.mark.parametrize("bad", [
    {"annotate.concurrency": 0},
    {"sample.method": "magic"},
    {"nope.knob": 1},
])
def test_invalid_values_are_user_errors(bad):
    with pytest.raises(TagtreeError):
        load_config(overrides=bad, environ={})


def test_bad_recipe_file(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text("[annotate\n")
    with pytest.raises(TagtreeError, match="invalid TOML"):
        load_config(bad, environ={})
    with pytest.raises(TagtreeError, match="not found"):
        load_config(tmp_path / "missing.toml", environ={})


def test_every_knob_is_documented_and_has_an_env_var():
    for key, _default, help_ in knobs():
        assert help_, f"{key} has no description"
        assert env_name(key).startswith("TAGTREE_")


def test_no_secret_is_a_knob():
    assert not [k for k, _, _ in knobs() if "key" in k and not k.endswith("_env")]


@pytest.mark.parametrize(("budget", "pool", "expected"), [
    ("0.05", 1000, 50), (0.05, 10, 0), ("5000", 1000, 1000), (3, 10, 3), ("0", 10, 0), (1, 5, 1),
])
def test_budget(budget, pool, expected):
    assert parse_budget(budget, pool) == expected


def test_bad_budget():
    with pytest.raises(TagtreeError):
        parse_budget("lots", 10)
    with pytest.raises(TagtreeError):
        parse_budget(-1, 10)
