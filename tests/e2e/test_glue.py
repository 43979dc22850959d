"""The Glue-compatible catalog API on the HTTP port (`X-Amz-Target: AWSGlue.<Operation>`),
called with an unchanged boto3 Glue client, over a lake a tarn crawler catalogued.

moto's Glue is the oracle for response shapes: the same database, tables and partitions are
built in moto from what tarn returned, and every key moto answers with must be in tarn's
answer with the same type (after boto3 parses it, and in the raw JSON). tarn may add keys.
Works on a local lake and, with TARN_E2E_S3_ENDPOINT set, on a lake in the S3 test bucket.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from conftest import S3_BUCKET, S3_ENDPOINT, start_tarn

DB = "lake"
PARTITIONS = [("2024-01-01", "eu"), ("2024-01-02", "us"), ("2024-01-03", "eu")]
# Expression -> the partitions of PARTITIONS it selects.
EXPRESSIONS = {
    "dt = '2024-01-02'": [("2024-01-02", "us")],
    "dt >= '2024-01-02' AND region IN ('eu')": [("2024-01-03", "eu")],
    "region = 'eu'": [("2024-01-01", "eu"), ("2024-01-03", "eu")],
    "region <> 'eu'": [("2024-01-02", "us")],
    "dt > '2024-01-01'": [("2024-01-02", "us"), ("2024-01-03", "eu")],
    "dt BETWEEN '2024-01-01' AND '2024-01-02'": [("2024-01-01", "eu"), ("2024-01-02", "us")],
    "dt = '2024-01-03' OR region = 'us'": [("2024-01-02", "us"), ("2024-01-03", "eu")],
    "(dt < '2024-01-02' OR dt > '2024-01-02') AND region = 'eu'":
        [("2024-01-01", "eu"), ("2024-01-03", "eu")],
    "region IN ('eu', 'us')": PARTITIONS,
    "dt = '2024-02-01'": [],
}
PARQUET_FORMATS = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
}
EVENT_COLUMNS = [("id", "bigint"), ("name", "string"), ("amount", "double"), ("ok", "boolean")]


def events_select(first_id: int, rows: int) -> str:
    values = ", ".join(
        f"({i}, 'n{i}', {i}.5, {'true' if i % 2 else 'false'})"
        for i in range(first_id, first_id + rows)
    )
    return (
        "SELECT CAST(id AS BIGINT) AS id, name, CAST(amount AS DOUBLE) AS amount, ok "
        f"FROM (VALUES {values}) AS v(id, name, amount, ok)"
    )


class Source:
    """A folder of data files outside the warehouse: a local folder, or a fresh prefix of the
    S3 test bucket. `sql(rel)` is how tarn SQL names a path in it; `url` is the folder's URL as
    tarn's catalog (and so Glue's Location) spells it."""

    def __init__(self, local_dir: Path):
        if S3_ENDPOINT:
            self.prefix = f"glue-src-{uuid.uuid4().hex}/"
            self.url = f"s3://{S3_BUCKET}/{self.prefix}"
            self.location = self.url
            self.s3 = boto3.client(
                "s3", endpoint_url=S3_ENDPOINT, aws_access_key_id="testing",
                aws_secret_access_key="testing", region_name="us-east-1",
            )
        else:
            self.dir = Path(local_dir)
            self.dir.mkdir(parents=True, exist_ok=True)
            self.url = self.dir.as_uri() + "/"
            self.location = str(self.dir) + "/"

    def sql(self, rel: str) -> str:
        if S3_ENDPOINT:
            return self.url + rel
        path = self.dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)

    def put(self, rel: str, data: bytes) -> None:
        if S3_ENDPOINT:
            self.s3.put_object(Bucket=S3_BUCKET, Key=self.prefix + rel, Body=data)
        else:
            path = self.dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def copy(self, conn, select: str, rel: str, fmt: str) -> None:
        conn.execute(f"COPY ({select}) TO '{self.sql(rel)}' STORED AS {fmt}")


def run_crawler(conn, name: str) -> dict:
    cur = conn.execute(f"RUN CRAWLER {name}")
    rows = cur.fetchall()
    assert len(rows) == 1, rows
    return dict(zip([d.name for d in cur.description], rows[0]))


def count(v) -> int:
    """A RUN CRAWLER count column: a number, or the list of names it counts."""
    if isinstance(v, (list, tuple)):
        return len(v)
    return int(v)


def glue_client(t):
    return boto3.client(
        "glue", endpoint_url=t.http_url, region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=60),
    )


def record_raw(client) -> list:
    """The raw JSON body of every response the client gets from now on."""
    bodies: list = []

    def hook(response_dict, **_):
        bodies.append(json.loads(response_dict["body"] or b"{}"))

    client.meta.events.register("before-parse.glue.*", hook)
    return bodies


def values(partitions) -> list[tuple]:
    return sorted(tuple(p["Values"]) for p in partitions)


def cols(columns) -> list[tuple]:
    return [(c["Name"], c["Type"]) for c in columns]


def error_of(fn) -> tuple[str, int]:
    with pytest.raises(ClientError) as e:
        fn()
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture(scope="module")
def glue_lake(tmp_path_factory):
    """tarn over a crawled lake: `events` (Parquet, partitioned by dt and region, three
    partitions, a `_SUCCESS` marker, two files in one partition) and `notes` (one CSV file)."""
    src = Source(tmp_path_factory.mktemp("glue-src"))
    t = start_tarn(tmp_path_factory.mktemp("glue") / "warehouse")
    try:
        before = dt.datetime.now(dt.timezone.utc)
        with t.psycopg() as c:
            src.copy(c, events_select(1, 2), "events/dt=2024-01-01/region=eu/part-0.parquet",
                     "PARQUET")
            src.copy(c, events_select(3, 1), "events/dt=2024-01-01/region=eu/part-1.parquet",
                     "PARQUET")
            src.copy(c, events_select(4, 1), "events/dt=2024-01-02/region=us/part-0.parquet",
                     "PARQUET")
            src.copy(c, events_select(5, 1), "events/dt=2024-01-03/region=eu/part-0.parquet",
                     "PARQUET")
            src.put("events/_SUCCESS", b"")
            src.put("events/dt=2024-01-02/region=us/_SUCCESS", b"")
            src.copy(c, "SELECT * FROM (VALUES (1, 'alpha'), (2, 'beta'), (3, 'gamma')) "
                        "AS v(id, note)", "notes/part-0.csv", "CSV")
            c.execute(f"CREATE DATABASE {DB}")
            c.execute(f"CREATE CRAWLER c1 ON '{src.location}' INTO {DB}")
            run = run_crawler(c, "c1")
        after = dt.datetime.now(dt.timezone.utc)
        yield {"t": t, "src": src, "run": run, "before": before, "after": after}
    finally:
        if not t.stopped:
            t.stop()


def test_crawler_run_catalogues_the_lake(glue_lake):
    run = glue_lake["run"]
    assert run["succeeded"] is True, run
    assert count(run["tables_created"]) == 2, run
    assert count(run["tables_updated"]) == 0, run
    assert count(run["partitions_added"]) == 3, run


def test_get_databases_and_database(glue_lake):
    g = glue_client(glue_lake["t"])
    dbs = g.get_databases()["DatabaseList"]
    names = [d["Name"] for d in dbs]
    assert DB in names and len(names) == len(set(names)), names
    lake = g.get_database(Name=DB)["Database"]
    assert lake["Name"] == DB
    assert isinstance(lake["CatalogId"], str) and lake["CatalogId"]
    assert isinstance(lake["CreateTime"], dt.datetime)
    assert lake["CreateTime"].tzinfo is not None
    assert glue_lake["before"] - dt.timedelta(seconds=60) <= lake["CreateTime"] \
        <= glue_lake["after"] + dt.timedelta(seconds=60)
    assert [d for d in dbs if d["Name"] == DB][0]["CreateTime"] == lake["CreateTime"]


def test_get_table_parquet_partitioned(glue_lake):
    g, src = glue_client(glue_lake["t"]), glue_lake["src"]
    r = g.get_table(DatabaseName=DB, Name="events")
    table = r["Table"]
    assert table["Name"] == "events" and table["DatabaseName"] == DB
    assert table["TableType"] == "EXTERNAL_TABLE"
    assert table["VersionId"] == "1"
    sd = table["StorageDescriptor"]
    # partition columns are in PartitionKeys only, as in Glue
    assert cols(sd["Columns"]) == EVENT_COLUMNS
    assert cols(table["PartitionKeys"]) == [("dt", "date"), ("region", "string")]
    assert sd["Location"] == src.url + "events/"
    assert sd["InputFormat"] == PARQUET_FORMATS["InputFormat"]
    assert sd["OutputFormat"] == PARQUET_FORMATS["OutputFormat"]
    assert sd["SerdeInfo"]["SerializationLibrary"] == PARQUET_FORMATS["SerializationLibrary"]
    assert sd["Compressed"] is False
    assert table["Parameters"]["classification"] == "parquet"
    for key in ("CreateTime", "UpdateTime"):
        assert isinstance(table[key], dt.datetime), key
        assert glue_lake["before"] - dt.timedelta(seconds=60) <= table[key] \
            <= glue_lake["after"] + dt.timedelta(seconds=60), key
    assert table["UpdateTime"] >= table["CreateTime"]
    assert isinstance(table["CatalogId"], str) and table["CatalogId"]
    assert table["IsRegisteredWithLakeFormation"] is False


def test_get_table_csv_unpartitioned(glue_lake):
    g, src = glue_client(glue_lake["t"]), glue_lake["src"]
    table = g.get_table(DatabaseName=DB, Name="notes")["Table"]
    sd = table["StorageDescriptor"]
    assert cols(sd["Columns"]) == [("id", "bigint"), ("note", "string")]
    assert table.get("PartitionKeys", []) == []
    assert sd["Location"] == src.url + "notes/"
    assert table["Parameters"]["classification"] == "csv"
    # what Athena needs to read it: text input, a delimited SerDe, the header skipped
    assert sd["InputFormat"] == "org.apache.hadoop.mapred.TextInputFormat"
    assert sd["SerdeInfo"]["SerializationLibrary"] == \
        "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"
    assert sd["SerdeInfo"]["Parameters"]["field.delim"] == ","
    assert table["Parameters"]["skip.header.line.count"] == "1"
    # an unpartitioned table has no partitions in Glue
    assert g.get_partitions(DatabaseName=DB, TableName="notes")["Partitions"] == []


def test_get_tables_lists_both_and_pages(glue_lake):
    g = glue_client(glue_lake["t"])
    tables = g.get_tables(DatabaseName=DB)["TableList"]
    assert sorted(t["Name"] for t in tables) == ["events", "notes"]
    assert all(t["DatabaseName"] == DB for t in tables)
    by_name = {t["Name"]: t for t in tables}
    assert by_name["events"] == g.get_table(DatabaseName=DB, Name="events")["Table"]
    seen, token, pages = [], None, 0
    while True:
        kw = {"NextToken": token} if token else {}
        r = g.get_tables(DatabaseName=DB, MaxResults=1, **kw)
        pages += 1
        assert len(r["TableList"]) <= 1, r["TableList"]
        seen += [t["Name"] for t in r["TableList"]]
        token = r.get("NextToken")
        if not token:
            break
        assert pages < 5, "GetTables paging does not end"
    assert sorted(seen) == ["events", "notes"]


def test_get_partitions_values_and_locations(glue_lake):
    g, src = glue_client(glue_lake["t"]), glue_lake["src"]
    r = g.get_partitions(DatabaseName=DB, TableName="events")
    parts = r["Partitions"]
    assert "NextToken" not in r
    assert values(parts) == PARTITIONS
    table_sd = g.get_table(DatabaseName=DB, Name="events")["Table"]["StorageDescriptor"]
    for p in parts:
        d, region = p["Values"]
        assert p["DatabaseName"] == DB and p["TableName"] == "events"
        assert p["StorageDescriptor"]["Location"] == \
            f"{src.url}events/dt={d}/region={region}/"
        assert cols(p["StorageDescriptor"]["Columns"]) == cols(table_sd["Columns"])
        assert isinstance(p["CreationTime"], dt.datetime)
        assert isinstance(p["CatalogId"], str)


@pytest.mark.parametrize("expression", list(EXPRESSIONS))
def test_get_partitions_expression(glue_lake, expression):
    g = glue_client(glue_lake["t"])
    r = g.get_partitions(DatabaseName=DB, TableName="events", Expression=expression)
    assert values(r["Partitions"]) == EXPRESSIONS[expression]


@pytest.mark.parametrize("expression", [None, "region = 'eu'"])
def test_get_partitions_pages_one_at_a_time(glue_lake, expression):
    g = glue_client(glue_lake["t"])
    kw = {"Expression": expression} if expression else {}
    want = EXPRESSIONS[expression] if expression else PARTITIONS
    seen, token, pages = [], None, []
    while True:
        extra = {"NextToken": token} if token else {}
        r = g.get_partitions(DatabaseName=DB, TableName="events", MaxResults=1, **kw, **extra)
        pages.append(len(r["Partitions"]))
        seen += [tuple(p["Values"]) for p in r["Partitions"]]
        token = r.get("NextToken")
        if not token:
            break
        assert isinstance(token, str) and token
        assert len(pages) <= len(want) + 1, f"paging does not end: {pages}"
    assert all(n <= 1 for n in pages), pages
    # each partition once; at most one empty last page
    assert sorted(seen) == want and len(seen) == len(set(seen))
    assert len(pages) in (len(want), len(want) + 1), pages
    # boto3's own paginator walks the same
    pager = g.get_paginator("get_partitions").paginate(
        DatabaseName=DB, TableName="events", PaginationConfig={"PageSize": 1}, **kw)
    assert sorted(tuple(p["Values"]) for page in pager for p in page["Partitions"]) == want


def test_get_table_versions(glue_lake):
    g = glue_client(glue_lake["t"])
    r = g.get_table_versions(DatabaseName=DB, TableName="events")
    versions = r["TableVersions"]
    assert [v["VersionId"] for v in versions] == ["1"]
    table = versions[0]["Table"]
    assert table["Name"] == "events" and table["VersionId"] == "1"
    assert cols(table["StorageDescriptor"]["Columns"]) == EVENT_COLUMNS
    assert cols(table["PartitionKeys"]) == [("dt", "date"), ("region", "string")]


def test_wire_is_aws_json_1_1(glue_lake):
    t = glue_lake["t"]
    r = requests.post(
        t.http_url + "/", data=json.dumps({"DatabaseName": DB, "Name": "events"}),
        headers={"X-Amz-Target": "AWSGlue.GetTable",
                 "Content-Type": "application/x-amz-json-1.1"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/x-amz-json-1.1")
    table = r.json()["Table"]
    # timestamps are epoch seconds (a JSON number), as AWS sends them
    assert isinstance(table["CreateTime"], (int, float)) \
        and not isinstance(table["CreateTime"], bool)
    assert table["StorageDescriptor"]["Location"] == glue_lake["src"].url + "events/"


# ---- moto as the oracle ----------------------------------------------------------------------

def kind(v, raw: bool) -> str:
    if isinstance(v, bool):
        return "bool"
    if raw and isinstance(v, (int, float)):
        return "number"  # JSON does not tell 1 from 1.0
    return type(v).__name__


def assert_covers(ours, theirs, path: str, raw: bool) -> None:
    """Every key of moto's `theirs` is in tarn's `ours`, with the same type, recursively."""
    assert kind(ours, raw) == kind(theirs, raw), \
        f"{path}: tarn has {kind(ours, raw)} {ours!r}, moto {kind(theirs, raw)} {theirs!r}"
    if isinstance(theirs, dict):
        missing = sorted(set(theirs) - set(ours))
        assert not missing, f"{path}: tarn lacks {missing} (tarn has {sorted(ours)})"
        for k, v in theirs.items():
            assert_covers(ours[k], v, f"{path}.{k}", raw)
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs), f"{path}: {len(ours)} items in tarn, {len(theirs)} in moto"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_covers(a, b, f"{path}[{i}]", raw)


def by(items: list, key) -> dict:
    out = {key(i): i for i in items}
    assert len(out) == len(items), f"duplicate keys in {items}"
    return out


def test_response_shapes_cover_motos(glue_lake):
    g = glue_client(glue_lake["t"])
    tarn_raw = record_raw(g)
    # Everything from tarn first, outside moto's mock.
    database = g.get_database(Name=DB)["Database"]
    tables = g.get_tables(DatabaseName=DB)["TableList"]
    partitions = g.get_partitions(DatabaseName=DB, TableName="events")["Partitions"]
    assert {t["Name"] for t in tables} == {"events", "notes"} and len(partitions) == 3
    calls = [
        ("get_databases", {}),
        ("get_database", {"Name": DB}),
        ("get_tables", {"DatabaseName": DB}),
        ("get_table", {"DatabaseName": DB, "Name": "events"}),
        ("get_table", {"DatabaseName": DB, "Name": "notes"}),
        ("get_partitions", {"DatabaseName": DB, "TableName": "events"}),
        ("get_table_versions", {"DatabaseName": DB, "TableName": "events"}),
    ] + [("get_partitions", {"DatabaseName": DB, "TableName": "events", "Expression": e})
         for e in EXPRESSIONS]
    ours = []
    for op, kw in calls:
        r = getattr(g, op)(**kw)
        r.pop("ResponseMetadata", None)
        ours.append((r, tarn_raw[-1]))

    with mock_aws():
        m = boto3.client("glue", region_name="us-east-1",
                         aws_access_key_id="x", aws_secret_access_key="x")
        moto_raw = record_raw(m)
        model = m.meta.service_model

        def as_input(shape: str, obj: dict) -> dict:
            members = model.shape_for(shape).members
            return {k: v for k, v in obj.items() if k in members}

        m.create_database(DatabaseInput=as_input("DatabaseInput", database))
        for t in tables:
            m.create_table(DatabaseName=DB, TableInput=as_input("TableInput", t))
        for p in partitions:
            m.create_partition(DatabaseName=DB, TableName="events",
                               PartitionInput=as_input("PartitionInput", p))
        theirs = []
        for op, kw in calls:
            r = getattr(m, op)(**kw)
            r.pop("ResponseMetadata", None)
            theirs.append((r, moto_raw[-1]))

    lists = {  # list-valued answers, matched item by item
        "DatabaseList": lambda d: d["Name"],
        "TableList": lambda t: t["Name"],
        "Partitions": lambda p: tuple(p["Values"]),
        "TableVersions": lambda v: v["VersionId"],
    }
    for (op, kw), (o, o_raw), (t, t_raw) in zip(calls, ours, theirs):
        where = f"{op}({kw})"
        for raw, a, b in ((False, o, t), (True, o_raw, t_raw)):
            missing = sorted(set(b) - set(a) - {"ResponseMetadata"})
            assert not missing, f"{where}: tarn's answer lacks {missing}"
            for key, value in b.items():
                if key not in lists:
                    assert_covers(a[key], value, f"{where}.{key}", raw)
                    continue
                mine, its = by(a[key], lists[key]), by(value, lists[key])
                if key == "DatabaseList":  # tarn has more databases than moto
                    assert set(its) <= set(mine), f"{where}: {sorted(its)} vs {sorted(mine)}"
                else:
                    assert sorted(mine) == sorted(its), f"{where}.{key}: {sorted(mine)} vs " \
                        f"{sorted(its)}"
                for k, item in its.items():
                    assert_covers(mine[k], item, f"{where}.{key}[{k}]", raw)


# ---- errors ----------------------------------------------------------------------------------

MISSING = [
    ("get_database", {"Name": "no_such_db"}),
    ("get_table", {"DatabaseName": DB, "Name": "no_such_table"}),
    ("get_table", {"DatabaseName": "no_such_db", "Name": "events"}),
    ("get_tables", {"DatabaseName": "no_such_db"}),
    ("get_partitions", {"DatabaseName": DB, "TableName": "no_such_table"}),
    ("get_table_versions", {"DatabaseName": DB, "TableName": "no_such_table"}),
]
BAD_EXPRESSIONS = ["dt = ", "no_such_column = 'x'"]


def _moto_errors(calls):
    with mock_aws():
        m = boto3.client("glue", region_name="us-east-1",
                         aws_access_key_id="x", aws_secret_access_key="x")
        m.create_database(DatabaseInput={"Name": DB})
        m.create_table(DatabaseName=DB, TableInput={
            "Name": "events",
            "PartitionKeys": [{"Name": "dt", "Type": "date"}, {"Name": "region", "Type": "string"}],
        })
        # moto checks an Expression only against existing partitions: give it one
        m.create_partition(DatabaseName=DB, TableName="events",
                           PartitionInput={"Values": list(PARTITIONS[0])})
        return [error_of(lambda: getattr(m, op)(**kw)) for op, kw in calls]


def test_missing_entities_are_entity_not_found_like_moto(glue_lake):
    g = glue_client(glue_lake["t"])
    ours = [error_of(lambda: getattr(g, op)(**kw)) for op, kw in MISSING]
    theirs = _moto_errors(MISSING)
    assert theirs == [("EntityNotFoundException", 400)] * len(MISSING)
    assert ours == theirs, list(zip(MISSING, ours))


def test_bad_expression_is_invalid_input_like_moto(glue_lake):
    g = glue_client(glue_lake["t"])
    calls = [("get_partitions", {"DatabaseName": DB, "TableName": "events", "Expression": e})
             for e in BAD_EXPRESSIONS]
    ours = [error_of(lambda: getattr(g, op)(**kw)) for op, kw in calls]
    theirs = _moto_errors(calls)
    assert theirs == [("InvalidInputException", 400)] * len(calls)
    assert ours == theirs, list(zip(BAD_EXPRESSIONS, ours))


def test_error_body_and_unknown_operation(glue_lake):
    t = glue_lake["t"]

    def post(target, body):
        return requests.post(
            t.http_url + "/", data=json.dumps(body),
            headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
            timeout=60,
        )

    r = post("AWSGlue.GetTable", {"DatabaseName": DB, "Name": "no_such_table"})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["__type"].split("#")[-1] == "EntityNotFoundException"
    assert "no_such_table" in body["message"]
    r = post("AWSGlue.NoSuchOperation", {})
    assert r.status_code == 400, r.text
    assert r.json()["__type"].split("#")[-1] == "UnknownOperationException"


# ---- recrawl ---------------------------------------------------------------------------------

def test_recrawl_adds_only_the_new_partition(tarn, tmp_path):
    src = Source(tmp_path / "src")
    g = glue_client(tarn)
    with tarn.psycopg() as c:
        src.copy(c, events_select(1, 2), "events/dt=2024-01-01/region=eu/part-0.parquet",
                 "PARQUET")
        src.copy(c, events_select(3, 2), "events/dt=2024-01-02/region=us/part-0.parquet",
                 "PARQUET")
        c.execute(f"CREATE DATABASE {DB}")
        c.execute(f"CREATE CRAWLER c1 ON '{src.location}' INTO {DB}")
        first = run_crawler(c, "c1")
        assert first["succeeded"] is True, first
        assert count(first["tables_created"]) == 1 and count(first["partitions_added"]) == 2
        assert values(g.get_partitions(DatabaseName=DB, TableName="events")["Partitions"]) == \
            [("2024-01-01", "eu"), ("2024-01-02", "us")]

        src.copy(c, events_select(5, 3), "events/dt=2024-01-04/region=us/part-0.parquet",
                 "PARQUET")
        second = run_crawler(c, "c1")
        assert second["succeeded"] is True, second
        assert second["run"] == first["run"] + 1, (first, second)
        assert count(second["partitions_added"]) == 1, second
        assert count(second["tables_created"]) == 0 and count(second["tables_updated"]) == 0
        parts = g.get_partitions(DatabaseName=DB, TableName="events")["Partitions"]
        assert values(parts) == [("2024-01-01", "eu"), ("2024-01-02", "us"),
                                 ("2024-01-04", "us")]
        new = [p for p in parts if p["Values"] == ["2024-01-04", "us"]][0]
        assert new["StorageDescriptor"]["Location"] == \
            f"{src.url}events/dt=2024-01-04/region=us/"
        got = g.get_partitions(DatabaseName=DB, TableName="events",
                               Expression="dt >= '2024-01-02' AND region = 'us'")
        assert values(got["Partitions"]) == [("2024-01-02", "us"), ("2024-01-04", "us")]
        # new partitions are not a new table version (Glue makes none either)
        versions = g.get_table_versions(DatabaseName=DB, TableName="events")["TableVersions"]
        assert [v["VersionId"] for v in versions] == ["1"]

        third = run_crawler(c, "c1")
        assert third["succeeded"] is True and count(third["partitions_added"]) == 0, third
        assert len(g.get_partitions(DatabaseName=DB, TableName="events")["Partitions"]) == 3
