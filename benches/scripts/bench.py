"""tarn side by side with DuckDB and stock DataFusion, on the same generated Parquet files.

    python bench.py run [--scales 1,10] [--suites tpch,h2o,events] [--runs 3] [--out DIR]

`benches/run.sh` is the one command: it makes the venv, builds tarn in release and calls this.

Suites (data generated locally into $TARN_BENCH_DATA, default ~/.cache/tarn-bench-data):
- tpch: TPC-H's 22 queries (benches/queries/tpch) over tpchgen-cli Parquet, at each scale;
- h2o: the H2O group-by questions over falsa's 1e7-row dataset (k=100, no NULLs);
- events: a date-partitioned table of many small files (dt=YYYY-MM-DD/part-N.parquet), the
  shape a lake fed by streams has.
`--data DIR` runs on datasets already in DIR/tpch, DIR/h2o and DIR/events instead: the .slt
suite's tiny ones are checked across engines that way (BENCHMARKS.md, "Answers in CI").

Engines, each in its own process: tarn in process (the `queries` binary: one session, rows
streamed on tarn's query threads), tarn over Flight SQL (ADBC, Arrow tables), tarn over the
Postgres wire (psycopg, every row fetched as Python values), DuckDB (`to_arrow_table`) and
DataFusion (`to_arrow_table`). The clock covers planning, running and reading every row.

- hot: one process per engine and suite runs each query 1 + RUNS times; the first run is a
  warm-up, the median of the rest is reported;
- cold: a fresh process (and for the wire paths a fresh tarn server) runs the query once.
  The files stay in the OS page cache: cold means no engine caches, not a cold disk.

Every engine's answer is checked against tarn's (row count, and the sorted rows within a
tolerance, or per-column checksums for results over 10,000 rows); a mismatch fails the run.
Output: a JSON file and a Markdown report in --out, the report also on stdout.
"""

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = HERE.parent
QUERIES = BENCHES / "queries"
DATA = Path(os.environ.get("TARN_BENCH_DATA", Path.home() / ".cache" / "tarn-bench-data"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "tarn-target"))
RELEASE = TARGET / "release"

TPCH_TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]
ENGINES = ["tarn", "flight", "postgres", "duckdb", "datafusion"]
LABELS = {
    "tarn": "tarn",
    "flight": "tarn Flight SQL",
    "postgres": "tarn Postgres wire",
    "duckdb": "DuckDB",
    "datafusion": "DataFusion",
}
# Results this large are not fetched over the Postgres wire: row-at-a-time text would
# measure psycopg, not the query (BENCHMARKS.md has the wire's own throughput).
WIRE_ROW_LIMIT = 100_000
# Results up to this size are compared row by row; larger ones by checksums.
COMPARE_ROWS = 10_000

EVENT_DAYS = 60
EVENT_FILES_PER_DAY = 24
EVENT_ROWS_PER_FILE = 5_000


# ----------------------------------------------------------------------------------------------
# Data


def generated(root, write):
    """`root`, written by `write(root)` unless an earlier run finished it (it left `.done`)."""
    if not (root / ".done").exists():
        shutil.rmtree(root, ignore_errors=True)
        write(root)
        (root / ".done").touch()
    return root


def generate_tpch(scale):
    return generated(DATA / f"tpch-sf{scale:g}", lambda root: write_tpch(root, scale))


def generate_h2o():
    return generated(DATA / "h2o-groupby-1e7", write_h2o)


def generate_events():
    return generated(DATA / "events", write_events)


def write_tpch(root, scale):
    """TPC-H at `scale` as Parquet: one folder per table."""
    parts = max(1, int(scale * 2))
    bin_dir = Path(sys.executable).parent
    log(f"generating TPC-H scale {scale:g} into {root} ({parts} files per large table)")
    subprocess.run(
        [bin_dir / "tpchgen-cli", "parquet", "-s", f"{scale:g}", "--parts", str(parts),
         "--output-dir", str(root), "--quiet"],
        check=True)


def write_h2o(root):
    scratch = DATA / "h2o-scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    log(f"generating the H2O group-by dataset (1e7 rows, k=100) into {root}")
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [bin_dir / "falsa", "groupby", "--path-prefix", str(scratch), "--size", "SMALL",
         "--k", "100", "--nas", "0", "--seed", "42", "--data-format", "PARQUET"],
        check=True, stdout=subprocess.DEVNULL)
    files = sorted(scratch.rglob("*.parquet"))
    if len(files) != 1:
        raise SystemExit(f"falsa wrote {files}, expected one Parquet file")
    (root / "x").mkdir(parents=True)
    files[0].rename(root / "x" / "x.parquet")
    shutil.rmtree(scratch)


def write_events(root):
    """Many small files in dt= folders: EVENT_DAYS days, EVENT_FILES_PER_DAY files a day."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    log(f"generating the events table ({EVENT_DAYS * EVENT_FILES_PER_DAY} files) into {root}")
    rng = np.random.default_rng(7)
    types = np.array(["view", "click", "search", "add_to_cart", "purchase", "login", "logout",
                      "share", "like", "comment"])
    countries = np.array(["US", "DE", "FR", "GB", "BR", "IN", "JP", "CN", "CA", "AU", "ES", "IT",
                          "MX", "NL", "SE", "PL", "KR", "AR", "ZA", "NG"])
    devices = np.array(["ios", "android", "web", "desktop"])
    start = datetime.datetime(2026, 1, 1)
    event_id = 0
    n = EVENT_ROWS_PER_FILE
    for day in range(EVENT_DAYS):
        date = start + datetime.timedelta(days=day)
        folder = root / "events" / f"dt={date:%Y-%m-%d}"
        folder.mkdir(parents=True)
        for part in range(EVENT_FILES_PER_DAY):
            # Each file is one hour of the day, in arrival order.
            base = np.datetime64(date + datetime.timedelta(hours=part), "us")
            offsets = np.sort(rng.integers(0, 3_600_000_000, n)).astype("timedelta64[us]")
            amount = np.round(rng.gamma(2.0, 40.0, n), 2)
            amount_mask = rng.random(n) < 0.3
            table = pa.table({
                "event_id": pa.array(np.arange(event_id, event_id + n, dtype=np.int64)),
                "ts": pa.array(base + offsets, type=pa.timestamp("us")),
                "user_id": pa.array(rng.zipf(1.3, n) % 100_000, type=pa.int64()),
                "event_type": pa.array(types[rng.integers(0, len(types), n)]),
                "country": pa.array(countries[rng.integers(0, len(countries), n)]),
                "device": pa.array(devices[rng.integers(0, len(devices), n)]),
                "amount": pa.array(amount, mask=amount_mask),
            })
            pq.write_table(table, folder / f"part-{part:03}.parquet")
            event_id += n


def setup_sql(suite, root):
    """`CREATE EXTERNAL TABLE`s for tarn and DataFusion (the same statements)."""
    if suite == "tpch":
        return [f"CREATE EXTERNAL TABLE {t} STORED AS PARQUET LOCATION '{root / t}/'"
                for t in TPCH_TABLES]
    if suite == "h2o":
        return [f"CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{root / 'x'}/'"]
    return [f"CREATE EXTERNAL TABLE events STORED AS PARQUET LOCATION '{root / 'events'}/' "
            "PARTITIONED BY (dt)"]


def duckdb_views(suite, root):
    if suite == "tpch":
        return [f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{root / t}/*.parquet')"
                for t in TPCH_TABLES]
    if suite == "h2o":
        return [f"CREATE VIEW x AS SELECT * FROM read_parquet('{root / 'x'}/*.parquet')"]
    return [f"CREATE VIEW events AS SELECT * FROM read_parquet('{root / 'events'}/*/*.parquet', "
            "hive_partitioning = true, hive_types_autocast = false)"]


# ----------------------------------------------------------------------------------------------
# Workers: one process runs one engine's queries and prints a JSON line per query.


def worker(args):
    import pyarrow.parquet as pq

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skip = set(args.skip.split(",")) if args.skip else set()
    run = connect(args.engine, args.target, json.loads(args.setup))
    for path in args.queries:
        path = Path(path)
        name = path.stem
        if name in skip:
            print(json.dumps({"name": name, "skipped": True}), flush=True)
            continue
        sql = path.read_text()
        seconds = []
        try:
            for _ in range(args.runs):
                start = time.perf_counter()
                table = run(sql)
                seconds.append(time.perf_counter() - start)
        except Exception as e:  # an engine's error is a result too
            print(json.dumps({"name": name, "error": str(e).splitlines()[0][:300]}), flush=True)
            continue
        if table.num_rows or table.num_columns:
            pq.write_table(table, out / f"{name}.parquet")
        print(json.dumps({"name": name, "seconds": seconds, "rows": table.num_rows}), flush=True)


def connect(engine, target, setup):
    """A function that runs one query and returns its rows as an Arrow table."""
    import pyarrow as pa

    if engine == "duckdb":
        import duckdb

        con = duckdb.connect()
        for statement in setup:
            con.execute(statement)
        return lambda sql: con.sql(sql).to_arrow_table()
    if engine == "datafusion":
        import datafusion

        ctx = datafusion.SessionContext()
        for statement in setup:
            ctx.sql(statement).collect()
        return lambda sql: ctx.sql(sql).to_arrow_table()
    if engine == "flight":
        import adbc_driver_flightsql.dbapi as flightsql

        conn = flightsql.connect(target)
        cur = conn.cursor()

        def flight(sql):
            cur.execute(sql)
            return cur.fetch_arrow_table()

        return flight
    if engine == "postgres":
        import psycopg

        conn = psycopg.connect(target, autocommit=True)

        def postgres(sql):
            with conn.cursor() as cur:
                cur.execute(sql)
                rows = cur.fetchall()
                names = [d.name for d in cur.description]
            # Outside the clock in spirit, but cheap next to the fetch: columns for comparing.
            columns = list(zip(*rows)) if rows else [[] for _ in names]
            return pa.table({f"c{i}": pa.array(list(c)) for i, c in enumerate(columns)})

        return postgres
    raise SystemExit(f"unknown engine {engine}")


# ----------------------------------------------------------------------------------------------
# Comparing answers


def normalized_columns(table):
    """Each column as Python values: numbers as floats, dates and times as ISO text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for column in table.columns:
        t = column.type
        if pa.types.is_dictionary(t):
            column = column.cast(t.value_type)
            t = t.value_type
        if pa.types.is_decimal(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
            column = pc.cast(column, pa.float64())
            # DuckDB answers NaN where Postgres and DataFusion answer NULL (`corr` of one row).
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, pa.float64()), column)
        elif pa.types.is_temporal(t):
            column = pc.cast(column, pa.string())
        elif pa.types.is_string_view(t) or pa.types.is_large_string(t):
            column = pc.cast(column, pa.string())
        columns.append(column)
    return columns


def checksum(table):
    import pyarrow as pa
    import pyarrow.compute as pc

    sums = []
    for column in normalized_columns(table):
        if pa.types.is_floating(column.type):
            total = pc.sum(column).as_py()
        elif pa.types.is_string(column.type):
            total = pc.sum(pc.utf8_length(column)).as_py()
        else:
            total = None
        sums.append((column.null_count, total))
    return sums


def close(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-4)
    return a == b


def sort_key(row):
    return tuple((0, "") if v is None else (1, round(v, 2)) if isinstance(v, float) else (1, str(v))
                 for v in row)


def compare(expected, actual):
    """None if `actual` answers like `expected`, else what differs."""
    if expected.num_rows != actual.num_rows:
        return f"{actual.num_rows} rows, expected {expected.num_rows}"
    if expected.num_columns != actual.num_columns:
        return f"{actual.num_columns} columns, expected {expected.num_columns}"
    if expected.num_rows > COMPARE_ROWS:
        for i, (e, a) in enumerate(zip(checksum(expected), checksum(actual))):
            if e[0] != a[0] or (e[1] is not None and not math.isclose(e[1], a[1] or 0.0,
                                                                   rel_tol=1e-6, abs_tol=1e-4)):
                return f"column {i + 1}: checksum {a}, expected {e}"
        return None
    rows = [sorted(zip(*[c.to_pylist() for c in normalized_columns(t)]), key=sort_key)
            for t in (expected, actual)]
    for e, a in zip(*rows):
        if not all(close(x, y) for x, y in zip(e, a)):
            return f"row {a}, expected {e}"
    return None


# ----------------------------------------------------------------------------------------------
# Running the engines


def log(message):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A tarn server on the benchmark warehouse, for the wire paths."""

    def __init__(self, warehouse):
        self.pg_port, self.flight_port = free_port(), free_port()
        self.log = open(Path(warehouse).parent / "server.log", "ab")
        self.proc = subprocess.Popen(
            [RELEASE / "tarn", "serve", "--warehouse", str(warehouse),
             "--pg-addr", f"127.0.0.1:{self.pg_port}",
             "--flight-addr", f"127.0.0.1:{self.flight_port}", "--http-addr", "127.0.0.1:0"],
            stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 120
        for port in (self.pg_port, self.flight_port):
            while True:
                if self.proc.poll() is not None:
                    raise SystemExit(f"tarn serve exited; see {self.log.name}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("tarn serve did not start in 120 s")
                    time.sleep(0.05)

    def target(self, engine):
        if engine == "flight":
            return f"grpc://127.0.0.1:{self.flight_port}"
        return f"host=127.0.0.1 port={self.pg_port} user=tarn dbname=tarn"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()


def run_worker(engine, suite, root, warehouse, queries, runs, out, skip=(), server=None):
    """Runs `queries` on `engine` in a fresh process; {name: record}."""
    if engine == "tarn":
        cmd = [RELEASE / "queries", "--warehouse", str(warehouse), "--out", str(out),
               "--runs", str(runs), *map(str, queries)]
    else:
        setup = duckdb_views(suite, root) if engine == "duckdb" else setup_sql(suite, root)
        cmd = [sys.executable, __file__, "worker", engine, *map(str, queries),
               "--runs", str(runs), "--out", str(out), "--setup", json.dumps(setup),
               "--target", server.target(engine) if server else "", "--skip", ",".join(skip)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{proc.stderr[-3000:]}")
    records = {}
    for line in proc.stdout.splitlines():
        record = json.loads(line)
        records[record["name"]] = record
    return records


def run_suite(suite, root, scale, engines, runs):
    queries = sorted((QUERIES / suite).glob("q*.sql"))
    key = f"{suite}-sf{scale:g}" if suite == "tpch" else suite
    work = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=DATA))
    warehouse = work / "warehouse"
    log(f"{key}: tables in a fresh tarn warehouse {warehouse}")
    setup = work / "setup.sql"
    setup.write_text(";\n".join(setup_sql(suite, root)) + ";\n")
    subprocess.run([RELEASE / "queries", "--warehouse", str(warehouse), "--setup", str(setup),
                    "--out", str(work)], check=True, stdout=subprocess.DEVNULL)

    results = {"hot": {}, "cold": {}}
    answers = work / "answers"
    # tarn in process first: its answers decide which results are too large for the wire.
    for engine in engines:
        log(f"{key}: hot runs on {LABELS[engine]}")
        skip = set()
        if engine == "postgres":
            skip = {n for n, r in results["hot"]["tarn"].items() if r.get("rows", 0) > WIRE_ROW_LIMIT}
        server = Server(warehouse) if engine in ("flight", "postgres") else None
        try:
            results["hot"][engine] = run_worker(engine, suite, root, warehouse, queries,
                                                runs + 1, answers / engine, skip, server)
        finally:
            if server:
                server.stop()
        for name, record in results["hot"][engine].items():
            if "seconds" in record:
                record["warmup"] = record["seconds"][0]
                record["median"] = statistics.median(record["seconds"][1:])
    for engine in engines:
        log(f"{key}: cold runs on {LABELS[engine]}")
        results["cold"][engine] = {}
        for query in queries:
            if results["hot"][engine].get(query.stem, {}).get("skipped"):
                results["cold"][engine][query.stem] = {"name": query.stem, "skipped": True}
                continue
            server = Server(warehouse) if engine in ("flight", "postgres") else None
            try:
                record = run_worker(engine, suite, root, warehouse, [query], 1,
                                    work / "cold" / engine, (), server)[query.stem]
            finally:
                if server:
                    server.stop()
            if "seconds" in record:
                record["median"] = record["seconds"][0]
            results["cold"][engine][query.stem] = record

    # Every engine must answer like tarn in process.
    import pyarrow as pa
    import pyarrow.parquet as pq

    def answer(engine, name):
        path = answers / engine / f"{name}.parquet"
        return pq.read_table(path) if path.exists() else pa.table({})

    mismatches = []
    for query in queries:
        name = query.stem
        expected = answer("tarn", name)
        for engine in engines:
            record = results["hot"][engine].get(name, {})
            if "error" in record:
                mismatches.append(f"{key} {name} {engine}: error {record['error']}")
                continue
            if record.get("skipped") or engine == "tarn":
                continue
            diff = compare(expected, answer(engine, name))
            if diff:
                mismatches.append(f"{key} {name} {engine}: {diff}")
    # The answers stay for a look when they differ.
    if not mismatches:
        shutil.rmtree(work, ignore_errors=True)
    return key, {"queries": [q.stem for q in queries], "results": results,
                 "mismatches": mismatches, "work": str(work)}


# ----------------------------------------------------------------------------------------------
# Report


# The ingest and wire benches of issues #5 and #6: each release binary prints its own table.
EXTRAS = {
    "wire": ("Result throughput: Flight SQL against the Postgres wire (lineitem, scale 1)",
             ["results", "1", "2"]),
    "streams": ("Stream log: 8 producers, 10 s, in process", ["streams", "8", "10"]),
    "delivery": ("Delivery into Delta: 100,000 records, 8 producers, in process",
                 ["delivery", "100000", "8"]),
}


def run_extra(name):
    title, (binary, *args) = EXTRAS[name]
    log(f"{name}: {RELEASE / binary} {' '.join(args)}")
    env = dict(os.environ, TARN_VENV=str(Path(sys.executable).parent.parent))
    with tempfile.TemporaryDirectory(dir=DATA) as scratch:
        proc = subprocess.run([RELEASE / binary, *args], capture_output=True, text=True,
                              cwd=scratch, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{binary} failed:\n{proc.stderr[-3000:]}")
    return {"title": title, "command": f"{binary} {' '.join(args)}", "output": proc.stdout}


def machine():
    info = {"cores": os.cpu_count(), "os": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    import duckdb
    import datafusion

    info["duckdb"] = duckdb.__version__
    info["datafusion_python"] = datafusion.__version__
    rev = subprocess.run(["git", "-C", str(BENCHES), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    # Uncommitted changes show: the figures are then not those of `rev` alone.
    dirty = subprocess.run(["git", "-C", str(BENCHES), "status", "--porcelain", "--", ".."],
                           capture_output=True, text=True).stdout.strip()
    info["tarn"] = f"{rev}{' with uncommitted changes' if dirty else ''} (release build)"
    return info


def geomean(values):
    values = [v for v in values if v and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def fmt(seconds):
    if seconds is None:
        return "—"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "—"


def report(run):
    lines = [f"Run {run['started']}. Machine: {run['machine'].get('cpu', '?')}, "
             f"{run['machine']['cores']} cores, {run['machine'].get('memory_gib', '?')} GiB; "
             f"tarn {run['machine']['tarn']}, DuckDB {run['machine']['duckdb']}, "
             f"DataFusion (Python) {run['machine']['datafusion_python']}; "
             f"{run['runs']} hot runs after a warm-up, medians.", ""]
    for key, suite in run["suites"].items():
        engines = run["engines"]
        for mode in ("hot", "cold"):
            results = suite["results"][mode]
            lines += [f"### {key}, {mode}", ""]
            header = "| query | " + " | ".join(LABELS[e] for e in engines)
            if "duckdb" in engines:
                header += " | tarn ÷ DuckDB"
            if "datafusion" in engines:
                header += " | tarn ÷ DataFusion"
            lines += [header + " |", "|---|" + "---:|" * (header.count("|") - 1)]

            def seconds(engine, name):
                record = results.get(engine, {}).get(name, {})
                return record.get("median")

            for name in suite["queries"]:
                cells = []
                for e in engines:
                    record = results.get(e, {}).get(name, {})
                    cells.append("error" if "error" in record else
                                 "(not fetched)" if record.get("skipped") else
                                 fmt(record.get("median")))
                row = f"| {name} | " + " | ".join(cells)
                t = seconds("tarn", name)
                if "duckdb" in engines:
                    row += f" | {ratio(t, seconds('duckdb', name))}"
                if "datafusion" in engines:
                    row += f" | {ratio(t, seconds('datafusion', name))}"
                lines.append(row + " |")
            # Geometric means and totals over the queries every engine answered.
            common = [n for n in suite["queries"]
                      if all(seconds(e, n) for e in engines if e != "postgres")]
            means = {e: geomean([seconds(e, n) for n in common]) for e in engines}
            totals = {e: sum(seconds(e, n) or 0 for n in common) for e in engines}
            row = "| geometric mean | " + " | ".join(fmt(means[e]) for e in engines)
            total = "| total | " + " | ".join(fmt(totals[e]) for e in engines)
            for other in ("duckdb", "datafusion"):
                if other in engines:
                    row += f" | **{ratio(means['tarn'], means[other])}**"
                    total += f" | {ratio(totals['tarn'], totals[other])}"
            lines += [row + " |", total + " |", ""]
        if suite["mismatches"]:
            lines += ["Mismatches:", ""] + [f"- {m}" for m in suite["mismatches"]] + [""]
    for extra in run.get("extras", {}).values():
        lines += [f"### {extra['title']}", "", f"`{extra['command']}`", "",
                  extra["output"].strip(), ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--scales", default="1", help="TPC-H scale factors, comma-separated")
    r.add_argument("--suites", default="tpch,h2o,events")
    r.add_argument("--engines", default=",".join(ENGINES))
    r.add_argument("--runs", type=int, default=3, help="hot runs after the warm-up")
    r.add_argument("--out", default=str(DATA / "results"))
    r.add_argument("--data", help="run on the datasets already in this folder (tpch/, h2o/, "
                   "events/), such as the .slt suite's tiny ones in $CARGO_TARGET_DIR/tmp/"
                   "bench-data-v2, instead of generating them")
    r.add_argument("--extras", default="",
                   help=f"also run the ingest and wire benches: any of {','.join(EXTRAS)}")
    w = sub.add_parser("worker")
    w.add_argument("engine")
    w.add_argument("queries", nargs="*")
    w.add_argument("--runs", type=int, default=1)
    w.add_argument("--out", required=True)
    w.add_argument("--setup", default="[]")
    w.add_argument("--target", default="")
    w.add_argument("--skip", default="")
    args = parser.parse_args()
    if args.command == "worker":
        return worker(args)

    engines = [e for e in args.engines.split(",") if e]
    if engines[0] != "tarn" or any(e not in ENGINES for e in engines):
        raise SystemExit(f"--engines: tarn first, then any of {ENGINES}")
    extras = [e for e in args.extras.split(",") if e]
    if any(e not in EXTRAS for e in extras):
        raise SystemExit(f"--extras: any of {list(EXTRAS)}")
    for binary in ["tarn", "queries"] + [EXTRAS[e][1][0] for e in extras]:
        if not (RELEASE / binary).exists():
            raise SystemExit(f"{RELEASE / binary} is missing: run benches/run.sh")
    DATA.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    run = {"started": started.isoformat(), "machine": machine(), "runs": args.runs,
           "engines": engines, "suites": {}}
    given = Path(args.data) if args.data else None
    for suite in args.suites.split(","):
        if suite == "tpch":
            for scale in (float(s) for s in args.scales.split(",")):
                root = given / "tpch" if given else generate_tpch(scale)
                key, result = run_suite(suite, root, scale, engines, args.runs)
                run["suites"][key] = result
        elif suite == "h2o":
            root = given / "h2o" if given else generate_h2o()
            key, result = run_suite(suite, root, None, engines, args.runs)
            run["suites"][key] = result
        elif suite == "events":
            root = given / "events" if given else generate_events()
            key, result = run_suite(suite, root, None, engines, args.runs)
            run["suites"][key] = result
        else:
            raise SystemExit(f"unknown suite {suite}")
    run["extras"] = {name: run_extra(name) for name in args.extras.split(",") if name}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    (out / f"run-{stamp}.json").write_text(json.dumps(run, indent=1))
    text = report(run)
    (out / f"run-{stamp}.md").write_text(text + "\n")
    print(text)
    log(f"wrote {out / f'run-{stamp}.json'} and .md")
    mismatches = [m for s in run["suites"].values() for m in s["mismatches"]]
    if mismatches:
        log("answers differ:\n  " + "\n  ".join(mismatches))
        sys.exit(1)


if __name__ == "__main__":
    main()
