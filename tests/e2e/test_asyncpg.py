"""asyncpg (binary protocol, prepared statements) against tarn."""
import asyncio
import datetime as dt

import asyncpg
import pytest


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def _connect(t):
    return await asyncpg.connect(
        host=t.pg_host, port=t.pg_port, user="tarn", database="tarn", timeout=10
    )


def test_fetch_with_params(tarn_demo):
    async def main():
        c = await _connect(tarn_demo)
        try:
            rows = await c.fetch(
                "SELECT r_regionkey, r_name FROM demo.region WHERE r_regionkey >= $1 "
                "ORDER BY r_regionkey", 3)
            assert [tuple(r) for r in rows] == [(3, "EUROPE"), (4, "MIDDLE EAST")]
            n = await c.fetchval(
                "SELECT count(*) AS n FROM demo.events WHERE dt = $1", "2026-01-05")
            assert n == 500
            row = await c.fetchrow(
                "SELECT o_orderkey, o_orderdate FROM demo.orders "
                "WHERE o_orderkey = $1 AND o_orderdate >= $2", 1, dt.date(1990, 1, 1))
            assert row["o_orderkey"] == 1 and row["o_orderdate"] == dt.date(1996, 1, 2)
        finally:
            await c.close()
    run(main())


def test_prepared_statement_reused(tarn_demo):
    async def main():
        c = await _connect(tarn_demo)
        try:
            st = await c.prepare("SELECT n_name FROM demo.nation WHERE n_nationkey = $1")
            got = [await st.fetchval(k) for k in (0, 1, 2, 0, 24)]
            assert got == ["ALGERIA", "ARGENTINA", "BRAZIL", "ALGERIA", "UNITED STATES"]
            st2 = await c.prepare(
                "SELECT count(*) AS n FROM demo.lineitem WHERE l_orderkey <= $1")
            counts = [await st2.fetchval(k) for k in (0, 1, 7, 1)]
            assert counts[0] == 0 and counts[1] == counts[3] and counts[1] > 0
            assert counts[2] > counts[1]
        finally:
            await c.close()
    run(main())


def test_types_decoded(tarn_demo):
    async def main():
        c = await _connect(tarn_demo)
        try:
            row = await c.fetchrow(
                "SELECT CAST(1 AS INT) AS i, CAST(5000000000 AS BIGINT) AS b, "
                "'héllo'::text AS t, CAST(1.5 AS DOUBLE) AS f, DATE '2024-02-29' AS d, "
                "CAST(NULL AS INT) AS n")
            assert dict(row) == {"i": 1, "b": 5_000_000_000, "t": "héllo", "f": 1.5,
                                 "d": dt.date(2024, 2, 29), "n": None}
            row = await c.fetchrow(
                "SELECT event_id, kind, ts, dt FROM demo.events "
                "WHERE dt = '2026-01-07' ORDER BY event_id LIMIT 1")
            assert isinstance(row["event_id"], int) and isinstance(row["kind"], str)
            assert isinstance(row["ts"], dt.datetime) and row["ts"].tzinfo is not None
            assert row["ts"].date() == dt.date(2026, 1, 7)
        finally:
            await c.close()
    run(main())


def test_typed_cast_params(tarn):
    """`$n::type` parameters are described with that type (as Postgres does)."""
    async def main():
        c = await _connect(tarn)
        try:
            row = await c.fetchrow(
                "SELECT $1::int AS i, $2::text AS t, $3::double precision AS f, "
                "$4::date AS d", 7, "hé", 2.5, dt.date(2020, 1, 1))
            assert tuple(row) == (7, "hé", 2.5, dt.date(2020, 1, 1))
        finally:
            await c.close()
    run(main())


def test_error_sqlstate(tarn_demo):
    async def main():
        c = await _connect(tarn_demo)
        try:
            with pytest.raises(asyncpg.exceptions.UndefinedTableError) as ei:
                await c.fetch("SELECT * FROM no_such_table")
            assert ei.value.sqlstate == "42P01"
            with pytest.raises(asyncpg.exceptions.PostgresSyntaxError) as ei:
                await c.fetch("SELEC 1")
            assert ei.value.sqlstate == "42601"
            with pytest.raises(asyncpg.exceptions.UndefinedColumnError) as ei:
                await c.fetch("SELECT nope FROM demo.region")
            assert ei.value.sqlstate == "42703"
            with pytest.raises(asyncpg.exceptions.UndefinedFunctionError) as ei:
                await c.fetch("SELECT no_such_fn(1) AS x")
            assert ei.value.sqlstate == "42883"
            with pytest.raises(asyncpg.exceptions.FeatureNotSupportedError) as ei:
                await c.execute("CREATE MATERIALIZED VIEW v AS SELECT 1 AS a")
            assert ei.value.sqlstate == "0A000"
            assert await c.fetchval("SELECT count(*) AS n FROM demo.region") == 5
        finally:
            await c.close()
    run(main())
