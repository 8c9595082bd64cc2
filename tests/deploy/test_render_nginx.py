"""deploy/render_nginx.py: the nginx site template and its rendering."""

import importlib.util
import re
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def render_nginx(repo_root):
    """The render script as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location(
        "render_nginx", repo_root / "deploy" / "render_nginx.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render(module, **overrides):
    values = {"server_name": "pay.example.com", "cert": "/etc/ssl/c.pem", "key": "/etc/ssl/k.pem"}
    values.update(overrides)
    return module.render(**values)


def test_defaults_render_a_complete_production_site(render_nginx):
    text = render(render_nginx)
    assert "{{" not in text
    assert "listen 0.0.0.0:80;" in text and "listen [::]:80;" in text
    assert "listen 0.0.0.0:443 ssl;" in text and "listen [::]:443 ssl;" in text
    assert "server 127.0.0.1:8080 fail_timeout=0;" in text
    assert "return 301 https://pay.example.com$request_uri;" in text
    assert "root /var/www/letsencrypt;" in text
    assert "ssl_certificate     /etc/ssl/c.pem;" in text


def test_site_has_the_required_protections(render_nginx):
    text = render(render_nginx)
    assert "client_max_body_size 64k;" in text
    assert "limit_req_status 429;" in text
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    assert "proxy_set_header X-Forwarded-For    $remote_addr;" in text
    assert "proxy_set_header X-Forwarded-Proto  $scheme;" in text
    metrics = re.search(r"location \^~ /metrics \{(.*?)\}", text, re.S).group(1)
    assert "allow 127.0.0.1;" in metrics and "deny all;" in metrics
    for status in (413, 429, 502, 503, 504):
        assert re.search(rf"error_page [0-9 ]*\b{status}\b", text), status
        assert f"return {status} '{{\"success\":false" in text, status


def test_non_standard_https_port_goes_into_the_redirect(render_nginx):
    text = render(render_nginx, https_port=8443, http_port=8080, listen=["127.0.0.1"])
    assert "return 301 https://pay.example.com:8443$request_uri;" in text
    assert "listen 127.0.0.1:8080;" in text
    assert "listen 127.0.0.1:8443 ssl;" in text


def test_admin_allow_list_closes_console_and_admin(render_nginx):
    text = render(render_nginx, admin_allow="203.0.113.0/24, 2001:db8::1")
    for location in ("= /console/login", "^~ /console", "^~ /admin"):
        block = re.search(rf"location {re.escape(location)} \{{(.*?)\}}", text, re.S).group(1)
        assert "allow 203.0.113.0/24;" in block
        assert "allow 2001:db8::1/128;" in block
        assert "deny all;" in block


def test_console_is_open_by_default(render_nginx):
    block = re.search(r"location \^~ /console \{(.*?)\}", render(render_nginx), re.S).group(1)
    assert "allow all;" in block
    assert "deny" not in block


@pytest.mark.parametrize(
    "overrides",
    [
        {"server_name": "pay.example.com; include /etc/passwd"},
        {"server_name": ""},
        {"cert": "/etc/ssl/c.pem; ssl_verify_client off"},
        {"key": "relative/key.pem"},
        {"upstream": "127.0.0.1:8080; }"},
        {"acme_root": "/var/www/{x}"},
        {"admin_allow": "everyone"},
        {"listen": ["example.com"]},
        {"https_port": 70000},
    ],
)
def test_unsafe_values_are_refused(render_nginx, overrides):
    with pytest.raises(render_nginx.RenderError):
        render(render_nginx, **overrides)


def test_cli_reports_bad_values_in_one_line(repo_root):
    result = subprocess.run(
        [sys.executable, "deploy/render_nginx.py", "--server-name", "a;b"],
        cwd=repo_root, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("render_nginx.py: --server-name")


def test_production_render_passes_nginx_t(repo_root, tmp_path, need_tool):
    nginx = need_tool("nginx")
    need_tool("openssl")
    sandbox = tmp_path / "nginx"
    conf = subprocess.run(
        [
            sys.executable, "deploy/render_nginx.py", "--server-name", "pay.example.com",
            "--listen", "0.0.0.0", "--listen", "[::]", "--http-port", "80", "--https-port", "443",
            "--admin-allow", "10.0.0.0/8", "--sandbox", str(sandbox),
        ],
        cwd=repo_root, check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()
    # -t loads the certificate and parses everything but binds no port.
    result = subprocess.run(
        [nginx, "-t", "-p", f"{sandbox}/", "-e", str(sandbox / "error.log"), "-c", conf],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "warn" not in result.stderr, result.stderr
