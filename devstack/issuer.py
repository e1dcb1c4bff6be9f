"""Plays cert-manager's issuer for the local cluster: signs every Certificate with a local CA.

cert-manager's CRDs are installed (devstack/crds.py), so the real API server validates each
Certificate the service writes; its controller is not buildable here, so, as kwok plays the
kubelet, this process plays the controller and its issuer. For each Certificate whose Ready
condition does not match its current generation it signs a certificate for the Certificate's
`dnsNames` with the stack's issuer CA (`data/issuer/ca.crt`, made once; ECDSA P-256, a
well-kept library: `cryptography`), writes the TLS Secret named by `spec.secretName`
(`tls.crt`, `tls.key`, `ca.crt`, with cert-manager's annotations and `spec.secretTemplate`'s
labels and annotations) and sets the status as cert-manager does: `Ready` True, `notBefore`,
`notAfter`, `renewalTime`, `revision`.

It can be told to refuse a domain, to test failures: a name listed in
`data/issuer/refused-domains` (one per line, read on every Certificate) gets what cert-manager
reports of a failed issuance (`Ready` False, `Issuing` False with reason `Failed` and the
refusal as its message, `lastFailureTime`) and no Secret; unlike cert-manager it does not
retry. The issuerRef is not looked at: every Certificate is this issuer's.

    python -m devstack.issuer KUBECONFIG ISSUER_DIR
"""

import base64
import datetime
import logging
import sys
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, config, watch

log = logging.getLogger("devstack.issuer")

GROUP, VERSION, PLURAL = "cert-manager.io", "v1", "certificates"
REFUSED_FILE = "refused-domains"
ISSUER_NAME = "devstack"
"""The ClusterIssuer the service is told to name (`devstack env`); every name is answered."""
READY_FILE = "ready"
DEFAULT_DURATION = datetime.timedelta(days=90)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class LocalCa:
    """The stack's issuer CA, made once under `directory`."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / "ca.crt", directory / "ca.key"
        if not cert_path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devstack issuer CA")])
            now = _now()
            certificate = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .sign(key, hashes.SHA256())
            )
            key_path.write_bytes(_key_pem(key))
            key_path.chmod(0o600)
            cert_path.write_bytes(_pem(certificate))
        self.certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{key_path} is not an EC key")
        self.key = loaded

    def sign(
        self, names: list[str], duration: datetime.timedelta
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A leaf certificate for `names`, valid `duration` from now."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + duration)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return certificate, key


def _duration(spec: dict[str, Any]) -> datetime.timedelta:
    """cert-manager's `duration` (Go's format, e.g. `2160h0m0s`); 90 days when absent."""
    text = str(spec.get("duration") or "")
    if not text:
        return DEFAULT_DURATION
    total, number = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    for character in text:
        if character.isdigit() or character == ".":
            number += character
        elif character in units and number:
            total += float(number) * units[character]
            number = ""
    return datetime.timedelta(seconds=total) if total > 0 else DEFAULT_DURATION


def _ready_for(item: dict[str, Any]) -> bool:
    """Whether the Certificate's Ready condition already answers its current generation."""
    generation = item["metadata"].get("generation")
    for condition in (item.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("observedGeneration") == generation)
    return False


def _condition(status: str, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": _stamp(_now()),
        "observedGeneration": generation,
    }


class Issuer:
    """Answers Certificates, one at a time, as the watch shows them."""

    def __init__(self, api: client.ApiClient, directory: Path) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.directory = directory
        self.ca = LocalCa(directory)

    def refused(self) -> set[str]:
        """The domains this issuer is told to refuse."""
        path = self.directory / REFUSED_FILE
        if not path.exists():
            return set()
        return {line.strip() for line in path.read_text().splitlines() if line.strip()}

    def answer(self, item: dict[str, Any]) -> None:
        """Issue (or refuse) one Certificate, unless already answered for its generation."""
        if _ready_for(item) or item["metadata"].get("deletionTimestamp"):
            return
        metadata, spec = item["metadata"], item.get("spec") or {}
        namespace, name = metadata["namespace"], metadata["name"]
        generation = int(metadata.get("generation") or 1)
        names = list(spec.get("dnsNames") or [])
        refused = sorted(set(names) & self.refused())
        if refused or not names:
            why = f"the issuer refused {', '.join(refused)}" if refused else "no dnsNames"
            # As cert-manager reports a failed issuance: Issuing False (Failed) with the
            # request's message, lastFailureTime set; it would retry with backoff, this one not.
            issuing = _condition("False", "Failed", why, generation)
            issuing["type"] = "Issuing"
            missing = "Issuing certificate as Secret does not exist"
            status: dict[str, Any] = {
                "conditions": [_condition("False", "DoesNotExist", missing, generation), issuing],
                "lastFailureTime": _stamp(_now()),
                "failedIssuanceAttempts": 1,
            }
            self._status(namespace, name, status)
            log.info("refused %s/%s: %s", namespace, name, why)
            return
        certificate, key = self.ca.sign(names, _duration(spec))
        template = spec.get("secretTemplate") or {}
        self._secret(namespace, str(spec["secretName"]), name, names, template, certificate, key)
        issued = certificate.not_valid_before_utc
        expires = certificate.not_valid_after_utc
        status = {
            "conditions": [_condition("True", "Ready", "Certificate is up to date", generation)],
            "notBefore": _stamp(issued),
            "notAfter": _stamp(expires),
            "renewalTime": _stamp(issued + (expires - issued) * 2 / 3),
            "revision": int((item.get("status") or {}).get("revision") or 0) + 1,
        }
        self._status(namespace, name, status)
        log.info("issued %s/%s for %s until %s", namespace, name, names, _stamp(expires))

    def _secret(
        self,
        namespace: str,
        secret_name: str,
        certificate_name: str,
        names: list[str],
        template: dict[str, Any],
        certificate: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
    ) -> None:
        def encoded(data: bytes) -> str:
            return base64.b64encode(data).decode()

        body: Any = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {
                "name": secret_name,
                "namespace": namespace,
                "labels": dict(template.get("labels") or {}),
                "annotations": {
                    **(template.get("annotations") or {}),
                    "cert-manager.io/certificate-name": certificate_name,
                    "cert-manager.io/alt-names": ",".join(names),
                    "cert-manager.io/issuer-name": ISSUER_NAME,
                },
            },
            "data": {
                "tls.crt": encoded(_pem(certificate) + _pem(self.ca.certificate)),
                "tls.key": encoded(_key_pem(key)),
                "ca.crt": encoded(_pem(self.ca.certificate)),
            },
        }
        try:
            self.core.replace_namespaced_secret(secret_name, namespace, body)
        except client.ApiException as error:
            if error.status != 404:
                raise
            self.core.create_namespaced_secret(namespace, body)

    def _status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": status}
            )
        except client.ApiException as error:
            if error.status != 404:  # deleted meanwhile
                raise

    def run(self) -> None:
        """List and watch every Certificate, answering each; rewatch on any watch end."""
        while True:
            try:
                listed: Any = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
                for item in listed.get("items", []):
                    self.answer(item)
                (self.directory / READY_FILE).write_text("listed\n")
                version = listed["metadata"].get("resourceVersion")
                stream = watch.Watch().stream(
                    self.custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    PLURAL,
                    resource_version=version,
                    timeout_seconds=300,
                )
                for event in stream:
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.answer(event["object"])
            except Exception:
                log.exception("certificate watch ended; listing again")
                time.sleep(1.0)


def main(arguments: list[str]) -> int:
    """`python -m devstack.issuer KUBECONFIG ISSUER_DIR`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    kubeconfig, directory = arguments
    api = config.new_client_from_config(config_file=kubeconfig)
    Issuer(api, Path(directory)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
