"""Who may call the HTTP API: a Microsoft Entra access token for the remediator's API that
carries the app role the route needs.

Every route checks, in this order: a bearer token is present (else 401), it is a token the
tenant signed for this API and it is within its lifetime (else 401), and it carries the
route's role (else 403). Nothing is read from the request body or written before the
caller passes, so a refused call changes nothing. The function key the host checks first
stays a second factor.

Why in the app and not App Service built-in authentication: built-in authentication works
on Flex Consumption and hands the caller to Python as `X-MS-CLIENT-PRINCIPAL` headers, but
the app would then trust headers that only the platform sets, which a local run or a
misconfigured site does not guarantee; and Event Grid's webhook route would need to be
excluded from it. Validating the token here is one code path in Azure, in the sandbox and
in the tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from remediation.errors import PermanentError

READ_ROLE = "Remediations.Read"
WRITE_ROLE = "Remediations.Write"
API_ROLES = frozenset({READ_ROLE, WRITE_ROLE})
# Which roles satisfy a route's requirement: a writer may also read what it started.
SATISFIED_BY: Mapping[str, frozenset[str]] = {
    READ_ROLE: frozenset({READ_ROLE, WRITE_ROLE}),
    WRITE_ROLE: frozenset({WRITE_ROLE}),
}
MAX_AUTHORIZATION_HEADER = 16 * 1024


class UnauthorizedError(PermanentError):
    """No usable token: answered 401 with a `WWW-Authenticate: Bearer` challenge (RFC 6750)."""

    code = "Unauthorized"

    def __init__(self, message: str, *, code: str, token_error: str | None = "invalid_token") -> None:
        super().__init__(message, code=code)
        # RFC 6750 section 3.1: a request without a token gets the challenge without an error code.
        self.www_authenticate = "Bearer" if token_error is None else (
            f'Bearer error="{token_error}", error_description="{message.replace(chr(34), chr(39))}"')


class ForbiddenError(PermanentError):
    """A valid token without the role the route needs: answered 403."""

    code = "Forbidden"


@dataclass(frozen=True)
class Caller:
    """Who made a request: the token's object id (a user or a service principal) and client app."""

    object_id: str
    app_id: str
    roles: frozenset[str]

    def view(self) -> dict[str, str]:
        return {"objectId": self.object_id, "appId": self.app_id}


class TokenValidator(Protocol):
    def validate(self, token: str) -> Mapping[str, Any]:
        """The token's claims once its signature, audience, issuer, tenant and lifetime check out.

        Raises UnauthorizedError for a token that fails any check; TransientError when the
        tenant's signing keys cannot be fetched."""


class ApiAuthenticator:
    def __init__(self, validator: TokenValidator) -> None:
        self._validator = validator

    def authenticate(self, authorization: str | None, required_role: str) -> Caller:
        """The caller, if the Authorization header holds a valid token with `required_role` (or one that implies it)."""
        claims = self._validator.validate(bearer_token(authorization))
        caller = caller_of(claims)
        if not caller.roles & SATISFIED_BY[required_role]:
            raise ForbiddenError(
                f"the caller (object id {caller.object_id}) lacks the app role {required_role} on the remediator's"
                " API; an administrator assigns it (infra/README.md)", code="MissingRole")
        return caller


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; UnauthorizedError otherwise."""
    if not authorization or not authorization.strip():
        raise UnauthorizedError("an Entra access token for the remediator's API is required: send"
                                " 'Authorization: Bearer <token>'", code="MissingToken", token_error=None)
    if len(authorization) > MAX_AUTHORIZATION_HEADER:
        raise UnauthorizedError("the Authorization header is too long to hold an access token", code="InvalidToken",
                                token_error="invalid_request")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("the Authorization header must be 'Bearer <token>'", code="InvalidToken",
                                token_error="invalid_request")
    return token.strip()


def caller_of(claims: Mapping[str, Any]) -> Caller:
    """Read the caller from validated claims (v2.0: `azp`; v1.0: `appid`)."""
    object_id = claims.get("oid")
    app_id = claims.get("azp") or claims.get("appid")
    roles = claims.get("roles") or []
    if not isinstance(object_id, str) or not object_id or not isinstance(app_id, str):
        raise UnauthorizedError("the token names no caller (oid and azp claims)", code="InvalidToken")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise UnauthorizedError("the token's roles claim is not a list of strings", code="InvalidToken")
    return Caller(object_id=object_id, app_id=app_id, roles=frozenset(roles))
