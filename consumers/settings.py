"""Settings of the AMQP side, one group of the service's settings."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from messages.backoff import Backoff

HealthHost = Annotated[str, Field(description="address of the liveness/readiness endpoint")]
HealthPort = Annotated[
    int, Field(ge=0, le=65535, description="liveness/readiness HTTP port; 0 disables")
]
"""Where a process answers the kubelet's probes: the consumer and the watcher each have one."""


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
    blocked_connection_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)


class ConsumerSettings(BaseModel):
    """How the consumer takes, retries and hands back work."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quick_queue: str = Field(
        default="instance-service.commands.quick",
        description="quorum queue of quick lifecycle commands (start, stop, suspend, ...)",
    )
    long_queue: str = Field(
        default="instance-service.commands.long",
        description="quorum queue of long commands (provision, backup, restore, upgrade, delete)",
    )
    unrouted_queue: str = Field(
        default="instance-service.commands.unrouted",
        description="quorum queue of commands whose routing key matched no binding (answered "
        "unsupported_type); served by the quick consumers",
    )
    unrouted_exchange: str = Field(
        default="instance-service.unrouted",
        description="fanout exchange set as instance.commands' alternate exchange",
    )
    queues: Literal["all", "quick", "long"] = Field(
        default="all",
        description="which work queues this process consumes (a Deployment per queue lets KEDA "
        "scale each on its own)",
    )
    dead_letter_queue: str = Field(
        default="instance-service.dead-letter", description="where refused messages rest"
    )
    dead_letter_exchange: str = Field(
        default="instance-service.dead-letter", description="direct exchange of the dead letters"
    )
    prefetch: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="unacknowledged deliveries per work queue: what batches and parked waits "
        "may take (keep KEDA's `value` equal)",
    )
    workers: int = Field(default=4, ge=1, le=64, description="handler threads")
    batch_size: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="deliveries of one queue a worker decides together, sharing the store's "
        "transactions (1: one at a time); a batch never exceeds what the prefetch lets in",
    )
    retry_delays_seconds: tuple[float, ...] = Field(
        default=(1.0, 5.0, 30.0, 120.0, 600.0),
        min_length=1,
        description="delay before each retry; the last one repeats",
    )
    retry_jitter: float = Field(
        default=0.2, ge=0, le=1, description="each delay varies by up to this fraction"
    )
    max_retries: int = Field(
        default=30, ge=1, le=1000, description="retryable failures before a command fails for good"
    )
    max_unexpected_failures: int = Field(
        default=5,
        ge=1,
        le=100,
        description="unexpected errors that end a command as failed (retried until then)",
    )
    delivery_limit: int = Field(
        default=50, ge=2, le=1000, description="broker-side cap on deliveries of one message"
    )
    handler_budget_seconds: float = Field(
        default=60.0, gt=0, le=1800, description="longest a handler keeps a message unacked"
    )
    max_waiting: int = Field(
        default=100,
        ge=0,
        le=10000,
        description="deliveries parked unacknowledged, without a thread, while their handler "
        "waits for a Job, a rollout or a deletion (beyond it a waiting handler watches in its "
        "thread, then continues through the delay queues; 0 never parks); each also takes one "
        "of its queue's prefetch",
    )
    shutdown_grace_seconds: float = Field(
        default=45.0, gt=0, le=3600, description="time to finish in-flight work on SIGTERM"
    )
    relay_interval_seconds: float = Field(
        default=0.5, gt=0, le=60, description="how often the outbox is checked when idle"
    )
    health_host: HealthHost = "0.0.0.0"  # noqa: S104 - the kubelet probes the pod's address
    health_port: HealthPort = 8080

    @property
    def retry_backoff(self) -> Backoff:
        """The retry schedule as the one backoff policy: its steps, each varied either way."""
        return Backoff.schedule(self.retry_delays_seconds, self.retry_jitter)


class WatcherSettings(BaseModel):
    """How `instance-service watch` follows the tenants' pods."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    degraded_after_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="how long a running instance's pods may be not Ready before it is degraded",
    )
    tick_seconds: float = Field(
        default=1.0, gt=0, le=60, description="how often due instances and the outbox are checked"
    )
    watch_seconds: int = Field(
        default=300, ge=1, le=3600, description="length of one watch request before resuming"
    )
    resync_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="how often every running or degraded instance is looked at again",
    )
    watch_certificates: bool = Field(
        default=True,
        description="follow customer domains' cert-manager Certificates for the expiry metric "
        "(false in a cluster without cert-manager's CRDs)",
    )
    health_host: HealthHost = "0.0.0.0"  # noqa: S104 - the kubelet probes the pod's address
    health_port: HealthPort = 8081
