"""Translate azure-core exceptions into the remediator's two error roots, once."""

from __future__ import annotations

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from remediation.errors import (
    AuthenticationUnavailableError,
    ConcurrencyError,
    ConflictError,
    NotFoundError,
    OperationInProgressError,
    PermanentError,
    RemediationError,
    TransientError,
)

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# A token the remediator could not get (Entra ID or the managed identity endpoint failing) or that a service
# refused: an outage or a misconfiguration, never the cluster's fault. Try again later; the runner's bound on
# transient failures turns a lasting one into a failed remediation with this reason.
AUTHENTICATION_RETRY_SECONDS = 30.0


def authentication_error(err: Exception, action: str) -> AuthenticationUnavailableError:
    return AuthenticationUnavailableError(f"{action}: the remediator could not authenticate: {err}",
                                          retry_after=AUTHENTICATION_RETRY_SECONDS)


def retry_after_seconds(headers: object) -> float | None:
    """Read `Retry-After` (seconds form) from a headers mapping, if present and sane."""
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")  # type: ignore[attr-defined]
    try:
        return max(float(value), 0.0) if value is not None else None
    except (TypeError, ValueError):
        return None


def translate(err: AzureError, action: str) -> RemediationError:
    """The RemediationError to raise (`from err`) for an SDK error met while doing `action`."""
    status = getattr(err, "status_code", None)
    code = getattr(getattr(err, "error", None), "code", None) or (err.__class__.__name__)
    message = f"{action}: {err.message if hasattr(err, 'message') else err}"
    if isinstance(err, ResourceNotFoundError) or status == 404:
        return NotFoundError(message, code=code)
    if isinstance(err, ResourceModifiedError) or status == 412:
        return ConcurrencyError(message)
    if isinstance(err, ClientAuthenticationError) and status in (None, 401):
        return authentication_error(err, action)
    if isinstance(err, (ServiceRequestError, ServiceResponseError)):
        return TransientError(message)
    response = getattr(err, "response", None)
    if status in TRANSIENT_STATUS:
        return TransientError(message, retry_after=retry_after_seconds(getattr(response, "headers", None)))
    if status == 409:
        # AKS answers 409 while another operation runs on the cluster: wait, don't give up.
        if isinstance(err, ResourceExistsError) and code == "EntityAlreadyExists":
            return ConflictError(message, code=code)
        return OperationInProgressError(message, retry_after=retry_after_seconds(getattr(response, "headers", None)))
    if isinstance(err, HttpResponseError):
        return PermanentError(message, code=code)
    return TransientError(message)
