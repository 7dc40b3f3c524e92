"""The two error roots every layer raises, and the input error the edges map to responses.

Adapters translate SDK exceptions into these with `raise ... from`, so the cause stays
attached; the triggers catch them once.
"""

from __future__ import annotations


class RemediationError(Exception):
    """Base of every error the remediator raises on purpose."""

    code = "RemediationError"


class TransientError(RemediationError):
    """Worth trying again later; `retry_after` is the server's hint in seconds, if any."""

    code = "Transient"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(RemediationError):
    """Trying again will not help: a person must look."""

    code = "Permanent"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class NotFoundError(PermanentError):
    code = "NotFound"


class ConflictError(PermanentError):
    code = "Conflict"


class InvalidInputError(PermanentError):
    """Malformed input from outside (HTTP body, event, queue message, id)."""

    code = "InvalidInput"


class ConfigurationError(PermanentError):
    code = "InvalidConfiguration"


class AuthenticationUnavailableError(TransientError):
    """The remediator's own identity could not get, or use, a token: Entra ID or the identity endpoint failing."""

    code = "AuthenticationUnavailable"


class OperationInProgressError(TransientError):
    """Azure refused a write because another operation on the resource is running (ARM 409)."""

    code = "OperationInProgress"


class ConcurrencyError(TransientError):
    """Another writer changed the record first (an ETag precondition failed)."""

    code = "ConcurrencyConflict"


class PrincipalNotReplicatedError(TransientError):
    """ARM does not see a principal created moments ago (PrincipalNotFound): replication, try again."""

    code = "PrincipalNotFound"
