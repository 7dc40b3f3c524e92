"""Stateful fakes of the outside systems (remediation.ports), sharing one small world.

A cluster's reset succeeds only if the secret it is given is a current password of its
application in the fake directory, as in Azure. Tests assert the world's end state.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from remediation.errors import ConcurrencyError, NotFoundError, TransientError
from remediation.ids import ClusterId
from remediation.model import (
    ActivityLogEntry,
    Application,
    ClusterInfo,
    NewPassword,
    PasswordInfo,
    ResetResult,
    SecretText,
    StoredSecretVersion,
)
from remediation.record import Remediation


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class FakePassword:
    key_id: str
    display_name: str
    end: datetime
    text: str


@dataclass
class FakeApp:
    object_id: str
    app_id: str
    passwords: list[FakePassword] = field(default_factory=list)


class FakeDirectory:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.apps: dict[str, FakeApp] = {}
        self.fail_add_password: Exception | None = None
        self.writes = 0

    def create_app(self, app_id: str, *, secret: str, expires_in: timedelta) -> FakeApp:
        app = FakeApp(object_id=str(uuid.uuid4()), app_id=app_id)
        app.passwords.append(FakePassword(str(uuid.uuid4()), "original", self.clock() + expires_in, secret))
        self.apps[app_id] = app
        return app

    def accepts(self, app_id: str, secret: str) -> bool:
        app = self.apps.get(app_id)
        return bool(app) and any(p.text == secret and p.end > self.clock() for p in app.passwords)

    def get_application_by_app_id(self, app_id: str) -> Application:
        app = self.apps.get(app_id)
        if app is None:
            raise NotFoundError(f"no application has appId {app_id}")
        return Application(app.object_id, app.app_id, f"app {app_id}", tuple(
            PasswordInfo(p.key_id, p.display_name, p.text[:3], None, p.end) for p in app.passwords))

    def _by_object_id(self, object_id: str) -> FakeApp:
        return next(a for a in self.apps.values() if a.object_id == object_id)

    def add_password(self, object_id: str, display_name: str, end: datetime) -> NewPassword:
        if self.fail_add_password:
            raise self.fail_add_password
        self.writes += 1
        text = f"sec~{uuid.uuid4().hex}"
        password = FakePassword(str(uuid.uuid4()), display_name, end, text)
        self._by_object_id(object_id).passwords.append(password)
        return NewPassword(password.key_id, text[:3], display_name, end, SecretText(text))

    def remove_password(self, object_id: str, key_id: str) -> None:
        self.writes += 1
        app = self._by_object_id(object_id)
        app.passwords = [p for p in app.passwords if p.key_id != key_id]


@dataclass
class FakeCluster:
    id: ClusterId
    client_id: str
    held_secret: str | None
    provisioning_state: str = "Succeeded"
    pending_secret: str | None = None


class FakeClusters:
    """`reset_finishes_within_wait` False models a long reset: it finishes on `finish_resets()`."""

    def __init__(self, directory: FakeDirectory) -> None:
        self.directory = directory
        self.clusters: dict[str, FakeCluster] = {}
        self.reset_finishes_within_wait = True
        self.resets_started = 0

    def add(self, cluster: ClusterId, client_id: str, secret: str | None) -> FakeCluster:
        self.clusters[str(cluster).lower()] = found = FakeCluster(cluster, client_id, secret)
        return found

    def _get(self, cluster: ClusterId) -> FakeCluster:
        found = self.clusters.get(str(cluster).lower())
        if found is None:
            raise NotFoundError(f"cluster {cluster.name} not found")
        return found

    def get_cluster(self, cluster: ClusterId) -> ClusterInfo:
        found = self._get(cluster)
        return ClusterInfo(str(found.id), found.id.name, "westeurope", found.client_id, found.provisioning_state)

    def begin_reset_service_principal_profile(self, cluster: ClusterId, client_id: str, secret: SecretText, *,
                                              wait_seconds: float) -> ResetResult:
        found = self._get(cluster)
        if found.provisioning_state == "Updating":
            raise TransientError("OperationNotAllowed: another operation is in progress")
        self.resets_started += 1
        found.provisioning_state = "Updating"
        found.pending_secret = secret.reveal()
        if not self.reset_finishes_within_wait:
            return ResetResult(finished=False)
        ok = self._finish(found)
        return ResetResult(finished=True, succeeded=ok, error=None if ok else "ServicePrincipalValidationClientError")

    def finish_resets(self) -> None:
        for found in self.clusters.values():
            if found.provisioning_state == "Updating":
                self._finish(found)

    def _finish(self, found: FakeCluster) -> bool:
        ok = self.directory.accepts(found.client_id, found.pending_secret or "")
        if ok:
            found.held_secret = found.pending_secret
        found.provisioning_state = "Succeeded" if ok else "Failed"
        found.pending_secret = None
        return ok

    def secret_valid(self, cluster: ClusterId) -> bool:
        found = self._get(cluster)
        return self.directory.accepts(found.client_id, found.held_secret or "")


class FakeVault:
    def __init__(self) -> None:
        self.secrets: dict[str, list[tuple[StoredSecretVersion, str]]] = {}
        self.fail_set: Exception | None = None

    def set_secret(self, name: str, value: SecretText, *, tags: dict[str, str], content_type: str,
                   expires: datetime) -> StoredSecretVersion:
        if self.fail_set:
            raise self.fail_set
        version = StoredSecretVersion(name, uuid.uuid4().hex, dict(tags), expires)
        self.secrets.setdefault(name, []).append((version, value.reveal()))
        return version

    def get_secret(self, name: str, version: str) -> SecretText:
        for stored, value in self.secrets.get(name, []):
            if stored.version == version:
                return SecretText(value)
        raise NotFoundError(f"secret {name}/{version} not found")

    def list_versions(self, name: str) -> list[StoredSecretVersion]:
        return [stored for stored, _ in self.secrets.get(name, [])]

    def current_value(self, name: str) -> str | None:
        versions = self.secrets.get(name)
        return versions[-1][1] if versions else None


class FakeStore:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[dict[str, Any], str]] = {}
        self.claims: dict[str, tuple[str, str]] = {}
        self._etags = itertools.count(1)

    def _etag(self) -> str:
        return f"W/\"{next(self._etags)}\""

    def create(self, remediation: Remediation) -> Remediation:
        remediation.etag = self._etag()
        self.rows[remediation.id] = (remediation.to_entity(), remediation.etag)
        return remediation

    def get(self, remediation_id: str) -> Remediation:
        if remediation_id not in self.rows:
            raise NotFoundError(f"there is no remediation {remediation_id}")
        entity, etag = self.rows[remediation_id]
        return Remediation.from_entity(dict(entity), etag=etag)

    def save(self, remediation: Remediation) -> Remediation:
        if self.rows[remediation.id][1] != remediation.etag:
            raise ConcurrencyError(f"remediation {remediation.id} was changed by another worker")
        remediation.etag = self._etag()
        self.rows[remediation.id] = (remediation.to_entity(), remediation.etag)
        return remediation

    def delete(self, remediation_id: str) -> None:
        self.rows.pop(remediation_id, None)

    def list_for_cluster(self, cluster_key: str, *, limit: int) -> list[Remediation]:
        found = [self.get(i) for i, (entity, _) in self.rows.items() if entity["cluster_key"] == cluster_key]
        return sorted(found, key=lambda r: r.created_at, reverse=True)[:limit]

    def create_claim(self, cluster_key: str, remediation_id: str) -> bool:
        if cluster_key in self.claims:
            return False
        self.claims[cluster_key] = (remediation_id, self._etag())
        return True

    def get_claim(self, cluster_key: str) -> tuple[str, str] | None:
        return self.claims.get(cluster_key)

    def replace_claim(self, cluster_key: str, remediation_id: str, etag: str) -> bool:
        if self.claims.get(cluster_key, (None, None))[1] != etag:
            return False
        self.claims[cluster_key] = (remediation_id, self._etag())
        return True

    def delete_claim(self, cluster_key: str, remediation_id: str) -> None:
        if self.claims.get(cluster_key, (None,))[0] == remediation_id:
            del self.claims[cluster_key]


class FakeQueue:
    """Messages with a visible-at time on the shared clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.messages: list[tuple[datetime, dict[str, Any]]] = []

    def send(self, message: dict[str, Any], *, delay_seconds: float = 0) -> None:
        self.messages.append((self.clock() + timedelta(seconds=delay_seconds), message))

    def receive_visible(self) -> list[dict[str, Any]]:
        now = self.clock()
        visible = [m for at, m in self.messages if at <= now]
        self.messages = [(at, m) for at, m in self.messages if at > now]
        return visible

    def next_visible_at(self) -> datetime | None:
        return min((at for at, _ in self.messages), default=None)


class FakeActivityLog:
    def __init__(self) -> None:
        self.entries: list[ActivityLogEntry] = []
        self.reads = 0

    def list_cluster_failures(self, subscription_id: str, *, since: datetime, until: datetime,
                              correlation_id: str | None = None) -> list[ActivityLogEntry]:
        self.reads += 1
        return [e for e in self.entries
                if e.is_failed_end and e.event_timestamp and since <= e.event_timestamp <= until
                and f"/subscriptions/{subscription_id}/" in e.resource_id.lower()
                and (correlation_id is None or e.correlation_id == correlation_id)]


class FakeIncidentStore:
    def __init__(self) -> None:
        self.incidents: dict[str, dict[str, Any]] = {}
        self.checkpoints: dict[str, datetime] = {}

    def record_incident(self, incident_key: str, fields: dict[str, Any]) -> bool:
        if incident_key in self.incidents:
            return False
        self.incidents[incident_key] = fields
        return True

    def get_checkpoint(self, subscription_id: str) -> datetime | None:
        return self.checkpoints.get(subscription_id)

    def set_checkpoint(self, subscription_id: str, at: datetime) -> None:
        self.checkpoints[subscription_id] = at
