"""Passwords of the local stack: generated once per machine, kept in a 0600 file, never printed."""

import json
import os
import secrets
import string
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

from devstack.layout import LOOPBACK, Layout
from objectstore.sealing import new_keyset

RABBITMQ_VHOST = "instance-service"
RABBITMQ_SERVICE_USER = "instance-service"
RABBITMQ_KEDA_USER = "keda"
RABBITMQ_ADMIN_USER = "devstack-admin"
POSTGRES_SERVICE_ROLE = "instance_service"
POSTGRES_SERVICE_DATABASE = "instance_service"
POSTGRES_ADMIN_ROLE = "instance_service_admin"
S3_ADMIN_KEY_ID = "devstack-admin"
BACKUP_BUCKET = "instance-service-backups"
IMPORT_BUCKET = "instance-service-imports"


@dataclass(frozen=True)
class Credentials:
    """Every password the stack hands out."""

    rabbitmq_admin: str
    rabbitmq_service: str
    rabbitmq_keda: str
    """KEDA's user: reads queue lengths through the management API (tag `monitoring`)."""
    postgres_admin: str
    postgres_service: str
    s3_admin: str
    """Secret key of the object storage's admin identity (`S3_ADMIN_KEY_ID`)."""
    backup_keyset: str
    """The Tink keyset that seals the stack's backups."""


PASSWORD_ALPHABET = string.ascii_letters + string.digits
"""Letters and digits only: a password is an argument to command-line tools (rabbitmqctl reads
one starting with `-` as options) and part of URLs, where it needs no quoting this way."""
PASSWORD_LENGTH = 24  # about 143 bits


def _password() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


GENERATORS: dict[str, Callable[[], str]] = {
    "rabbitmq_admin": _password,
    "rabbitmq_service": _password,
    "rabbitmq_keda": _password,
    "postgres_admin": _password,
    "postgres_service": _password,
    "s3_admin": _password,
    "backup_keyset": new_keyset,
}
"""How each credential is made; one added later is made for a stack made before it."""


class CredentialsError(Exception):
    """The credentials file exists but cannot be used."""


def load_or_create(layout: Layout) -> Credentials:
    """Read the stack's passwords, generating them on first use."""
    known: dict[str, str] = {}
    if layout.credentials.exists():
        try:
            known = json.loads(layout.credentials.read_text())
            if not isinstance(known, dict):
                raise TypeError("not a JSON object")
            names = {field.name for field in fields(Credentials)}
            if names <= set(known):
                return Credentials(**{name: str(known[name]) for name in names})
        except (ValueError, TypeError) as error:
            raise CredentialsError(
                f"{layout.credentials} is damaged ({error}); remove it and the stack's state "
                f"({layout.home}) to start afresh"
            ) from error
    credentials = Credentials(
        **{
            field.name: str(known[field.name]) if field.name in known else GENERATORS[field.name]()
            for field in fields(Credentials)
        }
    )
    layout.home.mkdir(parents=True, exist_ok=True)
    # Written whole under another name, then renamed: an interrupted run leaves no half file.
    partial = layout.credentials.with_suffix(".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(asdict(credentials), file, indent=2)
    os.replace(partial, layout.credentials)
    return credentials


@dataclass(frozen=True)
class Endpoints:
    """How clients reach the stack; URLs carry passwords, so print them only through `env`."""

    amqp_url: str
    amqp_port: int
    rabbitmq_management_url: str
    rabbitmq_admin_user: str
    rabbitmq_admin_password: str
    database_url: str
    postgres_admin_url: str
    kubeconfig: str
    s3_url: str
    s3_admin_key_id: str
    s3_admin_secret: str
    backup_bucket: str
    import_bucket: str
    backup_keyset: str

    def amqp_url_for(self, vhost: str, user: str, password: str) -> str:
        """An AMQP URL for another vhost (tests use one vhost each)."""
        return f"amqp://{user}:{password}@{LOOPBACK}:{self.amqp_port}/{vhost}"


def endpoints(layout: Layout, credentials: Credentials) -> Endpoints:
    """The URLs of the running stack for these credentials."""
    ports = layout.ports
    pg = f"{LOOPBACK}:{ports.postgres}"
    return Endpoints(
        amqp_url=(
            f"amqp://{RABBITMQ_SERVICE_USER}:{credentials.rabbitmq_service}"
            f"@{LOOPBACK}:{ports.amqp}/{RABBITMQ_VHOST}"
        ),
        amqp_port=ports.amqp,
        rabbitmq_management_url=f"http://{LOOPBACK}:{ports.rabbitmq_management}",
        rabbitmq_admin_user=RABBITMQ_ADMIN_USER,
        rabbitmq_admin_password=credentials.rabbitmq_admin,
        database_url=(
            f"postgresql+psycopg://{POSTGRES_SERVICE_ROLE}:{credentials.postgres_service}"
            f"@{pg}/{POSTGRES_SERVICE_DATABASE}"
        ),
        postgres_admin_url=(
            f"postgresql://{POSTGRES_ADMIN_ROLE}:{credentials.postgres_admin}@{pg}/postgres"
        ),
        kubeconfig=str(layout.kubeconfig),
        s3_url=f"http://{LOOPBACK}:{ports.s3}",
        s3_admin_key_id=S3_ADMIN_KEY_ID,
        s3_admin_secret=credentials.s3_admin,
        backup_bucket=BACKUP_BUCKET,
        import_bucket=IMPORT_BUCKET,
        backup_keyset=credentials.backup_keyset,
    )
