"""The offline keyphrase tagger in worker processes, for machines with more cores than one
ONNX Runtime session uses.

The keyphrase tagger is CPU-bound (MiniLM over every instance and its new phrases), and the
local embedder gives its session at most ``tagtree.io.embedder.THREADS_CAP`` (4) threads, so
on a larger machine the other cores sat idle. Worker
processes, each with its share of the cores, use them. On the 2-core machine it makes no
difference (5,000 real-text rows: 38.7 instances/s on 2 processes of one thread against 37.1/s
in one process of two threads; each process also keeps its own phrase cache), so ``auto``
stays in the calling process there. ``ProcessTagger`` has the tagger interface
``annotate_store`` drives, so the store stays the single writer in the calling process and
everything else (flushing as results arrive, progress, resuming what a killed run left) is
unchanged.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np

from tagtree.annotation import TagInput, TagResult
from tagtree.errors import TagtreeError
from tagtree.io.embedder import THREADS_CAP as LOCAL_THREADS_CAP

AUTO_MIN_ROWS = 1000  # fewer pending rows: starting the workers (~3-5 s) costs more than it wins
AUTO_MAX_PROCESSES = 8

_worker_tagger = None  # the tagger of this worker process (built once by _start_worker)


def planned_processes(setting: int, pending: int, cores: int | None = None) -> int:
    """Worker processes for ``pending`` rows: ``setting`` if set (1: none, tag in the calling
    process), else (0, auto) one per ``LOCAL_THREADS_CAP`` cores, at most
    ``AUTO_MAX_PROCESSES``, once at least ``AUTO_MIN_ROWS`` rows are pending: 1 (the calling
    process) on up to 7 cores."""
    if setting:
        return setting
    cores = cores or os.cpu_count() or 1
    if pending < AUTO_MIN_ROWS:
        return 1
    return max(1, min(cores // LOCAL_THREADS_CAP, AUTO_MAX_PROCESSES))


def _start_worker(cfg: dict, threads: int) -> None:
    # Each worker's ONNX Runtime gets its share of the cores: n workers x all cores would
    # oversubscribe them (read by LocalEmbedder when it is built, below).
    os.environ["TAGTREE_WORKER_THREADS"] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    from tagtree.config import Config
    from tagtree.io.annotator import keyphrase_tagger

    global _worker_tagger
    _worker_tagger = keyphrase_tagger(Config.model_validate(cfg))


def _tag_chunk(items: list[TagInput]) -> tuple[str, list[TagResult], Any]:
    tagger = _worker_tagger
    results = tagger.tag_many(items)
    return tagger.fingerprint, results, tagger.take_instance_vectors()


class ProcessTagger:
    """``tagger`` (a ``KeyphraseTagger`` built from ``cfg``) run in ``processes`` worker
    processes, each building its own from ``cfg`` (the configuration as a dict): the same
    fingerprint, tags and instance vectors as ``tagger`` itself would give."""

    def __init__(self, tagger, cfg: dict, processes: int):
        self.inner = tagger
        self.cfg = cfg
        self.processes = processes
        self.fingerprint = tagger.fingerprint
        self.embedder = tagger.embedder
        self.chunk = tagger.chunk
        self._vectors: list[tuple[list[str], np.ndarray]] = []

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def take_instance_vectors(self) -> tuple[list[str], np.ndarray] | None:
        if not self._vectors:
            return None
        ids = [i for part, _ in self._vectors for i in part]
        vecs = np.vstack([v for _, v in self._vectors])
        self._vectors = []
        return ids, vecs

    async def tag_stream(self, items: Iterable[TagInput]) -> AsyncIterator[TagResult]:
        threads = max(1, (os.cpu_count() or 1) // self.processes)
        # spawn: a fork of a process holding DuckDB, ONNX Runtime and Prefect's threads is unsafe
        pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=(self.cfg, threads))
        in_flight: set[asyncio.Future] = set()
        source = iter(items)
        exhausted = False
        try:
            while True:
                # Two chunks per worker in flight: one running, one waiting, never the pool.
                while not exhausted and len(in_flight) < 2 * self.processes:
                    chunk = [item for _, item in zip(range(self.chunk), source, strict=False)]
                    if not chunk:
                        exhausted = True
                        break
                    future: Future = pool.submit(_tag_chunk, chunk)
                    in_flight.add(asyncio.wrap_future(future))
                if not in_flight:
                    return
                done, in_flight = await asyncio.wait(in_flight,
                                                     return_when=asyncio.FIRST_COMPLETED)
                for finished in done:
                    fingerprint, results, vectors = finished.result()
                    if fingerprint != self.fingerprint:  # a worker built another tagger
                        raise TagtreeError(
                            f"annotate worker tagger {fingerprint} is not {self.fingerprint}")
                    if vectors:
                        self._vectors.append(vectors)
                    for result in results:
                        yield result
        finally:
            # After an error or an early close, the chunks still running are not waited for.
            pool.shutdown(wait=not in_flight, cancel_futures=True)
