"""Certificates of the local control plane, made with openssl once and kept under pki/."""

from pathlib import Path

from devstack import processes

CA_SUBJECT = "/CN=instance-service-devstack-ca"
# Names the API server answers to: loopback for us, in-cluster names for completeness.
APISERVER_SANS = (
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
    "DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1"
)


FRONT_PROXY_CA_SUBJECT = "/CN=instance-service-devstack-front-proxy-ca"
FRONT_PROXY_CLIENT = "front-proxy-client"


def ensure_mutual_tls(directory: Path, ca_subject: str, sans: str) -> None:
    """A CA of its own in `directory` (ca.crt, ca.key) and one cert of it (tls.crt, tls.key)
    that serves these names and is a client cert too: KEDA's operator and metrics server use
    one such directory for both ends of their mutual TLS and for the metrics API."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    _ca(directory, "ca", ca_subject)
    _signed_cert(
        directory,
        "tls",
        "/CN=devstack",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={sans}\n",
    )


def _openssl(*args: str) -> None:
    processes.run(["openssl", *args], what=f"openssl {args[0]}")


def _key(path: Path) -> None:
    if not path.exists():
        _openssl(
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)
        )
        path.chmod(0o600)


def _signed_cert(pki: Path, name: str, subject: str, extensions: str, ca: str = "ca") -> None:
    cert = pki / f"{name}.crt"
    if cert.exists():
        return
    key, csr, ext = pki / f"{name}.key", pki / f"{name}.csr", pki / f"{name}.ext"
    _key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    ext.write_text(extensions)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(pki / f"{ca}.crt"),
        "-CAkey", str(pki / f"{ca}.key"), "-CAcreateserial", "-days", "3650", "-sha256",
        "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    csr.unlink()
    ext.unlink()


def _ca(pki: Path, name: str, subject: str) -> None:
    if not (pki / f"{name}.crt").exists():
        _key(pki / f"{name}.key")
        _openssl(
            "req", "-x509", "-new", "-key", str(pki / f"{name}.key"), "-subj", subject,
            "-days", "3650", "-sha256", "-out", str(pki / f"{name}.crt"),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        )  # fmt: skip


def ensure_pki(pki: Path) -> None:
    """Create the CA, the API server's serving cert, an admin client cert, the SA key pair, and
    the aggregation layer's front-proxy CA and client cert."""
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    _ca(pki, "ca", CA_SUBJECT)
    _signed_cert(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={APISERVER_SANS}\n",
    )
    # Group system:masters makes this client cluster-admin without any RBAC object.
    _signed_cert(
        pki,
        "admin",
        "/O=system:masters/CN=devstack-admin",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n",
    )
    # The aggregation layer: the API server proxies to extension API servers (KEDA's metrics
    # server) with this client cert; they trust the user it names only from this separate CA,
    # so no ordinary client cert can impersonate a user.
    _ca(pki, "front-proxy-ca", FRONT_PROXY_CA_SUBJECT)
    _signed_cert(
        pki,
        "front-proxy-client",
        f"/CN={FRONT_PROXY_CLIENT}",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n",
        ca="front-proxy-ca",
    )
    if not (pki / "sa.pub").exists():
        _openssl(
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            str(pki / "sa.key"),
        )
        (pki / "sa.key").chmod(0o600)
        _openssl("pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
