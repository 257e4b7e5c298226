"""A local PEP 691 index replaying the recorded answers in this folder (tests only; 127.0.0.1, a thread).

GET /simple/<project>/       -> the recorded JSON (application/vnd.pypi.simple.v1+json), 404 if none
GET /html/simple/<project>/  -> the same files as PEP 503 HTML (for the HTML fallback)
GET /slow/simple/<project>/  -> sleeps `slow_s` first (for timeout tests)
"""

from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).parent


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        mode = parts[0] if parts and parts[0] in ("html", "slow") else "json"
        parts = parts[1:] if mode != "json" else parts
        path = HERE / f"{parts[-1]}.json" if len(parts) == 2 and parts[0] == "simple" else None
        if mode == "slow":
            time.sleep(self.server.slow_s)
        if path is None or not path.is_file():
            self.send_error(404)
            return
        data = json.loads(path.read_text())
        if mode == "html":
            body, ctype = _html(data).encode(), "text/html"
        else:
            body, ctype = json.dumps(data).encode(), "application/vnd.pypi.simple.v1+json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hits: list[str]
    slow_s: float


def _html(data: dict) -> str:
    rows = []
    for f in data["files"]:
        rp = f.get("requires-python")
        attr = f' data-requires-python="{html.escape(rp)}"' if rp else ""
        rows.append(f'<a href="{html.escape(f["url"])}"{attr}>{html.escape(f["filename"])}</a><br/>')
    return "<!DOCTYPE html><html><body>" + "\n".join(rows) + "</body></html>"


@contextmanager
def serve(slow_s: float = 0.0) -> Iterator[_Server]:
    """Yields the running server; its URL is f"http://127.0.0.1:{server.server_port}"."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.hits = []
    server.slow_s = slow_s
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
