"""Controlling queries and connections over the Postgres wire: CancelRequest, statement_timeout,
pg.max_connections, queries of dropped connections, shutdown with a query running; and how
bad input is answered (unknown functions, statements tarn does not support); COPY to and from
the client."""
import os
import subprocess
import socket
import struct
import threading
import time

import psycopg
import pytest

from conftest import read_pg_message

# 60175^2 row pairs: minutes of work in a debug build, and no pair matches (l_quantity <= 50).
LONG_SQL = (
    "SELECT count(*) FROM demo.lineitem a CROSS JOIN demo.lineitem b "
    "WHERE a.l_quantity + b.l_quantity > 1000"
)
HARD_DEADLINE = 90.0


def _err(t):
    return f"\n--- tarn stderr (tail) ---\n{t.stderr()[-3000:]}"


def _run_guarded(conn, sql, *, cancel_after=None, hard_deadline=HARD_DEADLINE):
    """Run `sql`, returning (exception or None, seconds taken).

    A watchdog thread sends a CancelRequest at `cancel_after` seconds and again every 0.25 s
    until the statement returns (a cancel that arrives before the query is running is lost,
    as in PostgreSQL). At `hard_deadline` it shuts the socket down, so a server that ignores
    cancels fails the test instead of hanging it."""
    done = threading.Event()
    start = time.monotonic()

    def watchdog():
        if cancel_after is not None:
            if done.wait(cancel_after):
                return
            while not done.is_set() and time.monotonic() - start < hard_deadline:
                conn.cancel_safe()
                done.wait(0.25)
        if not done.wait(max(0.0, hard_deadline - (time.monotonic() - start))):
            s = socket.socket(fileno=os.dup(conn.fileno()))
            s.shutdown(socket.SHUT_RDWR)
            s.close()

    th = threading.Thread(target=watchdog, daemon=True)
    th.start()
    exc = None
    try:
        conn.execute(sql).fetchall()
    except Exception as e:  # noqa: BLE001 - returned to the caller
        exc = e
    finally:
        elapsed = time.monotonic() - start
        done.set()
        th.join()
    return exc, elapsed


# ---- CPU use of the server: is a query still running? -----------------------------------

def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_cpu(pid, *, busy, timeout):
    """Wait until the process uses (busy) or stops using (not busy) the CPU: over a 1 s window
    more than 0.15 s of CPU time, or less than 0.03 s (an idle tarn uses none)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        a = _cpu_seconds(pid)
        time.sleep(1.0)
        used = _cpu_seconds(pid) - a
        if (busy and used > 0.15) or (not busy and used < 0.03):
            return used
    return None


@pytest.fixture
def busy_tarn(tarn_factory, tmp_path):
    """A demo server of the test's own: a query that tarn fails to stop keeps burning CPU,
    and must not slow down the other tests (the factory kills the server at the end)."""
    t = tarn_factory.start(tmp_path / "warehouse", demo=True)
    assert _wait_cpu(t.proc.pid, busy=False, timeout=60) is not None, "tarn never idle"
    return t


def _assert_query_stopped(t, what):
    used = _wait_cpu(t.proc.pid, busy=False, timeout=20)
    assert used is not None, (
        f"after {what} tarn kept computing the query for 20 s (the client got its error, "
        f"the execution was not stopped)" + _err(t))


# ---- cancel -------------------------------------------------------------------------------

def test_cancel_running_query(busy_tarn):
    t = busy_tarn
    with t.psycopg() as conn:
        exc, elapsed = _run_guarded(conn, LONG_SQL, cancel_after=0.5, hard_deadline=60)
        assert isinstance(exc, psycopg.errors.QueryCanceled), (repr(exc), _err(t))
        assert exc.sqlstate == "57014"
        assert "canceling statement due to user request" in str(exc)
        assert elapsed < 30, elapsed
        # the same connection goes on
        assert conn.execute("SELECT count(*) FROM demo.region").fetchone() == (5,)
    # and in a transaction: the cancel aborts it, ROLLBACK recovers
    with t.psycopg(autocommit=False) as conn:
        exc, _ = _run_guarded(conn, LONG_SQL, cancel_after=0.5, hard_deadline=60)
        assert isinstance(exc, psycopg.errors.QueryCanceled), repr(exc)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM demo.nation").fetchone() == (25,)


def test_cancel_stops_the_execution(busy_tarn):
    """The cancelled query must stop computing, not only stop being waited for."""
    t = busy_tarn
    with t.psycopg() as conn:
        exc, _ = _run_guarded(conn, LONG_SQL, cancel_after=1.0, hard_deadline=60)
        assert isinstance(exc, psycopg.errors.QueryCanceled), (repr(exc), _err(t))
        _assert_query_stopped(t, "a cancel")


@pytest.mark.parametrize("how", ["SET number", "SET string", "startup option"])
def test_statement_timeout(busy_tarn, how):
    t = busy_tarn
    kw = {"options": "-c statement_timeout=500"} if how == "startup option" else {}
    with t.psycopg(**kw) as conn:
        if how == "SET number":
            conn.execute("SET statement_timeout = 500")
        elif how == "SET string":
            conn.execute("SET statement_timeout = '500ms'")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("500ms",)
        # a user cancel at 30 s stops the query if the timeout does not
        exc, elapsed = _run_guarded(conn, LONG_SQL, cancel_after=30)
        assert isinstance(exc, psycopg.errors.QueryCanceled), (repr(exc), _err(t))
        assert exc.sqlstate == "57014"
        assert "canceling statement due to statement timeout" in str(exc), (
            str(exc), elapsed)
        assert elapsed < 5, elapsed
        # the connection goes on
        conn.execute("SET statement_timeout = 0")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
        assert conn.execute("SELECT count(*) FROM demo.orders").fetchone() == (15000,)
        _assert_query_stopped(t, "a statement timeout")


# ---- connection limit ---------------------------------------------------------------------

def _fields(body):
    out = {}
    for part in body.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode()
    return out


def _startup(t):
    """A raw StartupMessage. Returns the ErrorResponse fields if the server refuses the
    login, None if it gets to ReadyForQuery."""
    with socket.create_connection((t.pg_host, t.pg_port), timeout=10) as s:
        params = b"user\0tarn\0database\0tarn\0\0"
        s.sendall(struct.pack("!II", 8 + len(params), 196608) + params)
        while True:
            kind, body = read_pg_message(s)
            if kind == b"E":
                return _fields(body)
            if kind == b"R":
                assert struct.unpack("!I", body[:4])[0] == 0, "no auth expected"
            if kind == b"Z":
                s.sendall(b"X\0\0\0\4")
                return None


def _connect_within(t, seconds):
    deadline = time.monotonic() + seconds
    while True:
        try:
            return t.psycopg()
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_max_connections(tarn_factory, tmp_path):
    cfg = tmp_path / "tarn.toml"
    cfg.write_text("[pg]\nmax_connections = 3\n")
    t = tarn_factory.start(tmp_path / "warehouse", config=cfg)
    conns = [t.psycopg() for _ in range(3)]
    err = _startup(t)
    assert err is not None, "a 4th connection was let in"
    assert err["C"] == "53300", err
    assert err["S"] == "FATAL", err
    assert "too many clients" in err["M"], err
    with pytest.raises(psycopg.OperationalError, match="too many clients"):
        t.psycopg()
    for c in conns:
        assert c.execute("SELECT 1 AS a").fetchone() == (1,)
    # a refused login does not hold a place; a closed connection gives one back
    conns.pop().close()
    conns.append(_connect_within(t, 10))
    assert conns[-1].execute("SELECT 2 AS b").fetchone() == (2,)
    err = _startup(t)
    assert err is not None and err["C"] == "53300", err
    for c in conns:
        c.close()
    assert _connect_within(t, 10).execute("SELECT 3 AS c").fetchone() == (3,)
    t.stop()


# ---- queries whose client is gone; shutdown with a query running -------------------------

def test_query_of_dropped_connection_is_stopped(busy_tarn):
    """A BI tool that gives up drops the connection; the query must not run on."""
    t = busy_tarn
    s = socket.create_connection((t.pg_host, t.pg_port), timeout=10)
    params = b"user\0tarn\0database\0tarn\0\0"
    s.sendall(struct.pack("!II", 8 + len(params), 196608) + params)
    while read_pg_message(s)[0] != b"Z":
        pass
    q = LONG_SQL.encode() + b"\0"
    s.sendall(b"Q" + struct.pack("!I", 4 + len(q)) + q)
    assert _wait_cpu(t.proc.pid, busy=True, timeout=30) is not None, "query never ran"
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST
    _assert_query_stopped(t, "the client closed its connection")
    t.stop()


def test_sigterm_with_query_running(busy_tarn):
    """SIGTERM while a query runs: the client gets 57P01 and tarn exits 0 within its
    shutdown timeout (10 s by default)."""
    t = busy_tarn
    conn = t.psycopg()
    result = {}

    def runq():
        try:
            conn.execute(LONG_SQL)
            result["exc"] = None
        except Exception as e:  # noqa: BLE001
            result["exc"] = e

    th = threading.Thread(target=runq, daemon=True)
    th.start()
    assert _wait_cpu(t.proc.pid, busy=True, timeout=30) is not None, "query never ran"
    t0 = time.monotonic()
    t.stop()  # asserts exit code 0 within 30 s
    assert time.monotonic() - t0 < 15
    th.join(10)
    assert not th.is_alive()
    exc = result["exc"]
    # PostgreSQL's fast shutdown: FATAL 57P01 "terminating connection due to administrator
    # command" (psycopg.errors.AdminShutdown), not just a dropped socket
    assert isinstance(exc, psycopg.errors.AdminShutdown), repr(exc)
    assert exc.sqlstate == "57P01"


# ---- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("sql,name", [
    ("SELECT no_such_fn(1)", "no_such_fn"),
    ("SELECT pg_catalog.no_such_fn()", "no_such_fn"),
    ("SELECT upper(1, 2)", "upper"),
    ("SELECT r_name FROM demo.region WHERE no_such_pred(r_name)", "no_such_pred"),
])
def test_unknown_function(tarn_demo, sql, name):
    with tarn_demo.psycopg() as conn:
        for cur in (conn.cursor(), psycopg.ClientCursor(conn)):  # extended, simple
            with pytest.raises(psycopg.Error) as ei:
                cur.execute(sql)
            assert ei.value.sqlstate == "42883", (sql, ei.value.sqlstate, str(ei.value))
            assert name in str(ei.value)
            assert conn.execute("SELECT count(*) FROM demo.region").fetchone() == (5,)


UNSUPPORTED = [
    ("CREATE INDEX region_name ON demo.region (r_name)", "CREATE INDEX"),
    ("LISTEN chan", "LISTEN"),
    ("NOTIFY chan", "NOTIFY"),
    ("CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql", "CREATE FUNCTION"),
    ("CREATE SEQUENCE s", "CREATE SEQUENCE"),
    ("CREATE TRIGGER t AFTER INSERT ON demo.region EXECUTE FUNCTION f()", "CREATE TRIGGER"),
    ("LOCK TABLE demo.region", "LOCK"),
    ("VACUUM demo.region", "VACUUM"),
    ("GRANT SELECT ON demo.region TO bob", "GRANT"),
    ("CREATE ROLE bob", "CREATE ROLE"),
    ("COMMENT ON TABLE demo.region IS 'regions'", "COMMENT"),
    ("ALTER TABLE demo.region ADD PRIMARY KEY (r_regionkey)", "PRIMARY KEY"),
    ("CLUSTER demo.region", "CLUSTER"),
    ("REINDEX TABLE demo.region", "REINDEX"),
    ("CHECKPOINT", "CHECKPOINT"),
]


@pytest.mark.parametrize("sql,feature", UNSUPPORTED, ids=[f for _, f in UNSUPPORTED])
def test_unsupported_statement(tarn_demo, sql, feature):
    """Valid PostgreSQL that tarn does not do: 0A000 (feature_not_supported) with a message
    naming the statement in SQL words, and the connection stays usable."""
    with tarn_demo.psycopg() as conn:
        with pytest.raises(psycopg.Error) as ei:
            conn.execute(sql)
        assert ei.value.sqlstate == "0A000", (sql, ei.value.sqlstate, str(ei.value))
        assert feature.lower() in str(ei.value).lower(), str(ei.value)
        assert conn.execute("SELECT count(*) FROM demo.region").fetchone() == (5,)
    with tarn_demo.psycopg(autocommit=False) as conn:
        with pytest.raises(psycopg.Error) as ei:
            conn.execute(sql)
        assert ei.value.sqlstate == "0A000"
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM demo.nation").fetchone() == (25,)


def test_copy_to_stdout(tarn_demo):
    """COPY ... TO STDOUT is how psql's \\copy, pandas and DBeaver export a result."""
    with tarn_demo.psycopg() as conn:
        expected = conn.execute(
            "SELECT r_regionkey, r_name FROM demo.region ORDER BY r_regionkey").fetchall()
        cur = conn.cursor()
        with cur.copy("COPY (SELECT r_regionkey, r_name FROM demo.region "
                      "ORDER BY r_regionkey) TO STDOUT") as copy:
            text = b"".join(bytes(b) for b in copy).decode()
        assert text.splitlines() == [f"{k}\t{n}" for k, n in expected]
        with cur.copy("COPY demo.region (r_regionkey, r_name) TO STDOUT "
                      "WITH (FORMAT csv, HEADER)") as copy:
            lines = b"".join(bytes(b) for b in copy).decode().splitlines()
        assert lines[0] == "r_regionkey,r_name"
        assert sorted(lines[1:]) == sorted(f"{k},{n}" for k, n in expected)
        assert conn.execute("SELECT 1 AS a").fetchone() == (1,)


def test_copy_from_stdin(tarn_factory, tmp_path):
    """COPY … FROM STDIN (psql's \\copy, pandas' to_sql with method=copy, pgjdbc's
    CopyManager): text and CSV, NULLs, a column list, and bad data refused whole with its
    SQLSTATE while the connection goes on. (A server of its own: it creates a table.)"""
    t = tarn_factory.start(tmp_path / "warehouse")
    with t.psycopg() as conn:
        conn.execute("CREATE DATABASE up")
        conn.execute("CREATE TABLE up.items (id BIGINT, name VARCHAR, price DOUBLE PRECISION, "
                     "day DATE)")
        cur = conn.cursor()
        with cur.copy("COPY up.items (id, name, price, day) FROM STDIN") as copy:
            copy.write_row((1, "tab\there", 1.5, "2024-02-29"))
            copy.write_row((2, None, None, None))
        assert cur.statusmessage == "COPY 2"
        with cur.copy("COPY up.items (name, id) FROM STDIN WITH (FORMAT csv, HEADER)") as copy:
            copy.write(b'name,id\n"a, ""quoted"" name",3\n,4\n"",5\n')
        assert cur.statusmessage == "COPY 3"
        rows = conn.execute("SELECT id, name, price, day FROM up.items ORDER BY id").fetchall()
        assert [r[:3] for r in rows] == [
            (1, "tab\there", 1.5), (2, None, None), (3, 'a, "quoted" name', None),
            (4, None, None), (5, "", None)]
        assert str(rows[0][3]) == "2024-02-29"
        # bad data: nothing is written, the error has Postgres's SQLSTATE
        for sql, data, state in [
            ("COPY up.items (id, name) FROM STDIN", b"6\tx\textra\n", "22P04"),
            ("COPY up.items (id) FROM STDIN", b"not a number\n", "22P02"),
            ("COPY up.items (day) FROM STDIN", b"2024-13-01\n", "22P02"),
            ("COPY up.nope FROM STDIN", None, "42P01"),
            ("COPY up.items (nope) FROM STDIN", None, "42703"),
            ("COPY up.items FROM STDIN (FORMAT binary)", None, "0A000"),
        ]:
            with pytest.raises(psycopg.Error) as e:
                with cur.copy(sql) as copy:
                    if data is not None:
                        copy.write(data)
            assert e.value.sqlstate == state, (sql, e.value.sqlstate, str(e.value))
        assert conn.execute("SELECT count(*) FROM up.items").fetchone() == (5,)
    # psql's \copy from a file
    data = tmp_path / "more.csv"
    data.write_text("id,name\n7,seven\n8,eight\n")
    out = subprocess.run(
        ["psql", "-X", "-h", t.pg_host, "-p", str(t.pg_port), "-U", "tarn", "-d", "tarn",
         "-v", "ON_ERROR_STOP=1", "-c", f"\\copy up.items (id, name) from '{data}' with csv header"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "COPY 2"
    with t.psycopg() as conn:
        assert conn.execute("SELECT count(*) FROM up.items").fetchone() == (7,)


def test_copy_from_stdin_size_limit(tarn_factory, tmp_path):
    """A COPY FROM STDIN past pg.max_copy_bytes gets 54000 at its end and writes nothing;
    the connection goes on."""
    t = tarn_factory.start(tmp_path / "warehouse", env={"TARN__PG__MAX_COPY_BYTES": "64"})
    with t.psycopg() as conn:
        conn.execute("CREATE DATABASE up")
        conn.execute("CREATE TABLE up.s (s VARCHAR)")
        cur = conn.cursor()
        with cur.copy("COPY up.s FROM STDIN") as copy:
            copy.write(b"small\n" * 5)
        assert cur.statusmessage == "COPY 5"
        with pytest.raises(psycopg.errors.ProgramLimitExceeded) as e:
            with cur.copy("COPY up.s FROM STDIN") as copy:
                for _ in range(20):
                    copy.write(b"0123456789\n")
        assert "pg.max_copy_bytes" in str(e.value)
        assert conn.execute("SELECT count(*) FROM up.s").fetchone() == (5,)


def test_copy_values_and_refusals(tarn_factory, tmp_path):
    """Empty strings against NULLs both ways, empty lines, bytea, escapes as bytes; COPY
    refused in a read-only transaction, abandoned by the client, or failing half-way out."""
    t = tarn_factory.start(tmp_path / "warehouse")
    with t.psycopg() as conn:
        conn.execute("CREATE DATABASE up")
        conn.execute("CREATE TABLE up.b (k BIGINT, s VARCHAR, data BYTEA)")
        conn.execute("CREATE TABLE up.s (s VARCHAR)")
        cur = conn.cursor()
        with cur.copy("COPY up.b FROM STDIN") as copy:
            copy.write_row((1, "", b"\x00\xff"))
            copy.write_row((2, None, None))
            copy.write(b"3\t\\303\\251\t\\\\x41\n")
        assert conn.execute("SELECT k, s, data FROM up.b ORDER BY k").fetchall() == [
            (1, "", b"\x00\xff"), (2, None, None), (3, "\u00e9", b"A")]
        with cur.copy("COPY (SELECT k, s FROM up.b ORDER BY k) TO STDOUT (FORMAT csv)") as copy:
            assert b"".join(bytes(b) for b in copy) == b'1,""\n2,\n3,\xc3\xa9\n'
        # an empty line is a row of one empty string
        with cur.copy("COPY up.s FROM STDIN") as copy:
            copy.write(b"a\n\nb\n")
        assert conn.execute("SELECT s FROM up.s ORDER BY s").fetchall() == [("",), ("a",), ("b",)]
        # half-way out: an ErrorResponse, and the connection goes on
        with pytest.raises(psycopg.errors.DivisionByZero):
            with cur.copy("COPY (SELECT 1 / (k - 2) FROM up.b ORDER BY k) TO STDOUT") as copy:
                b"".join(bytes(b) for b in copy)
        assert conn.execute("SELECT count(*) FROM up.b").fetchone() == (3,)
    with t.psycopg(autocommit=False) as conn:
        conn.execute("SET TRANSACTION READ ONLY")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            with conn.cursor().copy("COPY up.s FROM STDIN") as copy:
                copy.write(b"x\n")
        conn.rollback()
    with t.psycopg() as conn:
        # the client gives up: CopyFail, nothing is written
        with pytest.raises(ZeroDivisionError):
            with conn.cursor().copy("COPY up.s FROM STDIN") as copy:
                copy.write(b"x\n")
                1 / 0
        assert conn.execute("SELECT count(*) FROM up.s").fetchone() == (3,)
        # a header line in the text format (PostgreSQL 15+), both ways
        cur = conn.cursor()
        with cur.copy("COPY (SELECT k, s FROM up.b WHERE k = 1) TO STDOUT (HEADER)") as copy:
            assert b"".join(bytes(b) for b in copy) == b"k\ts\n1\t\n"
        with cur.copy("COPY up.s FROM STDIN (HEADER)") as copy:
            copy.write(b"s\nz\n")
        assert conn.execute("SELECT s FROM up.s WHERE s > 'b'").fetchall() == [("z",)]
