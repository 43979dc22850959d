"""Postgres-shaped results: column names, type OIDs and modifiers, NULLs and values, over
psycopg 3 (simple protocol, extended text, extended binary) and asyncpg (binary); then
transactions, SET/SHOW/RESET and the session functions BI tools call.

Expected values are what PostgreSQL 15 answers for the same statements on tables with the
demo's columns (TPC-H `orders.o_totalprice numeric(15,2)`, `events.ts timestamptz`...).
"""
import asyncio
import datetime as dt
import subprocess
import uuid
from decimal import Decimal

import asyncpg
import psycopg
import pytest

UTC = dt.timezone.utc


# ---- one way to run a query per client --------------------------------------------------

def _psycopg_run(t, sql, *, binary=False, simple=False):
    with t.psycopg() as conn:
        cur = psycopg.ClientCursor(conn) if simple else conn.cursor(binary=binary)
        with cur:
            cur.execute(sql)
            cols = [(d.name, d.type_code) for d in cur.description]
            return cols, cur.fetchall()


def _asyncpg_run(t, sql):
    async def main():
        c = await asyncpg.connect(host=t.pg_host, port=t.pg_port, user="tarn",
                                  database="tarn", timeout=10)
        try:
            st = await c.prepare(sql)
            cols = [(a.name, a.type.oid) for a in st.get_attributes()]
            return cols, [tuple(r) for r in await st.fetch()]
        finally:
            await c.close()
    return asyncio.run(asyncio.wait_for(main(), 60))


CLIENTS = {
    "psycopg-simple": lambda t, sql: _psycopg_run(t, sql, simple=True),
    "psycopg-text": lambda t, sql: _psycopg_run(t, sql),
    "psycopg-binary": lambda t, sql: _psycopg_run(t, sql, binary=True),
    "asyncpg": _asyncpg_run,
}


@pytest.fixture(params=list(CLIENTS))
def run(request, tarn_demo):
    fn = CLIENTS[request.param]

    def go(sql):
        try:
            return fn(tarn_demo, sql)
        except Exception as e:
            raise AssertionError(
                f"{request.param}: {sql!r} failed: {type(e).__name__}: {e}"
                f"\n--- tarn stderr (tail) ---\n{tarn_demo.stderr()[-2000:]}"
            ) from e
    return go


# ---- column names -------------------------------------------------------------------------

NAME_CASES = [
    ("SELECT count(*) FROM demo.region", "count"),
    ("SELECT sum(r_regionkey) FROM demo.region", "sum"),
    ("SELECT max(r_regionkey) FROM demo.region", "max"),
    ("SELECT avg(r_regionkey) FROM demo.region", "avg"),
    ("SELECT 1+1", "?column?"),
    ("SELECT 'x'", "?column?"),
    ("SELECT true", "?column?"),
    ("SELECT r_regionkey * 2 FROM demo.region WHERE r_regionkey = 1", "?column?"),
    ('SELECT r_name AS "Name" FROM demo.region WHERE r_regionkey = 1', "Name"),
    ("SELECT now()", "now"),
    ("SELECT CAST(1 AS int)", "int4"),
    ("SELECT CAST(1 AS bigint)", "int8"),
    ("SELECT CAST(r_regionkey AS text) FROM demo.region WHERE r_regionkey = 1", "r_regionkey"),
    ("SELECT lower(r_name) FROM demo.region WHERE r_regionkey = 1", "lower"),
    ("SELECT trim(r_name) FROM demo.region WHERE r_regionkey = 1", "btrim"),
    ("SELECT coalesce(r_name, 'x') FROM demo.region WHERE r_regionkey = 1", "coalesce"),
    ("SELECT CASE WHEN r_regionkey > 1 THEN 'a' ELSE 'b' END FROM demo.region "
     "WHERE r_regionkey = 1", "case"),
    ("SELECT r.r_name FROM demo.region r WHERE r.r_regionkey = 1", "r_name"),
    ("SELECT * FROM (SELECT count(*) FROM demo.region) t", "count"),
    ("WITH t AS (SELECT count(*) FROM demo.region) SELECT * FROM t", "count"),
    ("SELECT extract(year FROM o_orderdate) FROM demo.orders WHERE o_orderkey = 1", "extract"),
    ("SELECT date_trunc('month', o_orderdate) FROM demo.orders WHERE o_orderkey = 1",
     "date_trunc"),
    ("SELECT current_user", "current_user"),
    ("SELECT session_user", "session_user"),
    ("SELECT current_database()", "current_database"),
    ("SELECT current_schema()", "current_schema"),
    ("SELECT version()", "version"),
]


@pytest.mark.parametrize("sql,name", NAME_CASES, ids=[n for _, n in NAME_CASES])
def test_column_name(run, sql, name):
    cols, rows = run(sql)
    assert [c[0] for c in cols] == [name], (sql, cols)
    assert len(rows) == 1


def test_derived_table_columns_have_postgres_names(run):
    """Superset wraps a virtual dataset's SQL in `SELECT ... FROM (<sql>) AS virtual_table`:
    the outer query refers to the inner columns by their PostgreSQL names."""
    cols, rows = run("SELECT t.count FROM (SELECT count(*) FROM demo.region) t")
    assert (cols[0][0], rows) == ("count", [(5,)])
    cols, rows = run("SELECT max(sum) AS m FROM (SELECT sum(r_regionkey) FROM demo.region) s")
    assert rows == [(10,)]


def test_duplicate_output_names(run):
    """PostgreSQL allows several output columns with one name."""
    cols, rows = run("SELECT count(*), count(*) FROM demo.region")
    assert ([c[0] for c in cols], rows) == (["count", "count"], [(5, 5)])
    cols, rows = run("SELECT r_name, r_name FROM demo.region WHERE r_regionkey = 1")
    assert ([c[0] for c in cols], rows) == (["r_name", "r_name"], [("AMERICA", "AMERICA")])
    cols, rows = run("SELECT 1 AS a, 'x' AS a")
    assert ([c[0] for c in cols], rows) == (["a", "a"], [(1, "x")])


# ---- type OIDs ----------------------------------------------------------------------------

TYPE_CASES = [
    ("SELECT CAST(1 AS bigint) AS v", {20}),
    ("SELECT CAST(1 AS int) AS v", {23}),
    ("SELECT CAST(1 AS smallint) AS v", {21}),
    ("SELECT CAST('a' AS text) AS v", {25}),
    ("SELECT CAST('a' AS varchar) AS v", {1043}),
    ("SELECT CAST('abc' AS varchar(2)) AS v", {1043}),
    ("SELECT 1 AS v", {23}),
    ("SELECT 1 + 1 AS v", {23}),
    ("SELECT 3000000000 AS v", {20}),
    ("SELECT ARRAY[1, 2] AS v", {1007}),
    ("SELECT CAST(1.5 AS numeric(10,2)) AS v", {1700}),
    ("SELECT 1.5 AS v", {1700}),
    ("SELECT DATE '2024-01-01' AS v", {1082}),
    ("SELECT TIMESTAMP '2024-01-01 00:00:00' AS v", {1114}),
    ("SELECT TIMESTAMPTZ '2024-01-01 00:00:00+00' AS v", {1184}),
    ("SELECT INTERVAL '1 day' AS v", {1186}),
    ("SELECT true AS v", {16}),
    ("SELECT CAST(1.5 AS double precision) AS v", {701}),
    ("SELECT CAST(1.5 AS real) AS v", {700}),
    ("SELECT CAST(ARRAY[1, 2] AS int4[]) AS v", {1007}),
    ("SELECT CAST(ARRAY[1, 2] AS int8[]) AS v", {1016}),
    ("SELECT ARRAY['a', 'b'] AS v", {1009}),
    ("SELECT CAST('ab' AS bytea) AS v", {17}),
    ("SELECT TIME '01:02:03' AS v", {1083}),
    ("SELECT count(*) AS v FROM demo.region", {20}),
    ("SELECT row_number() OVER (ORDER BY r_regionkey) AS v FROM demo.region "
     "ORDER BY v LIMIT 1", {20}),
    ("SELECT r_name AS v FROM demo.region WHERE r_regionkey = 1", {25, 1043}),
    ("SELECT o_totalprice AS v FROM demo.orders WHERE o_orderkey = 1", {1700}),
    ("SELECT o_orderdate AS v FROM demo.orders WHERE o_orderkey = 1", {1082}),
    ("SELECT o_shippriority AS v FROM demo.orders WHERE o_orderkey = 1", {23}),
    ("SELECT ts AS v FROM demo.events WHERE event_id = 1", {1184}),
    ("SELECT amount AS v FROM demo.events WHERE event_id = 1", {701}),
]


@pytest.mark.parametrize("sql,oids", TYPE_CASES, ids=[s[7:40] for s, _ in TYPE_CASES])
def test_type_oid(run, sql, oids):
    cols, rows = run(sql)
    assert len(cols) == 1 and cols[0][1] in oids, (sql, cols, oids)
    assert len(rows) == 1


# ---- RowDescription: type sizes and modifiers (psycopg exposes them) ----------------------

SIZE_CASES = [
    # sql, (type oid, typlen as psycopg shows it (None for varlena), precision, scale)
    ("SELECT CAST(1 AS bigint) AS v", (20, 8, None, None)),
    ("SELECT CAST(1 AS int) AS v", (23, 4, None, None)),
    ("SELECT CAST(1 AS smallint) AS v", (21, 2, None, None)),
    ("SELECT true AS v", (16, 1, None, None)),
    ("SELECT CAST(1.5 AS double precision) AS v", (701, 8, None, None)),
    ("SELECT DATE '2024-01-01' AS v", (1082, 4, None, None)),
    ("SELECT TIMESTAMPTZ '2024-01-01 00:00:00+00' AS v", (1184, 8, None, None)),
    ("SELECT INTERVAL '1 day' AS v", (1186, 16, None, None)),
    ("SELECT CAST('a' AS text) AS v", (25, None, None, None)),
    ("SELECT CAST(1.5 AS numeric(10,2)) AS v", (1700, None, 10, 2)),
    ("SELECT o_totalprice AS v FROM demo.orders WHERE o_orderkey = 1", (1700, None, 15, 2)),
]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize("sql,expected", SIZE_CASES, ids=[s[7:40] for s, _ in SIZE_CASES])
def test_row_description_size_and_typmod(tarn_demo, sql, expected, binary):
    """RowDescription carries typlen and the type modifier; numeric(15,2) has typmod
    (15 << 16 | 2) + 4 = 983046, which clients turn into precision 15, scale 2."""
    with tarn_demo.psycopg() as conn:
        cur = conn.cursor(binary=binary)
        cur.execute(sql)
        d = cur.description[0]
        assert (d.type_code, d.internal_size, d.precision, d.scale) == expected, (sql, d)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_varchar_casts(tarn_demo, binary):
    """`CAST(x AS varchar(n))` is a varchar of length n, cut to n characters, as in
    PostgreSQL 15 (psycopg shows the length as display_size)."""
    with tarn_demo.psycopg() as conn:
        cur = conn.cursor(binary=binary)
        cur.execute("SELECT CAST('abcdef' AS varchar(3)) AS v, CAST('x' AS varchar) AS w, "
                    "r_name::character varying(2) AS n FROM demo.region WHERE r_regionkey = 1")
        got = [(d.name, d.type_code, d.internal_size, d.display_size) for d in cur.description]
        assert got == [("v", 1043, None, 3), ("w", 1043, None, None), ("n", 1043, None, 2)]
        assert cur.fetchall() == [("abc", "x", "AM")]
        with pytest.raises(psycopg.Error) as ei:
            conn.execute("SELECT CAST('x' AS varchar(0))")
        assert "length for type varchar" in str(ei.value)
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_integer_overflow_is_an_error(tarn_demo):
    """Integer arithmetic that overflows fails with 22003, as in PostgreSQL 15, where it
    wrapped around to a wrong number; integer literals are int4, so `2147483647 + 1`
    overflows as an integer."""
    cases = [
        ("SELECT 9223372036854775807 + 1", "bigint out of range"),
        ("SELECT -9223372036854775807 - 2", "bigint out of range"),
        ("SELECT 2147483647 + 1", "integer out of range"),
        ("SELECT 100000 * 100000", "integer out of range"),
        ("SELECT CAST(32767 AS smallint) + CAST(1 AS smallint)", "smallint out of range"),
        ("SELECT o_orderkey * 4611686018427387904 FROM demo.orders", "bigint out of range"),
        ("SELECT max(o_orderkey) + 9223372036854775807 FROM demo.orders", "bigint out of range"),
    ]
    with tarn_demo.psycopg() as conn:
        for sql, message in cases:
            with pytest.raises(psycopg.Error) as ei:
                conn.execute(sql).fetchall()
            assert ei.value.sqlstate == "22003", (sql, str(ei.value))
            assert message in str(ei.value), (sql, str(ei.value))
        # where the result fits, the answer is as before
        assert conn.execute("SELECT CAST(100000 AS bigint) * 100000, 2147483647 + 1::bigint, "
                            "max(o_orderkey) * 2 FROM demo.orders").fetchone() == (
            10000000000, 2147483648, 120000)


# ---- NULLs and values ---------------------------------------------------------------------

NULL_TYPES = ["bigint", "int", "smallint", "text", "varchar", "numeric(10,2)", "date",
              "timestamp", "timestamptz", "interval", "boolean", "double precision", "real",
              "int[]", "text[]", "bytea", "time"]


def test_typed_nulls(run):
    sql = "SELECT " + ", ".join(
        f"CAST(NULL AS {t}) AS c{i}" for i, t in enumerate(NULL_TYPES))
    cols, rows = run(sql)
    assert len(cols) == len(NULL_TYPES) and len(rows) == 1
    not_null = {t: v for t, v in zip(NULL_TYPES, rows[0]) if v is not None}
    assert not_null == {}, f"typed NULLs decoded as values: {not_null}"


def test_nulls_from_table_columns(run):
    cols, rows = run(
        "SELECT amount, CAST(amount AS numeric(10,2)) AS n, "
        "CASE WHEN amount IS NULL THEN NULL ELSE ts END AS t, "
        "CASE WHEN amount IS NULL THEN NULL ELSE ts - ts END AS i "
        "FROM demo.events WHERE amount IS NULL ORDER BY event_id LIMIT 1")
    assert rows == [(None, None, None, None)], (cols, rows)


VALUE_CASES = [
    ("INTERVAL '1 day 02:03:04'", dt.timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ("INTERVAL '90 minutes'", dt.timedelta(minutes=90)),
    ("INTERVAL '-1 day'", dt.timedelta(days=-1)),
    ("INTERVAL '1.5 seconds'", dt.timedelta(seconds=1, microseconds=500000)),
    ("CAST('12345678901234567890.123' AS numeric(38,3))", Decimal("12345678901234567890.123")),
    ("CAST(12345678901234567890.123 AS numeric(38,3))", Decimal("12345678901234567890.123")),
    ("CAST(-0.001 AS numeric(5,3))", Decimal("-0.001")),
    ("0.1 + 0.2", Decimal("0.3")),
    ("CAST(ARRAY[1, NULL, 3] AS int4[])", [1, None, 3]),
    ("CAST(ARRAY[5000000000, 2] AS int8[])", [5000000000, 2]),
    ("ARRAY['a b', NULL, 'c\"d']", ["a b", None, 'c"d']),
    ("CAST(ARRAY[] AS int4[])", []),
    ("TIMESTAMPTZ '2024-01-02 03:04:05.123456+02'",
     dt.datetime(2024, 1, 2, 1, 4, 5, 123456, tzinfo=UTC)),
    ("TIMESTAMP '2024-01-02 03:04:05.5'", dt.datetime(2024, 1, 2, 3, 4, 5, 500000)),
    ("DATE '2024-02-29'", dt.date(2024, 2, 29)),
    ("TIME '01:02:03.25'", dt.time(1, 2, 3, 250000)),
    ("false", False),
    ("CAST('\\x00ff' AS bytea)", b"\x00\xff"),
    ("CAST(1e100 AS double precision)", 1e100),
    ("'héllo ☃'", "héllo ☃"),
]


@pytest.mark.parametrize("expr,expected", VALUE_CASES, ids=[e[:40] for e, _ in VALUE_CASES])
def test_value(run, expr, expected):
    cols, rows = run(f"SELECT {expr} AS v")
    assert rows == [(expected,)], (expr, cols, rows)
    if isinstance(expected, dt.datetime) and expected.tzinfo is not None:
        assert rows[0][0].tzinfo is not None and rows[0][0].utcoffset() == dt.timedelta(0)


def test_demo_values(run):
    cols, rows = run(
        "SELECT o_orderkey, o_totalprice, o_orderdate, o_orderstatus FROM demo.orders "
        "WHERE o_orderkey IN (1, 2) ORDER BY o_orderkey")
    assert [c[0] for c in cols] == ["o_orderkey", "o_totalprice", "o_orderdate",
                                    "o_orderstatus"]
    assert rows[0] == (1, Decimal("172799.49"), dt.date(1996, 1, 2), "O")
    assert len(rows) == 2 and isinstance(rows[1][1], Decimal)
    cols, rows = run("SELECT ts FROM demo.events WHERE event_id = 1")
    ts = rows[0][0]
    assert isinstance(ts, dt.datetime) and ts.utcoffset() == dt.timedelta(0)
    assert ts.date() == dt.date(2026, 1, 1)


# ---- what clients read from pg_catalog ----------------------------------------------------

def test_pg_attribute_type_and_typmod(tarn_demo):
    """Every client's column metadata: atttypid is an oid, atttypmod carries numeric's
    precision and scale, format_type() renders them."""
    with tarn_demo.psycopg() as conn:
        cur = conn.execute(
            "SELECT a.atttypid, a.atttypmod, pg_catalog.format_type(a.atttypid, a.atttypmod) "
            "FROM pg_catalog.pg_attribute a "
            "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'demo' AND c.relname = 'orders' AND a.attnum > 0 "
            "ORDER BY a.attnum")
        rows = [(int(oid), typmod, name) for oid, typmod, name in cur.fetchall()]
        assert rows[3] == (1700, (15 << 16 | 2) + 4, "numeric(15,2)"), rows[3]
        assert rows[0] == (20, -1, "bigint") and rows[4] == (1082, -1, "date"), rows
        assert cur.description[0].type_code == 26, cur.description[0]  # oid, not regtype


def test_pg_roles_has_current_user(tarn_demo):
    with tarn_demo.psycopg() as conn:
        rows = conn.execute(
            "SELECT rolname, rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = current_user"
        ).fetchall()
        assert rows == [("tarn", True)], rows


def test_pg_namespace(tarn_demo):
    with tarn_demo.psycopg() as conn:
        names = {r[0] for r in conn.execute(
            "SELECT nspname FROM pg_catalog.pg_namespace").fetchall()}
        assert {"pg_catalog", "information_schema", "public", "demo", "system"} <= names, names


# ---- transactions -------------------------------------------------------------------------

def _table(conn, cols="a INT"):
    name = f"t_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE TABLE {name} ({cols})")
    return name


def test_begin_commit_rollback_tags(tarn):
    with tarn.psycopg() as conn:
        t = _table(conn)
        TS = psycopg.pq.TransactionStatus
        assert conn.execute("BEGIN").statusmessage == "BEGIN"
        assert conn.info.transaction_status == TS.INTRANS
        assert conn.execute(f"INSERT INTO {t} VALUES (1)").statusmessage == "INSERT 0 1"
        assert conn.execute("COMMIT").statusmessage == "COMMIT"
        assert conn.info.transaction_status == TS.IDLE
        assert conn.execute("BEGIN").statusmessage == "BEGIN"
        assert conn.execute("ROLLBACK").statusmessage == "ROLLBACK"
        assert conn.info.transaction_status == TS.IDLE
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (1,)


def test_start_transaction_tag(tarn_demo):
    with tarn_demo.psycopg() as conn:
        TS = psycopg.pq.TransactionStatus
        assert conn.execute("START TRANSACTION").statusmessage == "START TRANSACTION"
        assert conn.info.transaction_status == TS.INTRANS
        assert conn.execute("COMMIT").statusmessage == "COMMIT"
        assert conn.execute("START TRANSACTION READ ONLY").statusmessage == "START TRANSACTION"
        assert conn.execute("ROLLBACK").statusmessage == "ROLLBACK"


def test_rollback_undoes_insert(tarn):
    """PostgreSQL: rows inserted in a transaction block are gone after ROLLBACK."""
    with tarn.psycopg() as conn:
        t = _table(conn)
        conn.execute(f"INSERT INTO {t} VALUES (1)")
        conn.execute("BEGIN")
        conn.execute(f"INSERT INTO {t} VALUES (2), (3)")
        conn.execute("ROLLBACK")
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (1,)
    # and psycopg's own transaction handling (autocommit off) does the same
    with tarn.psycopg(autocommit=False) as conn:
        conn.execute(f"INSERT INTO {t} VALUES (4)")
        conn.rollback()
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (1,)
        conn.execute(f"INSERT INTO {t} VALUES (5)")
        conn.commit()
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (2,)


def test_held_inserts_are_the_blocks_own_until_commit(tarn):
    """As in PostgreSQL 15: a block reads its own inserts (also inserting from them), another
    connection sees them only after COMMIT, and a connection that ends inside a block leaves
    nothing."""
    with tarn.psycopg() as a, tarn.psycopg() as b:
        t = _table(a, "a INT, b TEXT")
        a.execute("BEGIN")
        a.execute(f"INSERT INTO {t} VALUES (1, 'x'), (2, 'y')")
        a.execute(f"INSERT INTO {t} SELECT a + 10, b FROM {t}")
        assert a.execute(f"SELECT count(*), sum(a) FROM {t}").fetchone() == (4, 26)
        assert a.execute(f"SELECT s.b FROM {t} s JOIN {t} u ON s.a = u.a + 10 "
                         "ORDER BY 1").fetchall() == [("x",), ("y",)]
        assert b.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
        assert a.execute("COMMIT").statusmessage == "COMMIT"
        assert b.execute(f"SELECT a, b FROM {t} ORDER BY a").fetchall() == [
            (1, "x"), (2, "y"), (11, "x"), (12, "y")]
    c = tarn.psycopg()
    c.execute("BEGIN")
    c.execute(f"INSERT INTO {t} VALUES (99, 'gone')")
    c.close()  # not psycopg's `with`, which commits
    with tarn.psycopg() as d:
        assert d.execute(f"SELECT count(*) FROM {t}").fetchone() == (4,)


def test_held_inserts_edge_cases(tarn):
    """Inserts whose batches differ (a NULL in one), an insert of no rows, a NOT NULL column
    (23502 at the INSERT, as in PostgreSQL 15), and a prepared query run before, inside and
    after the block, which counts the block's rows once and only while they are there."""
    with tarn.psycopg() as conn:
        t = _table(conn, "a INT NOT NULL, b TEXT")
        count = f"SELECT count(*) FROM {t}"
        assert conn.execute(count, prepare=True).fetchone() == (0,)
        conn.execute("BEGIN")
        conn.execute(f"INSERT INTO {t} VALUES (1, 'x')")
        conn.execute(f"INSERT INTO {t} VALUES (2, NULL)")
        assert conn.execute(f"INSERT INTO {t} SELECT a, b FROM {t} WHERE false").rowcount == 0
        assert conn.execute(count, prepare=True).fetchone() == (2,)
        conn.execute("SAVEPOINT s")
        with pytest.raises(psycopg.Error) as ei:
            conn.execute(f"INSERT INTO {t} VALUES (NULL, 'n')")
        assert ei.value.sqlstate == "23502", str(ei.value)
        conn.execute("ROLLBACK TO SAVEPOINT s")
        conn.execute("COMMIT")
        assert conn.execute(count, prepare=True).fetchone() == (2,)
        assert conn.execute(f"SELECT a, b FROM {t} ORDER BY a").fetchall() == [
            (1, "x"), (2, None)]
        conn.execute("BEGIN")
        conn.execute(f"INSERT INTO {t} VALUES (3, 'z')")
        assert conn.execute(count, prepare=True).fetchone() == (3,)
        conn.execute("ROLLBACK")
        assert conn.execute(count, prepare=True).fetchone() == (2,)
        # and without a block, as before
        with pytest.raises(psycopg.Error) as ei:
            conn.execute(f"INSERT INTO {t} VALUES (NULL, 'n')")
        assert ei.value.sqlstate == "23502", str(ei.value)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_literal_types_through_derived_tables_and_unions(tarn_demo, binary):
    """`integer` literals keep their type through a WITH query, a union and unnest, so the
    RowDescription describes the rows sent (binary clients read 4 bytes), as in PostgreSQL 15;
    a union with a bigint is bigint."""
    with tarn_demo.psycopg() as conn:
        cur = conn.cursor(binary=binary)
        for sql, oid, rows in [
            ("WITH c AS (SELECT 1 AS n) SELECT n FROM c", 23, [(1,)]),
            ("SELECT n FROM (SELECT 1 AS n) AS d", 23, [(1,)]),
            ("SELECT a FROM (SELECT 1 AS a UNION ALL SELECT 2) AS u ORDER BY a", 23,
             [(1,), (2,)]),
            ("SELECT a FROM (SELECT 1 AS a UNION ALL SELECT 3000000000) AS u ORDER BY a", 20,
             [(1,), (3000000000,)]),
            ("SELECT unnest(ARRAY[1, 2]) AS u", 23, [(1,), (2,)]),
            ("SELECT r_regionkey % 2 AS k, count(*) AS n FROM demo.region "
             "GROUP BY ROLLUP (r_regionkey % 2) ORDER BY 1 NULLS LAST", 20,
             [(0, 3), (1, 2), (None, 5)]),
        ]:
            cur.execute(sql)
            assert cur.description[0].type_code == oid, (sql, cur.description)
            assert cur.fetchall() == rows, sql


def test_start_transaction_read_only(tarn):
    with tarn.psycopg() as conn:
        t = _table(conn)
        conn.execute("START TRANSACTION READ ONLY")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert conn.execute("SHOW transaction_read_only").fetchone() == ("on",)
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
        with pytest.raises(psycopg.Error) as ei:
            conn.execute(f"INSERT INTO {t} VALUES (1)")
        assert ei.value.sqlstate == "25006", str(ei.value)  # read_only_sql_transaction
        conn.execute("ROLLBACK")
        assert conn.execute("SHOW transaction_read_only").fetchone() == ("off",)
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)


def test_isolation_level_in_begin(tarn_demo):
    with tarn_demo.psycopg() as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        assert conn.execute("SHOW transaction_isolation").fetchone() == ("repeatable read",)
        conn.execute("COMMIT")
        assert conn.execute("SHOW transaction_isolation").fetchone() == ("read committed",)


def test_error_aborts_transaction_with_25P02(tarn_demo):
    with tarn_demo.psycopg() as conn:
        conn.execute("BEGIN")
        with pytest.raises(psycopg.Error) as ei:
            conn.execute("SELECT * FROM no_such_table_abc")
        assert ei.value.sqlstate == "42P01"
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction) as ei:
            conn.execute("SELECT 1")
        assert ei.value.sqlstate == "25P02", str(ei.value)
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT 1 AS a").fetchone() == (1,)


def test_savepoints(tarn_demo):
    """psycopg's nested `conn.transaction()` and SQLAlchemy's begin_nested() use savepoints."""
    with tarn_demo.psycopg() as conn:
        conn.execute("BEGIN")
        assert conn.execute("SAVEPOINT s1").statusmessage == "SAVEPOINT"
        with pytest.raises(psycopg.Error):
            conn.execute("SELECT * FROM no_such_table_abc")
        assert conn.execute("ROLLBACK TO SAVEPOINT s1").statusmessage == "ROLLBACK"
        # still inside the outer transaction, and usable again
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert conn.execute("SELECT count(*) FROM demo.region").fetchone() == (5,)
        assert conn.execute("RELEASE SAVEPOINT s1").statusmessage == "RELEASE"
        assert conn.execute("COMMIT").statusmessage == "COMMIT"
    with tarn_demo.psycopg(autocommit=False) as conn:
        with conn.transaction():
            with pytest.raises(psycopg.errors.UndefinedTable):
                with conn.transaction():
                    conn.execute("SELECT * FROM no_such_table_abc")
            assert conn.execute("SELECT count(*) FROM demo.nation").fetchone() == (25,)


def test_transaction_statement_errors_and_warnings(tarn):
    """What Postgres answers around blocks: savepoints need a block (25P01), unknown ones are
    3B001, BEGIN inside a block and COMMIT outside one warn; a rollback undoes the block's
    inserts, and warns over a COPY FROM, which tarn commits when it runs."""
    TS = psycopg.pq.TransactionStatus
    with tarn.psycopg() as conn:
        notices = []
        conn.add_notice_handler(lambda d: notices.append((d.severity, d.sqlstate, d.message_primary)))
        t = _table(conn)
        for sql in ("SAVEPOINT a", "RELEASE SAVEPOINT a", "ROLLBACK TO SAVEPOINT a"):
            with pytest.raises(psycopg.errors.NoActiveSqlTransaction):
                conn.execute(sql)
        assert conn.execute("COMMIT").statusmessage == "COMMIT"
        assert notices.pop() == ("WARNING", "25P01", "there is no transaction in progress")
        conn.execute("SET TRANSACTION READ ONLY")
        assert notices.pop()[1] == "25P01"
        assert _show(conn, "transaction_read_only") == "off"

        conn.execute("BEGIN")
        assert conn.execute("BEGIN").statusmessage == "BEGIN"
        assert notices.pop() == ("WARNING", "25001", "there is already a transaction in progress")
        with pytest.raises(psycopg.errors.InvalidSavepointSpecification) as ei:
            conn.execute("RELEASE SAVEPOINT nope")
        assert 'savepoint "nope" does not exist' in str(ei.value)
        assert conn.info.transaction_status == TS.INERROR
        with pytest.raises(psycopg.errors.InvalidSavepointSpecification):
            conn.execute("ROLLBACK TO nope")  # an aborted block stays aborted
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SAVEPOINT b")
        assert conn.execute("ROLLBACK").statusmessage == "ROLLBACK"
        assert conn.info.transaction_status == TS.IDLE

        # Savepoint names fold like identifiers; a name set twice rolls back to the newest,
        # undoing the inserts since (as in PostgreSQL 15).
        count = f"SELECT count(*) FROM {t}"
        conn.execute("BEGIN")
        conn.execute("SAVEPOINT Sp")
        conn.execute(f"INSERT INTO {t} VALUES (1)")
        conn.execute('SAVEPOINT "sp"')
        conn.execute(f"INSERT INTO {t} VALUES (2)")
        conn.execute("ROLLBACK TO SAVEPOINT sp")
        assert conn.execute(count).fetchone() == (1,)
        conn.execute("ROLLBACK TO SAVEPOINT sp")  # still there
        assert conn.execute(count).fetchone() == (1,)
        conn.execute("RELEASE sp")
        conn.execute("ROLLBACK TO SP")  # the first one
        assert conn.execute(count).fetchone() == (0,)
        conn.execute(f"INSERT INTO {t} VALUES (3)")
        conn.execute("ROLLBACK")
        assert notices == []
        assert conn.execute(count).fetchone() == (0,)

        # COPY FROM is held too; CREATE TABLE commits when it runs, and a rollback over it
        # warns that it stays.
        conn.execute("BEGIN")
        conn.execute("SAVEPOINT c")
        with conn.cursor().copy(f"COPY {t} FROM STDIN") as copy:
            copy.write_row((7,))
        assert conn.execute(count).fetchone() == (1,)
        conn.execute("ROLLBACK TO SAVEPOINT c")
        assert notices == []
        assert conn.execute(count).fetchone() == (0,)
        other = _table(conn)
        conn.execute("ROLLBACK")
        assert notices.pop()[2].startswith("1 statement in this transaction wrote data that "
                                           "stays"), notices
        assert conn.execute(f"SELECT count(*) FROM {other}").fetchone() == (0,)
        conn.execute(f"INSERT INTO {t} VALUES (7)")

        # One simple query with the whole block, and COMMIT AND CHAIN keeping the block open.
        conn.execute("BEGIN READ ONLY; SAVEPOINT x; ROLLBACK TO x; COMMIT AND CHAIN")
        assert conn.info.transaction_status == TS.INTRANS
        assert _show(conn, "transaction_read_only") == "on"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as ei:
            conn.execute(f"INSERT INTO {t} VALUES (3)")
        assert str(ei.value).startswith("cannot execute INSERT in a read-only transaction")
        conn.execute("ROLLBACK")
        assert _show(conn, "transaction_read_only") == "off"
        conn.execute(f"INSERT INTO {t} VALUES (3)")
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (2,)


def test_scalar_subqueries_in_the_select_list(tarn_demo):
    """A correlated subquery in the select list is computed per row (it once came back NULL),
    one of several rows is 21000, and a parameter inside one is bound, not dropped."""
    with tarn_demo.psycopg() as conn:
        rows = conn.execute(
            "SELECT n.n_name, (SELECT count(*) FROM demo.customer c "
            "WHERE c.c_nationkey = n.n_nationkey) AS customers "
            "FROM demo.nation n ORDER BY n.n_nationkey LIMIT 3").fetchall()
        expected = conn.execute(
            "SELECT n.n_name, count(c.c_custkey) FROM demo.nation n LEFT JOIN demo.customer c "
            "ON c.c_nationkey = n.n_nationkey GROUP BY n.n_nationkey, n.n_name "
            "ORDER BY n.n_nationkey LIMIT 3").fetchall()
        assert rows == expected and all(count > 0 for _, count in rows), rows
        with pytest.raises(psycopg.errors.CardinalityViolation):
            conn.execute("SELECT (SELECT n_name FROM demo.nation) AS one")
        for prepare in (False, True):
            assert conn.execute(
                "SELECT (SELECT n_name FROM demo.nation WHERE n_nationkey = %s) AS x",
                (1,), prepare=prepare).fetchone() == ("ARGENTINA",)


def test_catalog_functions_drivers_call(tarn_demo):
    """psycopg's type lookup (to_regtype), SQLAlchemy's schema filter (LIKE … ESCAPE with the
    pattern bound as a parameter) and column reflection (json_build_object), pg_size_pretty."""
    with tarn_demo.psycopg() as conn:
        assert conn.execute(
            "SELECT to_regtype('integer'), to_regtype('pg_catalog.int8'), "
            "to_regtype('character varying(5)'), to_regtype('text[]'), to_regtype('hstore')"
        ).fetchone() == (23, 20, 1043, 1009, None)
        schemas = [r[0] for r in conn.execute(
            "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname NOT LIKE %s ESCAPE '/' "
            "ORDER BY nspname", ("pg/_%",))]
        assert "demo" in schemas and "pg_catalog" not in schemas, schemas
        assert conn.execute("SELECT 'a_b' LIKE 'a!_b' ESCAPE '!', 'axb' LIKE 'a!_b' ESCAPE '!'"
                            ).fetchone() == (True, False)
        # a json value, which psycopg reads into a dict; its text as PostgreSQL 15 writes it
        assert conn.execute(
            "SELECT json_build_object('name', n_name, 'key', n_nationkey, 'none', NULL) "
            "FROM demo.nation WHERE n_nationkey = 1").fetchone() == (
            {"key": 1, "name": "ARGENTINA", "none": None},)
        assert conn.execute(
            "SELECT CAST(json_build_object('name', n_name, 'key', n_nationkey, 'none', NULL, "
            "'inner', json_build_object('ok', true)) AS text) "
            "FROM demo.nation WHERE n_nationkey = 1").fetchone() == (
            '{"name" : "ARGENTINA", "key" : 1, "none" : null, "inner" : {"ok" : true}}',)
        assert conn.execute(
            "SELECT pg_size_pretty(CAST(10240 AS bigint)), pg_size_pretty(CAST(1572864 AS bigint))"
        ).fetchone() == ("10 kB", "1536 kB")
        assert conn.execute(
            "SELECT pg_type_is_visible(23), pg_function_is_visible(1)").fetchone() == (True, True)


def test_json_agg_and_json_casts(tarn_demo):
    """json_agg with ORDER BY and FILTER, and `::json`, as PostgreSQL 15 answers them
    (Metabase's routine sync): type json (114), Postgres's layout, NULL over no rows, and
    22P02 for text that is not JSON."""
    with tarn_demo.psycopg() as conn:
        cur = conn.execute(
            "SELECT json_agg(json_build_object('k', r_regionkey, 'n', r_name) "
            "ORDER BY r_regionkey DESC) FILTER (WHERE r_regionkey < 2), "
            "CAST(json_agg(r_regionkey ORDER BY r_regionkey) AS text), '[ 1,2]'::json "
            "FROM demo.region")
        assert [d.type_code for d in cur.description] == [114, 25, 114]
        assert cur.fetchone() == ([{"k": 1, "n": "AMERICA"}, {"k": 0, "n": "AFRICA"}],
                                  "[0, 1, 2, 3, 4]", [1, 2])
        assert conn.execute("SELECT json_agg(r_name) IS NULL, "
                            "CAST(COALESCE(json_agg(r_name), '[]'::json) AS text) "
                            "FROM demo.region WHERE r_regionkey > 10").fetchone() == (True, "[]")
        with pytest.raises(psycopg.Error) as ei:
            conn.execute("SELECT 'not json'::json")
        assert ei.value.sqlstate == "22P02", str(ei.value)
        assert "invalid input syntax for type json" in str(ei.value)


def test_any_of_a_list_parameter(tarn_demo):
    """psycopg binds a list of strings without a type (pgcli's `relkind = ANY(%s)`); like
    Postgres, tarn takes it as an array of what it is compared with."""
    with tarn_demo.psycopg() as conn:
        assert conn.execute("SELECT r_name FROM demo.region WHERE r_name = ANY(%s) "
                            "ORDER BY 1", (["ASIA", "EUROPE", "MARS"],)).fetchall() == [
            ("ASIA",), ("EUROPE",)]
        assert conn.execute("SELECT 'r' = ANY(%s), 'x' = ANY(%s)",
                            (["r", "p"], ["r"])).fetchone() == (True, False)
        assert conn.execute("SELECT count(*) FROM demo.region WHERE r_regionkey = ANY(%s)",
                            ([1, 2, 9],)).fetchone() == (2,)
        tables = conn.execute(
            "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relkind = ANY(%s) AND n.nspname = 'demo' "
            "ORDER BY 1", (["r", "p", "f"],)).fetchall()
        assert ("orders",) in tables and ("region",) in tables, tables


def test_current_setting_follows_the_connection(tarn_demo):
    with tarn_demo.psycopg(application_name="report") as conn:
        assert conn.execute("SELECT current_setting('application_name'), "
                            "current_setting('TimeZone'), current_setting('nope', true)"
                            ).fetchone() == ("report", "UTC", None)
        conn.execute("SET application_name = 'bi'")
        conn.execute("SET search_path TO demo, nosuch, public")
        assert conn.execute("SELECT current_setting('application_name'), "
                            "current_setting('search_path'), current_schema(), "
                            "current_schemas(false), current_schemas(true)").fetchone() == (
            "bi", "demo, nosuch, public", "demo", ["demo", "public"],
            ["pg_catalog", "demo", "public"])
        # A transaction's own settings show while it runs, and are gone after it.
        conn.execute("BEGIN READ ONLY")
        assert conn.execute("SELECT current_setting('transaction_read_only')").fetchone() == ("on",)
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT current_setting('transaction_read_only')").fetchone() == ("off",)
        with pytest.raises(psycopg.errors.UndefinedObject) as ei:
            conn.execute("SELECT current_setting('nope')")
        assert 'unrecognized configuration parameter "nope"' in str(ei.value)
    with tarn_demo.psycopg() as other:  # settings never leak between connections
        assert other.execute("SELECT current_setting('application_name'), current_schema()"
                             ).fetchone() == ("", "public")


def test_server_side_cursor(tarn_demo):
    """psycopg named cursors (and SQLAlchemy's stream_results on psycopg2, pandas chunksize)
    are DECLARE ... CURSOR / FETCH / CLOSE."""
    with tarn_demo.psycopg(autocommit=False) as conn:
        with conn.cursor(name="c_orders") as cur:
            cur.itersize = 1000
            cur.execute("SELECT o_orderkey FROM demo.orders ORDER BY o_orderkey")
            first = cur.fetchmany(3)
            assert [r[0] for r in first] == [1, 2, 3]
            rest = cur.fetchall()
            assert len(first) + len(rest) == 15000
        conn.rollback()


def test_server_side_cursor_binary_scroll_and_parameters(tarn_demo):
    """A binary named cursor with a parameter (DECLARE over the extended protocol, FETCH
    described with the cursor's columns), and scroll() as MOVE."""
    with tarn_demo.psycopg() as conn:
        everything = conn.execute(
            "SELECT o_orderkey, o_orderdate, o_totalprice FROM demo.orders "
            "WHERE o_orderkey > 5 ORDER BY o_orderkey").fetchall()
    with tarn_demo.psycopg(autocommit=False) as conn:
        with conn.cursor(name="c_bin", binary=True) as cur:
            cur.execute(
                "SELECT o_orderkey, o_orderdate, o_totalprice FROM demo.orders "
                "WHERE o_orderkey > %s ORDER BY o_orderkey", (5,))
            assert [(d.name, d.type_code) for d in cur.description] == [
                ("o_orderkey", 20), ("o_orderdate", 1082), ("o_totalprice", 1700)]
            assert cur.fetchmany(2) == everything[:2]
            cur.scroll(10)
            assert cur.fetchone() == everything[12]
            assert cur.fetchall() == everything[13:]
        conn.rollback()


def test_psycopg2_named_cursor(tarn_demo):
    """psycopg2's named cursors (SQLAlchemy's stream_results, pandas' chunksize)."""
    import psycopg2

    conn = psycopg2.connect(tarn_demo.dsn)
    try:
        cur = conn.cursor(name="pg2_nation")
        cur.itersize = 7
        cur.execute("SELECT n_nationkey, n_name FROM demo.nation ORDER BY n_nationkey")
        rows = list(cur)
        assert [r[0] for r in rows] == list(range(25))
        assert rows[0][1] == "ALGERIA"
        assert cur.description[0][:2] == ("n_nationkey", 20)
        cur.close()
        conn.rollback()
    finally:
        conn.close()


def test_cursor_statements_and_their_errors(tarn_demo):
    """DECLARE / FETCH / MOVE / CLOSE as in PostgreSQL, for a forward-only cursor."""
    import psycopg

    with tarn_demo.psycopg() as conn:
        with pytest.raises(psycopg.errors.NoActiveSqlTransaction) as e:  # 25P01
            conn.execute("DECLARE c CURSOR FOR SELECT 1")
        assert e.value.sqlstate == "25P01"
        for sql in ("FETCH 1 FROM nope", "CLOSE nope", "MOVE 1 FROM nope"):
            with pytest.raises(psycopg.errors.InvalidCursorName):  # 34000
                conn.execute(sql)
        cur = conn.execute(
            "DECLARE r CURSOR WITH HOLD FOR SELECT r_regionkey FROM demo.region "
            "ORDER BY r_regionkey")
        assert cur.statusmessage == "DECLARE CURSOR"
        with pytest.raises(psycopg.errors.DuplicateCursor):  # 42P03
            conn.execute("DECLARE r CURSOR WITH HOLD FOR SELECT 1")
        cur = conn.execute("FETCH 2 FROM r")
        assert (cur.statusmessage, cur.fetchall()) == ("FETCH 2", [(0,), (1,)])
        assert conn.execute("MOVE 1 IN r").statusmessage == "MOVE 1"
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):  # 55000
            conn.execute("FETCH PRIOR FROM r")
        cur = conn.execute("FETCH ALL FROM r")
        assert (cur.statusmessage, cur.fetchall()) == ("FETCH 2", [(3,), (4,)])
        cur = conn.execute("FETCH NEXT FROM r")
        assert (cur.statusmessage, cur.fetchall()) == ("FETCH 0", [])
        assert conn.execute("CLOSE r").statusmessage == "CLOSE CURSOR"
        with pytest.raises(psycopg.errors.InvalidCursorName):
            conn.execute("FETCH 1 FROM r")
        # a cursor without HOLD closes with its transaction
        conn.execute("BEGIN")
        conn.execute("DECLARE t CURSOR FOR SELECT 1 AS one")
        assert conn.execute("FETCH 1 FROM t").fetchall() == [(1,)]
        conn.execute("COMMIT")
        with pytest.raises(psycopg.errors.InvalidCursorName):
            conn.execute("FETCH 1 FROM t")
        assert conn.execute("SELECT 1").fetchone() == (1,)
        # a WITH HOLD cursor of a rolled-back transaction closes; DISCARD ALL closes the rest
        conn.execute("BEGIN")
        conn.execute("DECLARE h CURSOR WITH HOLD FOR SELECT 1 AS one")
        conn.execute("ROLLBACK")
        with pytest.raises(psycopg.errors.InvalidCursorName):
            conn.execute("FETCH 1 FROM h")
        conn.execute("BEGIN")
        conn.execute("DECLARE h CURSOR WITH HOLD FOR SELECT 1 AS one")
        conn.execute("COMMIT")
        assert conn.execute("FETCH 1 FROM h").fetchall() == [(1,)]
        conn.execute("DISCARD ALL")
        with pytest.raises(psycopg.errors.InvalidCursorName):
            conn.execute("FETCH 1 FROM h")


def test_psql_fetch_count(tarn_demo, tmp_path):
    """psql with FETCH_COUNT reads a result through a cursor."""
    out = subprocess.run(
        ["psql", "-X", "-A", "-t", "-h", tarn_demo.pg_host, "-p", str(tarn_demo.pg_port),
         "-U", "tarn", "-d", "tarn", "-v", "ON_ERROR_STOP=1", "-v", "FETCH_COUNT=3",
         "-c", "SELECT n_nationkey FROM demo.nation ORDER BY 1"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(k) for k in range(25)]


# ---- SET / SHOW / RESET -------------------------------------------------------------------

def _show(conn, name):
    return conn.execute(f"SHOW {name}").fetchone()[0]


def test_show_command_tag(tarn_demo):
    """PostgreSQL answers SHOW (and SHOW ALL) with the command tag SHOW, not SELECT n."""
    with tarn_demo.psycopg() as conn:
        for stmt in ("SHOW application_name", "SHOW TRANSACTION ISOLATION LEVEL", "SHOW ALL"):
            cur = conn.execute(stmt)
            assert cur.statusmessage == "SHOW", (stmt, cur.statusmessage)


def test_set_show_reset_application_name(tarn_demo):
    with tarn_demo.psycopg() as conn:
        assert conn.execute("SET application_name = 'x'").statusmessage == "SET"
        assert _show(conn, "application_name") == "x"
        assert conn.info.parameter_status("application_name") == "x"
        assert conn.execute("RESET application_name").statusmessage == "RESET"
        assert _show(conn, "application_name") == ""


def test_show_all(tarn_demo):
    with tarn_demo.psycopg() as conn:
        cur = conn.execute("SHOW ALL")
        assert [d.name for d in cur.description] == ["name", "setting", "description"]
        settings = {r[0]: r[1] for r in cur.fetchall()}
        assert settings["server_encoding"] == "UTF8"
        assert settings["standard_conforming_strings"] == "on"
        assert settings["integer_datetimes"] == "on"


def test_session_characteristics_read_only(tarn):
    with tarn.psycopg() as conn:
        t = _table(conn)
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        assert _show(conn, "default_transaction_read_only") == "on"
        assert _show(conn, "transaction_read_only") == "on"
        with pytest.raises(psycopg.Error) as ei:
            conn.execute(f"INSERT INTO {t} VALUES (1)")
        assert ei.value.sqlstate == "25006", str(ei.value)
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        conn.execute(f"INSERT INTO {t} VALUES (1)")
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (1,)


def test_show_settings(tarn_demo):
    with tarn_demo.psycopg() as conn:
        assert _show(conn, "TRANSACTION ISOLATION LEVEL") == "read committed"
        conn.execute("SET extra_float_digits = 3")
        assert _show(conn, "extra_float_digits") == "3"
        conn.execute("SET statement_timeout = '5s'")
        assert _show(conn, "statement_timeout") == "5s"
        conn.execute("SET statement_timeout = 500")
        assert _show(conn, "statement_timeout") == "500ms"
        conn.execute("SET statement_timeout TO DEFAULT")
        assert _show(conn, "statement_timeout") == "0"
        assert _show(conn, "standard_conforming_strings") == "on"
        assert _show(conn, "client_encoding") == "UTF8"
        assert _show(conn, "DateStyle") == "ISO, MDY"
        with pytest.raises(psycopg.Error) as ei:
            conn.execute("SET no_such_parameter_xyz = 1")
        assert ei.value.sqlstate == "42704"


# ---- session functions --------------------------------------------------------------------

def test_session_functions(tarn_demo):
    with tarn_demo.psycopg() as conn:
        cur = conn.execute("SELECT current_user, current_database(), current_schema(), version()")
        user, db, schema, version = cur.fetchone()
        assert (user, db, schema) == ("tarn", "tarn", "public")
        assert version.startswith("PostgreSQL "), version
        assert conn.execute("SELECT session_user").fetchone() == ("tarn",)
        assert conn.execute("SELECT user").fetchone() == ("tarn",)


def test_current_setting_and_set_config(tarn_demo):
    with tarn_demo.psycopg() as conn:
        num = conn.execute("SELECT current_setting('server_version_num')").fetchone()[0]
        assert num == _show(conn, "server_version_num") and int(num) >= 120000
        got = conn.execute("SELECT set_config('application_name', 'bi', false)").fetchone()
        assert got == ("bi",)
        assert _show(conn, "application_name") == "bi"


def test_current_schemas(tarn_demo):
    with tarn_demo.psycopg() as conn:
        assert conn.execute("SELECT current_schemas(true)").fetchone() == (
            ["pg_catalog", "public"],)
        assert conn.execute("SELECT current_schemas(false)").fetchone() == (["public"],)


def test_search_path(tarn_demo):
    with tarn_demo.psycopg() as conn:
        conn.execute("SET search_path TO demo, public")
        assert _show(conn, "search_path") == "demo, public"
        assert conn.execute("SELECT current_schema()").fetchone() == ("demo",)
        assert conn.execute("SELECT count(*) FROM region").fetchone() == (5,)


def test_startup_options(tarn_demo):
    """Superset passes the chosen schema as `options=-csearch_path=...`; JDBC and others set
    statement_timeout and application_name the same way."""
    with tarn_demo.psycopg(options="-c search_path=demo -c statement_timeout=5s",
                           application_name="superset") as conn:
        assert _show(conn, "search_path") == "demo"
        assert _show(conn, "statement_timeout") == "5s"
        assert _show(conn, "application_name") == "superset"
        assert conn.execute("SELECT count(*) FROM nation").fetchone() == (25,)


# ---- catalog views and functions clients read ----------------------------------------------

def test_set_config_reports_and_refuses_like_set(tarn_demo):
    """set_config() is SET: the client hears the new value (ParameterStatus), and a bad
    setting is refused with SET's SQLSTATE."""
    with tarn_demo.psycopg() as conn:
        assert conn.execute(
            "SELECT pg_catalog.set_config('application_name', 'dash', false)").fetchone() == (
            "dash",)
        assert conn.info.parameter_status("application_name") == "dash"
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("SELECT set_config('no_such_setting', 'x', false)")


def test_pg_settings_lists_the_connection_settings(tarn_demo):
    """pgjdbc reads max_index_keys here before getImportedKeys; tools list pg_settings."""
    with tarn_demo.psycopg(application_name="report") as conn:
        rows = dict(conn.execute(
            "SELECT name, setting FROM pg_catalog.pg_settings "
            "WHERE name IN ('max_index_keys', 'application_name', 'DateStyle')").fetchall())
        assert rows == {"max_index_keys": "32", "application_name": "report",
                        "DateStyle": "ISO, MDY"}, rows
        conn.execute("SET application_name = 'other'")
        assert conn.execute("SELECT setting, vartype, context FROM pg_catalog.pg_settings "
                            "WHERE name = 'application_name'").fetchone() == (
            "other", "string", "user")
        assert conn.execute("SELECT vartype, context FROM pg_catalog.pg_settings "
                            "WHERE name = 'max_index_keys'").fetchone() == ("integer", "internal")


def test_information_schema_columns_has_postgres_types(tarn_demo):
    """Over the Postgres wire information_schema.columns is Postgres's view: type names,
    udt_name, numeric precision and scale, nullability (Metabase's field sync, dbt)."""
    with tarn_demo.psycopg() as conn:
        rows = conn.execute(
            "SELECT column_name, ordinal_position, data_type, udt_schema, udt_name, "
            "numeric_precision, numeric_scale, is_nullable, is_identity "
            "FROM information_schema.columns WHERE table_schema = 'demo' "
            "AND table_name = 'orders' AND column_name IN ('o_orderkey', 'o_totalprice', "
            "'o_orderdate', 'o_comment') ORDER BY ordinal_position").fetchall()
        # PostgreSQL 15, on a table with the demo's column types
        assert rows == [
            ("o_orderkey", 1, "bigint", "pg_catalog", "int8", 64, 0, "NO", "NO"),
            ("o_totalprice", 4, "numeric", "pg_catalog", "numeric", 15, 2, "NO", "NO"),
            ("o_orderdate", 5, "date", "pg_catalog", "date", None, None, "NO", "NO"),
            ("o_comment", 9, "text", "pg_catalog", "text", None, None, "NO", "NO"),
        ], rows
        nullable = conn.execute(
            "SELECT is_nullable FROM information_schema.columns WHERE table_schema = 'demo' "
            "AND table_name = 'events' AND column_name = 'amount'").fetchone()
        assert nullable == ("YES",)
        # no constraints: tarn tables have no keys
        assert conn.execute("SELECT count(*) FROM information_schema.table_constraints "
                            "tc JOIN information_schema.key_column_usage kc "
                            "ON tc.constraint_name = kc.constraint_name").fetchone() == (0,)


def test_format(tarn_demo):
    with tarn_demo.psycopg() as conn:
        assert conn.execute(
            "SELECT format('%I.%I', 'demo', 'Orders'), format('%s=%L', 'k', NULL), "
            "format('%L', 'it''s'), format('100%%')").fetchone() == (
            'demo."Orders"', "k=NULL", "'it''s'", "100%")
        # the relation a formatted name names, as Metabase reads column comments
        assert conn.execute(
            "SELECT col_description(format('%I.%I', 'demo', 'orders')::regclass, 1)"
        ).fetchone() == (None,)
        with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
            conn.execute("SELECT format('%s %s', 'only one')")
        assert "too few arguments" in str(e.value)
        # the connection goes on
        assert conn.execute("SELECT format('%s', 1)").fetchone() == ("1",)


def test_function_signatures(tarn_demo):
    """What psql's \\df and pgjdbc's getFunctions read: PostgreSQL 15's answers."""
    with tarn_demo.psycopg() as conn:
        rows = conn.execute(
            "SELECT p.proname, pg_get_function_result(p.oid), pg_get_function_arguments(p.oid), "
            "pg_get_function_identity_arguments(p.oid) FROM pg_catalog.pg_proc p "
            "WHERE p.proname IN ('pg_get_keywords', 'concat') ORDER BY 1").fetchall()
        assert rows == [
            ("concat", "text", 'VARIADIC "any"', 'VARIADIC "any"'),
            ("pg_get_keywords", "SETOF record",
             'OUT word text, OUT catcode "char", OUT barelabel boolean, OUT catdesc text, '
             "OUT baredesc text", ""),
        ], rows
        assert conn.execute("SELECT pg_get_function_result(0)").fetchone() == (None,)


def test_settings_functions_in_one_select(tarn_demo):
    """asyncpg's type introspection probes `jit` this way and carries on when the setting is
    unknown (42704); each item is evaluated in order, as in Postgres."""
    with tarn_demo.psycopg(application_name="before") as conn:
        assert conn.execute(
            "SELECT current_setting('application_name') AS cur, "
            "set_config('application_name', 'after', false) AS new, "
            "current_setting('nope', true) AS missing").fetchone() == ("before", "after", None)
        assert _show(conn, "application_name") == "after"
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("SELECT current_setting('jit') AS cur, "
                         "set_config('jit', 'off', false) AS new")


def test_pool_reset_statements(tarn_demo):
    """What a pool runs when a connection is given back (asyncpg): tarn has no advisory
    locks, cursors or notification channels, so there is nothing to release; a named
    cursor does not exist."""
    with tarn_demo.psycopg() as conn:
        assert conn.execute("SELECT pg_advisory_unlock_all()").fetchone() == (None,)
        assert conn.execute("CLOSE ALL").statusmessage == "CLOSE CURSOR ALL"
        assert conn.execute("UNLISTEN *").statusmessage == "UNLISTEN"
        with pytest.raises(psycopg.errors.InvalidCursorName):
            conn.execute("CLOSE no_such_cursor")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_exponent_literals_and_reset_by_set_config(tarn_demo):
    with tarn_demo.psycopg(application_name="start") as conn:
        # numerics, as in Postgres (DataFusion read 1e3 as a decimal of negative scale)
        assert conn.execute("SELECT 1e3 AS a, 2.5E-4 AS b, 10 * 1e1 AS c").fetchone() == (
            Decimal("1000"), Decimal("0.00025"), Decimal("100"))
        conn.execute("SET application_name = 'changed'")
        # a NULL value resets, as RESET does
        assert conn.execute(
            "SELECT set_config('application_name', NULL, false)").fetchone() == ("start",)
        # a bound value is not supported yet: refused, never taken as the text `$1`
        with pytest.raises(psycopg.errors.UndefinedFunction):
            conn.execute("SELECT set_config('application_name', %s, false)", ("bound",))
        assert _show(conn, "application_name") == "start"
        # repeated names beside two wildcards keep their names, without tarn's mark
        cur = conn.execute("SELECT r.*, n.*, 1 AS x, 2 AS x FROM demo.region r, demo.nation n "
                           "WHERE r.r_regionkey = n.n_regionkey LIMIT 1")
        assert [d.name for d in cur.description][-2:] == ["x", "x"]


def test_describe_of_a_statement_without_rows(tarn_factory, tmp_path):
    """Describe of a prepared INSERT with parameters: ParameterDescription, then NoData, as
    Postgres answers. A RowDescription of no columns made pgjdbc count 0 rows for every
    statement of a batch. (A server of its own: the test creates a table.)"""
    import socket
    import struct

    from conftest import read_pg_message

    def message(kind: bytes, body: bytes) -> bytes:
        return kind + struct.pack("!I", 4 + len(body)) + body

    t = tarn_factory.start(tmp_path / "warehouse")
    s = socket.create_connection((t.pg_host, t.pg_port), timeout=10)
    try:
        params = b"user\0tarn\0database\0tarn\0\0"
        s.sendall(struct.pack("!II", 8 + len(params), 196608) + params)
        while read_pg_message(s)[0] != b"Z":
            pass

        def describe(sql: str) -> list[bytes]:
            s.sendall(message(b"P", b"s1\0" + sql.encode() + b"\0" + struct.pack("!H", 0))
                      + message(b"D", b"Ss1\0") + message(b"S", b""))
            kinds = []
            while True:
                kind, _ = read_pg_message(s)
                if kind == b"Z":
                    break
                kinds.append(kind)
            s.sendall(message(b"C", b"Ss1\0") + message(b"S", b""))
            while read_pg_message(s)[0] != b"Z":
                pass
            return kinds

        s.sendall(message(b"Q", b"CREATE TABLE IF NOT EXISTS described (id BIGINT)\0"))
        while read_pg_message(s)[0] != b"Z":
            pass
        # ParseComplete, ParameterDescription, NoData
        assert describe("INSERT INTO described VALUES ($1)") == [b"1", b"t", b"n"]
        # and a query: ParseComplete, ParameterDescription, RowDescription
        assert describe("SELECT id FROM described WHERE id = $1") == [b"1", b"t", b"T"]
    finally:
        s.close()


@pytest.mark.parametrize("binary", [False, True])
def test_row_description_names_base_tables(tarn_views, binary):
    """RowDescription gives the table OID and column number of a column read straight from a
    table or view (through aliases, joins, groupings and derived tables), 0 for a computed
    one: pgjdbc's getBaseTableName and isNullable read them. Checked against PostgreSQL 15."""
    cases = [
        ("SELECT o_orderkey, o_totalprice + 1, o.o_orderdate AS d, 1 FROM demo.orders o",
         [("orders", 1), None, ("orders", 5), None]),
        ("SELECT * FROM demo.big_orders", [("big_orders", 1), ("big_orders", 2)]),
        ("SELECT a.o_orderkey, b.o_custkey FROM demo.orders a "
         "JOIN demo.orders b ON a.o_orderkey = b.o_orderkey", [("orders", 1), ("orders", 2)]),
        ("SELECT x.k FROM (SELECT o_orderkey AS k FROM demo.orders) x", [("orders", 1)]),
        ("SELECT o_orderstatus, count(*) FROM demo.orders GROUP BY o_orderstatus",
         [("orders", 3), None]),
        ("SELECT relname FROM pg_catalog.pg_class", [None]),
    ]
    with psycopg.connect(host=tarn_views.pg_host, port=tarn_views.pg_port, user="tarn",
                         dbname="tarn", autocommit=True, connect_timeout=10) as conn:
        oids = dict(conn.execute(
            "SELECT relname, CAST(oid AS INT) FROM pg_catalog.pg_class "
            "WHERE relname IN ('orders', 'big_orders')").fetchall())
        assert len(oids) == 2 and all(oids.values()), oids
        for sql, expected in cases:
            cur = conn.cursor(binary=binary)
            cur.execute(sql + " LIMIT 0")
            r = cur.pgresult
            got = [(r.ftable(i), r.ftablecol(i)) for i in range(r.nfields)]
            want = [(oids[t], n) if t else (0, 0) for t, n in
                    ((e or (None, 0)) for e in expected)]
            assert got == want, (sql, got, want)
