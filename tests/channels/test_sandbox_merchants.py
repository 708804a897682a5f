"""Merchant webhook receivers: the sandbox playing a merchant's server for paycore's webhooks.

The receiver records exactly what it got and answers as told; it never checks signatures, so the
tests check them themselves from the recorded headers and raw body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
import requests

from sandbox.client import SandboxClientError

SECRET = b"merchant-webhook-secret"


def _post(url: str, payload: dict, *, timeout: float = 5.0, signature: str | None = None) -> requests.Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    sig = signature or hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Paycore-Signature": sig, "X-Paycore-Event": "payment.succeeded"}
    return requests.post(url, data=body, headers=headers, timeout=timeout)


@pytest.fixture
def merchant(sandbox) -> dict:
    return sandbox.create_merchant()


def test_a_receiver_gets_a_notify_url_on_the_gateway(sandbox, sandbox_gateway, merchant):
    assert merchant["notify_url"] == f"{sandbox_gateway.base_url}/_sandbox/merchants/{merchant['id']}/notify"
    assert sandbox.merchant(merchant["id"])["received"] == 0


def test_every_request_is_recorded_with_headers_raw_body_and_time(sandbox, merchant):
    payload = {"event": "payment.succeeded", "payment_no": "P1", "note": "咖啡"}
    resp = _post(merchant["notify_url"] + "/sub?attempt=1", payload)
    assert (resp.status_code, resp.json()) == (200, {"received": True})
    (got,) = sandbox.merchant_requests(merchant["id"])
    assert (got["method"], got["path"], got["query"]) == (
        "POST",
        f"/_sandbox/merchants/{merchant['id']}/notify/sub",
        "attempt=1",
    )
    assert got["headers"]["X-Paycore-Event"] == "payment.succeeded"
    raw = base64.b64decode(got["body_base64"])
    assert json.loads(raw) == payload and got["body"] == raw.decode()
    assert got["answer_status"] == 200 and got["behaviour"] is None
    assert got["at"] and got["sandbox_at"]
    # The receiver does not verify: the test does, with the documented algorithm.
    expected = hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(got["headers"]["X-Paycore-Signature"], expected)


def test_a_forged_signature_is_recorded_not_judged(sandbox, merchant):
    assert _post(merchant["notify_url"], {"x": 1}, signature="0" * 64).status_code == 200
    (got,) = sandbox.merchant_requests(merchant["id"])
    expected = hmac.new(SECRET, base64.b64decode(got["body_base64"]), hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(got["headers"]["X-Paycore-Signature"], expected)


def test_fail_the_next_n_requests_with_a_status(sandbox, merchant):
    sandbox.merchant_fail(merchant["id"], count=2, status=503, body="busy")
    answers = [_post(merchant["notify_url"], {"n": n}) for n in range(3)]
    assert [(a.status_code, a.text) for a in answers[:2]] == [(503, "busy"), (503, "busy")]
    assert answers[2].status_code == 200
    got = sandbox.merchant_requests(merchant["id"])
    assert [g["answer_status"] for g in got] == [503, 503, 200]
    assert [json.loads(g["body"])["n"] for g in got] == [0, 1, 2]
    assert sandbox.merchant(merchant["id"])["behaviours"] == []


def test_time_out_the_next_request(sandbox, merchant):
    sandbox.merchant_timeout(merchant["id"], count=1, seconds=2)
    with pytest.raises(requests.exceptions.ReadTimeout):
        _post(merchant["notify_url"], {"n": 1}, timeout=0.3)
    assert _post(merchant["notify_url"], {"n": 2}).status_code == 200
    got = sandbox.wait_for_merchant_requests(merchant["id"], 2)
    assert got[0]["behaviour"]["kind"] == "timeout" and got[0]["answer_status"] is None
    assert got[1]["answer_status"] == 200


def test_answer_slowly_every_request(sandbox, merchant):
    sandbox.merchant_slow(merchant["id"], seconds=0.3, count=None)
    for n in range(2):
        started = time.monotonic()
        assert _post(merchant["notify_url"], {"n": n}).status_code == 200
        assert time.monotonic() - started >= 0.25
    assert all(g["behaviour"]["kind"] == "slow" for g in sandbox.merchant_requests(merchant["id"]))
    sandbox.clear_merchant_behaviours(merchant["id"])
    assert sandbox.merchant(merchant["id"])["behaviours"] == []


def test_behaviours_run_in_order(sandbox, merchant):
    sandbox.merchant_fail(merchant["id"], count=1, status=500)
    sandbox.merchant_fail(merchant["id"], count=1, status=429)
    assert [_post(merchant["notify_url"], {}).status_code for _ in range(3)] == [500, 429, 200]


def test_wait_for_requests_and_clear_them(sandbox, merchant):
    with pytest.raises(TimeoutError):
        sandbox.wait_for_merchant_requests(merchant["id"], 1, timeout=0.2)
    _post(merchant["notify_url"], {})
    assert len(sandbox.wait_for_merchant_requests(merchant["id"], 1)) == 1
    sandbox.clear_merchant_requests(merchant["id"])
    assert sandbox.merchant_requests(merchant["id"]) == []


def test_receivers_are_separate_and_unknown_ones_are_404(sandbox, merchant):
    other = sandbox.create_merchant()
    _post(merchant["notify_url"], {})
    assert sandbox.merchant_requests(other["id"]) == []
    with pytest.raises(SandboxClientError) as caught:
        sandbox.merchant_requests("m_nope")
    assert caught.value.status == 404
    assert requests.post(merchant["notify_url"].replace(merchant["id"], "m_nope"), timeout=5).status_code == 404


def test_bad_behaviours_are_refused(sandbox, merchant):
    for bad in ({"kind": "explode"}, {"kind": "fail", "status": 99}, {"kind": "slow", "seconds": -1}):
        with pytest.raises(SandboxClientError) as caught:
            sandbox.merchant_behaviour(merchant["id"], **bad)
        assert caught.value.code == "BAD_BEHAVIOUR"
