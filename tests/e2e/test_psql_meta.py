"""psql 15's meta-commands against tarn: each is one or more catalog queries psql writes for
PostgreSQL 15 (pg_catalog functions, ARRAY(subquery), regclass casts...). Expected output is
what psql prints against a PostgreSQL 15 with the demo's tables; basic \\dt demo.*, \\d and
\\dn are in test_psql.py."""
import os
import re
import subprocess

PSQL = os.environ.get("PSQL", "/usr/bin/psql")

from conftest import DEMO_TABLES, DEMO_VIEWS, SYSTEM_VIEWS


def psql(t, *args, input=None, timeout=60):
    env = dict(os.environ)
    env.update(
        PGHOST=t.pg_host, PGPORT=str(t.pg_port), PGUSER="tarn", PGDATABASE="tarn",
        PGCONNECT_TIMEOUT="10", PGSSLMODE="disable", PGPASSWORD="x", PGTZ="UTC",
    )
    return subprocess.run(
        [PSQL, "-X", "-v", "ON_ERROR_STOP=1", *args], env=env, input=input,
        capture_output=True, text=True, timeout=timeout,
    )


def ok(t, *args, **kw):
    """Run psql; it must exit 0 with nothing on stderr."""
    r = psql(t, *args, **kw)
    assert r.returncode == 0 and r.stderr == "", (
        f"psql {args} exited {r.returncode}\n--- stdout ---\n{r.stdout}\n"
        f"--- stderr ---\n{r.stderr}\n--- tarn stderr (tail) ---\n{t.stderr()[-2000:]}")
    return r.stdout


def tables(out):
    """The aligned tables in psql output: [(title, headers, rows)]."""
    lines = out.splitlines()
    found = []
    for i, line in enumerate(lines):
        if i >= 1 and re.fullmatch(r"-+(\+-+)*", line):
            headers = [h.strip() for h in lines[i - 1].split("|")]
            title = lines[i - 2].strip() if i >= 2 else ""
            rows = []
            for row in lines[i + 1:]:
                if "|" not in row:  # "(N rows)", a blank line or a footer
                    break
                rows.append([c.strip() for c in row.split("|")])
            found.append((title, headers, rows))
    return found


def one_table(out):
    ts = tables(out)
    assert len(ts) == 1, out
    return ts[0]


def test_l_lists_databases(tarn_demo):
    title, headers, rows = one_table(ok(tarn_demo, "-c", r"\l"))
    assert title == "List of databases"
    assert headers[:4] == ["Name", "Owner", "Encoding", "Collate"], headers
    by_name = {r[0]: r for r in rows if r[0]}
    assert "tarn" in by_name, rows
    assert by_name["tarn"][2] == "UTF8", by_name["tarn"]  # pg_encoding_to_char(6)


def test_dt_follows_search_path(tarn_demo):
    """\\dt without a pattern lists the relations visible on the search_path
    (pg_table_is_visible). The demo's public schema is empty."""
    r = psql(tarn_demo, "-c", r"\dt")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr.strip() == "Did not find any relations.", (
        r.stdout, r.stderr)
    out = ok(tarn_demo, "-c", "SET search_path TO demo", "-c", r"\dt")
    title, headers, rows = one_table(out)
    assert title == "List of relations"
    assert headers == ["Schema", "Name", "Type", "Owner"]
    assert [(r[0], r[1], r[2]) for r in rows] == [("demo", n, "table") for n in DEMO_TABLES]
    assert "(9 rows)" in out


def test_dt_plus(tarn_demo):
    out = ok(tarn_demo, "-c", r"\dt+ demo.*")
    title, headers, rows = one_table(out)
    assert headers[:3] == ["Schema", "Name", "Type"] and "Size" in headers, headers
    assert [r[1] for r in rows] == DEMO_TABLES


def test_dv_system_views(tarn_demo):
    out = ok(tarn_demo, "-c", r"\dv system.*")
    title, headers, rows = one_table(out)
    assert title == "List of relations"
    assert [(r[0], r[1], r[2]) for r in rows] == [("system", v, "view") for v in SYSTEM_VIEWS]
    assert "(8 rows)" in out


def test_d_orders_types_and_nullability(tarn_demo):
    title, headers, rows = one_table(ok(tarn_demo, "-c", r"\d demo.orders"))
    assert title == 'Table "demo.orders"'
    assert headers == ["Column", "Type", "Collation", "Nullable", "Default"]
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("o_orderkey", "bigint", "not null"),
        ("o_custkey", "bigint", "not null"),
        ("o_orderstatus", "text", "not null"),
        ("o_totalprice", "numeric(15,2)", "not null"),
        ("o_orderdate", "date", "not null"),
        ("o_orderpriority", "text", "not null"),
        ("o_clerk", "text", "not null"),
        ("o_shippriority", "integer", "not null"),
        ("o_comment", "text", "not null"),
    ]


def test_d_events(tarn_demo):
    title, headers, rows = one_table(ok(tarn_demo, "-c", r"\d demo.events"))
    assert title == 'Table "demo.events"'
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("event_id", "bigint", "not null"),
        ("user_id", "bigint", "not null"),
        ("kind", "text", "not null"),
        ("amount", "double precision", ""),
        ("ts", "timestamp with time zone", "not null"),
        ("dt", "text", "not null"),
    ]


def test_d_plus_orders(tarn_demo):
    out = ok(tarn_demo, "-c", r"\d+ demo.orders")
    title, headers, rows = one_table(out)
    assert title == 'Table "demo.orders"'
    assert headers[:5] == ["Column", "Type", "Collation", "Nullable", "Default"]
    assert "Storage" in headers and "Description" in headers, headers
    assert [(r[0], r[1]) for r in rows] == [
        ("o_orderkey", "bigint"), ("o_custkey", "bigint"), ("o_orderstatus", "text"),
        ("o_totalprice", "numeric(15,2)"), ("o_orderdate", "date"),
        ("o_orderpriority", "text"), ("o_clerk", "text"), ("o_shippriority", "integer"),
        ("o_comment", "text"),
    ]


def test_d_view(tarn_demo):
    out = ok(tarn_demo, "-c", r"\d system.partitions")
    title, headers, rows = one_table(out)
    assert title == 'View "system.partitions"'
    assert [r[0] for r in rows] == ["database", "table_name", "partition", "location",
                                    "created_at"]


def test_sv_shows_view_definition(tarn_views):
    out = ok(tarn_views, "-c", r"\sv demo.big_orders")
    assert out == f"CREATE OR REPLACE VIEW demo.big_orders AS\n{DEMO_VIEWS['big_orders']}\n"


def test_dv_and_d_of_a_view(tarn_views):
    title, headers, rows = one_table(ok(tarn_views, "-c", r"\dv demo.*"))
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("demo", "big_orders", "view"), ("demo", "orders_per_status", "view")]
    out = ok(tarn_views, "-c", r"\d+ demo.orders_per_status")
    title, headers, rows = one_table(out)
    assert title == 'View "demo.orders_per_status"'
    assert [(r[0], r[1]) for r in rows] == [("status", "text"), ("orders", "bigint")]
    assert out.endswith("View definition:\n" + DEMO_VIEWS["orders_per_status"] + "\n\n"), out


def test_df(tarn_demo):
    title, headers, rows = one_table(ok(tarn_demo, "-c", r"\df"))
    assert title == "List of functions"
    assert headers == ["Schema", "Name", "Result data type", "Argument data types", "Type"]
    # no user-defined functions on the search path
    assert rows == []


def test_df_pattern(tarn_demo):
    title, headers, rows = one_table(ok(tarn_demo, "-c", r"\df upper"))
    assert ["pg_catalog", "upper", "text", "text", "func"] in rows, rows


def test_dT(tarn_demo):
    title, headers, rows = one_table(ok(tarn_demo, "-c", r"\dT"))
    assert title == "List of data types"
    assert headers == ["Schema", "Name", "Description"]


def test_du_lists_current_user(tarn_demo):
    out = ok(tarn_demo, "-c", r"\du")
    title, headers, rows = one_table(out)
    assert title == "List of roles"
    assert headers == ["Role name", "Attributes", "Member of"]
    # the role we are connected as is a role
    user = ok(tarn_demo, "-A", "-t", "-c", "SELECT current_user").strip()
    assert user == "tarn"
    assert user in [r[0] for r in rows], rows


def test_dp_privileges(tarn_demo):
    title, headers, rows = one_table(ok(tarn_demo, "-c", r"\dp demo.region"))
    assert title == "Access privileges"
    assert [r[:3] for r in rows] == [["demo", "region", "table"]]


def test_expanded_output(tarn_demo):
    out = ok(tarn_demo, "-c", r"\x", "-c",
             "SELECT r_regionkey, r_name FROM demo.region ORDER BY r_regionkey LIMIT 2")
    assert out.splitlines() == [
        "Expanded display is on.",
        "-[ RECORD 1 ]--------",
        "r_regionkey | 0",
        "r_name      | AFRICA",
        "-[ RECORD 2 ]--------",
        "r_regionkey | 1",
        "r_name      | AMERICA",
        "",
    ], out


def test_conninfo(tarn_demo):
    out = ok(tarn_demo, "-c", r"\conninfo")
    assert out.strip() == (
        f'You are connected to database "tarn" as user "tarn" on host "{tarn_demo.pg_host}" '
        f'at port "{tarn_demo.pg_port}".'), out


def test_timing(tarn_demo):
    out = ok(tarn_demo, "-c", r"\timing on", "-c", "SELECT count(*) FROM demo.lineitem")
    lines = out.splitlines()
    assert lines[0] == "Timing is on."
    assert " count " in lines[1] and "60175" in out
    assert re.search(r"^Time: \d+\.\d{3} ms", out, re.M), out


def test_text_output_matches_postgres(tarn_demo):
    """Values in the text format, byte for byte as PostgreSQL 15 prints them."""
    out = ok(tarn_demo, "-A", "-t", "-c",
             "SELECT TIMESTAMPTZ '2024-01-02 03:04:05.5+00' AS c1, "
             "TIMESTAMP '2024-01-02 03:04:05' AS c2, INTERVAL '1 day' AS c3, "
             "INTERVAL '90 minutes' AS c4, true AS c5, false AS c6, "
             "CAST(0.1 AS double precision) AS c7, CAST(100 AS double precision) AS c8, "
             "CAST(1.5 AS numeric(10,2)) AS c9, CAST(ARRAY[1,2] AS int4[]) AS c10, "
             "ARRAY['x y','z'] AS c11, DATE '2024-02-29' AS c12, CAST('ab' AS bytea) AS c13, "
             "CAST(NULL AS int) AS c14, TIME '01:02:03' AS c15, CAST(1.5 AS real) AS c16")
    expected = [
        "2024-01-02 03:04:05.5+00", "2024-01-02 03:04:05", "1 day", "01:30:00", "t", "f",
        "0.1", "100", "1.50", "{1,2}", '{"x y",z}', "2024-02-29", "\\x6162", "", "01:02:03",
        "1.5",
    ]
    got = out.rstrip("\n").split("|")
    assert len(got) == len(expected), got
    wrong = {f"c{i + 1}": (g, e) for i, (g, e) in enumerate(zip(got, expected)) if g != e}
    assert wrong == {}, f"(tarn, PostgreSQL) text per column: {wrong}"


def test_float_text_follows_extra_float_digits(tarn_demo):
    """float8 and float4 in the text format as PostgreSQL 15 writes them at each
    extra_float_digits: the shortest exact digits above 0 (1 is the default), else rounded
    to 15 (or 6) + extra_float_digits digits; exponents from 1e+15 (1e+06 for float4)."""
    sql = ("SELECT 100::float8, 1e15::float8, 1e14::float8, 123456789012345678::float8, "
           "0.00001::float8, 1.5e-7::float8, 'inf'::float8, '-inf'::float8, 'nan'::float8, "
           "'-0'::float8, (1/3.0::float8), 1e6::real, 123456::real, 1234567::real, "
           "CAST(1 AS real) / CAST(3 AS real), ARRAY[1.5::float8, 100, NULL]")
    expected = {
        "1": "100|1e+15|100000000000000|1.2345678901234568e+17|1e-05|1.5e-07|Infinity|"
             "-Infinity|NaN|-0|0.3333333333333333|1e+06|123456|1.234567e+06|0.33333334|"
             "{1.5,100,NULL}",
        "0": "100|1e+15|100000000000000|1.23456789012346e+17|1e-05|1.5e-07|Infinity|"
             "-Infinity|NaN|-0|0.333333333333333|1e+06|123456|1.23457e+06|0.333333|"
             "{1.5,100,NULL}",
        "-3": "100|1e+15|1e+14|1.23456789012e+17|1e-05|1.5e-07|Infinity|-Infinity|NaN|-0|"
              "0.333333333333|1e+06|1.23e+05|1.23e+06|0.333|{1.5,100,NULL}",
    }
    for digits, want in expected.items():
        out = ok(tarn_demo, "-A", "-t", "-c", f"SET extra_float_digits = {digits}", "-c", sql)
        assert out.splitlines()[-1] == want, (digits, out)


def test_demo_timestamps_text(tarn_demo):
    """A timestamptz column in the text format: `YYYY-MM-DD HH:MM:SS[.ffffff]+00`."""
    out = ok(tarn_demo, "-A", "-t", "-c",
             "SELECT ts FROM demo.events ORDER BY event_id LIMIT 20")
    for line in out.splitlines():
        assert re.fullmatch(r"2026-01-01 \d\d:\d\d:\d\d(\.\d*[1-9])?\+00", line), line


def test_meta_commands_in_one_script(tarn_demo):
    """A session running them one after another (as an interactive user would): every one
    succeeds and the connection stays usable."""
    script = "\n".join([
        r"\l", r"\dn", r"\dt demo.*", r"\dv system.*", r"\d demo.orders", r"\d+ demo.orders",
        r"\df", r"\du", r"\dT", r"\x", "SELECT count(*) AS n FROM demo.region;",
    ]) + "\n"
    out = ok(tarn_demo, input=script)
    assert out.rstrip().endswith("n | 5"), out[-500:]
