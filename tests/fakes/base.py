"""Shared machinery for the fake provider HTTP servers used in tests."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it; header names are lower-case."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int = 0

    @property
    def form(self) -> dict[str, str]:
        """The body parsed as application/x-www-form-urlencoded."""
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def params(self) -> dict[str, Any]:
        """Query, form fields or JSON object merged, the way bot-style APIs read them."""
        merged: dict[str, Any] = dict(self.query)
        if isinstance(self.json, dict):
            merged.update(self.json)
        elif "application/x-www-form-urlencoded" in self.headers.get("content-type", ""):
            merged.update(self.form)
        return merged


@dataclass
class Response:
    """What a fake answers: a dict/list is sent as JSON, str/bytes as they are."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, dict[str, str]]:
        """Body bytes and headers including Content-Type."""
        headers = dict(self.headers)
        body = self.body
        if isinstance(body, (dict, list)):
            body = json.dumps(body, ensure_ascii=False).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return body, headers


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response."""
    return Response(status, obj, dict(headers or {}))


@dataclass
class _Failure:
    status: int
    body: Any
    headers: dict[str, str]
    path: str | None


class _Handler(BaseHTTPRequestHandler):
    fake: "FakeServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        req = RecordedRequest(
            method=self.command,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            json=parsed,
        )
        response = self.fake._respond(req)
        data, headers = response.encode()
        self.fake._pause()
        try:
            self.send_response(response.status)
            for name, value in headers.items():
                self.send_header(name, value)
            if response.status not in (204, 304):
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. its timeout fired during delay_seconds).
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeServer:
    """A real HTTP server on 127.0.0.1 in a background thread; subclasses implement handle()."""

    default_failure_status = 503

    def __init__(self, port: int = 0) -> None:
        self.delay_seconds: float = 0.0
        self._port = port
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._failures: list[_Failure] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self):
        """Start listening (on the same port as before after a stop)."""
        if self._server is not None:
            return self
        handler = type(f"{type(self).__name__}Handler", (_Handler,), {"fake": self})
        self._server = _Server(("127.0.0.1", self._port), handler)
        self._port = self._server.server_address[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
            name=type(self).__name__, daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close the socket; state and request log are kept."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def down(self) -> None:
        """Refuse connections until up()."""
        self.stop()

    def up(self) -> None:
        """Listen again on the same port."""
        self.start()

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (0 before the first start)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL without a trailing slash."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._requests.clear()

    def fail_next(self, n: int = 1, status: int | None = None, body: Any = None,
                  headers: dict[str, str] | None = None, path: str | None = None) -> None:
        """Answer the next n requests (only those whose path ends with `path`, if given) with an error."""
        status = status or self.default_failure_status
        with self._lock:
            for _ in range(n):
                self._failures.append(_Failure(status, body, dict(headers or {}), path))

    def failure_body(self, status: int) -> Any:
        """Default body of an injected failure; subclasses mimic their provider."""
        return {"error": "injected failure", "status": status}

    def wait_for(self, predicate: Callable[[RecordedRequest], bool] | None = None,
                 timeout: float = 5.0, count: int = 1) -> list[RecordedRequest]:
        """Block until `count` logged requests match `predicate`; return them or raise TimeoutError."""
        def matches() -> list[RecordedRequest]:
            return [r for r in self._requests if predicate is None or predicate(r)]

        with self._changed:
            if not self._changed.wait_for(lambda: len(matches()) >= count, timeout):
                raise TimeoutError(f"{type(self).__name__}: {len(matches())}/{count} matching requests "
                                   f"after {timeout}s; got {[(r.method, r.path) for r in self._requests]}")
            return matches()

    def handle(self, req: RecordedRequest) -> Response:
        """Answer one request; overridden by each fake."""
        return json_response({"error": "not found"}, 404)

    def _respond(self, req: RecordedRequest) -> Response:
        with self._lock:
            failure = next((f for f in self._failures
                            if f.path is None or req.path.endswith(f.path)), None)
            if failure is not None:
                self._failures.remove(failure)
        if failure is not None:
            body = failure.body if failure.body is not None else self.failure_body(failure.status)
            response = Response(failure.status, body, failure.headers)
        else:
            try:
                response = self.handle(req)
            except Exception as exc:  # a bug in a fake must surface as a 500, not a hung client
                response = json_response({"error": f"fake crashed: {exc!r}"}, 500)
        with self._changed:
            self._requests.append(replace(req, status=response.status))
            self._changed.notify_all()
        return response

    def _pause(self) -> None:
        if self.delay_seconds > 0:
            # An Event wait, so stop() cuts the delay short instead of blocking on it.
            self._stopping.wait(self.delay_seconds)
