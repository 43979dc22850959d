"""SQLAlchemy 2 (what Superset uses) against tarn, on psycopg 3 and on psycopg2.

Every test runs on both drivers. The expected values are what PostgreSQL 15 gives for tables
with the same columns as the demo's (TPC-H `orders` with `o_totalprice numeric(15,2)` and so
on): SQLAlchemy's PostgreSQL dialect reads pg_catalog, so tarn has to answer its catalog
queries the way PostgreSQL does.
"""
import contextlib
import datetime as dt
import re
from collections import defaultdict
from decimal import Decimal

import conftest
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

DRIVERS = ["psycopg", "psycopg2"]

# Compared as sets: these clients list in their own order.
DEMO_TABLES = set(conftest.DEMO_TABLES)
SYSTEM_VIEWS = set(conftest.SYSTEM_VIEWS)


def _engine(driver, t):
    return sa.create_engine(
        f"postgresql+{driver}://tarn@{t.pg_host}:{t.pg_port}/tarn",
        connect_args={"connect_timeout": 10},
        poolclass=sa.pool.NullPool,
    )


@pytest.fixture(params=DRIVERS)
def engine(request, tarn_demo):
    e = _engine(request.param, tarn_demo)
    yield e
    e.dispose()


@contextlib.contextmanager
def inspector(engine):
    with engine.connect() as conn:
        yield sa.inspect(conn)


# ---- connecting: the dialect's first-connect initialization --------------------------------

def test_connect_initializes_dialect(engine, tarn_demo):
    """engine.connect() runs dialect.initialize(): `select pg_catalog.version()` parsed for
    server_version_info, current_schema(), `show standard_conforming_strings`, the isolation
    level, and (psycopg 3) an hstore TypeInfo lookup inside a transaction (a SAVEPOINT)."""
    with engine.connect() as conn:
        d = engine.dialect
        server_version = conn.exec_driver_sql("SHOW server_version").scalar()
        major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", server_version).groups())
        assert d.server_version_info[:2] == (major, minor), (d.server_version_info, server_version)
        assert d.server_version_info >= (12,)
        assert d.default_schema_name == "public"
        # standard_conforming_strings = on  ->  no backslash escapes
        assert d._backslash_escapes is False
        assert conn.get_isolation_level() == "READ COMMITTED"
        assert conn.execute(sa.text("SELECT 1 AS one")).all() == [(1,)]
    # a second connection from the same engine works too (no per-connection state left over)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.literal(2).label("two"))).scalar() == 2


def test_version_function_is_postgres_shaped(engine):
    """`select version()` must look like PostgreSQL's: SQLAlchemy (and Superset, Metabase,
    DBeaver...) parse `PostgreSQL <major>.<minor>` out of it."""
    with engine.connect() as conn:
        v1 = conn.execute(sa.select(sa.func.version())).scalar()
        v2 = conn.exec_driver_sql("SELECT pg_catalog.version()").scalar()
        sv = conn.exec_driver_sql("SHOW server_version").scalar()
    assert v1 == v2
    m = re.match(r"PostgreSQL (\d+)\.(\d+)\b", v1)
    assert m, v1
    assert sv.startswith(f"{m.group(1)}.{m.group(2)}"), (v1, sv)


def test_autocommit_isolation_level(engine):
    """Superset runs queries with isolation_level=AUTOCOMMIT for some engines."""
    with engine.connect() as conn:
        ac = conn.execution_options(isolation_level="AUTOCOMMIT")
        assert ac.execute(sa.text("SELECT count(*) FROM demo.region")).scalar() == 5
        assert ac.connection.driver_connection.autocommit is True
        assert ac.execute(sa.text("SHOW transaction_isolation")).scalar() == "read committed"


# ---- the inspector -------------------------------------------------------------------------

def test_schema_names(engine):
    with inspector(engine) as insp:
        names = insp.get_schema_names()
        assert {"demo", "public", "system", "information_schema"} <= set(names), names
        # SQLAlchemy filters pg_* (pg_catalog, pg_toast) out
        assert not [n for n in names if n.startswith("pg_")], names
        assert names == sorted(names)


def test_has_schema(engine):
    with inspector(engine) as insp:
        assert insp.has_schema("demo") is True
        assert insp.has_schema("no_such_schema") is False


def test_table_names(engine):
    with inspector(engine) as insp:
        assert sorted(insp.get_table_names(schema="demo")) == sorted(DEMO_TABLES)
        # views are not tables, tables are not views
        assert insp.get_table_names(schema="system") == []
        assert insp.get_view_names(schema="demo") == []


def test_default_schema_lists_only_public(engine):
    """Without a schema, SQLAlchemy lists tables visible on the search_path
    (pg_table_is_visible): the demo's public schema has none. PostgreSQL gives []."""
    with inspector(engine) as insp:
        assert insp.get_table_names() == []


def test_view_names(engine):
    with inspector(engine) as insp:
        assert set(insp.get_view_names(schema="system")) == SYSTEM_VIEWS
        assert insp.get_materialized_view_names(schema="system") == []


@pytest.fixture(params=DRIVERS)
def views_engine(request, tarn_views):
    e = _engine(request.param, tarn_views)
    yield e
    e.dispose()


def test_view_definition(views_engine):
    with inspector(views_engine) as insp:
        assert insp.get_view_names(schema="demo") == ["big_orders", "orders_per_status"]
        assert "big_orders" not in insp.get_table_names(schema="demo")
        assert insp.get_view_definition("big_orders", schema="demo") == \
            conftest.DEMO_VIEWS["big_orders"]
        cols = insp.get_columns("orders_per_status", schema="demo")
        assert [(c["name"], type(c["type"])) for c in cols] == [
            ("status", pg.TEXT), ("orders", pg.BIGINT)]
    with views_engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT status, orders FROM demo.orders_per_status ORDER BY status")).all()
        assert [r[0] for r in rows] == ["F", "O", "P"] and sum(r[1] for r in rows) == 15000


ORDERS_COLUMNS = [
    ("o_orderkey", pg.BIGINT),
    ("o_custkey", pg.BIGINT),
    ("o_orderstatus", (pg.TEXT, pg.VARCHAR)),
    ("o_totalprice", pg.NUMERIC),
    ("o_orderdate", pg.DATE),
    ("o_orderpriority", (pg.TEXT, pg.VARCHAR)),
    ("o_clerk", (pg.TEXT, pg.VARCHAR)),
    ("o_shippriority", pg.INTEGER),
    ("o_comment", (pg.TEXT, pg.VARCHAR)),
]


def _check_columns(cols, expected):
    assert [c["name"] for c in cols] == [n for n, _ in expected], cols
    for c, (name, types) in zip(cols, expected):
        types = types if isinstance(types, tuple) else (types,)
        assert type(c["type"]) in types, (name, c["type"])
        if isinstance(c["type"], pg.VARCHAR):
            assert c["type"].length is None, (name, c["type"])


def test_columns_orders(engine):
    with inspector(engine) as insp:
        cols = insp.get_columns("orders", schema="demo")
        _check_columns(cols, ORDERS_COLUMNS)
        by_name = {c["name"]: c for c in cols}
        price = by_name["o_totalprice"]["type"]
        assert (price.precision, price.scale) == (15, 2), price
        for c in cols:
            assert c["nullable"] is False, c
            assert c["default"] is None, c
            assert c["autoincrement"] is False, c
            assert c.get("comment") is None, c


def test_columns_events(engine):
    with inspector(engine) as insp:
        cols = insp.get_columns("events", schema="demo")
        got = [(c["name"], type(c["type"]), c["nullable"]) for c in cols]
        assert got == [
            ("event_id", pg.BIGINT, False),
            ("user_id", pg.BIGINT, False),
            ("kind", got[2][1], False),
            ("amount", pg.DOUBLE_PRECISION, True),
            ("ts", pg.TIMESTAMP, False),
            ("dt", got[5][1], False),
        ], got
        assert got[2][1] in (pg.TEXT, pg.VARCHAR) and got[5][1] in (pg.TEXT, pg.VARCHAR)
        assert cols[4]["type"].timezone is True


def test_columns_of_a_view(engine):
    with inspector(engine) as insp:
        cols = insp.get_columns("table_versions", schema="system")
        assert cols and all(isinstance(c["name"], str) for c in cols), cols


def test_constraints_and_indexes_are_empty(engine):
    with inspector(engine) as insp:
        pk = insp.get_pk_constraint("orders", schema="demo")
        assert pk["constrained_columns"] == [], pk
        assert pk.get("name") is None, pk
        assert insp.get_foreign_keys("orders", schema="demo") == []
        assert insp.get_indexes("orders", schema="demo") == []
        assert insp.get_unique_constraints("orders", schema="demo") == []
        assert insp.get_check_constraints("orders", schema="demo") == []


def test_table_comment(engine):
    with inspector(engine) as insp:
        assert insp.get_table_comment("orders", schema="demo") == {"text": None}


def test_has_table(engine):
    with inspector(engine) as insp:
        assert insp.has_table("orders", schema="demo") is True
        assert insp.has_table("crawlers", schema="system") is True  # views count
        assert insp.has_table("no_such_table", schema="demo") is False
        assert insp.has_table("orders", schema="public") is False


def test_sequences_and_enums_are_empty(engine):
    with inspector(engine) as insp:
        assert insp.get_sequence_names(schema="demo") == []
        assert insp.get_enums(schema="demo") == []


def test_reflect_table(engine):
    """Superset's "add dataset" reflects the table (Table(..., autoload_with=...))."""
    with engine.connect() as conn:
        t = sa.Table("orders", sa.MetaData(), autoload_with=conn, schema="demo")
        assert [c.name for c in t.columns] == [n for n, _ in ORDERS_COLUMNS]
        assert list(t.primary_key.columns) == []
        assert isinstance(t.c.o_totalprice.type, pg.NUMERIC)
        got = conn.execute(
            sa.select(t.c.o_orderkey, t.c.o_orderdate, t.c.o_totalprice)
            .where(t.c.o_orderkey == 1)
        ).one()
        assert got == (1, dt.date(1996, 1, 2), Decimal("172799.49"))


# ---- queries through SQLAlchemy Core --------------------------------------------------------

ORDERS = sa.Table(
    "orders", sa.MetaData(),
    sa.Column("o_orderkey", sa.BigInteger),
    sa.Column("o_orderstatus", sa.Text),
    sa.Column("o_totalprice", sa.Numeric(15, 2)),
    sa.Column("o_orderdate", sa.Date),
    schema="demo",
)


def _orders_1995(conn):
    """The expected aggregate, computed in Python from plain rows."""
    rows = conn.exec_driver_sql(
        "SELECT o_orderstatus, o_totalprice, o_orderdate FROM demo.orders"
    ).all()
    assert len(rows) == 15000
    agg = defaultdict(lambda: [0, Decimal(0)])
    for status, price, day in rows:
        if dt.date(1995, 1, 1) <= day < dt.date(1996, 1, 1):
            agg[status][0] += 1
            agg[status][1] += Decimal(price)
    return sorted(((s, n, total) for s, (n, total) in agg.items()),
                  key=lambda r: r[2], reverse=True)


def test_superset_like_core_query(engine):
    total = sa.func.sum(ORDERS.c.o_totalprice).label("SUM(o_totalprice)")
    q = (
        sa.select(ORDERS.c.o_orderstatus, sa.func.count().label("count"), total)
        .where(ORDERS.c.o_orderdate >= dt.date(1995, 1, 1),
               ORDERS.c.o_orderdate < dt.date(1996, 1, 1))
        .group_by(ORDERS.c.o_orderstatus)
        .order_by(total.desc())
        .limit(10000)
    )
    with engine.connect() as conn:
        expected = _orders_1995(conn)
        result = conn.execute(q)
        assert list(result.keys()) == ["o_orderstatus", "count", "SUM(o_totalprice)"]
        got = result.all()
    assert len(expected) >= 2
    assert [tuple(r) for r in got] == expected


def test_superset_like_time_series_and_in_list(engine):
    month = sa.func.date_trunc("month", ORDERS.c.o_orderdate).label("__timestamp")
    q = (
        sa.select(month, sa.func.count().label("count"))
        .where(ORDERS.c.o_orderstatus.in_(["F", "O"]))
        .group_by(month).order_by(month).limit(3).offset(1)
    )
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT o_orderdate, o_orderstatus FROM demo.orders"
        ).all()
        months = defaultdict(int)
        for day, status in rows:
            if status in ("F", "O"):
                months[(day.year, day.month)] += 1
        expected = sorted(months.items())[1:4]
        got = conn.execute(q).all()
    assert [((ts.year, ts.month), n) for ts, n in got] == expected
    for ts, _ in got:
        assert isinstance(ts, dt.datetime) and (ts.day, ts.hour, ts.minute) == (1, 0, 0)
