"""Export stage: selections + instances -> files (the selection, a manifest) and ``exports`` rows.

Where: ``out`` with a file extension (``sel.jsonl``) is the data file itself, the manifest (and
the report) go beside it as sidecars (``sel.manifest.json``); ``out`` without one is a directory
holding ``<name>.<ext>``, ``<name>.manifest.json`` and the report.

Formats (``export.format``):
- ``auto`` (default): one training file. A selection from one input format keeps its records as
  they came in (``input``); one that mixes formats is merged into one conversation file
  (``jsonl``: OpenAI chat ``messages``, which TRL, axolotl and most tools read).
- ``input``: each record exactly as read (``instances.raw``) in its container; one file per
  (format, container) when inputs mix.
- ``jsonl``: ``{"messages": [...]}`` per line (a ``.json`` or ``.parquet`` out path changes the
  container, not the shape).
- ``parquet``: one row per instance with normalised columns.
- ``hf``: a Hugging Face ``datasets`` directory (``save_to_disk``) with a ``messages`` column.
- ``llamafactory``: ShareGPT-style ``conversations`` JSON plus its entry in ``dataset_info.json``.
- ``axolotl``: ``messages`` JSONL plus ``<name>.axolotl.yml``, the ``datasets:`` block to paste.
The manifest records the run, method, budget, tree version, configuration, metrics and every
file's row count and SHA-256.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from tagtree.errors import TagtreeError
from tagtree.formats import normalize_record
from tagtree.io.atomic import atomic_open, atomic_path, write_bytes_atomic, write_text_atomic

FORMATS = ("auto", "input", "jsonl", "parquet", "hf", "llamafactory", "axolotl")
_CONTAINER_EXT = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}
# Extensions an explicit file path may have, per format (hf writes a directory: any name).
_ALLOWED_EXT = {"auto": (".jsonl", ".ndjson", ".json", ".parquet"),
                "input": (".jsonl", ".ndjson", ".json", ".parquet"),
                "jsonl": (".jsonl", ".ndjson", ".json", ".parquet"), "parquet": (".parquet",),
                "llamafactory": (".json", ".jsonl"), "axolotl": (".jsonl", ".json")}

# LLaMA-Factory's ShareGPT tags (data/README.md of LLaMA-Factory: "tags" of a sharegpt dataset).
LLAMAFACTORY_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                     "assistant_tag": "gpt", "system_tag": "system"}
_SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "system": "system"}


@dataclass(frozen=True)
class OutPlan:
    """Where an export goes: ``dir`` holds everything; ``file`` is the explicit data path (an
    ``out`` with an extension) or None (name the files ``stem.<ext>``)."""

    dir: Path
    stem: str
    file: Path | None = None

    def sidecar(self, suffix: str) -> Path:
        return self.dir / f"{self.stem}{suffix}"


def plan_out(out: str | Path, name: str = "selection") -> OutPlan:
    """``out`` with a file extension is a file, without one (or an existing directory, or a
    path ending in a slash) a directory holding ``name.*``."""
    path = Path(out)
    if path.suffix and not path.is_dir() and not str(out).endswith(("/", "\\")):
        return OutPlan(path.parent, path.name[: -len(path.suffix)], path)
    return OutPlan(path, name)


def report_path(out: str | Path, name: str, filename: str = "report.html") -> Path:
    """The report beside an export: ``<dir>/<filename>`` for a directory, ``<stem>.<filename>``
    next to an explicit file."""
    plan = plan_out(out, name)
    return plan.dir / (filename if plan.file is None else f"{plan.stem}.{filename}")


def _container(source_file: str) -> str:
    name = source_file.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".json"):
        return "json"
    return "jsonl"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):  # noqa: B023 - used at once
                h.update(block)
    return h.hexdigest()


def messages_of(raw: str, fmt: str) -> list[dict]:
    """A stored record as OpenAI chat messages (system first when there is one)."""
    norm = normalize_record(orjson.loads(raw), fmt)
    head = [{"role": "system", "content": norm.system}] if norm.system.strip() else []
    return head + [{"role": role, "content": text} for role, text in norm.turns]


_messages = messages_of  # the name older callers use


def _write_raw(path: Path, raws: list[str], container: str) -> None:
    if container == "parquet":
        with atomic_path(path) as tmp:
            pq.write_table(pa.Table.from_pylist([orjson.loads(r) for r in raws]), tmp)
    elif container == "json":
        write_text_atomic(path, "[\n" + ",\n".join(raws) + "\n]\n")
    else:
        write_text_atomic(path, "".join(r + "\n" for r in raws))


def _write_docs(path: Path, docs: list[dict], container: str) -> None:
    if container == "parquet":
        with atomic_path(path) as tmp:
            pq.write_table(pa.Table.from_pylist(docs), tmp)
    elif container == "json":
        write_bytes_atomic(path, b"[\n" + b",\n".join(orjson.dumps(d) for d in docs) + b"\n]\n")
    else:
        with atomic_open(path, "wb") as fh:
            for d in docs:
                fh.write(orjson.dumps(d) + b"\n")


def _data_path(plan: OutPlan, fmt: str, default_ext: str) -> tuple[Path, str]:
    """The data file and its container: the explicit file, or ``<dir>/<stem><default_ext>``."""
    if plan.file is None:
        return plan.dir / f"{plan.stem}{default_ext}", _CONTAINER_EXT[default_ext]
    ext = plan.file.suffix.lower()
    allowed = _ALLOWED_EXT.get(fmt)
    if allowed is not None and ext not in allowed:
        raise TagtreeError(f"--out {plan.file}: format '{fmt}' writes {', '.join(allowed)} "
                           "files; give one of those extensions or a directory")
    return plan.file, _CONTAINER_EXT.get(ext, "jsonl")


def resolve_format(fmt: str, rows: list[dict]) -> str:
    """'auto' -> 'input' when every record came in one format, else 'jsonl' (one merged file)."""
    if fmt != "auto":
        return fmt
    return "input" if len({r["format"] for r in rows}) <= 1 else "jsonl"


def write_selection_files(records: pa.Table, out: OutPlan | Path, name: str = "selection",
                          fmt: str = "auto") -> list[dict]:
    """Write the records; returns [{path, kind, rows}] (kind: 'selection' or 'config')."""
    plan = out if isinstance(out, OutPlan) else OutPlan(Path(out), name)
    if fmt not in FORMATS:
        raise TagtreeError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    rows = records.to_pylist()
    asked, fmt = fmt, resolve_format(fmt, rows)
    files: list[tuple[Path, int, str]] = []
    if fmt == "input" and plan.file is None and asked == "input":
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in rows:
            groups.setdefault((r["format"], _container(r["source_file"])), []).append(r)
        ext = {"jsonl": "jsonl", "json": "json", "parquet": "parquet"}
        for (in_fmt, container), members in sorted(groups.items()):
            stem = plan.stem if len(groups) == 1 else f"{plan.stem}.{in_fmt}"
            path = plan.dir / f"{stem}.{ext[container]}"
            _write_raw(path, [m["raw"] for m in members], container)
            files.append((path, len(members), "selection"))
        if not groups:  # an empty selection still yields a (empty) file
            path = plan.dir / f"{plan.stem}.jsonl"
            write_text_atomic(path, "")
            files.append((path, 0, "selection"))
    elif fmt == "input":
        # One file: an explicit path (its extension picks the container), or auto's single
        # format in its most common container.
        if plan.file is None:
            counts: dict[str, int] = {}
            for r in rows:
                counts[_container(r["source_file"])] = counts.get(
                    _container(r["source_file"]), 0) + 1
            container = max(counts, key=counts.get) if counts else "jsonl"
            default = {"jsonl": ".jsonl", "json": ".json", "parquet": ".parquet"}[container]
        else:
            default = ".jsonl"
        path, container = _data_path(plan, "input", default)
        if plan.file is not None and len({r["format"] for r in rows}) > 1:
            # Several formats in one file would not be readable as one: split beside it.
            groups = {}
            for r in rows:
                groups.setdefault(r["format"], []).append(r)
            for in_fmt, members in sorted(groups.items()):
                p = path.with_name(f"{plan.stem}.{in_fmt}{path.suffix}")
                _write_raw(p, [m["raw"] for m in members], container)
                files.append((p, len(members), "selection"))
        else:
            _write_raw(path, [r["raw"] for r in rows], container)
            files.append((path, len(rows), "selection"))
    elif fmt == "jsonl":
        path, container = _data_path(plan, fmt, ".jsonl")
        _write_docs(path, [{"messages": messages_of(r["raw"], r["format"])} for r in rows],
                    container)
        files.append((path, len(rows), "selection"))
    elif fmt == "parquet":
        path, _ = _data_path(plan, fmt, ".parquet")
        table = pa.table({
            "id": [r["id"] for r in rows], "dataset": [r["dataset"] for r in rows],
            "format": [r["format"] for r in rows], "rank": [r["rank"] for r in rows],
            "instruction": [r["instruction"] for r in rows],
            "response": [r["response"] for r in rows], "system": [r["system"] for r in rows],
            "messages": [orjson.dumps(messages_of(r["raw"], r["format"])).decode()
                         for r in rows]})
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        files.append((path, len(rows), "selection"))
    elif fmt == "hf":
        from tagtree.io.hf import save_messages_dataset

        if plan.file is not None and plan.file.suffix.lower() in (*_CONTAINER_EXT, ".csv"):
            raise TagtreeError(f"--out {plan.file}: format 'hf' writes a datasets directory, "
                               "not a file; give a path without a file extension")
        path = plan.file if plan.file is not None else plan.dir / plan.stem
        save_messages_dataset([messages_of(r["raw"], r["format"]) for r in rows], path)
        files.append((path, len(rows), "selection"))
    elif fmt == "llamafactory":
        path, container = _data_path(plan, fmt, ".json")
        docs = [{"conversations": [{"from": _SHAREGPT_ROLE.get(m["role"], m["role"]),
                                    "value": m["content"]}
                                   for m in messages_of(r["raw"], r["format"])]} for r in rows]
        _write_docs(path, docs, container)
        files.append((path, len(rows), "selection"))
        info = write_llamafactory_info(path, plan.stem)
        files.append((info, 1, "config"))
    elif fmt == "axolotl":
        path, container = _data_path(plan, fmt, ".jsonl")
        _write_docs(path, [{"messages": messages_of(r["raw"], r["format"])} for r in rows],
                    container)
        files.append((path, len(rows), "selection"))
        block = plan.sidecar(".axolotl.yml")
        write_text_atomic(block, axolotl_block(path))
        files.append((block, 1, "config"))
    return [{"path": str(p), "kind": kind, "rows": n} for p, n, kind in files]


def llamafactory_entry(data_file: Path) -> dict:
    """The ``dataset_info.json`` entry of a ShareGPT-style file (LLaMA-Factory's schema:
    ``file_name``, ``formatting``, ``columns.messages``, ``tags.*_tag``)."""
    return {"file_name": data_file.name, "formatting": "sharegpt",
            "columns": {"messages": "conversations"}, "tags": dict(LLAMAFACTORY_TAGS)}


def write_llamafactory_info(data_file: Path, name: str) -> Path:
    """Add (or replace) ``name`` in ``dataset_info.json`` beside ``data_file``: LLaMA-Factory
    reads it from its ``dataset_dir``, with ``file_name`` relative to that directory."""
    info_path = data_file.parent / "dataset_info.json"
    info: dict = {}
    if info_path.exists():
        try:
            info = orjson.loads(info_path.read_bytes())
        except orjson.JSONDecodeError:
            raise TagtreeError(f"{info_path} exists but is not valid JSON; move it away or fix "
                               "it so the entry can be added") from None
    info[name] = llamafactory_entry(data_file)
    write_bytes_atomic(info_path, orjson.dumps(info, option=orjson.OPT_INDENT_2))
    return info_path


def axolotl_block(data_file: Path) -> str:
    """The ``datasets:`` entry of an axolotl config for a ``messages`` JSONL file (axolotl's
    ``chat_template`` dataset type; field names from its SFTDataset schema)."""
    import yaml

    block = {"datasets": [{
        "path": str(data_file.resolve()), "ds_type": "json", "type": "chat_template",
        "field_messages": "messages",
        "message_property_mappings": {"role": "role", "content": "content"},
        "roles_to_train": ["assistant"]}]}
    return ("# Paste into your axolotl config (written by tagtree, --format axolotl)\n"
            + yaml.safe_dump(block, sort_keys=False))


def export_selection(store, run_id: str, method: str, out: str | Path, *, fmt: str = "auto",
                     name: str = "selection", manifest: dict | None = None,
                     location: str | None = None) -> dict:
    """Write the selection of (run, method) and its manifest; record both in ``exports``.
    ``out``: a file path (with an extension) or a directory (see ``plan_out``).

    ``location``: where the output directory's files are published afterwards (e.g. an s3://
    prefix); the manifest, the ``exports`` rows and the returned paths then name them there."""
    records = store.selection_records(run_id, method)
    if records.num_rows == 0 and method not in store.selection_metrics(run_id):
        raise TagtreeError(f"no '{method}' selection for run {run_id} (run `tagtree sample`)")
    plan = plan_out(out, name)
    try:
        plan.dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TagtreeError(f"cannot create output directory {plan.dir}: {exc.strerror}") from None
    files = write_selection_files(records, plan, fmt=fmt)

    def published(path: str | Path) -> str:
        if location is None:
            return str(path)
        return location.rstrip("/") + "/" + Path(path).relative_to(plan.dir).as_posix()

    for f in files:
        f["sha256"] = _sha256(Path(f["path"]))
        f["path"] = published(f["path"])
    written = resolve_format(fmt, records.select(["format"]).to_pylist())
    doc = {"run_id": run_id, "method": method, "format": written, "selected": records.num_rows,
           "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "files": files} | (manifest or {})
    manifest_path = plan.sidecar(".manifest.json")
    write_bytes_atomic(manifest_path, orjson.dumps(doc, option=orjson.OPT_INDENT_2 |
                                                   orjson.OPT_SERIALIZE_NUMPY))
    entries = files + [{"path": published(manifest_path), "kind": "manifest",
                        "rows": len(files), "sha256": _sha256(manifest_path)}]
    for e in entries:
        store.write_export(run_id, e["path"], e["kind"], e["rows"], e["sha256"])
    return {"run_id": run_id, "method": method, "rows": records.num_rows, "format": written,
            "files": [e["path"] for e in entries], "manifest": published(manifest_path),
            "config": [f["path"] for f in files if f["kind"] == "config"]}
