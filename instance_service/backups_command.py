"""`instance-service backups schedule|keyset`: the backup schedule's run, and the keyset tools.

`schedule` is what the hourly CronJob runs (deploy/base/backup-schedule.yaml): one read of the
fleet's standing, a backup command published for each instance due in its current slot, then the
backups whose time is up (by the retention settings, not a plan) pruned, each instance's with a
`backups.pruned` event in the outbox. Consumers scale to zero, so the schedule cannot live in
them; the command ids derived from the slots make a second run harmless.

`keyset new` prints a new keyset for INSTANCE_SERVICE_BACKUPS__KEYSET; `keyset rotate FILE`
prints FILE's keyset with a new primary key added (docs/data-operations.md, "Keys").
"""

import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from consumers.publisher import BrokerUnavailableError, PublishError, publish_commands
from consumers.settings import AmqpSettings
from handlers.backups import SCHEDULER_SOURCE
from handlers.jobs import storage_call
from handlers.platform import BackupStoragePort
from messages.amqp import OutgoingMessage
from messages.errors import PermanentError, RetryableError
from messages.events import BackupsPrunedData, BackupsPrunedEvent
from messages.publishing import build_command
from objectstore.locations import ObjectLocation
from store.database import StateEngine, StoreUnavailableError, ping
from store.ledger import Ledger
from store.lifecycle import StatusMachine
from store.schedule import BACKUP_COMMAND, Due, Skip, decide, expired, standings
from store.settings import RetentionSettings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNAVAILABLE = 69


def _command(due: Due) -> OutgoingMessage:
    data = {
        "instance_id": due.instance_id,
        "backup_id": due.backup_id,
        "label": f"scheduled {due.slot.start:%Y-%m-%dT%H:%MZ}",
    }
    return build_command(BACKUP_COMMAND, data, source=SCHEDULER_SOURCE, command_id=due.command_id)


def run_schedule(
    engine: StateEngine,
    machine: StatusMachine,
    amqp: AmqpSettings,
    backups: BackupStoragePort,
    retention: RetentionSettings,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Publish the due backups, prune the expired ones; print what was done and why not."""
    started = time.monotonic()
    now = now or datetime.now(UTC)
    try:
        ping(engine)
        fleet = standings(engine)
    except StoreUnavailableError as error:
        print(f"instance-service backups schedule: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    decided = [decide(standing, now) for standing in fleet]
    due = [item for item in decided if isinstance(item, Due)]
    skipped = Counter(item for item in decided if isinstance(item, Skip))
    reasons = ", ".join(f"{count} {reason.value}" for reason, count in skipped.most_common())
    print(
        f"{len(fleet)} instances at {now:%Y-%m-%d %H:%M}Z: {len(due)} due"
        + (f"; not due: {reasons}" if reasons else ""),
        file=out,
        flush=True,
    )
    if dry_run:
        for item in due:
            print(f"due {item.instance_id} (slot from {item.slot.start:%H:%M}Z)", file=out)
        print(
            f"dry run: nothing published or pruned ({time.monotonic() - started:.1f} s)", file=out
        )
        return EXIT_OK
    step = max(1, len(due) // 10)

    def progress(count: int) -> None:
        if count % step == 0 or count == len(due):
            print(f"published {count}/{len(due)}", file=out, flush=True)

    try:
        published = publish_commands(amqp, [_command(item) for item in due], progress)
    except (BrokerUnavailableError, PublishError) as error:
        print(f"instance-service backups schedule: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        pruned = prune_expired(engine, machine, backups, retention, now)
    except (StoreUnavailableError, RetryableError) as error:
        print(f"instance-service backups schedule: pruning: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except PermanentError as error:
        print(f"instance-service backups schedule: pruning: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"{published} backup commands published, {pruned} expired backups pruned in "
        f"{time.monotonic() - started:.1f} s",
        file=out,
    )
    return EXIT_OK


def prune_expired(
    engine: StateEngine,
    machine: StatusMachine,
    backups: BackupStoragePort,
    retention: RetentionSettings,
    now: datetime,
) -> int:
    """Remove the objects of backups whose time is up, then mark them pruned with an event per
    instance (objects first: a run stopped between the two removes them again, harmlessly)."""
    found = expired(engine, now, retention.manual_keep_days, retention.final_backup_days)
    by_instance: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for item in found:
        by_instance[item.instance_id].append((item.backup_id, item.location))
    ledger = Ledger(engine, machine)
    for instance_id, items in by_instance.items():
        locations = [ObjectLocation.parse(location) for _, location in items]
        objects = [location for location in locations if location is not None]
        storage_call(
            f"removal of {len(objects)} expired backups of {instance_id}",
            lambda objects=objects: backups.remove(objects),  # type: ignore[misc]
            rolled_back=False,
        )
        ids = [backup_id for backup_id, _ in items]
        event = BackupsPrunedEvent.by_retention(
            BackupsPrunedData(instance_id=instance_id, backup_ids=ids)
        )
        ledger.prune_backups(instance_id, ids, event)
    return len(found)


def run_keyset(action: str, source: Path | None, out: TextIO = sys.stdout) -> int:
    """Print a new keyset, or `source`'s rotated; the key ids go to stderr, never the keys."""
    from objectstore.sealing import KeysetError, key_ids, new_keyset, rotate

    try:
        if action == "new":
            keyset = new_keyset()
        else:
            if source is None:
                print(
                    "instance-service backups keyset rotate: name the keyset file", file=sys.stderr
                )
                return EXIT_FAILED
            keyset = rotate(source.read_text())
    except (KeysetError, OSError) as error:
        print(f"instance-service backups keyset: {error}", file=sys.stderr)
        return EXIT_FAILED
    primary, keys = key_ids(keyset)
    print(
        f"keyset with {len(keys)} key(s), primary {primary}: keep a copy off the cluster; "
        "backups sealed with a key open only while the keyset holds it",
        file=sys.stderr,
    )
    print(keyset, file=out)
    return EXIT_OK
