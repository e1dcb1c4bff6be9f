"""Settings of the AMQP side, one group of the service's settings."""

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class AmqpSettings(BaseModel):
    """How to reach RabbitMQ."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # SecretStr keeps the password out of reprs and logs; use `redacted_url` to show it.
    url: SecretStr = Field(
        default=SecretStr("amqp://guest:guest@127.0.0.1:5672/%2F"),
        description="AMQP URL, e.g. amqp://user:password@host:5672/vhost",
    )
    heartbeat_seconds: int = Field(default=30, ge=0, le=600)
    connection_attempts: int = Field(default=3, ge=1, le=100)
    retry_delay_seconds: float = Field(default=2.0, ge=0, le=60)
