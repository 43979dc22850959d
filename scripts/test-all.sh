#!/usr/bin/env bash
# Runs every tarn test on a fresh machine, installing what the tests need:
# Debian's psql, a Python venv with the client libraries and the moto S3 server,
# cargo-nextest if missing. The S3 passes run against a moto server this script starts and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
VENV="${TARN_TEST_VENV:-$HOME/.cache/tarn-test-venv}"

step() { printf '\n==> %s\n' "$*"; }

# psql for the wire tests; openssl makes the certificates of the TLS tests; a JDK and
# Debian's pgjdbc for the JDBC and Metabase tests.
if ! command -v psql >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1 \
    || ! command -v javac >/dev/null 2>&1 || [ ! -f /usr/share/java/postgresql.jar ]; then
    step "installing Debian's postgresql-client (psql), openssl, a JDK and pgjdbc"
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        postgresql-client openssl default-jdk-headless libpostgresql-jdbc-java
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

step "end-to-end tests on a local warehouse: the real binary with psql, psycopg, asyncpg, HTTP"
export TARN_BIN="$CARGO_TARGET_DIR/debug/tarn"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/e2e

step "starting a moto S3 server"
S3_DIR="$(mktemp -d)"
"$VENV/bin/python" tests/e2e/s3_server.py "$S3_DIR/port" 2>"$S3_DIR/moto.log" &
MOTO_PID=$!
trap 'kill "$MOTO_PID" 2>/dev/null || true; rm -rf "$S3_DIR"' EXIT
for _ in $(seq 1 600); do
    [ -s "$S3_DIR/port" ] && break
    kill -0 "$MOTO_PID" 2>/dev/null || { cat "$S3_DIR/moto.log"; exit 1; }
    sleep 0.1
done
[ -s "$S3_DIR/port" ] || { echo "moto did not start"; cat "$S3_DIR/moto.log"; exit 1; }
S3_ENDPOINT="http://127.0.0.1:$(cat "$S3_DIR/port")"
"$VENV/bin/python" - "$S3_ENDPOINT" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="testing",
                  aws_secret_access_key="testing", region_name="us-east-1")
for bucket in ("tarn-slt", "tarn-e2e"):
    s3.create_bucket(Bucket=bucket)
PY

step "sqllogictest suite on the moto S3 server"
TARN_TEST_S3_ENDPOINT="$S3_ENDPOINT" TARN_TEST_S3_BUCKET=tarn-slt \
    cargo nextest run --workspace --locked --no-fail-fast -E 'binary(slt) and test(/^slt_s3_/)'

# The BI-client suites exercise the wire protocol, not storage: they run once, above.
step "end-to-end tests on an S3 warehouse (moto)"
TARN_E2E_S3_ENDPOINT="$S3_ENDPOINT" TARN_E2E_S3_BUCKET=tarn-e2e \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/e2e \
    --ignore=tests/e2e/test_jdbc.py --ignore=tests/e2e/test_sqlalchemy.py \
    --ignore=tests/e2e/test_pg_results.py --ignore=tests/e2e/test_asyncpg_clients.py \
    --ignore=tests/e2e/test_psql_meta.py --ignore=tests/e2e/test_pgcli.py \
    --ignore=tests/e2e/test_pg_control.py --ignore=tests/e2e/test_pg_auth.py
