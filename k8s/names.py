"""Names of an instance's objects: derived from its id alone, so every retry finds the same ones.

Kubernetes names are DNS-1123 (lower-case letters, digits, '-'); PostgreSQL names use '_'
(the predecessor broke when a database name with '_' became a Kubernetes name).
"""

import hashlib
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceNames:
    """Every name an instance uses, in Kubernetes and in PostgreSQL."""

    instance_id: str

    @property
    def key(self) -> str:
        """The instance id's 32 hex digits: unique, short enough, valid everywhere."""
        return uuid.UUID(self.instance_id).hex

    @property
    def base(self) -> str:
        """Deployment, Service, Ingress and NetworkPolicy name (37 characters)."""
        return f"odoo-{self.key}"

    @property
    def secret(self) -> str:
        """The Secret with the credentials and odoo.conf."""
        return f"{self.base}-credentials"

    @property
    def backup_access(self) -> str:
        """The Secret with the object-storage key its data Jobs use (its own prefix only)."""
        return f"{self.base}-backup-access"

    @property
    def job_policy(self) -> str:
        """The NetworkPolicy of its Jobs' pods (the server's is named `base`)."""
        return f"{self.base}-jobs"

    @property
    def volume(self) -> str:
        """The PersistentVolumeClaim of /var/lib/odoo."""
        return f"{self.base}-data"

    @property
    def init_job(self) -> str:
        """The database initialisation Job."""
        return f"{self.base}-init"

    @property
    def database(self) -> str:
        """The tenant's PostgreSQL database."""
        return f"odoo_{self.key}"

    @property
    def role(self) -> str:
        """The tenant's PostgreSQL role, owner of its database."""
        return f"odoo_{self.key}"

    def certificate(self, domain: str) -> str:
        """The cert-manager Certificate of one of its customer domains (a digest of the domain:
        a domain may be 253 characters, a name at most 63; here 52)."""
        return f"{self.base}-d-{hashlib.sha256(domain.encode()).hexdigest()[:12]}"

    def certificate_secret(self, domain: str) -> str:
        """The TLS Secret the issuer writes for that Certificate."""
        return f"{self.certificate(domain)}-tls"

    def internal_url(self, namespace: str) -> str:
        """The Service's in-cluster URL (health checks, the `provisioned` event)."""
        return f"http://{self.base}.{namespace}.svc.cluster.local:8069"
