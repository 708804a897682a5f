"""``manage.py reconcile --account X --date D [--reload]``: reconcile one account's day by hand,
with the bill's progress on stderr. The same service the sweep calls."""

from __future__ import annotations

import sys
import time
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels.base import BillNotReady, ChannelError
from channels.models import ChannelAccount
from paycore.errors import PaycoreError
from reconciliation.services import reconcile_day


class Command(BaseCommand):
    help = "Load an account's bill for a day (if not loaded, or with --reload) and match it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", required=True, help="channel account id or name")
        parser.add_argument("--date", required=True, type=date.fromisoformat, help="bill day, YYYY-MM-DD")
        parser.add_argument("--reload", action="store_true", help="fetch the bill again even if it is loaded")
        parser.add_argument("--quiet", action="store_true", help="no progress output")

    def handle(self, *args: Any, account: str, date: date, reload: bool, quiet: bool, **options: Any) -> None:
        lookup = {"pk": int(account)} if account.isdigit() else {"name": account}
        try:
            target = ChannelAccount.objects.get(**lookup)
        except ChannelAccount.DoesNotExist:
            raise CommandError(f"no channel account {account!r}") from None
        started = time.monotonic()

        def progress(lines: int) -> None:
            rate = lines / max(time.monotonic() - started, 1e-6)
            sys.stderr.write(f"\r  loading {target.name} {date}: {lines:>12,} lines  {rate:>10,.0f} lines/s")
            sys.stderr.flush()

        try:
            run = reconcile_day(
                account_id=target.pk,
                bill_date=date,
                reload=reload,
                trigger="command",
                progress=None if quiet else progress,
            )
        except BillNotReady as exc:
            raise CommandError(f"the channel's bill for {date} is not ready yet: {exc.message}") from None
        except (ChannelError, PaycoreError) as exc:
            raise CommandError(f"{type(exc).__name__}: {getattr(exc, 'message', exc)}") from None
        if not quiet:
            sys.stderr.write("\n")
        counts = " ".join(f"{kind}={n}" for kind, n in sorted(run.counts.items())) or "none"
        self.stdout.write(
            f"run {run.pk} {run.status}: lines={run.lines} matched={run.matched} held={run.held} "
            f"discrepancies={run.discrepancies} (new {run.new_discrepancies}, auto-resolved {run.auto_resolved}) "
            f"kinds: {counts} seconds: load={run.load_seconds or 0:.2f} match={run.match_seconds or 0:.2f}"
        )
        if run.error:
            self.stdout.write(f"  {run.error}")
