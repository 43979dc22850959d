"""Fixtures that run the real `tarn` binary for the end-to-end tests.

Set TARN_BIN to the binary; default: $HOME/.cache/tarn-target/debug/tarn.

With TARN_E2E_S3_ENDPOINT set (the test command points it at a moto server it starts), every
warehouse is an S3 prefix in TARN_E2E_S3_BUCKET instead of a local folder, reached through the
standard AWS_* environment variables; `lake(path)` reads and writes warehouse objects on
either backend.
"""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TARN_BIN = os.environ.get(
    "TARN_BIN", str(Path.home() / ".cache" / "tarn-target" / "debug" / "tarn")
)
# A debug build loads the demo data in ~10-15 s on 2 cores; allow plenty.
START_TIMEOUT = float(os.environ.get("TARN_E2E_START_TIMEOUT", "180"))
STOP_TIMEOUT = float(os.environ.get("TARN_E2E_STOP_TIMEOUT", "30"))
POLL_INTERVAL = 0.05

S3_ENDPOINT = os.environ.get("TARN_E2E_S3_ENDPOINT")
S3_BUCKET = os.environ.get("TARN_E2E_S3_BUCKET", "tarn-e2e")
S3_ENV = {
    "AWS_ENDPOINT_URL": S3_ENDPOINT or "",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}


def warehouse_location(path: Path) -> str:
    """What `--warehouse` gets for the warehouse a test calls `path`."""
    if not S3_ENDPOINT:
        return str(path)
    return f"s3://{S3_BUCKET}/{Path(path).as_posix().strip('/')}"


class Lake:
    """The objects of one warehouse, on local disk or in the S3 test bucket."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.prefix = self.path.as_posix().strip("/") + "/"
        if S3_ENDPOINT:
            import boto3

            self.s3 = boto3.client("s3", endpoint_url=S3_ENDPOINT, **{
                "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                "region_name": "us-east-1",
            })

    def keys(self, under: str) -> list[str]:
        """Object keys (relative to the warehouse) under `under`, sorted."""
        if not S3_ENDPOINT:
            root = self.path / under
            return sorted(
                p.relative_to(self.path).as_posix() for p in root.rglob("*") if p.is_file()
            ) if root.exists() else []
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=S3_BUCKET, Prefix=self.prefix + under
        ):
            out += [o["Key"][len(self.prefix):] for o in page.get("Contents", [])]
        return sorted(out)

    def read(self, key: str) -> bytes:
        if not S3_ENDPOINT:
            return (self.path / key).read_bytes()
        return self.s3.get_object(Bucket=S3_BUCKET, Key=self.prefix + key)["Body"].read()

    def delete(self, key: str) -> None:
        if not S3_ENDPOINT:
            (self.path / key).unlink()
            return
        self.s3.delete_object(Bucket=S3_BUCKET, Key=self.prefix + key)

    def write(self, key: str, data: bytes) -> None:
        if not S3_ENDPOINT:
            (self.path / key).write_bytes(data)
            return
        self.s3.put_object(Bucket=S3_BUCKET, Key=self.prefix + key, Body=data)


def lake(path: Path) -> Lake:
    return Lake(path)


def _env(extra: dict | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARN__")}
    env.pop("RUST_BACKTRACE", None)
    env.pop("RUST_LIB_BACKTRACE", None)
    env.setdefault("RUST_LOG", "info")
    env["NO_COLOR"] = "1"
    if S3_ENDPOINT:
        env.update(S3_ENV)
    if extra:
        env.update(extra)
    return env


@dataclass
class Tarn:
    proc: subprocess.Popen
    warehouse: Path
    address_file: Path
    stderr_path: Path
    pg_host: str = ""
    pg_port: int = 0
    http_url: str = ""
    flight_uri: str = ""
    stopped: bool = field(default=False)

    # ---- helpers -------------------------------------------------------
    @property
    def dsn(self) -> str:
        return f"host={self.pg_host} port={self.pg_port} user=tarn dbname=tarn"

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def psycopg(self, **kw):
        import psycopg

        kw.setdefault("autocommit", True)
        return psycopg.connect(
            host=self.pg_host, port=self.pg_port, user="tarn", dbname="tarn",
            connect_timeout=10, **kw
        )

    def stop(self, sig=signal.SIGTERM) -> int:
        """Send SIGTERM and assert a graceful exit with code 0."""
        if self.stopped:
            return self.proc.returncode
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(
                f"tarn did not exit within {STOP_TIMEOUT}s of {sig!r}\n"
                f"--- stderr ---\n{self.stderr()[-4000:]}"
            )
        assert rc == 0, (
            f"tarn exited with {rc} after {sig!r}, expected 0\n"
            f"--- stderr ---\n{self.stderr()[-4000:]}"
        )
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stopped = True


def _args(warehouse, address_file, demo, config, extra_args):
    args = [
        TARN_BIN, "serve",
        "--warehouse", warehouse_location(warehouse),
        "--http-addr", "127.0.0.1:0",
        "--address-file", str(address_file),
    ]
    extra_args = list(extra_args or [])
    for flag in ("--pg-addr", "--flight-addr"):
        if flag not in extra_args:
            args += [flag, "127.0.0.1:0"]
    if demo:
        args.append("--demo")
    if config is not None:
        args += ["--config", str(config)]
    args += list(extra_args or [])
    return args


def start_tarn(
    warehouse: Path,
    *,
    demo: bool = False,
    config: Path | None = None,
    extra_args: list[str] | None = None,
    env: dict | None = None,
    timeout: float = START_TIMEOUT,
) -> Tarn:
    """Start tarn on port 0 and wait for its address file."""
    assert os.path.exists(TARN_BIN), f"TARN_BIN not found: {TARN_BIN}"
    warehouse = Path(warehouse)
    if S3_ENDPOINT:
        # Stream logs are local files even when the warehouse is in S3: one folder per
        # warehouse, so a restart on the same warehouse finds its streams.
        env = {"TARN__STREAMS__DIR": f"{warehouse}.streams", **(env or {})}
    run_dir = Path(tempfile.mkdtemp(prefix="tarn-run-"))
    address_file = run_dir / "addr.json"
    stderr_path = run_dir / "stderr.log"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            _args(warehouse, address_file, demo, config, extra_args),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            env=_env(env),
        )
    t = Tarn(proc, warehouse, address_file, stderr_path)
    deadline = time.monotonic() + timeout
    while True:
        if address_file.exists():
            addrs = json.loads(address_file.read_text())
            host, port = addrs["pg"].rsplit(":", 1)
            t.pg_host, t.pg_port = host, int(port)
            t.http_url = "http://" + addrs["http"]
            t.flight_uri = "grpc://" + addrs["flight"]
            return t
        rc = proc.poll()
        if rc is not None:
            t.stopped = True
            pytest.fail(
                f"tarn exited early with code {rc} before writing {address_file}\n"
                f"--- stderr ---\n{t.stderr()[-6000:]}"
            )
        if time.monotonic() > deadline:
            t.kill()
            pytest.fail(
                f"tarn did not write {address_file} within {timeout}s\n"
                f"--- stderr ---\n{t.stderr()[-6000:]}"
            )
        time.sleep(POLL_INTERVAL)


def run_tarn_expect_failure(
    warehouse: Path,
    *,
    config: Path | None = None,
    extra_args: list[str] | None = None,
    env: dict | None = None,
    timeout: float = 60,
) -> tuple[int, str, bool]:
    """Run `tarn serve` expecting start-up to fail.

    Returns (exit code, stderr, whether the address file was written)."""
    run_dir = Path(tempfile.mkdtemp(prefix="tarn-fail-"))
    address_file = run_dir / "addr.json"
    proc = subprocess.Popen(
        _args(warehouse, address_file, False, config, extra_args),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=_env(env),
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(
            f"tarn was expected to fail at start-up but was still running after "
            f"{timeout}s (address file written: {address_file.exists()})\n"
            f"--- stderr ---\n{err.decode(errors='replace')[-4000:]}"
        )
    text = (out + err).decode(errors="replace")
    return proc.returncode, text, address_file.exists()


class TarnFactory:
    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.servers: list[Tarn] = []

    def start(self, warehouse: Path | None = None, **kw) -> Tarn:
        if warehouse is None:
            warehouse = self.tmp_path / "warehouse"
        t = start_tarn(warehouse, **kw)
        self.servers.append(t)
        return t

    def cleanup(self):
        for t in self.servers:
            if not t.stopped:
                t.kill()


@pytest.fixture
def tarn_factory(tmp_path):
    f = TarnFactory(tmp_path)
    yield f
    f.cleanup()


@pytest.fixture
def tarn(tmp_path):
    """A tarn server on an empty warehouse; stopped gracefully (exit 0) at the end."""
    t = start_tarn(tmp_path / "warehouse")
    try:
        yield t
    finally:
        if not t.stopped:
            t.stop()


@pytest.fixture(scope="session")
def tarn_demo(tmp_path_factory):
    """One tarn server with --demo shared by the whole session."""
    wh = tmp_path_factory.mktemp("demo") / "warehouse"
    t = start_tarn(wh, demo=True)
    try:
        yield t
    finally:
        if not t.stopped:
            t.stop()


# Views over the demo's tables, for the clients' view reflection (see `tarn_views`).
DEMO_VIEWS = {
    "big_orders": "SELECT o_orderkey, o_totalprice FROM demo.orders "
                  "WHERE o_totalprice > 300000",
    "orders_per_status": "SELECT o_orderstatus, count(*) FROM demo.orders "
                         "GROUP BY o_orderstatus",
}


@pytest.fixture(scope="session")
def tarn_views(tmp_path_factory):
    """A demo server with the views of DEMO_VIEWS (`orders_per_status` names its columns
    `status, orders`), shared by the session; kept apart from `tarn_demo`, whose relations
    other tests list."""
    import psycopg

    wh = tmp_path_factory.mktemp("views") / "warehouse"
    t = start_tarn(wh, demo=True)
    try:
        with psycopg.connect(host=t.pg_host, port=t.pg_port, user="tarn", dbname="tarn",
                             autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"CREATE VIEW demo.big_orders AS {DEMO_VIEWS['big_orders']}")
            conn.execute("CREATE VIEW demo.orders_per_status (status, orders) AS "
                         + DEMO_VIEWS["orders_per_status"])
        yield t
    finally:
        if not t.stopped:
            t.stop()


# ---- the demo database ------------------------------------------------------------------
DEMO_TABLES = [
    "customer", "events", "lineitem", "nation", "orders", "part", "partsupp", "region",
    "supplier",
]
SYSTEM_VIEWS = [
    "crawler_runs", "crawler_skipped_files", "crawlers", "deliveries",
    "object_store_requests", "partitions", "table_sizes", "table_versions",
]


# ---- the raw Postgres protocol --------------------------------------------------------
def read_pg_message(sock) -> tuple[bytes, bytes]:
    """One backend message from a raw socket: (type byte, body)."""
    def read(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("server closed the connection")
            data += chunk
        return data

    head = read(5)
    length = struct.unpack("!I", head[1:])[0]
    return head[:1], read(length - 4)


# ---- known gaps ------------------------------------------------------------------------
# tests/e2e/known_gaps.txt names tests of behaviour tarn does not have yet (BI tools' catalog
# queries, mostly). They run, and must fail: each is a strict xfail, so a gap that closes
# fails the run until its line is removed. A line naming a test that no longer exists is an
# error too.
KNOWN_GAPS = Path(__file__).with_name("known_gaps.txt")


def _known_gaps() -> dict[str, str]:
    gaps, reason = {}, ""
    for line in KNOWN_GAPS.read_text().splitlines():
        line = line.strip()
        if line.startswith("## "):
            reason = line[3:]
        elif line and not line.startswith("#"):
            gaps[line] = reason
    return gaps


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    gaps = _known_gaps()
    seen, files = set(), set()
    for item in items:
        key = f"{item.path.name}::{item.nodeid.split('::', 1)[1]}"
        files.add(item.path.name)
        if key in gaps:
            seen.add(key)
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"known gap: {gaps[key]}"))
    stale = [k for k in gaps if k.split("::", 1)[0] in files and k not in seen]
    if stale and not config.getoption("keyword") and not config.getoption("markexpr"):
        raise pytest.UsageError(f"{KNOWN_GAPS.name} names tests that do not exist: {stale}")
