"""Views: CREATE [OR REPLACE] VIEW and DROP VIEW over the Postgres wire, what they read, how
they fail (each with Postgres's SQLSTATE), that they survive a restart, and that Glue
(`VIRTUAL_VIEW`) and Flight SQL list them. The clients' view reflection (psql's \\sv,
SQLAlchemy, pgcli) is in their own test files, over `tarn_views`."""
from decimal import Decimal

import adbc_driver_flightsql.dbapi as flight_dbapi
import boto3
import psycopg
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError


def connect(t):
    return psycopg.connect(host=t.pg_host, port=t.pg_port, user="tarn", dbname="tarn",
                           autocommit=True, connect_timeout=10)


def sqlstate_of(conn, sql) -> tuple[str, str]:
    with pytest.raises(psycopg.Error) as e:
        conn.execute(sql)
    return e.value.sqlstate, str(e.value)


@pytest.fixture
def lake(tarn_factory, tmp_path):
    """A server with `shop.items` (id, price, name) holding three rows."""
    t = tarn_factory.start(tmp_path / "warehouse")
    with connect(t) as conn:
        conn.execute("CREATE DATABASE shop")
        conn.execute("CREATE TABLE shop.items AS SELECT * FROM (VALUES "
                     "(1, 5.0, 'pen'), (2, 20.0, 'book'), (3, 50.0, 'lamp')) "
                     "AS v(id, price, name)")
    return t


def test_create_read_replace_and_drop(lake):
    with connect(lake) as conn:
        assert conn.execute("CREATE VIEW shop.dear AS SELECT id, name FROM shop.items "
                            "WHERE price > 10").statusmessage == "CREATE VIEW"
        assert conn.execute("SELECT * FROM shop.dear ORDER BY id").fetchall() == [
            (2, "book"), (3, "lamp")]
        # filters, projections, joins and aggregates over a view
        assert conn.execute("SELECT name FROM shop.dear WHERE id = 3").fetchall() == [("lamp",)]
        assert conn.execute("SELECT count(*) FROM shop.dear d JOIN shop.items i "
                            "ON d.id = i.id").fetchone() == (2,)
        # a column list names the columns
        conn.execute("CREATE VIEW shop.totals (n, total) AS "
                     "SELECT count(*), sum(price) FROM shop.items")
        cur = conn.execute("SELECT * FROM shop.totals")
        assert [d.name for d in cur.description] == ["n", "total"]
        assert cur.fetchall() == [(3, 75.0)]
        # a view reads the table as it is when read
        conn.execute("INSERT INTO shop.items VALUES (4, 99.0, 'desk')")
        assert conn.execute("SELECT count(*) FROM shop.dear").fetchone() == (3,)
        # without a column list, columns are named as Postgres names them
        conn.execute("CREATE VIEW shop.counts AS SELECT name, count(*), upper(name) "
                     "FROM shop.items GROUP BY name")
        cur = conn.execute("SELECT * FROM shop.counts ORDER BY name LIMIT 1")
        assert [d.name for d in cur.description] == ["name", "count", "upper"]
        assert cur.fetchall() == [("book", 1, "BOOK")]
        conn.execute("DROP VIEW shop.counts")
        # views over views
        conn.execute("CREATE VIEW shop.dearest AS SELECT name FROM shop.dear WHERE id > 2")
        assert conn.execute("SELECT * FROM shop.dearest ORDER BY name").fetchall() == [
            ("desk",), ("lamp",)]
        # OR REPLACE replaces, with other columns if need be
        conn.execute("CREATE OR REPLACE VIEW shop.totals AS SELECT max(price) AS top "
                     "FROM shop.items")
        assert conn.execute("SELECT * FROM shop.totals").fetchall() == [(99.0,)]
        # an unqualified name is read where it was when the view was created
        conn.execute("SET search_path TO shop")
        conn.execute("CREATE VIEW cheap AS SELECT id FROM items WHERE price < 10")
        conn.execute("SET search_path TO public")
        assert conn.execute("SELECT * FROM shop.cheap").fetchall() == [(1,)]
        assert conn.execute(
            "SELECT table_name, view_definition, is_updatable FROM information_schema.views "
            "WHERE table_schema = 'shop' ORDER BY 1").fetchall() == [
            ("cheap", "SELECT id FROM items WHERE price < 10", "NO"),
            ("dear", "SELECT id, name FROM shop.items WHERE price > 10", "NO"),
            ("dearest", "SELECT name FROM shop.dear WHERE id > 2", "NO"),
            ("totals", "SELECT max(price) AS top FROM shop.items", "NO"),
        ]
        assert conn.execute(
            "SELECT pg_get_viewdef('shop.dear'::regclass), pg_get_viewdef(c.oid, true) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'shop' AND c.relname = 'cheap'").fetchone() == (
            "SELECT id, name FROM shop.items WHERE price > 10",
            "SELECT id FROM items WHERE price < 10")
        # a table is no view: NULL, as in Postgres; tarn's own views are computed by tarn,
        # not by a query: NULL too
        assert conn.execute("SELECT pg_get_viewdef('shop.items'::regclass), "
                            "pg_get_viewdef('system.crawlers'::regclass)").fetchone() == (
            None, None)
        assert conn.execute("DROP VIEW shop.dearest").statusmessage == "DROP VIEW"
        assert conn.execute("DROP VIEW IF EXISTS shop.dearest").statusmessage == "DROP VIEW"
        assert sqlstate_of(conn, "SELECT * FROM shop.dearest")[0] == "42P01"
        # a database with views drops only with CASCADE
        assert sqlstate_of(conn, "DROP DATABASE shop")[0] == "2BP01"
        conn.execute("DROP DATABASE shop CASCADE")
        conn.execute("CREATE DATABASE shop")
        assert conn.execute("SELECT count(*) FROM pg_views WHERE schemaname = 'shop'"
                            ).fetchone() == (0,)


def test_view_errors(lake):
    with connect(lake) as conn:
        conn.execute("CREATE VIEW shop.v AS SELECT id, price FROM shop.items")
        # names: a view's name is no table's, and the other way
        assert sqlstate_of(conn, "CREATE VIEW shop.v AS SELECT 1")[0] == "42P07"
        assert sqlstate_of(conn, "CREATE VIEW shop.items AS SELECT 1")[0] == "42P07"
        code, message = sqlstate_of(conn, "CREATE OR REPLACE VIEW shop.items AS SELECT 1")
        assert code == "42809" and "is not a view" in message
        assert sqlstate_of(conn, "CREATE TABLE shop.v AS SELECT 1 AS a")[0] == "42P07"
        assert sqlstate_of(conn, "CREATE TABLE shop.v (a INT)")[0] == "42P07"
        conn.execute("CREATE TABLE IF NOT EXISTS shop.v AS SELECT 1 AS a")  # a no-op
        assert conn.execute("SELECT count(*) FROM shop.v").fetchone() == (3,)
        # a view's query has no parameters (psycopg sends this one as $1)
        assert sqlstate_of(conn, "CREATE VIEW shop.p AS SELECT id FROM shop.items "
                                 "WHERE id = %s" % "$1")[0] in ("42P02",)
        code, message = sqlstate_of(conn, "DROP TABLE shop.v")
        assert code == "42809" and "is not a table" in message and "DROP VIEW" in message
        code, message = sqlstate_of(conn, "DROP VIEW shop.items")
        assert code == "42809" and "is not a view" in message and "DROP TABLE" in message
        assert sqlstate_of(conn, "DROP VIEW shop.nope")[0] == "42P01"
        assert sqlstate_of(conn, "CREATE VIEW nodb.v AS SELECT 1")[0] == "3F000"
        assert sqlstate_of(conn, "CREATE VIEW shop.w AS SELECT * FROM shop.nope")[0] == "42P01"
        # views are read-only
        code, message = sqlstate_of(conn, "INSERT INTO shop.v VALUES (9, 1.0)")
        assert code == "55000" and "cannot insert into view" in message
        assert sqlstate_of(conn, "CREATE TEMPORARY VIEW t AS SELECT 1")[0] == "0A000"
        assert sqlstate_of(conn, "CREATE MATERIALIZED VIEW shop.m AS SELECT 1")[0] == "0A000"
        # a view may not read itself, directly or through another
        conn.execute("CREATE VIEW shop.w AS SELECT id FROM shop.v")
        code, message = sqlstate_of(conn, "CREATE OR REPLACE VIEW shop.v AS SELECT * FROM shop.w")
        assert code == "42P17" and "recursion" in message
        assert conn.execute("SELECT count(*) FROM shop.w").fetchone() == (3,)
        # a view whose table changed underneath is stale until created again
        conn.execute("DROP TABLE shop.items")
        conn.execute("CREATE TABLE shop.items AS SELECT 'one' AS id, 1.0 AS price")
        code, message = sqlstate_of(conn, "SELECT * FROM shop.w")
        assert code == "55000" and 'view "shop.v" is stale' in message, message
        # a table a view reads is gone: the error says which view
        conn.execute("CREATE VIEW shop.x AS SELECT id FROM shop.items")
        conn.execute("DROP TABLE shop.items")
        code, message = sqlstate_of(conn, "SELECT * FROM shop.x")
        assert code == "42P01" and 'reading view "shop.x"' in message, message
        conn.execute("CREATE TABLE shop.items AS SELECT 'one' AS id, 1.0 AS price")
        conn.execute("CREATE OR REPLACE VIEW shop.v AS SELECT id, price FROM shop.items")
        assert conn.execute("SELECT * FROM shop.v").fetchall() == [("one", 1.0)]
        # the connection is fine after every error
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_views_survive_a_restart(tarn_factory, tmp_path, lake):
    with connect(lake) as conn:
        conn.execute("CREATE VIEW shop.dear (item) AS SELECT name FROM shop.items "
                     "WHERE price > 10")
    assert lake.stop() == 0
    t = tarn_factory.start(tmp_path / "warehouse")
    with connect(t) as conn:
        cur = conn.execute("SELECT * FROM shop.dear ORDER BY item")
        assert [d.name for d in cur.description] == ["item"]
        assert cur.fetchall() == [("book",), ("lamp",)]


def test_glue_and_flight_list_views(lake):
    with connect(lake) as conn:
        conn.execute("CREATE VIEW shop.dear AS SELECT id, name FROM shop.items "
                     "WHERE price > 10")
        # over the Postgres wire, 1.5 is a numeric (a double over Flight): the view keeps
        # what it meant when it was created, in every session
        conn.execute("CREATE VIEW shop.gross AS SELECT id, price * 1.5 AS gross "
                     "FROM shop.items")
        assert conn.execute("SELECT gross FROM shop.gross WHERE id = 1").fetchone() == (
            Decimal("7.50"),)
    glue = boto3.client(
        "glue", endpoint_url=lake.http_url, region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=60),
    )
    tables = glue.get_tables(DatabaseName="shop")["TableList"]
    assert [(t["Name"], t["TableType"]) for t in tables] == [
        ("dear", "VIRTUAL_VIEW"), ("gross", "VIRTUAL_VIEW"), ("items", "MANAGED_TABLE")]
    view = glue.get_table(DatabaseName="shop", Name="dear")["Table"]
    assert view["ViewOriginalText"] == "SELECT id, name FROM shop.items WHERE price > 10"
    assert [(c["Name"], c["Type"]) for c in view["StorageDescriptor"]["Columns"]] == [
        ("id", "bigint"), ("name", "string")]
    with pytest.raises(ClientError) as e:
        glue.get_table(DatabaseName="shop", Name="nope")
    assert e.value.response["Error"]["Code"] == "EntityNotFoundException"

    with flight_dbapi.connect(lake.flight_uri, autocommit=True) as conn:
        objects = conn.adbc_get_objects(catalog_filter="tarn", db_schema_filter="shop",
                                        table_types_filter=["VIEW"]).read_all().to_pylist()
        names = [t["table_name"] for c in objects for s in c["catalog_db_schemas"]
                 for t in s["db_schema_tables"]]
        assert names == ["dear", "gross"]
        with conn.cursor() as cur:
            cur.execute("SELECT name FROM shop.dear ORDER BY id")
            assert cur.fetchall() == [("book",), ("lamp",)]
            cur.execute("SELECT CAST(sum(gross) AS VARCHAR) FROM shop.gross")
            assert cur.fetchall() == [("112.50",)]


def test_a_crawler_leaves_a_view_alone(lake, tmp_path):
    src = tmp_path / "landing"
    (src / "dear").mkdir(parents=True)
    with connect(lake) as conn:
        conn.execute(f"COPY (SELECT 1 AS id) TO '{src}/dear/part.parquet' STORED AS PARQUET")
        conn.execute(f"COPY (SELECT 2 AS id) TO '{src}/other/part.parquet' STORED AS PARQUET")
        conn.execute("CREATE VIEW shop.dear AS SELECT id FROM shop.items WHERE price > 10")
        conn.execute(f"CREATE CRAWLER c ON '{src}/' INTO shop")
        cur = conn.execute("RUN CRAWLER c")
        run = dict(zip([d.name for d in cur.description], cur.fetchone()))
        assert run["succeeded"] is True and run["tables_created"] == 1, run
        skipped = conn.execute("SELECT path, reason FROM system.crawler_skipped_files"
                               ).fetchall()
        assert len(skipped) == 1 and "is a view" in skipped[0][1], skipped
        assert conn.execute("SELECT * FROM shop.dear ORDER BY id").fetchall() == [(2,), (3,)]
        assert conn.execute("SELECT id FROM shop.other").fetchall() == [(2,)]


def test_view_columns_keep_postgres_names_and_types(lake):
    """A view over `x::varchar(n)` and `json_agg(…)` names its columns `x` and `json_agg` and
    types them varchar and json, as PostgreSQL 15 does."""
    with connect(lake) as conn:
        conn.execute("CREATE VIEW shop.typed AS SELECT name::varchar(3), json_agg(id) "
                     "FROM shop.items WHERE id = 2 GROUP BY name")
        cur = conn.execute("SELECT * FROM shop.typed")
        assert [(d.name, d.type_code) for d in cur.description] == [
            ("name", 1043), ("json_agg", 114)]
        assert cur.fetchall() == [("boo", [2])]
