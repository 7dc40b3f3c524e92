"""The remediator's state in the app's own storage account: one table and three queues.

The table, by partition:
- `remediation`: the remediation records (remediation/record.py), and each application's claim, a row
  `~claim~app-{appId}` beside them, so a claim and the record it names are written in one transaction;
- `incident`: one row per (correlation id, cluster), written insert-if-absent before anything acts;
- `decision`: the decision log, newest first;
- `sweep-checkpoint`: how far each subscription's Activity Log was swept;
- `reset-ledger`: the fleet's reset reservations (REMEDIATOR_MAX_RESETS_PER_HOUR), one ETag-guarded entity;
- `pending-lookup`: one row per cluster whose failure lookup is pending (events join it).
The queues carry work messages (a remediation id and generation), failure lookups and credential checks; never
anything secret.

Permissions: `Storage Table Data Contributor` and `Storage Queue Data Contributor` on the app's own storage
account (or a connection string for local runs).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from remediation.adapters.azure_errors import translate
from remediation.errors import ConcurrencyError, ConflictError, NotFoundError
from remediation.ids import ClusterId
from remediation.record import Remediation

REMEDIATION_PARTITION = "remediation"
# An application's claim is a row in the records' own partition, so that a claim and the record it names are written
# in one entity group transaction (Azure Tables: atomic within one partition). '~' sorts after every record id (hex),
# which keeps claims out of record listings. Rows in the former claim partition, "cluster-claim", are no longer read.
CLAIM_ROW_PREFIX = "~claim~"
INCIDENT_PARTITION = "incident"
DECISION_PARTITION = "decision"
CHECKPOINT_PARTITION = "sweep-checkpoint"
LEDGER_PARTITION = "reset-ledger"
LOOKUP_PARTITION = "pending-lookup"  # one row per cluster with a failure lookup pending, keyed by its cluster key
# How a transaction's claim operation fails when another worker holds or changed the claim.
_CLAIM_LOST = frozenset({"EntityAlreadyExists", "UpdateConditionNotSatisfied", "ResourceNotFound"})
# Decision rows sort newest first: their RowKey starts with the time counted down from here.
_FAR_FUTURE = 10**17
# A queue message stays invisible at most 7 days.
MAX_VISIBILITY_SECONDS = 7 * 24 * 3600


class StorageTarget:
    """Where storage lives: a connection string (local, Azurite), or table and queue endpoints
    (from settings, so any cloud) reached with a credential."""

    def __init__(self, *, connection_string: str | None = None, table_endpoint: str | None = None,
                 queue_endpoint: str | None = None, credential: TokenCredential | None = None) -> None:
        self.connection_string = connection_string
        self.table_endpoint = table_endpoint
        self.queue_endpoint = queue_endpoint
        self.credential = credential

    def table(self, name: str) -> TableClient:
        if self.connection_string:
            return TableClient.from_connection_string(self.connection_string, table_name=name)
        return TableClient(self.table_endpoint or "", name, credential=self.credential)

    def queue(self, name: str) -> QueueClient:
        # The Functions host reads queue messages as base64 by default (host.json messageEncoding).
        if self.connection_string:
            return QueueClient.from_connection_string(self.connection_string, name,
                                                      message_encode_policy=TextBase64EncodePolicy())
        return QueueClient(self.queue_endpoint or "", name, credential=self.credential,
                           message_encode_policy=TextBase64EncodePolicy())


class TableRemediationStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def ensure_table(self) -> None:
        try:
            self._table.create_table()
        except ResourceExistsError:
            pass
        except AzureError as err:
            raise translate(err, "creating the remediations table") from err

    def create(self, remediation: Remediation) -> Remediation:
        entity = {"PartitionKey": REMEDIATION_PARTITION, "RowKey": remediation.id, **remediation.to_entity()}
        try:
            metadata = self._table.create_entity(entity)
        except ResourceExistsError as err:
            raise ConflictError(f"remediation {remediation.id} exists already", code="RemediationExists") from err
        except AzureError as err:
            raise translate(err, f"recording remediation {remediation.id}") from err
        remediation.etag = metadata.get("etag")
        return remediation

    def get(self, remediation_id: str) -> Remediation:
        try:
            entity = self._table.get_entity(REMEDIATION_PARTITION, remediation_id)
        except ResourceNotFoundError as err:
            raise NotFoundError(f"there is no remediation {remediation_id}", code="RemediationNotFound") from err
        except AzureError as err:
            raise translate(err, f"reading remediation {remediation_id}") from err
        return Remediation.from_entity(dict(entity), etag=entity.metadata.get("etag"))

    def save(self, remediation: Remediation) -> Remediation:
        """Replace the record if nobody changed it since it was read; updates `etag` in place."""
        entity = {"PartitionKey": REMEDIATION_PARTITION, "RowKey": remediation.id, **remediation.to_entity()}
        try:
            metadata = self._table.update_entity(entity, mode=UpdateMode.REPLACE, etag=remediation.etag,
                                                 match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError as err:
            raise ConcurrencyError(f"remediation {remediation.id} was changed by another worker") from err
        except AzureError as err:
            raise translate(err, f"saving remediation {remediation.id}") from err
        remediation.etag = metadata.get("etag")
        return remediation

    def list_for_cluster(self, cluster_key: str, *, limit: int) -> list[Remediation]:
        try:
            found = [Remediation.from_entity(dict(e), etag=e.metadata.get("etag")) for e in self._table.query_entities(
                "PartitionKey eq @partition and cluster_key eq @key",
                parameters={"partition": REMEDIATION_PARTITION, "key": cluster_key})]
        except AzureError as err:
            raise translate(err, "listing the cluster's remediations") from err
        return sorted(found, key=lambda r: r.created_at, reverse=True)[:limit]

    def list_recent(self, *, limit: int) -> list[Remediation]:
        try:
            found = [Remediation.from_entity(dict(e), etag=e.metadata.get("etag")) for e in self._table.query_entities(
                "PartitionKey eq @partition and RowKey lt @claims",
                parameters={"partition": REMEDIATION_PARTITION, "claims": CLAIM_ROW_PREFIX})]
        except AzureError as err:
            raise translate(err, "listing remediations") from err
        return sorted(found, key=lambda r: r.created_at, reverse=True)[:limit]

    def list_for_application(self, app_id: str, *, limit: int) -> list[Remediation]:
        try:
            found = [Remediation.from_entity(dict(e), etag=e.metadata.get("etag")) for e in self._table.query_entities(
                "PartitionKey eq @partition and app_key eq @key",
                parameters={"partition": REMEDIATION_PARTITION, "key": app_id.lower()})]
        except AzureError as err:
            raise translate(err, "listing the application's remediations") from err
        return sorted(found, key=lambda r: r.created_at, reverse=True)[:limit]

    def list_active(self, *, limit: int) -> list[Remediation]:
        try:
            found = [Remediation.from_entity(dict(e), etag=e.metadata.get("etag")) for e in self._table.query_entities(
                "PartitionKey eq @partition and active eq true", parameters={"partition": REMEDIATION_PARTITION})]
        except AzureError as err:
            raise translate(err, "listing unfinished remediations") from err
        return sorted(found, key=lambda r: r.updated_at)[:limit]

    def create_claimed(self, remediation: Remediation, claim_key: str, *, replacing: str | None = None) -> bool:
        """Record the remediation and, in the same transaction, the claim `claim_key` naming it: a new claim, or (with
        `replacing`, the ETag it was read with) one that named a finished remediation. Both are written, or neither:
        False when the claim exists, or changed since it was read; ConflictError when the record exists."""
        claim = {"PartitionKey": REMEDIATION_PARTITION, "RowKey": CLAIM_ROW_PREFIX + claim_key,
                 "remediation_id": remediation.id}
        claiming: tuple[Any, ...] = ("create", claim) if replacing is None else (
            "update", claim, {"mode": UpdateMode.REPLACE, "etag": replacing,
                              "match_condition": MatchConditions.IfNotModified})
        record = {"PartitionKey": REMEDIATION_PARTITION, "RowKey": remediation.id, **remediation.to_entity()}
        try:
            results = self._table.submit_transaction([claiming, ("create", record)])
        except TableTransactionError as err:
            code = str(getattr(err.error_code, "value", err.error_code))
            if err.index == 0 and code in _CLAIM_LOST:  # the claim: taken, changed or gone since it was read
                return False
            if err.index == 1 and code == "EntityAlreadyExists":
                raise ConflictError(f"remediation {remediation.id} exists already", code="RemediationExists") from err
            raise translate(err, f"recording remediation {remediation.id} with its claim") from err
        except AzureError as err:
            raise translate(err, f"recording remediation {remediation.id} with its claim") from err
        remediation.etag = results[1].get("etag")
        return True

    def get_claim(self, claim_key: str) -> tuple[str, str] | None:
        try:
            entity = self._table.get_entity(REMEDIATION_PARTITION, CLAIM_ROW_PREFIX + claim_key)
        except ResourceNotFoundError:
            return None
        except AzureError as err:
            raise translate(err, "reading the application's claim") from err
        return entity["remediation_id"], entity.metadata["etag"]

    def list_claims(self, *, limit: int) -> list[tuple[str, str]]:
        try:
            found = []
            for entity in self._table.query_entities("PartitionKey eq @partition and RowKey ge @claims",
                                                     parameters={"partition": REMEDIATION_PARTITION,
                                                                 "claims": CLAIM_ROW_PREFIX}):
                found.append((entity["RowKey"][len(CLAIM_ROW_PREFIX):], entity["remediation_id"]))
                if len(found) >= limit:
                    break
        except AzureError as err:
            raise translate(err, "listing application claims") from err
        return found

    def delete_claim(self, claim_key: str, remediation_id: str) -> None:
        claim = self.get_claim(claim_key)
        if claim is None or claim[0] != remediation_id:
            return
        try:
            self._table.delete_entity(REMEDIATION_PARTITION, CLAIM_ROW_PREFIX + claim_key, etag=claim[1],
                                      match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            pass  # someone else holds it now: theirs to release
        except AzureError as err:
            raise translate(err, "releasing the application's claim") from err


class TableIncidentStore:
    """Incidents acted on, the decision log and sweep checkpoints, in the same table as the remediations."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def record_incident(self, incident_key: str, fields: dict[str, Any]) -> bool:
        entity = {"PartitionKey": INCIDENT_PARTITION, "RowKey": incident_key,
                  **{k: v for k, v in fields.items() if v is not None}}
        try:
            self._table.create_entity(entity)
        except ResourceExistsError:
            return False
        except AzureError as err:
            raise translate(err, "recording an incident") from err
        return True

    def get_incident(self, incident_key: str) -> dict[str, Any] | None:
        try:
            entity = self._table.get_entity(INCIDENT_PARTITION, incident_key)
        except ResourceNotFoundError:
            return None
        except AzureError as err:
            raise translate(err, "reading an incident") from err
        return {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey")}

    def record_decision(self, fields: dict[str, Any]) -> None:
        row = f"{_FAR_FUTURE - time.time_ns() // 1000:017d}-{uuid.uuid4().hex[:8]}"
        entity = {"PartitionKey": DECISION_PARTITION, "RowKey": row,
                  **{k: v for k, v in fields.items() if v is not None}}
        if fields.get("clusterResourceId"):
            entity["cluster_key"] = ClusterId.parse(fields["clusterResourceId"]).key
        try:
            self._table.create_entity(entity)
        except AzureError as err:
            raise translate(err, "recording a decision") from err

    def list_decisions(self, *, cluster_key: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        query, parameters = "PartitionKey eq @partition", {"partition": DECISION_PARTITION}
        if cluster_key:
            query, parameters = query + " and cluster_key eq @key", {**parameters, "key": cluster_key}
        try:
            rows = self._table.query_entities(query, parameters=parameters, results_per_page=min(limit, 1000))
            found = []
            for entity in rows:  # RowKeys sort newest first
                found.append({k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey", "cluster_key")})
                if len(found) >= limit:
                    break
        except AzureError as err:
            raise translate(err, "listing decisions") from err
        return found

    def reserve_reset(self, now: datetime, *, cap: int, window_seconds: float) -> datetime | None:
        """The fleet's reset ledger: one entity listing the start times in the window, replaced ETag-checked,
        so two workers can never both take the last slot."""
        for _ in range(20):
            try:
                entity = self._table.get_entity(LEDGER_PARTITION, "resets")
                etag, started = entity.metadata["etag"], json.loads(entity.get("started") or "[]")
            except ResourceNotFoundError:
                etag, started = None, []
            except AzureError as err:
                raise translate(err, "reading the reset ledger") from err
            since = (now - timedelta(seconds=window_seconds)).isoformat()
            started = sorted(t for t in started if t > since)
            if len(started) >= cap:  # full: a slot frees when the oldest start leaves the window
                oldest = datetime.fromisoformat(started[0]) if started else now
                return oldest + timedelta(seconds=window_seconds)
            fields = {"PartitionKey": LEDGER_PARTITION, "RowKey": "resets", "started": json.dumps([*started,
                                                                                                 now.isoformat()])}
            try:
                if etag is None:
                    self._table.create_entity(fields)
                else:
                    self._table.update_entity(fields, mode=UpdateMode.REPLACE, etag=etag,
                                              match_condition=MatchConditions.IfNotModified)
                return None
            except (ResourceExistsError, ResourceModifiedError):
                continue  # another worker took a slot meanwhile: count again
            except AzureError as err:
                raise translate(err, "taking a reset slot") from err
        raise ConcurrencyError("the reset ledger kept changing; try again")

    def get_checkpoint(self, subscription_id: str) -> datetime | None:
        try:
            entity = self._table.get_entity(CHECKPOINT_PARTITION, subscription_id)
        except ResourceNotFoundError:
            return None
        except AzureError as err:
            raise translate(err, "reading the sweep checkpoint") from err
        return datetime.fromisoformat(entity["at"])

    def set_checkpoint(self, subscription_id: str, at: datetime) -> None:
        try:
            self._table.upsert_entity({"PartitionKey": CHECKPOINT_PARTITION, "RowKey": subscription_id,
                                       "at": at.isoformat()}, mode=UpdateMode.REPLACE)
        except AzureError as err:
            raise translate(err, "saving the sweep checkpoint") from err

    def open_lookup(self, cluster_key: str, fields: dict[str, Any]) -> bool:
        try:
            self._table.create_entity({"PartitionKey": LOOKUP_PARTITION, "RowKey": cluster_key, **fields})
        except ResourceExistsError:
            return False
        except AzureError as err:
            raise translate(err, "recording a pending lookup") from err
        return True

    def get_lookup(self, cluster_key: str) -> tuple[dict[str, Any], str] | None:
        try:
            entity = self._table.get_entity(LOOKUP_PARTITION, cluster_key)
        except ResourceNotFoundError:
            return None
        except AzureError as err:
            raise translate(err, "reading a pending lookup") from err
        return {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey")}, entity.metadata["etag"]

    def replace_lookup(self, cluster_key: str, fields: dict[str, Any], etag: str) -> bool:
        try:
            self._table.update_entity({"PartitionKey": LOOKUP_PARTITION, "RowKey": cluster_key, **fields},
                                      mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        except AzureError as err:
            raise translate(err, "updating a pending lookup") from err
        return True

    def close_lookup(self, cluster_key: str, etag: str) -> bool:
        try:
            self._table.delete_entity(LOOKUP_PARTITION, cluster_key, etag=etag,
                                      match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            return False
        except AzureError as err:
            raise translate(err, "closing a pending lookup") from err
        return True


class StorageWorkQueue:
    def __init__(self, queue: QueueClient) -> None:
        self._queue = queue

    def ensure_queue(self) -> None:
        try:
            self._queue.create_queue()
        except ResourceExistsError:
            pass
        except AzureError as err:
            raise translate(err, "creating the work queue") from err

    def send(self, message: dict[str, Any], *, delay_seconds: float = 0) -> None:
        delay = int(min(max(delay_seconds, 0), MAX_VISIBILITY_SECONDS) + 0.999)
        try:
            self._queue.send_message(json.dumps(message), visibility_timeout=delay or None)
        except AzureError as err:
            raise translate(err, "enqueueing work") from err
