"""A stdlib HTTP server on 127.0.0.1 for the download tests, with endpoints that misbehave on purpose.

    with LocalServer({"a.bin": data}) as server:
        server.url("ok", "a.bin")          # http://127.0.0.1:PORT/ok/a.bin

Endpoints, `/<mode>/<file>`:
    ok             the file, honouring `Range: bytes=N-` (206 + Content-Range; 416 past the end)
    norange        the whole file with 200 whatever Range asks
    truncate-once  the first request for a file sends half of its body (Content-Length announces all of it), then
                   behaves as `ok`
    truncate       every response sends half of what it announces (Range honoured)
    flaky          500 twice per file, then `ok`
    missing        404
    wrong          as many bytes as the file, but other ones
Every request is logged as (mode, file, Range header or None, status, bytes sent).
"""

from __future__ import annotations

import collections
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalServer:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)
        self.log: list[tuple[str, str, str | None, int, int]] = []
        self.counts: collections.Counter = collections.Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "LocalServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, mode: str, name: str = "") -> str:
        return f"{self.base}/{mode}/{name}"

    def requests(self, mode: str | None = None) -> list[tuple[str, str, str | None, int, int]]:
        return [r for r in self.log if mode is None or r[0] == mode]

    # ------------------------------------------------------------------------------------------------------

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = h.path.strip("/").split("/", 1)
        mode, name = parts[0], parts[1] if len(parts) > 1 else ""
        rng = h.headers.get("Range")
        self.counts[(mode, name)] += 1
        n = self.counts[(mode, name)]
        data = self.files.get(name)
        if mode == "missing" or data is None:
            return self._status(h, mode, name, rng, 404)
        if mode == "flaky" and n <= 2:
            return self._status(h, mode, name, rng, 500)
        if mode == "wrong":
            data = bytes((b + 1) % 256 for b in data)
        honour_range = mode in ("ok", "truncate-once", "truncate", "flaky")
        truncate = mode == "truncate" or (mode == "truncate-once" and n == 1)
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if honour_range and match:
            start = int(match[1])
            if start >= len(data):
                self.log.append((mode, name, rng, 416, 0))
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            status = 206
        else:
            h.send_response(200)
            status = 200
        body = data[start:]
        sent = body[: len(body) // 2] if truncate else body
        # Logged before the body goes out: the client may act on the whole body before this thread runs again.
        self.log.append((mode, name, rng, status, len(sent)))
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(sent)
        h.wfile.flush()
        h.close_connection = True

    def _status(self, h: BaseHTTPRequestHandler, mode: str, name: str, rng: str | None, code: int) -> None:
        self.log.append((mode, name, rng, code, 0))
        h.send_response(code)
        h.send_header("Content-Length", "0")
        h.end_headers()
