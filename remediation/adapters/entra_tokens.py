"""Access tokens for the remediator's API, checked with PyJWT against the tenant's published keys.

No permission needed: the signing keys are public (`<authority>/<tenant>/discovery/v2.0/keys`).
The API's Entra application asks for v2.0 tokens (`requestedAccessTokenVersion: 2`), so a
token's `aud` is the API's client id (or its application ID URI) and its `iss` is
`<authority>/<tenant>/v2.0`.

The key set (`SigningKeys`) is fetched once and then refreshed off the request path:
- a request never waits for a fetch while a set is known: an hour-old set is refreshed in a background thread
  while requests go on using it, and a failed refresh is tried again `KEY_RETRY_SECONDS` later, so an outage of
  Entra ID does not stop the API while the keys were known (for up to `KEY_SET_KEPT_SECONDS`);
- with no set yet, concurrent requests wait for one shared fetch, never for one fetch each in turn;
- a token naming a key id the set lacks (Entra ID rolled a new key in) starts one refresh, which it waits for;
  such refreshes come at most once per `UNKNOWN_KEY_COOLDOWN_SECONDS`, so made-up key ids cannot force fetches.
A key Entra ID withdraws stops being trusted at the first refresh after it left the set (within the hour).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jwt

from remediation.auth import UnauthorizedError
from remediation.errors import TransientError

log = logging.getLogger(__name__)

ALGORITHMS = ["RS256"]  # what Entra ID signs access tokens with; never "none" or a shared-key HMAC
# Clock skew tolerated between Entra ID and this host, as Microsoft's own middleware allows (5 minutes).
LEEWAY_SECONDS = 300
KEY_REFRESH_SECONDS = 3600  # a key set this old is refreshed (in the background)
KEY_RETRY_SECONDS = 30  # after a failed refresh, the next one no sooner
KEY_SET_KEPT_SECONDS = 24 * 3600  # while refreshes fail, the last good set is trusted this long after its fetch
UNKNOWN_KEY_COOLDOWN_SECONDS = 300  # a token with an unknown key id refreshes the set at most this often
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


class SigningKeys:
    """The tenant's signing keys by key id: the last good set, refreshed off the request path (module docstring).

    `clock` is monotonic seconds (the set's age); `timeout` bounds one fetch and a request's wait for it."""

    def __init__(self, uri: str, *, ca_bundle: str | None = None, timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        context = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
        # PyJWT fetches and parses (no redirects, only usable signing keys); the caching is ours.
        self._client = jwt.PyJWKClient(uri, cache_jwk_set=False, cache_keys=False, timeout=timeout,
                                       ssl_context=context)
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()  # held for reading and writing the fields below, never during a fetch
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # of the set in `_keys`
        self._tried_at: float | None = None  # the last fetch started, whatever its end
        self._forced_at: float | None = None  # the last fetch an unknown key id started
        self._fetching: threading.Event | None = None  # set when the fetch in flight ends
        self._error: Exception | None = None  # why the last fetch failed; None after a success

    def get(self, kid: str) -> jwt.PyJWK:
        """The key `kid` names. UnauthorizedError if the tenant does not publish it; TransientError when no set is
        known (none fetched yet, or none for `KEY_SET_KEPT_SECONDS`) and one cannot be fetched now."""
        with self._lock:
            now = self._clock()
            known = self._fetched_at is not None and now - self._fetched_at < KEY_SET_KEPT_SECONDS
            if known and kid in self._keys:
                if now - (self._fetched_at or now) >= KEY_REFRESH_SECONDS and self._may_retry(now):
                    self._start_fetch(now)  # in the background: this request goes on with the set it has
                return self._keys[kid]
            if not known:
                waiting = self._fetching or self._start_fetch(now)  # every request waits for the same one fetch
            elif self._fetching is not None:
                waiting = self._fetching
            elif self._forced_at is None or now - self._forced_at >= UNKNOWN_KEY_COOLDOWN_SECONDS:
                self._forced_at = now
                waiting = self._start_fetch(now)
            else:
                raise _unknown_key()
        waiting.wait(self._timeout + 1)
        with self._lock:
            now = self._clock()
            if self._fetched_at is not None and now - self._fetched_at < KEY_SET_KEPT_SECONDS:
                if kid in self._keys:
                    return self._keys[kid]
                if self._error is None and self._fetching is None:  # the tenant answered, without that key
                    raise _unknown_key()
            reason = self._error or "the fetch is taking too long"
        raise TransientError(f"could not fetch the tenant's token signing keys: {reason}", retry_after=10)

    def _may_retry(self, now: float) -> bool:
        return self._fetching is None and (self._error is None or self._tried_at is None
                                           or now - self._tried_at >= KEY_RETRY_SECONDS)

    def _start_fetch(self, now: float) -> threading.Event:
        """Start the one fetch in a thread of its own (the caller holds the lock)."""
        done = threading.Event()
        self._fetching, self._tried_at = done, now
        threading.Thread(target=self._fetch, args=(done,), name="signing-keys", daemon=True).start()
        return done

    def _fetch(self, done: threading.Event) -> None:
        try:
            keys = {key.key_id: key for key in self._client.get_signing_keys() if key.key_id}
        except Exception as err:  # noqa: BLE001 - this thread's edge: the last good set stays, and the error is kept
            log.warning("fetching the tenant's token signing keys failed (the last good set stays in use): %s", err)
            with self._lock:
                self._error = err
        else:
            with self._lock:
                self._keys, self._fetched_at, self._error = keys, self._clock(), None
        finally:
            with self._lock:
                self._fetching = None
            done.set()


def _unknown_key() -> UnauthorizedError:
    return UnauthorizedError("the access token is signed by a key this tenant does not publish",
                             code="InvalidSignature")


class EntraTokenValidator:
    def __init__(self, *, authority_host: str, tenant_id: str, audiences: Iterable[str],
                 ca_bundle: str | None = None, timeout: float = 10.0, keys: SigningKeys | None = None) -> None:
        self._tenant_id = tenant_id
        self._issuer = f"{authority_host.rstrip('/')}/{tenant_id}/v2.0"
        self._audiences = [a for a in audiences if a]
        self._keys = keys or SigningKeys(f"{authority_host.rstrip('/')}/{tenant_id}/discovery/v2.0/keys",
                                         ca_bundle=ca_bundle, timeout=timeout)

    def validate(self, token: str) -> Mapping[str, Any]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as err:  # not a JWT at all
            raise UnauthorizedError("the access token is not a valid JWT", code="InvalidToken") from err
        if not isinstance(kid, str) or not kid:
            raise UnauthorizedError("the access token names no signing key (kid)", code="InvalidToken")
        key = self._keys.get(kid)
        try:
            claims = jwt.decode(token, key.key, algorithms=ALGORITHMS, audience=self._audiences,
                                issuer=self._issuer, leeway=LEEWAY_SECONDS, options={"require": REQUIRED_CLAIMS})
        except jwt.PyJWTError as err:
            code, message = next((c, m) for kind, c, m in _REASONS if isinstance(err, kind))
            raise UnauthorizedError(message, code=code) from err
        if claims.get("tid") != self._tenant_id:
            raise UnauthorizedError("the access token belongs to another tenant (tid)", code="InvalidIssuer")
        return claims
