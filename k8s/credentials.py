"""An instance's generated credentials: made once, kept only in its Secret, read back from there.

A retried provision must find the passwords an interrupted run already wrote (the tenant role may
already have one of them), so the Secret is the source of truth and is never regenerated.
"""

from __future__ import annotations

import base64
import secrets
from typing import TYPE_CHECKING

from k8s.spec import TenantCredentials

if TYPE_CHECKING:
    from kubernetes.client import V1Secret

PASSWORD_BYTES = 32
"""32 random bytes: 43 URL-safe characters per password."""


def generate_credentials() -> TenantCredentials:
    """Fresh random passwords for a new instance."""
    return TenantCredentials(
        database_password=secrets.token_urlsafe(PASSWORD_BYTES),
        admin_password=secrets.token_urlsafe(PASSWORD_BYTES),
        master_password=secrets.token_urlsafe(PASSWORD_BYTES),
    )


def credentials_in(secret: V1Secret | None) -> TenantCredentials | None:
    """The credentials a Secret holds; None without the Secret or if any of them is missing."""
    data: dict[str, str] = getattr(secret, "data", None) or {}
    keys = ("database-password", "admin-password", "admin-passwd")
    if not all(data.get(key) for key in keys):
        return None
    database, admin, master = (base64.b64decode(data[key]).decode() for key in keys)
    return TenantCredentials(
        database_password=database, admin_password=admin, master_password=master
    )
