"""SigV4 on the AWS-compatible APIs: off on the embedded default, checked once keys are
configured (`[http.aws_credentials]`)."""
import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import start_tarn


def client(t, service, key, secret):
    return boto3.client(service, endpoint_url=t.http_url, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))


@pytest.fixture
def signed_tarn(tmp_path):
    config = tmp_path / "tarn.toml"
    config.write_text('[http.aws_credentials]\nAKIDTARNTEST = "s3cr3t-key"\n')
    t = start_tarn(tmp_path / "warehouse", config=config)
    try:
        yield t
    finally:
        if not t.stopped:
            t.stop()


def code(fn):
    with pytest.raises(ClientError) as e:
        fn()
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_configured_keys_are_required_and_checked(signed_tarn):
    good = client(signed_tarn, "kinesis", "AKIDTARNTEST", "s3cr3t-key")
    good.create_stream(StreamName="s", ShardCount=1)
    good.put_record(StreamName="s", Data=b"x", PartitionKey="k")
    assert good.list_streams()["StreamNames"] == ["s"]
    glue = client(signed_tarn, "glue", "AKIDTARNTEST", "s3cr3t-key")
    assert any(d["Name"] == "public" for d in glue.get_databases()["DatabaseList"])

    wrong_secret = client(signed_tarn, "kinesis", "AKIDTARNTEST", "not-the-key")
    assert code(lambda: wrong_secret.list_streams()) == ("InvalidSignatureException", 400)
    unknown_key = client(signed_tarn, "kinesis", "AKIDNOBODY", "s3cr3t-key")
    assert code(lambda: unknown_key.list_streams()) == ("UnrecognizedClientException", 400)
    wrong_glue = client(signed_tarn, "glue", "AKIDTARNTEST", "nope")
    assert code(lambda: wrong_glue.get_databases()) == ("InvalidSignatureException", 400)

    import requests
    r = requests.post(signed_tarn.http_url + "/", data="{}", timeout=30, headers={
        "X-Amz-Target": "Kinesis_20131202.ListStreams",
        "Content-Type": "application/x-amz-json-1.1"})
    assert r.status_code == 400 and r.json()["__type"] == "MissingAuthenticationTokenException"
    # nothing a refused request asked for happened
    assert good.list_streams()["StreamNames"] == ["s"]


def test_without_keys_any_signature_is_accepted(tarn):
    k = client(tarn, "kinesis", "anything", "at-all")
    k.create_stream(StreamName="open", ShardCount=1)
    assert k.list_streams()["StreamNames"] == ["open"]
