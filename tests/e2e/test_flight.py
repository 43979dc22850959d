"""Arrow Flight SQL against tarn, with real clients: ADBC's Flight SQL driver (DB-API) and
pyarrow.flight's raw client for what a driver never sends (foreign tickets, hand-made tokens).

Sections: queries and types; parameters; updates, DDL and executemany; metadata; bulk
ingest; bad input; clients that go away or cancel; authentication; TLS; large results.
"""
from __future__ import annotations

import base64
import datetime as dt
import subprocess
from decimal import Decimal
from pathlib import Path

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_dbapi
import adbc_driver_manager
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as fl
import pytest

from conftest import run_tarn_expect_failure

Status = adbc_driver_manager.AdbcStatusCode
TLS_ROOT_CERTS = adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value
# How long a fresh call may take to answer after a client misbehaved ("promptly").
PROMPT_SECONDS = 10


# ---- helpers ------------------------------------------------------------------------------

def connect(uri: str, **db_kwargs) -> flight_dbapi.Connection:
    """An ADBC DB-API connection; tarn has no transactions, so autocommit."""
    return flight_dbapi.connect(uri, db_kwargs=db_kwargs or None, autocommit=True)


def query(conn, sql: str, params=None) -> list[tuple]:
    """Rows of one statement, on a cursor of its own."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def arrow(conn, sql: str, params=None) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetch_arrow_table()


def update(conn, sql: str) -> int:
    """Runs `sql` as a Flight SQL update (CommandStatementUpdate): the rows it changed."""
    with conn.cursor() as cur:
        cur.adbc_statement.set_sql_query(sql)
        return cur.adbc_statement.execute_update()


def ingest(conn, table: str, data, mode: str, **kw) -> int:
    """adbc_ingest on a fresh cursor (the driver keeps ingest options on a statement)."""
    with conn.cursor() as cur:
        return cur.adbc_ingest(table, data, mode=mode, **kw)


def connect_and_query(uri: str, sql: str = "SELECT 1", **db_kwargs) -> list[tuple]:
    """Connects, runs `sql`, disconnects: for calls expected to fail."""
    with connect(uri, **db_kwargs) as conn:
        return query(conn, sql)


def adbc_error(fn) -> adbc_driver_manager.Error:
    with pytest.raises(adbc_driver_manager.Error) as info:
        fn()
    return info.value


def sqlstate(e: adbc_driver_manager.Error) -> str | None:
    """The SQLSTATE tarn puts in the `x-tarn-sqlstate` response header."""
    value = dict(e.details or []).get(b"x-tarn-sqlstate")
    return value.decode() if value is not None else None


def table_names(conn, db_schema: str) -> list[str]:
    objects = conn.adbc_get_objects(
        depth="tables", catalog_filter="tarn", db_schema_filter=db_schema
    ).read_all().to_pylist()
    return sorted(
        t["table_name"]
        for catalog in objects
        for schema in catalog["catalog_db_schemas"] or []
        for t in schema["db_schema_tables"] or []
    )


# Flight SQL commands for the raw client: protobuf `Any`s written by hand (two string/bytes
# fields each), so no generated code is needed.
def _pb(field: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""
    out = bytearray([field << 3 | 2])
    n = len(payload)
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + payload


def _sql_any(message: str, payload: bytes) -> bytes:
    return _pb(1, f"type.googleapis.com/arrow.flight.protocol.sql.{message}".encode()) + _pb(
        2, payload
    )


def statement(sql: str) -> fl.FlightDescriptor:
    """A CommandStatementQuery descriptor."""
    return fl.FlightDescriptor.for_command(_sql_any("CommandStatementQuery", _pb(1, sql.encode())))


def raw_query(client: fl.FlightClient, sql: str, options=None) -> pa.Table:
    options = options or fl.FlightCallOptions(timeout=PROMPT_SECONDS)
    info = client.get_flight_info(statement(sql), options)
    assert len(info.endpoints) == 1
    return client.do_get(info.endpoints[0].ticket, options).read_all()


def assert_answers_promptly(uri: str) -> None:
    """A fresh raw client and a fresh ADBC connection both get an answer, the raw one within
    PROMPT_SECONDS (a gRPC deadline: FlightTimedOutError otherwise)."""
    client = fl.FlightClient(uri)
    try:
        got = raw_query(client, "SELECT count(*) AS n FROM range(0, 1000)")
        assert got.to_pylist() == [{"n": 1000}]
    finally:
        client.close()
    with connect(uri) as conn:
        assert query(conn, "SELECT 40 + 2 AS x") == [(42,)]


@pytest.fixture
def flight(tarn):
    """An ADBC connection to a fresh tarn."""
    with connect(tarn.flight_uri) as conn:
        yield conn


# ---- 1. queries and types -----------------------------------------------------------------

TYPES_SQL = """
SELECT CAST(7 AS SMALLINT) AS i16, CAST(-5 AS INT) AS i32, CAST(-9000000000 AS BIGINT) AS i64,
       CAST(2.5 AS DOUBLE) AS f64, 'héllo ☃' AS txt, true AS yes, false AS no,
       DATE '2024-02-29' AS d, TIMESTAMP '2024-01-02 03:04:05.123456' AS ts,
       CAST(12.34 AS DECIMAL(10, 2)) AS dec, CAST(NULL AS INT) AS null_int, NULL AS null_any
"""


def test_select_several_types(flight):
    table = arrow(flight, TYPES_SQL)
    assert table.schema == pa.schema([
        pa.field("i16", pa.int16(), nullable=False),
        pa.field("i32", pa.int32(), nullable=False),
        pa.field("i64", pa.int64(), nullable=False),
        pa.field("f64", pa.float64(), nullable=False),
        pa.field("txt", pa.string(), nullable=False),
        pa.field("yes", pa.bool_(), nullable=False),
        pa.field("no", pa.bool_(), nullable=False),
        pa.field("d", pa.date32(), nullable=False),
        pa.field("ts", pa.timestamp("ns"), nullable=False),
        pa.field("dec", pa.decimal128(10, 2), nullable=False),
        pa.field("null_int", pa.int32()),
        pa.field("null_any", pa.null()),
    ])
    expected = (
        7, -5, -9000000000, 2.5, "héllo ☃", True, False, dt.date(2024, 2, 29),
        dt.datetime(2024, 1, 2, 3, 4, 5, 123456), Decimal("12.34"), None, None,
    )
    assert table.to_pylist() == [dict(zip(table.column_names, expected))]
    # the DB-API row path decodes the same values
    assert query(flight, TYPES_SQL) == [expected]


# Columns of every SQL type the stored-table tests use, and the Arrow schema they come back as.
TYPED_COLUMNS = ("(id BIGINT NOT NULL, name VARCHAR, amount DECIMAL(12, 3), "
                 "ts TIMESTAMP, d DATE, f REAL, ok BOOLEAN)")
TYPED_SCHEMA = pa.schema([
    pa.field("id", pa.int64(), nullable=False),
    pa.field("name", pa.string_view()),
    pa.field("amount", pa.decimal128(12, 3)),
    pa.field("ts", pa.timestamp("us")),
    pa.field("d", pa.date32()),
    pa.field("f", pa.float32()),
    pa.field("ok", pa.bool_()),
])


def test_stored_table_round_trips_through_flight(flight):
    """Values written with SQL into a Delta table come back with the table's types."""
    update(flight, f"CREATE TABLE typed {TYPED_COLUMNS}")
    assert update(flight, """INSERT INTO typed VALUES
        (1, 'ada', 1234.5, TIMESTAMP '2024-01-02 03:04:05.000006', DATE '2024-01-02', 0.5, true),
        (2, NULL, NULL, NULL, NULL, NULL, NULL),
        (3, 'ünï', -0.001, TIMESTAMP '1970-01-01 00:00:00', DATE '1999-12-31', -2.25, false)
    """) == 3
    table = arrow(flight, "SELECT * FROM typed ORDER BY id")
    assert table.schema == TYPED_SCHEMA
    assert [tuple(r.values()) for r in table.to_pylist()] == [
        (1, "ada", Decimal("1234.500"), dt.datetime(2024, 1, 2, 3, 4, 5, 6),
         dt.date(2024, 1, 2), 0.5, True),
        (2, None, None, None, None, None, None),
        (3, "ünï", Decimal("-0.001"), dt.datetime(1970, 1, 1), dt.date(1999, 12, 31),
         -2.25, False),
    ]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM demo.orders ORDER BY o_orderkey",
    "SELECT * FROM demo.nation ORDER BY n_nationkey",
    "SELECT count(*) AS n, sum(l_quantity) AS q, sum(l_extendedprice) AS p FROM demo.lineitem",
    # events is partitioned by dt
    "SELECT event_id, user_id, kind, amount, ts, dt FROM demo.events ORDER BY event_id",
], ids=["orders", "nation", "lineitem-sums", "events-partitioned"])
def test_demo_data_matches_the_postgres_wire(tarn_demo, sql):
    """Whole demo tables read over Flight equal what psycopg reads."""
    with connect(tarn_demo.flight_uri) as conn, tarn_demo.psycopg() as pg:
        over_pg = pg.execute(sql).fetchall()
        over_flight = query(conn, sql)
    assert len(over_flight) == len(over_pg) > 0
    assert over_flight == over_pg


def test_partitioned_table_through_adbc(tarn, flight, tmp_path):
    """A partition column is dictionary-encoded inside the engine; the schema GetFlightInfo
    announces must be the one DoGet streams, or ADBC refuses the result."""
    out = tmp_path / "parts"
    update(flight, f"COPY (SELECT * FROM (VALUES (1, 'x', '2026-01-01'), (2, 'y', '2026-01-02'), "
                   f"(3, 'z', '2026-01-02')) AS v(id, name, dt)) TO '{out}/' STORED AS PARQUET "
                   f"PARTITIONED BY (dt)")
    assert sorted(p.name for p in out.iterdir()) == ["dt=2026-01-01", "dt=2026-01-02"]
    update(flight, f"CREATE EXTERNAL TABLE parts STORED AS PARQUET LOCATION '{out}/' "
                   f"PARTITIONED BY (dt)")
    # the non-partition columns alone
    assert query(flight, "SELECT id, name FROM parts ORDER BY id") == [
        (1, "x"), (2, "y"), (3, "z")
    ]
    client = fl.FlightClient(tarn.flight_uri)
    try:
        info = client.get_flight_info(statement("SELECT id, dt FROM parts"))
        streamed = client.do_get(info.endpoints[0].ticket).read_all().schema
    finally:
        client.close()
    assert info.schema == streamed
    assert query(flight, "SELECT id, dt FROM parts ORDER BY id") == [
        (1, "2026-01-01"), (2, "2026-01-02"), (3, "2026-01-02")
    ]


# ---- parameters ---------------------------------------------------------------------------

@pytest.fixture
def params_table(flight):
    update(flight, "CREATE TABLE p (id INT, big BIGINT, name VARCHAR, amount DOUBLE, d DATE, "
                   "ts TIMESTAMP, price DECIMAL(10, 2), ok BOOLEAN)")
    update(flight, """INSERT INTO p VALUES
        (1, 9000000000, 'a', 1.5, DATE '2024-01-01', TIMESTAMP '2024-01-01 10:00:00.5', 1.10, true),
        (2, -1, 'b', NULL, DATE '2024-01-02', TIMESTAMP '2024-01-02 10:00:00', 2.20, false),
        (5, 0, 'e', 5.5, DATE '2024-01-05', TIMESTAMP '2024-01-05 10:00:00', 5.50, NULL)
    """)
    return flight


@pytest.mark.parametrize("sql, params, expected", [
    ("SELECT id, name FROM p WHERE id = $1", (5,), [(5, "e")]),
    ("SELECT id FROM p WHERE big = $1", (9000000000,), [(1,)]),
    ("SELECT id FROM p WHERE name = $1", ("b",), [(2,)]),
    ("SELECT id FROM p WHERE amount > $1 ORDER BY id", (1.0,), [(1,), (5,)]),
    ("SELECT id FROM p WHERE d = $1", (dt.date(2024, 1, 2),), [(2,)]),
    ("SELECT id FROM p WHERE ts = $1", (dt.datetime(2024, 1, 1, 10, 0, 0, 500000),), [(1,)]),
    ("SELECT id FROM p WHERE price = $1", (Decimal("2.20"),), [(2,)]),
    ("SELECT id FROM p WHERE ok = $1", (False,), [(2,)]),
    ("SELECT id FROM p WHERE id >= $1 AND name <> $2 ORDER BY id", (1, "e"), [(1,), (2,)]),
    ("SELECT id FROM p WHERE id IN ($1, $2) ORDER BY id", (5, 1), [(1,), (5,)]),
    ("SELECT id FROM p WHERE id = $1", (None,), []),
], ids=["int", "bigint", "text", "double", "date", "timestamp", "decimal", "bool", "two",
        "in-list", "null"])
def test_parameters_in_where(params_table, sql, params, expected):
    assert query(params_table, sql, params) == expected


def test_prepared_statement_reused_with_new_parameters(params_table):
    """The same cursor and SQL: the driver prepares once and binds each time."""
    with params_table.cursor() as cur:
        for key, name in [(1, "a"), (2, "b"), (5, "e"), (3, None), (1, "a")]:
            cur.execute("SELECT name FROM p WHERE id = $1", (key,))
            assert cur.fetchall() == ([(name,)] if name else [])


def test_parameters_in_select_list(flight):
    """A parameter in the select list: the result schema announced by GetFlightInfo must be
    the schema DoGet streams, or ADBC refuses the result."""
    assert query(flight, "SELECT $1::int + 1 AS a, $2 AS b", (5, "x")) == [(6, "x")]
    update(flight, "CREATE TABLE tags (id INT)")
    update(flight, "INSERT INTO tags VALUES (1), (2)")
    assert query(flight, "SELECT id, $1 AS tag FROM tags ORDER BY id", ("t",)) == [
        (1, "t"), (2, "t")
    ]


# ---- updates, DDL, executemany --------------------------------------------------------------

def test_updates_report_rows_and_ddl_applies(flight):
    """CommandStatementUpdate: DDL and DML run before the call returns, with row counts."""
    assert update(flight, "CREATE TABLE u (id INT, label VARCHAR)") == 0
    assert "u" in table_names(flight, "public")
    assert update(flight, "INSERT INTO u VALUES (1, 'a'), (2, 'b'), (3, NULL)") == 3
    assert update(flight, "INSERT INTO u SELECT id + 10, label FROM u") == 3
    assert query(flight, "SELECT id, label FROM u ORDER BY id") == [
        (1, "a"), (2, "b"), (3, None), (11, "a"), (12, "b"), (13, None)
    ]
    assert update(flight, "CREATE DATABASE lake") == 0
    assert update(flight, "CREATE TABLE lake.copy AS SELECT * FROM u WHERE id < 10") == 3
    assert query(flight, "SELECT count(*) FROM lake.copy") == [(3,)]
    update(flight, "DROP TABLE u")
    assert "u" not in table_names(flight, "public")
    e = adbc_error(lambda: query(flight, "SELECT * FROM u"))
    assert e.status_code == Status.NOT_FOUND and sqlstate(e) == "42P01", e


def test_ddl_through_cursor_execute(flight):
    """DB-API `execute` of DDL: done when execute returns, as with any DB-API driver; the
    next statement on the same cursor sees it."""
    with flight.cursor() as cur:
        cur.execute("CREATE TABLE ddl_t (a INT, b VARCHAR)")
        cur.execute("INSERT INTO ddl_t VALUES (1, 'x'), (2, 'y')")
        cur.execute("SELECT a, b FROM ddl_t ORDER BY a")
        assert cur.fetchall() == [(1, "x"), (2, "y")]
        cur.execute("DROP TABLE ddl_t")
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'ddl_t'")
        assert cur.fetchall() == [(0,)]
    assert "ddl_t" not in table_names(flight, "public")


def test_executemany_inserts_every_row(flight):
    update(flight, "CREATE TABLE many (id BIGINT, label VARCHAR, score DOUBLE)")
    rows = [(i, f"row-{i}", i / 4 if i % 7 else None) for i in range(1000)]
    with flight.cursor() as cur:
        cur.executemany("INSERT INTO many VALUES ($1, $2, $3)", rows)
        rowcount = cur.rowcount
    assert query(flight, "SELECT id, label, score FROM many ORDER BY id") == rows
    assert rowcount == 1000, "executemany reported the wrong number of inserted rows"


def test_executemany_insert_select_reports_rows(flight):
    """The other executemany path (no VALUES list): one statement per bound row."""
    update(flight, "CREATE TABLE ms (id BIGINT, label VARCHAR)")
    with flight.cursor() as cur:
        cur.executemany("INSERT INTO ms SELECT $1, $2", [(1, "a"), (2, "b"), (3, "c")])
        assert cur.rowcount == 3
    assert query(flight, "SELECT id, label FROM ms ORDER BY id") == [(1, "a"), (2, "b"), (3, "c")]


# ---- metadata ------------------------------------------------------------------------------

def test_get_objects_lists_tables_and_columns(flight):
    update(flight, f"CREATE TABLE meta {TYPED_COLUMNS}")
    update(flight, "CREATE DATABASE lake")
    update(flight, "CREATE TABLE lake.other (x INT)")
    objects = flight.adbc_get_objects(depth="all").read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["tarn"]
    schemas = {s["db_schema_name"]: s for s in objects[0]["catalog_db_schemas"]}
    assert {"public", "lake", "information_schema", "system"} <= set(schemas)
    public = {t["table_name"]: t for t in schemas["public"]["db_schema_tables"]}
    assert list(public) == ["meta"]
    assert public["meta"]["table_type"] == "TABLE"
    columns = [(c["column_name"], c["ordinal_position"]) for c in public["meta"]["table_columns"]]
    assert columns == [(f.name, i + 1) for i, f in enumerate(TYPED_SCHEMA)]
    lake = [t["table_name"] for t in schemas["lake"]["db_schema_tables"]]
    assert lake == ["other"]
    system_types = {t["table_type"] for t in schemas["system"]["db_schema_tables"]}
    assert system_types == {"SYSTEM TABLE"}
    # filters
    assert table_names(flight, "lake") == ["other"]
    filtered = flight.adbc_get_objects(
        depth="columns", catalog_filter="tarn", db_schema_filter="public",
        table_name_filter="meta", column_name_filter="am%",
    ).read_all().to_pylist()
    cols = filtered[0]["catalog_db_schemas"][0]["db_schema_tables"][0]["table_columns"]
    assert [c["column_name"] for c in cols] == ["amount"]
    assert flight.adbc_get_objects(
        depth="tables", catalog_filter="elsewhere"
    ).read_all().num_rows == 0


def test_get_table_schema(flight):
    update(flight, f"CREATE TABLE meta {TYPED_COLUMNS}")
    assert flight.adbc_get_table_schema("meta", db_schema_filter="public") == TYPED_SCHEMA
    assert flight.adbc_get_table_schema("meta") == TYPED_SCHEMA
    # the schema a query of the table streams is the same
    assert arrow(flight, "SELECT * FROM meta").schema == TYPED_SCHEMA
    e = adbc_error(lambda: flight.adbc_get_table_schema("nope", db_schema_filter="public"))
    assert e.status_code == Status.NOT_FOUND, e


def test_get_table_types(flight):
    assert sorted(flight.adbc_get_table_types()) == ["SYSTEM TABLE", "TABLE", "VIEW"]


def test_get_info_names_tarn(flight):
    info = flight.adbc_get_info()
    assert info["vendor_name"] == "tarn"
    assert info["vendor_version"]


# ---- bulk ingest ----------------------------------------------------------------------------

def _people(ids, names) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64()), "name": pa.array(names, pa.string())})


def test_ingest_modes(flight):
    t1 = _people([1, 2, 3], ["a", "b", None])

    def rows():
        return query(flight, "SELECT id, name FROM ing ORDER BY id, name NULLS LAST")

    assert ingest(flight, "ing", t1, "create") == 3
    assert rows() == [(1, "a"), (2, "b"), (3, None)]

    assert ingest(flight, "ing", _people([4], ["d"]), "append") == 1
    assert rows() == [(1, "a"), (2, "b"), (3, None), (4, "d")]

    assert ingest(flight, "ing", _people([5], ["e"]), "create_append") == 1
    assert rows() == [(1, "a"), (2, "b"), (3, None), (4, "d"), (5, "e")]

    # replace: the data and the schema are the load's own
    replacement = pa.table({"id": pa.array([7], pa.int64()), "name": ["z"], "extra": [1.5]})
    assert ingest(flight, "ing", replacement, "replace") == 1
    assert query(flight, "SELECT id, name, extra FROM ing") == [(7, "z", 1.5)]
    assert flight.adbc_get_table_schema("ing").names == ["id", "name", "extra"]

    # create_append on a missing table creates it; replace on a missing table too
    assert ingest(flight, "ca_new", t1, "create_append") == 3
    assert query(flight, "SELECT count(*) FROM ca_new") == [(3,)]
    assert ingest(flight, "rep_new", t1, "replace") == 3
    assert query(flight, "SELECT count(*) FROM rep_new") == [(3,)]

    # another database, by db_schema_name
    update(flight, "CREATE DATABASE lake")
    assert ingest(flight, "people", t1, "create", db_schema_name="lake") == 3
    assert query(flight, "SELECT id FROM lake.people ORDER BY id") == [(1,), (2,), (3,)]

    # append matches columns by name and casts to the table's types; missing columns are null
    assert ingest(flight, "ca_new", pa.table({"name": ["n"], "id": pa.array([9], pa.int32())}),
                  "append") == 1
    assert ingest(flight, "ca_new", pa.table({"id": pa.array([10], pa.int64())}), "append") == 1
    assert query(flight, "SELECT id, name FROM ca_new WHERE id >= 9 ORDER BY id") == [
        (9, "n"), (10, None)
    ]


def test_ingest_types_round_trip(flight):
    data = pa.table({
        "i": pa.array([1, None, -3], pa.int64()),
        "i32": pa.array([1, 2, None], pa.int32()),
        "f": pa.array([1.5, None, -0.25], pa.float64()),
        "s": pa.array(["a", "ü", None], pa.string()),
        "b": pa.array([True, None, False]),
        "d": pa.array([dt.date(2024, 1, 1), None, dt.date(1999, 12, 31)], pa.date32()),
        "ts": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 6), None, dt.datetime(1970, 1, 1)],
                       pa.timestamp("us")),
        "tstz": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc), None, None],
                         pa.timestamp("us", tz="UTC")),
        "dec": pa.array([Decimal("1.23"), None, Decimal("-99999999.99")], pa.decimal128(10, 2)),
    })
    assert ingest(flight, "typed_load", data, "create") == 3
    got = arrow(flight, "SELECT * FROM typed_load ORDER BY i32 NULLS LAST")
    assert got.to_pylist() == data.to_pylist()
    # the same types, strings read back as string views
    expected_types = [pa.string_view() if t == pa.string() else t for t in data.schema.types]
    assert got.schema.types == expected_types


def test_ingest_errors(flight):
    assert ingest(flight, "ing", _people([1, 2], ["a", "b"]), "create") == 2

    e = adbc_error(lambda: ingest(flight, "ing", _people([3], ["c"]), "create"))
    assert e.status_code == Status.ALREADY_EXISTS, e
    assert 'table "public.ing" already exists' in str(e) and sqlstate(e) == "42P07", e

    e = adbc_error(lambda: ingest(flight, "missing", _people([3], ["c"]), "append"))
    assert e.status_code == Status.NOT_FOUND, e
    assert 'table "public.missing" does not exist' in str(e) and sqlstate(e) == "42P01", e

    extra = pa.table({"id": pa.array([3], pa.int64()), "extra": [1]})
    e = adbc_error(lambda: ingest(flight, "ing", extra, "append"))
    assert e.status_code == Status.INVALID_ARGUMENT, e
    assert 'the table has no column "extra"' in str(e) and sqlstate(e) == "42703", e

    nested = pa.table({"id": pa.array([[1]], pa.list_(pa.int64()))})
    e = adbc_error(lambda: ingest(flight, "ing", nested, "append"))
    assert e.status_code == Status.INVALID_ARGUMENT and 'column "id"' in str(e), e

    e = adbc_error(lambda: ingest(flight, "t", _people([1], ["a"]), "create",
                                  db_schema_name="nowhere"))
    assert e.status_code == Status.NOT_FOUND and "nowhere" in str(e), e
    assert sqlstate(e) == "3F000", e

    e = adbc_error(lambda: ingest(flight, "t", _people([1], ["a"]), "create",
                                  catalog_name="other"))
    assert e.status_code == Status.NOT_FOUND and 'catalog "other" does not exist' in str(e), e

    # nothing of the failed loads landed, nothing was created
    assert query(flight, "SELECT id, name FROM ing ORDER BY id") == [(1, "a"), (2, "b")]
    assert table_names(flight, "public") == ["ing"]


def test_ingest_append_bad_value_is_a_data_error(flight):
    """A value the table's column cannot take is the client's mistake: InvalidArgument with a
    data-exception SQLSTATE (22xxx), not an internal server error."""
    assert ingest(flight, "nums", pa.table({"n": pa.array([1], pa.int64())}), "create") == 1
    e = adbc_error(lambda: ingest(flight, "nums", pa.table({"n": ["notanint"]}), "append"))
    assert "notanint" in str(e), e
    assert query(flight, "SELECT n FROM nums") == [(1,)]
    assert e.status_code == Status.INVALID_ARGUMENT, e
    assert (sqlstate(e) or "").startswith("22"), (sqlstate(e), e)


def test_ingest_200k_rows_in_batches(flight):
    batches, per_batch = 8, 25_000
    schema = pa.schema([("id", pa.int64()), ("half", pa.float64()), ("label", pa.string())])

    def generate():
        for b in range(batches):
            ids = pa.array(range(b * per_batch, (b + 1) * per_batch), pa.int64())
            yield pa.record_batch(
                [ids, pc.divide(ids.cast(pa.float64()), 2.0), pc.cast(ids, pa.string())],
                schema=schema,
            )

    reader = pa.RecordBatchReader.from_batches(schema, generate())
    n = batches * per_batch
    assert ingest(flight, "big", reader, "create") == n
    assert query(flight, "SELECT count(*), sum(id), sum(half), count(DISTINCT label), "
                         "min(id), max(id) FROM big") == [
        (n, n * (n - 1) // 2, n * (n - 1) / 4, n, 0, n - 1)
    ]
    assert query(flight, "SELECT count(*) FROM big WHERE label <> CAST(id AS VARCHAR)") == [(0,)]


# ---- 2. bad input ---------------------------------------------------------------------------

def test_do_get_with_garbage_ticket(tarn):
    client = fl.FlightClient(tarn.flight_uri)
    try:
        # not a protobuf message at all
        with pytest.raises(pa.ArrowInvalid) as info:
            client.do_get(fl.Ticket(b"\xff\xfe garbage")).read_all()
        assert type(info.value) is pa.ArrowInvalid  # gRPC InvalidArgument
        assert "not a Flight SQL message" in str(info.value), info.value

        # an empty ticket
        with pytest.raises(pa.ArrowInvalid) as info:
            client.do_get(fl.Ticket(b"")).read_all()
        assert "not a Flight SQL message" in str(info.value), info.value

        # a Flight SQL statement ticket whose handle tarn never made
        foreign = _sql_any("TicketStatementQuery", _pb(1, b"someone else's handle"))
        with pytest.raises(pa.ArrowInvalid) as info:
            client.do_get(fl.Ticket(foreign)).read_all()
        assert type(info.value) is pa.ArrowInvalid
        assert "unknown prepared statement handle" in str(info.value), info.value

        # a prepared-statement ticket with a handle that looks like tarn's but is not JSON
        almost = _sql_any("CommandPreparedStatementQuery", _pb(1, b"tarn-flight-1:{not json"))
        with pytest.raises(pa.ArrowInvalid) as info:
            client.do_get(fl.Ticket(almost)).read_all()
        assert "unknown prepared statement handle" in str(info.value), info.value

        # the same client still works
        assert raw_query(client, "SELECT 1 AS one").to_pylist() == [{"one": 1}]
    finally:
        client.close()
    assert_answers_promptly(tarn.flight_uri)


@pytest.mark.parametrize("sql, params, status, state, needle", [
    ("SELEC 1", None, Status.INVALID_ARGUMENT, "42601", "SELEC"),
    ("SELECT * FROM no_such_table", None, Status.NOT_FOUND, "42P01", "no_such_table"),
    ("SELECT * FROM nodb.t", None, Status.NOT_FOUND, "42P01", "nodb.t"),
    ("SELECT nope FROM p", None, Status.INVALID_ARGUMENT, "42703", "nope"),
    ("SELECT 1; SELECT 2", None, Status.INVALID_ARGUMENT, None, "one statement"),
    ("SELECT 1 / 0", None, Status.INVALID_ARGUMENT, "22012", "Divide by zero"),
    ("SELECT id FROM p WHERE id = $1", ("abc",), Status.INVALID_ARGUMENT, "22023",
     "parameter $1"),
    ("SELECT id FROM p WHERE id = $1", (1, 2), Status.INVALID_ARGUMENT, "22023",
     "1 parameter(s) but 2 value(s)"),
], ids=["syntax", "missing-table", "missing-database", "missing-column", "two-statements",
        "division-by-zero", "wrong-param-type", "too-many-params"])
def test_bad_statement_errors_and_connection_survives(tarn, sql, params, status, state, needle):
    with connect(tarn.flight_uri) as conn:
        update(conn, "CREATE TABLE p (id INT, name VARCHAR)")
        update(conn, "INSERT INTO p VALUES (1, 'a')")
        e = adbc_error(lambda: query(conn, sql, params))
        assert e.status_code == status, e
        assert needle in str(e), e
        if state is not None:
            assert sqlstate(e) == state, e
        if params and "abc" in params:
            assert "'abc'" in str(e) and "Int32" in str(e), e
        # the same connection, and the same cursor, still work
        assert query(conn, "SELECT id, name FROM p") == [(1, "a")]
        with conn.cursor() as cur:
            with pytest.raises(adbc_driver_manager.Error):
                cur.execute(sql, params)
                cur.fetchall()
            cur.execute("SELECT count(*) FROM p")
            assert cur.fetchall() == [(1,)]
    assert_answers_promptly(tarn.flight_uri)


# ---- 3. clients that go away or cancel ------------------------------------------------------

ENDLESS = "SELECT * FROM range(0, 100000000000)"


def test_adbc_client_disconnects_mid_stream(tarn):
    for _ in range(3):
        conn = connect(tarn.flight_uri)
        cur = conn.cursor()
        cur.execute(ENDLESS)
        reader = cur.fetch_record_batch()
        batch = reader.read_next_batch()
        assert batch.num_rows > 0 and batch.column(0)[0].as_py() == 0
        cur.close()
        conn.close()
        assert_answers_promptly(tarn.flight_uri)
    # and the server shuts down cleanly (the fixture asserts exit code 0)


def test_raw_client_disconnects_mid_stream(tarn):
    for _ in range(3):
        client = fl.FlightClient(tarn.flight_uri)
        info = client.get_flight_info(statement(ENDLESS))
        assert info.schema == pa.schema([pa.field("value", pa.int64(), nullable=False)])
        stream = client.do_get(info.endpoints[0].ticket)
        first = stream.read_chunk().data
        assert first.num_rows > 0 and first.column(0)[0].as_py() == 0
        client.close()
        assert_answers_promptly(tarn.flight_uri)


def test_cancel_flight_info(tarn):
    client = fl.FlightClient(tarn.flight_uri)
    try:
        def cancel(info):
            # CancelFlightInfoRequest{info}
            action = fl.Action("CancelFlightInfo", _pb(1, info.serialize()))
            return list(client.do_action(action))

        info = client.get_flight_info(statement(ENDLESS))
        stream = client.do_get(info.endpoints[0].ticket)
        assert stream.read_chunk().data.num_rows > 0
        # CancelFlightInfoResult{status: CANCELLED (1)}
        assert [r.body.to_pybytes() for r in cancel(info)] == [b"\x08\x01"]
        # what was in flight drains, then the stream ends with Cancelled
        with pytest.raises(fl.FlightCancelledError, match="cancelled"):
            while True:
                stream.read_chunk()

        # a query cancelled before its DoGet fails at once
        info = client.get_flight_info(statement(ENDLESS))
        cancel(info)
        with pytest.raises(fl.FlightCancelledError, match="before it started"):
            client.do_get(info.endpoints[0].ticket).read_all()
    finally:
        client.close()
    assert_answers_promptly(tarn.flight_uri)


# ---- 4. authentication ----------------------------------------------------------------------

# "alice:s3cret" and "mallo:s3cret" are 12 bytes: their base64 has no padding either way.
# bob's "bob:hunter2" (11 bytes) needs padding; test_auth_basic_credentials_without_padding.
AUTH_TOML = '[auth.users]\nalice = "s3cret"\nbob = "hunter2"\n'


@pytest.fixture
def auth_tarn(tarn_factory, tmp_path):
    cfg = tmp_path / "tarn.toml"
    cfg.write_text(AUTH_TOML)
    t = tarn_factory.start(tmp_path / "warehouse", config=cfg)
    yield t
    if not t.stopped:
        t.stop()


def test_auth_password_login_adbc(auth_tarn):
    with connect(auth_tarn.flight_uri, username="alice", password="s3cret") as conn:
        assert query(conn, "SELECT 42 AS x") == [(42,)]
        # every later call (metadata, updates, loads) carries the session's token
        update(conn, "CREATE TABLE secured (id BIGINT)")
        assert ingest(conn, "secured", pa.table({"id": pa.array([1, 2], pa.int64())}),
                      "append") == 2
        assert table_names(conn, "public") == ["secured"]
        assert query(conn, "SELECT sum(id) FROM secured") == [(3,)]


@pytest.mark.parametrize("kwargs, needle", [
    ({"username": "alice", "password": "s3cre7"}, "invalid user name or password"),
    ({"username": "mallo", "password": "s3cret"}, "invalid user name or password"),
    ({}, "requires authentication"),
], ids=["wrong-password", "unknown-user", "no-credentials"])
def test_auth_bad_credentials_refused(auth_tarn, kwargs, needle):
    e = adbc_error(lambda: connect_and_query(auth_tarn.flight_uri, **kwargs))
    assert e.status_code == Status.UNAUTHENTICATED, e
    assert needle in str(e), e
    with connect(auth_tarn.flight_uri, username="alice", password="s3cret") as conn:
        assert query(conn, "SELECT 1 AS one") == [(1,)]


def test_auth_basic_credentials_without_padding(auth_tarn):
    """ADBC's Go driver sends `Basic base64(user:password)` without '=' padding (Go's
    RawStdEncoding). bob's credentials are 11 bytes, so their base64 would need padding."""
    with connect(auth_tarn.flight_uri, username="bob", password="hunter2") as conn:
        assert query(conn, "SELECT 1 AS one") == [(1,)]
    e = adbc_error(lambda: connect_and_query(
        auth_tarn.flight_uri, username="bob", password="hunter3"))
    assert e.status_code == Status.UNAUTHENTICATED
    assert "invalid user name or password" in str(e), e


def test_auth_bearer_token_raw_client(auth_tarn):
    client = fl.FlightClient(auth_tarn.flight_uri)
    try:
        header = client.authenticate_basic_token(b"alice", b"s3cret")
        assert header[0].lower() == b"authorization"
        assert header[1].startswith(b"Bearer ")
        with_token = fl.FlightCallOptions(headers=[header], timeout=PROMPT_SECONDS)
        info = client.get_flight_info(statement("SELECT 7 AS seven"), with_token)
        assert client.do_get(info.endpoints[0].ticket, with_token).read_all().to_pylist() == [
            {"seven": 7}
        ]
        # a ticket without the token is refused: the data call is authenticated too
        with pytest.raises(fl.FlightUnauthenticatedError, match="requires authentication"):
            client.do_get(info.endpoints[0].ticket).read_all()
        with pytest.raises(fl.FlightUnauthenticatedError, match="requires authentication"):
            client.get_flight_info(statement("SELECT 1"))
        # Basic credentials work on any call too
        basic = b"Basic " + base64.b64encode(b"alice:s3cret")
        assert raw_query(client, "SELECT 8 AS eight", fl.FlightCallOptions(
            headers=[(b"authorization", basic)])).to_pylist() == [{"eight": 8}]
        with pytest.raises(fl.FlightUnauthenticatedError, match="invalid user name or password"):
            client.authenticate_basic_token(b"alice", b"wrong!")
    finally:
        client.close()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_auth_tampered_token_refused(auth_tarn):
    client = fl.FlightClient(auth_tarn.flight_uri)
    try:
        _, bearer = client.authenticate_basic_token(b"alice", b"s3cret")
        token = bearer.decode().split(" ", 1)[1]
        payload, signature = token.split(".")
        user, expiry = _unb64url(payload).decode().rsplit(":", 1)
        assert user == "alice"
        forged = [
            # a later expiry, same signature
            _b64url(f"{user}:{int(expiry) + 3600}".encode()) + "." + signature,
            # another user, same signature
            _b64url(f"bob:{expiry}".encode()) + "." + signature,
            # the signature changed
            payload + "." + _b64url(bytes(b ^ 1 for b in _unb64url(signature))),
            "not-a-token",
        ]
        for bad in forged:
            options = fl.FlightCallOptions(
                headers=[(b"authorization", f"Bearer {bad}".encode())], timeout=PROMPT_SECONDS)
            with pytest.raises(fl.FlightUnauthenticatedError, match="invalid or expired"):
                client.get_flight_info(statement("SELECT 1"), options)
        # the genuine token still works
        ok = fl.FlightCallOptions(headers=[(b"authorization", bearer)], timeout=PROMPT_SECONDS)
        assert raw_query(client, "SELECT 1 AS one", ok).to_pylist() == [{"one": 1}]
    finally:
        client.close()


# ---- 5. TLS ---------------------------------------------------------------------------------

@pytest.fixture
def tls_files(tmp_path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    return cert, key


def test_tls(tarn_factory, tmp_path, tls_files):
    cert, key = tls_files
    cfg = tmp_path / "tarn.toml"
    cfg.write_text(f'[flight.tls]\ncert = "{cert}"\nkey = "{key}"\n')
    t = tarn_factory.start(tmp_path / "warehouse", config=cfg)
    address = t.flight_uri.removeprefix("grpc://")
    pem = cert.read_text()

    with connect(f"grpc+tls://{address}", **{TLS_ROOT_CERTS: pem}) as conn:
        update(conn, "CREATE TABLE over_tls (id BIGINT)")
        assert ingest(conn, "over_tls", pa.table({"id": pa.array([1, 2, 3], pa.int64())}),
                      "append") == 3
        assert query(conn, "SELECT sum(id) FROM over_tls") == [(6,)]
    client = fl.FlightClient(f"grpc+tls://{address}", tls_root_certs=cert.read_bytes())
    try:
        assert raw_query(client, "SELECT 5 AS five").to_pylist() == [{"five": 5}]
    finally:
        client.close()

    # a plaintext client reaches the port and fails the protocol, not the connection
    e = adbc_error(lambda: connect_and_query(f"grpc://{address}"))
    assert e.status_code == Status.IO, e
    assert "refused" not in str(e), e
    # a TLS client that does not trust the certificate fails on it
    e = adbc_error(lambda: connect_and_query(f"grpc+tls://{address}"))
    assert "certificate" in str(e), e

    with connect(f"grpc+tls://{address}", **{TLS_ROOT_CERTS: pem}) as conn:
        assert query(conn, "SELECT count(*) FROM over_tls") == [(3,)]
    t.stop()


def test_tls_unusable_pem_fails_startup(tmp_path):
    """Files that exist but hold no certificate or key: start-up fails naming the setting,
    instead of a server that reports ready with no Flight listener."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate\n")
    key.write_text("not a key\n")
    cfg = tmp_path / "tarn.toml"
    cfg.write_text(f'[flight.tls]\ncert = "{cert}"\nkey = "{key}"\n')
    rc, out, wrote = run_tarn_expect_failure(tmp_path / "wh", config=cfg, timeout=20)
    assert rc != 0 and not wrote, out[-3000:]
    assert "flight.tls" in out, out[-3000:]


# ---- 6. large results -----------------------------------------------------------------------

def test_large_result_streams_complete(flight):
    n = 2_000_000
    rows = batches = total = 0
    lo, hi = None, None
    with flight.cursor() as cur:
        cur.execute(f"SELECT * FROM range(0, {n})")
        reader = cur.fetch_record_batch()
        for batch in reader:
            column = batch.column(0)
            rows += batch.num_rows
            batches += 1
            total += pc.sum(column).as_py() or 0
            mn, mx = pc.min_max(column).values()
            lo = mn.as_py() if lo is None else min(lo, mn.as_py())
            hi = mx.as_py() if hi is None else max(hi, mx.as_py())
    assert rows == n
    assert total == n * (n - 1) // 2
    assert (lo, hi) == (0, n - 1)
    assert batches > 1, "the result came as one batch: not streamed"
    # a table read back through ADBC in full: exactly the rows, each once
    table = arrow(flight, f"SELECT value FROM range(0, {n}) WHERE value % 3 = 0")
    assert table.num_rows == (n + 2) // 3
    assert pc.count_distinct(table.column(0)).as_py() == table.num_rows
    assert pc.sum(table.column(0)).as_py() == sum(range(0, n, 3))


def test_auth_file_access_only_for_listed_users(tarn_factory, tmp_path):
    """COPY … TO a path reads or writes whatever the server can: only [auth] file_access users."""
    cfg = tmp_path / "tarn.toml"
    cfg.write_text('[auth]\nfile_access = ["alice"]\n' + AUTH_TOML)
    t = tarn_factory.start(tmp_path / "warehouse", config=cfg)
    out = tmp_path / "out"
    copy = f"COPY (SELECT 1 AS a) TO '{out}/x.parquet' STORED AS PARQUET"
    with connect(t.flight_uri, username="bob", password="hunter2") as conn:
        for call in (lambda: query(conn, copy), lambda: update(conn, copy)):
            e = adbc_error(call)
            assert e.status_code == Status.UNAUTHORIZED and sqlstate(e) == "42501", e
            assert "[auth] file_access" in str(e), e
        assert not out.exists()
        assert query(conn, "SELECT current_user") == [("bob",)]
    with connect(t.flight_uri, username="alice", password="s3cret") as conn:
        update(conn, copy)
        assert (out / "x.parquet").exists()
