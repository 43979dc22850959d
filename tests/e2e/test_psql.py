"""psql (the real client) against tarn."""
import os
import subprocess

import pytest

PSQL = os.environ.get("PSQL", "/usr/bin/psql")


def psql(t, *args, input=None, timeout=60):
    env = dict(os.environ)
    env.update(
        PGHOST=t.pg_host, PGPORT=str(t.pg_port), PGUSER="tarn", PGDATABASE="tarn",
        PGCONNECT_TIMEOUT="10", PGSSLMODE="disable", PGPASSWORD="x",
    )
    return subprocess.run(
        [PSQL, "-X", *args], env=env, input=input, capture_output=True, text=True,
        timeout=timeout,
    )


def rows(t, sql):
    """Unaligned, tuples-only, '|' separated."""
    r = psql(t, "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql)
    assert r.returncode == 0, f"psql failed: {r.stderr}"
    return [line.split("|") for line in r.stdout.splitlines() if line != ""]


def test_count_lineitem(tarn_demo):
    assert rows(tarn_demo, "SELECT count(*) AS n FROM demo.lineitem") == [["60175"]]
    assert rows(tarn_demo, "SELECT count(*) AS n FROM demo.orders") == [["15000"]]


def test_group_by_events_with_dt_filter(tarn_demo):
    got = rows(
        tarn_demo,
        "SELECT dt, count(*) AS n FROM demo.events "
        "WHERE dt >= '2026-01-02' AND dt <= '2026-01-04' GROUP BY dt ORDER BY dt",
    )
    assert got == [["2026-01-02", "500"], ["2026-01-03", "500"], ["2026-01-04", "500"]]

    by_kind = rows(
        tarn_demo,
        "SELECT kind, count(*) AS n FROM demo.events WHERE dt = '2026-01-03' "
        "GROUP BY kind ORDER BY kind",
    )
    assert len(by_kind) >= 2
    assert sum(int(n) for _, n in by_kind) == 500
    assert [k for k, _ in by_kind] == sorted(k for k, _ in by_kind)


def test_dt_lists_demo_tables(tarn_demo):
    r = psql(tarn_demo, "-c", r"\dt demo.*")
    assert r.returncode == 0, r.stderr
    names = set()
    for line in r.stdout.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) >= 3 and cells[0] == "demo":
            names.add(cells[1])
    assert names == {
        "region", "nation", "supplier", "customer", "part", "partsupp",
        "orders", "lineitem", "events",
    }, r.stdout
    assert "(9 rows)" in r.stdout


def test_d_describes_orders(tarn_demo):
    r = psql(tarn_demo, "-c", r"\d demo.orders")
    assert r.returncode == 0, r.stderr
    assert 'Table "demo.orders"' in r.stdout, r.stdout
    cols = {}
    for line in r.stdout.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) >= 2 and cells[0].startswith("o_"):
            cols[cells[0]] = cells[1]
    assert list(cols) == [
        "o_orderkey", "o_custkey", "o_orderstatus", "o_totalprice", "o_orderdate",
        "o_orderpriority", "o_clerk", "o_shippriority", "o_comment",
    ], r.stdout
    assert cols["o_orderkey"] == "bigint"
    assert cols["o_orderdate"] == "date"
    assert cols["o_orderstatus"] in ("text", "character varying")


def test_dn_lists_schemas(tarn_demo):
    r = psql(tarn_demo, "-c", r"\dn")
    assert r.returncode == 0, r.stderr
    names = {
        line.split("|")[0].strip()
        for line in r.stdout.splitlines() if "|" in line
    }
    assert {"demo", "public"} <= names, r.stdout


def test_on_error_stop_exit_code(tarn_demo):
    script = (
        "SELECT 1 AS a;\n"
        "SELECT * FROM no_such_table_xyz;\n"
        "SELECT 'after-error' AS b;\n"
    )
    r = psql(tarn_demo, "-v", "ON_ERROR_STOP=1", "-A", "-t", input=script)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "no_such_table_xyz" in r.stderr
    assert "after-error" not in r.stdout
    # -c with an error: exit code 1
    r = psql(tarn_demo, "-v", "ON_ERROR_STOP=1", "-c", "SELEC 1")
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "ERROR" in r.stderr
    # without ON_ERROR_STOP the script goes on and the connection still works
    r = psql(tarn_demo, "-A", "-t", input=script)
    assert "after-error" in r.stdout, (r.stdout, r.stderr)


def test_script_create_insert_select(tarn):
    script = """
CREATE DATABASE psqlscript;
CREATE TABLE psqlscript.items (id INT, name VARCHAR);
INSERT INTO psqlscript.items VALUES (1, 'one'), (2, 'two'), (3, NULL);
SELECT id, coalesce(name, '<null>') AS name FROM psqlscript.items ORDER BY id;
SELECT count(*) AS n FROM psqlscript.items WHERE name IS NULL;
"""
    r = psql(tarn, "-v", "ON_ERROR_STOP=1", "-A", "-t", "-F", ",", input=script)
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = [line for line in r.stdout.splitlines() if line]
    assert "INSERT 0 3" in out, out
    assert out[-4:] == ["1,one", "2,two", "3,<null>", "1"], out
