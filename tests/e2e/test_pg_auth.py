"""Postgres-wire logins: SCRAM-SHA-256 (and md5 / cleartext when asked for), TLS with channel
binding, TLS required, and start-up refusing what cannot be served safely. Real psql and
psycopg against the real server."""
import os
import subprocess

import psycopg
import pytest
import requests

from conftest import run_tarn_expect_failure

PSQL = os.environ.get("PSQL", "/usr/bin/psql")
USERS = '[auth.users]\nalice = "s3cret-A"\nbob = "hunter2"\n'


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple:
    d = tmp_path_factory.mktemp("pgtls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def config(tmp_path, text: str):
    path = tmp_path / "tarn.toml"
    path.write_text(text)
    return path


def psql(t, conninfo: str, sql: str, password: str | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run(
        [PSQL, "-X", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1",
         f"port={t.pg_port} dbname=tarn connect_timeout=10 {conninfo}", "-c", sql],
        env=env, capture_output=True, text=True, timeout=60,
    )


def connect(t, **kw):
    kw.setdefault("host", t.pg_host)
    return psycopg.connect(port=t.pg_port, dbname="tarn", connect_timeout=10,
                           autocommit=True, **kw)


def test_scram_logs_in_users_and_refuses_the_rest(tarn_factory, tmp_path):
    t = tarn_factory.start(config=config(tmp_path, USERS))
    r = psql(t, "host=127.0.0.1 user=alice sslmode=disable", "SELECT current_user", "s3cret-A")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "alice"
    with connect(t, user="bob", password="hunter2") as c:
        assert c.execute("SELECT current_user, 1 + 1").fetchone() == ("bob", 2)
        assert c.pgconn.parameter_status(b"session_authorization") == b"bob"

    for user, password in [("alice", "wrong"), ("mallory", "s3cret-A"), ("bob", "s3cret-A")]:
        with pytest.raises(psycopg.OperationalError) as e:
            connect(t, user=user, password=password)
        assert f'password authentication failed for user "{user}"' in str(e.value)
    # No password at all: the client is asked for one and has none.
    r = psql(t, "host=127.0.0.1 user=alice sslmode=disable", "SELECT 1")
    assert r.returncode != 0 and "no password supplied" in r.stderr, r.stderr
    # The server only offered SCRAM: a client that insists on md5 or cleartext fails.
    with pytest.raises(psycopg.OperationalError) as e:
        connect(t, user="alice", password="s3cret-A", require_auth="md5")
    assert "SASL" in str(e.value) or "auth" in str(e.value).lower()
    # Refused logins left the server serving.
    with connect(t, user="alice", password="s3cret-A") as c:
        assert c.execute("SELECT 42").fetchone() == (42,)


@pytest.mark.parametrize("method", ["md5", "password"])
def test_md5_and_cleartext_only_when_configured(tarn_factory, tmp_path, method):
    t = tarn_factory.start(config=config(tmp_path, f'[pg]\nauth_method = "{method}"\n' + USERS))
    require = {"md5": "md5", "password": "password"}[method]
    with connect(t, user="alice", password="s3cret-A", require_auth=require) as c:
        assert c.execute("SELECT current_user").fetchone() == ("alice",)
    with pytest.raises(psycopg.OperationalError) as e:
        connect(t, user="alice", password="nope")
    assert 'password authentication failed for user "alice"' in str(e.value)


def test_tls_with_scram_channel_binding(tarn_factory, tmp_path, tls_files):
    cert, key = tls_files
    t = tarn_factory.start(config=config(
        tmp_path, USERS + f'[pg.tls]\ncert = "{cert}"\nkey = "{key}"\n'))
    # Verified certificate, and SCRAM-SHA-256-PLUS bound to it.
    r = psql(t, f"host=localhost user=alice sslmode=verify-full sslrootcert={cert} "
                "channel_binding=require", "SELECT current_user", "s3cret-A")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "alice"
    with connect(t, host="localhost", user="alice", password="s3cret-A",
                 sslmode="verify-full", sslrootcert=str(cert)) as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("SELECT count(*) FROM information_schema.schemata "
                         "WHERE schema_name = 'public'").fetchone() == (1,)
    # TLS is offered, not required: plain connections still log in with SCRAM, and are
    # never offered the channel-bound mechanism.
    r = psql(t, "host=127.0.0.1 user=alice sslmode=disable", "SELECT 7", "s3cret-A")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "7"
    # A client that does not trust the certificate refuses it.
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(tmp_path / "other.key"), "-out", str(other), "-days", "1",
                    "-subj", "/CN=localhost"], check=True, capture_output=True)
    r = psql(t, f"host=localhost user=alice sslmode=verify-full sslrootcert={other}",
             "SELECT 1", "s3cret-A")
    assert r.returncode != 0 and "certificate verify failed" in r.stderr, r.stderr


def test_tls_required_refuses_plain_connections(tarn_factory, tmp_path, tls_files):
    cert, key = tls_files
    t = tarn_factory.start(config=config(
        tmp_path, USERS + f'[pg.tls]\ncert = "{cert}"\nkey = "{key}"\nrequired = true\n'))
    with pytest.raises(psycopg.OperationalError) as e:
        connect(t, user="alice", password="s3cret-A", sslmode="disable")
    assert "accepts only TLS connections" in str(e.value)
    with connect(t, user="alice", password="s3cret-A", sslmode="require") as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_bad_tls_files_stop_startup(tmp_path, tls_files):
    cert, key = tls_files
    missing = tmp_path / "missing.pem"
    code, out, wrote = run_tarn_expect_failure(
        tmp_path / "w1", config=config(tmp_path, f'[pg.tls]\ncert = "{missing}"\nkey = "{key}"\n'))
    assert code != 0 and not wrote
    assert "pg.tls.cert" in out and "missing.pem" in out, out[-2000:]

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    code, out, wrote = run_tarn_expect_failure(
        tmp_path / "w2", config=config(tmp_path, f'[pg.tls]\ncert = "{garbage}"\nkey = "{key}"\n'))
    assert code != 0 and not wrote
    assert "pg.tls.cert" in out, out[-2000:]

    # A key that is not the certificate's.
    other_key = tmp_path / "other.key"
    subprocess.run(["openssl", "genrsa", "-out", str(other_key), "2048"], check=True,
                   capture_output=True)
    code, out, wrote = run_tarn_expect_failure(
        tmp_path / "w3", config=config(tmp_path, f'[pg.tls]\ncert = "{cert}"\nkey = "{other_key}"\n'))
    assert code != 0 and not wrote
    assert "pg.tls" in out, out[-2000:]


def test_passwordless_server_stays_on_loopback(tmp_path):
    code, out, wrote = run_tarn_expect_failure(
        tmp_path / "w", extra_args=["--pg-addr", "0.0.0.0:0"])
    assert code != 0 and not wrote
    assert "pg.addr" in out and "[auth.users]" in out, out[-2000:]
    # With users, listening on every address is allowed.
    code, out, wrote = run_tarn_expect_failure(
        tmp_path / "w2", config=config(tmp_path, '[pg]\nauth_method = "trust"\n' + USERS),
        extra_args=["--pg-addr", "0.0.0.0:0"])
    assert code != 0 and not wrote and "pg.addr" in out, out[-2000:]


def test_startup_settings_apply_and_bad_ones_refuse(tarn):
    with connect(tarn, user="tarn") as c:
        c.execute("CREATE DATABASE sales")
        c.execute("CREATE TABLE sales.orders AS SELECT 1 AS id")
    with connect(tarn, user="tarn", options="-c statement_timeout=5s -c search_path=sales",
                 application_name="bi-tool") as c:
        assert c.execute("SHOW statement_timeout").fetchone() == ("5s",)
        assert c.execute("SHOW application_name").fetchone() == ("bi-tool",)
        assert c.execute("SHOW search_path").fetchone() == ("sales",)
        assert c.execute("SELECT id FROM orders").fetchall() == [(1,)]
        c.execute("SET application_name = 'other'")
        assert c.pgconn.parameter_status(b"application_name") == b"other"
        c.execute("RESET application_name")
        assert c.execute("SHOW application_name").fetchone() == ("bi-tool",)
    with pytest.raises(psycopg.OperationalError) as e:
        connect(tarn, user="tarn", options="-c TimeZone=Mars/Olympus")
    assert "TimeZone" in str(e.value)
    with connect(tarn, user="tarn", options="-c TimeZone=Europe/Berlin") as c:
        assert c.pgconn.parameter_status(b"TimeZone") == b"Europe/Berlin"
        text = c.execute("SELECT CAST(TIMESTAMPTZ '2026-01-01 12:00:00+00' AS TEXT)").fetchone()[0]
        assert "13:00:00+01" in text, text


def test_file_access_only_for_listed_users(tarn_factory, tmp_path):
    """Statements that name a server path read or write whatever the server can: only users in
    [auth] file_access may run them (Postgres: superusers, pg_write_server_files)."""
    out = tmp_path / "out"
    t = tarn_factory.start(config=config(tmp_path, '[auth]\nfile_access = ["alice"]\n' + USERS))
    with connect(t, user="bob", password="hunter2") as c:
        for sql in [
            f"COPY (SELECT 1 AS a) TO '{out}/b.parquet' STORED AS PARQUET",
            f"EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{out}/b.parquet' STORED AS PARQUET",
            f"CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '{tmp_path}/'",
            f"CREATE CRAWLER peek ON '{tmp_path}/' INTO public",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
                c.execute(sql)
            assert "[auth] file_access" in str(e.value), sql
        assert not out.exists()
        # Everything else still works for bob, and the refusals left the session usable.
        assert c.execute("SELECT current_user, count(*) FROM (VALUES (1), (2)) v(x)"
                         ).fetchone() == ("bob", 2)
    # HTTP /query has no user: with users configured it may not name files either.
    r = requests.post(t.http_url + "/query", json={
        "sql": f"COPY (SELECT 1 AS a) TO '{out}/h.parquet' STORED AS PARQUET"}, timeout=30)
    assert r.status_code == 400 and r.json()["sqlstate"] == "42501", r.text
    assert not out.exists()
    with connect(t, user="alice", password="s3cret-A") as c:
        c.execute(f"COPY (SELECT 7 AS a) TO '{out}/a.parquet' STORED AS PARQUET")
        c.execute(f"CREATE EXTERNAL TABLE mine STORED AS PARQUET LOCATION '{out}/'")
        assert c.execute("SELECT a FROM mine").fetchone() == (7,)


def test_file_access_names_only_configured_users(tmp_path):
    code, out, wrote = run_tarn_expect_failure(
        tmp_path / "w", config=config(tmp_path, '[auth]\nfile_access = ["carol"]\n' + USERS))
    assert code != 0 and not wrote
    assert 'auth.file_access: "carol" is not one of [auth.users]' in out, out[-2000:]
