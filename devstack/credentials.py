"""Passwords of the local stack: generated once per machine, kept in a 0600 file, never printed."""

import json
import os
import secrets
from dataclasses import asdict, dataclass

from devstack.layout import LOOPBACK, Layout

RABBITMQ_VHOST = "instance-service"
RABBITMQ_SERVICE_USER = "instance-service"
RABBITMQ_ADMIN_USER = "devstack-admin"
POSTGRES_SERVICE_ROLE = "instance_service"
POSTGRES_SERVICE_DATABASE = "instance_service"
POSTGRES_ADMIN_ROLE = "instance_service_admin"


@dataclass(frozen=True)
class Credentials:
    """Every password the stack hands out."""

    rabbitmq_admin: str
    rabbitmq_service: str
    postgres_admin: str
    postgres_service: str


class CredentialsError(Exception):
    """The credentials file exists but cannot be used."""


def load_or_create(layout: Layout) -> Credentials:
    """Read the stack's passwords, generating them on first use."""
    if layout.credentials.exists():
        try:
            return Credentials(**json.loads(layout.credentials.read_text()))
        except (ValueError, TypeError) as error:
            raise CredentialsError(
                f"{layout.credentials} is damaged ({error}); remove it and the stack's state "
                f"({layout.home}) to start afresh"
            ) from error
    credentials = Credentials(
        rabbitmq_admin=secrets.token_urlsafe(18),
        rabbitmq_service=secrets.token_urlsafe(18),
        postgres_admin=secrets.token_urlsafe(18),
        postgres_service=secrets.token_urlsafe(18),
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
    )
