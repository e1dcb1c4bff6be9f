"""`instance-service db upgrade|current`: the state store's schema from the command line."""

import sys

from store.database import StoreUnavailableError, create_engine
from store.migrate import current_revision, head_revision, upgrade
from store.settings import StoreSettings
from telemetry.redaction import redact_url

EXIT_OK = 0
EXIT_UNAVAILABLE = 69


def run_db(settings: StoreSettings, action: str) -> int:
    """Upgrade the schema to the newest revision, or print the current one."""
    where = redact_url(settings.url.get_secret_value())
    try:
        engine = create_engine(settings)
        if action == "upgrade":
            before = current_revision(engine)
            upgrade(engine)
            after = current_revision(engine)
            change = "already at" if before == after else f"upgraded from {before or 'empty'} to"
            print(f"{where}: {change} revision {after}")
        else:
            current = current_revision(engine)
            head = head_revision()
            state = "up to date" if current == head else f"behind (newest is {head})"
            print(f"{where}: revision {current or 'none'}, {state}")
    except StoreUnavailableError as error:
        print(f"instance-service db {action}: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK
