"""A real OpenAI-compatible HTTP server on loopback with fault injection, for tests and benchmarks.

Speaks ``POST /v1/chat/completions`` (``response_format`` accepted), ``POST /v1/embeddings``
(deterministic hash-seeded unit vectors), ``GET /v1/models``, and the files + batches endpoints
(``/v1/files``, ``/v1/files/{id}``, ``/v1/files/{id}/content``, ``/v1/batches``,
``/v1/batches/{id}``, ``/v1/batches/{id}/cancel``); a batch's requests use the same responder.

    with FakeOpenAIServer(responder=fn, latency=0.1) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="test")
        srv.inject("429", count=2, retry_after=0.05)

HTTP/1.1 keep-alive on a threaded server (one thread per connection, Nagle off, deep listen
backlog) sustains several hundred requests/s on two cores.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any

import numpy as np

# The HTTP side (routes, fault answers) is in openai_handler; ESCAPE_TAGS is imported from here.
from tests.support.openai_handler import ESCAPE_TAGS, make_handler  # noqa: F401

FAULT_KINDS = ("429", "500", "slow", "reset", "malformed", "empty", "fence", "status",
               # hostile answers (tests/integration/test_hostile_*.py):
               "deep", "hang", "midbody", "escape", "content")
_WORD = re.compile(r"[a-z][a-z0-9+#-]{2,}")
_STOP = frozenset(
    "the and for with that this from what how are you your can will into about which when where "
    "who why does did has have had was were been being not but all any each its their them they "
    "there then than these those our out use using write give make please tell explain".split())


def default_tags(body: dict) -> list[str]:
    """Tags built deterministically from the words of the last user message."""
    text = ""
    for message in body.get("messages", []):
        if message.get("role") == "user":
            content = message.get("content")
            text = content if isinstance(content, str) else json.dumps(content)
    words: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word not in _STOP and word not in words:
            words.append(word)
    tags = words[:4] + [f"{a} {b}" for a, b in zip(words[:2], words[1:3], strict=False)]
    for filler in ("general knowledge", "text understanding"):
        if len(tags) < 2:
            tags.append(filler)
    return tags[:12]


def default_responder(body: dict) -> str:
    return json.dumps({"tags": default_tags(body)})


def fake_embedding(text: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    vec = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vec / np.linalg.norm(vec)


def refused_url() -> str:
    """A loopback base URL where nothing listens: every connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class SilentServer:
    """An endpoint that accepts connections and never answers: a listening socket nobody
    reads (the kernel completes the handshake and buffers the request)."""

    def __enter__(self) -> SilentServer:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1024)
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        return self

    def __exit__(self, *exc) -> None:
        self._sock.close()


def _count_tokens(text: str) -> int:
    return max(1, len(text.split()))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # default 5 drops SYNs when 128 clients connect at once
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)  # clients going away is normal here


class FakeOpenAIServer:
    """Context manager running the server in a background thread on an ephemeral port."""

    def __init__(self, responder: Callable[[dict], str] | None = None, latency: float = 0.0,
                 *, embedding_dim: int = 384, models: tuple[str, ...] = ("fake-tagger",),
                 batch_delay: float = 0.0):
        self.responder = responder or default_responder
        self.latency = latency
        self.embedding_dim = embedding_dim
        self.models = models
        self.batch_delay = batch_delay  # seconds a batch stays in_progress before completing
        self.requests: list[dict] = []
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self._faults: deque[tuple[str, dict]] = deque()
        self._lock = threading.Lock()
        self._ids = 0
        self._stopping = threading.Event()  # wakes "hang" handlers at stop()
        # Chat answers wait while the gate is closed (``hold()``), so a test can keep a run in
        # annotate for exactly as long as it needs, whatever the machine's load.
        self._gate = threading.Event()
        self._gate.set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        self._httpd = _Server(("127.0.0.1", 0), make_handler(self))
        host, port = self._httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- test API ----------------------------------------------------------------------------
    def inject(self, kind: str, count: int = 1, **kw: Any) -> None:
        """The next ``count`` chat requests get fault ``kind`` (see FAULT_KINDS).

        kw: ``retry_after`` (seconds, for "429"), ``seconds`` (for "slow", default 5),
        ``code`` and ``message`` (for "status": any HTTP error, e.g. 401 or 400),
        ``depth`` (for "deep": an answer of that many nested ``[``, default 1000), ``text`` (for
        "content": this exact answer). "hang" accepts the request and never answers (until the
        server stops); "midbody" sends the head and half the body, then closes; "escape" answers
        tags holding terminal escape sequences (ESCAPE_TAGS).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        with self._lock:
            self._faults.extend((kind, kw) for _ in range(count))

    def hold(self) -> None:
        """Chat requests wait unanswered until ``release()`` (or the server stops)."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def _wait_at_gate(self) -> None:
        while not self._gate.wait(0.05) and not self._stopping.is_set():
            pass

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def chat_requests(self) -> list[dict]:
        with self._lock:
            return [r["body"] for r in self.requests if r["path"].endswith("/chat/completions")]

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- internals ---------------------------------------------------------------------------
    def _log(self, path: str, body: Any, auth: str | None = None) -> dict:
        """Logged on arrival (status None until answered; 0 for a dropped connection), so a
        request whose client timed out is in the log even while the server still sleeps.
        ``auth`` is the request's Authorization header (tests check the key was sent)."""
        entry = {"path": path, "body": body, "status": None, "auth": auth}
        with self._lock:
            self.requests.append(entry)
        return entry

    def _next_fault(self) -> tuple[str, dict] | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{prefix}-{self._ids:08d}"

    def chat_completion(self, body: dict, content: str | None = None) -> dict:
        """A chat.completion object for ``body`` (content from the responder unless given)."""
        if content is None:
            content = self.responder(body)
        prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        usage_in, usage_out = _count_tokens(prompt), _count_tokens(content or "")
        return {
            "id": self._new_id("chatcmpl"), "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", self.models[0]),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": usage_in, "completion_tokens": usage_out,
                      "total_tokens": usage_in + usage_out},
        }

    def embeddings(self, body: dict) -> dict:
        texts = body.get("input", [])
        texts = [texts] if isinstance(texts, str) else list(texts)
        dim = int(body.get("dimensions") or self.embedding_dim)
        as_b64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec = fake_embedding(str(text), dim)
            value = (base64.b64encode(vec.astype("<f4").tobytes()).decode() if as_b64
                     else vec.tolist())
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(_count_tokens(str(t)) for t in texts)
        return {"object": "list", "data": data, "model": body.get("model", "fake-embed"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def create_file(self, filename: str, purpose: str, content: bytes) -> dict:
        file_id = self._new_id("file")
        meta = {"id": file_id, "object": "file", "bytes": len(content),
                "created_at": int(time.time()), "filename": filename, "purpose": purpose,
                "status": "processed"}
        with self._lock:
            self.files[file_id] = {"meta": meta, "content": content}
        return meta

    def create_batch(self, body: dict) -> dict:
        file_id = body.get("input_file_id")
        if file_id not in self.files:
            raise KeyError(file_id)
        lines = self.files[file_id]["content"].decode("utf-8").splitlines()
        out, errors = [], []
        for line in filter(str.strip, lines):
            req = json.loads(line)
            try:
                resp = {"status_code": 200, "request_id": self._new_id("req"),
                        "body": self.chat_completion(req["body"])}
                out.append({"id": self._new_id("batch_req"), "custom_id": req["custom_id"],
                            "response": resp, "error": None})
            except Exception as exc:  # the responder failed: an error line, as OpenAI does
                errors.append({"id": self._new_id("batch_req"), "custom_id": req.get("custom_id"),
                               "response": None,
                               "error": {"code": "server_error", "message": str(exc)}})
        now = int(time.time())
        batch_id = self._new_id("batch")
        out_file = self.create_file(f"{batch_id}_output.jsonl", "batch_output",
                                    "".join(json.dumps(o) + "\n" for o in out).encode())
        err_file = (self.create_file(f"{batch_id}_errors.jsonl", "batch_output",
                                     "".join(json.dumps(e) + "\n" for e in errors).encode())
                    if errors else None)
        batch = {
            "id": batch_id, "object": "batch", "endpoint": body.get("endpoint"),
            "input_file_id": file_id, "completion_window": body.get("completion_window", "24h"),
            "status": "in_progress", "created_at": now, "in_progress_at": now,
            "metadata": body.get("metadata"), "errors": None,
            "request_counts": {"total": len(out) + len(errors), "completed": len(out),
                               "failed": len(errors)},
            "_ready_at": time.monotonic() + self.batch_delay,
            "_output_file_id": out_file["id"],
            "_error_file_id": err_file["id"] if err_file else None,
        }
        with self._lock:
            self.batches[batch_id] = batch
        return self.batch_view(batch_id)

    def batch_view(self, batch_id: str) -> dict:
        with self._lock:
            batch = self.batches[batch_id]
            if batch["status"] == "in_progress" and time.monotonic() >= batch["_ready_at"]:
                batch.update(status="completed", completed_at=int(time.time()),
                             output_file_id=batch["_output_file_id"],
                             error_file_id=batch["_error_file_id"])
            return {k: v for k, v in batch.items() if not k.startswith("_")}

    def cancel_batch(self, batch_id: str) -> dict:
        with self._lock:
            batch = self.batches[batch_id]
            if batch["status"] == "in_progress":
                batch.update(status="cancelled", cancelled_at=int(time.time()))
        return self.batch_view(batch_id)
