"""The HTTP API."""
import requests


def post(t, sql, **kw):
    return requests.post(t.http_url + "/query", json={"sql": sql}, timeout=60, **kw)


def test_health(tarn):
    r = requests.get(tarn.http_url + "/health", timeout=10)
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_query_rows_shape(tarn_demo):
    r = post(tarn_demo, "SELECT r_regionkey, r_name FROM demo.region ORDER BY r_regionkey")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["name"] for c in body["columns"]] == ["r_regionkey", "r_name"]
    assert all(isinstance(c["type"], str) and c["type"] for c in body["columns"])
    assert body["rows"] == [
        {"r_regionkey": 0, "r_name": "AFRICA"},
        {"r_regionkey": 1, "r_name": "AMERICA"},
        {"r_regionkey": 2, "r_name": "ASIA"},
        {"r_regionkey": 3, "r_name": "EUROPE"},
        {"r_regionkey": 4, "r_name": "MIDDLE EAST"},
    ]
    assert body["truncated"] is False

    r = post(tarn_demo,
             "SELECT dt, count(*) AS n, count(amount) AS with_amount FROM demo.events "
             "GROUP BY dt ORDER BY dt")
    body = r.json()
    assert [row["dt"] for row in body["rows"]] == [f"2026-01-0{d}" for d in range(1, 8)]
    assert all(row["n"] == 500 for row in body["rows"])
    assert all(0 <= row["with_amount"] <= 500 for row in body["rows"])
    r = post(tarn_demo, "SELECT count(*) AS n FROM demo.lineitem")
    assert r.json()["rows"] == [{"n": 60175}]


def test_query_nulls_and_types(tarn):
    r = post(tarn, "SELECT CAST(NULL AS INT) AS n, 1.5 AS f, 'x' AS s, true AS b")
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [{"n": None, "f": 1.5, "s": "x", "b": True}]


def test_command_shape(tarn):
    r = post(tarn, "CREATE TABLE h (a INT, b VARCHAR)")
    assert r.status_code == 200, r.text
    assert r.json() == {"command": "CREATE TABLE", "rows": None}
    r = post(tarn, "INSERT INTO h VALUES (1, 'x'), (2, 'y'), (3, NULL)")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["command"] == "INSERT" and body["rows"] == 3
    r = post(tarn, "SELECT a, b FROM h ORDER BY a")
    assert r.json()["rows"] == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}, {"a": 3, "b": None}]
    # visible on the Postgres wire too
    with tarn.psycopg() as c:
        assert c.execute("SELECT count(*) AS n FROM h").fetchone() == (3,)
    r = post(tarn, "DROP TABLE h")
    assert r.status_code == 200 and r.json()["command"] == "DROP TABLE"


def test_errors(tarn):
    cases = [
        ("SELECT * FROM no_such_table", "42P01"),
        ("SELEC 1", "42601"),
        ("CREATE MATERIALIZED VIEW v AS SELECT 1 AS a", "0A000"),
        ("SELECT no_such_fn(1) AS x", "42883"),
        ("DROP DATABASE no_such_db", "3F000"),
    ]
    for sql, code in cases:
        r = post(tarn, sql)
        assert r.status_code == 400, (sql, r.status_code, r.text)
        body = r.json()
        assert body["sqlstate"] == code, (sql, body)
        assert isinstance(body["error"], str) and body["error"]
    # the server keeps answering
    assert post(tarn, "SELECT 1 AS one").json()["rows"] == [{"one": 1}]


def test_malformed_requests(tarn):
    url = tarn.http_url + "/query"
    r = requests.post(url, data='{"sql":', headers={"content-type": "application/json"},
                      timeout=10)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    r = requests.post(url, json={"query": "SELECT 1"}, timeout=10)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    r = requests.post(url, json={"sql": 5}, timeout=10)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    r = requests.post(url, data="", headers={"content-type": "application/json"}, timeout=10)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert requests.get(tarn.http_url + "/health", timeout=10).json() == {"status": "ok"}


def test_max_rows_truncation(tarn_factory, tmp_path):
    cfg = tmp_path / "tarn.toml"
    cfg.write_text("[http]\nmax_rows = 4\n")
    t = tarn_factory.start(tmp_path / "wh", config=cfg)
    r = post(t, "SELECT * FROM (VALUES (1), (2), (3), (4), (5), (6)) AS v(x) ORDER BY x")
    body = r.json()
    assert body["rows"] == [{"x": 1}, {"x": 2}, {"x": 3}, {"x": 4}]
    assert body["truncated"] is True
    r = post(t, "SELECT * FROM (VALUES (1), (2), (3), (4)) AS v(x) ORDER BY x")
    body = r.json()
    assert len(body["rows"]) == 4 and body["truncated"] is False
    t.stop()
