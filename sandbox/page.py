"""The sandbox's small HTML page (``GET /_sandbox/``): trades, refunds, notifications, faults."""

from __future__ import annotations

import json
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.core import Sandbox

_SHOWN = ("status", "state", "trade_state", "amount", "total", "refund", "transaction_id", "refund_id")


def _cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False)
    return escape("" if value is None else str(value))


def render_page(sandbox: Sandbox) -> str:
    rows = sandbox.snapshot()
    with sandbox.lock:
        log = list(sandbox.notification_log)[-200:]
        faults = [f.to_json() for f in sandbox.faults]
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>paycore sandbox</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:2em}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;text-align:left;vertical-align:top}"
        "th{background:#f3f3f3}</style></head><body>",
        f"<h1>paycore sandbox gateway</h1><p>time factor {sandbox.time_factor:g}; sandbox clock "
        f"{escape(sandbox.now().isoformat(timespec='seconds'))} ({sandbox.clock()['offset_seconds']:g} s ahead)</p>",
        "<h2>Trades and refunds</h2><table><tr><th>channel</th><th>kind</th><th>key</th>",
        "".join(f"<th>{escape(name)}</th>" for name in _SHOWN),
        "<th>history</th></tr>",
    ]
    for row in rows:
        history = "<br>".join(_cell(f"{h.get('at', '')} {h.get('event', '')}") for h in row.get("history", []))
        out.append(
            f"<tr><td>{_cell(row['channel'])}</td><td>{_cell(row['kind'])}</td><td>{_cell(row['key'])}</td>"
            + "".join(f"<td>{_cell(row.get(name))}</td>" for name in _SHOWN)
            + f"<td>{history}</td></tr>"
        )
    out.append(
        "</table><h2>Notification attempts (latest 200)</h2><table><tr><th>at</th><th>channel</th>"
        "<th>key</th><th>url</th><th>attempt</th><th>status</th><th>outcome</th><th>fault</th></tr>"
    )
    for entry in reversed(log):
        out.append(
            "<tr>"
            + "".join(
                f"<td>{_cell(entry.get(k))}</td>"
                for k in ("at", "channel", "key", "url", "attempt", "status", "outcome", "fault")
            )
            + "</tr>"
        )
    out.append("</table><h2>Active faults</h2><table><tr><th>rule</th></tr>")
    for fault in faults:
        out.append(f"<tr><td>{_cell(fault)}</td></tr>")
    out.append("</table></body></html>")
    return "".join(out)
