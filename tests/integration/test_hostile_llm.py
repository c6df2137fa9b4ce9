"""Hostile endpoints (issue 16): answers nested a thousand levels deep, escape sequences, huge
Retry-After, mid-body closes, refused and hanging endpoints, credentials in the URL. Each case
runs the real client against the fault-injecting loopback server (tests/support/openai_server.py)
and a real DuckDB file, and asserts the exit code or outcome, the message, rows kept and that
nothing secret was written."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tagtree.config import load_config
from tagtree.io.annotator import annotate_store, open_tagger
from tagtree.io.ingest import ingest_files
from tagtree.io.store import Store
from tests.support.openai_server import FakeOpenAIServer, default_responder

REPO = Path(__file__).resolve().parents[2]


def seed(store, tmp_path, n: int) -> int:
    path = tmp_path / f"pool{n}.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"Explain item{i:05d} recursion in python",
                                        "output": f"Answer {i}."}) + "\n" for i in range(n)))
    ingest_files(store, [str(path)])
    return n


def config(base_url: str, **knobs):
    overrides = {"llm.base_url": base_url, "llm.model": "fake-tagger",
                 "llm.max_retries": 2, "llm.timeout_s": 1.0, "annotate.concurrency": 4}
    cfg, _ = load_config(None, overrides | knobs, environ={})
    return cfg


def run(store, cfg, **kw):
    with open_tagger(cfg) as tagger:
        tagger.llm.backoff_base_s = 0.01
        return tagger, annotate_store(store, tagger, **kw)


def answer_for(item: str, text: str):
    """A responder answering ``text`` to the instance holding ``item``, tags to the others."""
    def respond(body: dict) -> str:
        return text if item in body["messages"][-1]["content"] else default_responder(body)
    return respond


def statuses(store) -> dict[str, int]:
    return dict(store.rows("SELECT status, count(*) FROM annotations GROUP BY 1"))


@pytest.mark.parametrize("depth", [1000, 5000, 100_000])
def test_an_answer_nested_thousands_deep_fails_that_instance_only(tmp_path, db_path, depth):
    # The same answer every time (temperature 0): the content retry meets it again.
    with FakeOpenAIServer(answer_for("item00003", "[" * depth)) as srv, \
            Store(db_path) as store:
        seed(store, tmp_path, 12)
        _, summary = run(store, config(srv.base_url))
        assert (summary.ok, summary.failed, summary.requested) == (11, 1, 12)
        assert statuses(store) == {"ok": 11, "failed": 1}
        (error,) = store.rows("SELECT error FROM annotations WHERE status = 'failed'")[0]
        assert error.startswith("no tag list in response: '[[[[") and len(error) < 200


def test_deeply_nested_list_that_parses_gives_a_bounded_message():
    from tagtree.annotation import TagError, clean_tags, parse_tags

    nested = "[" * 300 + "]" * 300  # parses (under the recursion limit), holds no string
    with pytest.raises(TagError, match="too few valid tags") as exc:
        clean_tags(parse_tags('{"tags": [' + nested + ', "one tag"]}'), 2, 12)
    assert len(str(exc.value)) < 200


def test_retry_after_is_capped(tmp_path, db_path):
    from tagtree.io.llm import AsyncLLM

    assert AsyncLLM("http://127.0.0.1:9/v1", "m")._backoff(0, 100_000.0) == 60.0  # the default
    with FakeOpenAIServer() as srv, Store(db_path) as store:
        seed(store, tmp_path, 8)
        srv.inject("429", count=3, retry_after=100_000)  # ~28 h if obeyed
        started = time.monotonic()
        _, summary = run(store, config(srv.base_url, **{"llm.max_retry_after_s": 0.3}))
        assert time.monotonic() - started < 10
        assert (summary.ok, summary.failed) == (8, 0)
        statuses_seen = [r["status"] for r in srv.requests if r["path"].endswith("completions")]
        assert statuses_seen.count(429) == 3


WAIT_SCRIPT = """
import sys
from tagtree.config import load_config
from tagtree.io.annotator import annotate_store, open_tagger
from tagtree.io.store import Store
cfg, _ = load_config(None, {"llm.base_url": sys.argv[2], "llm.model": "fake-tagger",
                            "annotate.concurrency": 4, "llm.max_retry_after_s": 3600},
                     environ={})
with Store(sys.argv[1]) as store, open_tagger(cfg) as tagger:
    print(annotate_store(store, tagger).line(), flush=True)
"""


def test_answers_are_stored_while_every_request_waits_out_a_retry_after(tmp_path, db_path):
    """The stall that lost 43 of 299 answers: every request in flight waits on Retry-After, no
    result arrives to trigger a flush. A kill during the wait must find the answers stored."""
    with FakeOpenAIServer(latency=0.02) as srv:
        with Store(db_path) as store:
            seed(store, tmp_path, 400)
        env = os.environ | {"PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-c", WAIT_SCRIPT, db_path, srv.base_url],
                                env=env, cwd=REPO)
        try:
            def answered() -> int:
                return sum(1 for r in srv.requests
                           if r["path"].endswith("completions") and r["status"] == 200)

            deadline = time.monotonic() + 60
            while answered() < 20 and time.monotonic() < deadline:
                time.sleep(0.01)
            srv.inject("429", count=10_000, retry_after=100_000)
            while time.monotonic() < deadline and sum(
                    1 for r in srv.requests if r["status"] == 429) < 4:
                time.sleep(0.01)
            time.sleep(3.0)  # > flush_seconds: every answer has arrived, no new one will
            assert proc.poll() is None, "the run must be waiting, not finished"
            n_answered = answered()
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert 20 <= n_answered < 400
    with Store(db_path) as store:
        assert statuses(store) == {"ok": n_answered}


PASSWORD, API_KEY = "hunter2pw", "sk-KEYSECRET123"


def with_credentials(base_url: str) -> str:
    return base_url.replace("http://", f"http://bob:{PASSWORD}@")


def secrets_in(root: Path) -> list[str]:
    """Every file under ``root`` holding the password or the API key (bytes, any format)."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if PASSWORD.encode() in data or API_KEY.encode() in data:
                hits.append(str(path.relative_to(root)))
    return hits


def cli(args, env=None):
    from typer.testing import CliRunner

    from tagtree.cli import app

    return CliRunner().invoke(app, args, env=env)


def test_a_401_names_the_endpoint_without_its_password(tmp_path, db_path):
    with FakeOpenAIServer() as srv:
        with Store(db_path) as store:
            seed(store, tmp_path, 5)
        srv.inject("status", count=100, code=401, message="bad key")
        result = cli(["annotate", "--llm-base-url", with_credentials(srv.base_url),
                      "--llm-model", "fake-tagger", "--db", db_path],
                     env={"OPENAI_API_KEY": API_KEY})
    assert "authentication failed (HTTP 401)" in str(result.exception)
    assert srv.base_url in str(result.exception)
    assert PASSWORD not in str(result.exception) + result.output
    assert secrets_in(tmp_path) == []


def test_config_show_does_not_print_a_password_in_the_url():
    result = cli(["config", "show"],
                 env={"TAGTREE_LLM_BASE_URL": f"http://bob:{PASSWORD}@h:1/v1", "COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "***@h:1" in result.output and PASSWORD not in result.output


def secret_columns(db: str) -> list[str]:
    """Every ``table.column`` of the store whose values (cast to text) hold a secret. DuckDB
    compresses strings on disk (dictionary, FSST), so a byte grep of the file alone could miss
    a stored secret: each column is searched with SQL as well."""
    hits = []
    with Store(db, read_only=True) as store:
        columns = store.rows("SELECT table_name, column_name FROM information_schema.columns "
                             "WHERE table_schema = 'main'")
        for table, column in columns:
            text = f'CAST("{column}" AS VARCHAR)'
            n = store.scalar(f'SELECT count(*) FROM "{table}" WHERE {text} LIKE ? OR {text} '
                             "LIKE ?", [f"%{PASSWORD}%", f"%{API_KEY}%"])
            if n:
                hits.append(f"{table}.{column}")
    return hits


def prefect_rows(db: Path) -> dict:
    """Rows of Prefect's database that hold what a leak would be in: flow-run parameters, task
    runs and log lines; and every table searched for a secret (as text)."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("flow_run", "task_run", "log")}
        counts["parameters"] = " ".join(
            str(p) for (p,) in con.execute("SELECT parameters FROM flow_run"))
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts["rows holding a secret"] = sum(
            1 for t in tables for row in con.execute(f'SELECT * FROM "{t}"')
            if PASSWORD in repr(row) or API_KEY in repr(row))
    finally:
        con.close()
    return counts


@pytest.mark.slow
def test_no_secret_in_store_report_manifest_logs_or_prefect_database(tmp_path):
    """`tagtree curate` (the Prefect flow) against a URL with user:password@ and an API key in
    the env: neither is in any of the five places a run writes (the DuckDB store, the report,
    the manifest, the logs, Prefect's database), nor in its output. Each place is first shown
    to exist and to hold what a leak would be in, then searched: every file's bytes, the
    store's columns with SQL, Prefect's tables row by row."""
    home = tmp_path / "prefect-home"
    env = os.environ | {"PYTHONPATH": str(REPO), "PREFECT_HOME": str(home),
                        "OPENAI_API_KEY": API_KEY, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    tagtree = str(Path(sys.executable).with_name("tagtree"))
    db, out = tmp_path / "store.duckdb", tmp_path / "out"
    with FakeOpenAIServer() as srv:
        proc = subprocess.run(
            [tagtree, "curate", str(REPO / "examples" / "mt_bench.jsonl"), "--prefect",
             "--llm-base-url", with_credentials(srv.base_url), "--llm-model", "fake-tagger",
             "--db", str(db), "--out", str(out)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
        auth = {r["auth"] for r in srv.requests if r["path"].endswith("/chat/completions")}
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # The password was in play: the client sent it (HTTP basic auth from the URL's userinfo,
    # which takes the Authorization header; the key stays in the environment of the run).
    assert auth == {"Basic " + base64.b64encode(f"bob:{PASSWORD}".encode()).decode()}
    # 1. the store: the URL is recorded, scrubbed; no column holds a secret
    with Store(str(db), read_only=True) as store:
        (config,) = store.rows("SELECT config FROM runs")[0]
    assert "***@127.0.0.1" in config
    assert secret_columns(str(db)) == []
    # 2-3. the report (which shows the run's configuration) and the manifest
    assert "***@127.0.0.1" in (out / "report.html").read_text()
    assert "config" in json.loads((out / "selection.manifest.json").read_text())
    # 4-5. Prefect's database: the flow run, its tasks and their log lines
    counts = prefect_rows(home / "prefect.db")
    # (Task runs and log lines reach the database through background workers; under load a
    # few may be missing when the command ends, so only some are required.)
    assert counts["flow_run"] >= 1 and counts["task_run"] + counts["log"] >= 1, counts
    assert "overrides" in counts["parameters"]  # where llm.base_url leaked before
    assert counts["rows holding a secret"] == 0, counts
    # every file the run left, byte for byte (store and its WAL, outputs, Prefect's home)
    assert secrets_in(tmp_path) == []
    assert PASSWORD not in proc.stdout + proc.stderr and API_KEY not in proc.stdout + proc.stderr


def test_the_secret_searches_find_a_planted_secret(tmp_path):
    """The searches above can fail: a secret written into a store column, a Prefect-like
    SQLite table or any file is found."""
    import sqlite3

    db = str(tmp_path / "s.duckdb")
    with Store(db) as store:
        store.start_run("run-x", "curate", {"url": f"http://bob:{PASSWORD}@h/v1"})  # scrubbed
    assert secret_columns(db) == []
    with Store(db) as store:
        store.rows("INSERT INTO meta VALUES (?, ?)", ["note", f"http://bob:{PASSWORD}@h/v1"])
    assert secret_columns(db) == ["meta.value"]
    con = sqlite3.connect(tmp_path / "p.db")
    for t in ("flow_run", "task_run", "log"):
        con.execute(f"CREATE TABLE {t} (x TEXT, parameters TEXT)")
    con.execute("INSERT INTO log VALUES (?, NULL)", [f"key {API_KEY}"])
    con.commit()
    con.close()
    assert prefect_rows(tmp_path / "p.db")["rows holding a secret"] == 1
    assert "p.db" in secrets_in(tmp_path)


def test_escape_sequences_from_the_llm_never_reach_the_terminal(tmp_path, db_path):
    with FakeOpenAIServer() as srv:
        with Store(db_path) as store:
            seed(store, tmp_path, 6)
        srv.inject("escape", count=100)
        result = cli(["annotate", "--llm-base-url", srv.base_url, "--llm-model", "fake-tagger",
                      "--db", db_path, "--show", "6"])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\u202e" not in result.output
    assert "red alert" in result.output and "click here" in result.output
    with Store(db_path) as store:
        tags = {t for (ts,) in store.rows("SELECT tags FROM annotations") for t in ts}
    assert tags == {"red alert", "window title", "click here", "hidden cursor", "evil bidi"}


def test_escape_sequences_in_file_names_and_errors_are_shown_escaped(tmp_path):
    bad = tmp_path / "pool\x1b]0;owned\x07\x1b[2J.jsonl"
    bad.write_text(json.dumps({"instruction": "Explain recursion", "output": "It is."}) + "\n")
    db = str(tmp_path / "s.duckdb")
    assert cli(["ingest", str(bad), "--db", db]).exit_code == 0
    stats = cli(["stats", "--db", db], env={"COLUMNS": "200"})
    assert stats.exit_code == 0 and "pool" in stats.output
    assert "\x1b" not in stats.output and "\\x1b" in stats.output
    tagtree = str(Path(sys.executable).with_name("tagtree"))
    proc = subprocess.run([tagtree, "ingest", str(tmp_path / "gone\x1b[2J.jsonl"), "--db", db],
                          capture_output=True, text=True, timeout=120,
                          env=os.environ | {"PYTHONPATH": str(REPO)})
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: input file not found:") and "\x1b" not in proc.stderr
    assert "gone\\x1b[2J.jsonl" in proc.stderr


def annotate_cli(db: str, base_url: str, *extra: str, timeout_s: float = 1.0):
    """`tagtree annotate` as a user runs it (a real process): (exit code, stderr, seconds)."""
    tagtree = str(Path(sys.executable).with_name("tagtree"))
    env = os.environ | {"PYTHONPATH": str(REPO), "TAGTREE_LLM_TIMEOUT_S": str(timeout_s)}
    started = time.monotonic()
    proc = subprocess.run([tagtree, "annotate", "--llm-base-url", base_url, "--llm-model",
                           "fake-tagger", "--db", db, *extra], capture_output=True, text=True,
                          timeout=300, env=env)
    return proc.returncode, proc.stderr, time.monotonic() - started


def test_connection_refused_stops_at_once_with_exit_2(tmp_path, db_path):
    from tests.support.openai_server import refused_url

    with Store(db_path) as store:
        seed(store, tmp_path, 300)
    url = refused_url()
    code, err, seconds = annotate_cli(db_path, with_credentials(url), "--concurrency", "16")
    assert code == 2, err
    assert err.startswith(f"error: LLM endpoint {url} is unreachable:") and "refused" in err
    assert PASSWORD not in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert seconds <= 15
    with Store(db_path) as store:
        assert store.scalar("SELECT count(*) FROM instances") == 300  # nothing lost


@pytest.mark.parametrize("concurrency", [1, 4])
def test_an_endpoint_that_never_answers_chat_trips_the_breaker(tmp_path, db_path, concurrency):
    """/models answers (the probe passes), every chat request hangs: stopped after at most two
    request timeouts, exit 2, the URL named; the answers before the outage are kept."""
    with FakeOpenAIServer() as srv:
        with Store(db_path) as store:
            seed(store, tmp_path, 300)
        code, err, _ = annotate_cli(db_path, srv.base_url, "--limit", "5")
        assert code == 0, err
        srv.inject("hang", count=100_000)
        code, err, seconds = annotate_cli(db_path, srv.base_url, "--concurrency",
                                          str(concurrency), timeout_s=3.0)
    assert code == 2, err
    assert err.startswith(f"error: LLM endpoint {srv.base_url} is unreachable:"), err
    assert "in a row failed (timeout after 3 s)" in err and len(err.splitlines()) == 1
    assert seconds <= 2 * 3.0 + 15  # 8 timeouts one after another would take 24 s
    with Store(db_path) as store:
        assert statuses(store).get("ok") == 5


def test_an_endpoint_that_accepts_and_never_answers_fails_the_probe(tmp_path, db_path):
    from tests.support.openai_server import SilentServer

    with Store(db_path) as store:
        seed(store, tmp_path, 300)
    with SilentServer() as silent:
        code, err, seconds = annotate_cli(db_path, silent.base_url, timeout_s=2.0)
    assert code == 2, err
    assert err.strip() == (f"error: LLM endpoint {silent.base_url} is unreachable: no answer "
                           "within 2 s. Check llm.base_url (--llm-base-url) and that the server "
                           "is up; finished work is kept, re-run to resume")
    assert seconds <= 2 * 2.0 + 15


def test_a_flaky_connection_does_not_trip_the_breaker(tmp_path, db_path):
    """Mid-body closes and resets are retried per request; they prove the server is there."""
    with FakeOpenAIServer() as srv, Store(db_path) as store:
        seed(store, tmp_path, 40)
        srv.inject("midbody", count=6)
        srv.inject("reset", count=6)
        _, summary = run(store, config(srv.base_url, **{"llm.max_retries": 4}))
        assert (summary.ok, summary.failed) == (40, 0)
        assert statuses(store) == {"ok": 40}


def test_every_request_is_counted_against_its_instance_failed_ones_too(tmp_path, db_path):
    """Attempts and tokens of failed instances were under-counted (577 requests seen, 439
    recorded): the stored attempts now add up to the requests the server received."""
    def respond(body: dict) -> str:
        text = body["messages"][-1]["content"]
        if "item00003" in text:
            raise RuntimeError("always a 500 for this one")
        if "item00005" in text:
            return "no tags here"  # a content failure, asked twice
        return default_responder(body)

    with FakeOpenAIServer(respond) as srv, Store(db_path) as store:
        seed(store, tmp_path, 30)
        for kind, kw in [("429", {"retry_after": 0.01}), ("reset", {}), ("malformed", {}),
                         ("slow", {"seconds": 1.5}), ("empty", {})]:
            srv.inject(kind, count=2, **kw)
        tagger, summary = run(store, config(srv.base_url, **{"llm.max_retries": 6}))
        attempts, tokens_in, failed = store.rows(
            "SELECT sum(attempts), sum(prompt_tokens), count(*) FILTER (WHERE status = 'failed') "
            "FROM annotations")[0]
        per_item = dict(store.rows(
            "SELECT substr(i.instruction, 9, 9), a.attempts FROM annotations a JOIN instances i "
            "ON i.id = a.instance_id WHERE a.status = 'failed'"))
    # (On a loaded machine an injected slow answer may time out more often: others may fail too.)
    assert failed >= 2 and summary.failed == failed
    assert attempts == len(srv.chat_requests())
    # Each failed item's attempts are exactly the requests the server saw for it. An injected
    # fault may land on either item (a malformed answer to item00003 is a content failure with
    # its own re-ask), so the floor is the fault-free count: 1 + max_retries 500s for item00003
    # and two tagless answers (the content retry) for item00005.
    for item, floor in [("item00003", 7), ("item00005", 2)]:
        seen = sum(item in r["messages"][-1]["content"] for r in srv.chat_requests())
        assert per_item[item] == seen >= floor, item
    assert tokens_in == summary.prompt_tokens > 0
