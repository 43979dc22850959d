"""Records put through the Kinesis API, read back with SQL over the Postgres wire."""
import boto3
from botocore.config import Config


def test_kinesis_records_are_rows_of_stream(tarn):
    k = boto3.client("kinesis", endpoint_url=tarn.http_url, region_name="us-east-1",
                     aws_access_key_id="x", aws_secret_access_key="x",
                     config=Config(retries={"max_attempts": 1}))
    k.create_stream(StreamName="events", ShardCount=2)
    sent = [(f"user-{i % 3}", f'{{"i": {i}}}'.encode()) for i in range(20)]
    acks = k.put_records(StreamName="events",
                         Records=[{"PartitionKey": p, "Data": d} for p, d in sent])
    assert acks["FailedRecordCount"] == 0
    with tarn.psycopg() as c:
        rows = c.execute(
            "SELECT shard_id, sequence_number, partition_key, text FROM stream('events') "
            "ORDER BY sequence_number").fetchall()
        assert [(r[0], str(r[1])) for r in rows] == \
            [(a["ShardId"], a["SequenceNumber"]) for a in acks["Records"]]
        assert [(r[2], r[3].encode()) for r in rows] == sent
        per_key = c.execute("SELECT partition_key, count(*) FROM stream('events') "
                            "GROUP BY 1 ORDER BY 1").fetchall()
        assert per_key == [("user-0", 7), ("user-1", 7), ("user-2", 6)]
        arrival = c.execute("SELECT min(arrival_time) <= max(arrival_time) "
                            "FROM stream('events')").fetchone()[0]
        assert arrival is True
