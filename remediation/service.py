"""The use cases: submit a remediation, advance it one queue message at a time, read it.

Guarantees:
- A new secret is stored in Key Vault before anything else happens; if it cannot be
  stored, the password is removed from the application again, so no secret is lost.
- Every step is idempotent and keyed by the remediation id: a duplicate or replayed
  queue message repeats nothing that already happened.
- At most one (non-dry-run) remediation per cluster is active: requests from events,
  sweeps and people for the same cluster collapse into the one that is running.
- No invocation waits on the reset for longer than `reset_wait_seconds`; the rest is
  picked up from a later queue message, so a process may die at any point.
- No secret text is logged, raised or recorded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from remediation.alerts import REMEDIATION_FAILED
from remediation.auth import Caller
from remediation.errors import (
    ConcurrencyError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermanentError,
    RemediationError,
    TransientError,
)
from remediation.ids import ClusterId
from remediation.model import Status
from remediation.ports import Directory, ManagedClusters, RemediationStore, SecretStore, WorkQueue
from remediation.record import Remediation, new_remediation_id

log = logging.getLogger(__name__)

SECRET_CONTENT_TYPE = "application/x-aks-service-principal-secret"
MAX_BODY_BYTES = 64 * 1024
MAX_TRANSIENT_FAILURES = 10
MAX_RESET_ATTEMPTS = 5
MAX_DELAY_SECONDS = 15 * 60
# Longer than any one invocation's work, so a live worker never loses its lease.
LEASE = timedelta(minutes=5)
SOURCES = ("manual", "event", "sweep")


@dataclass(frozen=True)
class RemediationRequest:
    cluster: ClusterId
    dry_run: bool = False
    source: str = "manual"
    reason: str = ""
    requested_by: Caller | None = None

    @classmethod
    def from_json(cls, body: bytes, *, requested_by: Caller | None = None) -> RemediationRequest:
        """Parse an HTTP body `{"clusterResourceId": str, "dryRun": bool}`; raise InvalidInputError."""
        if len(body) > MAX_BODY_BYTES:
            raise InvalidInputError(f"the request body is larger than {MAX_BODY_BYTES} bytes", code="BodyTooLarge")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise InvalidInputError(f"the request body is not valid JSON: {err}", code="InvalidJson") from err
        if not isinstance(data, dict):
            raise InvalidInputError("the request body must be a JSON object", code="InvalidJson")
        if "clusterResourceId" not in data:
            raise InvalidInputError("clusterResourceId is required", code="MissingClusterResourceId")
        unknown = sorted(set(data) - {"clusterResourceId", "dryRun", "reason"})
        if unknown:
            raise InvalidInputError(f"unknown field(s): {', '.join(unknown)}", code="UnknownField")
        dry_run = data.get("dryRun", False)
        if not isinstance(dry_run, bool):
            raise InvalidInputError("dryRun must be true or false", code="InvalidDryRun")
        reason = data.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 500:
            raise InvalidInputError("reason must be a string of at most 500 characters", code="InvalidReason")
        return cls(ClusterId.parse(data["clusterResourceId"]), dry_run=dry_run, reason=reason,
                   requested_by=requested_by)


@dataclass(frozen=True)
class WorkItem:
    """A work-queue message: only the remediation id, never anything secret."""

    remediation_id: str

    def to_message(self) -> dict[str, str]:
        return {"remediationId": self.remediation_id}

    @classmethod
    def from_message(cls, body: str | bytes) -> WorkItem:
        try:
            data = json.loads(body)
            remediation_id = data["remediationId"]
        except (ValueError, TypeError, KeyError) as err:
            raise InvalidInputError("a work message must be JSON {\"remediationId\": \"<32 hex>\"}",
                                    code="InvalidWorkMessage") from err
        if not isinstance(remediation_id, str) or not is_remediation_id(remediation_id):
            raise InvalidInputError("remediationId must be 32 lower-case hex characters", code="InvalidWorkMessage")
        return cls(remediation_id)


def is_remediation_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


@dataclass(frozen=True)
class RemediatorConfig:
    secret_lifetime: timedelta = timedelta(days=180)
    reset_wait_seconds: float = 5.0
    retry_delay_seconds: float = 30.0
    reset_timeout: timedelta = timedelta(minutes=120)


@dataclass(frozen=True)
class Submission:
    remediation: Remediation
    created: bool


@dataclass(frozen=True)
class _Done:
    detail: str


@dataclass(frozen=True)
class _Wait:
    seconds: float
    reason: str


class Remediator:
    def __init__(
        self,
        *,
        clusters: ManagedClusters,
        directory: Directory,
        vault: SecretStore,
        store: RemediationStore,
        queue: WorkQueue,
        config: RemediatorConfig = RemediatorConfig(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._clusters = clusters
        self._directory = directory
        self._vault = vault
        self._store = store
        self._queue = queue
        self._config = config
        self._clock = clock

    # ----- use cases -------------------------------------------------------------------

    def submit(self, request: RemediationRequest) -> Submission:
        """Record and enqueue a remediation, or return the one already active for the cluster.

        Reads the cluster first so that an unknown cluster (NotFoundError) or a managed-identity
        cluster (ConflictError) is refused before anything is written.
        """
        cluster = self._clusters.get_cluster(request.cluster)
        if cluster.uses_managed_identity:
            raise ConflictError(
                f"cluster {request.cluster.name} uses a managed identity, not a service principal:"
                " there is no client secret to reset", code="ManagedIdentityCluster")
        now = self._clock().isoformat()
        remediation = Remediation(
            id=new_remediation_id(), cluster_id=str(request.cluster), dry_run=request.dry_run,
            source=request.source, status=Status.ACCEPTED, created_at=now, updated_at=now,
            reason="accepted", cause=request.reason or f"requested by {request.source}",
            requested_by=request.requested_by.view() if request.requested_by else None,
        )
        remediation = self._store.create(remediation)
        if not request.dry_run:
            holder = self._claim(request.cluster.key, remediation.id)
            if holder != remediation.id:
                self._store.delete(remediation.id)
                log.info("cluster %s already has active remediation %s", request.cluster, holder)
                return Submission(self._store.get(holder), created=False)
        self._queue.send(WorkItem(remediation.id).to_message())
        log.info("remediation %s accepted for %s (dry run: %s, source: %s)",
                 remediation.id, request.cluster, request.dry_run, request.source)
        return Submission(remediation, created=True)

    def get(self, remediation_id: str) -> Remediation:
        if not is_remediation_id(remediation_id):
            raise InvalidInputError("a remediation id is 32 lower-case hex characters", code="InvalidRemediationId")
        return self._store.get(remediation_id)

    def list_for_cluster(self, cluster: ClusterId, *, limit: int = 20) -> list[Remediation]:
        return self._store.list_for_cluster(cluster.key, limit=limit)

    def advance(self, item: WorkItem) -> Remediation:
        """Run the remediation's next steps until it finishes or must wait; never raises RemediationError
        for the remediation's own failures (they are recorded), only for storage trouble."""
        remediation = self._store.get(item.remediation_id)
        if remediation.status.terminal:
            log.info("remediation %s is already %s; nothing to do", remediation.id, remediation.status.value)
            return remediation
        remediation = self._take_lease(remediation)
        if remediation is None:
            return self._store.get(item.remediation_id)
        try:
            while (step := remediation.next_step) is not None:
                outcome = getattr(self, f"_step_{step}")(remediation)
                if isinstance(outcome, _Wait):
                    return self._wait(remediation, outcome.seconds, outcome.reason)
                remediation.mark(step, outcome.detail, self._clock())
                remediation.transient_failures = 0
                remediation = self._save(remediation)
                log.info("remediation %s: %s done (%s)", remediation.id, step, outcome.detail)
            return self._finish(remediation)
        except ConcurrencyError:
            raise
        except TransientError as err:
            remediation.transient_failures += 1
            if remediation.transient_failures > MAX_TRANSIENT_FAILURES:
                return self._fail(remediation, "TooManyTransientFailures",
                                  f"gave up after {MAX_TRANSIENT_FAILURES} transient failures; last: {err}")
            delay = err.retry_after if err.retry_after is not None else self._backoff(remediation.transient_failures)
            log.warning("remediation %s: transient failure at %s, retrying in %ss: %s",
                        remediation.id, remediation.next_step, delay, err)
            return self._wait(remediation, delay, f"transient failure, will retry: {err}")
        except PermanentError as err:
            return self._fail(remediation, err.code, str(err))

    # ----- steps: each idempotent, keyed by the remediation id ------------------------------

    def _step_inspect_cluster(self, remediation: Remediation) -> _Done:
        cluster = self._clusters.get_cluster(ClusterId.parse(remediation.cluster_id))
        if cluster.uses_managed_identity:
            raise PermanentError("the cluster uses a managed identity; there is no secret to reset",
                                 code="ManagedIdentityCluster")
        if cluster.busy:
            raise TransientError(f"the cluster has an operation in progress ({cluster.provisioning_state})")
        remediation.client_id = cluster.client_id
        return _Done(f"service principal {cluster.client_id}, provisioningState {cluster.provisioning_state}")

    def _step_find_application(self, remediation: Remediation) -> _Done:
        try:
            app = self._directory.get_application_by_app_id(remediation.client_id or "")
        except NotFoundError as err:
            # With Application.ReadWrite.OwnedBy, Graph hides applications the identity does not own.
            raise PermanentError(
                f"Graph shows no application with appId {remediation.client_id}: it was deleted (a new service"
                " principal is needed), or the remediator's identity is not one of its owners (add it:"
                " infra/README.md)", code="ApplicationNotFound") from err
        remediation.app_object_id = app.object_id
        remediation.old_key_ids = [p.key_id for p in app.passwords]
        return _Done(f"application {app.object_id} ({app.display_name}) with {len(app.passwords)} password(s)")

    def _step_plan(self, remediation: Remediation) -> _Done:
        cluster = ClusterId.parse(remediation.cluster_id)
        remediation.plan = [
            f"add a password named '{self._password_name(remediation)}' to application {remediation.app_object_id}"
            f" (appId {remediation.client_id}), valid {self._config.secret_lifetime.days} days",
            f"store it in Key Vault as secret '{cluster.vault_secret_name}'",
            f"reset the service principal profile of {cluster.name} (re-images its nodes)",
            "verify the cluster returns to provisioningState Succeeded",
        ]
        return _Done("dry run: nothing was written")

    def _step_mint_and_store_secret(self, remediation: Remediation) -> _Done:
        object_id = remediation.app_object_id or ""
        secret_name = ClusterId.parse(remediation.cluster_id).vault_secret_name
        adopted = self._recover_minted_secret(remediation, object_id, secret_name)
        if adopted:
            return _Done(f"recovered password {remediation.new_key_id} stored earlier by this remediation")
        end = self._clock() + self._config.secret_lifetime
        password = self._directory.add_password(object_id, self._password_name(remediation), end)
        # Graph shows the secret text only now: store it before anything else, or take the password back.
        try:
            stored = self._vault.set_secret(
                secret_name, password.secret_text, content_type=SECRET_CONTENT_TYPE, expires=password.end,
                tags={"clusterResourceId": remediation.cluster_id[:256], "appId": remediation.client_id or "",
                      "keyId": password.key_id, "remediationId": remediation.id})
        except RemediationError as err:
            self._directory.remove_password(object_id, password.key_id)
            raise TransientError(f"could not store the new secret in Key Vault, so password {password.key_id}"
                                 f" was removed again: {err}") from err
        remediation.new_key_id = password.key_id
        remediation.vault_secret_name = stored.name
        remediation.vault_secret_version = stored.version
        return _Done(f"password {password.key_id} (hint {password.hint}) stored as {stored.name}/{stored.version}")

    def _step_start_reset(self, remediation: Remediation) -> _Done | _Wait:
        if remediation.reset_attempts >= MAX_RESET_ATTEMPTS:
            raise PermanentError(f"the reset failed {remediation.reset_attempts} times", code="ResetFailed")
        secret = self._vault.get_secret(remediation.vault_secret_name or "", remediation.vault_secret_version or "")
        remediation.reset_attempts += 1
        remediation.reset_started_at = self._clock().isoformat()
        # Saved before the call: a crash after it must still count the attempt.
        remediation = self._save(remediation)
        result = self._clusters.begin_reset_service_principal_profile(
            ClusterId.parse(remediation.cluster_id), remediation.client_id or "", secret,
            wait_seconds=self._config.reset_wait_seconds)
        if not result.finished:
            return _Done("reset started; still running")
        if result.succeeded:
            return _Done("reset finished")
        return self._retry_reset(remediation, result.error or "the reset failed")

    def _step_verify_cluster(self, remediation: Remediation) -> _Done | _Wait:
        cluster = self._clusters.get_cluster(ClusterId.parse(remediation.cluster_id))
        if cluster.busy:
            started = datetime.fromisoformat(remediation.reset_started_at or self._clock().isoformat())
            if self._clock() - started > self._config.reset_timeout:
                raise PermanentError(f"the reset has not finished after {self._config.reset_timeout}",
                                     code="ResetTimedOut")
            return _Wait(self._config.retry_delay_seconds, f"reset running ({cluster.provisioning_state})")
        if cluster.provisioning_state == "Failed":
            remediation.steps.pop("start_reset", None)
            return self._retry_reset(remediation, "the cluster's provisioningState is Failed after the reset")
        if cluster.client_id != remediation.client_id:
            raise PermanentError(f"the cluster now uses service principal {cluster.client_id}, not"
                                 f" {remediation.client_id}: someone else changed it", code="ServicePrincipalChanged")
        return _Done(f"provisioningState {cluster.provisioning_state}")

    # ----- helpers --------------------------------------------------------------------------

    def _recover_minted_secret(self, remediation: Remediation, object_id: str, secret_name: str) -> bool:
        """After a crash between minting and recording: adopt a stored password, remove an unstored one."""
        app = self._directory.get_application_by_app_id(remediation.client_id or "")
        ours = {p.key_id for p in app.passwords if p.display_name == self._password_name(remediation)}
        if not ours:
            return False
        for version in self._vault.list_versions(secret_name):
            if version.tags.get("remediationId") == remediation.id and version.tags.get("keyId") in ours:
                remediation.new_key_id = version.tags["keyId"]
                remediation.vault_secret_name = version.name
                remediation.vault_secret_version = version.version
                return True
        for key_id in ours:
            log.warning("remediation %s: removing password %s whose secret was never stored", remediation.id, key_id)
            self._directory.remove_password(object_id, key_id)
        return False

    def _retry_reset(self, remediation: Remediation, error: str) -> _Wait:
        # A new secret can take minutes to be accepted everywhere, so a failed reset is retried with backoff.
        if remediation.reset_attempts >= MAX_RESET_ATTEMPTS:
            raise PermanentError(f"the reset failed {remediation.reset_attempts} times; last: {error}",
                                 code="ResetFailed")
        delay = self._backoff(remediation.reset_attempts)
        log.warning("remediation %s: reset attempt %s failed, retrying in %ss: %s",
                    remediation.id, remediation.reset_attempts, delay, error)
        return _Wait(delay, f"reset attempt {remediation.reset_attempts} failed: {error}")

    def _backoff(self, attempt: int) -> float:
        return min(self._config.retry_delay_seconds * 2 ** max(attempt - 1, 0), MAX_DELAY_SECONDS)

    @staticmethod
    def _password_name(remediation: Remediation) -> str:
        return f"aks-sp-remediator {remediation.id}"

    def _claim(self, cluster_key: str, remediation_id: str) -> str:
        """Claim the cluster; returns the id of the remediation that holds the claim afterwards."""
        for _ in range(3):
            if self._store.create_claim(cluster_key, remediation_id):
                return remediation_id
            claim = self._store.get_claim(cluster_key)
            if claim is None:
                continue
            holder, etag = claim
            if self._is_active(holder):
                return holder
            if self._store.replace_claim(cluster_key, remediation_id, etag):
                return remediation_id
        raise TransientError("the cluster's claim kept changing; try again")

    def _is_active(self, remediation_id: str) -> bool:
        try:
            return not self._store.get(remediation_id).status.terminal
        except NotFoundError:
            return False

    def _take_lease(self, remediation: Remediation) -> Remediation | None:
        now = self._clock()
        if remediation.lease_until and datetime.fromisoformat(remediation.lease_until) > now:
            remaining = (datetime.fromisoformat(remediation.lease_until) - now).total_seconds()
            log.info("remediation %s is being worked on elsewhere; looking again in %.0fs", remediation.id, remaining)
            self._queue.send(WorkItem(remediation.id).to_message(), delay_seconds=remaining)
            return None
        remediation.lease_until = (now + LEASE).isoformat()
        remediation.status = Status.RUNNING
        try:
            return self._save(remediation)
        except ConcurrencyError:
            log.info("remediation %s was taken by another worker", remediation.id)
            self._queue.send(WorkItem(remediation.id).to_message(), delay_seconds=LEASE.total_seconds())
            return None

    def _save(self, remediation: Remediation) -> Remediation:
        remediation.updated_at = self._clock().isoformat()
        return self._store.save(remediation)

    def _wait(self, remediation: Remediation, seconds: float, reason: str) -> Remediation:
        remediation.status = Status.WAITING
        remediation.reason = reason
        remediation.lease_until = None
        remediation = self._save(remediation)
        self._queue.send(WorkItem(remediation.id).to_message(), delay_seconds=seconds)
        return remediation

    def _finish(self, remediation: Remediation) -> Remediation:
        remediation.status = Status.PLANNED if remediation.dry_run else Status.SUCCEEDED
        remediation.reason = "dry run planned" if remediation.dry_run else "cluster credentials reset and verified"
        remediation.lease_until = None
        remediation = self._save(remediation)
        self._release(remediation)
        log.info("remediation %s %s", remediation.id, remediation.status.value.lower())
        return remediation

    def _fail(self, remediation: Remediation, code: str, message: str) -> Remediation:
        remediation.status = Status.FAILED
        remediation.reason = message
        remediation.error = {"code": code, "message": message, "step": remediation.next_step or ""}
        remediation.lease_until = None
        remediation = self._save(remediation)
        self._release(remediation)
        # One line per failed remediation, with a fixed marker: infra/'s alert rule searches for it.
        log.error("%s: remediation %s failed at %s: %s: %s", REMEDIATION_FAILED, remediation.id,
                  remediation.error["step"], code, message)
        return remediation

    def _release(self, remediation: Remediation) -> None:
        if not remediation.dry_run:
            self._store.delete_claim(ClusterId.parse(remediation.cluster_id).key, remediation.id)
