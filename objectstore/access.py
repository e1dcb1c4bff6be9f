"""Each tenant's Jobs reach only their own prefix: a scoped identity per instance, made by the
service with the object storage's own access policy.

One port (`TenantAccess`), since providers differ: an S3-compatible server with an IAM API
(SeaweedFS, Ceph RGW) gets a user per instance with an inline policy on its prefix
(`IamTenantAccess`); AWS itself would hand out STS session credentials scoped by a session
policy instead. Listing is scoped by the policy's `s3:prefix` condition, which SeaweedFS
enforces, so one shared bucket serves every tenant.
"""

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from objectstore.client import StorageRefusedError, call
from objectstore.locations import instance_prefix

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

POLICY_NAME = "backups"
OBJECT_ACTIONS = (
    "s3:PutObject",
    "s3:GetObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
    "s3:PutObjectTagging",
    "s3:GetObjectTagging",
)
"""What a data Job does with its own objects: write, read, tag. Never delete: pruning is the
service's (a Job can at worst overwrite one of its own backups, which then fails its checksum)."""


@dataclass(frozen=True)
class AccessKey:
    """Credentials of one scoped identity (the secret never shows in a repr)."""

    key_id: str
    secret: str = field(repr=False)


class TenantAccess(Protocol):
    """Scoped credentials for an instance's Jobs."""

    def grant(self, instance_id: str, current_key_id: str | None) -> AccessKey | None:
        """Make (or bring in line) the instance's identity and its policy; a new key, or None
        when `current_key_id` is still its valid key (the caller keeps using it)."""

    def revoke(self, instance_id: str) -> None:
        """Remove the identity and its keys; absent is fine."""


def prefix_policy(bucket: str, prefix: str, instance_id: str) -> dict[str, Any]:
    """Objects under the instance's prefix, and listing of that prefix only."""
    own = instance_prefix(prefix, instance_id)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": list(OBJECT_ACTIONS),
                "Resource": [f"arn:aws:s3:::{bucket}/{own}*"],
            },
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [own, f"{own}*"]}},
            },
        ],
    }


class IamTenantAccess:
    """A user per instance, with one inline policy and one access key, through the IAM API."""

    def __init__(self, iam: "IAMClient", bucket: str, prefix: str, user_prefix: str) -> None:
        self._iam = iam
        self._bucket = bucket
        self._prefix = prefix
        self._user_prefix = user_prefix

    def user(self, instance_id: str) -> str:
        """The identity's name on the server."""
        return f"{self._user_prefix}{instance_id.replace('-', '')}"

    def _keys(self, user: str) -> list[str]:
        listed = call(f"access keys of {user}", lambda: self._iam.list_access_keys(UserName=user))
        return [key["AccessKeyId"] for key in listed.get("AccessKeyMetadata", [])]

    def _ensure_user(self, user: str) -> None:
        try:
            call(f"user {user}", lambda: self._iam.get_user(UserName=user))
        except StorageRefusedError as refused:
            if refused.code not in ("NoSuchEntity", "NoSuchEntityException"):
                raise
            call(f"creation of user {user}", lambda: self._iam.create_user(UserName=user))

    def grant(self, instance_id: str, current_key_id: str | None) -> AccessKey | None:
        """The user, its policy (put every time: a changed bucket or prefix takes effect), and
        a key: the current one if the server still knows it, else a new one replacing all."""
        user = self.user(instance_id)
        self._ensure_user(user)
        policy = json.dumps(prefix_policy(self._bucket, self._prefix, instance_id))
        call(
            f"policy of {user}",
            lambda: self._iam.put_user_policy(
                UserName=user, PolicyName=POLICY_NAME, PolicyDocument=policy
            ),
        )
        keys = self._keys(user)
        if current_key_id is not None and current_key_id in keys:
            return None
        made = call(f"access key of {user}", lambda: self._iam.create_access_key(UserName=user))
        key = made["AccessKey"]
        for stale in keys:
            call(
                f"old access key of {user}",
                lambda stale=stale: self._iam.delete_access_key(  # type: ignore[misc]
                    UserName=user, AccessKeyId=stale
                ),
            )
        return AccessKey(key["AccessKeyId"], key["SecretAccessKey"])

    def revoke(self, instance_id: str) -> None:
        """Keys, policy, user: each absent is fine."""
        user = self.user(instance_id)
        try:
            keys = self._keys(user)
        except StorageRefusedError as refused:
            if refused.code in ("NoSuchEntity", "NoSuchEntityException"):
                return
            raise
        for key in keys:
            call(
                f"access key of {user}",
                lambda key=key: self._iam.delete_access_key(  # type: ignore[misc]
                    UserName=user, AccessKeyId=key
                ),
            )
        for what, request in (
            ("policy", lambda: self._iam.delete_user_policy(UserName=user, PolicyName=POLICY_NAME)),
            ("user", lambda: self._iam.delete_user(UserName=user)),
        ):
            try:
                call(f"removal of the {what} of {user}", request)
            except StorageRefusedError as refused:
                if refused.code not in ("NoSuchEntity", "NoSuchEntityException"):
                    raise
