"""Whether a customer's domain points at the platform's ingress, asked of DNS before anything
is made for it (a certificate cannot be issued for a name that does not reach us).

A domain points at the platform when its CNAME is the ingress's public name, or when every
address it resolves to (A and AAAA, CNAME chains followed) is one of the ingress's addresses
(settings; with only a name configured, that name's addresses). Answers come from dnspython
through the configured resolver, never from parsing a command's output. A name that does not
exist or has no such record is an answer (`domain_not_pointed`); a resolver that does not
answer is a passing failure (RetryableError). dnspython is imported on the first check, not
when the consumer starts (most commands never need it).
"""

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from k8s.settings import DomainSettings
from messages.errors import RetryableError

if TYPE_CHECKING:
    import dns.resolver


@dataclass(frozen=True)
class Pointing:
    """What DNS says of a domain: `problem` None when it points at the platform."""

    domain: str
    problem: str | None


def _resolver(settings: DomainSettings) -> "dns.resolver.Resolver":
    import dns.resolver  # on first use, see the module's docstring

    configured = settings.resolver_address is None
    resolver = dns.resolver.Resolver(configure=configured)
    if not configured:
        resolver.nameservers = [str(settings.resolver_address)]
        resolver.port = settings.resolver_port
    resolver.lifetime = settings.resolver_timeout_seconds
    resolver.timeout = settings.resolver_timeout_seconds
    return resolver


def _ask(resolver: "dns.resolver.Resolver", name: str, kind: str) -> list[str]:
    """The records of one type, as text (none when the name or the type has none)."""
    import dns.exception
    import dns.resolver

    try:
        answer = resolver.resolve(name, kind, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.resolver.NoNameservers, dns.exception.Timeout) as error:
        raise RetryableError(f"DNS did not answer for {name} {kind}: {error}") from error
    return [rdata.to_text() for rdata in answer]


def _addresses(resolver: "dns.resolver.Resolver", name: str) -> set[str]:
    found = _ask(resolver, name, "A") + _ask(resolver, name, "AAAA")
    return {str(ipaddress.ip_address(address)) for address in found}


def _host(text: str) -> str:
    import dns.name

    return dns.name.from_text(text).to_text(omit_final_dot=True).lower()


def check_pointing(domain: str, settings: DomainSettings) -> Pointing:
    """Ask DNS whether `domain` points at the platform's ingress."""
    resolver = _resolver(settings)
    target = _host(settings.ingress_hostname) if settings.ingress_hostname else None
    aliases = [_host(value) for value in _ask(resolver, domain, "CNAME")]
    if target is not None and target in aliases:
        return Pointing(domain, None)
    found = _addresses(resolver, domain)
    expected = {str(address) for address in settings.ingress_addresses}
    if not expected and target is not None:
        expected = _addresses(resolver, target)
    where = (
        f"a CNAME to {target}" if target else "",
        f"A/AAAA records among {', '.join(sorted(expected))}" if expected else "",
    )
    wanted = " or ".join(part for part in where if part) or "nothing (no ingress configured)"
    if found and expected and found <= expected:
        return Pointing(domain, None)
    if aliases:
        seen = f"its CNAME is {', '.join(aliases)}"
    elif found:
        seen = f"it resolves to {', '.join(sorted(found))}"
    else:
        seen = "it has no CNAME, A or AAAA record"
    return Pointing(domain, f"{domain} does not point at the platform: {seen}; it needs {wanted}")
