"""`instance-service reconcile`: the fleet reconciliation run directly, with its plan printed.

The same planning and repairs as the `odoo.fleet.reconcile.v1` handler, for an operator at a
terminal: `--dry-run` prints what would change and changes nothing.
"""

import sys
import time
from typing import TextIO

from handlers.platform import Platform
from handlers.reconcile import carry_out, observe, plan
from messages.errors import PermanentError, RetryableError
from store.database import StateEngine, StoreUnavailableError
from store.ledger import Ledger

EXIT_OK = 0
EXIT_UNAVAILABLE = 69


def run_reconcile(
    engine: StateEngine,
    platform: Platform,
    *,
    dry_run: bool,
    remove_orphans: bool,
    out: TextIO = sys.stdout,
) -> int:
    """Plan, print, and unless `dry_run` repair; print the counts."""
    started = time.monotonic()
    ledger = Ledger(engine)
    cluster = platform.cluster()
    namespace = platform.namespace
    try:
        print(f"reading the store and namespace {namespace} ...", file=out, flush=True)
        found = plan(ledger.instances(), observe(cluster, namespace), platform)
        for line in found.lines():
            print(line, file=out)
        requests = sum(cluster.requests.values())
        summary = (
            f"{found.checked} instances checked, {len(found.repairs)} repairs planned, "
            f"{len(found.orphans)} orphans, {len(found.unrepairable)} unrepairable"
        )
        if dry_run:
            print(f"dry run: {summary}; {requests} API requests", file=out)
            return EXIT_OK
        outcome = carry_out(found, cluster, ledger, platform, remove_orphans=remove_orphans)
    except (StoreUnavailableError, RetryableError, PermanentError) as error:
        print(f"instance-service reconcile: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    requests = sum(cluster.requests.values())
    busy = f", {len(outcome.busy)} busy (next round)" if outcome.busy else ""
    print(
        f"{summary}; {outcome.repairs_made} repairs made on {outcome.repaired_instances} "
        f"instances, {outcome.orphans_removed} orphans removed{busy}; {requests} API requests "
        f"in {time.monotonic() - started:.1f} s",
        file=out,
    )
    return EXIT_OK
