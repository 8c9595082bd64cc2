"""nginx + gunicorn end to end, over real TLS on loopback.

The site template is rendered by deploy/render_nginx.py --sandbox with a
self-signed certificate for SERVER_NAME, and a real nginx (no root: its own
prefix, pid and logs in a temp dir) proxies to a real gunicorn started with
gunicorn.conf.py, as in production.  Requests go over HTTPS with SNI and
certificate verification for SERVER_NAME.

Tests that exercise only nginx (redirects, ACME, /metrics, body limit,
JSON error pages, rate limits) do not need the app to be up.

The client uses two loopback addresses: 127.0.0.1, which nginx treats as
local (may read /metrics), and 127.0.0.2, an "outside" client.  127.0.0.2 is
also what proves the forwarding chain: nginx itself connects to gunicorn from
127.0.0.1, so the app can only log 127.0.0.2 if it took the address nginx
forwarded.
"""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter

ROOT = Path(__file__).resolve().parents[2]
SERVER_NAME = "webhook.test"
API_TOKEN = "e2e-" + secrets.token_urlsafe(36)
LOCAL_CLIENT = "127.0.0.1"
OUTSIDE_CLIENT = "127.0.0.2"
STARTUP_TIMEOUT = 15.0
# gunicorn imports the whole app in each worker; allow for a busy 2-core CI.
APP_STARTUP_TIMEOUT = 30.0


# --- helpers -----------------------------------------------------------------


def free_port():
    """A currently unused loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path, lines=40):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


class Process:
    """A background process whose output goes to files; always reaped."""

    def __init__(self, name, argv, log_path, err_path=None, **kwargs):
        self.name = name
        self.log_path = log_path
        self.err_path = err_path
        self._files = [open(log_path, "wb")]
        if err_path:
            self._files.append(open(err_path, "wb"))
        try:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=self._files[0],
                stderr=self._files[-1] if err_path else subprocess.STDOUT, **kwargs,
            )
        except BaseException:
            self._close()
            raise

    def output(self):
        text = tail(self.log_path)
        if self.err_path:
            text += "--- stderr ---\n" + tail(self.err_path)
        return text

    def check_running(self):
        if self.popen.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.popen.returncode}:\n{self.output()}")

    def stop(self):
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        self._close()

    def _close(self):
        for handle in self._files:
            handle.close()


def wait_until(what, probe, process, timeout=STARTUP_TIMEOUT):
    """Poll `probe()` until it returns true, failing early if `process` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check_running()
        try:
            if probe():
                return
        except (OSError, requests.RequestException):
            pass
        time.sleep(0.1)
    pytest.fail(f"{what} not ready after {timeout:.0f} s:\n{process.output()}")


def direct_get(url):
    """GET without proxies from the environment."""
    with requests.Session() as s:
        s.trust_env = False
        return s.get(url, timeout=2)


def port_open(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


class ClientAdapter(HTTPAdapter):
    """Sends SNI for SERVER_NAME (and checks the certificate against it)
    while connecting to 127.0.0.1, from a chosen loopback source address."""

    def __init__(self, source_ip):
        self._source_ip = source_ip
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["server_hostname"] = SERVER_NAME  # dropped for plain http
        kwargs["source_address"] = (self._source_ip, 0)
        super().init_poolmanager(*args, **kwargs)


class Site:
    """One nginx instance serving the rendered site."""

    def __init__(self, directory, upstream_port, nginx):
        self.dir = directory
        self.http_port = free_port()
        self.https_port = free_port()
        self.upstream_port = upstream_port
        render = subprocess.run(
            [
                sys.executable, "deploy/render_nginx.py",
                "--server-name", SERVER_NAME,
                "--sandbox", str(directory),
                "--http-port", str(self.http_port),
                "--https-port", str(self.https_port),
                "--upstream", f"127.0.0.1:{upstream_port}",
            ],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
        assert render.returncode == 0, f"render_nginx.py failed:\n{render.stderr}"
        conf = render.stdout.strip()
        self.cert = str(directory / "cert.pem")
        self.acme_dir = directory / "acme" / ".well-known" / "acme-challenge"
        self.process = Process(
            "nginx",
            [nginx, "-p", f"{directory}/", "-e", str(directory / "error.log"), "-c", conf],
            directory / "nginx.out",
        )
        try:
            wait_until("nginx", lambda: port_open(self.https_port), self.process)
        except BaseException:
            self.stop()
            raise

    def session(self, source_ip=LOCAL_CLIENT):
        s = requests.Session()
        # Ignore proxy and CA-bundle environment variables: they would
        # override `verify` and could route loopback traffic elsewhere.
        s.trust_env = False
        s.verify = self.cert
        s.headers["Host"] = SERVER_NAME
        adapter = ClientAdapter(source_ip)
        s.mount("https://", adapter)
        s.mount("http://", adapter)
        return s

    def https(self, path):
        return f"https://127.0.0.1:{self.https_port}{path}"

    def http(self, path):
        return f"http://127.0.0.1:{self.http_port}{path}"

    def stop(self):
        self.process.stop()


@pytest.fixture(scope="module")
def nginx(need_tool):
    return need_tool("nginx")


@pytest.fixture(scope="module")
def openssl(need_tool):
    return need_tool("openssl")


@pytest.fixture(scope="module")
def site(tmp_path_factory, nginx, openssl):
    """nginx in front of the port the `app` fixture's gunicorn binds."""
    s = Site(tmp_path_factory.mktemp("nginx-site"), free_port(), nginx)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def dead_site(tmp_path_factory, nginx, openssl):
    """nginx whose upstream nobody listens on."""
    s = Site(tmp_path_factory.mktemp("nginx-dead"), free_port(), nginx)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def app(site, tmp_path_factory):
    """Real gunicorn (gunicorn.conf.py) on the site's upstream port, after
    `flask --app wsgi db upgrade` on a fresh SQLite database."""
    tmp = tmp_path_factory.mktemp("gunicorn")
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("GUNICORN_", "PROMETHEUS_", "FORWARDED_ALLOW_IPS"))
    }
    env.update(
        # Not production: production refuses the sandbox gateway this test pays through (its rules are
        # tested in tests/test_config.py).
        APP_ENV="testing",
        DATABASE_URL=f"sqlite:///{tmp / 'e2e.db'}",
        WEBHOOK_API_TOKEN=API_TOKEN,
        SECRET_KEY=secrets.token_urlsafe(48),
        PROXY_HOPS="1",
        SBP_GATEWAY="sandbox",
        SERVER_URL=f"https://{SERVER_NAME}:{site.https_port}",
        GUNICORN_WORKERS="2",
        PROMETHEUS_MULTIPROC_DIR=str(tmp / "prometheus"),
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="info",
    )
    migrate = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert migrate.returncode == 0, f"db upgrade failed:\n{migrate.stdout}\n{migrate.stderr}"

    # stdout: the app's JSON request lines; stderr: gunicorn's own log.
    proc = Process(
        "gunicorn",
        [
            sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app",
            "--bind", f"127.0.0.1:{site.upstream_port}",
        ],
        tmp / "gunicorn.stdout", tmp / "gunicorn.stderr", cwd=ROOT, env=env,
    )
    try:
        wait_until(
            "gunicorn /health",
            lambda: direct_get(f"http://127.0.0.1:{site.upstream_port}/health").status_code == 200,
            proc,
            timeout=APP_STARTUP_TIMEOUT,
        )
    except BaseException:
        proc.stop()
        raise
    yield proc
    proc.stop()


def request_log_entry(path, request_id, timeout=5.0):
    """The app's JSON request line carrying `request_id` (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("event") == "request" and entry.get("request_id") == request_id:
                    return entry
        if time.monotonic() > deadline:
            pytest.fail(f"no request log line with request_id {request_id}:\n{tail(path)}")
        time.sleep(0.1)


def assert_json_error(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert body["error"]["message"]


# --- nginx only ------------------------------------------------------------------


def test_http_redirects_to_https(site):
    with site.session() as s:
        r = s.get(site.http("/api/status/abc?x=1"), allow_redirects=False, timeout=5)
    assert r.status_code == 301
    assert r.headers["Location"] == f"https://{SERVER_NAME}:{site.https_port}/api/status/abc?x=1"


def test_acme_challenge_is_served_over_plain_http(site):
    token = secrets.token_urlsafe(16)
    (site.acme_dir / token).write_text("challenge-" + token, encoding="utf-8")
    with site.session() as s:
        r = s.get(site.http(f"/.well-known/acme-challenge/{token}"), allow_redirects=False, timeout=5)
        missing = s.get(site.http("/.well-known/acme-challenge/nope"), allow_redirects=False, timeout=5)
    assert r.status_code == 200
    assert r.text == "challenge-" + token
    assert missing.status_code == 404  # not redirected


def test_plain_http_on_https_port_redirects(site):
    with site.session() as s:
        r = s.get(f"http://127.0.0.1:{site.https_port}/health", allow_redirects=False, timeout=5)
    assert r.status_code == 301
    assert r.headers["Location"] == f"https://{SERVER_NAME}:{site.https_port}/health"


@pytest.mark.parametrize("path", ["/metrics", "/metrics/", "/%6detrics", "/metrics?name=x"])
def test_metrics_is_closed_to_non_local_clients(site, path):
    with site.session(OUTSIDE_CLIENT) as s:
        r = s.get(site.https(path), timeout=5)
    assert_json_error(r, 403, "forbidden")
    assert "max-age=" in r.headers["Strict-Transport-Security"]


def test_oversized_body_is_rejected_with_json_413(site):
    body = b'{"pad": "' + b"x" * 100_000 + b'"}'
    with site.session() as s:
        r = s.post(
            site.https("/api/payment"), data=body, timeout=10,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_TOKEN}"},
        )
    assert_json_error(r, 413, "payload_too_large")


def test_request_id_is_kept_when_sane_and_replaced_otherwise(site):
    with site.session(OUTSIDE_CLIENT) as s:
        kept = s.get(site.https("/metrics"), headers={"X-Request-ID": "abc-123.x:y"}, timeout=5)
        replaced = s.get(site.https("/metrics"), headers={"X-Request-ID": 'a"b c'}, timeout=5)
    assert kept.headers["X-Request-ID"] == "abc-123.x:y"
    assert len(replaced.headers["X-Request-ID"]) == 32  # nginx's own $request_id


def test_upstream_down_is_json_502(dead_site):
    with dead_site.session() as s:
        r = s.get(dead_site.https("/api/health"), timeout=10)
    assert_json_error(r, 502, "bad_gateway")
    assert r.headers["X-Request-ID"]


def test_rate_limit_answers_json_429(dead_site):
    # /console/login allows 10 requests a minute with a burst of 5.
    with dead_site.session() as s:
        statuses = []
        for _ in range(10):
            r = s.post(dead_site.https("/console/login"), data={"email": "x"}, timeout=10)
            statuses.append(r.status_code)
            if r.status_code == 429:
                break
    assert statuses[-1] == 429, statuses
    assert_json_error(r, 429, "rate_limited")
    assert r.headers["Retry-After"] == "1"


# --- through gunicorn ---------------------------------------------------------------


def test_health_through_nginx(site, app):
    with site.session() as s:
        r = s.get(site.https("/health"), timeout=10)
    assert r.status_code == 200
    assert r.json()["status"] == "healthy"
    assert "max-age=" in r.headers["Strict-Transport-Security"]


def test_sandbox_payment_flow_over_tls(site, app):
    order_id = "e2e-" + uuid.uuid4().hex[:16]
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    with site.session() as s:
        created = s.post(
            site.https("/api/payment"), json={"amount": 100, "orderId": order_id},
            headers=auth, timeout=15,
        )
        assert created.status_code == 201, created.text
        qrc_id = created.json()["qrcId"]

        paid = s.post(site.https(f"/sandbox/sbp/{qrc_id}/pay"), headers=auth, timeout=15)
        assert 200 <= paid.status_code < 300, paid.text

        status = s.get(site.https(f"/api/status/{order_id}"), headers=auth, timeout=15)
    assert status.status_code == 200, status.text
    assert status.json()["status"] == "paid"


def test_app_logs_the_client_address_nginx_forwarded_not_a_spoofed_one(site, app):
    request_id = "e2e-" + uuid.uuid4().hex
    with site.session(OUTSIDE_CLIENT) as s:
        r = s.get(
            site.https("/health"), timeout=10,
            headers={
                "X-Request-ID": request_id,
                "X-Forwarded-For": "203.0.113.66",
                "X-Real-IP": "203.0.113.67",
                "Forwarded": "for=203.0.113.68;proto=http",
                "X-Forwarded-Ssl": "off",  # must not confuse gunicorn's scheme check
            },
        )
    assert r.status_code == 200, r.text
    assert r.headers["X-Request-ID"] == request_id
    entry = request_log_entry(app.log_path, request_id)
    assert entry["remote_addr"] == OUTSIDE_CLIENT
    assert entry["method"] == "GET"
    assert entry["path"] == "/health"
    assert entry["status"] == 200


def test_the_status_read_logs_the_client_address_nginx_forwarded(site, app):
    """GET /api/status is answered in front of Flask (blueprints/status_reader.py): inside ProxyFix, as Flask."""
    order_id, request_id = "e2e-" + uuid.uuid4().hex[:16], "e2e-" + uuid.uuid4().hex
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    with site.session(OUTSIDE_CLIENT) as s:
        created = s.post(site.https("/api/payment"), json={"amount": 100, "orderId": order_id}, headers=auth,
                         timeout=15)
        assert created.status_code == 201, created.text
        r = s.get(site.https(f"/api/status/{order_id}"), timeout=10,
                  headers={**auth, "X-Request-ID": request_id, "X-Forwarded-For": "203.0.113.66"})
    assert r.status_code == 200, r.text
    assert r.json()["orderId"] == order_id
    assert r.headers["X-Request-ID"] == request_id
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    entry = request_log_entry(app.log_path, request_id)
    assert entry["remote_addr"] == OUTSIDE_CLIENT
    assert (entry["path"], entry["status"], entry["order_id"]) == (f"/api/status/{order_id}", 200, order_id)


def test_metrics_is_open_to_the_local_host(site, app):
    with site.session(LOCAL_CLIENT) as s:
        r = s.get(site.https("/metrics"), timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
