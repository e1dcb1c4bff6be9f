"""The watcher's Certificate informer against the real API server and the stack's issuer: a
domain's certificate, once issued, is reported with its remaining validity, and drops out when
it is deleted (consumers/certificates.py, behind the gauge
`instance_service.certificate.remaining_validity`)."""

import threading

import pytest
from kubernetes import client

from consumers.certificates import CertificateExpiry
from consumers.watcher import CERTIFICATE_SELECTOR
from devstack.processes import wait_until
from k8s.apply import Kubernetes
from k8s.certificates import build_certificate
from k8s.informer import Informer
from k8s.kinds import CERTIFICATE
from k8s.settings import DomainSettings
from tests.tenant_specs import INSTANCE, tenant_spec

pytestmark = pytest.mark.k8s

DOMAIN = "expiry.customer.test"
SETTINGS = DomainSettings(issuer_name="devstack")


def test_an_issued_certificate_is_reported_until_it_is_deleted(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    cluster = Kubernetes(k8s_api, namespace)
    expiry = CertificateExpiry()
    informer = Informer(cluster, CERTIFICATE, CERTIFICATE_SELECTOR, watch_seconds=3)
    stop = threading.Event()
    thread = threading.Thread(
        target=informer.run, args=(expiry.listed, expiry.changed, stop), daemon=True
    )
    thread.start()
    try:
        spec = tenant_spec(domains=(DOMAIN,))
        cluster.apply(CERTIFICATE, build_certificate(spec, DOMAIN, SETTINGS, namespace))
        assert wait_until(lambda: bool(expiry.remaining()), 60, interval=0.2), "never issued"
        ((instance, domain, seconds),) = expiry.remaining()
        assert (instance, domain) == (INSTANCE, DOMAIN)
        assert 89 * 86400 < seconds <= 90 * 86400  # the stand-in issues for cert-manager's 90 days
        cluster.delete(CERTIFICATE, spec.names.certificate(DOMAIN))
        assert wait_until(lambda: not expiry.remaining(), 60, interval=0.2), "still reported"
    finally:
        stop.set()
        thread.join(timeout=20)
