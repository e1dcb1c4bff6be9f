"""domain.add and domain.remove: an instance served also at a customer's own domain, with a
certificate of its own from cert-manager.

    add     dns          the domain points at the platform (k8s/pointing.py), asked before
                         anything changes: `domain_not_pointed` otherwise, nothing to undo
            certificate  a cert-manager Certificate for the domain, against the configured issuer
            issued       its Ready, awaited by watch within `certificate_ready_seconds`; an
                         issuer's refusal or no Ready in time is `certificate_failed`, and the
                         Certificate and its Secret are removed (`undo-certificate`), rolled back
            ingress      the instance's Ingress with the domain's host and TLS Secret besides the
                         primary host (Odoo's `web.base.url` stays the primary URL)
    remove  ingress      the Ingress without the domain's host
            certificate  the Certificate and its TLS Secret deleted (cert-manager does not own
                         the Secret), nothing left; a domain the instance does not have is done

Admission reserved the domain for the instance (store: unique across the fleet, `conflict` for
another instance's; at most `INSTANCE_SERVICE_DOMAINS__PER_INSTANCE`); the record of the outcome
marks it served, or frees it. Adding a domain the instance has already repairs its objects; its
failure then removes nothing. Both run while the instance serves, is stopped or is held (a held
instance keeps its domains), and hold it `changing_domains` meanwhile.
"""

from collections.abc import Sequence
from dataclasses import replace

from handlers.deadlines import certificate, no_wait
from handlers.declarations import Declaration, Queue
from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.removal import UNDO, run_or_undo
from handlers.results import Completed, HandlerContext, HandlerResult
from handlers.specs import instance_spec
from handlers.steps import Step, StepOutcome, run_steps
from handlers.waiting import watch_step
from handlers.waits import WaitingFor
from k8s.certificates import Document, build_certificate, issued, refusal
from k8s.exposure import build_ingress
from k8s.kinds import CERTIFICATE, INGRESS, SECRET
from k8s.pointing import check_pointing
from k8s.spec import InstanceSpec
from messages.commands import DomainAddCommand, DomainRemoveCommand
from messages.errors import PermanentError
from messages.events import (
    CertificateReference,
    DomainAddedData,
    DomainAddedEvent,
    DomainRemovedData,
    DomainRemovedEvent,
)
from store.lifecycle import InstanceStatus, Transition
from store.records import InstanceRecord
from store.settings import HOUR

DOMAIN_NOT_POINTED = "domain_not_pointed"
CERTIFICATE_FAILED = "certificate_failed"


def _instance(context: HandlerContext, command_type: str) -> InstanceRecord:
    instance = context.admission.instance
    if instance is None:
        raise RuntimeError(f"{command_type} admitted without its instance")
    return instance


def _answered(certificate: Document) -> bool:
    """Issued, or refused for good: either ends the wait."""
    return issued(certificate) or refusal(certificate) is not None


def certificate_steps(
    spec: InstanceSpec, domain: str, platform: Platform, cluster: Cluster
) -> tuple[Step, ...]:
    """The Certificate applied (`certificate`) and issued (`issued`)."""
    settings, namespace = platform.domains, platform.namespace
    name = spec.names.certificate(domain)
    deadline = settings.certificate_ready_seconds

    def certificate(_: Progress) -> StepOutcome:
        cluster.apply(CERTIFICATE, build_certificate(spec, domain, settings, namespace))
        return None

    def expired() -> PermanentError:
        found = cluster.get(CERTIFICATE, name)
        why = (refusal(found) if found else None) or "no answer from the issuer"
        return PermanentError(
            CERTIFICATE_FAILED,
            f"Certificate {namespace}/{name} for {domain} was not issued within {deadline} s "
            f"by {settings.issuer_kind} {settings.issuer_name}: {why}",
        )

    answered = WaitingFor.state(
        CERTIFICATE, name, _answered, f"Certificate {name} issued or refused"
    )
    waited = watch_step("issued", deadline, [answered], cluster, expired)

    def issued_or_refused(progress: Progress) -> StepOutcome:
        outcome = waited.run(progress)
        if outcome is not None and not isinstance(outcome, dict):
            return outcome  # still waiting
        found = cluster.get(CERTIFICATE, name)
        if found is not None and issued(found):
            return outcome
        why = (refusal(found) if found else None) or "it is gone"
        raise PermanentError(
            CERTIFICATE_FAILED,
            f"{settings.issuer_kind} {settings.issuer_name} did not issue the certificate for "
            f"{domain} (Certificate {namespace}/{name}): {why}",
        )

    return (
        Step("certificate", certificate),
        Step("issued", issued_or_refused),
    )


def removal(spec: InstanceSpec, domain: str, cluster: Cluster, prefix: str = "") -> Step:
    """The domain's Certificate and TLS Secret deleted (absent ones are fine)."""

    def remove(_: Progress) -> StepOutcome:
        cluster.delete(CERTIFICATE, spec.names.certificate(domain))
        cluster.delete(SECRET, spec.names.certificate_secret(domain))
        return None

    return Step(f"{prefix}certificate", remove)


def ingress_step(spec: InstanceSpec, platform: Platform, cluster: Cluster) -> Step:
    """The instance's Ingress, with the hosts of `spec.domains`."""

    def ingress(_: Progress) -> StepOutcome:
        cluster.apply(INGRESS, build_ingress(spec, platform.tenants, platform.namespace))
        return None

    return Step("ingress", ingress)


def _served_at(spec: InstanceSpec, domains: Sequence[str]) -> InstanceSpec:
    return replace(spec, domains=tuple(sorted(set(domains))))


class DomainAdd:
    """The domain.add handler."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def __call__(self, command: DomainAddCommand, context: HandlerContext) -> HandlerResult:
        """Check DNS, have the certificate issued, serve the domain; undo on a failure."""
        platform, domain = self.platform, command.data.domain
        instance = _instance(context, command.type)
        had = domain in instance.domains
        spec = _served_at(instance_spec(instance), (*instance.domains, domain))
        cluster = platform.cluster()
        progress = Progress(command, context, platform.faults, cluster)

        def dns(_: Progress) -> StepOutcome:
            pointing = check_pointing(domain, platform.domains)
            if pointing.problem is not None:
                raise PermanentError(DOMAIN_NOT_POINTED, pointing.problem, rolled_back=True)
            return None

        making = (
            *certificate_steps(spec, domain, platform, cluster),
            ingress_step(spec, platform, cluster),
        )
        # Nothing is made before DNS answers: its refusal needs no undo.
        waiting = run_steps((Step("dns", dns),), progress)
        if waiting is not None:
            return waiting
        if had:  # a repeat repairs: what it finds served stays, whatever fails
            waiting = run_steps(making, progress)
        else:
            undo = (removal(spec, domain, cluster, prefix=UNDO),)
            undone = "the Certificate and its Secret were removed"
            waiting = run_or_undo(making, undo, progress, undone=undone)
        if waiting is not None:
            return waiting
        progress.finish()
        reference = CertificateReference(
            namespace=platform.namespace, name=spec.names.certificate(domain), ready=True
        )
        data = DomainAddedData(
            instance_id=spec.instance_id,
            domain=domain,
            url=f"https://{domain}",
            certificate=reference,
        )
        return Completed(DomainAddedEvent.caused_by(command, data))


class DomainRemove:
    """The domain.remove handler."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def __call__(self, command: DomainRemoveCommand, context: HandlerContext) -> HandlerResult:
        """Stop serving the domain; remove its certificate."""
        platform, domain = self.platform, command.data.domain
        instance = _instance(context, command.type)
        rest = [served for served in instance.domains if served != domain]
        spec = _served_at(instance_spec(instance), rest)
        cluster = platform.cluster()
        progress = Progress(command, context, platform.faults, cluster)
        steps = (ingress_step(spec, platform, cluster), removal(spec, domain, cluster))
        waiting = run_steps(steps, progress)
        if waiting is not None:
            return waiting
        progress.finish()
        data = DomainRemovedData(instance_id=spec.instance_id, domain=domain)
        return Completed(DomainRemovedEvent.caused_by(command, data))


S = InstanceStatus

_ALLOWED = frozenset({S.RUNNING, S.DEGRADED, S.STOPPED, S.SUSPENDED, S.TERMINATED})
"""Serving, stopped or held: never while another operation works, in error or deleted."""

DOMAIN_ADD = Declaration(
    model=DomainAddCommand,
    queue=Queue.LONG,
    transition=Transition(_ALLOWED, S.CHANGING_DOMAINS, None, deadline_seconds=2 * HOUR),
    event=DomainAddedEvent,
    healthy_within=certificate,
    locks=True,
    handler=DomainAdd,
)
DOMAIN_REMOVE = Declaration(
    model=DomainRemoveCommand,
    queue=Queue.QUICK,
    transition=Transition(_ALLOWED, S.CHANGING_DOMAINS, None, deadline_seconds=HOUR / 2),
    event=DomainRemovedEvent,
    healthy_within=no_wait,
    locks=True,
    handler=DomainRemove,
)
