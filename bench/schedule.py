"""Deciding the due backups of a large fleet: queries and seconds, whatever its size.

Seeds a store with N instances (a mix of running, stopped and held ones, each with a week of
scheduled backups and a few operations), then times one decision of the backup schedule: the
fleet's standing read (`store.schedule.standings`, one query) and each instance decided, and the
expired backups found (`store.schedule.expired`, one query). The statements are counted at the
driver, so a hidden query per instance would show. SQLite and PostgreSQL (the stack's).

    .venv/bin/python -m bench.schedule [--instances 10000]

Figures only: nothing is asserted (docs/performance.md carries them).
"""

import argparse
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from bench.stack import postgres_database
from bench.store import counting
from store.database import create_engine
from store.migrate import upgrade
from store.models import Backup, Instance, Operation
from store.schedule import Due, decide, expired, standings
from store.settings import StoreSettings

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
STATUSES = ("running", "running", "running", "stopped", "suspended")


def seed(engine: Engine, count: int) -> None:
    """`count` instances with a week of daily scheduled backups and three operations each."""
    instances: list[dict[str, Any]] = []
    backups: list[dict[str, Any]] = []
    operations: list[dict[str, Any]] = []
    for index in range(count):
        instance_id = str(uuid.uuid4())
        status = STATUSES[index % len(STATUSES)]
        instances.append(
            {
                "id": instance_id,
                "customer_id": f"cus_{index}",
                "subdomain": f"s{index}",
                "odoo_version": "17.0",
                "cpu_millicores": 500,
                "memory_mib": 1024,
                "storage_gib": 5,
                "status": status,
                "hold": "suspended" if status == "suspended" else None,
                "spec": {},
                "last_command_time": NOW - timedelta(days=8),
                "last_command_id": f"c-{index}",
                "kubernetes_names": {},
                "backup_plan": {"every_hours": 1 + index % 24} if index % 2 else None,
                "created_at": NOW - timedelta(days=30),
                "updated_at": NOW - timedelta(days=1),
            }
        )
        for day in range(1, 8):
            backups.append(
                {
                    "id": str(uuid.uuid4()),
                    "instance_id": instance_id,
                    "location": f"s3://b/backups/{instance_id}/{day}.tar.tink",
                    "size_bytes": 1,
                    "sha256": "0" * 64,
                    "status": "completed",
                    "kind": "scheduled" if day < 7 else "manual",
                    "created_at": NOW - timedelta(days=day),
                    "completed_at": NOW - timedelta(days=day),
                }
            )
        for number, kind in enumerate(("provision", "stop", "backup")):
            operations.append(
                {
                    "id": str(uuid.uuid4()),
                    "instance_id": instance_id,
                    "command_id": f"{instance_id}-{number}",
                    "kind": f"odoo.instance.{kind}.v1",
                    "state": "succeeded",
                    "step": "record",
                    "attempts": 1,
                    "result": {},
                    "created_at": NOW - timedelta(days=9 - number),
                    "updated_at": NOW - timedelta(days=9 - number),
                }
            )
    with engine.begin() as connection:
        for table, rows in ((Instance, instances), (Backup, backups), (Operation, operations)):
            for start in range(0, len(rows), 5000):
                connection.execute(insert(table), rows[start : start + 5000])


def measure(store_url: str, count: int) -> dict[str, Any]:
    """One decision over `count` seeded instances: statements, seconds, the due count."""
    engine = create_engine(StoreSettings(url=SecretStr(store_url)))
    try:
        upgrade(engine)
        seed(engine, count)
        with counting(engine) as counted:
            started = time.perf_counter()
            fleet = standings(engine)
            decided = [decide(standing, NOW) for standing in fleet]
            read = time.perf_counter() - started
            found = expired(engine, NOW, manual_keep_days=3, final_backup_days=30)
            total = time.perf_counter() - started
        due = sum(isinstance(item, Due) for item in decided)
        reasons = Counter(str(item) for item in decided if not isinstance(item, Due))
        return {
            "instances": len(fleet),
            "queries": counted[0],
            "decide_s": round(read, 3),
            "total_s": round(total, 3),
            "due": due,
            "not_due": dict(reasons),
            "expired": len(found),
        }
    finally:
        engine.dispose()


def run(count: int) -> dict[str, dict[str, Any]]:
    """Both stores; a row each, printed."""
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        results["sqlite"] = measure(f"sqlite:///{Path(scratch) / 'schedule.db'}", count)
    with postgres_database("bench_schedule") as url:
        results["postgresql"] = measure(
            url.replace("postgresql://", "postgresql+psycopg://"), count
        )
    for store, row in results.items():
        print(
            f"{store:<11} {row['instances']} instances: {row['queries']} queries, decided in "
            f"{row['decide_s']:.2f} s ({row['total_s']:.2f} s with the expired backups); "
            f"{row['due']} due, {row['expired']} expired; not due: {row['not_due']}",
            flush=True,
        )
    return results


def main() -> None:
    """Seed, decide, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10_000)
    run(parser.parse_args().instances)


if __name__ == "__main__":
    main()
