"""A body's shape read without parsing it: nesting depth, and the top-level `id` and `type`.

A JSON parser recurses once per level of nesting, so a hostile body of nested arrays makes it
raise RecursionError (or worse) before any check of ours runs. This scan walks the body once,
jumping from one string or bracket to the next with a regular expression, and never recurses:
it runs before anything parses the body (trace context included). It also reads the top-level
`id` and `type` leniently, so a body too deep, too large or otherwise unparseable can still be
answered by its id.
"""

import re
from dataclasses import dataclass

SCAN_LIMIT_BYTES = 256 * 1024
"""At most this much of a body is scanned for its id (a body too large is not read further)."""

_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]|"', re.DOTALL)
"""A whole string, a bracket, or an opening quote that no closing quote follows."""
_KEY_VALUE = re.compile(rb'\s*:\s*"([\x20-\x21\x23-\x5b\x5d-\x7e]{1,128})"')
"""After a key: a colon and a short printable string without escapes (an id or type)."""
_OPENING = frozenset(b"[{")


@dataclass(frozen=True)
class Shape:
    """What the scan found."""

    depth: int
    """Deepest nesting of objects and arrays (1: a flat object)."""
    command_id: str | None
    """The top-level `id`, when it is a short printable string."""
    command_type: str | None
    """The top-level `type`, likewise."""
    complete: bool
    """False when the scan stopped early: a string never closed, or the scan limit."""


def scan(body: bytes, max_depth: int) -> Shape:
    """Walk `body` once; stop counting depth past `max_depth` (only the id is still sought)."""
    text = body[:SCAN_LIMIT_BYTES]
    depth = deepest = 0
    found: dict[bytes, str] = {}
    for token in _TOKEN.finditer(text):
        first = token.group()[0]
        if first in _OPENING:
            depth += 1
            deepest = max(deepest, depth)
        elif first != ord('"'):
            depth -= 1
        elif token.end() - token.start() == 1:
            return Shape(deepest, found.get(b"id"), found.get(b"type"), complete=False)
        elif depth == 1 and token.group() in (b'"id"', b'"type"'):
            value = _KEY_VALUE.match(text, token.end())
            if value is not None:
                found.setdefault(token.group()[1:-1], value.group(1).decode("ascii"))
        if deepest > max_depth and len(found) == 2:
            break
    complete = len(body) <= SCAN_LIMIT_BYTES
    return Shape(deepest, found.get(b"id"), found.get(b"type"), complete)
