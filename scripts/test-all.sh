#!/usr/bin/env bash
# Runs every tarn test on a fresh machine, installing what the tests need:
# Debian's psql, a Python venv with the client libraries, cargo-nextest if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
VENV="${TARN_TEST_VENV:-$HOME/.cache/tarn-test-venv}"

step() { printf '\n==> %s\n' "$*"; }

if ! command -v psql >/dev/null 2>&1; then
    step "installing Debian's postgresql-client (psql)"
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql-client
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    step "installing cargo-nextest"
    cargo install --locked cargo-nextest
fi

step "Python client packages in $VENV"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --all-targets --locked

step "unit, sqllogictest and integration tests (nextest)"
cargo nextest run --workspace --locked --no-fail-fast

step "end-to-end tests: the real binary with psql, psycopg, asyncpg, HTTP"
TARN_BIN="$CARGO_TARGET_DIR/debug/tarn" "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/e2e
