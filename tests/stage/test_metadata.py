"""The emulated instance's metadata service (agent.Metadata) answers as IMDSv2 does: a token
first (PUT, with its TTL header), every read with it, the spot notice 404 until posted."""

import json
import urllib.error
import urllib.request

import pytest

from spotstep_local.agent import Metadata


def call(url: str, method: str = "GET", headers: dict = None):
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


@pytest.fixture
def metadata():
    m = Metadata("i-0123456789abcdef0")
    yield m
    m.stop()


def test_reads_need_a_token_and_the_notice_is_404_until_posted(metadata):
    base = metadata.url + "/latest"
    assert call(base + "/api/token", "PUT")[0] == 400, "the TTL header is required"
    status, token = call(base + "/api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert status == 200 and token
    notice = base + "/meta-data/spot/instance-action"
    rebalance = base + "/meta-data/events/recommendations/rebalance"
    with_token = {"X-aws-ec2-metadata-token": token}
    assert call(notice)[0] == 401, "IMDSv2: no token, no answer"
    assert call(notice, headers=with_token)[0] == 404
    assert call(rebalance, headers=with_token)[0] == 404
    assert call(base + "/meta-data/instance-id", headers=with_token) == (200, "i-0123456789abcdef0")

    metadata.rebalance()
    status, body = call(rebalance, headers=with_token)
    assert status == 200 and "noticeTime" in json.loads(body)
    metadata.notice(120)
    status, body = call(notice, headers=with_token)
    assert status == 200
    assert json.loads(body)["action"] == "terminate" and json.loads(body)["time"].endswith("Z")
    assert [a[2] for a in metadata.asked][:3] == [400, 200, 401]
