"""The use cases the triggers call: decide on a request, advance a remediation, read them.

The deciding is in `reconcile.py`, the steps in `steps.py`, the running in `runner.py`;
this module parses what operators send and puts the three behind one small face.

Guarantees:
- A malformed request is refused with InvalidInputError before anything is read or written.
- No secret text is logged, raised or recorded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from remediation.app.orphans import Orphan, find_orphans
from remediation.auth import Caller
from remediation.decide.guardrails import Scope
from remediation.decide.reconcile import Decision, Hint, Reconciler, Source
from remediation.errors import InvalidInputError
from remediation.ids import ClusterId
from remediation.model import Credential
from remediation.ports import Directory, IncidentStore, ManagedClusters, RemediationStore
from remediation.record import Remediation
from remediation.run.runner import RemediationRunner, WorkItem, is_remediation_id

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_REASON = 500
ANY_SCOPE = Scope()
_FIELDS = {"clusterResourceId", "dryRun", "reason", "force", "credential"}


@dataclass(frozen=True)
class RemediationRequest:
    """An operator's request: a hint like any other, with their words and, if they insist, force."""

    cluster: ClusterId
    dry_run: bool = False
    reason: str = ""
    force: bool = False
    requested_by: Caller | None = None
    credential: Credential | None = None  # None: the service principal's

    @classmethod
    def from_json(cls, body: bytes, *, requested_by: Caller | None = None) -> RemediationRequest:
        """Parse `{"clusterResourceId": str, "dryRun": bool, "reason": str, "force": bool, "credential":
        "servicePrincipal" | "aadServer"}`; InvalidInputError."""
        if len(body) > MAX_BODY_BYTES:
            raise InvalidInputError(f"the request body is larger than {MAX_BODY_BYTES} bytes", code="BodyTooLarge")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise InvalidInputError(f"the request body is not valid JSON: {err}", code="InvalidJson") from err
        except RecursionError as err:
            raise InvalidInputError("the request body is nested too deeply", code="InvalidJson") from err
        if not isinstance(data, dict):
            raise InvalidInputError("the request body must be a JSON object", code="InvalidJson")
        if "clusterResourceId" not in data:
            raise InvalidInputError("clusterResourceId is required", code="MissingClusterResourceId")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise InvalidInputError(f"unknown field(s): {', '.join(unknown)[:200]}", code="UnknownField")
        dry_run, force = data.get("dryRun", False), data.get("force", False)
        if not isinstance(dry_run, bool):
            raise InvalidInputError("dryRun must be true or false", code="InvalidDryRun")
        if not isinstance(force, bool):
            raise InvalidInputError("force must be true or false", code="InvalidForce")
        reason = data.get("reason", "")
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise InvalidInputError(f"reason must be a string of at most {MAX_REASON} characters",
                                    code="InvalidReason")
        credential = data.get("credential", Credential.SERVICE_PRINCIPAL.value)
        if credential not in {c.value for c in Credential}:
            raise InvalidInputError("credential must be servicePrincipal (the cluster's service principal) or"
                                    " aadServer (the legacy Azure AD integration's server application)",
                                    code="InvalidCredential")
        return cls(ClusterId.parse(data["clusterResourceId"]), dry_run=dry_run, reason=reason, force=force,
                   requested_by=requested_by, credential=Credential(credential))

    def hint(self) -> Hint:
        return Hint(self.cluster, Source.MANUAL, requested_by=self.requested_by, reason=self.reason,
                    dry_run=self.dry_run, force=self.force, credential=self.credential)


class RemediationService:
    def __init__(self, *, reconciler: Reconciler, runner: RemediationRunner, store: RemediationStore,
                 incidents: IncidentStore, clusters: ManagedClusters, directory: Directory, owner_id: str = "",
                 subscriptions: tuple[str, ...] = (), scope: Scope = ANY_SCOPE) -> None:
        self._reconciler = reconciler
        self._runner = runner
        self._store = store
        self._incidents = incidents
        self._clusters, self._directory = clusters, directory
        self._owner_id, self._subscriptions, self._scope = owner_id, subscriptions, scope

    def request(self, request: RemediationRequest) -> Decision:
        """Decide an operator's request from the cluster's present state (remediation/decide/reconcile.py)."""
        return self._reconciler.decide(request.hint())

    def get(self, remediation_id: str) -> Remediation:
        if not is_remediation_id(remediation_id):
            raise InvalidInputError("a remediation id is 32 lower-case hex characters", code="InvalidRemediationId")
        return self._store.get(remediation_id)

    def list_for_cluster(self, cluster: ClusterId, *, limit: int = 20) -> list[Remediation]:
        return self._store.list_for_cluster(cluster.key, limit=limit)

    def list_recent(self, *, active_only: bool = False, limit: int = 50) -> list[Remediation]:
        """The fleet's remediations, newest first; only unfinished ones with `active_only`."""
        if active_only:
            return sorted(self._store.list_active(limit=limit), key=lambda r: r.created_at, reverse=True)
        return self._store.list_recent(limit=limit)

    def list_decisions(self, cluster: ClusterId | None = None, *, limit: int = 50) -> list[dict[str, Any]]:
        return self._incidents.list_decisions(cluster_key=cluster.key if cluster else None, limit=limit)

    def orphans(self) -> list[Orphan]:
        """Applications the remediator owns or minted for that no cluster it can see uses (app/orphans.py)."""
        return find_orphans(directory=self._directory, clusters=self._clusters, store=self._store,
                            owner_id=self._owner_id, subscriptions=self._subscriptions, scope=self._scope)

    def advance(self, item: WorkItem) -> Remediation:
        return self._runner.advance(item)

    def fail_poisoned(self, item: WorkItem, dequeue_count: int | None = None) -> Remediation:
        return self._runner.fail_poisoned(item, dequeue_count)

    def resume_stalled(self) -> list[Remediation]:
        return self._runner.resume_stalled()
