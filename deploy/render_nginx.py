#!/usr/bin/env python3
"""Render nginx/webhook.conf (the site template) into a working nginx site.

Standard library only: install.sh runs it with the system python3 before
any virtualenv exists.

    render_nginx.py --server-name pay.example.com -o /etc/nginx/sites-available/webhook.conf

With --sandbox DIR it also builds a self-contained nginx setup in DIR (a
self-signed certificate unless --cert/--key are given, a top-level nginx.conf
that includes the site, private pid/log/temp paths), so that
`nginx -t -p DIR/ -e DIR/error.log -c DIR/nginx.conf` (or the same without
-t to run it) needs no root and touches nothing outside DIR.  deploy.mk's
deploy-check and tests/deploy use that.
"""

from __future__ import annotations

import argparse
import ipaddress
import grp
import os
import pwd
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "nginx" / "webhook.conf"
DEFAULT_ACME = "/var/www/letsencrypt"
DEFAULT_LOG_DIR = "/var/log/nginx"

# Values end up inside nginx directives: allow nothing that could end a
# directive or open a block (';', '{', '}', quotes, whitespace, '$', '#').
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]*$")
_SAFE_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_SAFE_UPSTREAM = re.compile(r"^(unix:/[A-Za-z0-9._/-]+|[A-Za-z0-9.-]+:\d{1,5}|\[[0-9A-Fa-f:.]+\]:\d{1,5})$")
_PLACEHOLDER = re.compile(r"\{\{[A-Z_]+\}\}")


class RenderError(ValueError):
    """A value that cannot safely go into the nginx config."""


def _check(pattern: re.Pattern, value: str, what: str) -> str:
    if not pattern.match(value):
        raise RenderError(f"{what}: unsafe or malformed value {value!r}")
    return value


def _port(value: int, what: str) -> int:
    if not 0 < value < 65536:
        raise RenderError(f"{what}: {value} is not a TCP port")
    return value


def _listen_lines(addresses: list[str], port: int, ssl: bool) -> str:
    """One `listen` line per address ('*' or '' = all IPv4 addresses)."""
    lines = []
    for address in addresses:
        if address in ("", "*"):
            target = str(port)
        else:
            host = address.strip("[]")
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                raise RenderError(f"--listen: {address!r} is not an IP address") from None
            target = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
        lines.append(f"    listen {target}{' ssl' if ssl else ''};")
    return "\n".join(lines)


def _admin_access(allow: str) -> str:
    """allow/deny lines for /console and /admin (empty list = open to all)."""
    nets = [item.strip() for item in allow.split(",") if item.strip()]
    if not nets:
        return "        allow all;  # restrict with render_nginx.py --admin-allow CIDR,..."
    lines = []
    for net in nets:
        try:
            parsed = ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise RenderError(f"--admin-allow: {net!r} is not an address or network") from None
        lines.append(f"        allow {parsed};")
    lines.append("        deny all;")
    return "\n".join(lines)


def render(
    *,
    server_name: str,
    cert: str,
    key: str,
    upstream: str = "127.0.0.1:8080",
    http_port: int = 80,
    https_port: int = 443,
    listen: list[str] | None = None,
    acme_root: str = DEFAULT_ACME,
    log_dir: str = DEFAULT_LOG_DIR,
    admin_allow: str = "",
    template: Path = TEMPLATE,
) -> str:
    """Return the site config with every placeholder filled in and checked."""
    names = server_name.split()
    if not names:
        raise RenderError("--server-name is required")
    for name in names:
        _check(_SAFE_NAME, name, "--server-name")
    listen = ["0.0.0.0", "[::]"] if listen is None else listen
    if not listen:
        raise RenderError("--listen: at least one address is needed")
    _port(http_port, "--http-port")
    _port(https_port, "--https-port")
    redirect_host = names[0] if https_port == 443 else f"{names[0]}:{https_port}"
    values = {
        "SERVER_NAME": " ".join(names),
        "REDIRECT_HOST": redirect_host,
        "UPSTREAM": _check(_SAFE_UPSTREAM, upstream, "--upstream"),
        "CERT": _check(_SAFE_PATH, cert, "--cert"),
        "KEY": _check(_SAFE_PATH, key, "--key"),
        "ACME_ROOT": _check(_SAFE_PATH, acme_root, "--acme-root"),
        "LOG_DIR": _check(_SAFE_PATH, log_dir, "--log-dir"),
        "LISTEN_HTTP": _listen_lines(listen, http_port, ssl=False),
        "LISTEN_HTTPS": _listen_lines(listen, https_port, ssl=True),
        "ADMIN_ACCESS": _admin_access(admin_allow),
    }
    text = template.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    leftover = sorted(set(_PLACEHOLDER.findall(text)))
    if leftover:
        raise RenderError(f"template has placeholders this script does not know: {leftover}")
    return text


def self_signed(cert: Path, key: Path, server_name: str) -> None:
    """Write a throw-away self-signed certificate (openssl CLI)."""
    names = server_name.split()
    san = ",".join([f"DNS:{n}" for n in names] + ["IP:127.0.0.1", "IP:::1"])
    subprocess.run(
        [
            "openssl", "req", "-x509", "-nodes", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-days", "2", "-subj", f"/CN={names[0]}",
            "-addext", f"subjectAltName={san}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    key.chmod(0o600)


def sandbox_main_conf(directory: Path, site: Path) -> str:
    """A minimal top-level nginx.conf that runs the site from `directory`."""
    d = directory
    user_line = ""
    if os.geteuid() == 0:
        # As root, nginx would run its workers as `nobody`, who cannot read a
        # private temp directory; keep them as the invoking user instead.
        user = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        user_line = f"user {user} {group};\n"
    return (
        "# Generated by deploy/render_nginx.py --sandbox: test harness only.\n"
        f"{user_line}"
        "worker_processes 1;\n"
        "daemon off;\n"
        "master_process on;\n"
        f"pid {d}/nginx.pid;\n"
        f"error_log {d}/error.log info;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        "    default_type application/octet-stream;\n"
        f"    access_log {d}/access.log;\n"
        f"    client_body_temp_path {d}/tmp/body;\n"
        f"    proxy_temp_path {d}/tmp/proxy;\n"
        f"    fastcgi_temp_path {d}/tmp/fastcgi;\n"
        f"    uwsgi_temp_path {d}/tmp/uwsgi;\n"
        f"    scgi_temp_path {d}/tmp/scgi;\n"
        f"    include {site};\n"
        "}\n"
    )


def build_sandbox(directory: Path, args: argparse.Namespace) -> Path:
    """Create cert, site, acme root and nginx.conf under `directory`."""
    directory = directory.resolve()
    for sub in ("tmp", "logs", "acme/.well-known/acme-challenge"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    cert = Path(args.cert) if args.cert else directory / "cert.pem"
    key = Path(args.key) if args.key else directory / "key.pem"
    if not args.cert:
        self_signed(cert, key, args.server_name)
    site = directory / "site.conf"
    site.write_text(
        render(
            server_name=args.server_name,
            cert=str(cert),
            key=str(key),
            upstream=args.upstream,
            http_port=args.http_port,
            https_port=args.https_port,
            listen=args.listen or ["127.0.0.1"],
            acme_root=args.acme_root if args.acme_root != DEFAULT_ACME else str(directory / "acme"),
            log_dir=args.log_dir if args.log_dir != DEFAULT_LOG_DIR else str(directory / "logs"),
            admin_allow=args.admin_allow,
            template=Path(args.template),
        ),
        encoding="utf-8",
    )
    conf = directory / "nginx.conf"
    conf.write_text(sandbox_main_conf(directory, site), encoding="utf-8")
    return conf


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server-name", required=True,
                   help="public host name(s), space-separated; the first is canonical")
    p.add_argument("--cert", help="certificate chain (default: Let's Encrypt's path for the first name)")
    p.add_argument("--key", help="private key (default: Let's Encrypt's path for the first name)")
    p.add_argument("--upstream", default="127.0.0.1:8080", help="gunicorn address (default %(default)s)")
    p.add_argument("--http-port", type=int, default=80, help="default %(default)s")
    p.add_argument("--https-port", type=int, default=443, help="default %(default)s")
    p.add_argument("--listen", action="append", metavar="ADDR",
                   help="address to listen on, repeatable (default: 0.0.0.0 and [::]; "
                        "with --sandbox: 127.0.0.1)")
    p.add_argument("--acme-root", default=DEFAULT_ACME, help="ACME webroot (default %(default)s)")
    p.add_argument("--log-dir", default=DEFAULT_LOG_DIR, help="default %(default)s")
    p.add_argument("--admin-allow", default="", metavar="CIDR,...",
                   help="addresses/networks allowed to /console and /admin (default: all)")
    p.add_argument("--template", default=str(TEMPLATE), help="default %(default)s")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", help="write the site here (default: stdout)")
    out.add_argument("--sandbox", metavar="DIR",
                     help="build a root-free nginx test setup in DIR; prints its nginx.conf path")
    args = p.parse_args(argv)
    if bool(args.cert) != bool(args.key):
        p.error("--cert and --key go together")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.sandbox:
            print(build_sandbox(Path(args.sandbox), args))
            return 0
        first = args.server_name.split()[0] if args.server_name.split() else ""
        text = render(
            server_name=args.server_name,
            cert=args.cert or f"/etc/letsencrypt/live/{first}/fullchain.pem",
            key=args.key or f"/etc/letsencrypt/live/{first}/privkey.pem",
            upstream=args.upstream,
            http_port=args.http_port,
            https_port=args.https_port,
            listen=args.listen,
            acme_root=args.acme_root,
            log_dir=args.log_dir,
            admin_allow=args.admin_allow,
            template=Path(args.template),
        )
    except RenderError as exc:
        print(f"render_nginx.py: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"render_nginx.py: openssl failed: {exc.stderr.decode(errors='replace')}", file=sys.stderr)
        return 1
    if args.output:
        tmp = Path(args.output + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(args.output)  # atomic: nginx never reads half a file
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
