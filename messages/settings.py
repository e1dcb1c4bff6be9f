"""Allow-lists and bounds of the contract, configurable, with the contract's values as defaults."""

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_RESERVED_SUBDOMAINS = (
    "www", "api", "admin", "administrator", "mail", "email", "smtp", "imap", "pop", "pop3",
    "ftp", "sftp", "ns", "ns1", "ns2", "dns", "mx", "webmail", "app", "apps", "static", "cdn",
    "assets", "media", "auth", "login", "sso", "oauth", "status", "help", "support", "docs",
    "blog", "billing", "pay", "payment", "dashboard", "console", "portal", "odoo", "internal",
    "staging", "test", "dev", "demo", "root", "system", "vpn", "git", "registry", "grafana",
    "prometheus", "kubernetes", "k8s",
)  # fmt: skip


DEFAULT_RESERVED_DOMAINS = (
    "localhost", "local", "localdomain", "invalid", "arpa", "internal", "onion",
)  # fmt: skip
"""Special-use names (RFC 6761, 6762, 7686; `internal` for private networks): no customer's
domain is one of them or under one. `test` and `example` are left out: test zones use them."""


class Bounds(BaseModel):
    """An inclusive integer range."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    minimum: int
    maximum: int

    @model_validator(mode="after")
    def _ordered(self) -> "Bounds":
        if self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum} is above maximum {self.maximum}")
        return self


class ContractSettings(BaseModel):
    """What a command's data may contain beyond the contract's fixed rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    odoo_versions: tuple[str, ...] = Field(
        default=("16.0", "17.0", "18.0"),
        min_length=1,
        description="Odoo versions a provision or upgrade may name (exact strings, e.g. 17.0)",
    )
    reserved_subdomains: frozenset[str] = Field(
        default=frozenset(DEFAULT_RESERVED_SUBDOMAINS),
        description="subdomains no tenant may take",
    )
    platform_domains: tuple[str, ...] = Field(
        default=(),
        description="domains under which no customer's own domain may be (the tenants' base "
        "domain is always one of them)",
    )
    reserved_domains: frozenset[str] = Field(
        default=frozenset(DEFAULT_RESERVED_DOMAINS),
        description="domains no customer may add, nor any name under them",
    )
    cpu_millicores: Bounds = Bounds(minimum=250, maximum=16000)
    memory_mib: Bounds = Bounds(minimum=512, maximum=65536)
    storage_gib: Bounds = Bounds(minimum=1, maximum=2048)
    clock_skew_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86400,
        description="how far a command's time may lie ahead of the service's clock",
    )
