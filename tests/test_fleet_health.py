"""Fleet credential health over the stateful fakes: the report, the daily check acting on it, proactive rotation
inside maintenance windows, and the fast path for a failure event, each in the order a user lives through it."""

from __future__ import annotations

from datetime import timedelta

from remediation.errors import PermanentError
from remediation.ids import ClusterId
from remediation.intake.events import FailureEvent
from remediation.intake.health import Health
from remediation.intake.requests import RemediationRequest
from remediation.model import ActivityLogEntry, ClusterInfo, Status
from tests.support.otel import install_for_tests
from tests.support.world import APP_ID, CLUSTER, MSI_CLUSTER, SUB, World, expired_secret_message, make_world

ROTATE = {"aks-sp-remediator": "rotate"}
OTHER_APP = "22222222-3333-4444-8555-666666666666"
GONE_APP = "33333333-4444-4555-8666-777777777777"
# Monday 2026-11-23 12:00 UTC is the fakes' start: a daily window from 13:00 for four hours opens in one hour.
DAILY_13 = {"aksManagedNodeOSUpgradeSchedule": {"maintenanceWindow": {
    "schedule": {"daily": {"intervalDays": 1}}, "durationHours": 4, "startTime": "13:00", "utcOffset": "+00:00",
    "startDate": "2026-01-01"}}}
DAILY_11 = {"aksManagedNodeOSUpgradeSchedule": {"maintenanceWindow": {
    "schedule": {"daily": {"intervalDays": 1}}, "durationHours": 4, "startTime": "11:00", "utcOffset": "+00:00",
    "startDate": "2026-01-01"}}}


def _health(report, cluster: ClusterId):
    return next(c for c in report.clusters if c.cluster.key == cluster.key)


def _expiring_world(*, tags: dict[str, str] | None = None, maintenance: dict | None = None, days: float = 10,
                    settings: dict[str, str] | None = None) -> World:
    world = make_world(settings)
    world.directory.apps[APP_ID].passwords[0].end = world.clock() + timedelta(days=days)
    found = world.clusters.clusters[CLUSTER.key]
    found.tags.update(tags or {})
    found.maintenance.update(maintenance or {})
    return world


def _resets(world: World) -> int:
    return world.clusters.resets_started


def test_the_report_judges_every_cluster_and_writes_nothing(world: World) -> None:
    expiring = ClusterId(SUB, "rg-web", "aks-web")
    orphaned = ClusterId(SUB, "rg-web", "aks-orphaned")
    world.directory.create_app(OTHER_APP, secret="web", expires_in=timedelta(days=12))
    world.clusters.add(expiring, OTHER_APP, "web")
    world.clusters.add(orphaned, GONE_APP, "gone")

    report = world.services.health.report()

    assert {c.cluster.name: c.health for c in report.clusters} == {
        CLUSTER.name: Health.EXPIRED, MSI_CLUSTER.name: Health.MANAGED_IDENTITY,
        expiring.name: Health.EXPIRING, orphaned.name: Health.APPLICATION_MISSING}
    assert report.counts == {"healthy": 0, "expiring": 1, "expired": 1, "applicationMissing": 1,
                             "managedIdentity": 1, "unknown": 0}
    assert round(report.days_to_nearest_expiry or 0) == 12
    assert report.applications == 3
    assert _health(report, MSI_CLUSTER).recommendation is None
    assert "--enable-managed-identity" in (_health(report, expiring).recommendation or "")
    assert world.inventory.queries == 1 and world.store.rows == {} and world.queue.messages == []
    assert world.directory.writes == 0 and _resets(world) == 0


def test_an_expired_cluster_is_remediated_at_once_without_a_failed_write_and_only_once(world: World) -> None:
    assert world.activity_log.entries == []  # no write failed: nobody has touched the cluster yet

    report = world.services.health.check()

    action = _health(report, CLUSTER).action or {}
    assert action["code"] == "ExpiredNow" and action["remediationId"]
    world.drain()
    remediation = world.store.get(action["remediationId"])
    assert remediation.status is Status.SUCCEEDED and remediation.source == "scan"
    assert _resets(world) == 1

    # The next day's check, a restart of the worker, a second check the same minute: healthy, nothing done.
    world.clock.advance(days=1)
    again = world.services.health.check()
    world.services.health.check()
    world.drain()
    assert _health(again, CLUSTER).health is Health.HEALTHY and _health(again, CLUSTER).action is None
    assert _resets(world) == 1


def test_an_opted_out_expired_cluster_is_reported_and_left_alone() -> None:
    world = make_world()
    world.clusters.clusters[CLUSTER.key].tags["aks-sp-remediator"] = "off"

    report = world.services.health.check()
    world.drain()

    assert _health(report, CLUSTER).health is Health.EXPIRED
    assert (_health(report, CLUSTER).action or {})["code"] == "OptedOut"
    assert world.directory.writes == 0 and _resets(world) == 0 and world.store.rows == {}


def test_an_expiring_cluster_without_the_opt_in_tag_is_only_reported() -> None:
    world = _expiring_world(maintenance=DAILY_11)  # inside its window, but not opted in

    report = world.services.health.check()
    world.drain()

    assert _health(report, CLUSTER).health is Health.EXPIRING
    assert _health(report, CLUSTER).action is None
    assert world.directory.writes == 0 and _resets(world) == 0


def test_an_opted_in_expiring_cluster_is_rotated_inside_its_open_window() -> None:
    world = _expiring_world(tags=ROTATE, maintenance=DAILY_11)  # 11:00-15:00, and it is 12:00

    report = world.services.health.check()
    world.drain()

    action = _health(report, CLUSTER).action or {}
    assert action["code"] == "ExpiringSoon"
    remediation = world.store.get(action["remediationId"])
    assert remediation.status is Status.SUCCEEDED and remediation.source == "rotation"
    assert remediation.targets[0].not_after == "2026-11-23T15:00:00+00:00"
    assert _resets(world) == 1 and world.clusters.healthy_resets  # proactive: the old secret still worked

    # Tomorrow's check: the cluster holds the new secret; the old password is still there for a day, yet the
    # remediator knows which one the cluster holds and does not rotate again.
    world.clock.advance(days=1)
    again = world.services.health.check()
    world.drain()
    assert (_health(again, CLUSTER).action or {}).get("code") in (None, "NotExpiring")
    assert _resets(world) == 1


def test_outside_its_window_a_check_is_queued_for_the_opening_and_decided_then() -> None:
    world = _expiring_world(tags=ROTATE, maintenance=DAILY_13)  # opens at 13:00, an hour from now

    report = world.services.health.check()

    assert (_health(report, CLUSTER).action or {})["code"] == "OutsideMaintenanceWindow"
    assert _resets(world) == 0 and world.directory.writes == 0
    (queued,) = world.checks.messages
    assert queued.visible_at == world.clock.now + timedelta(hours=1)

    world.drain()  # the clock moves to 13:00 and the check is delivered

    (remediation,) = world.store.list_recent(limit=5)
    assert remediation.status is Status.SUCCEEDED and _resets(world) == 1
    started = remediation.targets[0].reset_started_at or ""
    assert "2026-11-23T13:00" <= started < "2026-11-23T17:00"


def test_a_cluster_without_any_window_is_never_rotated_ahead() -> None:
    world = _expiring_world(tags=ROTATE)

    report = world.services.health.check()
    world.drain()

    assert (_health(report, CLUSTER).action or {})["code"] == "NoMaintenanceWindow"
    assert _resets(world) == 0 and world.checks.messages == []


def test_the_configured_window_serves_clusters_without_a_maintenance_configuration() -> None:
    world = _expiring_world(tags=ROTATE, settings={"REMEDIATOR_ROTATION_WINDOW": "daily 11:30-12:30"})

    report = world.services.health.check()
    world.drain()

    assert (_health(report, CLUSTER).action or {})["code"] == "ExpiringSoon"
    assert _resets(world) == 1


def test_observe_mode_plans_the_rotation_and_writes_nothing() -> None:
    world = _expiring_world(tags=ROTATE, maintenance=DAILY_11, settings={"REMEDIATOR_MODE": "observe"})

    report = world.services.health.check()
    world.drain()

    assert (_health(report, CLUSTER).action or {})["code"] == "ExpiringSoon"
    assert world.directory.writes == 0 and _resets(world) == 0


def test_a_window_that_closes_before_the_reset_can_start_skips_it() -> None:
    world = _expiring_world(tags=ROTATE, maintenance=DAILY_11)
    world.services.health.check()
    world.clock.advance(hours=4)  # the rotation's chain is delayed past 15:00 (the queue was down)

    world.drain()

    (remediation,) = world.store.list_recent(limit=5)
    assert remediation.targets[0].code == "MaintenanceWindowClosed"
    assert _resets(world) == 0


# ----------------------------------------------------------------------------------------------- the fast path


def test_a_failure_event_on_an_expired_application_is_confirmed_by_graph_at_once(world: World) -> None:
    event = world.operate()
    assert event is not None
    world.activity_log.entries.clear()  # the Activity Log entry is minutes late

    lookup = world.detector.accept_event(event)
    assert lookup is not None
    (message,) = world.lookups.messages
    decision = world.detector.look_up(lookup)
    world.lookups.messages.remove(message)

    assert decision.code == "Confirmed" and decision.remediation is not None
    assert world.lookups.messages == []  # nothing left to wait for
    world.drain()
    assert _resets(world) == 1

    # The entry arrives later and the sweep reads it: the same incident, a duplicate.
    world.clock.advance(minutes=5)
    world.activity_log.entries.append(_entry_for(world, event))
    sweep = world.detector.sweep(SUB)
    assert [d.code for d in sweep.decisions] == ["DuplicateIncident"]
    world.drain()
    assert _resets(world) == 1


def test_a_failure_event_on_an_application_with_a_valid_password_waits_for_the_activity_log() -> None:
    world = make_world()
    world.directory.apps[APP_ID].passwords[0].end = world.clock() + timedelta(days=100)
    world.clusters.clusters[CLUSTER.key].held_secret = "someone-rotated-it"  # the cluster's secret is wrong
    event = world.operate()
    assert event is not None
    world.activity_log.entries.clear()

    lookup = world.detector.accept_event(event)
    assert lookup is not None
    decision = world.detector.look_up(lookup)

    assert decision.code == "Waiting" and decision.remediation is None
    assert _resets(world) == 0


def _entry_for(world: World, event: FailureEvent) -> ActivityLogEntry:
    return ActivityLogEntry(event.correlation_id, str(event.cluster), event.operation_name, "EndRequest", "Failed",
                            event.event_time, expired_secret_message(APP_ID))


# ----------------------------------------------------------------------------------------------- telemetry


def test_a_health_check_and_the_remediation_it_starts_show_in_metrics_and_outcome_events(world: World) -> None:
    with install_for_tests() as otel:
        world.services.health.check()
        gauge = {p.attributes["health"]: p.value for p in otel.points("remediator.cluster.count")}
        assert gauge["expired"] == 1 and gauge["managed_identity"] == 1 and gauge["healthy"] == 0
        assert otel.points("remediator.credential.time_to_expiry") == []  # no cluster's secret still works
        world.drain()
        [finished] = otel.points("remediator.remediations")
        assert finished.attributes == {"outcome": "succeeded", "kind": "expired_secret", "dry_run": False,
                                       "mode": "remediate", "credential": "servicePrincipal"}
        [repair] = otel.points("remediator.failure_to_repair.duration")
        assert repair.count == 1 and repair.attributes["since"] == "accepted"  # no failed write to time it from

        world.clock.advance(days=1)
        world.services.health.check()
        gauge = {p.attributes["health"]: p.value for p in otel.points("remediator.cluster.count")}
        assert gauge["expired"] == 0 and gauge["healthy"] == 1
        [days] = otel.points("remediator.credential.time_to_expiry")
        assert 178 * 86400 < days.value < 180 * 86400  # the new secret's lifetime, less the day
    assert world.outcomes.types() == ["Remediator.Cluster.CredentialExpired", "Remediator.Remediation.Succeeded"]
    expired, succeeded = world.outcomes.published
    assert expired.subject == succeeded.subject == str(CLUSTER)
    assert expired.data["remediationId"] == succeeded.data["remediationId"]


def test_an_outcome_topic_that_refuses_does_not_fail_the_remediation(world: World) -> None:
    world.outcomes.refuse = PermanentError("refused (401)", code="EventGridUnauthorized")
    report = world.services.health.check()
    world.drain()
    remediation = world.store.get((_health(report, CLUSTER).action or {})["remediationId"])
    assert remediation.status is Status.SUCCEEDED and world.outcomes.published == []


def test_a_fast_path_remediation_times_its_repair_from_the_failure(world: World) -> None:
    event = world.operate()
    assert event is not None
    world.activity_log.entries.clear()
    world.clock.advance(minutes=2)  # Event Grid delivered it two minutes later
    with install_for_tests() as otel:
        lookup = world.detector.accept_event(event)
        assert lookup is not None
        world.drain()
        [repair] = otel.points("remediator.failure_to_repair.duration")
        assert repair.attributes["since"] == "failure" and repair.sum >= 120


def test_an_application_graph_kept_throttling_is_unknown_and_left_alone(world: World) -> None:
    world.directory.throttled.add(APP_ID)

    report = world.services.health.check()

    assert _health(report, CLUSTER).health is Health.UNKNOWN and _health(report, CLUSTER).action is None
    assert report.counts["unknown"] == 1 and report.counts["managedIdentity"] == 1
    assert world.store.rows == {} and world.directory.writes == 0


def test_a_worker_that_dies_before_publishing_an_outcome_leaves_it_to_the_messages_retry(world: World) -> None:
    world.services.remediations.request(RemediationRequest(CLUSTER, reason="before the release"))
    world.faults.die_at("outcomes.publish")
    with install_for_tests() as otel:
        world.drain()
        [finished] = otel.points("remediator.remediations")
        assert finished.value == 1  # counted once, though told twice
    assert world.faults.crashes == 1
    assert world.outcomes.types() == ["Remediator.Remediation.Succeeded"]


def test_the_report_a_reader_asks_for_is_kept_for_minutes_and_says_how_old_it_is(world: World) -> None:
    first = world.services.health.recent_report()
    assert first.age == timedelta(0) and world.inventory.queries == 1
    world.clock.advance(minutes=3)
    again = world.services.health.recent_report()
    assert again.report is first.report and again.age == timedelta(minutes=3)
    assert world.inventory.queries == 1  # no second scan of the fleet's budget
    world.clock.advance(minutes=3)  # older than REPORT_MAX_AGE: read again
    fresh = world.services.health.recent_report()
    assert fresh.report.at == world.clock() and fresh.age == timedelta(0) and world.inventory.queries == 2
    world.clock.advance(minutes=1)
    world.services.health.check()  # the daily check reads the fleet afresh, and keeps what it read
    assert world.inventory.queries == 3 and world.services.health.recent_report().age == timedelta(0)


def test_a_cluster_whose_name_the_remediator_refuses_is_left_out_of_the_report_not_the_report(world: World) -> None:
    # ARM allows Unicode letters in a resource group's name; the remediator takes ASCII names only, by design.
    odd = f"/subscriptions/{SUB}/resourceGroups/rg-caf\u00e9/providers/Microsoft.ContainerService/managedClusters/aks"
    world.inventory.also_listed.append(ClusterInfo(odd, "aks", "westeurope", APP_ID, "Succeeded"))
    report = world.services.health.report()
    assert {c.cluster.name for c in report.clusters} == {CLUSTER.name, MSI_CLUSTER.name}
