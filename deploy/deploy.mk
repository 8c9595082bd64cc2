# Deployment checks, included by the top-level Makefile (`include
# deploy/deploy.mk`) or run on their own: `make -f deploy/deploy.mk deploy-check`.
#
#   deploy-deps   install nginx, openssl, systemd-analyze and shellcheck
#                 with apt-get when one is missing (quiet, idempotent)
#   deploy-check  nginx -t on the rendered site, systemd-analyze verify and
#                 security (exposure <= 3.0) on both units, shellcheck on
#                 install.sh -- no root, no systemd, no network needed
#
# Variables: PY (a python3 for deploy/render_nginx.py, which needs only the
# standard library), MAX_EXPOSURE (systemd-analyze security score limit).

MAX_EXPOSURE ?= 3.0

# This file's directory, wherever make was started from.
DEPLOY_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))

# command -> Debian package that provides it
DEPLOY_DEPS := nginx:nginx openssl:openssl systemd-analyze:systemd shellcheck:shellcheck
# apt-get needs root; use sudo when we are not.
DEPLOY_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deploy-deps deploy-check

deploy-deps:
	@missing=""; \
	for dep in $(DEPLOY_DEPS); do \
	  cmd=$${dep%%:*}; pkg=$${dep#*:}; \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deploy-deps: installing$$missing"; \
	  $(DEPLOY_SUDO) apt-get update -qq >/dev/null && \
	  $(DEPLOY_SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# Target-specific, so that including this file never changes the PY of the
# including Makefile (where it may name the interpreter that builds .venv).
deploy-check: PY ?= .venv/bin/python
deploy-check: deploy-deps
	@PY="$(PY)" MAX_EXPOSURE="$(MAX_EXPOSURE)" PATH="$$PATH:/usr/sbin:/sbin" \
	  bash $(DEPLOY_MK_DIR)/check.sh
