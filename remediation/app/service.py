"""The use cases the triggers call: decide and admit an operator's request, advance a remediation, read them.

Deciding is remediation/decide/reconcile.py's, acting on a decision remediation/run/admission.py's, running
remediation/run/runner.py's; an operator's request is parsed by remediation/intake/requests.py. This module puts
them behind one small face for function_app.py and the tests.

Guarantees:
- A malformed request is refused with InvalidInputError before anything is read or written.
- No secret text is logged, raised or recorded.
"""

from __future__ import annotations

import logging
from typing import Any

from remediation.app.orphans import Orphan, find_orphans
from remediation.decide.guardrails import Scope
from remediation.decide.hints import Decision
from remediation.decide.reconcile import Reconciler
from remediation.errors import InvalidInputError
from remediation.ids import ClusterId
from remediation.intake.requests import RemediationRequest
from remediation.ports import Directory, IncidentStore, ManagedClusters, RemediationStore
from remediation.record import Remediation
from remediation.run.admission import Admission
from remediation.run.chain import WorkItem, is_remediation_id
from remediation.run.runner import RemediationRunner

log = logging.getLogger(__name__)

ANY_SCOPE = Scope()


class RemediationService:
    def __init__(self, *, reconciler: Reconciler, admission: Admission, runner: RemediationRunner,
                 store: RemediationStore, incidents: IncidentStore, clusters: ManagedClusters, directory: Directory,
                 owner_id: str = "", subscriptions: tuple[str, ...] = (), scope: Scope = ANY_SCOPE) -> None:
        self._reconciler = reconciler
        self._admission = admission
        self._runner = runner
        self._store = store
        self._incidents = incidents
        self._clusters, self._directory = clusters, directory
        self._owner_id, self._subscriptions, self._scope = owner_id, subscriptions, scope

    def request(self, request: RemediationRequest) -> Decision:
        """Decide an operator's request from the cluster's present state, and act on the decision."""
        return self._admission.admit(self._reconciler.decide(request.hint()))

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
