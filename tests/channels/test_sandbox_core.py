"""The sandbox core: control API, API faults, notification delivery, retries and faults.

A tiny ``echo`` simulator is plugged in for these tests so that they exercise only the core.
"""

from __future__ import annotations

import json
import sys
import time
import types
from typing import Any

import pytest
import requests

from sandbox import core
from sandbox.client import SandboxClient, SandboxClientError
from sandbox.core import ChannelSimulator, SandboxRequest, SandboxResponse


class EchoSimulator(ChannelSimulator):
    """Counts requests, reports the fault the core chose, and sends notifications on demand."""

    channel = "echo"

    def create_account(self, *, notify_url: str | None, **options: Any) -> dict[str, Any]:
        with self.sandbox.lock:
            key = f"acct{len(self.sandbox.accounts['echo']) + 1}"
            self.sandbox.accounts["echo"][key] = {"notify_url": notify_url}
        return {"ids": {"app_id": key}, "credentials": {"secret": "s3cret"}, "options": dict(options)}

    def handle(self, req: SandboxRequest) -> SandboxResponse:
        fault = self.sandbox.api_fault(self.channel, req.path)
        with self.sandbox.lock:
            trade = self.sandbox.trades["echo"].setdefault("calls", {"count": 0})
            trade["count"] += 1
            self.sandbox.record(trade, "call", path=req.path)
        amount = 100
        if fault is not None and fault.kind == "tamper_amount":
            amount = fault.amount
        return SandboxResponse.json(
            200,
            {
                "path": req.path,
                "target": req.target,
                "amount": amount,
                "fault": fault.kind if fault else None,
                "count": trade["count"],
            },
        )

    def payer_action(self, payment_no: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        if action == "later":

            def mark() -> None:
                with self.sandbox.lock:
                    self.sandbox.trades["echo"][payment_no] = {"status": "DONE"}

            self.sandbox.later(float(params["after_seconds"]), mark)
            return {"scheduled": True}
        if action != "notify":
            raise core.SandboxError(400, "BAD_ACTION", action)
        body = json.dumps({"payment_no": payment_no}).encode()
        nid = self.sandbox.notify(
            "echo",
            params["url"],
            lambda: ({"Content-Type": "application/json", "X-Echo": "1"}, body),
            params.get("schedule", [15, 15, 30]),
            lambda status, _body: status in (200, 204),
            key=payment_no,
        )
        return {"id": nid}


@pytest.fixture(autouse=True)
def echo_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("sandbox_echo_for_tests")
    module.EchoSimulator = EchoSimulator  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sandbox_echo_for_tests", module)
    monkeypatch.setitem(core.SIMULATORS, "echo", "sandbox_echo_for_tests.EchoSimulator")
    monkeypatch.setitem(core.SIMULATORS, "ghost", "sandbox.does_not_exist.GhostSimulator")


@pytest.fixture
def echo_url(sandbox_gateway) -> str:
    return f"{sandbox_gateway.base_url}/echo"


def _calls(sandbox_gateway) -> int:
    with sandbox_gateway.sandbox.lock:
        return sandbox_gateway.sandbox.trades.get("echo", {}).get("calls", {}).get("count", 0)


# --- control API ---------------------------------------------------------------------------
def test_create_account_fills_channel_base_url_and_passes_options(sandbox, sandbox_gateway):
    account = sandbox.create_account("echo", notify_url="http://127.0.0.1:9/cb", mode="x")
    assert account["channel"] == "echo"
    assert account["base_url"] == f"{sandbox_gateway.base_url}/echo"
    assert account["ids"]["app_id"].startswith("acct")
    assert account["options"] == {"mode": "x"}
    assert account["name"].startswith("sandbox-echo-")


def test_sandbox_account_fixture_builds_account_configs_with_distinct_ids(sandbox_account):
    first, second = sandbox_account("echo"), sandbox_account("echo")
    assert first.channel == "echo" and first.credentials["secret"] == "s3cret"
    assert first.account_id != second.account_id
    assert "s3cret" not in repr(first)


def test_unknown_channel_prefix_is_a_json_404(sandbox_gateway):
    resp = requests.get(f"{sandbox_gateway.base_url}/nosuch/v1/x", timeout=5)
    assert resp.status_code == 404
    assert resp.json()["code"] == "UNKNOWN_CHANNEL"


def test_missing_simulator_module_breaks_only_its_channel(sandbox, sandbox_gateway, echo_url):
    resp = requests.get(f"{sandbox_gateway.base_url}/ghost/v1/x", timeout=5)
    assert resp.status_code == 501
    assert resp.json()["code"] == "SIMULATOR_UNAVAILABLE"
    with pytest.raises(SandboxClientError) as err:
        sandbox.create_account("ghost")
    assert err.value.status == 501
    assert requests.get(f"{echo_url}/still/works", timeout=5).status_code == 200


def test_simulator_sees_path_relative_to_prefix_and_target_as_sent(echo_url):
    body = requests.get(f"{echo_url}/v3/pay/x?mchid=1&b=2", timeout=5).json()
    assert body["path"] == "/v3/pay/x"
    assert body["target"] == "/echo/v3/pay/x?mchid=1&b=2"


def test_unknown_control_endpoint_and_bad_fault_kind_are_errors(sandbox, sandbox_gateway):
    assert requests.get(f"{sandbox_gateway.base_url}/_sandbox/nope", timeout=5).status_code == 404
    with pytest.raises(SandboxClientError) as err:
        sandbox.add_fault(kind="explode")
    assert err.value.code == "BAD_FAULT"


def test_trades_json_and_page_show_simulator_state(sandbox, sandbox_gateway, echo_url):
    requests.get(f"{echo_url}/a", timeout=5)
    rows = [r for r in sandbox.trades() if r["channel"] == "echo" and r["key"] == "calls"]
    assert rows and rows[0]["kind"] == "trade" and rows[0]["count"] >= 1
    assert rows[0]["history"][-1]["event"] == "call"
    page = requests.get(f"{sandbox_gateway.base_url}/_sandbox/", timeout=5)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert "calls" in page.text


def test_later_runs_after_the_delay_divided_by_time_factor(sandbox, sandbox_gateway):
    sandbox.act("echo", "L1", "later", after_seconds=100)  # 0.1 s at time_factor 1000
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with sandbox_gateway.sandbox.lock:
            if sandbox_gateway.sandbox.trades["echo"].get("L1"):
                break
        time.sleep(0.02)
    assert sandbox_gateway.sandbox.trades["echo"]["L1"] == {"status": "DONE"}


def test_reset_forgets_accounts_trades_and_faults(sandbox, sandbox_gateway, echo_url):
    sandbox.create_account("echo")
    requests.get(f"{echo_url}/a", timeout=5)
    sandbox.add_fault(kind="http_500", channel="nobody")
    sandbox.reset()
    assert [r for r in sandbox.trades() if r["channel"] == "echo"] == []
    assert sandbox.faults() == []
    assert sandbox_gateway.sandbox.accounts["echo"] == {}


# --- API faults ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "status", "code"), [("http_500", 500, "SYSTEM_ERROR"), ("http_503", 503, "SERVICE_UNAVAILABLE")]
)
def test_http_error_fault_answers_without_processing(sandbox, sandbox_gateway, echo_url, kind, status, code):
    before = _calls(sandbox_gateway)
    sandbox.add_fault(kind=kind, channel="echo", count=1)
    resp = requests.get(f"{echo_url}/a", timeout=5)
    assert (resp.status_code, resp.json()["code"]) == (status, code)
    assert _calls(sandbox_gateway) == before
    assert requests.get(f"{echo_url}/a", timeout=5).status_code == 200  # count=1: only once


def test_http_500_after_processing_keeps_the_effect(sandbox, sandbox_gateway, echo_url):
    before = _calls(sandbox_gateway)
    sandbox.add_fault(kind="http_500", channel="echo", count=1, process=True)
    assert requests.get(f"{echo_url}/a", timeout=5).status_code == 500
    assert _calls(sandbox_gateway) == before + 1


def test_timeout_fault_outlasts_the_client_read_timeout_but_processes(sandbox, sandbox_gateway, echo_url):
    before = _calls(sandbox_gateway)
    sandbox.add_fault(kind="timeout", channel="echo", count=1, seconds=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{echo_url}/a", timeout=(2, 0.3))
    assert _calls(sandbox_gateway) == before + 1


def test_disconnect_fault_drops_the_connection(sandbox, echo_url):
    sandbox.add_fault(kind="disconnect", channel="echo", count=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{echo_url}/a", timeout=5)


def test_signature_and_amount_faults_are_handed_to_the_simulator(sandbox, echo_url):
    sandbox.add_fault(kind="bad_signature", channel="echo", count=1)
    assert requests.get(f"{echo_url}/a", timeout=5).json()["fault"] == "bad_signature"
    sandbox.add_fault(kind="tamper_amount", channel="echo", count=1, amount=1)
    body = requests.get(f"{echo_url}/a", timeout=5).json()
    assert (body["fault"], body["amount"]) == ("tamper_amount", 1)
    assert requests.get(f"{echo_url}/a", timeout=5).json()["fault"] is None


def test_fault_path_filter_and_count_null_lasts_until_cleared(sandbox, echo_url):
    sandbox.add_fault(kind="http_503", channel="echo", path="/refund")
    assert requests.get(f"{echo_url}/pay", timeout=5).status_code == 200
    for _ in range(3):
        assert requests.get(f"{echo_url}/refund?x=1", timeout=5).status_code == 503
    assert sandbox.faults()[0]["hits"] == 3
    sandbox.clear_faults()
    assert requests.get(f"{echo_url}/refund?x=1", timeout=5).status_code == 200


def test_body_contains_selects_requests_by_content(sandbox, echo_url):
    sandbox.add_fault(kind="http_500", channel="echo", body_contains="alipay.trade.refund", count=1)
    url = f"{echo_url}/gateway.do"
    assert requests.post(url, data=b"method=alipay.trade.query", timeout=5).status_code == 200
    assert requests.post(url, data=b"method=alipay.trade.refund", timeout=5).status_code == 500


# --- notifications -------------------------------------------------------------------------
def _attempts(sandbox: SandboxClient, key: str) -> list[dict[str, Any]]:
    return [n for n in sandbox.notifications() if n["key"] == key]


def test_notification_is_retried_on_the_schedule_until_acked(sandbox, notification_sink):
    notification_sink.respond_with(500, b'{"code":"FAIL"}', times=2)
    sandbox.act("echo", "N-RETRY", "notify", url=notification_sink.url("/cb/echo"))
    received = notification_sink.wait_for(3)
    assert sandbox.wait_idle(5)
    assert [r.path for r in received] == ["/cb/echo"] * 3
    assert received[0].body == b'{"payment_no": "N-RETRY"}' and received[0].headers["X-Echo"] == "1"
    log = _attempts(sandbox, "N-RETRY")
    assert [(e["attempt"], e["status"], e["outcome"]) for e in log] == [
        (1, 500, "not_acked"),
        (2, 500, "not_acked"),
        (3, 200, "acked"),
    ]
    state = next(s for s in sandbox.notification_states() if s["key"] == "N-RETRY")
    assert state["state"] == "acked"


def test_notification_gives_up_when_the_schedule_is_exhausted(sandbox, notification_sink):
    notification_sink.respond_with(503)
    sandbox.act("echo", "N-GIVEUP", "notify", url=notification_sink.url(), schedule=[1, 1])
    assert sandbox.wait_idle(5)
    assert len(notification_sink.received) == 3  # first attempt + two retries
    state = next(s for s in sandbox.notification_states() if s["key"] == "N-GIVEUP")
    assert (state["state"], state["attempts"]) == ("exhausted", 3)


def test_dropped_notification_is_never_sent(sandbox, notification_sink):
    sandbox.add_fault(kind="drop", channel="echo", count=1)
    sandbox.act("echo", "N-DROP", "notify", url=notification_sink.url())
    sandbox.act("echo", "N-AFTER", "notify", url=notification_sink.url())
    received = notification_sink.wait_for(1)
    assert sandbox.wait_idle(5)
    assert [json.loads(r.body)["payment_no"] for r in received] == ["N-AFTER"]
    assert [e["outcome"] for e in _attempts(sandbox, "N-DROP")] == ["dropped"]


def test_duplicated_notification_arrives_twice_byte_for_byte(sandbox, notification_sink):
    sandbox.add_fault(kind="duplicate", channel="echo", count=1)
    sandbox.act("echo", "N-DUP", "notify", url=notification_sink.url())
    first, second = notification_sink.wait_for(2)
    assert first.body == second.body == b'{"payment_no": "N-DUP"}'
    assert sandbox.wait_idle(5)
    assert [e["duplicate"] for e in _attempts(sandbox, "N-DUP")] == [False, True]


def test_delayed_notification_arrives_after_a_later_one(sandbox, notification_sink):
    sandbox.add_fault(kind="delay", channel="echo", body_contains="N-LATE", seconds=300, count=1)  # 0.3 s
    sandbox.act("echo", "N-LATE", "notify", url=notification_sink.url())
    sandbox.act("echo", "N-PROMPT", "notify", url=notification_sink.url())
    received = notification_sink.wait_for(2)
    assert [json.loads(r.body)["payment_no"] for r in received] == ["N-PROMPT", "N-LATE"]


def test_reordered_notification_is_released_after_the_next_one(sandbox, notification_sink):
    sandbox.add_fault(kind="reorder", channel="echo", count=1)
    sandbox.act("echo", "N-FIRST", "notify", url=notification_sink.url())
    assert sandbox.wait_idle(5)
    assert notification_sink.received == []  # held back
    sandbox.act("echo", "N-SECOND", "notify", url=notification_sink.url())
    received = notification_sink.wait_for(2)
    assert [json.loads(r.body)["payment_no"] for r in received] == ["N-SECOND", "N-FIRST"]


def test_held_notification_can_be_flushed(sandbox, notification_sink):
    sandbox.add_fault(kind="reorder", channel="echo", count=1)
    sandbox.act("echo", "N-HELD", "notify", url=notification_sink.url())
    assert sandbox.flush_notifications() == 1
    assert json.loads(notification_sink.wait_for(1)[0].body)["payment_no"] == "N-HELD"


def test_unreachable_notify_url_is_logged_as_not_acked(sandbox):
    sandbox.act("echo", "N-DEAD", "notify", url="http://127.0.0.1:9/cb", schedule=[1])
    assert sandbox.wait_idle(10)
    log = _attempts(sandbox, "N-DEAD")
    assert [(e["attempt"], e["status"]) for e in log] == [(1, None), (2, None)]
    assert "ConnectionError" in log[0]["answer"]


def test_reserved_example_host_is_never_contacted(sandbox):
    sandbox.act("echo", "N-EXAMPLE", "notify", url="https://pay.example.com/cb/echo", schedule=[1])
    assert sandbox.wait_idle(5)
    log = _attempts(sandbox, "N-EXAMPLE")
    assert [(e["attempt"], e["status"], e["answer"]) for e in log] == [
        (1, None, "reserved host: not contacted"),
        (2, None, "reserved host: not contacted"),
    ]


def test_cancelled_notification_stops_retrying(sandbox, notification_sink):
    notification_sink.respond_with(500)
    sandbox.act("echo", "N-CANCEL", "notify", url=notification_sink.url(), schedule=[100_000])  # 100 s
    notification_sink.wait_for(1)
    assert not sandbox.wait_idle(0.1)
    assert sandbox.cancel_notifications() >= 1
    assert sandbox.wait_idle(1)
    state = next(s for s in sandbox.notification_states() if s["key"] == "N-CANCEL")
    assert state["state"] == "cancelled"


def test_timeout_fault_without_processing_hangs_up_and_changes_nothing(sandbox, sandbox_gateway, echo_url):
    before = _calls(sandbox_gateway)
    sandbox.add_fault(kind="timeout", channel="echo", count=1, seconds=0.2, process=False)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{echo_url}/a", timeout=(2, 5))
    assert _calls(sandbox_gateway) == before


def test_module_entry_point_serves_the_control_api():
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", "0", "--time-factor", "7"], stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stderr.readline()
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        health = requests.get(f"{url}/_sandbox/health", timeout=5).json()
        assert health == {"status": "ok", "time_factor": 7.0}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
