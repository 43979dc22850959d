"""Crawlers end to end: created and run over psql and over the catalog REST API, their
tables queried with pruning visible in EXPLAIN, and a cron schedule run in the background
by the real server. Local folders, or (with TARN_E2E_S3_ENDPOINT) the S3 test bucket."""
from __future__ import annotations

import time

import requests

from test_glue import Source, events_select
from test_psql import psql, rows

SCHEDULE_WAIT = 90.0  # a `* * * * *` schedule fires within 60 s of being seen


def make_lake(t, src):
    with t.psycopg() as c:
        for day, region in (("2024-01-01", "eu"), ("2024-01-02", "us"), ("2024-01-03", "eu")):
            src.copy(c, events_select(int(day[-1]), 2),
                     f"events/dt={day}/region={region}/part-0.parquet", "PARQUET")
        c.execute("CREATE DATABASE lake")


def test_psql_crawls_and_queries_with_pruning(tarn, tmp_path):
    src = Source(tmp_path / "src")
    make_lake(tarn, src)
    assert rows(tarn, f"CREATE CRAWLER c1 ON '{src.location}' INTO lake") == [["CREATE CRAWLER"]]
    run = rows(tarn, "RUN CRAWLER c1")
    assert run == [["1", "t", "1", "0", "3", "3", "0", ""]], run
    assert rows(tarn, "SELECT dt, region, count(*) FROM lake.events "
                      "WHERE region = 'eu' GROUP BY dt, region ORDER BY dt") == [
        ["2024-01-01", "eu", "2"], ["2024-01-03", "eu", "2"]]
    plan = "\n".join(r[-1] for r in rows(
        tarn, "EXPLAIN SELECT id FROM lake.events WHERE dt = DATE '2024-01-02'"))
    assert "dt=2024-01-02/region=us/part-0.parquet" in plan, plan
    assert "dt=2024-01-01" not in plan and "dt=2024-01-03" not in plan, plan
    shown = rows(tarn, "SHOW CRAWLERS")
    assert [r[0] for r in shown] == ["c1"] and shown[0][2] == "lake", shown
    # psql's own description of the crawled table
    r = psql(tarn, "-c", r"\d lake.events")
    assert r.returncode == 0, r.stderr
    for column in ("id", "name", "amount", "ok", "dt", "region"):
        assert column in r.stdout, r.stdout
    # errors keep the session usable and carry their SQLSTATE
    r = psql(tarn, "-v", "ON_ERROR_STOP=0", "-v", "VERBOSITY=verbose",
             "-c", "RUN CRAWLER nope", "-c", "SELECT 1")
    assert "42704" in r.stderr and "nope" in r.stderr, r.stderr
    assert "1" in r.stdout


def api(t, method, path, **kw):
    return requests.request(method, t.http_url + path, timeout=60, **kw)


def test_rest_api_crawlers_tables_partitions_versions(tarn, tmp_path):
    src = Source(tmp_path / "src")
    make_lake(tarn, src)
    r = api(tarn, "POST", "/crawlers", json={
        "name": "c2", "location": src.location, "database": "lake",
        "options": {"schema_change": "add_columns", "table_level": 1}})
    assert r.status_code == 201, r.text
    assert r.json()["options"]["table_level"] == 1
    assert api(tarn, "POST", "/crawlers", json={
        "name": "c2", "location": src.location, "database": "lake"}).status_code == 409
    bad = api(tarn, "POST", "/crawlers", json={
        "name": "c3", "location": src.location, "database": "lake",
        "options": {"schedule": "every day"}})
    assert bad.status_code == 400 and "schedule" in bad.json()["error"], bad.text

    run = api(tarn, "POST", "/crawlers/c2/run")
    assert run.status_code == 200, run.text
    body = run.json()
    assert body["succeeded"] is True and body["tables_created"] == ["events"], body
    assert body["partitions_added"] == 3

    table = api(tarn, "GET", "/catalog/databases/lake/tables/events").json()
    assert [(c["name"], c["partition"]) for c in table["columns"]] == [
        ("id", False), ("name", False), ("amount", False), ("ok", False),
        ("dt", True), ("region", True)]
    assert table["partition_columns"] == ["dt", "region"] and table["partitions"] == 3
    assert table["version"] == 1 and table["location"] == src.url + "events/"
    parts = api(tarn, "GET", "/catalog/databases/lake/tables/events/partitions",
                params={"expression": "region = 'eu'"}).json()["partitions"]
    assert sorted(p["values"] for p in parts) == [["2024-01-01", "eu"], ["2024-01-03", "eu"]]
    assert api(tarn, "GET", "/catalog/databases/lake/tables/events/partitions",
               params={"expression": "nonsense ="}).status_code == 400
    versions = api(tarn, "GET", "/catalog/databases/lake/tables/events/versions").json()
    assert versions["current"] == 1 and [v["version"] for v in versions["versions"]] == [1]
    dbs = api(tarn, "GET", "/catalog/databases").json()["databases"]
    assert {"name": "lake"}.items() <= [d for d in dbs if d["name"] == "lake"][0].items()
    assert api(tarn, "GET", "/catalog/databases/nope/tables").status_code == 404
    assert api(tarn, "GET", "/catalog/databases/lake/tables/nope").status_code == 404

    runs = api(tarn, "GET", "/crawlers/c2/runs").json()["runs"]
    assert [r["run"] for r in runs] == [1]
    assert api(tarn, "DELETE", "/crawlers/c2").status_code == 204
    assert api(tarn, "GET", "/crawlers/c2").status_code == 404
    assert api(tarn, "POST", "/crawlers/c2/run").status_code == 404
    # the tables the crawler made stay
    assert api(tarn, "GET", "/catalog/databases/lake/tables/events").status_code == 200


def test_a_scheduled_crawler_runs_in_the_background(tarn, tmp_path):
    src = Source(tmp_path / "src")
    make_lake(tarn, src)
    with tarn.psycopg() as c:
        c.execute(f"CREATE CRAWLER every_minute ON '{src.location}' INTO lake "
                  "WITH (schedule = '* * * * *')")
        next_run = c.execute(
            "SELECT next_run_at FROM system.crawlers WHERE name = 'every_minute'").fetchone()[0]
        assert next_run is not None
        deadline = time.monotonic() + SCHEDULE_WAIT
        runs = []
        while time.monotonic() < deadline:
            runs = c.execute("SELECT run, succeeded, tables_created FROM system.crawler_runs "
                             "WHERE crawler = 'every_minute'").fetchall()
            if runs:
                break
            time.sleep(0.5)  # polling the server's own record; there is no event to await
        assert runs, f"no scheduled run within {SCHEDULE_WAIT} s\n{tarn.stderr()[-2000:]}"
        assert runs[0] == (1, True, "events"), runs
        assert c.execute("SELECT count(*) FROM lake.events").fetchone()[0] == 6
