"""Certificates of the local control plane, made with openssl once and kept under pki/."""

from pathlib import Path

from devstack import processes

CA_SUBJECT = "/CN=instance-service-devstack-ca"
# Names the API server answers to: loopback for us, in-cluster names for completeness.
APISERVER_SANS = (
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
    "DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1"
)


def _openssl(*args: str) -> None:
    processes.run(["openssl", *args], what=f"openssl {args[0]}")


def _key(path: Path) -> None:
    if not path.exists():
        _openssl(
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)
        )
        path.chmod(0o600)


def _signed_cert(pki: Path, name: str, subject: str, extensions: str) -> None:
    cert = pki / f"{name}.crt"
    if cert.exists():
        return
    key, csr, ext = pki / f"{name}.key", pki / f"{name}.csr", pki / f"{name}.ext"
    _key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    ext.write_text(extensions)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
        "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    csr.unlink()
    ext.unlink()


def ensure_pki(pki: Path) -> None:
    """Create the CA, the API server's serving cert, an admin client cert and the SA key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    if not (pki / "ca.crt").exists():
        _key(pki / "ca.key")
        _openssl(
            "req", "-x509", "-new", "-key", str(pki / "ca.key"), "-subj", CA_SUBJECT,
            "-days", "3650", "-sha256", "-out", str(pki / "ca.crt"),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        )  # fmt: skip
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
