"""Queue messages in, parsed at the edge: one rule for every queue the remediator reads.

A message the remediator did not write (too long, not JSON, a field missing or of the wrong type) raises
InvalidInputError with the queue's code, and the trigger drops it with that reason; nothing is read or written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from remediation.errors import InvalidInputError

_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
# What a malformed field raises while `build` reads it: a missing key, a wrong type, a bad number, date or id.
_MALFORMED = (ValueError, TypeError, KeyError, RecursionError, AttributeError, OverflowError)


def decode[T](body: str | bytes, *, most: int, code: str, needs: str, build: Callable[[Any], T]) -> T:
    """`build(the JSON)`, or InvalidInputError(code) saying what a message of this queue `needs`."""
    if len(body) > most:
        raise InvalidInputError(f"the message is longer than {most} bytes", code=code)
    try:
        return build(json.loads(body))
    except InvalidInputError:
        raise
    except _MALFORMED as err:
        raise InvalidInputError(f"the message needs {needs}", code=code) from err


def traced(body: dict[str, Any], traceparent: str | None) -> dict[str, Any]:
    """The message with the sender's trace context, if there is one (telemetry off: none)."""
    return {**body, "traceparent": traceparent} if traceparent else body


def valid_traceparent(value: object) -> str | None:
    """A message's W3C traceparent if it is one (version-traceid-spanid-flags), else None: a bad one is ignored, as
    tracing must never stop work."""
    return value if isinstance(value, str) and _TRACEPARENT.fullmatch(value) else None
