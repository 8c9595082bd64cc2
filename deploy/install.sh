#!/usr/bin/env bash
# Install or upgrade the payment webhook gateway on a Debian 12 / Ubuntu
# server: packages, system user, code + virtualenv, secrets, systemd units,
# nginx site, and (optionally) a Let's Encrypt certificate.
#
# Idempotent: run it again after `git pull` to upgrade.  It never overwrites
# /etc/webhook/webhook.env, and it never needs the network except for apt,
# pip and certbot.
#
#   sudo deploy/install.sh --domain pay.example.com --dry-run    # show what it would do
#   sudo deploy/install.sh --domain pay.example.com --certbot admin@example.com
set -euo pipefail

readonly PREFIX=/opt/webhook
readonly APP_DIR=$PREFIX/app
readonly VENV=$PREFIX/venv
readonly ETC_DIR=/etc/webhook
readonly ENV_FILE=$ETC_DIR/webhook.env
readonly TLS_DIR=$ETC_DIR/tls
readonly STATE_DIR=/var/lib/webhook
readonly ACME_ROOT=/var/www/letsencrypt
readonly SERVICE_USER=webhook
readonly UNIT_DIR=/etc/systemd/system
readonly CLI_WRAPPER=/usr/local/sbin/webhook-flask
readonly PROVIDERS=(telegram cryptobot sbp bmc yookassa panel merchant)
readonly APT_PACKAGES=(python3 python3-venv nginx certbot python3-certbot-nginx openssl rsync ca-certificates)

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOMAIN=""
CERTBOT_EMAIL=""
ADMIN_ALLOW=""
DRY_RUN=0

usage() {
    cat <<EOF
Usage: $0 --domain NAME [--certbot EMAIL] [--admin-allow CIDR,...] [--dry-run]

  --domain NAME          public host name of the service (required)
  --certbot EMAIL        obtain a Let's Encrypt certificate now (HTTP-01 via
                         $ACME_ROOT); without it the certbot command is printed
  --admin-allow LIST     addresses/networks allowed to /console and /admin
                         (default: everyone; the console has its own login)
  --source DIR           application source tree (default: $SRC_DIR)
  --dry-run              print the actions, change nothing (no root needed)
EOF
}

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "==> $*"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --domain) DOMAIN=${2:?--domain needs a value}; shift 2 ;;
        --certbot) CERTBOT_EMAIL=${2:?--certbot needs an e-mail address}; shift 2 ;;
        --admin-allow) ADMIN_ALLOW=${2:?--admin-allow needs a value}; shift 2 ;;
        --source) SRC_DIR=$(cd "${2:?--source needs a directory}" && pwd); shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[[ -n $DOMAIN ]] || { usage >&2; die "--domain is required"; }
[[ $DOMAIN =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] || die "--domain: not a host name: $DOMAIN"
[[ -f $SRC_DIR/wsgi.py && -f $SRC_DIR/requirements.txt ]] \
    || die "$SRC_DIR does not look like the application (no wsgi.py / requirements.txt)"
if [[ $DRY_RUN -eq 0 && $EUID -ne 0 ]]; then
    die "run as root (or with --dry-run)"
fi

# run CMD...: execute, or only print it with --dry-run.
run() {
    if [[ $DRY_RUN -eq 1 ]]; then
        printf '+'; printf ' %q' "$@"; printf '\n'
    else
        "$@"
    fi
}

LE_CERT=/etc/letsencrypt/live/$DOMAIN/fullchain.pem
LE_KEY=/etc/letsencrypt/live/$DOMAIN/privkey.pem
WORKER_UNITS=()
for provider in "${PROVIDERS[@]}"; do
    WORKER_UNITS+=("webhook-worker@$provider.service")
done

install_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        say "packages: all present"
        return
    fi
    say "packages: installing ${missing[*]}"
    run apt-get update -q
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

check_python() {
    # The code needs Python >= 3.11 (Debian 12's python3).
    if [[ $DRY_RUN -eq 0 ]]; then
        python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || die "python3 is older than 3.11"
    fi
}

create_user() {
    if id -u "$SERVICE_USER" >/dev/null 2>&1; then
        say "user: $SERVICE_USER exists"
        return
    fi
    say "user: creating system user $SERVICE_USER"
    run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "payment webhook gateway" "$SERVICE_USER"
}

install_code() {
    say "code: $SRC_DIR -> $APP_DIR (root-owned, read-only for $SERVICE_USER)"
    run install -d -m 0755 -o root -g root "$PREFIX" "$APP_DIR"
    # A developer's .env, database or virtualenv must never reach the server.
    run rsync -a --delete --chown=root:root --chmod=D0755,F0644 \
        --exclude=.git/ --exclude=.venv/ --exclude=venv/ --exclude=instance/ \
        --exclude=__pycache__/ --exclude='*.pyc' --exclude=.env --exclude='*.db' \
        --exclude='*.sqlite3' --exclude=.pytest_cache/ --exclude=.ci/ \
        "$SRC_DIR/" "$APP_DIR/"
    if [[ ! -x $VENV/bin/python ]]; then
        say "venv: creating $VENV"
        run python3 -m venv "$VENV"
    fi
    say "venv: installing requirements"
    run "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$APP_DIR/requirements.txt"
    # The services run with a read-only code tree and PYTHONDONTWRITEBYTECODE:
    # compile once here so imports stay fast.
    run "$VENV/bin/python" -m compileall -q "$APP_DIR"
    # The app creates its Flask instance folder at start-up; the code tree is
    # read-only to the service, so it has to exist already (it stays empty:
    # the database and secrets live in /var/lib/webhook and the env file).
    run install -d -m 0755 -o root -g root "$APP_DIR/instance"
}

create_env_file() {
    run install -d -m 0700 -o root -g root "$ETC_DIR"
    if [[ -e $ENV_FILE ]]; then
        say "secrets: $ENV_FILE exists, left as it is"
        if [[ $DRY_RUN -eq 0 ]]; then
            # Point out settings added to the template since it was created.
            local key
            for key in $(grep -oE '^#?[A-Z][A-Z0-9_]*=' "$SRC_DIR/deploy/webhook.env.example" \
                         | tr -d '#=' | sort -u); do
                grep -qE "^#?$key=" "$ENV_FILE" \
                    || echo "    note: $key is in deploy/webhook.env.example but not in $ENV_FILE"
            done
        fi
        return
    fi
    say "secrets: creating $ENV_FILE (0600 root) with fresh random secrets"
    if [[ $DRY_RUN -eq 1 ]]; then
        echo "+ render deploy/webhook.env.example > $ENV_FILE (secrets: python3 secrets.token_urlsafe(48))"
        return
    fi
    local tmp
    tmp=$(mktemp "$ETC_DIR/.webhook.env.XXXXXX")
    # Each __GENERATE__ gets its own secret; the secrets never appear on a
    # command line (ps) or in this script's output.
    python3 - "$SRC_DIR/deploy/webhook.env.example" "$DOMAIN" >"$tmp" <<'PY'
import re, secrets, sys
text = open(sys.argv[1], encoding="utf-8").read().replace("__DOMAIN__", sys.argv[2])
sys.stdout.write(re.sub("__GENERATE__", lambda _: secrets.token_urlsafe(48), text))
PY
    chmod 0600 "$tmp"
    chown root:root "$tmp"
    mv "$tmp" "$ENV_FILE"
}

install_units() {
    say "systemd: installing units into $UNIT_DIR"
    run install -m 0644 -o root -g root "$SRC_DIR/webhook.service" "$UNIT_DIR/webhook.service"
    run install -m 0644 -o root -g root "$SRC_DIR/webhook-worker@.service" "$UNIT_DIR/webhook-worker@.service"
    # `webhook-flask users create ...`: the app's CLI as the service user,
    # with the service's environment.
    say "cli: installing $CLI_WRAPPER"
    run install -m 0755 -o root -g root "$SRC_DIR/deploy/webhook-flask" "$CLI_WRAPPER"
    run systemctl daemon-reload
}

ensure_certificate_files() {
    # nginx refuses to start without the certificate it is configured with.
    # Until Let's Encrypt has issued one, serve a self-signed placeholder.
    if [[ -f $LE_CERT ]]; then
        CERT=$LE_CERT KEY=$LE_KEY
        return
    fi
    CERT=$TLS_DIR/selfsigned.pem KEY=$TLS_DIR/selfsigned.key
    if [[ -f $CERT && -f $KEY ]]; then
        return
    fi
    say "tls: no certificate for $DOMAIN yet, creating a self-signed placeholder"
    run install -d -m 0700 -o root -g root "$TLS_DIR"
    run openssl req -x509 -nodes -newkey rsa:2048 -days 30 -subj "/CN=$DOMAIN" \
        -addext "subjectAltName=DNS:$DOMAIN" -keyout "$KEY" -out "$CERT"
    run chmod 0600 "$KEY"
}

configure_nginx() {
    ensure_certificate_files
    local site
    if [[ -d /etc/nginx/sites-available ]]; then
        site=/etc/nginx/sites-available/webhook.conf
    else
        site=/etc/nginx/conf.d/webhook.conf  # nginx.org packages: no sites-*
    fi
    say "nginx: $site for $DOMAIN (certificate $CERT)"
    run install -d -m 0755 "$ACME_ROOT"
    local render=(python3 "$SRC_DIR/deploy/render_nginx.py" --server-name "$DOMAIN"
                  --cert "$CERT" --key "$KEY" --acme-root "$ACME_ROOT" -o "$site")
    if [[ -n $ADMIN_ALLOW ]]; then
        render+=(--admin-allow "$ADMIN_ALLOW")
    fi
    run "${render[@]}"
    if [[ $site == /etc/nginx/sites-available/* ]]; then
        run ln -sfn "$site" /etc/nginx/sites-enabled/webhook.conf
        # Debian's "Welcome to nginx" site claims default_server on port 80.
        if [[ -L /etc/nginx/sites-enabled/default \
              && $(readlink -f /etc/nginx/sites-enabled/default) == /etc/nginx/sites-available/default ]]; then
            say "nginx: disabling the stock default site"
            run rm -f /etc/nginx/sites-enabled/default
        fi
    fi
    run nginx -t
    run systemctl enable nginx.service
    run systemctl reload-or-restart nginx.service
}

start_services() {
    say "systemd: enabling and (re)starting webhook.service ${WORKER_UNITS[*]}"
    run systemctl enable webhook.service "${WORKER_UNITS[@]}"
    if [[ $DRY_RUN -eq 0 ]] && grep -q '__SET_ME__' "$ENV_FILE"; then
        # Production refuses to start without a real SBP gateway: nothing to start until it is set.
        say "not started yet: fill in the values marked __SET_ME__ in $ENV_FILE (the T-Bank terminal),"
        say "then: systemctl restart webhook.service && systemctl start ${WORKER_UNITS[*]}"
        return
    fi
    # restart = start on a first install, pick up new code on an upgrade.
    # webhook.service migrates the schema (ExecStartPre) before it is ready.
    # The workers are PartOf=webhook.service, so this restarts running ones;
    # `start` then brings up any that were not running yet.
    run systemctl restart webhook.service
    run systemctl start "${WORKER_UNITS[@]}"
    if [[ $DRY_RUN -eq 1 ]]; then
        return
    fi
    local attempt
    for attempt in $(seq 1 30); do
        if python3 -c 'import sys, urllib.request
sys.exit(urllib.request.urlopen("http://127.0.0.1:8080/health", timeout=2).status != 200)' 2>/dev/null; then
            say "health: http://127.0.0.1:8080/health answers 200 (after $attempt s)"
            return
        fi
        sleep 1
    done
    systemctl --no-pager status webhook.service || true
    die "webhook.service is not healthy after 30 s: journalctl -u webhook -n 50"
}

certificate() {
    local certbot_cmd=(certbot certonly --webroot -w "$ACME_ROOT" -d "$DOMAIN"
                       --deploy-hook "systemctl reload nginx")
    if [[ -f $LE_CERT ]]; then
        say "tls: Let's Encrypt certificate in use; certbot.timer renews it"
        return
    fi
    if [[ -z $CERTBOT_EMAIL ]]; then
        say "tls: serving a self-signed placeholder. Once DNS for $DOMAIN points here, run"
        echo "      $0 --domain $DOMAIN --certbot YOU@EXAMPLE.COM"
        echo "    or by hand, then run this installer again to switch nginx to the certificate:"
        echo "      certbot certonly --webroot -w $ACME_ROOT -d $DOMAIN --deploy-hook 'systemctl reload nginx' --email YOU@EXAMPLE.COM --agree-tos"
        return
    fi
    say "tls: requesting a Let's Encrypt certificate for $DOMAIN"
    run "${certbot_cmd[@]}" --email "$CERTBOT_EMAIL" --agree-tos --non-interactive
    if [[ -f $LE_CERT ]]; then
        configure_nginx  # re-render with the new certificate and reload
    else
        echo "+ (re-render the nginx site with $LE_CERT and reload nginx)"
    fi
}

main() {
    [[ $DRY_RUN -eq 1 ]] && say "dry run: nothing will be changed"
    install_packages
    check_python
    create_user
    install_code
    create_env_file
    install_units
    configure_nginx
    start_services
    certificate
    say "done: https://$DOMAIN/health  (logs: journalctl -u webhook -u 'webhook-worker@*' -f)"
}

main
