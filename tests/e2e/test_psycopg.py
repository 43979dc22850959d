"""psycopg 3 (extended protocol, text and binary results) against tarn."""
import datetime as dt
import socket
import struct
from decimal import Decimal

import psycopg
import pytest

from conftest import read_pg_message


def test_params_extended_protocol(tarn_demo):
    with tarn_demo.psycopg() as conn:
        cur = conn.execute(
            "SELECT r_regionkey, r_name FROM demo.region WHERE r_regionkey >= %s "
            "ORDER BY r_regionkey",
            (3,),
        )
        assert cur.fetchall() == [(3, "EUROPE"), (4, "MIDDLE EAST")]
        cur = conn.execute(
            "SELECT count(*) AS n FROM demo.events WHERE dt = %s AND kind = %s",
            ("2026-01-05", "purchase"),
        )
        n = cur.fetchone()[0]
        total = conn.execute(
            "SELECT count(*) AS n FROM demo.events WHERE dt = '2026-01-05' "
            "AND kind = 'purchase'"
        ).fetchone()[0]
        assert n == total and 0 < n < 500
        # the same statement several times: psycopg prepares it server-side
        for key, name in [(0, "ALGERIA"), (1, "ARGENTINA"), (2, "BRAZIL"),
                          (0, "ALGERIA"), (1, "ARGENTINA"), (2, "BRAZIL")]:
            got = conn.execute(
                "SELECT n_name FROM demo.nation WHERE n_nationkey = %s", (key,),
                prepare=True,
            ).fetchone()
            assert got == (name,)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_demo_values_decoded(tarn_demo, binary):
    with tarn_demo.psycopg() as conn:
        cur = conn.cursor(binary=binary)
        cur.execute(
            "SELECT o_orderkey, o_orderdate, o_totalprice, o_shippriority "
            "FROM demo.orders WHERE o_orderkey = %s",
            (1,),
        )
        row = cur.fetchone()
        assert row[0] == 1
        assert isinstance(row[1], dt.date) and row[1] == dt.date(1996, 1, 2)
        assert Decimal(row[2]) == Decimal("172799.49")
        assert isinstance(row[3], int)

        cur.execute(
            "SELECT event_id, kind, amount, ts, dt FROM demo.events "
            "WHERE dt = %s ORDER BY event_id LIMIT 3",
            ("2026-01-02",),
        )
        rows = cur.fetchall()
        assert len(rows) == 3
        for event_id, kind, amount, ts, day in rows:
            assert isinstance(event_id, int)
            assert isinstance(kind, str)
            assert amount is None or isinstance(amount, float)
            assert isinstance(ts, dt.datetime) and ts.tzinfo is not None
            assert ts.date() == dt.date(2026, 1, 2)
            assert day == "2026-01-02"
        cur.execute("SELECT count(*) AS n FROM demo.events WHERE amount IS NULL")
        nulls = cur.fetchone()[0]
        assert 0 < nulls < 3500


TS = dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_types_round_trip(tarn, binary):
    with tarn.psycopg() as conn:
        cur = conn.cursor(binary=binary)
        cur.execute(
            "SELECT %s::int AS a, %s::bigint AS b, %s::text AS c, "
            "%s::double precision AS d, %s::date AS e",
            (7, 2**40, "héllo wörld", 1.5, dt.date(2024, 2, 29)),
        )
        assert cur.fetchone() == (7, 2**40, "héllo wörld", 1.5, dt.date(2024, 2, 29))
        assert [d.type_code for d in cur.description] == [23, 20, 25, 701, 1082]

        # stored in a table and read back
        conn.execute("CREATE DATABASE rt")
        conn.execute("CREATE TABLE rt.t (i INT, b BIGINT, s VARCHAR, f DOUBLE, d DATE)")
        conn.execute(
            "INSERT INTO rt.t VALUES (1, 10000000000, 'x', 0.25, DATE '2024-02-29'), "
            "(NULL, NULL, NULL, NULL, NULL)"
        )
        cur.execute("SELECT i, b, s, f, d FROM rt.t ORDER BY i NULLS LAST")
        assert cur.fetchall() == [
            (1, 10_000_000_000, "x", 0.25, dt.date(2024, 2, 29)),
            (None, None, None, None, None),
        ]
        assert [d.type_code for d in cur.description] == [23, 20, 25, 701, 1082]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_timestamptz_column_round_trip(tarn, binary):
    with tarn.psycopg() as conn:
        cur = conn.cursor(binary=binary)
        conn.execute("CREATE TABLE tzt (id INT, ts TIMESTAMP WITH TIME ZONE)")
        conn.execute(
            "INSERT INTO tzt VALUES (1, TIMESTAMPTZ '2024-01-02T03:04:05.123456Z'), "
            "(2, NULL)"
        )
        cur.execute("SELECT ts FROM tzt ORDER BY id")
        assert cur.description[0].type_code == 1184, cur.description
        assert cur.fetchall() == [(TS,), (None,)]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_timestamptz_param_round_trip(tarn, binary):
    with tarn.psycopg() as conn:
        cur = conn.cursor(binary=binary)
        cur.execute("SELECT %s::timestamptz AS ts", (TS,))
        got = cur.fetchone()[0]
        assert cur.description[0].type_code == 1184, cur.description
        assert got == TS and got.tzinfo is not None


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_null_params(tarn, binary):
    with tarn.psycopg() as conn:
        cur = conn.cursor(binary=binary)
        cur.execute("SELECT %s::int AS a, %s::text AS b, %s::int AS c", (None, None, 3))
        assert cur.fetchone() == (None, None, 3)


def test_untyped_text_param_binary(tarn):
    # Postgres resolves an untyped `$1` in a select list to text.
    with tarn.psycopg() as conn:
        cur = conn.cursor(binary=True)
        cur.execute("SELECT %s AS s", ("héllo",))
        assert cur.fetchone() == ("héllo",)
        assert cur.description[0].type_code == 25


ERROR_CASES = [
    ("42P01", "SELECT * FROM no_such_table"),
    ("42601", "SELEC 1"),
    ("0A000", "CREATE MATERIALIZED VIEW v AS SELECT 1 AS a"),
    ("0A000", "CREATE TEMPORARY TABLE tt (a INT)"),
    ("0A000", "DROP SCHEMA public"),
    ("42703", "SELECT no_such_column FROM errs.t"),
    ("42883", "SELECT no_such_function(1) AS x"),
    ("42P07", "CREATE TABLE errs.t (a INT)"),
    ("42P06", "CREATE DATABASE errs"),
    ("3F000", "CREATE TABLE no_such_db.t (a INT)"),
    ("3F000", "DROP DATABASE no_such_db"),
    ("2BP01", "DROP DATABASE errs"),
    ("2BP01", "DROP SCHEMA errs"),
    ("58P01", "CREATE EXTERNAL TABLE ext_missing STORED AS PARQUET "
              "LOCATION '{missing}/'"),
    ("58P01", "CREATE EXTERNAL TABLE ext_missing STORED AS PARQUET "
              "LOCATION '{missing}/' PARTITIONED BY (dt)"),
    ("58P01", "CREATE EXTERNAL TABLE ext_missing STORED AS CSV "
              "LOCATION '{missing}/' OPTIONS ('format.has_header' 'true')"),
]


@pytest.fixture(scope="module")
def tarn_errs(tmp_path_factory):
    from conftest import start_tarn

    t = start_tarn(tmp_path_factory.mktemp("errs") / "warehouse")
    with t.psycopg() as conn:
        conn.execute("CREATE DATABASE errs")
        conn.execute("CREATE TABLE errs.t (a INT)")
        conn.execute("INSERT INTO errs.t VALUES (1), (2)")
    t.missing = str(tmp_path_factory.mktemp("missing") / "not" / "there")
    yield t
    t.stop()


@pytest.mark.parametrize(
    "sqlstate,sql", ERROR_CASES, ids=[f"{c}-{s.split()[0]}-{s.split()[1]}-{i}" for i, (c, s) in enumerate(ERROR_CASES)]
)
def test_error_sqlstate_and_connection_survives(tarn_errs, sqlstate, sql):
    with tarn_errs.psycopg() as conn:
        for params in (None, ()):  # simple-ish and extended paths
            with pytest.raises(psycopg.Error) as ei:
                if params is None:
                    conn.execute(sql.format(missing=tarn_errs.missing))
                else:
                    conn.execute(sql.format(missing=tarn_errs.missing), params, prepare=False)
            assert ei.value.sqlstate == sqlstate, (sql, ei.value.sqlstate, str(ei.value))
            # same connection keeps working, and nothing was changed
            assert conn.execute("SELECT sum(a) AS s FROM errs.t").fetchone() == (3,)
    # and the error in a transaction: ROLLBACK recovers the connection
    with tarn_errs.psycopg(autocommit=False) as conn:
        with pytest.raises(psycopg.Error) as ei:
            conn.execute(sql.format(missing=tarn_errs.missing))
        assert ei.value.sqlstate == sqlstate
        conn.rollback()
        assert conn.execute("SELECT count(*) AS n FROM errs.t").fetchone() == (2,)


def _show(conn, name):
    return conn.execute(f"SHOW {name}").fetchone()[0]


def _df_setting(conn, name):
    return conn.execute(
        "SELECT value FROM information_schema.df_settings WHERE name = %s", (name,)
    ).fetchone()[0]


def test_set_is_per_connection(tarn):
    name = "datafusion.execution.batch_size"
    with tarn.psycopg() as a, tarn.psycopg() as b:
        default = _df_setting(b, name)
        assert default != "123"
        a.execute(f"SET {name} = 123")
        assert _df_setting(a, name) == "123"
        assert _df_setting(b, name) == default
        # a new connection gets the default too
        with tarn.psycopg() as c:
            assert _df_setting(c, name) == default
        # SHOW, as the brief's clients use it
        assert _show(a, name) == "123"
        assert _show(b, name) == default


def _raw_start_query(host, port, sql):
    """A minimal pg client: startup, simple Query; returns the socket."""
    s = socket.create_connection((host, port), timeout=30)
    params = b"user\0tarn\0database\0tarn\0\0"
    s.sendall(struct.pack("!II", 8 + len(params), 196608) + params)
    while True:
        kind, body = read_pg_message(s)
        if kind == b"R":
            code = struct.unpack("!I", body[:4])[0]
            if code in (3,):  # cleartext password
                pw = b"x\0"
                s.sendall(b"p" + struct.pack("!I", 4 + len(pw)) + pw)
            else:
                assert code == 0, f"unexpected auth request {code}"
        elif kind == b"E":
            raise AssertionError(f"startup error: {body!r}")
        elif kind == b"Z":
            break
    q = sql.encode() + b"\0"
    s.sendall(b"Q" + struct.pack("!I", 4 + len(q)) + q)
    return s


def test_client_disconnect_mid_result(tarn_demo):
    for _ in range(3):
        s = _raw_start_query(tarn_demo.pg_host, tarn_demo.pg_port,
                             "SELECT * FROM demo.lineitem")
        rows = 0
        while rows < 5:
            kind, _body = read_pg_message(s)
            assert kind in (b"T", b"D"), kind
            if kind == b"D":
                rows += 1
        # abrupt close (RST) in the middle of the result
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()

    # also via psycopg: a streaming cursor abandoned after a few rows
    conn = tarn_demo.psycopg()
    it = conn.cursor().stream("SELECT * FROM demo.lineitem")
    first = [next(it) for _ in range(3)]
    assert len(first) == 3
    conn.pgconn.finish()  # drops the socket without reading the rest

    assert tarn_demo.proc.poll() is None, tarn_demo.stderr()[-3000:]
    with tarn_demo.psycopg() as conn:
        assert conn.execute("SELECT count(*) AS n FROM demo.lineitem").fetchone() == (60175,)
        assert conn.execute("SELECT count(*) AS n FROM demo.orders").fetchone() == (15000,)


def test_prepared_statements_survive_ddl_and_deallocate(tarn):
    """psycopg prepares a query run 5 times on a connection (binary transfer, protocol-level
    statements), and after any DROP it sends DEALLOCATE ALL; past prepared_max it deallocates
    single statements by name. Both must work, and queries keep working after them."""
    with tarn.psycopg(autocommit=True) as conn:
        conn.prepare_threshold = 2
        conn.prepared_max = 2
        conn.execute("CREATE TABLE prep_t (id BIGINT)")
        conn.execute("INSERT INTO prep_t VALUES (1), (2), (3)")
        for n in range(1, 6):
            # three distinct queries, so psycopg evicts (DEALLOCATE _pg3_n) beyond prepared_max
            for q in ("SELECT count(*) FROM prep_t WHERE id >= %s",
                      "SELECT sum(id) FROM prep_t WHERE id >= %s",
                      "SELECT max(id) FROM prep_t WHERE id >= %s"):
                conn.execute(q, (n,)).fetchone()
        assert conn.execute("SELECT count(*) FROM prep_t WHERE id >= %s", (2,)).fetchone() == (2,)
        conn.execute("CREATE TABLE prep_u (id BIGINT)")
        conn.execute("DROP TABLE prep_u")  # psycopg follows this with DEALLOCATE ALL
        assert conn.execute("SELECT count(*) FROM prep_t WHERE id >= %s", (1,)).fetchone() == (3,)
        assert conn.execute("DEALLOCATE ALL").statusmessage == "DEALLOCATE ALL"
        with pytest.raises(psycopg.Error) as err:
            conn.execute("DEALLOCATE no_such_statement")
        assert err.value.sqlstate == "26000"
        assert conn.execute("SELECT 1").fetchone() == (1,)
