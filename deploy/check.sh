#!/usr/bin/env bash
# Static checks of the deployment files, run by `make deploy-check`
# (deploy/deploy.mk).  Needs nginx, openssl and systemd-analyze
# (`make deploy-deps`), but no root, no running systemd and no network:
#
#   1. the nginx site, rendered as install.sh would (IPv4+IPv6, ports 80/443,
#      with and without --admin-allow), passes `nginx -t` with a throw-away
#      self-signed certificate, inside a temporary prefix;
#   2. both systemd units pass `systemd-analyze verify` without a warning
#      (ExecStart binaries are swapped for /bin/true, as /opt/webhook does
#      not exist here);
#   3. `systemd-analyze security --offline=true` rates each unit at most
#      MAX_EXPOSURE (default 3.0);
#   4. deploy/install.sh passes `bash -n`, and shellcheck when installed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-python3}
MAX_EXPOSURE=${MAX_EXPOSURE:-3.0}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
UNITS=(webhook.service webhook-worker@.service)

# A relative PY (.venv/bin/python) is relative to the repository root.
cd "$ROOT"
if [[ ! -x $PY ]] && ! command -v "$PY" >/dev/null 2>&1; then
    echo "deploy-check: $PY not found, using python3" >&2
    PY=python3
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "deploy-check: FAIL: $*" >&2; exit 1; }

# --- 1. nginx -------------------------------------------------------------
[[ -x $NGINX ]] || fail "nginx not found (make deploy-deps)"
check_nginx() {
    local name=$1; shift
    local dir=$tmp/nginx-$name
    "$PY" deploy/render_nginx.py --server-name pay.example.test \
        --listen 0.0.0.0 --listen '[::]' --http-port 80 --https-port 443 \
        --sandbox "$dir" "$@" >/dev/null
    # -t parses everything and loads the certificate but binds no port.
    if ! "$NGINX" -t -q -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf"; then
        cat "$dir/error.log" >&2 2>/dev/null || true
        fail "nginx -t rejected the site ($name)"
    fi
}
check_nginx default
check_nginx admin-allow --admin-allow "10.0.0.0/8,2001:db8::/32"
echo "deploy-check: nginx -t ok ($("$NGINX" -v 2>&1 | sed 's/.*version: //'); default and --admin-allow renders)"

# --- 2. systemd-analyze verify ----------------------------------------------
command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (make deploy-deps)"
mkdir "$tmp/units"
for unit in "${UNITS[@]}"; do
    sed -E 's#/opt/webhook/venv/bin/[A-Za-z0-9_.-]+#/bin/true#g' "$unit" >"$tmp/units/$unit"
done
cp "$tmp/units/webhook-worker@.service" "$tmp/units/webhook-worker@telegram.service"
for unit in webhook.service webhook-worker@telegram.service; do
    # verify exits 0 on unknown keys or bad values ("..., ignoring"): any
    # output at all counts as a failure.
    out=$(cd "$tmp/units" && systemd-analyze verify --man=no "./$unit" 2>&1) \
        || fail "systemd-analyze verify $unit: $out"
    [[ -z $out ]] || fail "systemd-analyze verify $unit:"$'\n'"$out"
done
echo "deploy-check: systemd-analyze verify ok (${UNITS[*]})"

# --- 3. exposure scores -------------------------------------------------------
worst=ok
for unit in "${UNITS[@]}"; do
    report=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1) \
        || true  # exits non-zero only above its --threshold, checked below
    score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p' <<<"$report")
    [[ -n $score ]] || fail "no exposure score for $unit:"$'\n'"$report"
    if awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s > m) }'; then
        echo "deploy-check: exposure $unit $score > $MAX_EXPOSURE  FAIL" >&2
        grep '✗' <<<"$report" >&2 || true
        worst=fail
    else
        echo "deploy-check: exposure $unit $score (max $MAX_EXPOSURE)"
    fi
done
[[ $worst == ok ]] || fail "exposure above $MAX_EXPOSURE"

# --- 4. install.sh --------------------------------------------------------------
bash -n deploy/install.sh || fail "bash -n deploy/install.sh"
if command -v shellcheck >/dev/null; then
    shellcheck deploy/install.sh deploy/check.sh deploy/webhook-flask \
        || fail "shellcheck"
    echo "deploy-check: bash -n + shellcheck ok (install.sh, check.sh, webhook-flask)"
else
    echo "deploy-check: bash -n ok (shellcheck not installed: make deploy-deps)"
fi
