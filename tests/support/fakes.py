"""Stateful fakes of the outside systems (remediation.ports), sharing one small world.

They behave as Azure does where the remediator can tell: a reset is a long-running operation
that succeeds only if the secret it applies is a current password of the cluster's application;
AKS refuses a second write while one runs (409); Graph returns a new secret's text once; a
remediation record is replaced only if unchanged since read (ETag).

`Faults` makes the process die at any adapter call, before or after the call takes effect in
Azure: the call raises `Crash`, and every later call raises it too until `restart()`, so no
code runs after the crash point, as when a worker is killed. Tests assert the world's end state.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from remediation.errors import (
    ConcurrencyError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    OperationInProgressError,
    PermanentError,
    PrincipalNotReplicatedError,
    RemediationError,
)
from remediation.ids import ClusterId, is_guid
from remediation.model import (
    ActivityLogEntry,
    Application,
    ClusterInfo,
    Credential,
    DeletedPrincipal,
    NewPassword,
    OperationStarted,
    OperationStatus,
    PasswordInfo,
    RoleAssignment,
    SecretText,
    ServicePrincipal,
    SignInResult,
    StoredSecretVersion,
)
from remediation.outcomes import OutcomeEvent
from remediation.record import Remediation

OPERATIONS_URL = "https://management.azure.com/subscriptions/{sub}/providers/Microsoft.ContainerService/locations/" \
                 "westeurope/operations/{id}?api-version=2017-08-31"


class Crash(BaseException):
    """The process died here: nothing after this point runs (not even `except Exception` handlers)."""


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


class Faults:
    """Where the process dies: `die_at("directory.add_password", after=True)`; cleared by `restart()`. And what
    another worker does meanwhile: `meanwhile("store.create_claimed", action)` runs `action` once, right before (or
    `after=True`, right after) that call, as a second worker on the same storage would."""

    def __init__(self) -> None:
        self.planned: dict[tuple[str, bool], int] = {}
        self.interleaved: dict[tuple[str, bool], Callable[[], Any]] = {}
        self.dead = False
        self.crashes = 0

    def die_at(self, call: str, *, after: bool = False, times: int = 1) -> None:
        self.planned[(call, after)] = times

    def meanwhile(self, call: str, action: Callable[[], Any], *, after: bool = False) -> None:
        self.interleaved[(call, after)] = action

    def restart(self) -> None:
        self.dead = False

    def check(self, call: str, *, after: bool) -> None:
        if self.dead:
            raise Crash(f"the process is dead (at {call})")
        if (action := self.interleaved.pop((call, after), None)) is not None:
            action()
        left = self.planned.get((call, after), 0)
        if left:
            self.planned[(call, after)] = left - 1
            self.dead = True
            self.crashes += 1
            raise Crash(f"died {'after' if after else 'before'} {call}")


def _calls(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Check the fault plan before the call and after it took effect."""
    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
            self.faults.check(name, after=False)
            result = method(self, *args, **kwargs)
            self.faults.check(name, after=True)
            return result
        checked.__name__ = method.__name__
        return checked
    return wrap


@dataclass
class FakePassword:
    key_id: str
    display_name: str
    end: datetime
    text: str = field(repr=False)
    start: datetime | None = None


REMEDIATOR_PRINCIPAL_ID = "0a0a0a0a-0000-4000-8000-00000000beef"  # the remediator's own service principal


@dataclass
class FakeApp:
    object_id: str
    app_id: str
    passwords: list[FakePassword] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    display_name: str = ""
    owners: set[str] = field(default_factory=lambda: {REMEDIATOR_PRINCIPAL_ID})
    sp_object_id: str | None = field(default_factory=lambda: str(uuid.uuid4()))  # None: no service principal yet
    sp_created_at: datetime | None = None
    deleted_at: datetime | None = None
    notes: str = ""
    certificates: int = 0
    federated: int = 0  # federated identity credentials
    sp_owners: set[str] = field(default_factory=set)
    sp_credentials: int = 0


class FakeDirectory:
    """Graph and Entra ID's directory. As Graph with Application.ReadWrite.OwnedBy: every application is readable,
    only owned ones writable (403 otherwise); a deleted application's service principal stays in deleted items
    for 30 days; an application made through Graph has no service principal until one is created."""

    def __init__(self, clock: FakeClock, faults: Faults) -> None:
        self.clock, self.faults = clock, faults
        self.apps: dict[str, FakeApp] = {}
        self.deleted: dict[str, FakeApp] = {}  # appId -> the deleted application (with its service principal)
        self.fail_add_password: Exception | None = None
        # A new password signs in only this long after it was added (Entra ID's replication).
        self.propagation = timedelta()
        self.writes = 0
        self.added: list[str] = []  # keyIds of every password addPassword created
        self.created: list[str] = []  # appIds of every application create_application made
        self.unreplicated: set[str] = set()  # appIds Graph does not show yet, though Entra ID signs them in
        self.throttled: set[str] = set()  # appIds whose batched reads Graph keeps throttling

    def create_app(self, app_id: str, *, secret: str, expires_in: timedelta, owned: bool = True,
                   display_name: str = "") -> FakeApp:
        app = FakeApp(object_id=str(uuid.uuid4()), app_id=app_id, display_name=display_name or f"app {app_id}",
                      owners={REMEDIATOR_PRINCIPAL_ID} if owned else set())
        app.passwords.append(FakePassword(str(uuid.uuid4()), "original", self.clock() + expires_in, secret))
        self.apps[app_id] = app
        return app

    def delete_app(self, app_id: str) -> FakeApp:
        """Someone deletes the application (and with it its service principal): into deleted items."""
        app = self.apps.pop(app_id)
        app.deleted_at = self.clock()
        self.deleted[app_id] = app
        return app

    def add_password_by_hand(self, app_id: str, *, expires_in: timedelta) -> str:
        """A person adds a password in the portal: its text, which they then give the cluster."""
        text = f"person~{uuid.uuid4().hex}"
        self.apps[app_id].passwords.append(FakePassword(str(uuid.uuid4()), "by hand", self.clock() + expires_in,
                                                        text))
        return text

    def accepts(self, app_id: str, secret: str) -> bool:
        app, now = self.apps.get(app_id), self.clock()
        if app is None or app.sp_object_id is None:  # deleted, or no service principal: no sign-in at all
            return False
        return any(p.text == secret and p.end > now and (p.start is None or p.start + self.propagation <= now)
                   for p in app.passwords)

    @_calls("directory.get_application")
    def get_application_by_app_id(self, app_id: str) -> Application:
        app = self.apps.get(app_id)
        if app is None or app_id in self.unreplicated:
            raise NotFoundError(f"no application has appId {app_id}")
        return self._view(app)

    @_calls("directory.get_applications")
    def get_applications_by_app_ids(self, app_ids: Collection[str]) -> dict[str, Application | None]:
        # What Graph kept throttling is left out of the answer, as the adapter does after its last round.
        found = {a.lower(): self.apps.get(a.lower()) for a in app_ids if a.lower() not in self.throttled}
        return {a: None if app is None or a in self.unreplicated else self._view(app, owners=False)
                for a, app in found.items()}

    @staticmethod
    def _view(app: FakeApp, *, owners: bool = True) -> Application:
        return Application(app.object_id, app.app_id, app.display_name, tuple(
            PasswordInfo(p.key_id, p.display_name, p.text[:3], None, p.end) for p in app.passwords),
            owner_ids=frozenset(app.owners) if owners else None, notes=app.notes, certificates=app.certificates)

    def _by_object_id(self, object_id: str) -> FakeApp:
        found = next((a for a in self.apps.values() if a.object_id == object_id), None)
        if found is None:
            raise NotFoundError(f"no application {object_id}")
        if REMEDIATOR_PRINCIPAL_ID not in found.owners:
            raise PermanentError("Authorization_RequestDenied: Insufficient privileges to complete the operation.",
                                 code="Authorization_RequestDenied")
        return found

    @_calls("directory.find_deleted")
    def find_deleted_service_principal(self, app_id: str) -> DeletedPrincipal | None:
        app = self.deleted.get(app_id)
        if app is None or app.sp_object_id is None or self.clock() - (app.deleted_at or self.clock()) \
                > timedelta(days=30):
            return None
        return DeletedPrincipal(app.sp_object_id, app.app_id, app.display_name, app.deleted_at)

    @_calls("directory.create_application")
    def create_application(self, display_name: str, *, notes: str) -> Application:
        """The caller (the remediator) is the new application's owner, as Graph makes it with OwnedBy."""
        self.writes += 1
        app = FakeApp(object_id=str(uuid.uuid4()), app_id=str(uuid.uuid4()), display_name=display_name,
                      sp_object_id=None, notes=notes)
        self.apps[app.app_id] = app
        self.created.append(app.app_id)
        return self._view(app)

    @_calls("directory.list_owned")
    def list_owned_applications(self, owner_id: str) -> list[Application]:
        """In an order Graph does not promise: newest first here, the reverse of creation."""
        return [self._view(a) for a in reversed(self.apps.values()) if owner_id in a.owners]

    def count_federated_credentials(self, object_id: str) -> int:
        return next((a.federated for a in self.apps.values() if a.object_id == object_id), 0)

    def get_service_principal(self, app_id: str) -> ServicePrincipal | None:
        app = self.apps[app_id]
        if app.sp_object_id is None:
            return None
        return ServicePrincipal(app.sp_object_id, frozenset(app.sp_owners), app.sp_credentials)

    @_calls("directory.create_service_principal")
    def create_service_principal(self, app_id: str) -> str:
        app = self.apps[app_id]
        if app.sp_object_id is not None:
            raise ConflictError(f"application {app_id} has a service principal already")
        self.writes += 1
        app.sp_object_id, app.sp_created_at = str(uuid.uuid4()), self.clock()
        app.sp_owners = {REMEDIATOR_PRINCIPAL_ID}
        return app.sp_object_id

    def principal(self, object_id: str) -> FakeApp | None:
        """The live application whose service principal has this object id."""
        return next((a for a in self.apps.values() if a.sp_object_id == object_id), None)

    @_calls("directory.add_password")
    def add_password(self, object_id: str, display_name: str, end: datetime) -> NewPassword:
        if self.fail_add_password:
            raise self.fail_add_password
        self.writes += 1
        text = f"sec~{uuid.uuid4().hex}"
        password = FakePassword(str(uuid.uuid4()), display_name, end, text, start=self.clock())
        self._by_object_id(object_id).passwords.append(password)
        self.added.append(password.key_id)
        return NewPassword(password.key_id, text[:3], display_name, end, SecretText(text))

    @_calls("directory.remove_password")
    def remove_password(self, object_id: str, key_id: str) -> None:
        self.writes += 1
        app = self._by_object_id(object_id)
        if any(p.key_id == key_id for p in app.passwords):
            app.removed.append(key_id)
        app.passwords = [p for p in app.passwords if p.key_id != key_id]

    def live_key_ids(self) -> set[str]:
        return {p.key_id for a in self.apps.values() for p in a.passwords}

    def text_of(self, key_id: str) -> str | None:
        return next((p.text for a in self.apps.values() for p in a.passwords if p.key_id == key_id), None)


class FakeSignIn:
    """Entra ID's token endpoint: a verdict from the directory's passwords."""

    def __init__(self, directory: FakeDirectory, faults: Faults) -> None:
        self.directory, self.faults = directory, faults
        self.sign_ins = 0

    @_calls("sign_in.sign_in")
    def sign_in(self, app_id: str, secret: SecretText) -> SignInResult:
        self.sign_ins += 1
        if self.directory.accepts(app_id, secret.reveal()):
            return SignInResult(ok=True)
        if app_id not in self.directory.apps:
            return SignInResult(ok=False, code="AADSTS700016", message="Application was not found in the directory.")
        return SignInResult(ok=False, code="AADSTS7000215", message="Invalid client secret provided.")


class FakeRoleAssignments:
    """ARM's role assignments: kept when their principal is deleted; a new principal is not seen for
    `replication`; the remediator may assign only `assignable` roles (its condition), if set; it may not list those
    of the `unreadable` subscriptions (its role is not assigned there: 403 AuthorizationFailed)."""

    def __init__(self, directory: FakeDirectory, clock: FakeClock, faults: Faults) -> None:
        self.directory, self.clock, self.faults = directory, clock, faults
        self.assignments: list[RoleAssignment] = []
        self.replication = timedelta()
        self.assignable: frozenset[str] | None = None
        self.unreadable: set[str] = set()
        self.writes = 0

    def plant(self, scope: str, role_guid: str, principal_id: str) -> RoleAssignment:
        sub = scope.split("/subscriptions/", 1)[1].split("/", 1)[0]
        assignment = RoleAssignment(f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
                                    str(uuid.uuid4()), scope, f"/subscriptions/{sub}/providers/Microsoft.Authorization"
                                    f"/roleDefinitions/{role_guid}", principal_id, "ServicePrincipal")
        self.assignments.append(assignment)
        return assignment

    def of(self, principal_id: str) -> set[tuple[str, str]]:
        return {(a.scope.lower(), a.role_guid) for a in self.assignments if a.principal_id == principal_id}

    @_calls("roles.list")
    def list_for_principal(self, subscription_id: str, principal_id: str) -> list[RoleAssignment]:
        if subscription_id.lower() in self.unreadable:
            raise PermanentError(f"listing the role assignments of principal {principal_id}: no roleAssignments/read"
                                 f" at /subscriptions/{subscription_id}", code="AuthorizationFailed")
        return [a for a in self.assignments if a.principal_id == principal_id
                and a.scope.lower().startswith(f"/subscriptions/{subscription_id.lower()}")]

    @_calls("roles.create")
    def create(self, scope: str, role_definition_id: str, principal_id: str, *, name: str) -> RoleAssignment:
        role = role_definition_id.rsplit("/", 1)[-1].lower()
        if self.assignable is not None and role not in self.assignable:
            raise PermanentError(f"AuthorizationFailed: ABAC condition not fulfilled for role {role}",
                                 code="AuthorizationFailed")
        app = self.directory.principal(principal_id)
        if app is None or self.clock() < (app.sp_created_at or self.clock()) + self.replication:
            raise PrincipalNotReplicatedError(f"Principal {principal_id} does not exist in the directory")
        existing = next((a for a in self.assignments if a.principal_id == principal_id
                         and (a.scope.lower(), a.role_guid) == (scope.lower(), role)), None)
        if existing:
            return existing
        self.writes += 1
        created = RoleAssignment(f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}", name, scope,
                                 role_definition_id, principal_id, "ServicePrincipal")
        self.assignments.append(created)
        return created


@dataclass
class FakeOperation:
    id: str
    cluster_key: str
    secret: str = field(repr=False)
    ends_at: datetime
    status: str = "InProgress"
    client_id: str = ""  # the application the reset moves the cluster to (the server application's for AAD)
    kind: str = "servicePrincipal"  # or "aad": resetAADProfile


@dataclass
class FakeCluster:
    id: ClusterId
    client_id: str
    held_secret: str | None = field(repr=False)
    provisioning_state: str = "Succeeded"
    last_modified_at: datetime | None = None
    operation: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # The legacy Azure AD integration: server and client applications, and the server secret the cluster holds.
    aad_server_app_id: str | None = None
    aad_client_app_id: str | None = None
    aad_secret: str | None = field(default=None, repr=False)
    node_resource_group: str | None = None
    subnet_ids: tuple[str, ...] = ()
    # Planned maintenance configurations by name, each its REST `properties` (as ARM returns them).
    maintenance: dict[str, dict[str, Any]] = field(default_factory=dict)


class FakeOutcomes:
    """The outcome topic: what was published, in order; `refuse` makes the next publishes fail as Event Grid would."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.published: list[OutcomeEvent] = []
        self.refuse: RemediationError | None = None

    @_calls("outcomes.publish")
    def publish(self, events: Sequence[OutcomeEvent]) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.published.extend(events)

    def types(self) -> list[str]:
        return [e.type for e in self.published]


class FakeResourceGraph:
    """Resource Graph over the fake AKS: one query lists every cluster of the subscriptions."""

    def __init__(self, clusters: FakeClusters) -> None:
        self._clusters, self.faults = clusters, clusters.faults
        self.queries = 0
        self.also_listed: list[ClusterInfo] = []  # rows for clusters the fake AKS does not hold (odd names, say)

    def list_clusters(self, subscription_ids: Sequence[str]) -> list[ClusterInfo]:
        self.queries += 1
        return self._clusters.list_all(subscription_ids) + list(self.also_listed)

    @_calls("inventory.clusters_using")
    def clusters_using(self, app_id: str, credential: Credential, subscription_ids: Sequence[str]
                       ) -> list[ClusterInfo]:
        if not is_guid(app_id):
            raise InvalidInputError(f"not an application id: {app_id[:60]!r}")
        self.queries += 1
        wanted = {s.lower() for s in subscription_ids}
        return [info for info in self._clusters.list_all(subscription_ids) + list(self.also_listed)
                if info.app_id_for(credential) == app_id.lower()
                and info.id.lower().split("/")[2] in wanted]


class FakeClusters:
    """AKS: clusters, and resets as operations that end `reset_seconds` after they start."""

    def __init__(self, directory: FakeDirectory, clock: FakeClock, faults: Faults) -> None:
        self.directory, self.clock, self.faults = directory, clock, faults
        self.clusters: dict[str, FakeCluster] = {}
        self.operations: dict[str, FakeOperation] = {}
        self.reset_seconds = 60.0
        self.resets_started = 0
        self.reset_secrets: list[str] = []  # what each reset applied, to tell "re-imaged twice" apart
        # (cluster, secret) of each reset of a cluster whose own secret still signed in
        self.healthy_resets: list[tuple[ClusterId, str]] = []
        self.resets_by_cluster: dict[str, int] = {}
        self.also_listed: list[ClusterInfo] = []  # listed rows of clusters it does not hold (odd names, say)
        self.reset_log: list[tuple[ClusterId, datetime, bool]] = []  # (cluster, when it started, its secret worked)
        self.failed_resets = 0
        self.fail_resets = 0  # the next N resets end Failed inside AKS (an internal error)
        self.retry_after: float | None = None  # the Retry-After of a reset's 202 and of a running one's status
        self.operation_looks = 0  # status reads of resets

    def add(self, cluster: ClusterId, client_id: str, secret: str | None, *,
            tags: dict[str, str] | None = None) -> FakeCluster:
        self.clusters[cluster.key] = found = FakeCluster(cluster, client_id, secret,
                                                         last_modified_at=self.clock() - timedelta(days=30),
                                                         tags=dict(tags or {}))
        return found

    def _get(self, cluster: ClusterId) -> FakeCluster:
        self.settle()
        found = self.clusters.get(cluster.key)
        if found is None:
            raise NotFoundError(f"cluster {cluster.name} not found")
        return found

    def settle(self) -> None:
        """End the operations whose time has come, whether or not anyone looks (AKS would have)."""
        for operation in self.operations.values():
            if operation.status != "InProgress" or self.clock() < operation.ends_at:
                continue
            found = self.clusters[operation.cluster_key]
            ok = self.directory.accepts(operation.client_id, operation.secret) and not self.fail_resets
            self.fail_resets = max(self.fail_resets - 1, 0)
            operation.status = "Succeeded" if ok else "Failed"
            self.failed_resets += 0 if ok else 1
            found.provisioning_state = "Succeeded" if ok else "Failed"
            found.operation = None
            if ok and operation.kind == "aad":
                found.aad_server_app_id, found.aad_secret = operation.client_id, operation.secret
                found.last_modified_at = operation.ends_at
            elif ok:
                found.client_id, found.held_secret = operation.client_id, operation.secret
                found.last_modified_at = operation.ends_at

    @staticmethod
    def _info(found: FakeCluster) -> ClusterInfo:
        return ClusterInfo(str(found.id), found.id.name, "westeurope", found.client_id, found.provisioning_state,
                           found.last_modified_at, dict(found.tags), aad_server_app_id=found.aad_server_app_id,
                           aad_client_app_id=found.aad_client_app_id,
                           aad_tenant_id="72f988bf-0000-4000-8000-000000000001" if found.aad_server_app_id else None)

    @_calls("clusters.get_cluster")
    def get_cluster(self, cluster: ClusterId) -> ClusterInfo:
        return self._info(self._get(cluster))

    @_calls("clusters.list_clusters")
    def list_clusters(self, subscription_id: str) -> list[ClusterInfo]:
        self.settle()
        return [self._info(c) for c in self.clusters.values() if c.id.subscription_id == subscription_id.lower()] + [
            info for info in self.also_listed if f"/subscriptions/{subscription_id.lower()}/" in info.id.lower()]

    def list_all(self, subscription_ids: Sequence[str]) -> list[ClusterInfo]:
        """Resource Graph's view (ClusterInventory): every cluster of the subscriptions, by id."""
        self.settle()
        wanted = {s.lower() for s in subscription_ids}
        return sorted((self._info(c) for c in self.clusters.values() if c.id.subscription_id in wanted),
                      key=lambda info: info.id.lower())

    @_calls("clusters.list_maintenance_configurations")
    def list_maintenance_configurations(self, cluster: ClusterId) -> dict[str, dict[str, Any]]:
        return dict(self._get(cluster).maintenance)

    @_calls("clusters.begin_reset")
    def begin_reset_service_principal_profile(self, cluster: ClusterId, client_id: str, secret: SecretText
                                              ) -> OperationStarted:
        found = self._get(cluster)
        healthy = self.directory.accepts(found.client_id, found.held_secret or "")
        return self._start(found, secret, client_id, "servicePrincipal", healthy)

    @_calls("clusters.begin_reset")
    def begin_reset_aad_profile(self, cluster: ClusterId, *, server_app_id: str, client_app_id: str,
                                tenant_id: str | None, secret: SecretText) -> OperationStarted:
        found = self._get(cluster)
        if not found.aad_server_app_id or client_app_id != found.aad_client_app_id:
            raise PermanentError("BadRequest: the AAD profile's client application does not match", code="BadRequest")
        healthy = self.directory.accepts(found.aad_server_app_id, found.aad_secret or "")
        return self._start(found, secret, server_app_id, "aad", healthy)

    def _start(self, found: FakeCluster, secret: SecretText, client_id: str, kind: str, healthy: bool
               ) -> OperationStarted:
        if found.operation is not None:
            raise OperationInProgressError("OperationNotAllowed: Operation is not allowed because there's an in"
                                           " progress reset service principal operation")
        self.resets_started += 1
        self.resets_by_cluster[found.id.name] = self.resets_by_cluster.get(found.id.name, 0) + 1
        self.reset_secrets.append(secret.reveal())
        if healthy:
            self.healthy_resets.append((found.id, secret.reveal()))
        self.reset_log.append((found.id, self.clock(), healthy))
        operation = FakeOperation(uuid.uuid4().hex, found.id.key, secret.reveal(),
                                  self.clock() + timedelta(seconds=self.reset_seconds), client_id=client_id, kind=kind)
        self.operations[operation.id] = operation
        found.operation, found.provisioning_state = operation.id, "Resetting"
        return OperationStarted(OPERATIONS_URL.format(sub=found.id.subscription_id, id=operation.id), self.retry_after)

    @_calls("clusters.get_operation")
    def get_operation(self, status_url: str) -> OperationStatus:
        self.settle()
        operation = self.operations[status_url.split("/operations/")[1].split("?")[0]]
        self.operation_looks += 1
        return OperationStatus(operation.status, None if operation.status != "Failed" else
                               "ServicePrincipalValidationClientError: AADSTS7000215",
                               retry_after=self.retry_after if operation.status == "InProgress" else None)

    def secret_valid(self, cluster: ClusterId) -> bool:
        found = self._get(cluster)
        return self.directory.accepts(found.client_id, found.held_secret or "")

    def write_fails(self, cluster: ClusterId) -> bool:
        """What an operator's write (an upgrade) would meet: True if AKS refuses the cluster's credential."""
        found = self._get(cluster)
        return found.client_id != "msi" and not self.directory.accepts(found.client_id, found.held_secret or "")

    def fix_by_hand(self, cluster: ClusterId) -> None:
        """A person repairs the cluster without the remediator: a new password, applied with the CLI (which AKS
        refuses, as any write, while an operation runs: they wait for it)."""
        found = self._get(cluster)
        if found.operation is not None:
            self.clock.now = self.operations[found.operation].ends_at
            self.settle()
        found.held_secret = self.directory.add_password_by_hand(found.client_id, expires_in=timedelta(days=365))
        found.provisioning_state, found.last_modified_at = "Succeeded", self.clock()


class FakeResourceGroups:
    """Resource groups' tags (ARM); a group nobody tagged has none."""

    def __init__(self) -> None:
        self.tags: dict[tuple[str, str], dict[str, str]] = {}
        self.reads = 0

    def get_tags(self, subscription_id: str, resource_group: str) -> dict[str, str]:
        self.reads += 1
        return dict(self.tags.get((subscription_id.lower(), resource_group.lower()), {}))


class FakeVault:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.secrets: dict[str, list[tuple[StoredSecretVersion, str]]] = {}
        self.fail_set: Exception | None = None
        self.reads = 0  # secret values read back

    @_calls("vault.set_secret")
    def set_secret(self, name: str, value: SecretText, *, tags: dict[str, str], content_type: str,
                   expires: datetime) -> StoredSecretVersion:
        if self.fail_set:
            raise self.fail_set
        version = StoredSecretVersion(name, uuid.uuid4().hex, dict(tags), expires)
        self.secrets.setdefault(name, []).append((version, value.reveal()))
        return version

    @_calls("vault.get_secret")
    def get_secret(self, name: str, version: str) -> SecretText:
        self.reads += 1
        for stored, value in self.secrets.get(name, []):
            if stored.version == version:
                return SecretText(value)
        raise NotFoundError(f"secret {name}/{version} not found")

    @_calls("vault.list_versions")
    def list_versions(self, name: str) -> list[StoredSecretVersion]:
        return [stored for stored, _ in self.secrets.get(name, [])]

    def current_value(self, name: str) -> str | None:
        versions = self.secrets.get(name)
        return versions[-1][1] if versions else None

    def remediation_that_stored(self, value: str) -> str | None:
        return next((stored.tags.get("remediationId") for versions in self.secrets.values()
                     for stored, text in versions if text == value), None)

    def stored_key_ids(self) -> set[str]:
        return {stored.tags.get("keyId", "") for versions in self.secrets.values() for stored, _ in versions}


class FakeStore:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.rows: dict[str, tuple[dict[str, Any], str]] = {}
        self.claims: dict[str, tuple[str, str]] = {}
        self._etags = itertools.count(1)

    def _etag(self) -> str:
        return f"W/\"{next(self._etags)}\""

    @_calls("store.create")
    def create(self, remediation: Remediation) -> Remediation:
        if remediation.id in self.rows:
            raise ConflictError(f"remediation {remediation.id} exists already")
        remediation.etag = self._etag()
        self.rows[remediation.id] = (remediation.to_entity(), remediation.etag)
        return remediation

    def get(self, remediation_id: str) -> Remediation:
        self.faults.check("store.get", after=False)
        if remediation_id not in self.rows:
            raise NotFoundError(f"there is no remediation {remediation_id}")
        entity, etag = self.rows[remediation_id]
        return Remediation.from_entity(dict(entity), etag=etag)

    @_calls("store.save")
    def save(self, remediation: Remediation) -> Remediation:
        if self.rows[remediation.id][1] != remediation.etag:
            raise ConcurrencyError(f"remediation {remediation.id} was changed by another worker")
        remediation.etag = self._etag()
        self.rows[remediation.id] = (remediation.to_entity(), remediation.etag)
        return remediation

    def list_for_cluster(self, cluster_key: str, *, limit: int) -> list[Remediation]:
        self.faults.check("store.list", after=False)
        found = [self.get(i) for i, (entity, _) in self.rows.items() if entity["cluster_key"] == cluster_key]
        return sorted(found, key=lambda r: r.created_at, reverse=True)[:limit]

    def list_recent(self, *, limit: int) -> list[Remediation]:
        return sorted(self.all(), key=lambda r: r.created_at, reverse=True)[:limit]

    def list_for_application(self, app_id: str, *, limit: int) -> list[Remediation]:
        found = [self.get(i) for i, (entity, _) in self.rows.items() if entity.get("app_key") == app_id.lower()]
        return sorted(found, key=lambda r: r.created_at, reverse=True)[:limit]

    def list_active(self, *, limit: int) -> list[Remediation]:
        found = [self.get(i) for i, (entity, _) in self.rows.items() if entity["active"]]
        return sorted(found, key=lambda r: r.updated_at)[:limit]

    @_calls("store.create_claimed")
    def create_claimed(self, remediation: Remediation, claim_key: str, *, replacing: str | None = None) -> bool:
        """One transaction, as Azure Tables makes it: the claim and the record, or neither."""
        held = self.claims.get(claim_key)
        if (held is not None) if replacing is None else (held is None or held[1] != replacing):
            return False
        if remediation.id in self.rows:
            raise ConflictError(f"remediation {remediation.id} exists already")
        remediation.etag = self._etag()
        self.rows[remediation.id] = (remediation.to_entity(), remediation.etag)
        self.claims[claim_key] = (remediation.id, self._etag())
        return True

    def get_claim(self, claim_key: str) -> tuple[str, str] | None:
        return self.claims.get(claim_key)

    def list_claims(self, *, limit: int) -> list[tuple[str, str]]:
        return [(key, holder) for key, (holder, _) in self.claims.items()][:limit]

    @_calls("store.delete_claim")
    def delete_claim(self, claim_key: str, remediation_id: str) -> None:
        if self.claims.get(claim_key, (None,))[0] == remediation_id:
            del self.claims[claim_key]

    def all(self) -> list[Remediation]:
        return [self.get(i) for i in self.rows]


@dataclass
class QueuedMessage:
    visible_at: datetime
    body: dict[str, Any]
    dequeue_count: int = 0


class FakeQueue:
    """Messages with a visible-at time on the shared clock, and the host's dequeue counting."""

    def __init__(self, clock: FakeClock, faults: Faults, name: str) -> None:
        self.clock, self.faults, self.name = clock, faults, name
        self.messages: list[QueuedMessage] = []
        self.sent = 0

    def send(self, message: dict[str, Any], *, delay_seconds: float = 0) -> None:
        self.faults.check(f"{self.name}.send", after=False)
        self.sent += 1
        self.messages.append(QueuedMessage(self.clock() + timedelta(seconds=delay_seconds), dict(message)))
        self.faults.check(f"{self.name}.send", after=True)

    def receive_visible(self) -> list[QueuedMessage]:
        now = self.clock()
        visible = [m for m in self.messages if m.visible_at <= now]
        self.messages = [m for m in self.messages if m.visible_at > now]
        return visible

    def next_visible_at(self) -> datetime | None:
        return min((m.visible_at for m in self.messages), default=None)


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
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.incidents: dict[str, dict[str, Any]] = {}
        self.decisions: list[dict[str, Any]] = []
        self.checkpoints: dict[str, datetime] = {}
        self.reset_starts: list[datetime] = []  # the fleet's reset ledger: every slot taken
        self.lookups: dict[str, dict[str, Any]] = {}  # pending lookups by cluster key
        self._lookup_etags: dict[str, str] = {}

    @_calls("incidents.record_incident")
    def record_incident(self, incident_key: str, fields: dict[str, Any]) -> bool:
        if incident_key in self.incidents:
            return False
        self.incidents[incident_key] = dict(fields)
        return True

    def get_incident(self, incident_key: str) -> dict[str, Any] | None:
        return self.incidents.get(incident_key)

    def record_decision(self, fields: dict[str, Any]) -> None:
        self.faults.check("incidents.record_decision", after=False)
        self.decisions.append(dict(fields))

    def list_decisions(self, *, cluster_key: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        found = [d for d in reversed(self.decisions)
                 if cluster_key is None or ClusterId.parse(d["clusterResourceId"]).key == cluster_key]
        return found[:limit]

    def reserve_reset(self, now: datetime, *, cap: int, window_seconds: float) -> datetime | None:
        recent = [t for t in self.reset_starts if t > now - timedelta(seconds=window_seconds)]
        if len(recent) >= cap:
            return (min(recent) if recent else now) + timedelta(seconds=window_seconds)
        self.reset_starts.append(now)
        return None

    def get_checkpoint(self, subscription_id: str) -> datetime | None:
        return self.checkpoints.get(subscription_id)

    def set_checkpoint(self, subscription_id: str, at: datetime) -> None:
        self.checkpoints[subscription_id] = at

    @_calls("incidents.open_lookup")
    def open_lookup(self, cluster_key: str, fields: dict[str, Any]) -> bool:
        if cluster_key in self.lookups:
            return False
        self.lookups[cluster_key], self._lookup_etags[cluster_key] = dict(fields), uuid.uuid4().hex
        return True

    def get_lookup(self, cluster_key: str) -> tuple[dict[str, Any], str] | None:
        if cluster_key not in self.lookups:
            return None
        return dict(self.lookups[cluster_key]), self._lookup_etags[cluster_key]

    @_calls("incidents.replace_lookup")
    def replace_lookup(self, cluster_key: str, fields: dict[str, Any], etag: str) -> bool:
        if self._lookup_etags.get(cluster_key) != etag:
            return False
        self.lookups[cluster_key], self._lookup_etags[cluster_key] = dict(fields), uuid.uuid4().hex
        return True

    @_calls("incidents.close_lookup")
    def close_lookup(self, cluster_key: str, etag: str) -> bool:
        if cluster_key not in self.lookups:
            return True
        if self._lookup_etags[cluster_key] != etag:
            return False
        del self.lookups[cluster_key], self._lookup_etags[cluster_key]
        return True
