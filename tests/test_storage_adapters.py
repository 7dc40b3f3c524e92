"""The table store and work queue adapters against Azurite, with the real SDK clients."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime

import pytest
from azure.storage.queue import QueueClient

from remediation.adapters.storage import StorageTarget, StorageWorkQueue, TableIncidentStore, TableRemediationStore
from remediation.errors import ConcurrencyError, ConflictError, NotFoundError
from remediation.ids import ClusterId
from remediation.model import Status
from remediation.record import Remediation, new_remediation_id
from sandbox.azurite import Azurite


@pytest.fixture
def store(azurite: Azurite, unique_name: str) -> TableRemediationStore:
    table_store = TableRemediationStore(StorageTarget(connection_string=azurite.connection_string).table(unique_name))
    table_store.ensure_table()
    table_store.ensure_table()  # idempotent
    return table_store


def a_remediation() -> Remediation:
    return Remediation(id=new_remediation_id(), cluster_id="/subscriptions/6f1c2d3e-0000-4000-8000-000000000001"
                       "/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c",
                       dry_run=False, source="manual",
                       status=Status.ACCEPTED, created_at="2026-11-23T00:00:00+00:00",
                       updated_at="2026-11-23T00:00:00+00:00")


def a_remediation_with_id(remediation_id: str) -> Remediation:
    remediation = a_remediation()
    remediation.id = remediation_id
    return remediation


def test_a_record_round_trips_with_its_steps(store: TableRemediationStore) -> None:
    remediation = store.create(a_remediation())
    marked_at = datetime.now(UTC)
    remediation.mark("mint_secret", "SecretStored", "password k1", marked_at)
    remediation.old_key_ids = ["k1", "k2"]
    remediation.error = {"code": "X", "message": "y"}
    store.save(remediation)
    loaded = store.get(remediation.id)
    assert loaded == remediation
    assert loaded.steps["mint_secret"].at == marked_at.isoformat()
    with pytest.raises(ConflictError):  # insert-if-absent: a second create of the same id is refused
        store.create(a_remediation_with_id(remediation.id))


def test_a_stale_writer_loses_with_a_concurrency_error(store: TableRemediationStore) -> None:
    remediation = store.create(a_remediation())
    first, second = store.get(remediation.id), store.get(remediation.id)
    first.reason = "first"
    store.save(first)
    second.reason = "second"
    with pytest.raises(ConcurrencyError):
        store.save(second)
    assert store.get(remediation.id).reason == "first"


def test_unknown_remediation_is_not_found(store: TableRemediationStore) -> None:
    with pytest.raises(NotFoundError):
        store.get(new_remediation_id())


def test_only_one_of_many_racing_claimed_records_is_written(store: TableRemediationStore) -> None:
    # Each worker writes its record and the application's claim in one transaction: one wins whole, the others write
    # nothing, so no worker ever sees a claim whose record is still to come (the race that let two rotations start).
    contenders = [a_remediation() for _ in range(8)]
    winners: list[str] = []

    def admit(remediation: Remediation) -> None:
        if store.create_claimed(remediation, "app-key"):
            winners.append(remediation.id)

    threads = [threading.Thread(target=admit, args=(r,)) for r in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    holder, etag = store.get_claim("app-key")
    assert holder == winners[0] and store.get(holder).id == holder
    assert [r.id for r in store.list_recent(limit=50)] == winners  # the losers wrote no record; the claim is no record
    assert store.list_claims(limit=10) == [("app-key", holder)]


def test_a_claim_is_taken_over_by_its_etag_and_released_only_by_its_holder(store: TableRemediationStore) -> None:
    first, second, third = a_remediation(), a_remediation(), a_remediation()
    assert store.create_claimed(first, "app-key")
    _, etag = store.get_claim("app-key")
    assert store.create_claimed(second, "app-key", replacing=etag) is True
    assert store.create_claimed(third, "app-key", replacing=etag) is False  # the etag is stale now: nothing written
    with pytest.raises(NotFoundError):
        store.get(third.id)
    with pytest.raises(ConflictError):  # a record that exists already
        store.create_claimed(a_remediation_with_id(first.id), "other-key")
    assert store.get_claim("other-key") is None  # ... and its claim went with it
    store.delete_claim("app-key", first.id)  # not the holder: nothing happens
    assert store.get_claim("app-key")[0] == second.id
    store.delete_claim("app-key", second.id)
    assert store.get_claim("app-key") is None
    assert store.create_claimed(third, "app-key", replacing=etag) is False  # a released claim is gone, not stale


def test_messages_are_base64_for_the_functions_host_and_honour_the_delay(azurite: Azurite, unique_name: str) -> None:
    target = StorageTarget(connection_string=azurite.connection_string)
    queue = StorageWorkQueue(target.queue(unique_name))
    queue.ensure_queue()
    queue.send({"remediationId": "a" * 32})
    queue.send({"remediationId": "b" * 32}, delay_seconds=60)
    raw = QueueClient.from_connection_string(azurite.connection_string, unique_name)
    visible = list(raw.receive_messages(max_messages=10))
    assert len(visible) == 1
    assert json.loads(base64.b64decode(visible[0].content)) == {"remediationId": "a" * 32}
    assert raw.get_queue_properties().approximate_message_count == 2


def test_unfinished_remediations_are_listed_oldest_first(store: TableRemediationStore) -> None:
    first, second, done = a_remediation(), a_remediation(), a_remediation()
    second.updated_at = "2026-11-23T00:00:01+00:00"
    done.status = Status.SUCCEEDED
    for remediation in (second, done, first):
        store.create(remediation)
    assert [r.id for r in store.list_active(limit=10)] == [first.id, second.id]


def test_decisions_are_listed_newest_first_and_per_cluster(azurite: Azurite, unique_name: str) -> None:
    table = StorageTarget(connection_string=azurite.connection_string).table(unique_name)
    TableRemediationStore(table).ensure_table()
    incidents = TableIncidentStore(table)
    cluster = a_remediation().cluster_id
    other = cluster.replace("managedClusters/c", "managedClusters/d")
    for code, cluster_id in (("First", cluster), ("Other", other), ("Second", cluster)):
        incidents.record_decision({"clusterResourceId": cluster_id, "code": code, "message": "m"})
    assert [d["code"] for d in incidents.list_decisions()] == ["Second", "Other", "First"]
    assert [d["code"] for d in incidents.list_decisions(cluster_key=ClusterId.parse(cluster).key)] == ["Second",
                                                                                                       "First"]
    assert incidents.record_incident("k", {"remediation_id": "r"}) is True
    assert incidents.record_incident("k", {"remediation_id": "other"}) is False  # insert-if-absent
    assert incidents.get_incident("k") == {"remediation_id": "r"}
    assert incidents.get_incident("missing") is None


def test_a_clusters_pending_lookup_is_opened_once_joined_by_etag_and_closed_only_unchanged(
        azurite: Azurite, unique_name: str) -> None:
    table = StorageTarget(connection_string=azurite.connection_string).table(unique_name)
    TableRemediationStore(table).ensure_table()
    incidents = TableIncidentStore(table)
    opened = [incidents.open_lookup("cluster-key", {"correlationId": f"c{n}"}) for n in range(3)]
    assert opened == [True, False, False]  # insert-if-absent: one per cluster across workers
    fields, etag = incidents.get_lookup("cluster-key") or ({}, "")
    assert fields == {"correlationId": "c0"}
    assert incidents.replace_lookup("cluster-key", {"correlationId": "newer"}, etag) is True
    assert incidents.replace_lookup("cluster-key", {"correlationId": "stale"}, etag) is False  # changed since read
    assert incidents.close_lookup("cluster-key", etag) is False  # a newer failure joined: not closed
    fields, etag = incidents.get_lookup("cluster-key") or ({}, "")
    assert fields == {"correlationId": "newer"} and incidents.close_lookup("cluster-key", etag) is True
    assert incidents.get_lookup("cluster-key") is None and incidents.close_lookup("cluster-key", etag) is True
