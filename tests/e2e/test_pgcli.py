"""pgcli against tarn: its metadata queries (what the completion refresher runs at start-up,
see pgcli/completion_refresher.py) through pgcli's own PGExecute, then the pgcli command line
itself, non-interactively (`-c`, `-l`)."""
import os
import subprocess
import sys
from pathlib import Path

import conftest
import pytest
from pgcli.pgexecute import PGExecute

# Compared as sets: these clients list in their own order.
DEMO_TABLES = set(conftest.DEMO_TABLES)
SYSTEM_VIEWS = set(conftest.SYSTEM_VIEWS)


@pytest.fixture
def pgx(tarn_demo):
    ex = PGExecute("tarn", "tarn", "", tarn_demo.pg_host, tarn_demo.pg_port)
    yield ex
    ex.conn.close()


def _err(t):
    return f"\n--- tarn stderr (tail) ---\n{t.stderr()[-2000:]}"


def test_connect(pgx):
    assert pgx.dbname == "tarn" and pgx.user == "tarn"
    assert pgx.server_version.split(".")[0].isdigit(), pgx.server_version
    assert pgx.conn.info.server_version >= 120000


def test_schemata(pgx):
    names = pgx.schemata()
    assert {"demo", "public", "system", "pg_catalog", "information_schema"} <= set(names)
    assert names == sorted(names)


def test_search_path(pgx):
    # `SELECT * FROM unnest(current_schemas(true))`: implicit pg_catalog first
    assert pgx.search_path() == ["pg_catalog", "public"]


def test_tables(pgx, tarn_demo):
    rels = list(pgx.tables())  # relkind = ANY(%s) with a text[] parameter
    demo = {name for schema, name in rels if schema == "demo"}
    assert demo == DEMO_TABLES, _err(tarn_demo)
    assert rels == sorted(rels)


def test_views(pgx, tarn_demo):
    rels = list(pgx.views())
    assert {name for schema, name in rels if schema == "system"} == SYSTEM_VIEWS, _err(tarn_demo)
    assert not {name for schema, name in rels if schema == "demo"}


def test_table_columns(pgx, tarn_demo):
    cols = [c for c in pgx.table_columns() if c[0] == "demo" and c[1] == "orders"]
    assert [(c[2], c[3], c[4], c[5]) for c in cols] == [
        ("o_orderkey", "bigint", False, None),
        ("o_custkey", "bigint", False, None),
        ("o_orderstatus", "text", False, None),
        ("o_totalprice", "numeric", False, None),
        ("o_orderdate", "date", False, None),
        ("o_orderpriority", "text", False, None),
        ("o_clerk", "text", False, None),
        ("o_shippriority", "integer", False, None),
        ("o_comment", "text", False, None),
    ], _err(tarn_demo)


def test_view_columns(pgx, tarn_demo):
    cols = [c for c in pgx.view_columns() if c[0] == "system" and c[1] == "partitions"]
    assert [c[2] for c in cols] == [
        "database", "table_name", "partition", "location", "created_at"], _err(tarn_demo)


def test_foreignkeys(pgx):
    assert list(pgx.foreignkeys()) == []


def test_functions(pgx, tarn_demo):
    funcs = list(pgx.functions())
    assert funcs, _err(tarn_demo)
    by_name = {(f.schema_name, f.func_name): f for f in funcs}
    upper = by_name.get(("pg_catalog", "upper"))
    assert upper is not None, sorted(by_name)[:50]
    assert upper.is_aggregate is False
    counts = [f for f in funcs if f.func_name == "count" and f.schema_name == "pg_catalog"]
    assert counts and all(f.is_aggregate for f in counts), counts


def test_datatypes(pgx):
    # only user-defined types outside pg_catalog/information_schema: none
    assert list(pgx.datatypes()) == []


def test_databases(pgx):
    assert "tarn" in pgx.databases()
    rows, headers, status = pgx.full_databases()
    assert headers == ["Name", "Owner", "Encoding", "Collate", "Ctype", "Access privileges"]
    tarn_row = [r for r in rows if r[0] == "tarn"][0]
    assert tarn_row[2] == "UTF8", tarn_row


def test_view_definition(tarn_views):
    ex = PGExecute("tarn", "tarn", "", tarn_views.pg_host, tarn_views.pg_port)
    try:
        sql = ex.view_definition("demo.big_orders")
    finally:
        ex.conn.close()
    assert sql == ('CREATE OR REPLACE VIEW "demo"."big_orders" AS \n'
                   + conftest.DEMO_VIEWS["big_orders"]), sql


def test_completion_refresher_all(pgx, tarn_demo):
    """Every refresher pgcli runs at start-up, into a real PGCompleter."""
    from pgcli.completion_refresher import CompletionRefresher
    from pgcli.pgcompleter import PGCompleter

    completer = PGCompleter(smart_completion=True, settings={})
    for name, refresher in CompletionRefresher.refreshers.items():
        try:
            refresher(completer, pgx)
        except Exception as e:
            raise AssertionError(f"refresher {name!r} failed: {e}{_err(tarn_demo)}") from e
    tables = completer.dbmetadata["tables"]
    assert set(tables["demo"]) == DEMO_TABLES
    orders = tables["demo"]["orders"]
    assert [(c.name, c.datatype) for c in orders.values()][:5] == [
        ("o_orderkey", "bigint"), ("o_custkey", "bigint"), ("o_orderstatus", "text"),
        ("o_totalprice", "numeric"), ("o_orderdate", "date")]
    assert set(completer.dbmetadata["views"]["system"]) == SYSTEM_VIEWS
    assert completer.search_path == ["pg_catalog", "public"]
    assert "upper" in {f.strip('"') for f in completer.dbmetadata["functions"]["pg_catalog"]}


def test_run_query(pgx):
    results = list(pgx.run(
        "SELECT r_name FROM demo.region ORDER BY r_regionkey LIMIT 2; SELECT 1 + 1"))
    assert len(results) == 2
    title, cur, headers, status = results[0][:4]
    assert headers == ["r_name"] and list(cur) == [("AFRICA",), ("AMERICA",)]
    assert status == "SELECT 2"
    title, cur, headers, status = results[1][:4]
    assert headers == ["?column?"] and list(cur) == [(2,)]


# ---- the pgcli command line ---------------------------------------------------------------

PGCLI = str(Path(sys.executable).with_name("pgcli"))


def pgcli(t, tmp_path, *args):
    env = dict(os.environ)
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / ".config"),
               PAGER="cat", LESS="", TERM="dumb")
    return subprocess.run(
        [PGCLI, "-h", t.pg_host, "-p", str(t.pg_port), "-U", "tarn", "-w", *args],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def test_pgcli_command(tarn_demo, tmp_path):
    r = pgcli(tarn_demo, tmp_path, "-c",
              "SELECT r_name FROM demo.region ORDER BY r_regionkey LIMIT 3",
              "-c", r"\d demo.orders", "tarn")
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = r.stdout
    for name in ("AFRICA", "AMERICA", "ASIA", "SELECT 3"):
        assert name in out, out
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("o_"):
            rows[cells[0]] = cells[1]
    assert rows["o_totalprice"] == "numeric(15,2)", out
    assert rows["o_orderdate"] == "date"
    assert "error" not in r.stderr.lower(), r.stderr


def test_pgcli_list_databases(tarn_demo, tmp_path):
    r = pgcli(tarn_demo, tmp_path, "-l", "tarn")
    assert r.returncode == 0, (r.stdout, r.stderr)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("| tarn ")]
    assert line and "| UTF8 " in line[0], r.stdout
