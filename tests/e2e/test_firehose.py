"""Deliveries (Firehose): records put through the Firehose API (`X-Amz-Target:
Firehose_20150804.<Operation>`, awsJson1_1) or read from a Kinesis-API stream land in a managed
Delta table, exactly once; SQL sees acknowledged records before they are delivered.

moto's Firehose is the oracle for response shapes and for the error codes it checks: every key
moto answers with must be in tarn's answer with the same type (after boto3 parses it, and in the
raw JSON); tarn may add keys. moto accepts what Firehose refuses (a put to a
KinesisStreamAsSource delivery, 501 records, an oversize record); there the tests follow
Firehose.

Every record is a JSON object with a unique `id`; tables are told apart by their names. A new
table exists once its first delivery has committed, so tests that read one wait for that
(`wait_delivery`), never for a fixed time.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import psycopg
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from moto import mock_aws
from psycopg.rows import dict_row

from conftest import lake

REGION = "us-east-1"
TARGET = "Firehose_20150804"
ROLE = "arn:aws:iam::000000000000:role/firehose"
BUCKET = "arn:aws:s3:::tarn-firehose-e2e"
MAX_RECORD = 1000 * 1024  # Firehose's limit on one record
DB = "public"  # tarn's default database
SLACK = dt.timedelta(seconds=60)
UTC = dt.timezone.utc


# ---- helpers ---------------------------------------------------------------------------------

def aws(t, service: str, *, validate: bool = True):
    """A boto3 client for tarn (`t`), or for moto when `t` is None (inside `mock_aws`).

    No retries: a retried put could store records twice and hide what the server did."""
    return boto3.session.Session().client(
        service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x",
        endpoint_url=t.http_url if t is not None else None,
        config=Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=120,
                      parameter_validation=validate),
    )


def s3_destination(table: str, *, database: str = DB, size_mb: int | None = None,
                   interval: int | None = None, prefix: str | None = None) -> dict:
    """An ExtendedS3DestinationConfiguration converting records by the Glue table
    `database.table`: the table tarn delivers into."""
    d = {
        "RoleARN": ROLE,
        "BucketARN": BUCKET,
        "DataFormatConversionConfiguration": {
            "Enabled": True,
            "SchemaConfiguration": {"DatabaseName": database, "TableName": table,
                                    "RoleARN": ROLE},
            "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
            "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {}}},
        },
    }
    hints = {}
    if size_mb is not None:
        hints["SizeInMBs"] = size_mb
    if interval is not None:
        hints["IntervalInSeconds"] = interval
    if hints:
        d["BufferingHints"] = hints
    if prefix is not None:
        d["Prefix"] = prefix
        d["DynamicPartitioningConfiguration"] = {"Enabled": True}
    return d


def record(i: int, **extra) -> bytes:
    return json.dumps({"id": i, "name": f"n{i}", **extra}).encode()


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def deliveries(t) -> dict[str, dict]:
    """system.deliveries, by name."""
    with t.psycopg(row_factory=dict_row) as c:
        return {r["name"]: r for r in c.execute("SELECT * FROM system.deliveries").fetchall()}


def wait_delivery(t, name: str, what: str, cond, timeout: float = 60) -> dict:
    """Polls `name`'s system.deliveries row until `cond(row)`; returns that row."""
    deadline = time.monotonic() + timeout
    row = None
    while True:
        row = deliveries(t).get(name)
        if row is not None and cond(row):
            return row
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {name}: {what}\n"
                        f"system.deliveries row: {row}\n--- stderr ---\n{t.stderr()[-3000:]}")
        time.sleep(0.05)


def q(t, sql: str, params=None) -> list[tuple]:
    with t.psycopg() as c:
        return c.execute(sql, params).fetchall()


def sql_error(t, sql: str) -> psycopg.Error:
    with t.psycopg() as c:
        with pytest.raises(psycopg.Error) as e:
            c.execute(sql)
        return e.value


def outcome(fn) -> tuple[str, int]:
    """(error code, HTTP status), or ("no error", 200)."""
    try:
        fn()
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    return "no error", 200


def record_raw(client) -> list:
    """The raw JSON body of every response the client gets from now on."""
    bodies: list = []

    def hook(response_dict, **_):
        bodies.append(json.loads(response_dict["body"] or b"{}"))

    client.meta.events.register("before-parse.*.*", hook)
    return bodies


def data_files(objects, table: str) -> list[str]:
    return [k for k in objects.keys(f"{DB}/{table}/") if k.endswith(".parquet")]


def delta_commits(objects, table: str) -> list[str]:
    return [k for k in objects.keys(f"{DB}/{table}/_delta_log/")
            if re.fullmatch(r".*/\d{20}\.json", k)]


def column_types(t, table: str) -> dict[str, str]:
    """Arrow type names of the table's columns (`DESCRIBE`; over the Postgres wire
    information_schema names Postgres types). Scans of Delta tables read strings as
    Utf8View; both spellings are text, so they are compared as Utf8."""
    rows = q(t, f'DESCRIBE "{DB}"."{table}"')
    return {name: kind.replace("Utf8View", "Utf8") for name, kind, _nullable in rows}


def kpl_aggregate(records: list[tuple[str, bytes]]) -> bytes:
    """A KPL aggregated record (magic, protobuf AggregatedRecord, MD5 of the protobuf) holding
    `records` as (partition key, data) user records."""
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    def field(number: int, payload: bytes) -> bytes:  # length-delimited
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    keys = sorted({k for k, _ in records})
    message = b"".join(field(1, k.encode()) for k in keys)
    for key, data in records:
        inner = varint(1 << 3 | 0) + varint(keys.index(key)) + field(3, data)
        message += field(3, inner)
    return b"\xf3\x89\x9a\xc2" + message + hashlib.md5(message).digest()


# ---- 1. direct put ---------------------------------------------------------------------------

def test_direct_put_rows_are_queryable_at_once_and_delivered_once(tarn):
    f = aws(tarn, "firehose")
    made = f.create_delivery_stream(
        DeliveryStreamName="clicks", DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration=s3_destination("clicks", size_mb=1, interval=1))
    arn = made["DeliveryStreamARN"]
    assert re.fullmatch(r"arn:aws:firehose:us-east-1:\d{12}:deliverystream/clicks", arn), made
    d = f.describe_delivery_stream(DeliveryStreamName="clicks")["DeliveryStreamDescription"]
    assert (d["DeliveryStreamName"], d["DeliveryStreamARN"], d["DeliveryStreamStatus"],
            d["DeliveryStreamType"]) == ("clicks", arn, "ACTIVE", "DirectPut")
    [dest] = d["Destinations"]
    s3 = dest["ExtendedS3DestinationDescription"]
    schema = s3["DataFormatConversionConfiguration"]["SchemaConfiguration"]
    assert (schema["DatabaseName"], schema["TableName"]) == (DB, "clicks")
    assert s3["BufferingHints"] == {"SizeInMBs": 1, "IntervalInSeconds": 1}

    # the first record makes the table, with a schema inferred from it
    sent = {0: {"id": 0, "name": "n0", "score": 0.5, "geo": {"city": "c0", "lat": 1.25}}}
    first = f.put_record(DeliveryStreamName="clicks",
                         Record={"Data": json.dumps(sent[0]).encode()})
    assert isinstance(first["RecordId"], str) and first["RecordId"], first
    record_ids = [first["RecordId"]]
    assert first["Encrypted"] is False
    wait_delivery(tarn, "clicks", "the first delivery", lambda r: r["commits"] >= 1)
    types = column_types(tarn, "clicks")
    assert {c: types.get(c) for c in ("id", "name", "score")} == \
        {"id": "Int64", "name": "Utf8", "score": "Float64"}, types
    assert types.get("geo", "").startswith("Struct"), types

    def check_live() -> None:
        n, total = q(tarn, "SELECT count(*), sum(id) FROM clicks")[0]
        assert (n, total) == (len(sent), sum(sent)), \
            f"{n} rows with sum {total}; {len(sent)} acknowledged with sum {sum(sent)}"

    check_live()
    # acknowledged records are rows at once, delivered or not
    batch = {i: {"id": i, "name": f"n{i}", "score": i / 4} for i in range(1, 501)}
    r = f.put_record_batch(DeliveryStreamName="clicks",
                           Records=[{"Data": json.dumps(v).encode()} for v in batch.values()])
    assert r["FailedPutCount"] == 0 and r["Encrypted"] is False, r
    ids = [x["RecordId"] for x in r["RequestResponses"]]
    assert len(ids) == 500 and all(isinstance(x, str) and x for x in ids)
    assert len(set(ids) | {first["RecordId"]}) == 501, "record ids repeat"
    assert all("ErrorCode" not in x for x in r["RequestResponses"]), r["RequestResponses"][:3]
    record_ids += ids
    sent.update(batch)
    check_live()
    sent[501] = {"id": 501, "name": "n501", "score": 3.0}
    record_ids.append(f.put_record(DeliveryStreamName="clicks", Record={
        "Data": json.dumps(sent[501]).encode()})["RecordId"])
    check_live()
    # one record holding two objects, newline-separated: two rows
    sent[502] = {"id": 502, "name": "n502", "score": 1.0}
    sent[503] = {"id": 503, "name": "n503", "score": 2.0, "ignored": [1, 2]}
    record_ids.append(f.put_record(DeliveryStreamName="clicks", Record={
        "Data": (json.dumps(sent[502]) + "\n" + json.dumps(sent[503]) + "\n").encode()})[
        "RecordId"])
    assert len(set(record_ids)) == 503, "record ids repeat"
    sent[503].pop("ignored")
    check_live()

    # delivered by the 1 s interval: each record once, with its values
    row = wait_delivery(tarn, "clicks", "504 records delivered",
                        lambda r: r["records_delivered"] >= 503 and r["buffered_records"] == 0)
    assert (row["records_delivered"], row["rows_written"], row["error_records"]) == \
        (503, 504, 0), row
    assert (row["source"], row["source_stream"], row["database"], row["table"],
            row["error_table"], row["partition_by"]) == \
        ("direct_put", None, DB, "clicks", "clicks_errors", "none"), row
    assert (row["buffer_size_mb"], row["buffer_interval_seconds"],
            row["idle_flush_seconds"]) == (1.0, 1, 10), row
    assert row["last_error"] is None and row["last_commit_at"] is not None, row
    check_live()
    assert q(tarn, "SELECT count(*), count(DISTINCT id) FROM clicks") == [(504, 504)]
    got = q(tarn, "SELECT id, name, score FROM clicks ORDER BY id")
    assert got == [(i, v["name"], v.get("score")) for i, v in sorted(sent.items())]
    assert q(tarn, "SELECT count(*) FROM clicks WHERE geo IS NULL") == [(503,)]

    # in the lake: a Delta table, one commit per delivery after the one that made it, and the
    # last commit checkpoints the last record id
    objects = lake(tarn.warehouse)
    commits = delta_commits(objects, "clicks")
    assert commits and commits[0].endswith("/00000000000000000000.json"), commits
    assert len(commits) == 1 + row["commits"], (commits, row["commits"])
    assert data_files(objects, "clicks")
    last = [json.loads(line) for line in objects.read(commits[-1]).decode().splitlines()]
    txns = [a["txn"] for a in last if "txn" in a]
    assert len(txns) == 1 and "clicks" in txns[0]["appId"], last
    # a record id is the record's sequence number in the delivery's log
    assert txns[0]["version"] == max(int(x) for x in record_ids), txns

    # DeleteDeliveryStream: gone from the API and from SQL, the table stays
    f.delete_delivery_stream(DeliveryStreamName="clicks")
    assert f.list_delivery_streams()["DeliveryStreamNames"] == []
    assert outcome(lambda: f.describe_delivery_stream(DeliveryStreamName="clicks")) == \
        ("ResourceNotFoundException", 400)
    assert "clicks" not in deliveries(tarn)
    assert q(tarn, "SELECT count(*), count(DISTINCT id), sum(id) FROM clicks") == \
        [(504, 504, sum(sent))]

    # a new delivery into the existing table writes by its schema; deleting it delivers what
    # it buffers (the interval is 900 s, the idle flush 10 s) before it goes
    f.create_delivery_stream(DeliveryStreamName="late", ExtendedS3DestinationConfiguration=
                             s3_destination("clicks", interval=900))
    late = {i: {"id": i, "name": f"n{i}", "score": None} for i in range(1000, 1010)}
    f.put_record_batch(DeliveryStreamName="late", Records=[
        {"Data": json.dumps({"id": i, "name": v["name"], "new_field": 1}).encode()}
        for i, v in late.items()])
    sent.update(late)
    check_live()
    assert deliveries(tarn)["late"]["commits"] == 0
    f.delete_delivery_stream(DeliveryStreamName="late")
    assert deliveries(tarn) == {}
    assert q(tarn, "SELECT id, name, score FROM clicks ORDER BY id") == \
        [(i, v["name"], v.get("score")) for i, v in sorted(sent.items())]
    assert "new_field" not in column_types(tarn, "clicks")
    # the nested record is a struct whose fields SQL reads
    assert q(tarn, "SELECT geo['city'], geo['lat'] FROM clicks WHERE id = 0") == [("c0", 1.25)]


# ---- 2. moto as the oracle -------------------------------------------------------------------

def kind(v, raw: bool) -> str:
    if isinstance(v, bool):
        return "bool"
    if raw and isinstance(v, (int, float)):
        return "number"  # JSON does not tell 1 from 1.0
    return type(v).__name__


def shape_differences(ours, theirs, path: str, raw: bool) -> list[str]:
    """Where tarn's `ours` lacks a key of moto's `theirs`, or has it with another type."""
    if kind(ours, raw) != kind(theirs, raw):
        return [f"{path}: tarn has {kind(ours, raw)} {ours!r:.200}, "
                f"moto {kind(theirs, raw)} {theirs!r:.200}"]
    out = []
    if isinstance(theirs, dict):
        for key, v in theirs.items():
            if key == "ResponseMetadata":
                continue
            if key not in ours:
                out.append(f"{path}: tarn lacks {key} (moto: {v!r:.120})")
            else:
                out += shape_differences(ours[key], v, f"{path}.{key}", raw)
    elif isinstance(theirs, list):
        if len(ours) != len(theirs):
            return [f"{path}: {len(ours)} items in tarn, {len(theirs)} in moto: "
                    f"{ours!r:.300} / {theirs!r:.300}"]
        for i, (a, b) in enumerate(zip(ours, theirs)):
            out += shape_differences(a, b, f"{path}[{i}]", raw)
    return out


def exercise(f, k) -> list[tuple[str, dict, dict]]:
    """The same calls on tarn or moto: (label, boto3's answer, the raw JSON)."""
    raw = record_raw(f)
    out = []

    def call(label, op, **kw):
        r = getattr(f, op)(**kw)
        r.pop("ResponseMetadata", None)
        out.append((label, r, raw[-1]))
        return r

    k.create_stream(StreamName="shapes-src", ShardCount=1)
    stream_arn = k.describe_stream(StreamName="shapes-src")["StreamDescription"]["StreamARN"]
    call("create DirectPut", "create_delivery_stream", DeliveryStreamName="shapes",
         DeliveryStreamType="DirectPut",
         ExtendedS3DestinationConfiguration=s3_destination("shapes_t", size_mb=2, interval=60))
    call("create KinesisStreamAsSource", "create_delivery_stream",
         DeliveryStreamName="shapes-k", DeliveryStreamType="KinesisStreamAsSource",
         KinesisStreamSourceConfiguration={"KinesisStreamARN": stream_arn, "RoleARN": ROLE},
         ExtendedS3DestinationConfiguration=s3_destination("shapes_k", size_mb=1, interval=0))
    call("describe DirectPut", "describe_delivery_stream", DeliveryStreamName="shapes")
    call("describe KinesisStreamAsSource", "describe_delivery_stream",
         DeliveryStreamName="shapes-k")
    call("list", "list_delivery_streams")
    call("list Limit=1", "list_delivery_streams", Limit=1)
    call("list after shapes", "list_delivery_streams", ExclusiveStartDeliveryStreamName="shapes")
    call("list DirectPut", "list_delivery_streams", DeliveryStreamType="DirectPut")
    call("list KinesisStreamAsSource", "list_delivery_streams",
         DeliveryStreamType="KinesisStreamAsSource")
    call("put_record", "put_record", DeliveryStreamName="shapes",
         Record={"Data": record(1)})
    call("put_record_batch", "put_record_batch", DeliveryStreamName="shapes",
         Records=[{"Data": record(i)} for i in range(2, 5)])
    call("delete", "delete_delivery_stream", DeliveryStreamName="shapes-k")
    call("list after delete", "list_delivery_streams")
    return out


# Calls moto answers as Firehose does: (operation, arguments, error code).
ERRORS_LIKE_MOTO = [
    ("describe_delivery_stream", {"DeliveryStreamName": "nope"}, "ResourceNotFoundException"),
    ("delete_delivery_stream", {"DeliveryStreamName": "nope"}, "ResourceNotFoundException"),
    ("put_record", {"DeliveryStreamName": "nope", "Record": {"Data": b"{}"}},
     "ResourceNotFoundException"),
    ("put_record_batch", {"DeliveryStreamName": "nope", "Records": [{"Data": b"{}"}]},
     "ResourceNotFoundException"),
    ("create_delivery_stream", {"DeliveryStreamName": "shapes",
                                "ExtendedS3DestinationConfiguration": s3_destination("other")},
     "ResourceInUseException"),
]


def test_response_shapes_and_error_codes_cover_motos(tarn):
    ours = exercise(aws(tarn, "firehose"), aws(tarn, "kinesis"))
    f = aws(tarn, "firehose")
    our_errors = [outcome(lambda: getattr(f, op)(**kw)) for op, kw, _ in ERRORS_LIKE_MOTO]
    with mock_aws():
        aws(None, "s3").create_bucket(Bucket=BUCKET.rsplit(":", 1)[1])
        theirs = exercise(aws(None, "firehose"), aws(None, "kinesis"))
        m = aws(None, "firehose")
        their_errors = [outcome(lambda: getattr(m, op)(**kw)) for op, kw, _ in ERRORS_LIKE_MOTO]

    expected = [(code, 400) for *_, code in ERRORS_LIKE_MOTO]
    assert their_errors == expected, f"moto changed: {their_errors}"
    assert our_errors == expected, [(op, got) for (op, *_), got, want
                                    in zip(ERRORS_LIKE_MOTO, our_errors, expected) if got != want]

    assert [label for label, *_ in ours] == [label for label, *_ in theirs]
    differences = []
    for (label, o, o_raw), (_, t, t_raw) in zip(ours, theirs):
        differences += shape_differences(o, t, label, raw=False)
        differences += shape_differences(o_raw, t_raw, label + " (raw)", raw=True)
    assert not differences, "\n".join(differences)

    # values Firehose, moto and tarn share
    answers = {label: (o, t) for (label, o, _), (_, t, _) in zip(ours, theirs)}
    for label in ("list", "list Limit=1", "list after shapes", "list DirectPut",
                  "list KinesisStreamAsSource", "list after delete"):
        o, t = answers[label]
        assert o == t, label
    assert answers["list"][0] == {"DeliveryStreamNames": ["shapes", "shapes-k"],
                                  "HasMoreDeliveryStreams": False}
    assert answers["list Limit=1"][0] == {"DeliveryStreamNames": ["shapes"],
                                          "HasMoreDeliveryStreams": True}
    for label in ("describe DirectPut", "describe KinesisStreamAsSource"):
        o = answers[label][0]["DeliveryStreamDescription"]
        t = answers[label][1]["DeliveryStreamDescription"]
        for key in ("DeliveryStreamName", "DeliveryStreamStatus", "DeliveryStreamType",
                    "HasMoreDestinations"):
            assert o[key] == t[key], (label, key)
        assert now() - SLACK <= o["CreateTimestamp"] <= now() + SLACK, o
        [od], [td] = o["Destinations"], t["Destinations"]
        assert od["DestinationId"] == td["DestinationId"]
        os3, ts3 = od["ExtendedS3DestinationDescription"], td["ExtendedS3DestinationDescription"]
        assert os3["BufferingHints"] == ts3["BufferingHints"], label
        osc = os3["DataFormatConversionConfiguration"]["SchemaConfiguration"]
        tsc = ts3["DataFormatConversionConfiguration"]["SchemaConfiguration"]
        assert (osc["DatabaseName"], osc["TableName"]) == (tsc["DatabaseName"], tsc["TableName"])
    o = answers["describe KinesisStreamAsSource"][0]["DeliveryStreamDescription"]
    assert o["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"] == \
        "arn:aws:kinesis:us-east-1:000000000000:stream/shapes-src"
    o, t = answers["put_record_batch"]
    assert (o["FailedPutCount"], o["Encrypted"], len(o["RequestResponses"])) == \
        (t["FailedPutCount"], t["Encrypted"], len(t["RequestResponses"])) == (0, False, 3)


# ---- 3. a Kinesis stream as the source -------------------------------------------------------

def test_stream_source_partitioned_by_arrival_time_from_latest_or_trim_horizon(tarn):
    k, f = aws(tarn, "kinesis"), aws(tarn, "firehose")
    k.create_stream(StreamName="src", ShardCount=2)
    stream_arn = k.describe_stream(StreamName="src")["StreamDescription"]["StreamARN"]
    early = [-i for i in range(1, 6)]
    r = k.put_records(StreamName="src", Records=[
        {"Data": record(i), "PartitionKey": f"p{i}"} for i in early])
    assert r["FailedRecordCount"] == 0
    with tarn.psycopg() as c:
        c.execute("CREATE DELIVERY STREAM latest FROM STREAM src INTO arrivals WITH "
                  "(buffer_interval_seconds = 1, idle_flush_seconds = 1, "
                  "partition_by = 'arrival_time')")
        c.execute("CREATE DELIVERY STREAM everything FROM STREAM src INTO everything WITH "
                  "(buffer_interval_seconds = 1, idle_flush_seconds = 1, "
                  "start = 'trim_horizon')")
    # the Firehose API way: a !{timestamp:…} prefix partitions by arrival time too
    f.create_delivery_stream(
        DeliveryStreamName="by-api", DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": stream_arn, "RoleARN": ROLE},
        ExtendedS3DestinationConfiguration=s3_destination(
            "api_arrivals", interval=1, prefix="year=!{timestamp:yyyy}/month=!{timestamp:MM}/"))
    d = f.describe_delivery_stream(DeliveryStreamName="latest")["DeliveryStreamDescription"]
    assert d["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert d["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"] == stream_arn
    assert sorted(f.list_delivery_streams(DeliveryStreamType="KinesisStreamAsSource")[
        "DeliveryStreamNames"]) == ["by-api", "everything", "latest"]

    before = now()
    late = list(range(40))
    r = k.put_records(StreamName="src", Records=[
        {"Data": record(i, score=i * 1.5), "PartitionKey": f"p{i}"} for i in late])
    assert r["FailedRecordCount"] == 0
    assert {x["ShardId"] for x in r["Records"]} == {"shardId-000000000000",
                                                     "shardId-000000000001"}
    after = now()
    for name, n in (("latest", 40), ("everything", 45), ("by-api", 40)):
        row = wait_delivery(tarn, name, f"{n} records delivered",
                            lambda r, n=n: r["records_delivered"] >= n)
        assert (row["records_delivered"], row["rows_written"], row["error_records"]) == \
            (n, n, 0), row
        assert (row["source"], row["source_stream"]) == ("stream", "src"), row

    rows = deliveries(tarn)
    assert rows["latest"]["partition_by"] == rows["by-api"]["partition_by"] == "arrival_time"
    assert rows["everything"]["partition_by"] == "none"
    assert (rows["latest"]["buffer_interval_seconds"], rows["latest"]["idle_flush_seconds"],
            rows["latest"]["buffer_size_mb"]) == (1, 1, 5.0)
    shown = q(tarn, "SHOW DELIVERY STREAMS")
    assert [r[0] for r in shown] == ["by-api", "everything", "latest"], shown

    # only what was put after the delivery was made, unless it starts at the trim horizon
    assert q(tarn, "SELECT id FROM arrivals ORDER BY id") == [(i,) for i in late]
    assert q(tarn, "SELECT id FROM api_arrivals ORDER BY id") == [(i,) for i in late]
    assert q(tarn, "SELECT id FROM everything ORDER BY id") == [(i,) for i in sorted(early + late)]
    assert q(tarn, "SELECT count(*) FROM everything WHERE score IS NULL") == [(5,)]

    # dt and hour: the record's arrival time (as stream() reports it), in UTC
    arrival = {json.loads(text)["id"]: at for text, at in
               q(tarn, "SELECT text, arrival_time FROM stream('src')")}
    for table in ("arrivals", "api_arrivals"):
        types = column_types(tarn, table)
        assert (types.get("dt"), types.get("hour")) == ("Date32", "Int32"), types
        got = q(tarn, f"SELECT id, dt, hour FROM {table} ORDER BY id")
        want = [(i, arrival[i].astimezone(UTC).date(), arrival[i].astimezone(UTC).hour)
                for i in late]
        assert got == want, table
        for _, day, hour in got:
            assert (before - SLACK).date() <= day <= (after + SLACK).date()
            assert dt.datetime(day.year, day.month, day.day, hour, tzinfo=UTC) <= after, hour
        # the files are in dt=…/hour=… folders
        objects = lake(tarn.warehouse)
        files = data_files(objects, table)
        assert files, table
        folders = {tuple(key.split("/")[2:4]) for key in files}
        assert folders == {(f"dt={day.isoformat()}", f"hour={hour}") for _, day, hour in got}, \
            files
    assert all(key.count("/") == 2 for key in data_files(lake(tarn.warehouse), "everything"))

    # records put later go on arriving; the table reads them at once
    more = list(range(40, 50))
    k.put_records(StreamName="src", Records=[
        {"Data": record(i), "PartitionKey": f"p{i}"} for i in more])
    assert q(tarn, "SELECT count(*), sum(id) FROM arrivals") == [(50, sum(late + more))]
    assert q(tarn, "SELECT count(*), sum(id) FROM everything") == \
        [(55, sum(early + late + more))]

    # a KPL aggregate is its user records: three rows from one Kinesis record
    kpl = [100, 101, 102]
    k.put_record(StreamName="src", PartitionKey="kpl", Data=kpl_aggregate(
        [(f"user-{i % 2}", record(i)) for i in kpl]))
    every = early + late + more + kpl
    assert q(tarn, "SELECT count(*), sum(id) FROM everything") == [(len(every), sum(every))]
    for name, n, table, ids in (("latest", 51, "arrivals", late + more + kpl),
                                ("everything", 56, "everything", every)):
        row = wait_delivery(tarn, name, f"{n} records delivered",
                            lambda r, n=n: r["records_delivered"] >= n)
        assert (row["records_delivered"], row["rows_written"], row["error_records"]) == \
            (n, n + 2, 0), row
        assert q(tarn, f"SELECT id FROM {table} ORDER BY id") == [(i,) for i in sorted(ids)]


# ---- 4. the error table ----------------------------------------------------------------------

def test_records_that_do_not_fit_go_to_the_error_table(tarn):
    k = aws(tarn, "kinesis")
    k.create_stream(StreamName="mixed", ShardCount=2)
    with tarn.psycopg() as c:
        c.execute("CREATE TABLE ev (id BIGINT, name VARCHAR, score DOUBLE)")
        c.execute("CREATE DELIVERY STREAM ev_in FROM STREAM mixed INTO ev WITH "
                  "(buffer_interval_seconds = 1, idle_flush_seconds = 1)")
    MAL, MIS = "DataFormatConversion.MalformedData", "DataFormatConversion.SchemaMismatch"
    sent = [  # (data, rows it is, or the error code)
        (b'{"id": 1, "name": "a", "score": 1.5}', [(1, "a", 1.5)]),
        (b"not json at all", MAL),
        (b'{"id": 2, "name": "b", "unknown": {"x": true}}', [(2, "b", None)]),
        (b"[1, 2, 3]", MAL),
        (b'{"id": "seven", "name": "c"}', MIS),
        (b'{"id": 3}\n{"id": 4, "name": "d", "score": -2.0}', [(3, None, None), (4, "d", -2.0)]),
        (b'"just a string"', MAL),
        (b'{"id": 5, "score": "high"}', MIS),
        (b"\xff\xfe\x00{binary", MAL),
        (b'{"id": 6, "name": "e"}', [(6, "e", None)]),
        (b'{"id": 7, "name": "f"', MAL),
        (b"   ", MAL),
    ]
    before = now()
    r = k.put_records(StreamName="mixed", Records=[
        {"Data": data, "PartitionKey": f"key-{i}"} for i, (data, _) in enumerate(sent)])
    after = now()
    assert r["FailedRecordCount"] == 0, r
    good = sorted(row for _, rows in sent if isinstance(rows, list) for row in rows)
    bad = sorted((ack["ShardId"], int(ack["SequenceNumber"]), code, data)
                 for (data, code), ack in zip(sent, r["Records"]) if isinstance(code, str))
    assert len({s for s, *_ in bad}) == 2, "the bad records are on both shards"

    # the table reads the good records at once, before the delivery
    assert q(tarn, "SELECT id, name, score FROM ev ORDER BY id") == good

    row = wait_delivery(tarn, "ev_in", "every record delivered",
                        lambda r: r["records_delivered"] >= len(sent))
    assert (row["records_delivered"], row["rows_written"], row["error_records"]) == \
        (len(sent), len(good), len(bad)), row
    assert row["error_table"] == "ev_errors"
    assert q(tarn, "SELECT id, name, score FROM ev ORDER BY id") == good

    types = column_types(tarn, "ev_errors")
    assert set(types) == {"error_time", "arrival_time", "source", "shard_id", "sequence_number",
                          "error_code", "error_message", "raw_data"}, types
    errors = q(tarn, "SELECT shard_id, sequence_number, error_code, raw_data, source, "
                     "error_message, arrival_time, error_time FROM ev_errors")
    got = sorted((s, int(seq), code, bytes(raw)) for s, seq, code, raw, *_ in errors)
    assert got == bad
    for _, _, code, _, source, message, arrival, error_time in errors:
        assert source == "mixed"
        assert isinstance(message, str) and message, message
        assert before - SLACK <= arrival <= after + SLACK
        assert arrival <= error_time <= now() + SLACK
    messages = {bytes(raw): m for _, _, _, raw, _, m, *_ in errors}
    assert "array" in messages[b"[1, 2, 3]"], messages[b"[1, 2, 3]"]

    # the error table is a table like any other, and takes more rejects later
    r = k.put_records(StreamName="mixed", Records=[
        {"Data": b'{"id": 8, "name": "g"}', "PartitionKey": "a"},
        {"Data": b"{oops", "PartitionKey": "b"}])
    wait_delivery(tarn, "ev_in", "two more records delivered",
                  lambda r: r["records_delivered"] >= len(sent) + 2)
    assert q(tarn, "SELECT count(*), sum(id) FROM ev") == \
        [(len(good) + 1, sum(i for i, *_ in good) + 8)]
    later = [(code, bytes(raw), seq) for code, raw, seq in
             q(tarn, "SELECT error_code, raw_data, sequence_number FROM ev_errors")
             if bytes(raw) == b"{oops"]
    assert later == [(MAL, b"{oops", r["Records"][1]["SequenceNumber"])]
    assert q(tarn, "SELECT count(*) FROM ev_errors") == [(len(bad) + 1,)]


# ---- 5. partitioned by record fields ---------------------------------------------------------

def test_partition_by_record_fields(tarn):
    f = aws(tarn, "firehose")
    f.create_delivery_stream(
        DeliveryStreamName="kinds",
        ExtendedS3DestinationConfiguration=s3_destination(
            "kinds", interval=1, prefix="events/kind=!{partitionKeyFromQuery:kind}/"))
    prefix = f.describe_delivery_stream(DeliveryStreamName="kinds")[
        "DeliveryStreamDescription"]["Destinations"][0]["ExtendedS3DestinationDescription"][
        "Prefix"]
    assert "!{partitionKeyFromQuery:kind}" in prefix, prefix
    sent = [{"id": i, "kind": "abc"[i % 3], "v": i * 10} for i in range(30)]
    f.put_record_batch(DeliveryStreamName="kinds",
                       Records=[{"Data": json.dumps(s).encode()} for s in sent])
    row = wait_delivery(tarn, "kinds", "30 records delivered",
                        lambda r: r["records_delivered"] >= 30)
    assert (row["partition_by"], row["rows_written"], row["error_records"]) == ("kind", 30, 0)

    def rows(records):
        return [(s["id"], s["kind"], s["v"]) for s in sorted(records, key=lambda s: s["id"])]

    assert q(tarn, "SELECT id, kind, v FROM kinds ORDER BY id") == rows(sent)
    objects = lake(tarn.warehouse)
    files = data_files(objects, "kinds")
    assert {key.split("/")[2] for key in files} == {"kind=a", "kind=b", "kind=c"}, files
    assert all(key.count("/") == 3 for key in files), files
    # and once the table exists, new records are rows at once, in their partitions
    more = [{"id": i, "kind": "ab"[i % 2], "v": 0} for i in range(30, 36)]
    f.put_record_batch(DeliveryStreamName="kinds",
                       Records=[{"Data": json.dumps(s).encode()} for s in more])
    assert q(tarn, "SELECT id, kind, v FROM kinds ORDER BY id") == rows(sent + more)
    assert q(tarn, "SELECT id FROM kinds WHERE kind = 'a' ORDER BY id") == \
        [(s["id"],) for s in sent + more if s["kind"] == "a"]

    # two fields from SQL: nested folders, in the order given
    with tarn.psycopg() as c:
        c.execute("CREATE DELIVERY STREAM regions INTO regions WITH "
                  "(partition_by = 'region, kind', buffer_interval_seconds = 1)")
    regions = [{"id": i, "kind": "xy"[i % 2], "region": ["eu", "us"][i // 4]} for i in range(8)]
    f.put_record_batch(DeliveryStreamName="regions",
                       Records=[{"Data": json.dumps(s).encode()} for s in regions])
    wait_delivery(tarn, "regions", "8 records", lambda r: r["records_delivered"] >= 8)
    assert deliveries(tarn)["regions"]["partition_by"] == "region,kind"
    folders = {tuple(key.split("/")[2:4]) for key in data_files(objects, "regions")}
    assert folders == {("region=eu", "kind=x"), ("region=eu", "kind=y"),
                       ("region=us", "kind=x"), ("region=us", "kind=y")}, folders
    assert q(tarn, "SELECT id, region, kind FROM regions ORDER BY id") == \
        [(s["id"], s["region"], s["kind"]) for s in regions]

    # grouping by a partition column
    def by_kind(records):
        return [(kd, sum(1 for s in records if s["kind"] == kd),
                 sum(s["id"] for s in records if s["kind"] == kd)) for kd in "abc"]

    assert q(tarn, "SELECT kind, count(*), sum(id) FROM kinds GROUP BY kind ORDER BY kind") == \
        by_kind(sent + more)
    assert q(tarn, "SELECT region, kind, count(*) FROM regions GROUP BY 1, 2 ORDER BY 1, 2") == \
        [("eu", "x", 2), ("eu", "y", 2), ("us", "x", 2), ("us", "y", 2)]


# ---- 6. bad input ----------------------------------------------------------------------------

def post(t, operation: str, body=None, *, data: str | None = None) -> requests.Response:
    return requests.post(
        t.http_url + "/", data=data if data is not None else json.dumps(body),
        headers={"X-Amz-Target": f"{TARGET}.{operation}",
                 "Content-Type": "application/x-amz-json-1.1"},
        timeout=120,
    )


def bad_calls(stream_arn: str) -> list[tuple[str, dict, str]]:
    """Calls Firehose refuses: (operation, arguments, error code)."""
    s3 = s3_destination("other")
    no_schema = {k: v for k, v in s3.items() if k != "DataFormatConversionConfiguration"}
    return [
        ("create_delivery_stream", {"DeliveryStreamName": "good",
                                    "ExtendedS3DestinationConfiguration": s3},
         "ResourceInUseException"),
        ("create_delivery_stream", {"DeliveryStreamName": "x1",
                                    "ExtendedS3DestinationConfiguration": no_schema},
         "InvalidArgumentException"),
        ("create_delivery_stream", {"DeliveryStreamName": "x2",
                                    "S3DestinationConfiguration": {"RoleARN": ROLE,
                                                                   "BucketARN": BUCKET}},
         "InvalidArgumentException"),
        ("create_delivery_stream", {"DeliveryStreamName": "x3",
                                    "ExtendedS3DestinationConfiguration":
                                    s3_destination("other", database="no_such_db")},
         "InvalidArgumentException"),
        ("create_delivery_stream", {"DeliveryStreamName": "x4",
                                    "ExtendedS3DestinationConfiguration":
                                    s3_destination("other", size_mb=0)},
         "InvalidArgumentException"),
        ("create_delivery_stream", {"DeliveryStreamName": "x5",
                                    "ExtendedS3DestinationConfiguration":
                                    s3_destination("other", size_mb=129)},
         "InvalidArgumentException"),
        ("create_delivery_stream", {"DeliveryStreamName": "x6",
                                    "ExtendedS3DestinationConfiguration":
                                    s3_destination("other", interval=901)},
         "InvalidArgumentException"),
        ("create_delivery_stream", {"DeliveryStreamName": "x7",
                                    "ExtendedS3DestinationConfiguration":
                                    s3_destination("good_t")},  # the table has a delivery
         "InvalidArgumentException"),
        ("create_delivery_stream", {
            "DeliveryStreamName": "x8", "DeliveryStreamType": "KinesisStreamAsSource",
            "KinesisStreamSourceConfiguration": {
                "KinesisStreamARN": stream_arn.replace("/src", "/no-such-stream"),
                "RoleARN": ROLE},
            "ExtendedS3DestinationConfiguration": s3}, "InvalidArgumentException"),
        ("create_delivery_stream", {
            "DeliveryStreamName": "x9", "DeliveryStreamType": "KinesisStreamAsSource",
            "ExtendedS3DestinationConfiguration": s3}, "InvalidArgumentException"),
        ("describe_delivery_stream", {"DeliveryStreamName": "nope"}, "ResourceNotFoundException"),
        ("delete_delivery_stream", {"DeliveryStreamName": "nope"}, "ResourceNotFoundException"),
        ("put_record", {"DeliveryStreamName": "nope", "Record": {"Data": b"{}"}},
         "ResourceNotFoundException"),
        ("put_record_batch", {"DeliveryStreamName": "nope", "Records": [{"Data": b"{}"}]},
         "ResourceNotFoundException"),
        ("put_record", {"DeliveryStreamName": "good", "Record": {"Data": b"x" * (MAX_RECORD + 1)}},
         "InvalidArgumentException"),
        ("put_record_batch", {"DeliveryStreamName": "good",
                              "Records": [{"Data": b"{}"}, {"Data": b"x" * (MAX_RECORD + 1)}]},
         "InvalidArgumentException"),
        ("put_record_batch", {"DeliveryStreamName": "good",
                              "Records": [{"Data": record(i)} for i in range(501)]},
         "InvalidArgumentException"),
        ("put_record_batch", {"DeliveryStreamName": "good", "Records": []},
         "InvalidArgumentException"),
        ("put_record", {"DeliveryStreamName": "from-stream", "Record": {"Data": b"{}"}},
         "InvalidArgumentException"),
        ("put_record_batch", {"DeliveryStreamName": "from-stream",
                              "Records": [{"Data": b"{}"}]}, "InvalidArgumentException"),
    ]


SQL_ERRORS = [  # (SQLSTATE, statement, text the message must hold)
    ("42704", "DROP DELIVERY STREAM nope", "nope"),
    ("42710", "CREATE DELIVERY STREAM good INTO somewhere", "good"),
    ("42710", "CREATE DELIVERY STREAM from_sql INTO elsewhere", "from_sql"),
    ("22023", "CREATE DELIVERY STREAM s1 INTO t1 WITH (buffer_size_mb = 0)", "buffer_size_mb"),
    ("22023", "CREATE DELIVERY STREAM s1 INTO t1 WITH (buffer_size_mb = 129)", "buffer_size_mb"),
    ("22023", "CREATE DELIVERY STREAM s1 INTO t1 WITH (buffer_interval_seconds = 901)",
     "buffer_interval_seconds"),
    ("22023", "CREATE DELIVERY STREAM s1 INTO t1 WITH (idle_flush_seconds = 901)",
     "idle_flush_seconds"),
    ("22023", "CREATE DELIVERY STREAM s1 INTO t1 WITH (start = 'middle')", "start"),
    ("22023", "CREATE DELIVERY STREAM s1 INTO t1 WITH (partition_by = 'a,,b')", "partition_by"),
    ("22023", "CREATE DELIVERY STREAM s1 INTO t1 WITH (colour = 'red')", "colour"),
    ("22023", "CREATE DELIVERY STREAM s1 INTO good_t", "good_t"),  # the table has a delivery
    ("42P01", "CREATE DELIVERY STREAM s1 FROM STREAM no_such_stream INTO t1", "no_such_stream"),
    ("3F000", "CREATE DELIVERY STREAM s1 INTO no_such_db.t1", "no_such_db"),
]


def test_bad_requests_are_refused_and_the_server_keeps_serving(tarn):
    f, nv, k = aws(tarn, "firehose"), aws(tarn, "firehose", validate=False), aws(tarn, "kinesis")
    k.create_stream(StreamName="src", ShardCount=1)
    stream_arn = k.describe_stream(StreamName="src")["StreamDescription"]["StreamARN"]
    f.create_delivery_stream(DeliveryStreamName="good",
                             ExtendedS3DestinationConfiguration=s3_destination("good_t"))
    f.create_delivery_stream(
        DeliveryStreamName="from-stream", DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": stream_arn, "RoleARN": ROLE},
        ExtendedS3DestinationConfiguration=s3_destination("stream_t"))
    f.create_delivery_stream(DeliveryStreamName="big",
                             ExtendedS3DestinationConfiguration=s3_destination("big_t"))
    with tarn.psycopg() as c:
        c.execute("CREATE DELIVERY STREAM from_sql INTO sql_t")

    calls = bad_calls(stream_arn)
    got = [outcome(lambda: getattr(nv, op)(**kw)) for op, kw, _ in calls]
    wrong = [(op, kw.get("DeliveryStreamName"), g, (code, 400))
             for (op, kw, code), g in zip(calls, got) if g != (code, 400)]
    assert not wrong, wrong

    def check(r: requests.Response, code: str) -> dict:
        assert r.status_code == 400, (r.status_code, r.text[:300])
        assert r.headers["Content-Type"].startswith("application/x-amz-json-1.1"), r.headers
        body = r.json()
        assert body["__type"].split("#")[-1] == code, body
        assert isinstance(body["message"], str) and body["message"], body
        return body

    body = check(post(tarn, "DescribeDeliveryStream", {"DeliveryStreamName": "nope"}),
                 "ResourceNotFoundException")
    assert "nope" in body["message"]
    for bad in ["!!!notbase64", "Zm9", "aGVsbG8=x"]:
        check(post(tarn, "PutRecord", {"DeliveryStreamName": "good", "Record": {"Data": bad}}),
              "SerializationException")
        check(post(tarn, "PutRecordBatch", {"DeliveryStreamName": "good", "Records": [
            {"Data": "e30="}, {"Data": bad}]}), "SerializationException")
    check(post(tarn, "PutRecord", data="{not json"), "SerializationException")
    check(post(tarn, "NoSuchOperation", {}), "UnknownOperationException")

    for sqlstate, sql, named in SQL_ERRORS:
        e = sql_error(tarn, sql)
        assert (e.sqlstate, named in str(e)) == (sqlstate, True), (sql, e.sqlstate, str(e))
    with tarn.psycopg() as c:  # IF [NOT] EXISTS: no error, nothing changed
        c.execute("CREATE DELIVERY STREAM IF NOT EXISTS from_sql INTO elsewhere "
                  "WITH (buffer_interval_seconds = 7)")
        c.execute("DROP DELIVERY STREAM IF EXISTS nope")

    # nothing a refused call asked for was made, and nothing it put was stored
    names = ["big", "from-stream", "from_sql", "good"]
    assert f.list_delivery_streams()["DeliveryStreamNames"] == names
    rows = deliveries(tarn)
    assert sorted(rows) == names
    assert (rows["from_sql"]["table"], rows["from_sql"]["buffer_interval_seconds"]) == \
        ("sql_t", 300)
    assert all(r["buffered_records"] == 0 and r["records_delivered"] == 0 for r in rows.values())
    tables = q(tarn, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
               (DB,))
    assert tables == [], tables

    # and the server still serves: a good put is delivered (dropping flushes it)
    r = f.put_record_batch(DeliveryStreamName="good",
                           Records=[{"Data": record(i)} for i in range(3)])
    assert r["FailedPutCount"] == 0
    with tarn.psycopg() as c:
        c.execute("DROP DELIVERY STREAM good")
    assert q(tarn, "SELECT id, name FROM good_t ORDER BY id") == [(i, f"n{i}") for i in range(3)]

    # batches by their size: the largest batch Firehose takes (4 records of 1000 KiB: 4,096,000
    # bytes <= 4 MiB, about 5.5 MB of JSON) is accepted; over 4 MiB is refused like other bad input
    big = [json.dumps({"id": i, "pad": ""}).encode() for i in range(4)]
    big = [b[:-2] + b"x" * (MAX_RECORD - len(b)) + b'"}' for b in big]
    assert all(len(b) == MAX_RECORD for b in big) and sum(map(len, big)) <= 4 << 20
    r = f.put_record_batch(DeliveryStreamName="big", Records=[{"Data": b} for b in big])
    assert r["FailedPutCount"] == 0 and len(r["RequestResponses"]) == 4, r
    assert outcome(lambda: f.put_record_batch(DeliveryStreamName="big", Records=[
        {"Data": b"y" * MAX_RECORD} for _ in range(5)])) == ("InvalidArgumentException", 400)
    with tarn.psycopg() as c:
        c.execute("DROP DELIVERY STREAM big")
    assert q(tarn, "SELECT id, length(pad) FROM big_t ORDER BY id") == \
        [(i, MAX_RECORD - len(b'{"id": 0, "pad": ""}')) for i in range(4)]


# ---- 7. restart ------------------------------------------------------------------------------

def test_buffered_records_survive_a_graceful_restart_and_are_delivered_once(tarn_factory,
                                                                             tmp_path):
    wh = tmp_path / "warehouse"
    t = tarn_factory.start(wh)
    with t.psycopg() as c:
        c.execute("CREATE TABLE held (id BIGINT, name VARCHAR)")
        c.execute("CREATE DELIVERY STREAM hold INTO held WITH "
                  "(buffer_interval_seconds = 900, idle_flush_seconds = 900)")
    f = aws(t, "firehose")
    made = f.describe_delivery_stream(DeliveryStreamName="hold")["DeliveryStreamDescription"]
    sent: list[int] = []
    for b in range(3):
        ids = list(range(b * 200, b * 200 + 200))
        r = f.put_record_batch(DeliveryStreamName="hold",
                               Records=[{"Data": record(i, extra=b)} for i in ids])
        assert r["FailedPutCount"] == 0
        sent += ids
    f.put_record(DeliveryStreamName="hold", Record={"Data": record(600)})
    sent.append(600)
    live = [(len(sent), sum(sent))]
    assert q(t, "SELECT count(*), sum(id) FROM held") == live
    row = deliveries(t)["hold"]
    assert (row["commits"], row["records_delivered"]) == (0, 0), row
    t.stop()

    # nothing was delivered: the table has only the commit that made it
    objects = lake(wh)
    assert [k.rsplit("/", 1)[1] for k in delta_commits(objects, "held")] == \
        ["00000000000000000000.json"]
    assert data_files(objects, "held") == []

    t2 = tarn_factory.start(wh)
    assert q(t2, "SELECT count(*), sum(id) FROM held") == live
    row = deliveries(t2)["hold"]
    assert (row["buffer_interval_seconds"], row["idle_flush_seconds"], row["commits"]) == \
        (900, 900, 0), row
    f2 = aws(t2, "firehose")
    again = f2.describe_delivery_stream(DeliveryStreamName="hold")["DeliveryStreamDescription"]
    for key in ("DeliveryStreamARN", "CreateTimestamp", "DeliveryStreamType"):
        assert again[key] == made[key], key
    r = f2.put_record_batch(DeliveryStreamName="hold",
                            Records=[{"Data": record(i)} for i in range(601, 651)])
    assert r["FailedPutCount"] == 0
    sent += list(range(601, 651))
    assert q(t2, "SELECT count(*), count(DISTINCT id), sum(id) FROM held") == \
        [(len(sent), len(sent), sum(sent))]

    # dropping the delivery delivers what it holds first
    with t2.psycopg() as c:
        c.execute("DROP DELIVERY STREAM hold")
    assert "hold" not in deliveries(t2)
    assert q(t2, "SELECT id FROM held ORDER BY id") == [(i,) for i in sorted(sent)]
    assert data_files(objects, "held")
    assert outcome(lambda: f2.describe_delivery_stream(DeliveryStreamName="hold")) == \
        ("ResourceNotFoundException", 400)
    t2.stop()

    # and stays delivered, once
    t3 = tarn_factory.start(wh)
    assert deliveries(t3) == {}
    assert q(t3, "SELECT count(*), count(DISTINCT id), sum(id) FROM held") == \
        [(len(sent), len(sent), sum(sent))]
    t3.stop()


# ---- 8. kill -9 ------------------------------------------------------------------------------

THREADS = 4
BATCH = 100


def test_acknowledged_records_are_delivered_exactly_once_after_kill_9(tarn_factory, tmp_path):
    wh = tmp_path / "warehouse"
    t = tarn_factory.start(wh)
    f = aws(t, "firehose")
    f.create_delivery_stream(DeliveryStreamName="crash",
                             ExtendedS3DestinationConfiguration=s3_destination(
                                 "crashed", size_mb=1, interval=1))
    lock = threading.Lock()
    acked: set[int] = set()
    attempted: set[int] = set()
    killed = threading.Event()

    def produce(thread: int) -> int:
        """PutRecordBatch until the server dies; keep what it acknowledged."""
        fc, i, calls = aws(t, "firehose"), 0, 0
        while True:
            ids = [thread * 10_000_000 + i + j for j in range(BATCH)]
            i += BATCH
            with lock:
                attempted.update(ids)
            try:
                r = fc.put_record_batch(DeliveryStreamName="crash", Records=[
                    {"Data": record(n, thread=thread)} for n in ids])
            except (BotoCoreError, ClientError):
                if killed.is_set():
                    return calls
                raise
            assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
            assert r["FailedPutCount"] == 0 and len(r["RequestResponses"]) == BATCH, r
            calls += 1
            with lock:
                acked.update(ids)
            if killed.is_set():
                return calls

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(produce, n) for n in range(THREADS)]

        def acked_count() -> int:
            for fut in futures:
                if fut.done():
                    fut.result()  # a producer failed before the kill: raise its error
            with lock:
                return len(acked)

        deadline = time.monotonic() + 40
        while True:
            acked_count()
            row = deliveries(t)["crash"]
            if row["commits"] >= 3:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"fewer than 3 deliveries in 40 s under load: {row}\n"
                            f"--- stderr ---\n{t.stderr()[-3000:]}")
            time.sleep(0.05)
        # then a few more batches, so the kill lands anywhere in the delivery cycle
        target = acked_count() + BATCH * random.randint(1, 3 * THREADS)
        while acked_count() < target:
            if time.monotonic() > deadline:
                pytest.fail(f"producers stalled: {acked_count()} acknowledged\n"
                            f"--- stderr ---\n{t.stderr()[-3000:]}")
            time.sleep(0.005)
        killed.set()
        t.kill()  # SIGKILL mid-load
        calls = [fut.result(timeout=120) for fut in futures]
    assert all(c > 0 for c in calls), calls
    with lock:
        acked_now, attempted_now = set(acked), set(attempted)
    assert len(acked_now) >= 3 * BATCH
    print(f"{len(acked_now)} records acknowledged, {len(attempted_now)} put, in {calls} calls")

    def check(ids: list[int], when: str) -> None:
        assert len(ids) == len(set(ids)), \
            f"{when}: {len(ids) - len(set(ids))} rows more than once"
        lost = acked_now - set(ids)
        assert not lost, f"{when}: {len(lost)} of {len(acked_now)} acknowledged records lost"
        stray = set(ids) - attempted_now
        assert not stray, f"{when}: {len(stray)} rows that were never put"

    t2 = tarn_factory.start(wh)
    live = [i for (i,) in q(t2, "SELECT id FROM crashed")]
    check(live, "after restart")
    with t2.psycopg() as c:
        c.execute("DROP DELIVERY STREAM crash")
    delivered = [i for (i,) in q(t2, "SELECT id FROM crashed")]
    check(delivered, "after the drop delivered everything")
    assert sorted(delivered) == sorted(live), "the delivered rows differ from what was read live"
    assert q(t2, "SELECT count(*) = count(DISTINCT id) FROM crashed") == [(True,)]
    t2.stop()
