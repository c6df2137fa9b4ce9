"""Ingest and export stages (I/O part) for Hugging Face ``datasets``: inputs -> records, a
selection -> a ``save_to_disk`` directory.

Inputs this reads, each a directory:
- a ``Dataset.save_to_disk`` directory (``state.json`` + Arrow files), or a ``DatasetDict`` one
  (``dataset_dict.json`` + one directory per split), read with ``datasets.load_from_disk``;
- a Hub-style Parquet folder (``data/train-00000-of-00001.parquet``, ``train/*.parquet``,
  ``test.parquet`` ...), read with pyarrow (no ``datasets`` needed): the split is named by a
  file's prefix before ``-NNNNN-of-NNNNN`` or by its directory.
Plus a ``datasets.Dataset``/``DatasetDict`` object in a notebook: ``ingest_dataset``; and a
selection back out as a ``datasets.Dataset``: ``selection_dataset``.

A DatasetDict (or a folder) with several splits needs ``split``; with one split, or a ``train``
split when none is named, that split is read. ``datasets`` is an optional extra:
``pip install 'tagtree[hf]'``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from tagtree.errors import TagtreeError

_SHARD = re.compile(r"^(?P<split>.+)-\d{5}-of-\d{5}$")
_INSTALL = "install the Hugging Face extra: pip install 'tagtree[hf]' (or pip install datasets)"


def _datasets():
    try:
        import datasets
    except ImportError:
        raise TagtreeError(f"reading or writing Hugging Face datasets needs `datasets`; "
                           f"{_INSTALL}") from None
    return datasets


@contextmanager
def _quiet(datasets):
    """No ``datasets`` progress bars ("Saving the dataset (1/1 shards)") on stderr: the stage's
    own summary line says what was read or written. The caller's setting is restored."""
    bars = datasets.utils.logging  # the names 2.14 and later all have
    was_on = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            bars.enable_progress_bar()


def kind(path: str | Path) -> str | None:
    """'dataset' (save_to_disk of a Dataset), 'dataset_dict', 'parquet' (a Hub-style folder) or
    None for anything that is not a Hugging Face dataset directory."""
    p = Path(path)
    if not p.is_dir():
        return None
    if (p / "dataset_dict.json").is_file():
        return "dataset_dict"
    if (p / "state.json").is_file() and (p / "dataset_info.json").is_file():
        return "dataset"
    if any(p.rglob("*.parquet")):
        return "parquet"
    return None


def is_hf_input(path: str | Path) -> bool:
    return kind(path) is not None


def _pick(splits: list[str], split: str | None, where: str) -> str:
    if split is not None:
        if split not in splits:
            raise TagtreeError(f"{where} has no split {split!r}; its splits: {', '.join(splits)}")
        return split
    if len(splits) == 1:
        return splits[0]
    if "train" in splits:
        return "train"
    raise TagtreeError(f"{where} has several splits ({', '.join(splits)}); choose one with "
                       "--split")


def _split_of(parts: tuple[str, ...], stem: str) -> str:
    """data/train-00000-of-00002.parquet, train-00000-of-00002.parquet -> train;
    train/0000.parquet, default/train/0000.parquet -> train; test.parquet -> test."""
    m = _SHARD.match(stem)
    if m:
        return m.group("split")
    if len(parts) >= 2 and parts[-2] != "data":
        return parts[-2]
    return "train" if stem[:1].isdigit() else stem


def parquet_splits(path: str | Path) -> dict[str, list[Path]]:
    """Split name -> its Parquet files (sorted) in a Hub-style folder."""
    root = Path(path)
    splits: dict[str, list[Path]] = {}
    for f in sorted(root.rglob("*.parquet")):
        splits.setdefault(_split_of(f.relative_to(root).parts, f.stem), []).append(f)
    return splits


def chosen_split(path: str | Path, split: str | None) -> str | None:
    """The split that ``iter_hf_records`` reads (None for a plain Dataset directory)."""
    k = kind(path)
    if k == "dataset_dict":
        doc = orjson.loads((Path(path) / "dataset_dict.json").read_bytes())
        return _pick(list(doc.get("splits", [])), split, str(path))
    if k == "parquet":
        return _pick(sorted(parquet_splits(path)), split, str(path))
    if k == "dataset" and split is not None:
        raise TagtreeError(f"{path} is a single Dataset (no splits); drop --split {split}")
    return None


def _json_ready(record: dict) -> dict:
    return orjson.loads(orjson.dumps(record, default=str, option=orjson.OPT_SERIALIZE_NUMPY))


def iter_dataset(ds, batch_rows: int = 10_000) -> Iterator[tuple[int, object, str]]:
    """Rows of a ``datasets.Dataset`` as ``(row number, record, raw JSON)``."""
    row = 0
    for start in range(0, len(ds), batch_rows):
        batch = ds[start:start + batch_rows]
        columns = list(batch)
        for i in range(len(batch[columns[0]]) if columns else 0):
            row += 1
            record = _json_ready({c: batch[c][i] for c in columns})
            yield row, record, orjson.dumps(record).decode()


def iter_hf_records(path: str | Path, split: str | None = None
                    ) -> Iterator[tuple[int, object, str]]:
    """The records of a Hugging Face dataset directory (see the module docstring)."""
    k = kind(path)
    if k is None:
        raise TagtreeError(f"{path} is not a Hugging Face dataset directory (no "
                           "dataset_dict.json, state.json or Parquet files)")
    name = chosen_split(path, split)
    if k == "parquet":
        from tagtree.io.readers import iter_parquet

        def rows() -> Iterator[tuple[int, object, str]]:
            offset = 0
            for f in parquet_splits(path)[name]:
                n = 0
                for n, record, raw in iter_parquet(f):
                    yield offset + n, record, raw
                offset += n
        return rows()
    datasets = _datasets()
    try:
        with _quiet(datasets):
            ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - datasets raises many types for a broken dir
        raise TagtreeError(f"{path}: not a readable save_to_disk directory: {exc}") from None
    if k == "dataset_dict":
        ds = ds[name]
    return iter_dataset(ds)


def source_name(path: str | Path, split: str | None) -> str:
    """The ``source_file`` recorded for a dataset directory: its path, plus ``#split``."""
    name = chosen_split(path, split)
    return f"{path}#{name}" if name is not None else str(path)


def dataset_name(path: str | Path, split: str | None) -> str:
    """The default dataset name of a directory: its name, plus ``-split`` when it has splits."""
    name = chosen_split(path, split)
    return Path(path).resolve().name + (f"-{name}" if name is not None else "")


def ingest_dataset(store, ds, *, name: str | None = None, split: str | None = None,
                   role: str = "pool", fmt: str = "auto", batch_rows: int = 50_000):
    """Ingest a ``datasets.Dataset`` (or one split of a ``DatasetDict``) held in memory, e.g. in
    a notebook: ``ingest_dataset(store, load_dataset(...), name="alpaca")``. Records go through
    the same validation, content ids and quarantine as files. Returns an ``IngestSummary``."""
    import time

    from tagtree.io.ingest import IngestSummary, parse_batches, write_file, writer_settings

    if hasattr(ds, "keys") and not hasattr(ds, "features"):  # a DatasetDict
        split = _pick(list(ds.keys()), split, "the DatasetDict")
        ds = ds[split]
    fingerprint = getattr(ds, "_fingerprint", None) or "memory"
    dataset = name or (ds.info.dataset_name if getattr(ds, "info", None) and
                       ds.info.dataset_name else f"hf-{fingerprint[:8]}")
    source = f"datasets:{dataset}" + (f"#{split}" if split else "")
    summary = IngestSummary()
    started = time.perf_counter()
    with writer_settings(store, None):
        groups = ([b] for b in parse_batches(iter_dataset(ds), None if fmt == "auto" else fmt,
                                             batch_rows))
        summary.files.append(write_file(store, source, dataset, role,
                                        None if fmt == "auto" else fmt, groups))
    summary.seconds = time.perf_counter() - started
    return summary


def messages_dataset(conversations: list[list[dict]]):
    """A ``datasets.Dataset`` with one ``messages`` column of ``{role, content}`` lists."""
    datasets = _datasets()
    features = datasets.Features({"messages": [{"role": datasets.Value("string"),
                                                "content": datasets.Value("string")}]})
    return datasets.Dataset.from_dict({"messages": conversations}, features=features)


def selection_dataset(store, run_id: str, method: str = "tags"):
    """The selection of (run, method) as an in-memory ``datasets.Dataset`` (``messages``, rank
    order): hand it to a trainer in a notebook without writing files."""
    from tagtree.io.export import messages_of

    records = store.selection_records(run_id, method)
    return messages_dataset([messages_of(r, f) for r, f in zip(
        records.column("raw").to_pylist(), records.column("format").to_pylist(), strict=True)])


def save_messages_dataset(conversations: list[list[dict]], path: str | Path) -> Path:
    """Write a ``datasets`` directory (``save_to_disk``) with one ``messages`` column of
    ``{role, content}`` lists: what TRL's SFTTrainer reads as a conversational dataset."""
    datasets = _datasets()
    ds = messages_dataset(conversations)
    path = Path(path)
    with _quiet(datasets):
        ds.save_to_disk(str(path))
    return path
