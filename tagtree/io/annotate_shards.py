"""Annotate stage on a cluster: pending instances -> Parquet partitions -> tags -> the store.

For CPU-bound taggers (the keyphrase tagger embeds every instance): the writer exports the
instances still lacking an ok annotation as Parquet partitions, shard tasks tag a partition each
wherever the cluster runs them and write the results as Parquet (with the instance vectors the
keyphrase tagger computed on the way), and the writer upserts those into ``annotations`` (and
``instance_embeddings``). Nothing here needs the DuckDB file except export and load.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tagtree.annotation import TagInput, TagResult, TagStats
from tagtree.io.annotator import pending_inputs
from tagtree.io.vector_columns import column_vectors, vector_column

_RESULT_SCHEMA = pa.schema([
    ("instance_id", pa.string()), ("status", pa.string()), ("tags", pa.list_(pa.string())),
    ("error", pa.string()), ("attempts", pa.int32()), ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64())])


def export_pending(store, tagger: str, out_dir: str, shard_rows: int) -> list[str]:
    """Instances lacking an ok annotation by ``tagger``, ``shard_rows`` per Parquet file."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    paths, items = [], pending_inputs(store, tagger, shard_rows)
    while part := list(itertools.islice(items, shard_rows)):
        path = str(Path(out_dir) / f"pending-{len(paths):05d}.parquet")
        pq.write_table(pa.Table.from_pylist(
            [{"instance_id": i.instance_id, "instruction": i.instruction,
              "response": i.response, "system": i.system} for i in part]), path)
        paths.append(path)
    return paths


def tag_partition(tagger, path: str) -> str:
    """Tag one exported partition with a tagger that has ``tag_many``; results next to it."""
    rows = pq.read_table(path).to_pylist()
    items = [TagInput(r["instance_id"], r["instruction"], r["response"], r["system"])
             for r in rows]
    step = getattr(tagger, "chunk", 64)
    results: list[TagResult] = []
    vec_ids: list[str] = []
    vecs: list[np.ndarray] = []
    for i in range(0, len(items), step):
        results.extend(tagger.tag_many(items[i:i + step]))
        # The keyphrase tagger's instance vectors (see KeyphraseTagger.take_instance_vectors):
        # taken after every batch, so a worker never holds a partition's worth, and written
        # beside the tags for the writer to store.
        handed = tagger.take_instance_vectors() if hasattr(tagger, "take_instance_vectors") \
            else None
        if handed:
            vec_ids.extend(handed[0])
            vecs.append(handed[1])
    out = path.replace("pending-", "tagged-")
    pq.write_table(pa.Table.from_pylist(
        [{"instance_id": r.instance_id, "status": r.status, "tags": r.tags, "error": r.error,
          "attempts": r.attempts, "prompt_tokens": r.prompt_tokens,
          "completion_tokens": r.completion_tokens} for r in results],
        schema=_RESULT_SCHEMA), out)
    if vec_ids:
        pq.write_table(pa.table({
            "instance_id": pa.array(vec_ids, pa.string()),
            "embedder": pa.array([tagger.embedder.fingerprint] * len(vec_ids), pa.string()),
            "vector": vector_column(np.vstack(vecs))}), _vectors_path(out))
    return out


def _vectors_path(tagged: str) -> str:
    return tagged.replace("tagged-", "vectors-")


def load_results(store, tagger: str, paths: list[str]) -> TagStats:
    """Upsert tagged partitions into ``annotations``; the counts of what they held."""
    stats = TagStats()
    for path in paths:
        results = [TagResult(**row) for row in pq.read_table(path).to_pylist()]
        store.write_annotations(tagger, results)
        for result in results:
            stats.add(result)
        vectors = Path(_vectors_path(path))
        if vectors.exists():  # instance vectors the shard's tagger computed on the way
            table = pq.read_table(vectors)
            flat = column_vectors(table.column("vector"))
            ids = table.column("instance_id").to_pylist()
            embedders = table.column("embedder").to_pylist()
            for name in sorted(set(embedders)):
                rows = [i for i, e in enumerate(embedders) if e == name]
                store.write_instance_embeddings(name, [ids[i] for i in rows], flat[rows])
    return stats
