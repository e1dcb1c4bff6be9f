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
from store.database import StateEngine, StoreUnavailableError, ping
from store.ledger import Ledger
from store.lifecycle import StatusMachine

EXIT_OK = 0
EXIT_UNAVAILABLE = 69
EXIT_CONFIG = 78


def run_reconcile(
    engine: StateEngine,
    machine: StatusMachine,
    platform: Platform,
    *,
    dry_run: bool,
    remove_orphans: bool,
    out: TextIO = sys.stdout,
) -> int:
    """Plan, print, and unless `dry_run` repair; print the counts."""
    started = time.monotonic()
    ledger = Ledger(engine, machine)
    cluster = platform.cluster()
    namespace = platform.namespace
    try:
        ping(engine)
        print(f"reading namespace {namespace} and the store ...", file=out, flush=True)
        observed = observe(cluster)  # the cluster first: see handlers/reconcile.py
        found = plan(ledger.instances(), observed, platform)
        for line in found.lines():
            print(line, file=out)
        requests = sum(cluster.requests.values())
        summary = (
            f"{found.checked} instances checked, {len(found.repairs)} repairs planned, "
            f"{len(found.orphans)} orphans"
        )
        if dry_run:
            print(f"dry run: {summary}; {requests} API requests", file=out)
            return EXIT_OK
        outcome = carry_out(found, cluster, ledger, platform, remove_orphans=remove_orphans)
    except (StoreUnavailableError, RetryableError) as error:
        print(f"instance-service reconcile: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except PermanentError as error:  # e.g. 403: the credentials lack a permission
        print(f"instance-service reconcile: {error}", file=sys.stderr)
        return EXIT_CONFIG
    requests = sum(cluster.requests.values())
    busy = f", {len(outcome.busy)} busy (next round)" if outcome.busy else ""
    for what, why in outcome.failed:
        print(f"failed {what}: {why}", file=out)
    if outcome.failed:
        busy += f", {len(outcome.failed)} failed"
    print(
        f"{summary}; {outcome.repairs_made} repairs made on {outcome.repaired_instances} "
        f"instances, {outcome.orphans_removed} orphans removed{busy}; {requests} API requests "
        f"in {time.monotonic() - started:.1f} s",
        file=out,
    )
    return EXIT_OK
