"""asyncpg beyond the basics in test_asyncpg.py: type introspection, the decoded Python
values of every common type, prepared-statement descriptions, portal-based cursors,
transactions (with savepoints) and connection pools."""
import asyncio
import datetime as dt
from collections import defaultdict
from decimal import Decimal

import asyncpg
import pytest

UTC = dt.timezone.utc


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def _connect(t, **kw):
    return await asyncpg.connect(
        host=t.pg_host, port=t.pg_port, user="tarn", database="tarn", timeout=10, **kw
    )


def with_conn(t, fn, **kw):
    async def main():
        c = await _connect(t, **kw)
        try:
            return await fn(c)
        finally:
            await c.close()
    return run(main())


def test_connect_server_version(tarn_demo):
    async def body(c):
        v = c.get_server_version()
        assert v.major >= 12, v
        settings = c.get_settings()
        assert settings.server_version.startswith(f"{v.major}.")
        assert settings.client_encoding == "UTF8"
        assert settings.server_encoding == "UTF8"
        assert await c.fetchval("SELECT 1") == 1
    with_conn(tarn_demo, body)


def test_server_settings_at_connect(tarn_demo):
    async def body(c):
        assert await c.fetchval("SHOW application_name") == "bi-tool"
        assert await c.fetchval("SHOW search_path") == "demo"
        assert await c.fetchval("SELECT count(*) FROM region") == 5
    with_conn(tarn_demo, body,
              server_settings={"application_name": "bi-tool", "search_path": "demo"})


# ---- introspection ------------------------------------------------------------------------

def test_introspection_for_array_types(tarn_demo):
    """asyncpg has no built-in codec for int4[], int8[], date[], numeric[], timestamptz[]...:
    the first time a result has one it runs `SELECT current_setting('jit'), set_config(...)`
    and its recursive pg_type/pg_range/pg_attribute introspection query."""
    async def body(c):
        row = await c.fetchrow(
            "SELECT CAST(ARRAY[1, 2, 3] AS int4[]) AS i4, CAST(ARRAY[7] AS int8[]) AS i8, "
            "CAST(ARRAY[DATE '2024-01-01', NULL] AS date[]) AS d, "
            "CAST(ARRAY[1.5, 2.25] AS numeric(10,2)[]) AS n, "
            "ARRAY[TIMESTAMPTZ '2024-01-02 03:04:05+00'] AS tz, "
            "ARRAY[true, false] AS b")
        assert dict(row) == {
            "i4": [1, 2, 3], "i8": [7], "d": [dt.date(2024, 1, 1), None],
            "n": [Decimal("1.50"), Decimal("2.25")],
            "tz": [dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)], "b": [True, False],
        }
        # after reload_schema_state() the codecs are introspected again
        await c.reload_schema_state()
        assert await c.fetchval("SELECT CAST(ARRAY[4, 5] AS int4[])") == [4, 5]
    with_conn(tarn_demo, body)


def test_array_agg_from_table(tarn_demo):
    async def body(c):
        plain = await c.fetch("SELECT n_regionkey, n_nationkey, n_name FROM demo.nation")
        names, keys = defaultdict(list), defaultdict(list)
        for r in plain:
            names[r["n_regionkey"]].append(r["n_name"])
            keys[r["n_regionkey"]].append(r["n_nationkey"])
        rows = await c.fetch(
            "SELECT n_regionkey, array_agg(n_name ORDER BY n_name) AS names, "
            "array_agg(n_nationkey ORDER BY n_nationkey) AS keys "
            "FROM demo.nation GROUP BY n_regionkey ORDER BY n_regionkey")
        assert [(r["n_regionkey"], r["names"], r["keys"]) for r in rows] == [
            (k, sorted(names[k]), sorted(keys[k])) for k in sorted(names)]
    with_conn(tarn_demo, body)


def test_custom_text_codec(tarn_demo):
    """set_type_codec(format='text') makes asyncpg ask for that column in text and the others
    in binary: one Bind with mixed result formats."""
    async def body(c):
        await c.set_type_codec("numeric", schema="pg_catalog", encoder=str, decoder=str,
                               format="text")
        row = await c.fetchrow(
            "SELECT o_orderkey, o_totalprice, o_orderdate FROM demo.orders "
            "WHERE o_orderkey = 1")
        assert tuple(row) == (1, "172799.49", dt.date(1996, 1, 2))
    with_conn(tarn_demo, body)


# ---- decoded values -----------------------------------------------------------------------

def test_fetch_decoded_values(tarn_demo):
    async def body(c):
        base = await c.fetch(
            "SELECT event_id, ts, amount FROM demo.events WHERE dt = '2026-01-03' "
            "ORDER BY event_id LIMIT 50")
        assert len(base) == 50
        rows = await c.fetch(
            "SELECT event_id, ts, amount, "
            "ts - TIMESTAMPTZ '2026-01-03 00:00:00+00' AS since_midnight, "
            "CAST(amount AS numeric(10,2)) AS amount_num, amount IS NULL AS no_amount, "
            "CAST(ts AS date) AS day "
            "FROM demo.events WHERE dt = '2026-01-03' ORDER BY event_id LIMIT 50")
        midnight = dt.datetime(2026, 1, 3, tzinfo=UTC)
        for b, r in zip(base, rows, strict=True):
            assert r["event_id"] == b["event_id"]
            assert isinstance(r["ts"], dt.datetime) and r["ts"].utcoffset() == dt.timedelta(0)
            assert r["ts"] == b["ts"]
            assert r["since_midnight"] == b["ts"] - midnight
            assert isinstance(r["since_midnight"], dt.timedelta)
            assert r["day"] == dt.date(2026, 1, 3)
            assert r["no_amount"] is (b["amount"] is None)
            if b["amount"] is None:
                assert r["amount"] is None and r["amount_num"] is None
            else:
                assert r["amount"] == b["amount"]
                assert r["amount_num"] == Decimal(str(b["amount"])).quantize(Decimal("0.01"))
        assert any(r["amount"] is None for r in rows)
        assert any(r["amount"] is not None for r in rows)
    with_conn(tarn_demo, body)


def test_fetch_numeric_and_dates(tarn_demo):
    async def body(c):
        row = await c.fetchrow(
            "SELECT o_totalprice, o_orderdate, o_orderdate - DATE '1996-01-01' AS days, "
            "o_orderstatus = 'O' AS is_open FROM demo.orders WHERE o_orderkey = 1")
        assert tuple(row) == (Decimal("172799.49"), dt.date(1996, 1, 2), 1, True)
        total = await c.fetchval("SELECT sum(o_totalprice) FROM demo.orders")
        prices = await c.fetch("SELECT o_totalprice FROM demo.orders")
        assert isinstance(total, Decimal) and total == sum(r[0] for r in prices)
    with_conn(tarn_demo, body)


# ---- prepared statements ------------------------------------------------------------------

def test_prepared_statement_description(tarn_demo):
    async def body(c):
        st = await c.prepare(
            "SELECT o_orderkey, o_totalprice, o_orderdate FROM demo.orders "
            "WHERE o_orderdate >= $1 AND o_totalprice > $2 ORDER BY o_orderkey LIMIT 5")
        assert [p.name for p in st.get_parameters()] == ["date", "numeric"]
        assert [(a.name, a.type.name) for a in st.get_attributes()] == [
            ("o_orderkey", "int8"), ("o_totalprice", "numeric"), ("o_orderdate", "date")]
        a = await st.fetch(dt.date(1998, 1, 1), Decimal("100000"))
        b = await st.fetch(dt.date(1998, 1, 1), Decimal("400000"))
        assert 0 < len(b) <= len(a) == 5
        for r in a:
            assert r["o_orderdate"] >= dt.date(1998, 1, 1)
            assert r["o_totalprice"] > Decimal("100000")
        # the same statement again, many times (a named statement, re-bound)
        for _ in range(3):
            assert [tuple(r) for r in await st.fetch(dt.date(1998, 1, 1),
                                                     Decimal("100000"))] == [
                tuple(r) for r in a]
    with_conn(tarn_demo, body)


# ---- cursors (portals with a row limit) ---------------------------------------------------

Q_ORDERS = "SELECT o_orderkey, o_totalprice FROM demo.orders ORDER BY o_orderkey"


def test_cursor_fetch_in_transaction(tarn_demo):
    async def body(c):
        everything = [tuple(r) for r in await c.fetch(Q_ORDERS)]
        assert len(everything) == 15000
        async with c.transaction():
            cur = await c.cursor(Q_ORDERS)
            got = [tuple(r) for r in await cur.fetch(5)]
            got += [tuple(r) for r in await cur.fetch(995)]
            row = await cur.fetchrow()
            got.append(tuple(row))
            assert got == everything[:1001]
    with_conn(tarn_demo, body)


def test_cursor_forward(tarn_demo):
    """Cursor.forward() is `MOVE FORWARD n <portal>`."""
    async def body(c):
        everything = [tuple(r) for r in await c.fetch(Q_ORDERS)]
        async with c.transaction():
            cur = await c.cursor(Q_ORDERS)
            assert await cur.forward(10) == 10
            assert tuple(await cur.fetchrow()) == everything[10]
    with_conn(tarn_demo, body)


def test_cursor_forward_past_the_end_and_unknown_portals(tarn_demo):
    """forward() counts the rows it skipped, up to the end; MOVE names an existing portal."""
    async def body(c):
        async with c.transaction():
            cur = await c.cursor("SELECT r_regionkey FROM demo.region ORDER BY 1")
            assert await cur.forward(3) == 3
            assert await cur.fetch(1) == [(3,)]
            assert await cur.forward(10) == 1
            assert await cur.fetch(5) == []
        with pytest.raises(asyncpg.exceptions.InvalidCursorNameError):
            await c.execute('MOVE FORWARD 1 "no_such_portal"')
        assert await c.fetchval("SELECT 1") == 1
    with_conn(tarn_demo, body)


def test_cursor_iteration(tarn_demo):
    async def body(c):
        expected_sum = await c.fetchval("SELECT sum(o_orderkey) FROM demo.orders")
        n, total, last = 0, 0, 0
        async with c.transaction():
            async for r in c.cursor(Q_ORDERS, prefetch=700):
                assert r["o_orderkey"] > last
                last = r["o_orderkey"]
                n += 1
                total += r["o_orderkey"]
        assert (n, total) == (15000, expected_sum)
    with_conn(tarn_demo, body)


# ---- transactions -------------------------------------------------------------------------

def test_transaction_block(tarn_demo):
    async def body(c):
        async with c.transaction():
            assert c.is_in_transaction()
            assert await c.fetchval("SELECT count(*) FROM demo.region") == 5
        assert not c.is_in_transaction()
        with pytest.raises(asyncpg.exceptions.UndefinedTableError):
            async with c.transaction():
                await c.fetch("SELECT * FROM no_such_table_abc")
        assert not c.is_in_transaction()
        assert await c.fetchval("SELECT count(*) FROM demo.nation") == 25
    with_conn(tarn_demo, body)


def test_transaction_options(tarn_demo):
    """`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;`"""
    async def body(c):
        async with c.transaction(isolation="repeatable_read", readonly=True):
            assert await c.fetchval("SHOW transaction_isolation") == "repeatable read"
            assert await c.fetchval("SHOW transaction_read_only") == "on"
            assert await c.fetchval("SELECT count(*) FROM demo.region") == 5
        assert await c.fetchval("SHOW transaction_read_only") == "off"
    with_conn(tarn_demo, body)


def test_nested_transaction_savepoint(tarn_demo):
    async def body(c):
        async with c.transaction():
            with pytest.raises(asyncpg.exceptions.UndefinedTableError):
                async with c.transaction():  # SAVEPOINT / ROLLBACK TO SAVEPOINT
                    await c.fetch("SELECT * FROM no_such_table_abc")
            assert await c.fetchval("SELECT count(*) FROM demo.region") == 5
    with_conn(tarn_demo, body)


# ---- pools --------------------------------------------------------------------------------

def test_pool_acquire_release(tarn_demo):
    """On release a pooled connection runs its reset query:
    `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`"""
    async def main():
        pool = await asyncpg.create_pool(
            host=tarn_demo.pg_host, port=tarn_demo.pg_port, user="tarn", database="tarn",
            min_size=1, max_size=2, timeout=10)
        try:
            for i in range(4):
                async with pool.acquire() as c:
                    await c.execute(f"SET application_name = 'pooled{i}'")
                    assert await c.fetchval("SELECT count(*) FROM demo.region") == 5
            async with pool.acquire() as c:
                # RESET ALL on release: the SET above did not leak
                assert await c.fetchval("SHOW application_name") == ""
        finally:
            await pool.close()
    run(main())
