"""Whether an object in the cluster still is what a manifest builder says it should be.

An object has drifted when a field the manifest sets has another value there; fields the
manifest leaves out (defaults the API server fills in, status, other managers' additions such
as a restart annotation) do not count. Quantities compare by value ("1024Mi" is "1Gi"), since
the API server stores them in canonical form.
"""

from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from k8s.workload import Manifest

COMPARED = ("spec",)
"""Top-level parts of a manifest compared besides metadata labels and annotations."""


def differences(desired: Manifest, observed: Manifest) -> list[str]:
    """The paths where `observed` departs from `desired` (empty: in line)."""
    found: list[str] = []
    meta_desired, meta_observed = desired.get("metadata", {}), observed.get("metadata", {})
    for part in ("labels", "annotations"):
        found.extend(
            _compare(meta_desired.get(part, {}), meta_observed.get(part), f"metadata.{part}")
        )
    for part in COMPARED:
        if part in desired:
            found.extend(_compare(desired[part], observed.get(part), part))
    return found


def _compare(desired: Any, observed: Any, path: str) -> Iterator[str]:
    if isinstance(desired, dict):
        if not isinstance(observed, dict):
            yield path
            return
        for key, value in desired.items():
            yield from _compare(value, observed.get(key), f"{path}.{key}")
    elif isinstance(desired, list):
        if not isinstance(observed, list) or len(observed) != len(desired):
            yield path
            return
        for index, (want, have) in enumerate(zip(desired, observed, strict=True)):
            yield from _compare(want, have, f"{path}[{index}]")
    elif not _same(desired, observed):
        yield path


def _same(desired: Any, observed: Any) -> bool:
    if desired == observed:
        return True
    if isinstance(desired, int | str) and isinstance(observed, int | str):
        # An int-or-string field (a port, a quantity) may come back in the other form.
        if str(desired) == str(observed):
            return True
        return _quantity(desired) is not None and _quantity(desired) == _quantity(observed)
    return False


def _quantity(value: int | str) -> Decimal | None:
    try:
        return Decimal(parse_quantity(value))
    except (ValueError, InvalidOperation, TypeError):
        return None
