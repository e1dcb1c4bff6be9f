"""Opens the AMQP connection and turns pika's many failure types into one the caller can report."""

import pika
import pika.exceptions

from consumers.settings import AmqpSettings
from telemetry.redaction import redact_url


class BrokerUnavailableError(Exception):
    """RabbitMQ could not be reached or refused the credentials."""


def connection_parameters(settings: AmqpSettings) -> pika.URLParameters:
    """The settings as pika's parameters, for a blocking or an asynchronous connection."""
    url = settings.url.get_secret_value()
    try:
        parameters = pika.URLParameters(url)
    except ValueError as error:
        raise BrokerUnavailableError(f"invalid AMQP URL {redact_url(url)}: {error}") from error
    parameters.heartbeat = settings.heartbeat_seconds
    parameters.connection_attempts = settings.connection_attempts
    parameters.retry_delay = settings.retry_delay_seconds
    # A broker under a resource alarm blocks publishers; give up on such a connection rather
    # than wait forever (the runtime reconnects).
    parameters.blocked_connection_timeout = settings.blocked_connection_timeout_seconds
    return parameters


def open_connection(settings: AmqpSettings) -> pika.BlockingConnection:
    """Connect to the broker named in the settings, retrying as configured."""
    url = settings.url.get_secret_value()
    parameters = connection_parameters(settings)
    try:
        return pika.BlockingConnection(parameters)
    except pika.exceptions.ProbableAuthenticationError as error:
        raise BrokerUnavailableError(
            f"RabbitMQ at {redact_url(url)} refused the credentials"
        ) from error
    except pika.exceptions.AMQPError as error:
        reason = str(error) or type(error).__name__
        raise BrokerUnavailableError(
            f"cannot reach RabbitMQ at {redact_url(url)}: {reason}"
        ) from error
