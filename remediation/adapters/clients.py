"""What the adapters' Azure SDK clients share: one client per subscription, the options every Resource Manager
client takes here, and how the SDK retries a failed request."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RetrySettings:
    """azure-core's RetryPolicy settings for an adapter's client (its `retry_total`, `retry_backoff_factor` and
    `retry_backoff_max` keyword arguments); None keeps the SDK's own default, which is what production runs with.
    A `Retry-After` the service sends is honoured whatever these say."""

    total: int | None = None
    backoff_factor: float | None = None
    backoff_max: float | None = None

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments an azure-core client (or an azure-identity credential) takes for these settings."""
        return {f"retry_{name}": value for name, value in
                (("total", self.total), ("backoff_factor", self.backoff_factor), ("backoff_max", self.backoff_max))
                if value is not None}


# azure-core's own: 10 retries in all (3 per failing status), back-off factor 0.8 s, each wait at most 120 s.
SDK_RETRY = RetrySettings()


def arm_options(endpoint: str, *, connection_verify: str | bool, retry: RetrySettings) -> dict[str, Any]:
    """The keyword arguments of a Resource Manager client for this cloud: its endpoint and its own token audience
    (the SDKs default to the public cloud's), the CA bundle to trust, and the retry settings."""
    return {"base_url": endpoint, "credential_scopes": [f"{endpoint.rstrip('/')}/.default"],
            "connection_verify": connection_verify, **retry.client_options()}


class PerSubscription[C]:
    """One SDK client per subscription (a management client is bound to one), made on first use and then kept.
    Safe to call from several threads: each subscription's client is made once."""

    def __init__(self, make: Callable[[str], C]) -> None:
        self._make = make
        self._clients: dict[str, C] = {}
        self._lock = threading.Lock()

    def __call__(self, subscription_id: str) -> C:
        with self._lock:
            if subscription_id not in self._clients:
                self._clients[subscription_id] = self._make(subscription_id)
            return self._clients[subscription_id]
