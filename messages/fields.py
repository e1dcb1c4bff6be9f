"""Field types of the contract: the fixed rules as constraints, the configurable ones as validators.

Validators that depend on settings read a `ContractSettings` from the validation context
(`context={"contract": settings}`), and fall back to the contract's defaults without one.
"""

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, ValidationInfo

from messages.settings import Bounds, ContractSettings

_DEFAULT_SETTINGS = ContractSettings()


def contract_settings(info: ValidationInfo) -> ContractSettings:
    """The settings passed in the validation context, or the contract's defaults."""
    context = info.context
    if isinstance(context, dict):
        settings = context.get("contract")
        if isinstance(settings, ContractSettings):
            return settings
    return _DEFAULT_SETTINGS


# RFC 3339 date-time: full date, full time, fraction optional, offset required.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("must carry a UTC offset")
        return value.astimezone(UTC)
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z")
    # Python keeps microseconds; a longer fraction is truncated, not rejected.
    text = re.sub(r"(\.\d{6})\d+", r"\1", value).upper()
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError) as error:
        raise ValueError(f"is not a representable time ({error})") from error


Rfc3339Time = Annotated[datetime, BeforeValidator(_rfc3339)]


def _printable(max_length: int, *, space: bool = True) -> StringConstraints:
    """1 to `max_length` printable ASCII characters; `space=False` leaves the space out too."""
    lowest = r"\x20" if space else r"\x21"
    return StringConstraints(min_length=1, max_length=max_length, pattern=rf"^[{lowest}-\x7e]+$")


PrintableId = Annotated[str, _printable(128)]
"""1-128 printable ASCII characters (command ids, correlation ids)."""

InstanceId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
    Field(description="UUID, lower-case, hyphenated"),
]
Uuid = InstanceId
"""Any UUID in the contract's canonical form (backup ids, event ids)."""

UriReference = Annotated[str, _printable(1024, space=False)]
TraceParent = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"),
    Field(description="W3C trace context traceparent"),
]
TraceState = Annotated[str, _printable(512)]

CustomerId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
ModuleName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")]
Language = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z]{2,3}(_[A-Z0-9]{2,3})?(@[a-z]+)?$"),
    Field(description="Odoo language code, e.g. en_US, fr_BE, sr@latin"),
]
Label = Annotated[str, StringConstraints(max_length=128)]


def _email(value: str) -> str:
    # The address as given: no display name ("Jane <j@x>"), no spaces, nothing rewritten.
    if any(character in value for character in "<> \t\r\n"):
        raise ValueError("must be a bare e-mail address (no display name or spaces)")
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(f"is not a valid e-mail address: {error}") from error
    return value


EmailAddress = Annotated[
    str,
    StringConstraints(max_length=254),
    AfterValidator(_email),
    Field(json_schema_extra={"format": "email"}),
]


def _not_reserved(value: str, info: ValidationInfo) -> str:
    if value in contract_settings(info).reserved_subdomains:
        raise ValueError(f"'{value}' is reserved")
    return value


Subdomain = Annotated[
    str,
    StringConstraints(min_length=3, max_length=63, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"),
    AfterValidator(_not_reserved),
    Field(description="RFC 1123 label, lower-case, 3-63 characters, not reserved"),
]


_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_FQDN = re.compile(rf"{_LABEL}(\.{_LABEL})+", re.ASCII)


def under(name: str, domain: str) -> bool:
    """Whether `name` is `domain` or a name under it."""
    return name == domain or name.endswith("." + domain)


def _customer_domain(value: str, info: ValidationInfo) -> str:
    if value != value.lower():
        raise ValueError("must be lower-case")
    if value.endswith("."):
        raise ValueError("must be written without the trailing dot")
    if not _FQDN.fullmatch(value):
        raise ValueError(
            "must be a fully qualified domain name: two or more labels of a-z, 0-9 and '-' "
            "(1-63 characters each, no '-' at either end), separated by dots"
        )
    if value.rsplit(".", 1)[1].isdigit():
        raise ValueError("must be a domain name, not an IP address")
    settings = contract_settings(info)
    for platform in settings.platform_domains:
        if under(value, platform):
            raise ValueError(f"is under the platform's domain {platform}")
    for reserved in sorted(settings.reserved_domains):
        if under(value, reserved):
            raise ValueError(f"is reserved ({reserved})")
    return value


CustomerDomain = Annotated[
    str,
    StringConstraints(min_length=3, max_length=253),
    AfterValidator(_customer_domain),
    Field(
        description="the customer's own domain: lower-case FQDN, at most 253 characters, not "
        "an IP address, not under the platform's domains nor a reserved one"
    ),
]


def _allowed_version(value: str, info: ValidationInfo) -> str:
    allowed = contract_settings(info).odoo_versions
    if value not in allowed:
        raise ValueError(f"'{value}' is not an offered Odoo version ({', '.join(allowed)})")
    return value


OdooVersion = Annotated[str, AfterValidator(_allowed_version)]


def within(bounds: Bounds, value: int, unit: str) -> int:
    """Check `value` against inclusive bounds, saying the range when it is outside."""
    if not bounds.minimum <= value <= bounds.maximum:
        raise ValueError(f"must be between {bounds.minimum} and {bounds.maximum} {unit}")
    return value
