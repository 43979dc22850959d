"""Two tarn processes writing one warehouse (local, or S3 in the moto pass): no commit is lost,
and each sees the other's tables."""
import threading

import psycopg


def test_two_processes_never_lose_a_commit(tarn_factory, tmp_path):
    wh = tmp_path / "warehouse"
    env = {"TARN__ENGINE__METADATA_TTL_SECS": "0"}
    a = tarn_factory.start(wh, env=env)
    with a.psycopg() as c:
        c.execute("CREATE TABLE shared (writer VARCHAR, n BIGINT)")
    b = tarn_factory.start(wh, env=env)
    rounds = 6
    errors = []

    def work(server, name):
        try:
            with psycopg.connect(server.dsn, autocommit=True) as c:
                for i in range(rounds):
                    c.execute(f"INSERT INTO shared VALUES ('{name}', {i})")
                    c.execute(f"CREATE TABLE {name}_{i} AS SELECT {i} AS i")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s, n)) for s, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for server, other in ((a, "b"), (b, "a")):
        with server.psycopg() as c:
            rows = c.execute(
                "SELECT writer, count(*), sum(n) FROM shared GROUP BY writer ORDER BY writer"
            ).fetchall()
            assert rows == [("a", rounds, 15), ("b", rounds, 15)]
            assert c.execute(f"SELECT i FROM {other}_{rounds - 1}").fetchall() == [(rounds - 1,)]
    a.stop()
    b.stop()
