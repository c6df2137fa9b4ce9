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
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

FAULT_KINDS = ("429", "500", "slow", "reset", "malformed", "empty", "fence", "status",
               # hostile answers (tests/integration/test_hostile_*.py):
               "deep", "hang", "midbody", "escape", "content")
# Tags carrying terminal escape sequences: colour, an OSC window title, an OSC 8 hyperlink, a
# cursor-hiding CSI and a bidi override.
ESCAPE_TAGS = ["\x1b[31mred alert\x1b[0m", "\x1b]0;owned title\x07window title",
               "\x1b]8;;http://evil.example/\x1b\\click here\x1b]8;;\x1b\\",
               "hidden\x1b[?25l cursor", "\u202eevil bidi"]
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
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        self._httpd = _Server(("127.0.0.1", 0), _make_handler(self))
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


def _make_handler(server: FakeOpenAIServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive
        disable_nagle_algorithm = True

        def log_message(self, *args):  # quiet
            pass

        # -- responses -----------------------------------------------------------------------
        def _send(self, status: int, payload: Any, *, headers: dict | None = None,
                  raw: bytes | None = None, content_type: str = "application/json") -> None:
            data = raw if raw is not None else json.dumps(payload).encode()
            self._entry["status"] = status  # before the write: an answered client sees it
            head = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                    f"Content-Type: {content_type}", f"Content-Length: {len(data)}"]
            head += [f"{k}: {v}" for k, v in (headers or {}).items()]
            # One write for head and body: two small writes meet delayed ACKs (40 ms stalls).
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
            self.log_request(status)

        def _error(self, status: int, message: str, *, headers: dict | None = None,
                   kind: str = "server_error") -> None:
            self._send(status, {"error": {"message": message, "type": kind, "code": None}},
                       headers=headers)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _reset(self) -> None:
            self._entry["status"] = 0
            # SO_LINGER 0 makes close() send RST: the client sees a connection reset.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True

        # -- routes --------------------------------------------------------------------------
        def _not_found(self, what: str) -> None:
            self._error(404, f"no such {what}", kind="invalid_request_error")

        def do_GET(self):  # noqa: N802
            path = self.path.split("?")[0].rstrip("/")
            self._entry = server._log(path, None, self.headers.get("Authorization"))
            if path.endswith("/models"):
                self._send(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "tagtree-tests"}
                    for m in server.models]})
            elif m := re.fullmatch(r".*/files/([^/]+)/content", path):
                file = server.files.get(m.group(1))
                if file:
                    self._send(200, None, raw=file["content"],
                               content_type="application/octet-stream")
                else:
                    self._not_found("file")
            elif m := re.fullmatch(r".*/files/([^/]+)", path):
                file = server.files.get(m.group(1))
                self._send(200, file["meta"]) if file else self._not_found("file")
            elif m := re.fullmatch(r".*/batches/([^/]+)", path):
                if m.group(1) in server.batches:
                    self._send(200, server.batch_view(m.group(1)))
                else:
                    self._not_found("batch")
            elif path.endswith("/batches"):
                data = [server.batch_view(b) for b in list(server.batches)]
                self._send(200, {"object": "list", "data": data, "has_more": False})
            else:
                self._not_found(f"path {path}")

        def do_POST(self):  # noqa: N802
            path = self.path.split("?")[0].rstrip("/")
            raw = self._body()
            if path.endswith("/files"):
                return self._upload(path, raw)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._entry = server._log(path, None, self.headers.get("Authorization"))
                return self._error(400, "request body is not JSON", kind="invalid_request_error")
            self._entry = server._log(path, body, self.headers.get("Authorization"))
            if path.endswith("/chat/completions"):
                self._chat(body)
            elif path.endswith("/embeddings"):
                self._send(200, server.embeddings(body))
            elif m := re.fullmatch(r".*/batches/([^/]+)/cancel", path):
                if m.group(1) in server.batches:
                    self._send(200, server.cancel_batch(m.group(1)))
                else:
                    self._not_found("batch")
            elif path.endswith("/batches"):
                if body.get("input_file_id") in server.files:
                    self._send(200, server.create_batch(body))
                else:
                    self._error(400, "unknown input_file_id", kind="invalid_request_error")
            else:
                self._not_found(f"path {path}")

        def _chat(self, body: dict) -> None:
            kind, kw = server._next_fault() or (None, {})
            if server.latency:
                time.sleep(server.latency)
            if kind == "slow":
                time.sleep(float(kw.get("seconds", 5.0)))
            if kind == "429":
                self._error(429, "rate limited", kind="rate_limit_error",
                            headers={"Retry-After": str(kw.get("retry_after", 0.05))})
            elif kind == "500":
                self._error(500, "injected server error")
            elif kind == "status":
                self._error(int(kw.get("code", 400)), str(kw.get("message", "injected error")),
                            kind="invalid_request_error")
            elif kind == "reset":
                self._reset()
            elif kind == "malformed":
                self._send(200, None, raw=b'{"id": "chatcmpl-broken", "choices": [{"mess')
            elif kind == "hang":
                self._entry["status"] = 0
                server._stopping.wait()
                self.close_connection = True
            elif kind == "midbody":
                data = json.dumps(server.chat_completion(body)).encode()
                self._entry["status"] = 0
                self.wfile.write(("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                  f"Content-Length: {len(data)}\r\n\r\n").encode()
                                 + data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
            else:
                try:
                    content = None
                    if kind == "deep":
                        content = "[" * int(kw.get("depth", 1000))
                    elif kind == "escape":
                        content = json.dumps({"tags": ESCAPE_TAGS})
                    elif kind == "content":
                        content = str(kw["text"])
                    elif kind == "empty":
                        content = ""
                    elif kind == "fence":
                        content = "```json\n" + server.responder(body) + "\n```"
                    payload = server.chat_completion(body, content)
                except Exception as exc:  # a responder bug surfaces as a 500 with its message
                    return self._error(500, f"responder failed: {exc!r}")
                self._send(200, payload)

        def _upload(self, path: str, raw: bytes) -> None:
            ctype = self.headers.get("Content-Type", "")
            msg = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
            fields: dict[str, Any] = {}
            filename = "upload"
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if part.get_filename():
                    filename = part.get_filename()
                fields[name] = part.get_payload(decode=True)
            self._entry = server._log(path, None, self.headers.get("Authorization"))
            if "file" not in fields:
                return self._error(400, "missing file", kind="invalid_request_error")
            purpose = (fields.get("purpose") or b"batch").decode()
            meta = server.create_file(filename, purpose, fields["file"])
            self._entry["body"] = {"purpose": purpose, "filename": filename}
            self._send(200, meta)

    return Handler
