"""The Kinesis Data Streams-compatible API on the HTTP port (`X-Amz-Target:
Kinesis_20131202.<Operation>`, awsJson1_1), called with an unchanged boto3 Kinesis client, raw
HTTP and the aws CLI.

moto's Kinesis is the oracle for response shapes and, where moto checks something, for error
codes: every key moto answers with must be in tarn's answer with the same type (after boto3
parses it, and in the raw JSON); tarn may add keys. Where moto departs from Kinesis, the tests
follow Kinesis (and kinesalite, which copies its answers): moto numbers records 1, 2, 3 per
shard, accepts a PutRecord over 1 MiB and an empty partition key, answers a 257-character
partition key with InvalidArgumentException (Kinesis: ValidationException), and crashes on a
malformed shard iterator or bad base64 (Kinesis: InvalidArgumentException, SerializationException).

Records are told apart by their data, which is unique in every test.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from moto import mock_aws

REGION = "us-east-1"
TARGET = "Kinesis_20131202"
HASH_MAX = 2**128 - 1
MIB = 1 << 20
SEQUENCE = re.compile(r"0|[1-9]\d{0,128}")  # botocore's SequenceNumber pattern
DECIMAL = re.compile(r"0|[1-9]\d*")
SHARD0 = "shardId-000000000000"
SLACK = dt.timedelta(seconds=60)


# ---- helpers ---------------------------------------------------------------------------------

def client(t=None, *, validate: bool = True):
    """A Kinesis client for tarn (`t`), or for moto when `t` is None (inside `mock_aws`).

    No retries: a retried put could store a record twice and hide what the server did."""
    return boto3.session.Session().client(
        "kinesis", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x",
        endpoint_url=t.http_url if t is not None else None,
        config=Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=120,
                      parameter_validation=validate),
    )


def record_raw(k) -> list:
    """The raw JSON body of every response the client gets from now on."""
    bodies: list = []

    def hook(response_dict, **_):
        bodies.append(json.loads(response_dict["body"] or b"{}"))

    k.meta.events.register("before-parse.kinesis.*", hook)
    return bodies


def post(t, operation: str, body=None, *, data: str | None = None) -> requests.Response:
    return requests.post(
        t.http_url + "/", data=data if data is not None else json.dumps(body),
        headers={"X-Amz-Target": f"{TARGET}.{operation}",
                 "Content-Type": "application/x-amz-json-1.1",
                 # what a signing client sends; tarn does not check signatures
                 "Authorization": "AWS4-HMAC-SHA256 Credential=x/20240101/us-east-1/kinesis/"
                                  "aws4_request, SignedHeaders=host, Signature=0"},
        timeout=120,
    )


def error_of(fn) -> tuple[str, int]:
    with pytest.raises(ClientError) as e:
        fn()
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def hash_key(partition_key: str) -> int:
    """Kinesis's rule: the MD5 of the key's UTF-8 bytes, as a 128-bit big-endian integer."""
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")


def ranges(shards) -> list[tuple[str, int, int]]:
    return [(s["ShardId"], int(s["HashKeyRange"]["StartingHashKey"]),
             int(s["HashKeyRange"]["EndingHashKey"])) for s in shards]


def shard_for(shards, h: int) -> str:
    hits = [sid for sid, lo, hi in ranges(shards) if lo <= h <= hi]
    assert len(hits) == 1, f"hash key {h} is in {len(hits)} shards: {ranges(shards)}"
    return hits[0]


def check_shards(shards, n: int) -> None:
    """n open shards, numbered from 0, whose hash key ranges cover 0..2^128-1 once, evenly."""
    assert [s["ShardId"] for s in shards] == [f"shardId-{i:012d}" for i in range(n)]
    for s in shards:
        for key in ("StartingHashKey", "EndingHashKey"):
            v = s["HashKeyRange"][key]
            assert isinstance(v, str) and DECIMAL.fullmatch(v), (key, v)
        start = s["SequenceNumberRange"]["StartingSequenceNumber"]
        assert isinstance(start, str) and SEQUENCE.fullmatch(start), start
        assert "EndingSequenceNumber" not in s["SequenceNumberRange"], s  # open shard
        assert "ParentShardId" not in s, s
    r = ranges(shards)
    assert r[0][1] == 0 and r[-1][2] == HASH_MAX, r
    for (_, _, end), (sid, start, _) in zip(r, r[1:]):
        assert start == end + 1, f"{sid} starts at {start}, the shard before ends at {end}"
    sizes = [hi - lo + 1 for _, lo, hi in r]
    assert min(sizes) > 0 and max(sizes) - min(sizes) < n, f"uneven split: {sizes}"


def iterator(k, stream: str, shard_id: str, kind: str = "TRIM_HORIZON", **kw) -> str:
    it = k.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType=kind,
                              **kw)["ShardIterator"]
    assert isinstance(it, str) and 1 <= len(it) <= 512, it  # botocore's ShardIterator bounds
    return it


def drain(k, it: str, *, limit: int | None = None, max_pages: int = 1000):
    """GetRecords from `it` until a page comes back empty: (records, that last response)."""
    out: list = []
    for _ in range(max_pages):
        r = k.get_records(ShardIterator=it, **({"Limit": limit} if limit else {}))
        ms = r["MillisBehindLatest"]
        assert isinstance(ms, int) and not isinstance(ms, bool) and ms >= 0, r
        out += r["Records"]
        if not r["Records"]:
            return out, r
        it = r["NextShardIterator"]
    pytest.fail(f"GetRecords returned records on {max_pages} pages in a row")


def read_shard(k, stream: str, shard_id: str, kind: str = "TRIM_HORIZON", **kw) -> list:
    return drain(k, iterator(k, stream, shard_id, kind, **kw))[0]


def read_stream(k, stream: str) -> dict[str, list]:
    """Every shard's records from TRIM_HORIZON, by shard id."""
    shards = k.list_shards(StreamName=stream)["Shards"]
    return {s["ShardId"]: read_shard(k, stream, s["ShardId"]) for s in shards}


def datas(records) -> list[bytes]:
    return [r["Data"] for r in records]


def wait_clock_past(t: float, margin: float = 0.005) -> None:
    """Wait until the wall clock has passed `t` by `margin` (so later records get later
    ApproximateArrivalTimestamps, which have millisecond precision)."""
    while time.time() < t + margin:
        time.sleep(margin / 5)


def wait_until(cond, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def check_put_result(res: dict, want_shard: str) -> str:
    assert "ErrorCode" not in res and "ErrorMessage" not in res, res
    assert res["ShardId"] == want_shard, res
    seq = res["SequenceNumber"]
    assert isinstance(seq, str) and SEQUENCE.fullmatch(seq), seq
    return seq


# ---- 1. lifecycle ----------------------------------------------------------------------------

def test_create_describe_list_tag_and_delete_streams(tarn):
    k = client(tarn)
    before = now()
    k.create_stream(StreamName="orders", ShardCount=3)
    after = now()
    # boto3's own waiter passes on its first look: the stream is ACTIVE at once
    k.get_waiter("stream_exists").wait(StreamName="orders",
                                       WaiterConfig={"Delay": 1, "MaxAttempts": 1})
    d = k.describe_stream(StreamName="orders")["StreamDescription"]
    assert d["StreamName"] == "orders"
    assert d["StreamStatus"] == "ACTIVE"
    assert re.fullmatch(r"arn:aws:kinesis:us-east-1:\d{12}:stream/orders", d["StreamARN"]), d
    assert d["RetentionPeriodHours"] == 24
    assert d["HasMoreShards"] is False
    assert before - SLACK <= d["StreamCreationTimestamp"] <= after + SLACK, d
    check_shards(d["Shards"], 3)
    assert k.list_shards(StreamName="orders")["Shards"] == d["Shards"]

    s = k.describe_stream_summary(StreamName="orders")["StreamDescriptionSummary"]
    assert (s["StreamName"], s["StreamARN"], s["StreamStatus"]) == \
        ("orders", d["StreamARN"], "ACTIVE")
    assert s["OpenShardCount"] == 3 and s["RetentionPeriodHours"] == 24
    assert s["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert s["StreamCreationTimestamp"] == d["StreamCreationTimestamp"]

    ls = k.list_streams()
    assert ls["StreamNames"] == ["orders"] and ls["HasMoreStreams"] is False
    [summary] = ls["StreamSummaries"]
    assert summary["StreamName"] == "orders" and summary["StreamARN"] == d["StreamARN"]
    assert summary["StreamStatus"] == "ACTIVE"
    assert summary["StreamCreationTimestamp"] == d["StreamCreationTimestamp"]

    # on-demand streams start with four shards
    k.create_stream(StreamName="clicks", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    od = k.describe_stream(StreamName="clicks")["StreamDescription"]
    assert od["StreamStatus"] == "ACTIVE"
    check_shards(od["Shards"], 4)
    ods = k.describe_stream_summary(StreamName="clicks")["StreamDescriptionSummary"]
    assert ods["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"} and ods["OpenShardCount"] == 4
    assert od["StreamARN"] != d["StreamARN"]
    ls = k.list_streams()
    assert sorted(ls["StreamNames"]) == ["clicks", "orders"], ls
    assert sorted(x["StreamName"] for x in ls["StreamSummaries"]) == ["clicks", "orders"]

    # retention
    k.increase_stream_retention_period(StreamName="orders", RetentionPeriodHours=48)
    assert k.describe_stream(StreamName="orders")["StreamDescription"]["RetentionPeriodHours"] == 48
    assert k.describe_stream_summary(
        StreamName="orders")["StreamDescriptionSummary"]["RetentionPeriodHours"] == 48
    k.decrease_stream_retention_period(StreamName="orders", RetentionPeriodHours=24)
    assert k.describe_stream(StreamName="orders")["StreamDescription"]["RetentionPeriodHours"] == 24
    assert k.describe_stream(StreamName="clicks")["StreamDescription"]["RetentionPeriodHours"] == 24

    # tags: a second add overwrites a key's value
    assert k.list_tags_for_stream(StreamName="orders")["Tags"] == []
    k.add_tags_to_stream(StreamName="orders", Tags={"team": "data", "env": "test"})
    k.add_tags_to_stream(StreamName="orders", Tags={"env": "prod"})
    tags = k.list_tags_for_stream(StreamName="orders")
    assert {t["Key"]: t["Value"] for t in tags["Tags"]} == {"team": "data", "env": "prod"}
    assert len(tags["Tags"]) == 2 and tags["HasMoreTags"] is False
    assert k.list_tags_for_stream(StreamName="clicks")["Tags"] == []

    # delete: gone at once, and a new stream of the same name starts empty
    k.put_record(StreamName="orders", Data=b"before delete", PartitionKey="p")
    k.delete_stream(StreamName="orders")
    assert error_of(lambda: k.describe_stream(StreamName="orders")) == \
        ("ResourceNotFoundException", 400)
    assert k.list_streams()["StreamNames"] == ["clicks"]
    k.create_stream(StreamName="orders", ShardCount=1)
    again = k.describe_stream(StreamName="orders")["StreamDescription"]
    assert again["StreamStatus"] == "ACTIVE"
    check_shards(again["Shards"], 1)
    assert read_shard(k, "orders", SHARD0) == []
    assert k.list_tags_for_stream(StreamName="orders")["Tags"] == []
    assert k.describe_stream(StreamName="clicks")["StreamDescription"]["Shards"] == od["Shards"]


# ---- 2. put and get --------------------------------------------------------------------------

def test_every_record_comes_back_once_on_its_md5_shard(tarn):
    k = client(tarn)
    k.create_stream(StreamName="events", ShardCount=4)
    shards = k.list_shards(StreamName="events")["Shards"]
    rng = random.Random(7)
    keys = [f"user-{i}" for i in range(40)] + ["ключ-é", "a", "x" * 256]
    assert len({shard_for(shards, hash_key(p)) for p in keys}) == 4  # every shard gets some
    sent: list[tuple[bytes, str, str, str]] = []  # (data, partition key, shard, sequence number)
    n = 0

    def payload() -> bytes:
        nonlocal n
        n += 1
        return f"{n:05d}|".encode() + rng.randbytes(rng.randrange(0, 3000))

    # ExplicitHashKey values at the shard boundaries, each with a partition key whose MD5 would
    # put the record on another shard.
    explicit = [(str(lo), sid) for sid, lo, _ in ranges(shards)] + \
        [(str(hi), sid) for sid, _, hi in ranges(shards)]

    def key_not_on(sid: str) -> str:
        return next(p for p in keys if shard_for(shards, hash_key(p)) != sid)

    before = now()
    for i in range(60):
        data, pk = payload(), keys[i % len(keys)]
        want = shard_for(shards, hash_key(pk))
        r = k.put_record(StreamName="events", Data=data, PartitionKey=pk)
        sent.append((data, pk, want, check_put_result(r, want)))
    for ehk, sid in explicit:
        data, pk = payload(), key_not_on(sid)
        r = k.put_record(StreamName="events", Data=data, PartitionKey=pk, ExplicitHashKey=ehk)
        sent.append((data, pk, sid, check_put_result(r, sid)))
    for batch in range(3):
        entries, wants = [], []
        for j in range(200):
            e = {"Data": payload(), "PartitionKey": rng.choice(keys)}
            want = shard_for(shards, hash_key(e["PartitionKey"]))
            if j % 25 == 0:
                e["ExplicitHashKey"], want = explicit[(j // 25 + batch) % len(explicit)]
                e["PartitionKey"] = key_not_on(want)
            entries.append(e)
            wants.append(want)
        r = k.put_records(StreamName="events", Records=entries)
        assert r["FailedRecordCount"] == 0, r
        assert len(r["Records"]) == len(entries)
        for e, res, want in zip(entries, r["Records"], wants):
            sent.append((e["Data"], e["PartitionKey"], want, check_put_result(res, want)))
    after = now()

    assert len({(sid, seq) for _, _, sid, seq in sent}) == len(sent), "a sequence number repeats"
    by_shard: dict[str, list] = {s["ShardId"]: [] for s in shards}
    for rec in sent:
        by_shard[rec[2]].append(rec)
    for sid, recs in by_shard.items():
        seqs = [int(seq) for *_, seq in recs]
        assert seqs == sorted(set(seqs)), f"{sid}: sequence numbers do not increase in put order"

    got = read_stream(k, "events")
    assert sorted(got) == sorted(by_shard)
    total = sum(len(v) for v in got.values())
    assert total == len(sent), f"{total} records read, {len(sent)} put"
    for sid, records in got.items():
        want = by_shard[sid]
        # the shard holds its records once each, in put order, with what was put
        assert datas(records) == [d for d, *_ in want], f"{sid}: records differ from the puts"
        assert [r["PartitionKey"] for r in records] == [pk for _, pk, *_ in want]
        assert [r["SequenceNumber"] for r in records] == [seq for *_, seq in want]
        for r in records:
            ts = r["ApproximateArrivalTimestamp"]
            assert isinstance(ts, dt.datetime) and before - SLACK <= ts <= after + SLACK, r


def test_one_partition_key_keeps_put_order(tarn):
    k = client(tarn)
    k.create_stream(StreamName="ordered", ShardCount=3)
    shards = k.list_shards(StreamName="ordered")["Shards"]
    shard = shard_for(shards, hash_key("order-key"))
    order = []
    for i in range(30):
        order.append(f"single-{i}".encode())
        k.put_record(StreamName="ordered", Data=order[-1], PartitionKey="order-key")
        if i % 10 == 9:
            batch = [f"batch-{i}-{j}".encode() for j in range(20)]
            order += batch
            r = k.put_records(StreamName="ordered",
                              Records=[{"Data": b, "PartitionKey": "order-key"} for b in batch])
            assert r["FailedRecordCount"] == 0 and {x["ShardId"] for x in r["Records"]} == {shard}
            seqs = [int(x["SequenceNumber"]) for x in r["Records"]]
            assert seqs == sorted(set(seqs)), "a batch's sequence numbers follow its order"
    got = read_stream(k, "ordered")
    assert datas(got[shard]) == order
    assert all(v == [] for sid, v in got.items() if sid != shard), got
    seqs = [int(r["SequenceNumber"]) for r in got[shard]]
    assert seqs == sorted(set(seqs))


# ---- 3. iterators ----------------------------------------------------------------------------

def test_iterator_types_limit_and_continuation(tarn):
    k = client(tarn)
    k.create_stream(StreamName="it", ShardCount=1)
    empty, last = drain(k, iterator(k, "it", SHARD0))
    assert empty == [] and last["MillisBehindLatest"] == 0
    assert isinstance(last["NextShardIterator"], str) and last["NextShardIterator"]
    latest_before = iterator(k, "it", SHARD0, "LATEST")

    acks = []
    for i in range(10):
        if i == 5:  # records 5.. arrive strictly later than records ..4
            wait_clock_past(time.time())
        acks.append(k.put_record(StreamName="it", Data=f"r{i}".encode(),
                                 PartitionKey="p")["SequenceNumber"])
    want = [f"r{i}".encode() for i in range(10)]
    records, last = drain(k, iterator(k, "it", SHARD0))
    assert datas(records) == want
    assert [r["SequenceNumber"] for r in records] == acks
    assert last["MillisBehindLatest"] == 0, "caught up at the tip"

    # a LATEST iterator is fixed where the shard ended when it was made
    assert datas(drain(k, latest_before)[0]) == want

    # Limit, and NextShardIterator continuing where the page ended
    it, pages = iterator(k, "it", SHARD0), []
    for _ in range(10):
        r = k.get_records(ShardIterator=it, Limit=3)
        pages.append(datas(r["Records"]))
        ms = r["MillisBehindLatest"]
        assert isinstance(ms, int) and not isinstance(ms, bool) and ms >= 0, r
        if not r["Records"]:
            break
        it = r["NextShardIterator"]
    assert pages == [want[0:3], want[3:6], want[6:9], want[9:10], []], pages

    # AT_ and AFTER_SEQUENCE_NUMBER
    def read(kind, **kw):
        return datas(read_shard(k, "it", SHARD0, kind, **kw))

    assert read("AT_SEQUENCE_NUMBER", StartingSequenceNumber=acks[4]) == want[4:]
    assert read("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=acks[4]) == want[5:]
    assert read("AT_SEQUENCE_NUMBER", StartingSequenceNumber=acks[0]) == want
    assert read("AT_SEQUENCE_NUMBER", StartingSequenceNumber=acks[9]) == want[9:]
    assert read("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=acks[9]) == []

    # AT_TIMESTAMP: the first record that arrived at or after the time
    arrivals = [r["ApproximateArrivalTimestamp"] for r in records]
    assert arrivals == sorted(arrivals) and arrivals[4] < arrivals[5], arrivals
    assert read("AT_TIMESTAMP", Timestamp=arrivals[5]) == want[5:]
    assert read("AT_TIMESTAMP", Timestamp=arrivals[5] - dt.timedelta(microseconds=500)) == \
        [r["Data"] for r in records if r["ApproximateArrivalTimestamp"] >= arrivals[5]
         - dt.timedelta(microseconds=500)]
    assert read("AT_TIMESTAMP", Timestamp=now() - dt.timedelta(hours=1)) == want
    assert read("AT_TIMESTAMP", Timestamp=now() + dt.timedelta(hours=1)) == []

    # LATEST sees only what is put after it
    latest = iterator(k, "it", SHARD0, "LATEST")
    r = k.get_records(ShardIterator=latest)
    assert r["Records"] == [] and r["MillisBehindLatest"] == 0
    k.put_record(StreamName="it", Data=b"r10", PartitionKey="p")
    k.put_records(StreamName="it", Records=[{"Data": b"r11", "PartitionKey": "p"},
                                            {"Data": b"r12", "PartitionKey": "q"}])
    later = [b"r10", b"r11", b"r12"]
    assert datas(drain(k, r["NextShardIterator"])[0]) == later
    assert datas(drain(k, latest)[0]) == later  # an iterator can be used again
    assert datas(read_shard(k, "it", SHARD0)) == want + later


# ---- 4. errors -------------------------------------------------------------------------------

def many(n: int, size: int = 1) -> list[dict]:
    return [{"Data": b"m" * size, "PartitionKey": f"k{i}"} for i in range(n)]


# Calls moto answers as Kinesis does: (validate parameters?, operation, arguments, error code).
LIKE_MOTO = [
    (True, "describe_stream", {"StreamName": "nope"}, "ResourceNotFoundException"),
    (True, "describe_stream_summary", {"StreamName": "nope"}, "ResourceNotFoundException"),
    (True, "list_shards", {"StreamName": "nope"}, "ResourceNotFoundException"),
    (True, "delete_stream", {"StreamName": "nope"}, "ResourceNotFoundException"),
    (True, "put_record", {"StreamName": "nope", "Data": b"x", "PartitionKey": "a"},
     "ResourceNotFoundException"),
    (True, "put_records", {"StreamName": "nope", "Records": many(1)},
     "ResourceNotFoundException"),
    (True, "get_shard_iterator", {"StreamName": "nope", "ShardId": SHARD0,
                                  "ShardIteratorType": "TRIM_HORIZON"},
     "ResourceNotFoundException"),
    (True, "get_shard_iterator", {"StreamName": "s", "ShardId": "shardId-000000000009",
                                  "ShardIteratorType": "TRIM_HORIZON"},
     "ResourceNotFoundException"),
    (True, "list_tags_for_stream", {"StreamName": "nope"}, "ResourceNotFoundException"),
    (True, "add_tags_to_stream", {"StreamName": "nope", "Tags": {"a": "b"}},
     "ResourceNotFoundException"),
    (True, "increase_stream_retention_period", {"StreamName": "nope",
                                                "RetentionPeriodHours": 48},
     "ResourceNotFoundException"),
    (True, "create_stream", {"StreamName": "s", "ShardCount": 1}, "ResourceInUseException"),
    (True, "put_records", {"StreamName": "s", "Records": many(501)}, "ValidationException"),
    (True, "put_records", {"StreamName": "s", "Records": many(1, MIB + 1)},
     "ValidationException"),
    (True, "put_record", {"StreamName": "s", "Data": b"x", "PartitionKey": "a",
                          "ExplicitHashKey": str(2**128)}, "InvalidArgumentException"),
    (True, "increase_stream_retention_period", {"StreamName": "s", "RetentionPeriodHours": 12},
     "InvalidArgumentException"),
    (True, "increase_stream_retention_period", {"StreamName": "s",
                                                "RetentionPeriodHours": 9000},
     "InvalidArgumentException"),
    (True, "decrease_stream_retention_period", {"StreamName": "s", "RetentionPeriodHours": 48},
     "InvalidArgumentException"),
    (True, "decrease_stream_retention_period", {"StreamName": "s", "RetentionPeriodHours": 1},
     "InvalidArgumentException"),
]

# Calls moto gets wrong (accepts, crashes on, or answers with another code): Kinesis's code.
KINESIS_ONLY = [
    (True, "put_record", {"StreamName": "s", "Data": b"x" * (MIB + 1), "PartitionKey": "a"},
     "ValidationException"),
    (True, "put_record", {"StreamName": "s", "Data": b"x", "PartitionKey": "a" * 257},
     "ValidationException"),
    (True, "put_records", {"StreamName": "s", "Records": [{"Data": b"x",
                                                          "PartitionKey": "a" * 257}]},
     "ValidationException"),
    (False, "put_record", {"StreamName": "s", "Data": b"x", "PartitionKey": ""},
     "ValidationException"),
    (False, "put_records", {"StreamName": "s", "Records": [{"Data": b"x", "PartitionKey": ""}]},
     "ValidationException"),
    (True, "get_records", {"ShardIterator": "not-an-iterator"}, "InvalidArgumentException"),
    (True, "get_records", {"ShardIterator": base64.b64encode(b"s:" + SHARD0.encode() + b":zz")
                           .decode()}, "InvalidArgumentException"),
    (True, "get_records", {"ShardIterator": "A" * 200}, "InvalidArgumentException"),
    (True, "get_shard_iterator", {"StreamName": "s", "ShardId": SHARD0,
                                  "ShardIteratorType": "AT_SEQUENCE_NUMBER"},
     "InvalidArgumentException"),
]


def outcome(fn) -> tuple[str, int]:
    """(error code, HTTP status), or ("no error", 200)."""
    try:
        fn()
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    return "no error", 200


def run_errors(k, k_unvalidated, calls) -> list[tuple[str, int]]:
    return [outcome(lambda: getattr(k if v else k_unvalidated, op)(**kw))
            for v, op, kw, _ in calls]


def test_errors_match_kinesis_and_moto(tarn):
    k, nv = client(tarn), client(tarn, validate=False)
    k.create_stream(StreamName="s", ShardCount=2)
    ours = run_errors(k, nv, LIKE_MOTO)
    with mock_aws():
        m, mnv = client(), client(validate=False)
        m.create_stream(StreamName="s", ShardCount=2)
        theirs = run_errors(m, mnv, LIKE_MOTO)
    expected = [(code, 400) for *_, code in LIKE_MOTO]
    assert theirs == expected, "moto changed: " + repr(
        [(c[1], c[2].get("StreamName"), t) for c, t, e in zip(LIKE_MOTO, theirs, expected)
         if t != e])
    wrong = [(op, {a: (b if len(repr(b)) < 60 else "…") for a, b in kw.items()}, got, want)
             for (_, op, kw, _), got, want in zip(LIKE_MOTO, ours, expected) if got != want]
    assert not wrong, wrong

    ours = run_errors(k, nv, KINESIS_ONLY)
    expected = [(code, 400) for *_, code in KINESIS_ONLY]
    wrong = [(op, {a: (b if len(repr(b)) < 60 else "…") for a, b in kw.items()}, got, want)
             for (_, op, kw, _), got, want in zip(KINESIS_ONLY, ours, expected) if got != want]
    assert not wrong, wrong

    # the bounds themselves are accepted: exactly 1 MiB of data, a 256-character key, 500 records
    big = bytes(range(256)) * (MIB // 256)
    k.put_record(StreamName="s", Data=big, PartitionKey="big")
    k.put_record(StreamName="s", Data=b"long key", PartitionKey="k" * 256)
    r = k.put_records(StreamName="s", Records=[{"Data": f"ok{i}".encode(), "PartitionKey": str(i)}
                                               for i in range(500)])
    assert r["FailedRecordCount"] == 0 and len(r["Records"]) == 500
    # retention was left alone by the refused changes
    assert k.describe_stream(StreamName="s")["StreamDescription"]["RetentionPeriodHours"] == 24
    # nothing from a refused call was stored
    got = [d for recs in read_stream(k, "s").values() for d in datas(recs)]
    assert sorted(got) == sorted([big, b"long key"] + [f"ok{i}".encode() for i in range(500)]), \
        f"{len(got)} records stored"


def test_deleted_stream_iterator_is_resource_not_found_like_moto(tarn):
    def run(k):
        k.create_stream(StreamName="gone", ShardCount=1)
        k.put_record(StreamName="gone", Data=b"x", PartitionKey="a")
        it = iterator(k, "gone", SHARD0)
        k.delete_stream(StreamName="gone")
        return error_of(lambda: k.get_records(ShardIterator=it))

    ours = run(client(tarn))
    with mock_aws():
        theirs = run(client())
    assert theirs == ("ResourceNotFoundException", 400)
    assert ours == theirs


def test_error_bodies_bad_base64_and_unknown_operation(tarn):
    client(tarn).create_stream(StreamName="s", ShardCount=1)

    def check(r, code: str) -> dict:
        assert r.status_code == 400, (r.status_code, r.text[:300])
        assert r.headers["Content-Type"].startswith("application/x-amz-json-1.1"), r.headers
        body = r.json()
        assert body["__type"].split("#")[-1] == code, body
        assert isinstance(body["message"], str) and body["message"], body
        return body

    body = check(post(tarn, "DescribeStream", {"StreamName": "nope"}), "ResourceNotFoundException")
    assert "nope" in body["message"]
    # base64 Data that is not base64 is refused before anything is stored, as Kinesis does
    for bad in ["!!!notbase64", "Zm9", "aGVsbG8=x", "aGVsbG8\u00e9"]:
        check(post(tarn, "PutRecord", {"StreamName": "s", "PartitionKey": "a", "Data": bad}),
              "SerializationException")
        check(post(tarn, "PutRecords", {"StreamName": "s", "Records": [
            {"PartitionKey": "a", "Data": "b2s="}, {"PartitionKey": "a", "Data": bad}]}),
            "SerializationException")
    check(post(tarn, "PutRecord", None, data="{not json"), "SerializationException")
    check(post(tarn, "NoSuchOperation", {}), "UnknownOperationException")
    r = post(tarn, "PutRecord", {"StreamName": "s", "PartitionKey": "a", "Data": "b2s="})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/x-amz-json-1.1"), r.headers
    assert set(r.json()) >= {"ShardId", "SequenceNumber"}
    assert datas(read_shard(client(tarn), "s", SHARD0)) == [b"ok"]


# ---- 5. moto as the oracle -------------------------------------------------------------------

def kind(v, raw: bool) -> str:
    if isinstance(v, bool):
        return "bool"
    if raw and isinstance(v, (int, float)):
        return "number"  # JSON does not tell 1 from 1.0
    return type(v).__name__


def canon(v):
    """Lists in a fixed order: items with data, keys, names or shard ids sorted by them."""
    if isinstance(v, dict):
        return {k: canon(x) for k, x in v.items()}
    if isinstance(v, list):
        items = [canon(x) for x in v]
        if items and all(isinstance(x, dict) for x in items):
            for key in ("Data", "Key", "StreamName", "ShardId"):
                if all(key in x for x in items):
                    return sorted(items, key=lambda x: str(x[key]))
            return items
        if items and all(isinstance(x, str) for x in items):
            return sorted(items)
        return items
    return v


def assert_covers(ours, theirs, path: str, raw: bool) -> None:
    """Every key of moto's `theirs` is in tarn's `ours`, with the same type, recursively."""
    assert kind(ours, raw) == kind(theirs, raw), \
        f"{path}: tarn has {kind(ours, raw)} {ours!r:.200}, " \
        f"moto {kind(theirs, raw)} {theirs!r:.200}"
    if isinstance(theirs, dict):
        missing = sorted(set(theirs) - set(ours) - {"ResponseMetadata"})
        assert not missing, f"{path}: tarn lacks {missing} (tarn has {sorted(ours)})"
        for key, v in theirs.items():
            if key != "ResponseMetadata":
                assert_covers(ours[key], v, f"{path}.{key}", raw)
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs), \
            f"{path}: {len(ours)} items in tarn, {len(theirs)} in moto: " \
            f"{ours!r:.300} / {theirs!r:.300}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_covers(a, b, f"{path}[{i}]", raw)


def exercise(k) -> list[tuple[str, dict, dict]]:
    """The same calls on tarn or moto: (label, boto3's answer, the raw JSON)."""
    raw = record_raw(k)
    out = []

    def call(label, op, **kw):
        r = getattr(k, op)(**kw)
        r.pop("ResponseMetadata", None)
        out.append((label, r, raw[-1]))
        return r

    call("create_stream", "create_stream", StreamName="shapes", ShardCount=3)
    call("create_stream on-demand", "create_stream", StreamName="shapes-od",
         StreamModeDetails={"StreamMode": "ON_DEMAND"})
    call("add_tags_to_stream", "add_tags_to_stream", StreamName="shapes",
         Tags={"team": "data", "env": "test"})
    call("put_record", "put_record", StreamName="shapes", Data=b"one", PartitionKey="alpha")
    call("put_record explicit", "put_record", StreamName="shapes", Data=b"two",
         PartitionKey="alpha", ExplicitHashKey=str(HASH_MAX - 12345))  # moto fails on 2^128-1
    call("put_records", "put_records", StreamName="shapes", Records=[
        {"Data": b"three", "PartitionKey": "beta"},
        {"Data": b"four", "PartitionKey": "gamma", "ExplicitHashKey": "0"},
        {"Data": bytes(range(256)), "PartitionKey": "delta"},
        {"Data": b"six", "PartitionKey": "epsilon"},
    ])
    call("put_records on-demand", "put_records", StreamName="shapes-od", Records=[
        {"Data": f"od{i}".encode(), "PartitionKey": f"od-key-{i}"} for i in range(8)])
    for name in ("shapes", "shapes-od"):
        call(f"describe_stream {name}", "describe_stream", StreamName=name)
        call(f"describe_stream_summary {name}", "describe_stream_summary", StreamName=name)
        shards = call(f"list_shards {name}", "list_shards", StreamName=name)["Shards"]
        for s in shards:
            it = call(f"get_shard_iterator {name} {s['ShardId']}", "get_shard_iterator",
                      StreamName=name, ShardId=s["ShardId"],
                      ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            call(f"get_records {name} {s['ShardId']}", "get_records", ShardIterator=it)
    call("list_streams", "list_streams")
    call("list_tags_for_stream", "list_tags_for_stream", StreamName="shapes")
    call("increase_stream_retention_period", "increase_stream_retention_period",
         StreamName="shapes", RetentionPeriodHours=48)
    call("decrease_stream_retention_period", "decrease_stream_retention_period",
         StreamName="shapes", RetentionPeriodHours=24)
    call("delete_stream", "delete_stream", StreamName="shapes-od")
    return out


def test_response_shapes_cover_motos(tarn):
    ours = exercise(client(tarn))  # everything from tarn first, outside moto's mock
    with mock_aws():
        theirs = exercise(client())
    assert [label for label, *_ in ours] == [label for label, *_ in theirs]
    for (label, o, o_raw), (_, t, t_raw) in zip(ours, theirs):
        assert_covers(canon(o), canon(t), label, raw=False)
        assert_covers(canon(o_raw), canon(t_raw), label + " (raw)", raw=True)

    # values moto shares with Kinesis: shard ranges, where each record goes, the data
    answers = {label: (o, t) for (label, o, _), (_, t, _) in zip(ours, theirs)}
    for name in ("shapes", "shapes-od"):
        o, t = answers[f"list_shards {name}"]
        assert ranges(o["Shards"]) == ranges(t["Shards"]), name
    for label in ("put_record", "put_record explicit"):
        o, t = answers[label]
        assert o["ShardId"] == t["ShardId"], label
    for label in ("put_records", "put_records on-demand"):
        o, t = answers[label]
        assert [x["ShardId"] for x in o["Records"]] == [x["ShardId"] for x in t["Records"]]
        assert o["FailedRecordCount"] == t["FailedRecordCount"] == 0
    for label, (o, t) in answers.items():
        if label.startswith("get_records"):
            assert sorted((r["Data"], r["PartitionKey"]) for r in o["Records"]) == \
                sorted((r["Data"], r["PartitionKey"]) for r in t["Records"]), label


# ---- 6. durability ---------------------------------------------------------------------------

THREADS = 4


def producer_payload(thread: int, i: int, rng: random.Random) -> bytes:
    return f"t{thread}-{i:07d}|".encode() + rng.randbytes(rng.randrange(0, 200))


def test_acknowledged_records_survive_a_graceful_restart(tarn_factory, tmp_path):
    wh = tmp_path / "warehouse"
    t = tarn_factory.start(wh)
    k = client(t)
    k.create_stream(StreamName="durable", ShardCount=4)
    k.increase_stream_retention_period(StreamName="durable", RetentionPeriodHours=72)
    k.add_tags_to_stream(StreamName="durable", Tags={"team": "data"})

    def produce(thread: int) -> dict[bytes, tuple[str, str]]:
        kc, rng, acked, i = client(t), random.Random(thread), {}, 0
        for batch in range(5):
            entries = [{"Data": producer_payload(thread, i + j, rng),
                        "PartitionKey": f"pk-{thread}-{(i + j) % 13}"} for j in range(100)]
            i += 100
            r = kc.put_records(StreamName="durable", Records=entries)
            assert r["FailedRecordCount"] == 0, r
            for e, res in zip(entries, r["Records"]):
                acked[e["Data"]] = (res["ShardId"], res["SequenceNumber"])
        return acked

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(produce, range(THREADS)))
    acked = {d: v for r in results for d, v in r.items()}
    assert len(acked) == THREADS * 500
    before = k.describe_stream(StreamName="durable")["StreamDescription"]

    t.stop()
    t2 = tarn_factory.start(wh)
    k2 = client(t2)
    after = k2.describe_stream(StreamName="durable")["StreamDescription"]
    for key in ("StreamName", "StreamARN", "StreamStatus", "Shards", "RetentionPeriodHours",
                "StreamCreationTimestamp"):
        assert after[key] == before[key], key
    assert k2.list_tags_for_stream(StreamName="durable")["Tags"] == [
        {"Key": "team", "Value": "data"}]

    got = read_stream(k2, "durable")
    found = [(r["Data"], (sid, r["SequenceNumber"])) for sid, recs in got.items() for r in recs]
    counts = Counter(d for d, _ in found)
    dups = [d for d, c in counts.items() if c > 1]
    assert not dups, f"{len(dups)} records read more than once"
    assert dict(found) == acked, \
        f"{len(set(acked) - set(counts))} acknowledged records lost, " \
        f"{len(set(counts) - set(acked))} records never put"
    for sid, recs in got.items():
        seqs = [int(r["SequenceNumber"]) for r in recs]
        assert seqs == sorted(set(seqs)), sid
    assert_new_sequence_numbers_follow(k2, "durable", got)
    t2.stop()


def assert_new_sequence_numbers_follow(k, stream: str, got: dict[str, list]) -> None:
    """A record put now gets a larger sequence number than any its shard already holds."""
    shards = k.list_shards(StreamName=stream)["Shards"]
    for sid, lo, _ in ranges(shards):
        r = k.put_record(StreamName=stream, Data=f"after restart {sid}".encode(),
                         PartitionKey="p", ExplicitHashKey=str(lo))
        assert r["ShardId"] == sid
        held = [int(x["SequenceNumber"]) for x in got[sid]]
        assert not held or int(r["SequenceNumber"]) > max(held), \
            f"{sid}: new sequence number {r['SequenceNumber']} after {max(held)}"
        assert datas(read_shard(k, stream, sid))[-1] == f"after restart {sid}".encode()


def test_acknowledged_records_survive_kill_9(tarn_factory, tmp_path):
    wh = tmp_path / "warehouse"
    t = tarn_factory.start(wh)
    client(t).create_stream(StreamName="crash", ShardCount=4)
    lock = threading.Lock()
    acked: dict[bytes, tuple[str, str]] = {}
    attempted: set[bytes] = set()
    answered = [0] * THREADS  # acknowledged calls per producer
    killed = threading.Event()

    def produce(thread: int) -> int:
        """Put until the server dies; keep what it acknowledged. The last thread uses
        PutRecord, the others PutRecords batches of 50."""
        kc, rng, i, calls = client(t), random.Random(thread), 0, 0
        while True:
            n = 1 if thread == THREADS - 1 else 50
            entries = [{"Data": producer_payload(thread, i + j, rng),
                        "PartitionKey": f"pk-{thread}-{(i + j) % 17}"} for j in range(n)]
            i += n
            with lock:
                attempted.update(e["Data"] for e in entries)
            try:
                if n == 1:
                    r = kc.put_record(StreamName="crash", **entries[0])
                    results = [r]
                else:
                    r = kc.put_records(StreamName="crash", Records=entries)
                    results = r["Records"]
            except (BotoCoreError, ClientError):
                if killed.is_set():
                    return calls
                raise
            assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
            calls += 1
            with lock:
                answered[thread] = calls
                for e, res in zip(entries, results):
                    if "ErrorCode" not in res:
                        acked[e["Data"]] = (res["ShardId"], res["SequenceNumber"])
            if killed.is_set():
                return calls

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(produce, n) for n in range(THREADS)]

        def enough() -> bool:
            for f in futures:
                if f.done():
                    f.result()  # a producer failed before the kill: raise its error
            with lock:
                # every producer must be mid-stream when the kill comes, the slow-starting
                # PutRecord one too (its client may still be starting when the others are done)
                return len(acked) >= 1500 and all(c > 0 for c in answered)

        wait_until(enough, "1500 acknowledged records and a call answered for every producer")
        killed.set()
        t.proc.kill()  # SIGKILL mid-flight
        t.proc.wait()
        t.stopped = True
        calls = [f.result(timeout=120) for f in futures]
    assert all(c > 0 for c in calls), calls
    with lock:
        acked_now, attempted_now = dict(acked), set(attempted)

    t2 = tarn_factory.start(wh)
    k2 = client(t2)
    got = read_stream(k2, "crash")
    found = [(r["Data"], (sid, r["SequenceNumber"])) for sid, recs in got.items() for r in recs]
    counts = Counter(d for d, _ in found)
    dups = [d for d, c in counts.items() if c > 1]
    assert not dups, f"{len(dups)} records read more than once, e.g. {dups[:3]}"
    stray = set(counts) - attempted_now
    assert not stray, f"{len(stray)} records read that were never put"
    where = dict(found)
    lost = [d for d in acked_now if d not in where]
    assert not lost, f"{len(lost)} of {len(acked_now)} acknowledged records lost, e.g. {lost[:3]}"
    moved = [d for d, v in acked_now.items() if where[d] != v]
    assert not moved, f"{len(moved)} records came back with another shard or sequence number"
    for sid, recs in got.items():
        seqs = [int(r["SequenceNumber"]) for r in recs]
        assert seqs == sorted(set(seqs)), sid
    assert_new_sequence_numbers_follow(k2, "crash", got)
    t2.stop()


# ---- 7. the aws CLI --------------------------------------------------------------------------

def aws_cli(t, tmp_path: Path, *args: str) -> dict:
    exe = Path(sys.executable).parent / "aws"
    assert exe.exists(), f"{exe} missing: pip install -r tests/e2e/requirements.txt"
    config = tmp_path / "aws-config"
    # v1 sends blob arguments as raw bytes by default; v2 needs this setting (v1 rejects the
    # --cli-binary-format flag, but reads the setting from the config file)
    config.write_text("[default]\nregion = us-east-1\ncli_binary_format = raw-in-base64-out\n")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
           "AWS_MAX_ATTEMPTS": "1", "AWS_PAGER": ""}
    env.pop("AWS_PROFILE", None)
    r = subprocess.run(
        [str(exe), "kinesis", *args, "--endpoint-url", t.http_url, "--output", "json"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert r.returncode == 0, f"aws kinesis {args[0]} exited {r.returncode}: {r.stderr[-2000:]}"
    return json.loads(r.stdout) if r.stdout.strip() else {}


def test_aws_cli_put_and_get(tarn, tmp_path):
    aws_cli(tarn, tmp_path, "create-stream", "--stream-name", "cli", "--shard-count", "2")
    summary = aws_cli(tarn, tmp_path, "describe-stream-summary", "--stream-name", "cli")
    assert summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
    assert summary["StreamDescriptionSummary"]["OpenShardCount"] == 2
    shards = aws_cli(tarn, tmp_path, "list-shards", "--stream-name", "cli")["Shards"]
    check_shards(shards, 2)

    text = "hello from the aws cli ✓"
    put = aws_cli(tarn, tmp_path, "put-record", "--stream-name", "cli", "--partition-key",
                  "cli-key", "--data", text)
    shard = shard_for(shards, hash_key("cli-key"))
    assert put["ShardId"] == shard and SEQUENCE.fullmatch(put["SequenceNumber"]), put
    it = aws_cli(tarn, tmp_path, "get-shard-iterator", "--stream-name", "cli", "--shard-id",
                 shard, "--shard-iterator-type", "TRIM_HORIZON")["ShardIterator"]
    got = aws_cli(tarn, tmp_path, "get-records", "--shard-iterator", it)
    [rec] = got["Records"]
    assert base64.b64decode(rec["Data"]) == text.encode()
    assert rec["PartitionKey"] == "cli-key" and rec["SequenceNumber"] == put["SequenceNumber"]
    assert isinstance(got["MillisBehindLatest"], int)

    # what the CLI put, boto3 reads; what boto3 puts, the CLI reads
    k = client(tarn)
    assert datas(read_shard(k, "cli", shard)) == [text.encode()]
    k.put_record(StreamName="cli", Data=b"\x00\xffbinary", PartitionKey="cli-key")
    got = aws_cli(tarn, tmp_path, "get-records", "--shard-iterator", it)
    assert [base64.b64decode(r["Data"]) for r in got["Records"]] == \
        [text.encode(), b"\x00\xffbinary"]
    names = aws_cli(tarn, tmp_path, "list-streams")["StreamNames"]
    assert names == ["cli"]
    aws_cli(tarn, tmp_path, "delete-stream", "--stream-name", "cli")
    assert client(tarn).list_streams()["StreamNames"] == []
