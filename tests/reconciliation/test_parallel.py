"""Work spread over connections (``reconciliation.services.parallel``): each helper on a
connection of its own, unless this connection's uncommitted writes would be invisible to them."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from reconciliation.services.parallel import Helpers, others_see_this_connection

pytestmark = pytest.mark.django_db(transaction=True)


def _backend() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    return int(pid)


def test_helpers_run_each_task_on_a_connection_of_its_own_and_answer_in_order() -> None:
    here = _backend()
    tasks = [lambda n=n: (n, _backend()) for n in range(3)]
    answers = Helpers(tasks, here=False).results()
    assert [n for n, _ in answers] == [0, 1, 2]
    assert len({pid for _, pid in answers} | {here}) == 4


def test_helpers_run_in_turn_on_this_connection_when_told_so() -> None:
    here = _backend()
    assert Helpers([_backend, _backend], here=True).results() == [here, here]


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
        Helpers([fail, slow], here=False).results()
    assert ended == [1]


def test_other_connections_see_this_one_only_outside_a_callers_transaction() -> None:
    assert others_see_this_connection()
    with transaction.atomic(durable=True):
        assert others_see_this_connection()  # the service's own transaction
        with transaction.atomic():
            assert others_see_this_connection()
    with transaction.atomic():
        assert not others_see_this_connection()  # a caller's: what it wrote is not committed


def test_leaving_the_block_waits_for_every_helper_even_when_the_caller_failed() -> None:
    ended: list[int] = []

    def slow() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.2)")
        ended.append(1)
        return 1

    with pytest.raises(RuntimeError, match="caller failed"), Helpers([slow, slow], here=False):
        raise RuntimeError("caller failed")
    assert ended == [1, 1]
