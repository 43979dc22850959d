#!/usr/bin/env bash
# The benchmark in one command: tarn side by side with DuckDB and stock DataFusion on data
# generated here (TPC-H, the H2O group-by, a partitioned events table). See BENCHMARKS.md.
#
#   benches/run.sh                      # TPC-H scale 1 and 10, H2O, events, every engine;
#                                       # then the wire, stream and delivery figures
#   benches/run.sh --scales 1 --runs 5  # any option of benches/scripts/bench.py run
#
# Makes a Python venv with DuckDB, DataFusion, tpchgen-cli, falsa and the clients, builds
# tarn in release, generates the data once into $TARN_BENCH_DATA (~/.cache/tarn-bench-data)
# and writes a JSON file and a Markdown report into $TARN_BENCH_DATA/results.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
VENV="${TARN_BENCH_VENV:-$HOME/.cache/tarn-bench-venv}"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r benches/requirements.txt

cargo build --release --locked -p tarn-server --bin tarn \
    -p tarn-benches --bin queries --bin results --bin streams --bin delivery

if [ "$#" -eq 0 ]; then
    set -- --scales 1,10 --extras wire,streams,delivery
fi
exec "$VENV/bin/python" benches/scripts/bench.py run "$@"
