"""Outcome events (remediation/outcomes.py) to an Event Grid custom topic, through azure-eventgrid.

Permission: the `EventGrid Data Sender` role (d5a91429-5739-47e2-a06b-3470a27159e7) on the topic, for the
remediator's identity: Microsoft Entra auth (token audience `https://eventgrid.azure.net`), so the topic can keep
local (key) auth disabled. Event Grid answers a caller without the role `401 Unauthorized`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from remediation.errors import PermanentError, RemediationError
from remediation.outcomes import OutcomeEvent

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.exceptions import AzureError

log = logging.getLogger(__name__)


class EventGridOutcomes:
    """Publishes to one Event Grid custom topic (Event Grid Basic, CloudEvents 1.0 input schema).

    `endpoint`: the topic's endpoint, `https://<topic>.<region>-1.eventgrid.azure.net/api/events`.
    `source`: what the events name as their source: the deployment's API application ID URI, stable and unique per
    deployment (remediation/app/bootstrap.py `build_outcomes`).
    `connection_verify`, `retry_total`: transport options (a CA bundle for a local stand-in; the SDK's retries,
    None for its default). Permission: EventGrid Data Sender on the topic.
    """

    def __init__(self, endpoint: str, credential: TokenCredential, *, source: str,
                 connection_verify: str | bool = True, retry_total: int | None = None) -> None:
        # Imported here, not at module level: azure.eventgrid costs ~0.2 s, and this module's event types are
        # imported by code that function_app's cold import reaches.
        from azure.eventgrid import EventGridPublisherClient

        self._client = EventGridPublisherClient(endpoint, credential)
        self._endpoint = endpoint
        self._source = source
        # azure-eventgrid 4.22's EventGridPublisherClient drops client options for Event Grid Basic: they go per call.
        self._options: dict[str, Any] = {}
        if connection_verify is not True:
            self._options["connection_verify"] = connection_verify
        if retry_total is not None:
            self._options["retry_total"] = retry_total
        if self._options:
            _quiet_per_call_option_warnings()

    def publish(self, events: Sequence[OutcomeEvent]) -> None:
        if not events:
            return
        from azure.core.exceptions import AzureError

        try:
            self._client.send([e.to_cloud_event(self._source) for e in events], **self._options)
        except AzureError as err:
            raise self._translate(err, f"publishing {len(events)} outcome event(s) to Event Grid") from err
        log.info("published %s outcome event(s): %s", len(events), ", ".join(sorted({e.type for e in events})))

    def close(self) -> None:
        self._client.close()

    def _translate(self, err: AzureError, action: str) -> RemediationError:
        """The topic's own 401/403 is a missing role or a wrong audience, which waiting does not fix: permanent (the
        shared translation reads a 401 as an authentication outage). A token Entra ID would not issue stays
        transient, as everywhere."""
        from remediation.adapters.azure_errors import translate

        response = getattr(err, "response", None)
        url = str(getattr(getattr(response, "request", None), "url", "") or "")
        status = getattr(err, "status_code", None)
        if status in (401, 403) and url.startswith(self._endpoint):
            return PermanentError(f"{action}: refused ({status}); the remediator needs the EventGrid Data Sender role "
                                  f"on the topic: {getattr(err, 'message', err)}", code="EventGridUnauthorized")
        return translate(err, action)


class NoOutcomes:
    """The publisher when no topic is configured: publishes nothing."""

    def publish(self, events: Sequence[OutcomeEvent]) -> None:
        if events:
            log.debug("no outcome topic configured: %s event(s) not published", len(events))


class _PerCallOptionFilter(logging.Filter):
    """Drops azure-eventgrid's "connection_verify is not a known attribute of class CloudEvent" warnings: per-call
    transport options reach its model constructor too, which ignores them (and says so, once per event)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.args and isinstance(record.args, tuple) and record.args[0] in ("connection_verify",
                                                                                            "retry_total"))


def _quiet_per_call_option_warnings() -> None:
    logger = logging.getLogger("azure.eventgrid._legacy._generated._serialization")
    if not any(isinstance(f, _PerCallOptionFilter) for f in logger.filters):
        logger.addFilter(_PerCallOptionFilter())
