"""The `instance-service` command: parses arguments, builds settings once and runs a subcommand."""

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr, ValidationError

from consumers.connection import BrokerUnavailableError, open_connection
from consumers.health import Health, health_endpoint
from consumers.topology import TopologyError, declare_on_broker
from handlers.catalog import command_catalog
from handlers.platform import ImportArchives
from instance_service import __version__
from instance_service.backups_command import run_keyset, run_schedule
from instance_service.contract_commands import run_schema, run_validate
from instance_service.db_commands import run_db
from instance_service.publish_command import run_publish
from instance_service.reconcile_command import run_reconcile
from instance_service.settings import ContractOnlySettings, Settings
from instance_service.wiring import (
    MissingSettingError,
    build_handlers,
    build_parking,
    build_platform,
    build_runtime,
    build_watcher,
)
from jobs.commands import DEFAULT_TERMINATION_LOG, run_backup, run_import, run_restore
from jobs.importing import Limits
from k8s.cluster import ClusterUnavailableError, api_client, describe_cluster
from k8s.network import tenant_network_problem
from k8s.permissions import WATCHER_PERMISSIONS
from objectstore.backups import ObjectBackups, StorageSettingsError
from store.database import StoreUnavailableError, create_engine, ping
from store.migrate import current_revision, upgrade
from store.tenant_database import close_maintenance_advice
from telemetry.logs import configure_logging
from telemetry.metrics import configure_metrics
from telemetry.redaction import redact_url
from telemetry.tracing import configure_tracing

log = logging.getLogger("instance_service")

EXIT_OK = 0
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE from sysexits.h: a dependency could not be reached
EXIT_CONFIG = 78  # EX_CONFIG: the settings are invalid


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = argparse.ArgumentParser(
        prog="instance-service",
        description="Runs tenant Odoo instances on Kubernetes from commands on RabbitMQ. "
        "Settings come from INSTANCE_SERVICE_* environment variables (see docs/configuration.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("version", help="print the version and exit")
    consume = commands.add_parser(
        "consume",
        help="connect to the state store, the cluster and RabbitMQ, report readiness, and serve",
    )
    consume.add_argument(
        "--check",
        action="store_true",
        help="exit after reporting readiness instead of serving until SIGTERM",
    )
    schema = commands.add_parser(
        "schema", help="print the AsyncAPI document, or one message type's JSON Schema"
    )
    schema.add_argument(
        "message_type", nargs="?", metavar="TYPE", help="e.g. odoo.instance.provision.v1"
    )
    validate = commands.add_parser(
        "validate",
        help="check a command document: exit 0 and print its summary, "
        "or exit 1 and print the rejection as JSON {code, message, details}",
    )
    validate.add_argument("file", metavar="FILE", help="path of the JSON document, or - for stdin")
    publish = commands.add_parser(
        "publish", help="validate a command document and publish it to instance.commands"
    )
    publish.add_argument("file", metavar="FILE", help="path of the JSON document, or - for stdin")
    publish.add_argument(
        "--fresh",
        action="store_true",
        help="give the document a new id and the current time first (for kept documents, "
        "e.g. docs/examples/*.json)",
    )
    publish.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait up to SECONDS for the command's result event and print it",
    )
    commands.add_parser(
        "watch",
        help="follow the tenants' pods and publish odoo.instance.status.changed.v1 "
        "(running <-> degraded); run one replica",
    )
    reconcile = commands.add_parser(
        "reconcile",
        help="compare the store with the cluster and repair missing or drifted objects "
        "(as the odoo.fleet.reconcile.v1 command does)",
    )
    reconcile.add_argument(
        "--dry-run", action="store_true", help="print the plan and change nothing"
    )
    reconcile.add_argument(
        "--remove-orphans",
        action="store_true",
        help="delete orphaned Deployments, Services, Ingresses, NetworkPolicies and Jobs "
        "(default: INSTANCE_SERVICE_KUBERNETES__REMOVE_ORPHANS); volumes are only reported",
    )
    commands.add_parser(
        "declare",
        help="declare the exchanges and queues on the broker and exit (an install step, so "
        "commands published before any consumer has run are kept)",
    )
    job = commands.add_parser(
        "job", help="the work of a backup or restore Job (run by Kubernetes in this image)"
    )
    kinds = job.add_subparsers(dest="job", required=True, metavar="JOB")
    backup = kinds.add_parser(
        "backup", help="dump the tenant database and its filestore, sealed, to object storage"
    )
    restore = kinds.add_parser("restore", help="check a backup's checksum, then restore it")
    importing = kinds.add_parser(
        "import", help="check a customer's Odoo database-manager zip, then import it"
    )
    for sub in (backup, restore, importing):
        sub.add_argument("--database", required=True, help="tenant database (libpq PG* env)")
        sub.add_argument("--filestore", required=True, type=Path, help="the tenant's filestore")
        sub.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="the data directory the filestore must lie in, reached by no link "
            "(default: the filestore's grandparent, Odoo's layout)",
        )
        sub.add_argument(
            "--termination-log",
            type=Path,
            default=DEFAULT_TERMINATION_LOG,
            help="where the JSON report goes (the container's terminationMessagePath)",
        )
    backup.add_argument(
        "--object",
        required=True,
        help="s3://bucket/key to write; the endpoint, the tenant's key and the keyset come "
        "from BACKUP_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, BACKUP_KEYSET",
    )
    backup.add_argument(
        "--part-size-mib", type=int, default=16, help="multipart upload part size (5 to 512)"
    )
    restore.add_argument(
        "--archive",
        required=True,
        help="s3://bucket/key (as for backup), or the path of an archive on the backup volume",
    )
    restore.add_argument("--sha256", required=True, help="the checksum the backup recorded")
    restore.add_argument(
        "--sealed-as",
        default=None,
        help="the key the object was sealed under, when it is a copy (a clone's of its source's "
        "backup)",
    )
    restore.add_argument(
        "--neutralize",
        action="store_true",
        help="neutralize the copy in the restore's transaction (mail, crons, payments off)",
    )
    importing.add_argument(
        "--archive", required=True, help="s3://bucket/key of the zip (in the tenant's prefix)"
    )
    importing.add_argument(
        "--odoo-version", required=True, help="the version the manifest must state"
    )
    importing.add_argument(
        "--allowed-versions",
        required=True,
        help="comma-separated Odoo versions the service runs (the allow-list)",
    )
    importing.add_argument("--max-members", type=int, required=True, help="members at most")
    importing.add_argument(
        "--max-file-bytes", type=int, required=True, help="bytes of one filestore file at most"
    )
    importing.add_argument(
        "--max-total-bytes", type=int, required=True, help="bytes of the filestore at most"
    )
    backups = commands.add_parser("backups", help="the backup schedule, and the keyset tools")
    backup_actions = backups.add_subparsers(dest="action", required=True, metavar="ACTION")
    schedule = backup_actions.add_parser(
        "schedule",
        help="publish a backup command for each instance due in its current slot, then prune "
        "backups whose time is up (what the hourly CronJob runs)",
    )
    schedule.add_argument(
        "--now",
        type=_aware_time,
        default=None,
        help="decide as at this ISO time instead of now (a test's clock, or to catch up)",
    )
    schedule.add_argument(
        "--dry-run", action="store_true", help="print what is due and change nothing"
    )
    keyset = backup_actions.add_parser(
        "keyset", help="print a new keyset, or a keyset file's with a new primary key"
    )
    keyset.add_argument("keyset_action", choices=["new", "rotate"], metavar="new|rotate")
    keyset.add_argument("file", nargs="?", type=Path, help="the keyset to rotate")
    database = commands.add_parser("db", help="the state store's schema")
    database.add_argument(
        "action",
        choices=["upgrade", "current"],
        help="upgrade: migrate to the newest revision; current: print the revision",
    )
    return parser


class MissingPermissionError(Exception):
    """The Kubernetes credentials do not grant what the handlers need."""


class IsolationError(Exception):
    """The settings or the tenant PostgreSQL would let tenants reach what is not theirs, or
    leave them unable to reach their own database."""


def run_consume(settings: Settings, *, check_only: bool) -> int:
    """Connect to every dependency, report readiness, then serve until signalled."""
    catalog = command_catalog()  # a wrong declaration stops start-up before any connection
    try:
        network = tenant_network_problem(settings.tenants)
        if network is not None:
            raise IsolationError(network)
        engine = create_engine(settings.store)
        dialect = ping(engine)
        if settings.store.upgrade_on_start:
            upgrade(engine)
        log.info(
            "state store ready",
            extra={
                "store": redact_url(settings.store.url.get_secret_value()),
                "dialect": dialect,
                "revision": current_revision(engine),
            },
        )
        api = api_client(settings.kubernetes)
        cluster = describe_cluster(api, settings.kubernetes)
        namespace = settings.kubernetes.namespace
        if cluster.missing_permissions and not cluster.rules_incomplete:
            raise MissingPermissionError(
                f"the Kubernetes credentials lack, in namespace {namespace}: "
                f"{'; '.join(cluster.missing_permissions)} (deploy/base/rbac.yaml grants them)"
            )
        if cluster.missing_permissions:
            log.warning(
                "kubernetes permissions could not all be confirmed",
                extra={"unconfirmed": list(cluster.missing_permissions)},
            )
        log.info(
            "kubernetes ready",
            extra={
                "server": cluster.server,
                "server_version": cluster.version,
                "namespace": namespace,
            },
        )
        platform = build_platform(settings, api)
        platform.databases.ping()
        open_databases = platform.databases.open_maintenance_databases()
        if open_databases:
            admin_url = _secret(settings.store.tenant_admin_url)
            raise IsolationError(close_maintenance_advice(open_databases, admin_url))
        log.info(
            "tenant postgresql ready",
            extra={"tenant_admin": redact_url(_secret(settings.store.tenant_admin_url))},
        )
        connection = open_connection(settings.amqp)
    except (MissingSettingError, MissingPermissionError) as error:
        log.error("not configured: %s", error)
        return EXIT_CONFIG
    except IsolationError as error:
        log.error("tenants would not be isolated: %s", error)
        return EXIT_CONFIG
    except (StoreUnavailableError, ClusterUnavailableError, BrokerUnavailableError) as error:
        log.error("not ready: %s", error)
        return EXIT_UNAVAILABLE
    log.info("rabbitmq ready", extra={"amqp": redact_url(settings.amqp.url.get_secret_value())})
    connection.close()
    if check_only:
        log.info("consumer ready")
        return EXIT_OK
    health = Health()
    consumer = settings.consumer
    with health_endpoint(health, consumer.health_host, consumer.health_port):
        try:
            handlers = build_handlers(catalog, platform)
            parking = build_parking(settings, api)
            archives = ImportArchives(platform.backups)
            runtime = build_runtime(settings, engine, catalog, handlers, health, parking, archives)
            signal_name = runtime.run(on_ready=lambda: log.info("consumer ready"))
        except TopologyError as error:
            log.error("cannot consume: %s", error)
            return EXIT_CONFIG
    log.info("consumer stopped", extra={"signal": signal_name})
    return EXIT_OK


def run_watch(settings: Settings) -> int:
    """`watch`: check the store and the cluster, then follow the pods until signalled."""
    try:
        engine = create_engine(settings.store)
        ping(engine)
        if settings.store.upgrade_on_start:
            upgrade(engine)
        api = api_client(settings.kubernetes)
        needed = tuple(
            permission
            for permission in WATCHER_PERMISSIONS
            if settings.watcher.watch_certificates or permission.resource != "certificates"
        )
        cluster = describe_cluster(api, settings.kubernetes, needed)
    except (StoreUnavailableError, ClusterUnavailableError) as error:
        log.error("not ready: %s", error)
        return EXIT_UNAVAILABLE
    namespace = settings.kubernetes.namespace
    if cluster.missing_permissions and not cluster.rules_incomplete:
        log.error(
            "not configured: the Kubernetes credentials lack, in namespace %s: %s "
            "(deploy/base/rbac.yaml grants them)",
            namespace,
            "; ".join(cluster.missing_permissions),
        )
        return EXIT_CONFIG
    health = Health()
    watcher_settings = settings.watcher
    with health_endpoint(health, watcher_settings.health_host, watcher_settings.health_port):
        watcher = build_watcher(settings, engine, api, command_catalog(), health)
        previous = {
            sig: signal.signal(sig, lambda _signum, _frame: watcher.stopping.set())
            for sig in (signal.SIGTERM, signal.SIGINT)
        }
        log.info("watching", extra={"namespace": namespace, "server": cluster.server})
        try:
            watcher.serve()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    log.info("watcher stopped", extra={"transitions": watcher.transitions})
    return EXIT_OK


def run_reconcile_command(settings: Settings, arguments: argparse.Namespace) -> int:
    """`reconcile`: build what it needs from settings, then plan and repair."""
    try:
        engine = create_engine(settings.store)
        api = api_client(settings.kubernetes)
        platform = build_platform(settings, api)
    except MissingSettingError as error:
        print(f"instance-service reconcile: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except (StoreUnavailableError, ClusterUnavailableError) as error:
        print(f"instance-service reconcile: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return run_reconcile(
        engine,
        command_catalog().status_machine,
        platform,
        dry_run=arguments.dry_run,
        remove_orphans=arguments.remove_orphans or settings.kubernetes.remove_orphans,
    )


def run_declare(settings: Settings) -> int:
    """`declare`: the broker topology, then exit."""
    amqp = redact_url(settings.amqp.url.get_secret_value())
    try:
        declare_on_broker(settings.amqp, settings.consumer)
    except BrokerUnavailableError as error:
        print(f"instance-service: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except TopologyError as error:
        print(f"instance-service: {error}", file=sys.stderr)
        return EXIT_CONFIG
    consumer = settings.consumer
    print(
        f"declared on {amqp}: instance.commands, instance.events, {consumer.quick_queue}, "
        f"{consumer.long_queue}, their retry queues, {consumer.dead_letter_queue}"
    )
    return EXIT_OK


def run_job(arguments: argparse.Namespace) -> int:
    """`job backup|restore|import`: needs no settings, only its arguments and libpq's PG*
    variables."""
    if arguments.job == "import":
        limits = Limits(
            max_members=arguments.max_members,
            max_file_bytes=arguments.max_file_bytes,
            max_total_bytes=arguments.max_total_bytes,
            versions=frozenset(v for v in arguments.allowed_versions.split(",") if v),
        )
        return run_import(
            arguments.archive,
            arguments.odoo_version,
            limits,
            arguments.database,
            arguments.filestore,
            arguments.termination_log,
            arguments.data_dir,
        )
    if arguments.job == "backup":
        return run_backup(
            arguments.database,
            arguments.filestore,
            arguments.object,
            arguments.part_size_mib,
            arguments.termination_log,
            arguments.data_dir,
        )
    return run_restore(
        str(arguments.archive),
        arguments.sha256,
        arguments.database,
        arguments.filestore,
        arguments.termination_log,
        arguments.data_dir,
        sealed_as=arguments.sealed_as,
        neutralize=arguments.neutralize,
    )


def _aware_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def run_backups_command(settings: Settings, arguments: argparse.Namespace) -> int:
    """`backups schedule`: build what it needs from settings, then run the schedule."""
    try:
        engine = create_engine(settings.store)
        backups = ObjectBackups.connect(settings.backups)
    except StorageSettingsError as error:
        print(f"instance-service backups: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreUnavailableError as error:
        print(f"instance-service backups: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return run_schedule(
        engine,
        command_catalog().status_machine,
        settings.amqp,
        backups,
        settings.retention,
        now=arguments.now,
        dry_run=arguments.dry_run,
    )


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    arguments = build_parser().parse_args(argv)
    if arguments.command == "version":
        print(f"instance-service {__version__}")
        return EXIT_OK
    if arguments.command == "job":
        return run_job(arguments)
    if arguments.command == "backups" and arguments.action == "keyset":
        return run_keyset(arguments.keyset_action, arguments.file)
    try:
        if arguments.command in ("schema", "validate"):
            contract = ContractOnlySettings().contract
            if arguments.command == "schema":
                return run_schema(contract, arguments.message_type, sys.stdout)
            return run_validate(contract, arguments.file, sys.stdin.buffer, sys.stdout)
        settings = Settings()
    except ValidationError as error:
        print(f"instance-service: invalid settings:\n{error}", file=sys.stderr)
        return EXIT_CONFIG
    if arguments.command == "db":
        return run_db(settings.store, arguments.action)
    if arguments.command == "publish":
        return run_publish(
            settings.amqp,
            settings.contract,
            arguments.file,
            arguments.wait,
            sys.stdin.buffer,
            sys.stdout,
            fresh=arguments.fresh,
        )
    if arguments.command == "declare":
        return run_declare(settings)
    if arguments.command == "reconcile":
        return run_reconcile_command(settings, arguments)
    if arguments.command == "backups":
        return run_backups_command(settings, arguments)
    configure_logging(settings.log)
    configure_tracing(__version__)
    configure_metrics(__version__)
    if arguments.command == "watch":
        return run_watch(settings)
    return run_consume(settings, check_only=arguments.check)


if __name__ == "__main__":
    sys.exit(main())
