"""Table sizes: `system.table_sizes` and the Postgres size functions over it
(`pg_table_size`, `pg_relation_size`, `pg_total_relation_size`; psql's `\\dt+` is in
test_psql_meta.py). A size is the bytes of the data files a full scan reads."""
import conftest


def test_sizes_are_the_data_files(tarn_factory, tmp_path):
    wh = tmp_path / "warehouse"
    outside = tmp_path / "outside" / "events"
    outside.parent.mkdir()
    t = tarn_factory.start(wh)
    with t.psycopg() as c:
        c.execute("CREATE DATABASE shop")
        c.execute("CREATE TABLE shop.items (id BIGINT, name VARCHAR)")
        c.execute("INSERT INTO shop.items VALUES (1, 'pen')")
        c.execute("INSERT INTO shop.items VALUES (2, 'book'), (3, 'lamp')")
        c.execute("CREATE VIEW shop.v AS SELECT id FROM shop.items")
        c.execute(f"COPY (SELECT * FROM (VALUES (1, 'a', '2026-01-01'), (2, 'b', '2026-01-02')) "
                  f"AS v(id, name, dt)) TO '{outside}/' STORED AS PARQUET PARTITIONED BY (dt)")
        c.execute(f"CREATE EXTERNAL TABLE shop.events STORED AS PARQUET "
                  f"LOCATION '{outside}/' PARTITIONED BY (dt)")

        lake = conftest.lake(wh)
        data = [k for k in lake.keys("shop/items/") if "/_delta_log/" not in k]
        assert len(data) == 2, data
        managed = sum(len(lake.read(k)) for k in data)
        external = sum(p.stat().st_size for p in outside.rglob("*.parquet"))
        assert len(list(outside.rglob("*.parquet"))) == 2

        assert c.execute("SELECT table_name, files, bytes, error FROM system.table_sizes "
                         "WHERE database = 'shop' ORDER BY 1").fetchall() == [
            ("events", 2, external, None), ("items", 2, managed, None)]
        assert c.execute(
            "SELECT pg_table_size('shop.items'::regclass), "
            "pg_relation_size('shop.items'::regclass), "
            "pg_total_relation_size('shop.events'::regclass), "
            # a view and a catalog table have no files of their own; an OID naming nothing
            # has no size
            "pg_table_size('shop.v'::regclass), pg_table_size('pg_catalog.pg_class'::regclass), "
            "pg_table_size(0)").fetchone() == (managed, managed, external, 0, 0, None)
        # the largest tables first, as admin tools ask; the main fork is all there is
        assert c.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'shop' "
            "ORDER BY pg_total_relation_size(c.oid) DESC, 1").fetchall() == sorted(
            [("events", external), ("items", managed), ("v", 0)],
            key=lambda r: (-r[1], r[0]))
        assert c.execute(
            "SELECT sum(pg_table_size(c.oid)), "
            "pg_relation_size('shop.items'::regclass, 'fsm') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'shop'"
        ).fetchone() == (managed + external, 0)
        # per relation, as psql's \dt+ asks
        assert c.execute(
            "SELECT c.relname, pg_size_pretty(pg_table_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'shop' "
            "ORDER BY 1").fetchall() == [
            ("events", f"{external} bytes"), ("items", f"{managed} bytes"), ("v", "0 bytes")]

        # files removed behind tarn's back count once the table is refreshed
        for p in sorted(outside.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        c.execute("REFRESH TABLE shop.events")
        assert c.execute("SELECT files, bytes FROM system.table_sizes "
                         "WHERE table_name = 'events'").fetchone() == (0, 0)
        # a table that cannot be read has no size, and says why; the others still have one
        for key in lake.keys("shop/items/_delta_log/"):
            lake.delete(key)
        c.execute("REFRESH TABLE shop.items")
        rows = c.execute("SELECT table_name, bytes, error FROM system.table_sizes "
                         "WHERE database = 'shop' ORDER BY 1").fetchall()
        assert rows[0] == ("events", 0, None), rows
        assert rows[1][:2] == ("items", None) and "Delta" in rows[1][2], rows
        assert c.execute("SELECT pg_table_size('shop.items'::regclass), "
                         "pg_table_size('shop.events'::regclass)").fetchone() == (None, 0)
