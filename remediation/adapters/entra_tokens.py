"""Access tokens for the remediator's API, checked with PyJWT against the tenant's published keys.

No permission needed: the signing keys are public (`<authority>/<tenant>/discovery/v2.0/keys`).
The API's Entra application asks for v2.0 tokens (`requestedAccessTokenVersion: 2`), so a
token's `aud` is the API's client id (or its application ID URI) and its `iss` is
`<authority>/<tenant>/v2.0`.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable, Mapping
from typing import Any

import jwt

from remediation.auth import UnauthorizedError
from remediation.errors import TransientError

log = logging.getLogger(__name__)

ALGORITHMS = ["RS256"]  # what Entra ID signs access tokens with; never "none" or a shared-key HMAC
# Clock skew tolerated between Entra ID and this host, as Microsoft's own middleware allows (5 minutes).
LEEWAY_SECONDS = 300
KEYS_LIFESPAN_SECONDS = 3600
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "aud", "iss", "tid", "oid"]

# PyJWT's failures, most specific first, as our reason codes.
_REASONS: tuple[tuple[type[jwt.PyJWTError], str, str], ...] = (
    (jwt.ExpiredSignatureError, "TokenExpired", "the access token has expired; get a new one"),
    (jwt.ImmatureSignatureError, "TokenNotYetValid", "the access token is not valid yet (nbf or iat in the future)"),
    (jwt.InvalidAudienceError, "InvalidAudience", "the access token is not for the remediator's API (aud)"),
    (jwt.InvalidIssuerError, "InvalidIssuer", "the access token was not issued by this tenant's Entra ID (iss)"),
    (jwt.InvalidSignatureError, "InvalidSignature", "the access token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "InvalidToken", "the access token is not signed with RS256"),
    (jwt.MissingRequiredClaimError, "InvalidToken", "the access token lacks a required claim"),
    (jwt.PyJWTError, "InvalidToken", "the access token is not a valid JWT"),
)


class EntraTokenValidator:
    def __init__(self, *, authority_host: str, tenant_id: str, audiences: Iterable[str],
                 ca_bundle: str | None = None, timeout: float = 10.0) -> None:
        self._tenant_id = tenant_id
        self._issuer = f"{authority_host.rstrip('/')}/{tenant_id}/v2.0"
        self._audiences = [a for a in audiences if a]
        context = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
        # Caches the key set for an hour, so a key Entra ID withdraws stops being trusted within the hour (the
        # per-key cache would trust it forever); an unknown key id (a rotation) refetches, once per cooldown.
        self._keys = jwt.PyJWKClient(f"{authority_host.rstrip('/')}/{tenant_id}/discovery/v2.0/keys",
                                     cache_keys=False, lifespan=KEYS_LIFESPAN_SECONDS, timeout=timeout,
                                     ssl_context=context)

    def validate(self, token: str) -> Mapping[str, Any]:
        try:
            key = self._keys.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as err:
            raise TransientError(f"could not fetch the tenant's token signing keys: {err}", retry_after=10) from err
        except jwt.PyJWKClientError as err:
            raise UnauthorizedError("the access token is signed by a key this tenant does not publish",
                                    code="InvalidSignature") from err
        except jwt.PyJWTError as err:  # not a JWT at all, or no key id in its header
            raise UnauthorizedError("the access token is not a valid JWT", code="InvalidToken") from err
        try:
            claims = jwt.decode(token, key.key, algorithms=ALGORITHMS, audience=self._audiences,
                                issuer=self._issuer, leeway=LEEWAY_SECONDS, options={"require": REQUIRED_CLAIMS})
        except jwt.PyJWTError as err:
            code, message = next((c, m) for kind, c, m in _REASONS if isinstance(err, kind))
            raise UnauthorizedError(message, code=code) from err
        if claims.get("tid") != self._tenant_id:
            raise UnauthorizedError("the access token belongs to another tenant (tid)", code="InvalidIssuer")
        return claims
