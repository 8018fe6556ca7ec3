"""HTTP front for chdb, for tests and benchmarks only (no ClickHouse server can run on the build machine): the
subset of ClickHouse's HTTP interface that clickhouse-connect uses, so that several processes (whyslow replicas)
can share one in-process ClickHouse engine.

Served: ``GET /ping``; ``GET|POST /`` with the statement in the ``query`` parameter and/or the body, the
``database`` parameter, ``default_format``; ``INSERT ... FORMAT <fmt>`` with the data in the body (staged in a
temporary file and read with the ``file()`` table function); errors as HTTP 500 with ClickHouse's message and
``X-ClickHouse-Exception-Code``. Not served: compression, sessions, query cancellation, external tables,
server-side parameters (whyslow renders its values into the SQL text). One statement runs at a time.

    front = ChdbHttpFront(path).start()     # front.url -> "clickhouse://default@127.0.0.1:<port>/"
    python -m benchmarks.dev.chdb_http --path DIR --port 0   # prints the port, serves until killed
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from collector_processor.sql_executor import chdb_session, ident

_INSERT_FORMAT = re.compile(r"^\s*(INSERT\s+INTO\s+.+?)\s+FORMAT\s+(\w+)\s*$", re.IGNORECASE | re.DOTALL)
_INSERT_HEAD = re.compile(r"^(\s*INSERT\s+INTO\s+[^\n]+?\s+FORMAT\s+\w+)[ \t]*\r?\n", re.IGNORECASE)
_HAS_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_SETTINGS_PARAMS = frozenset({"query", "database", "default_format", "query_id", "session_id", "user", "password",
                              "compress", "decompress", "enable_http_compression", "wait_end_of_query",
                              "send_progress_in_http_headers", "http_headers_progress_interval_ms",
                              "session_timeout", "session_check"})
_CODE = re.compile(r"Code:\s*(\d+)")


class ChdbHttpFront:
    """A threaded HTTP server executing every request on the process's chdb session."""

    def __init__(self, path: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.path = str(path)
        self.session = chdb_session(self.path)
        self.lock = threading.Lock()
        self.stage_dir = tempfile.mkdtemp(prefix="chdb-http-")
        self.requests = 0
        front = self

        class Handler(_Handler):
            owner = front

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="chdb-http", daemon=True)

    @property
    def url(self) -> str:
        return f"clickhouse://default@127.0.0.1:{self.port}"

    def start(self) -> ChdbHttpFront:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def execute(self, sql: str, database: str | None, fmt: str | None, data: bytes | None) -> tuple[bytes, str]:
        """Run one statement; returns (body, format)."""
        with self.lock:
            self.requests += 1
            if database:
                self.session.query(f"USE {ident(database)}")
            m = _INSERT_FORMAT.match(sql)
            if m and data:
                stage = os.path.join(self.stage_dir, f"insert-{self.requests}.{m.group(2).lower()}")
                with open(stage, "wb") as f:
                    f.write(data)
                try:
                    self.session.query(f"{m.group(1)} SELECT * FROM file('{stage}', '{m.group(2)}')")
                finally:
                    os.unlink(stage)
                return b"", ""
            if data:
                sql = sql + "\n" + data.decode("utf-8")
            explicit = _HAS_FORMAT.search(sql)
            if explicit:
                out_fmt = explicit.group(1)
                sql = sql[: explicit.start()]
            else:
                out_fmt = fmt or "TabSeparated"
            res = self.session.query(sql, out_fmt)
            return bytes(res.bytes()), out_fmt


class _Handler(BaseHTTPRequestHandler):
    owner: ChdbHttpFront
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        if urlparse(self.path).path in ("/ping", "/ping/"):
            self._send(200, b"Ok.\n", {})
            return
        self._handle(b"")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(length) if length else b""
        self._handle(body)

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def _handle(self, body: bytes) -> None:
        params = {k: v[-1] for k, v in parse_qs(urlparse(self.path).query, keep_blank_values=True).items()}
        query = params.get("query")
        if query is None:
            head = _INSERT_HEAD.match(body.decode("latin-1"))
            if head:  # INSERT ... FORMAT fmt<newline><data> in one body
                sql, data = head.group(1).encode("latin-1").decode("utf-8"), body[head.end():]
            else:
                sql, data = body.decode("utf-8"), None
        else:
            sql, data = query, body
        try:
            out, fmt = self.owner.execute(sql, params.get("database"), params.get("default_format"), data)
        except Exception as exc:  # noqa: BLE001 - every engine error becomes ClickHouse's HTTP error answer
            text = str(exc).strip()
            code = _CODE.search(text)
            self._send(500, (text + "\n").encode(), {"X-ClickHouse-Exception-Code": code.group(1) if code else "1"})
            return
        headers = {"X-ClickHouse-Summary": '{"read_rows":"0","written_rows":"0"}'}
        if fmt:
            headers["X-ClickHouse-Format"] = fmt
        self._send(200, out, headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-ClickHouse-Server-Display-Name", "chdb-http-front")
        self.send_header("X-ClickHouse-Timezone", "UTC")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", required=True)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    front = ChdbHttpFront(args.path, port=args.port).start()
    print(front.port, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
