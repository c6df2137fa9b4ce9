"""The fake OpenAI server's HTTP side: one request handler class per server, with the routes
(chat completions, embeddings, models, files, batches) and the answer for each injected fault.
Split out of ``tests/support/openai_server.py``, which holds the server's state and test API."""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.support.openai_server import FakeOpenAIServer

# Tags carrying terminal escape sequences: colour, an OSC window title, an OSC 8 hyperlink, a
# cursor-hiding CSI and a bidi override.
ESCAPE_TAGS = ["\x1b[31mred alert\x1b[0m", "\x1b]0;owned title\x07window title",
               "\x1b]8;;http://evil.example/\x1b\\click here\x1b]8;;\x1b\\",
               "hidden\x1b[?25l cursor", "\u202eevil bidi"]


def make_handler(server: FakeOpenAIServer):
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
            server._wait_at_gate()
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
