"""Argument checks shared by every layer, so that one kind of mistake gets one kind of message."""

from __future__ import annotations

import numbers


def checked_int(
    value: object, name: str, *, minimum: int = 1, error: type[Exception] = ValueError
) -> int:
    """``value`` as an ``int`` if it is an integer ``>= minimum``, else ``error`` naming ``name``.

    ``bool`` is refused (``True`` is not a count); numpy integers are accepted.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        allowed = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise error(f"{name} must be {allowed}, got {value!r}")
    return int(value)
