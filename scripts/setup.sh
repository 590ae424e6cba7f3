#!/usr/bin/env bash
# Idempotent set-up used by `make demo` and `make test` (and so by .ci/run): system packages, the
# Python virtualenv with the project and its test dependencies, and a running PostgreSQL for the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
APT_PACKAGES="postgresql orthanc orthanc-dicomweb dcmtk wrk"
# Node.js runs s3rver (the S3 store tests); the machine image ships it, Debian's packages are the fallback.
command -v npm >/dev/null 2>&1 || APT_PACKAGES="$APT_PACKAGES nodejs npm"

need_apt=""
for pkg in $APT_PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt="$need_apt $pkg"
done
if [ -n "$need_apt" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing$need_apt"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends $need_apt >/dev/null
    else
        echo "setup: missing system packages:$need_apt (run as root or install them)" >&2
    fi
fi

stamp=.venv/.xdsi-installed
want=$(sha1sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: creating .venv and installing xdsi with its test dependencies"
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    echo "$want" > "$stamp"
fi

# s3rver: the S3-compatible server the S3 store tests run against (Node.js is on the machine image).
if command -v npm >/dev/null 2>&1 && [ ! -x .tools/s3rver/node_modules/.bin/s3rver ]; then
    echo "setup: installing s3rver into .tools/s3rver"
    npm install --silent --no-audit --no-fund --prefix .tools/s3rver s3rver@3.7.1 >/dev/null
fi

# The PostgreSQL tests use the server at 127.0.0.1:5432 (trust auth, database "test").
if [ "${1:-}" = "--with-postgres" ] && command -v pg_isready >/dev/null 2>&1; then
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        if [ "$(id -u)" = 0 ] && [ -d /etc/postgresql ]; then
            echo "setup: starting PostgreSQL"
            pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
            for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
        fi
    fi
    if pg_isready -q -h 127.0.0.1 -p 5432; then
        psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" postgres 2>/dev/null | grep -q 1 \
            || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" postgres >/dev/null 2>&1 || true
    fi
fi
