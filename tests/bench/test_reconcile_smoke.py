"""The reconciliation bench in miniature: 2,000 bill lines with injected discrepancies of each
kind, found exactly and nothing else. Correctness only: figures belong to bench/reconcile.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)


def _bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "reconcile.py"
    spec = importlib.util.spec_from_file_location("bench_reconcile", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_a_small_bench_bill_finds_every_injected_discrepancy_and_nothing_else(tmp_path: Path) -> None:
    bench = _bench()
    account_id = bench.make_account()
    with connection.cursor() as cursor:
        generated = bench.generate(
            lines=2000, per_kind=3, account_id=account_id, workdir=tmp_path, cursor=cursor.cursor
        )
    run, _ = bench.reconcile(generated, account_id=account_id)
    assert run.status == "SUCCEEDED" and run.lines == 2000
    assert bench.found_refs(run) == generated.refs
    assert all(count == 3 for count in generated.injected.values())
    with connection.cursor() as cursor:
        _, counts = bench.floor(generated, account_id=account_id, cursor=cursor.cursor)
    assert counts["MISSING_LOCALLY"] == counts["MISSING_AT_CHANNEL"] == counts["AMOUNT_MISMATCH"] == 3
    again, _ = bench.reconcile(generated, account_id=account_id)  # the same file again: the same findings
    assert bench.found_refs(again) == generated.refs and again.new_discrepancies == 0


def test_the_bench_measures_interleaved_rounds_and_prints_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    ratio = _bench().measure(lines=2000, per_kind=2, rounds=2)
    printed = capsys.readouterr().out
    assert ratio > 0 and "config: lines=2,000" in printed and "cpu_count=" in printed
    assert printed.count("every discrepancy found and nothing else: yes") == 2
    assert "the median of 2 rounds" in printed and "every injected discrepancy found and nothing else: yes" in printed
