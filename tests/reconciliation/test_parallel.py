"""Work spread over connections (``reconciliation.services.parallel``): each helper on a
connection of its own, unless this connection's uncommitted writes would be invisible to them."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from reconciliation.services.parallel import Helpers

pytestmark = pytest.mark.django_db(transaction=True)


def _backend() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    return int(pid)


def test_helpers_run_each_task_on_a_connection_of_its_own_and_answer_in_order() -> None:
    here = _backend()
    tasks = [lambda n=n: (n, _backend()) for n in range(3)]
    answers = Helpers(tasks).results()
    assert [n for n, _ in answers] == [0, 1, 2]
    assert len({pid for _, pid in answers} | {here}) == 4


def test_one_task_runs_here_on_this_connection() -> None:
    assert Helpers([_backend]).results() == [_backend()]


def test_a_failing_helper_is_raised_once_every_helper_has_ended() -> None:
    ended: list[int] = []

    def fail() -> int:
        raise ValueError("bad chunk")

    def slow() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.2)")
        ended.append(1)
        return 1

    with pytest.raises(ValueError, match="bad chunk"):
        Helpers([fail, slow]).results()
    assert ended == [1]


def test_helpers_run_in_turn_here_inside_a_callers_transaction_only() -> None:
    def backends() -> set[int]:
        with Helpers([_backend, _backend]) as helpers:
            return set(helpers.results())

    with transaction.atomic():  # a caller's: what it wrote is not committed, others would not see it
        assert backends() == {_backend()}
    with transaction.atomic(durable=True):  # the service's own transaction: helpers of their own
        here = _backend()
        assert here not in backends()
        with transaction.atomic():
            assert here not in backends()


def test_leaving_the_block_waits_for_every_helper_even_when_the_caller_failed() -> None:
    ended: list[int] = []

    def slow() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.2)")
        ended.append(1)
        return 1

    with pytest.raises(RuntimeError, match="caller failed"), Helpers([slow, slow]):
        raise RuntimeError("caller failed")
    assert ended == [1, 1]
