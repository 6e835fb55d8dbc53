"""A tiny fault-injecting HTTP proxy for S3 tests: forwards to a real S3 server, but answers
some requests with 500/503 (SlowDown), holds others past the client's timeout, or drops the
connection. Faults are drawn from a seeded RNG, so a run is reproducible."""

from __future__ import annotations

import http.client
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class FaultProxy:
    def __init__(self, upstream: str, *, fail_rate: float = 0.0, hang_rate: float = 0.0,
                 drop_rate: float = 0.0, hang_seconds: float = 2.0, seed: int = 1) -> None:
        self.upstream = urlsplit(upstream)
        self.fail_rate, self.hang_rate, self.drop_rate = fail_rate, hang_rate, drop_rate
        self.hang_seconds = hang_seconds
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.faults = 0
        self.requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                proxy.handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _draw(self) -> str:
        with self.lock:
            self.requests += 1
            roll = self.rng.random()
            if roll < self.fail_rate:
                kind = "fail"
            elif roll < self.fail_rate + self.hang_rate:
                kind = "hang"
            elif roll < self.fail_rate + self.hang_rate + self.drop_rate:
                kind = "drop"
            else:
                return "pass"
            self.faults += 1
            return kind

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        kind = self._draw()
        if kind == "drop":
            req.close_connection = True
            req.connection.close()
            return
        if kind == "hang":
            time.sleep(self.hang_seconds)
            req.close_connection = True
            req.connection.close()
            return
        if kind == "fail":
            code, name = self.rng.choice([(503, "SlowDown"), (500, "InternalError")])
            payload = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{name}</Code>"
                       f"<Message>injected</Message></Error>").encode()
            req.send_response(code)
            req.send_header("Content-Type", "application/xml")
            req.send_header("Content-Length", str(len(payload)))
            req.end_headers()
            if req.command != "HEAD":
                req.wfile.write(payload)
            return
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            headers = {k: v for k, v in req.headers.items() if k.lower() != "host"}
            headers["Host"] = f"{self.upstream.hostname}:{self.upstream.port}"
            conn.request(req.command, req.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            req.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    req.send_header(key, value)
            req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            if req.command != "HEAD":
                req.wfile.write(data)
        finally:
            conn.close()
