"""Kinesis over HTTP: acknowledged throughput and latency of boto3 producers putting 500-record
batches of 1 KB JSON records into a real `tarn` server, and the time from a put's
acknowledgement until `stream()` returns the record over the Postgres wire.

    ~/.cache/tarn-test-venv/bin/python benches/scripts/kinesis_http.py [PRODUCERS] [SECONDS]

Uses TARN_BIN (default: the debug build). Prints a Markdown table; BENCHMARKS.md holds the
latest."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
import psycopg
from botocore.config import Config

TARN_BIN = os.environ.get("TARN_BIN", str(Path.home() / ".cache/tarn-target/debug/tarn"))
BATCH, SIZE = 500, 1024


def start(tmp: Path):
    addr = tmp / "addr.json"
    proc = subprocess.Popen(
        [TARN_BIN, "serve", "--warehouse", str(tmp / "wh"), "--pg-addr", "127.0.0.1:0",
         "--http-addr", "127.0.0.1:0", "--address-file", str(addr)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not addr.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit("tarn did not start")
        time.sleep(0.05)
    return proc, json.loads(addr.read_text())


def record(p: int, i: int) -> bytes:
    head = f'{{"producer": {p}, "i": {i}, "payload": "'
    return (head + "x" * (SIZE - len(head) - 2) + '"}').encode()


def pct(xs, p):
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * p)] if xs else 0.0


def main() -> None:
    producers = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10
    with tempfile.TemporaryDirectory() as d:
        proc, addrs = start(Path(d))
        try:
            url = "http://" + addrs["http"]

            def client():
                return boto3.client("kinesis", endpoint_url=url, region_name="us-east-1",
                                    aws_access_key_id="x", aws_secret_access_key="x",
                                    config=Config(retries={"max_attempts": 1},
                                                  max_pool_connections=producers))

            client().create_stream(StreamName="bench", ShardCount=4)
            latencies: list[float] = []
            counts = [0] * producers
            stop = time.monotonic() + seconds

            def produce(p: int) -> None:
                k = client()
                i = 0
                while time.monotonic() < stop:
                    batch = [{"Data": record(p, i + j), "PartitionKey": f"p{p}-{(i + j) % 64}"}
                             for j in range(BATCH)]
                    i += BATCH
                    t = time.monotonic()
                    r = k.put_records(StreamName="bench", Records=batch)
                    latencies.append(time.monotonic() - t)
                    counts[p] += BATCH - r["FailedRecordCount"]

            started = time.monotonic()
            threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - started
            total = sum(counts)

            # acknowledgement -> queryable through stream() over the Postgres wire
            host, port = addrs["pg"].rsplit(":", 1)
            k = client()
            visible = []
            with psycopg.connect(host=host, port=int(port), user="tarn", dbname="tarn",
                                 autocommit=True) as c:
                k.create_stream(StreamName="probe", ShardCount=1)
                for i in range(30):
                    k.put_record(StreamName="probe", Data=b'{"probe": 1}', PartitionKey=f"k{i}")
                    acked = time.monotonic()
                    while c.execute("SELECT count(*) FROM stream('probe') WHERE partition_key = %s",
                                    (f"k{i}",)).fetchone()[0] != 1:
                        pass
                    visible.append(time.monotonic() - acked)
        finally:
            proc.terminate()
            proc.wait()
    print(f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"binary {TARN_BIN}")
    print()
    print("| what | value |")
    print("|---|---:|")
    print(f"| acknowledged records/s ({producers} boto3 producers, {BATCH} × 1 KB per put) "
          f"| {total / elapsed:,.0f} |")
    print(f"| acknowledged MB/s | {total * SIZE / 1e6 / elapsed:.1f} |")
    print(f"| PutRecords latency p50 / p99 | {pct(latencies, .5) * 1e3:.0f} ms / "
          f"{pct(latencies, .99) * 1e3:.0f} ms |")
    print(f"| acknowledged → visible in `stream()`, p50 / p99 | {pct(visible, .5) * 1e3:.1f} ms / "
          f"{pct(visible, .99) * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
