"""Export stage: selections + instances -> files (the selection, a manifest) and ``exports`` rows.

Formats: ``input`` writes each selected record exactly as it was read (``instances.raw``) in the
container it came in: JSONL lines, one JSON array, or Parquet rows; a selection drawn from several
input formats gets one file per format. ``jsonl`` writes OpenAI chat ``{"messages": [...]}`` lines
(what most fine-tuning tools read); ``parquet`` one row per instance with normalised columns. The
manifest records the run, method, budget, tree version, configuration, metrics and every file's
row count and SHA-256.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from tagtree.errors import TagtreeError
from tagtree.formats import normalize_record


def _container(source_file: str) -> str:
    name = source_file.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".json"):
        return "json"
    return "jsonl"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _messages(raw: str, fmt: str) -> list[dict]:
    norm = normalize_record(orjson.loads(raw), fmt)
    head = [{"role": "system", "content": norm.system}] if norm.system.strip() else []
    return head + [{"role": role, "content": text} for role, text in norm.turns]


def _write_raw(path: Path, raws: list[str], container: str) -> None:
    if container == "parquet":
        pq.write_table(pa.Table.from_pylist([orjson.loads(r) for r in raws]), path)
    elif container == "json":
        path.write_text("[\n" + ",\n".join(raws) + "\n]\n", encoding="utf-8")
    else:
        path.write_text("".join(r + "\n" for r in raws), encoding="utf-8")


def write_selection_files(records: pa.Table, out_dir: Path, name: str, fmt: str) -> list[dict]:
    """Write the records; returns [{path, kind, rows}] (kind: 'selection')."""
    rows = records.to_pylist()
    files: list[tuple[Path, list[dict], str]] = []
    if fmt == "input":
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in rows:
            groups.setdefault((r["format"], _container(r["source_file"])), []).append(r)
        ext = {"jsonl": "jsonl", "json": "json", "parquet": "parquet"}
        for (in_fmt, container), members in sorted(groups.items()):
            stem = name if len(groups) == 1 else f"{name}.{in_fmt}"
            path = out_dir / f"{stem}.{ext[container]}"
            _write_raw(path, [m["raw"] for m in members], container)
            files.append((path, members, fmt))
        if not groups:  # an empty selection still yields a (empty) file
            path = out_dir / f"{name}.jsonl"
            path.write_text("", encoding="utf-8")
            files.append((path, [], fmt))
    elif fmt == "jsonl":
        path = out_dir / f"{name}.jsonl"
        with open(path, "wb") as fh:
            for r in rows:
                fh.write(orjson.dumps({"messages": _messages(r["raw"], r["format"])}) + b"\n")
        files.append((path, rows, fmt))
    elif fmt == "parquet":
        path = out_dir / f"{name}.parquet"
        table = pa.table({
            "id": [r["id"] for r in rows], "dataset": [r["dataset"] for r in rows],
            "format": [r["format"] for r in rows], "rank": [r["rank"] for r in rows],
            "instruction": [r["instruction"] for r in rows],
            "response": [r["response"] for r in rows], "system": [r["system"] for r in rows],
            "messages": [orjson.dumps(_messages(r["raw"], r["format"])).decode() for r in rows]})
        pq.write_table(table, path)
        files.append((path, rows, fmt))
    else:
        raise TagtreeError(f"unknown export format {fmt!r}; choose input, jsonl or parquet")
    return [{"path": str(p), "kind": "selection", "rows": len(m)} for p, m, _ in files]


def export_selection(store, run_id: str, method: str, out_dir: str | Path, *, fmt: str = "input",
                     name: str = "selection", manifest: dict | None = None,
                     location: str | None = None) -> dict:
    """Write the selection of (run, method) and its manifest; record both in ``exports``.

    ``location``: where ``out_dir``'s files are published afterwards (e.g. an s3:// prefix);
    the manifest, the ``exports`` rows and the returned paths then name them there."""
    records = store.selection_records(run_id, method)
    if records.num_rows == 0 and not store.scalar(
            "SELECT count(*) FROM selection_metrics WHERE run_id = ? AND method = ?",
            [run_id, method]):
        raise TagtreeError(f"no '{method}' selection for run {run_id} (run `tagtree sample`)")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TagtreeError(f"cannot create output directory {out}: {exc.strerror}") from None
    files = write_selection_files(records, out, name, fmt)

    def published(path: str | Path) -> str:
        if location is None:
            return str(path)
        return location.rstrip("/") + "/" + Path(path).relative_to(out).as_posix()

    for f in files:
        f["sha256"] = _sha256(Path(f["path"]))
        f["path"] = published(f["path"])
    doc = {"run_id": run_id, "method": method, "format": fmt, "selected": records.num_rows,
           "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "files": files} | (manifest or {})
    manifest_path = out / f"{name}.manifest.json"
    manifest_path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 |
                                           orjson.OPT_SERIALIZE_NUMPY))
    entries = files + [{"path": published(manifest_path), "kind": "manifest",
                        "rows": len(files), "sha256": _sha256(manifest_path)}]
    for e in entries:
        store.write_export(run_id, e["path"], e["kind"], e["rows"], e["sha256"])
    return {"run_id": run_id, "method": method, "rows": records.num_rows,
            "files": [e["path"] for e in entries], "manifest": published(manifest_path)}
