"""Valid command documents to start from, and small helpers to break them."""

import copy
import json
from typing import Any

from messages.examples import INSTANCE_ID, command_example


def provision() -> dict[str, Any]:
    """A valid provision command as a mutable document."""
    return copy.deepcopy(command_example("odoo.instance.provision.v1"))


def encode(document: Any) -> bytes:
    """The document as a message body."""
    return json.dumps(document).encode()


__all__ = ["INSTANCE_ID", "encode", "provision"]
