"""Catalog persistence across restarts, start-up failures, config layering."""
from pathlib import Path

import pytest

import requests

from conftest import lake, run_tarn_expect_failure


def q(conn, sql, params=None):
    return conn.execute(sql, params).fetchall()


def _snapshot(conn):
    return {
        "tables": sorted(q(conn,
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('lake', 'public') ORDER BY 1, 2")),
        "sales": q(conn, "SELECT id, region, amount FROM lake.sales ORDER BY id"),
        "summary": q(conn, "SELECT region, total FROM lake.summary ORDER BY region"),
        "people": q(conn, "SELECT id, name FROM lake.people ORDER BY id"),
    }


def test_restart_keeps_managed_tables(tarn_factory, tmp_path):
    wh = tmp_path / "warehouse"
    t = tarn_factory.start(wh)
    with t.psycopg() as c:
        c.execute("CREATE DATABASE lake")
        c.execute(
            "CREATE TABLE lake.sales AS SELECT * FROM (VALUES "
            "(1, 'eu', 10.5), (2, 'us', 20.25), (3, 'eu', 4.0)) AS v(id, region, amount)"
        )
        cur = c.execute("INSERT INTO lake.sales VALUES (4, 'apac', 1.75), (5, 'us', 3.0)")
        assert cur.statusmessage == "INSERT 0 2"
        c.execute(
            "CREATE TABLE lake.summary AS SELECT region, sum(amount) AS total "
            "FROM lake.sales GROUP BY region"
        )
        c.execute("CREATE TABLE lake.people (id INT, name VARCHAR)")
        c.execute("INSERT INTO lake.people VALUES (1, 'ada'), (2, NULL)")
        c.execute("CREATE TABLE lake.doomed (x INT)")
        c.execute("INSERT INTO lake.doomed VALUES (1)")
        c.execute("CREATE TABLE public.top (x BIGINT)")
        c.execute("INSERT INTO top VALUES (42)")
        c.execute("DROP TABLE lake.doomed")
        before = _snapshot(c)
    assert before["sales"] == [
        (1, "eu", 10.5), (2, "us", 20.25), (3, "eu", 4.0), (4, "apac", 1.75), (5, "us", 3.0)
    ]
    assert before["summary"] == [("apac", 1.75), ("eu", 14.5), ("us", 23.25)]
    assert before["people"] == [(1, "ada"), (2, None)]
    assert before["tables"] == [
        ("lake", "people"), ("lake", "sales"), ("lake", "summary"), ("public", "top")
    ]
    # managed tables are Delta tables under <warehouse>/<database>/<table>/
    objects = lake(wh)
    assert objects.keys("lake/sales/_delta_log/")
    assert [k for k in objects.keys("_tarn/catalog/log/") if k.endswith(".json")]
    t.stop()

    t2 = tarn_factory.start(wh)
    with t2.psycopg() as c:
        assert _snapshot(c) == before
        assert q(c, "SELECT x FROM top") == [(42,)]
        try:
            c.execute("SELECT * FROM lake.doomed")
            raise AssertionError("dropped table lake.doomed is back after restart")
        except Exception as e:  # noqa: BLE001
            assert getattr(e, "sqlstate", None) == "42P01", e
        # still writable after restart
        c.execute("INSERT INTO lake.sales VALUES (6, 'eu', 1.0)")
        assert q(c, "SELECT count(*) AS n, sum(amount) AS s FROM lake.sales") == [(6, 40.5)]
        # the dropped name can be reused
        c.execute("CREATE TABLE lake.doomed (y VARCHAR)")
        assert q(c, "SELECT count(*) AS n FROM lake.doomed") == [(0,)]
    t2.stop()

    t3 = tarn_factory.start(wh)
    with t3.psycopg() as c:
        assert q(c, "SELECT count(*) AS n FROM lake.sales") == [(6,)]
        assert q(c, "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = 'lake' AND table_name = 'doomed'") == [("y",)]
    t3.stop()


def test_restart_keeps_external_parquet_table(tarn_factory, tmp_path):
    wh = tmp_path / "warehouse"
    ext = tmp_path / "outside" / "events"  # outside the warehouse
    ext.parent.mkdir()
    t = tarn_factory.start(wh)
    with t.psycopg() as c:
        cur = c.execute(
            f"COPY (SELECT * FROM (VALUES (1, 'a', '2026-01-01'), (2, 'b', '2026-01-01'), "
            f"(3, 'c', '2026-01-02')) AS v(id, name, dt)) TO '{ext}/' STORED AS PARQUET "
            f"PARTITIONED BY (dt)"
        )
        assert sorted(p.name for p in ext.iterdir()) == ["dt=2026-01-01", "dt=2026-01-02"]
        c.execute("CREATE DATABASE ext")
        c.execute(
            f"CREATE EXTERNAL TABLE ext.events STORED AS PARQUET LOCATION '{ext}/' "
            f"PARTITIONED BY (dt)"
        )
        before = q(c, "SELECT id, name, dt FROM ext.events ORDER BY id")
        assert before == [(1, "a", "2026-01-01"), (2, "b", "2026-01-01"), (3, "c", "2026-01-02")]
        assert q(c, "SELECT count(*) AS n FROM ext.events WHERE dt = '2026-01-02'") == [(1,)]
    t.stop()
    t2 = tarn_factory.start(wh)
    with t2.psycopg() as c:
        assert q(c, "SELECT id, name, dt FROM ext.events ORDER BY id") == before
    t2.stop()
    # the external files were not touched by tarn
    assert sorted(p.name for p in ext.iterdir()) == ["dt=2026-01-01", "dt=2026-01-02"]


def test_truncated_catalog_entry_fails_startup(tarn_factory, tmp_path):
    wh = tmp_path / "warehouse"
    t = tarn_factory.start(wh)
    with t.psycopg() as c:
        c.execute("CREATE DATABASE keep")
        c.execute("CREATE TABLE keep.t (a INT)")
        c.execute("INSERT INTO keep.t VALUES (1)")
    t.stop()
    objects = lake(wh)
    log = [k for k in objects.keys("_tarn/catalog/log/") if k.endswith(".json")]
    assert log, "no catalog log entries written"
    victim = log[-1]
    data = objects.read(victim)
    assert len(data) > 4
    objects.write(victim, data[: len(data) // 2])

    rc, out, wrote = run_tarn_expect_failure(wh)
    assert rc != 0, out
    assert not wrote, "address file written although the catalog is corrupt"
    name = victim.rsplit("/", 1)[-1]
    assert name in out, f"error does not name {name}:\n{out[-3000:]}"


def test_corrupt_first_catalog_entry_fails_startup(tarn_factory, tmp_path):
    wh = tmp_path / "warehouse"
    t = tarn_factory.start(wh)
    with t.psycopg() as c:
        c.execute("CREATE DATABASE keep")
    t.stop()
    objects = lake(wh)
    first = [k for k in objects.keys("_tarn/catalog/log/") if k.endswith(".json")][0]
    objects.write(first, b"{ not json")
    rc, out, wrote = run_tarn_expect_failure(wh)
    assert rc != 0 and not wrote, out
    assert first.rsplit("/", 1)[-1] in out, out[-3000:]


def test_bad_flight_addr_refused(tmp_path):
    rc, out, wrote = run_tarn_expect_failure(
        tmp_path / "wh", extra_args=["--flight-addr", "localhost"])
    assert rc != 0 and not wrote, out
    assert "flight.addr" in out, out[-3000:]


@pytest.mark.parametrize(
    "toml, key",
    [
        ('[flight.tls]\ncert = "/nonexistent/cert.pem"\nkey = "/nonexistent/key.pem"\n',
         "flight.tls.cert"),
        ('[auth.users]\n"a:b" = "pw"\n', "auth.users"),
        ("[http]\nmax_rows = 10\nmax_rowz = 5\n", "max_rowz"),
        ("bogus_top_level = true\n", "bogus_top_level"),
        ('[http]\nmax_rows = "lots"\n', "max_rows"),
    ],
    ids=["flight-tls-missing-files", "bad-user-name", "unknown-key", "unknown-top-level-key", "bad-value"],
)
def test_bad_config_is_refused_naming_the_key(tmp_path, toml, key):
    cfg = tmp_path / "tarn.toml"
    cfg.write_text(toml)
    rc, out, wrote = run_tarn_expect_failure(tmp_path / "wh", config=cfg)
    assert rc != 0 and not wrote, out
    assert key in out, out[-3000:]


def _http_rows(t, sql):
    r = requests.post(t.http_url + "/query", json={"sql": sql}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_env_var_max_rows_truncates(tarn_factory, tmp_path):
    t = tarn_factory.start(tmp_path / "wh", env={"TARN__HTTP__MAX_ROWS": "2"})
    with t.psycopg() as c:
        c.execute("CREATE TABLE five AS SELECT * FROM (VALUES (1), (2), (3), (4), (5)) AS v(x)")
    body = _http_rows(t, "SELECT x FROM five ORDER BY x")
    assert body["rows"] == [{"x": 1}, {"x": 2}]
    assert body["truncated"] is True
    body = _http_rows(t, "SELECT x FROM five WHERE x <= 2 ORDER BY x")
    assert body["rows"] == [{"x": 1}, {"x": 2}]
    assert body["truncated"] is False
    # the Postgres wire is not limited
    with t.psycopg() as c:
        assert len(q(c, "SELECT x FROM five")) == 5
    t.stop()


def test_config_file_then_env_then_flag(tarn_factory, tmp_path):
    cfg = tmp_path / "tarn.toml"
    cfg.write_text('[http]\nmax_rows = 3\n')
    t = tarn_factory.start(tmp_path / "wh", config=cfg)
    body = _http_rows(t, "SELECT * FROM (VALUES (1), (2), (3), (4)) AS v(x)")
    assert len(body["rows"]) == 3 and body["truncated"] is True
    t.stop()
    # env overrides the file
    t = tarn_factory.start(tmp_path / "wh", config=cfg, env={"TARN__HTTP__MAX_ROWS": "1"})
    body = _http_rows(t, "SELECT * FROM (VALUES (1), (2), (3), (4)) AS v(x)")
    assert len(body["rows"]) == 1 and body["truncated"] is True
    t.stop()


def test_external_tables_of_each_form(tarn_factory, tmp_path):
    """Unpartitioned Parquet, CSV with a header and JSON external tables over files
    written with COPY ... TO outside the warehouse; all survive a restart."""
    wh = tmp_path / "warehouse"
    out = tmp_path / "outside"
    for d in ("pq", "csv", "json"):
        (out / d).mkdir(parents=True)
    t = tarn_factory.start(wh)
    src = "SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, 'c')) AS v(id, name)"
    with t.psycopg() as c:
        c.execute(f"COPY ({src}) TO '{out}/pq/part-0.parquet' STORED AS PARQUET")
        c.execute(f"COPY ({src}) TO '{out}/csv/part-0.csv' STORED AS CSV")
        c.execute(f"COPY ({src}) TO '{out}/json/part-0.json' STORED AS JSON")
        assert (out / "csv" / "part-0.csv").read_text().splitlines()[0] == "id,name"
        c.execute(f"CREATE EXTERNAL TABLE ext_csv STORED AS CSV LOCATION '{out}/csv/' "
                  f"OPTIONS ('format.has_header' 'true')")
        c.execute(f"CREATE EXTERNAL TABLE ext_json STORED AS JSON LOCATION '{out}/json/'")
        c.execute(f"CREATE EXTERNAL TABLE ext_pq STORED AS PARQUET LOCATION '{out}/pq/'")
        expect = [(1, "a"), (2, "b"), (3, "c")]
        for name in ("ext_csv", "ext_json", "ext_pq"):
            assert q(c, f"SELECT id, name FROM {name} ORDER BY id") == expect, name
    t.stop()
    t2 = tarn_factory.start(wh)
    with t2.psycopg() as c:
        for name in ("ext_csv", "ext_json", "ext_pq"):
            assert q(c, f"SELECT id, name FROM {name} ORDER BY id") == expect, name
    t2.stop()
