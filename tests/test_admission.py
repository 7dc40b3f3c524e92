"""Admission (remediation/run/admission.py), the one stage that acts on a decision: here, what it keeps in observe
mode. A whole remediation through admission is tests/test_service.py's; the claim race is tests/test_properties.py's.
"""

from __future__ import annotations

from remediation.model import Status
from remediation.record import TargetStatus, observe_plan_id
from tests.support.world import (
    APP_ID,
    CLUSTER,
    DENIED_GROUP,
    ELSEWHERE,
    OPTED_OUT,
    OPTED_OUT_GROUP,
    SHARED,
    World,
    fleet,
)


def _every_cluster_fails_then_the_sweep(world: World) -> None:
    for cluster in (CLUSTER, *SHARED, OPTED_OUT, OPTED_OUT_GROUP, DENIED_GROUP):
        event = world.operate(cluster)
        assert event is not None
        world.detector.accept_event(event)
    world.drain()


def test_observe_mode_keeps_one_current_plan_per_application_updated_in_place_by_the_next_check() -> None:
    world = fleet(REMEDIATOR_MODE="observe")

    _every_cluster_fails_then_the_sweep(world)  # a day's failures: one per cluster of the application
    [first] = world.store.all()
    world.clock.advance(days=1)
    _every_cluster_fails_then_the_sweep(world)  # the next day's, on the same clusters

    [plan] = world.store.all()  # not one plan per cluster and per day: one per application
    assert plan.id == first.id == observe_plan_id(APP_ID)
    assert plan.status is Status.PLANNED and plan.observe and plan.generation > first.generation
    assert plan.created_at == first.created_at and plan.updated_at > first.updated_at
    # The clusters a rotation would touch now: those in scope; the opted-out and denied ones are named as skipped.
    touched = {t.cluster for t in plan.targets if t.status is not TargetStatus.SKIPPED}
    skipped = {t.cluster: t.code for t in plan.targets if t.status is TargetStatus.SKIPPED}
    assert touched == {CLUSTER, *SHARED}, plan.targets
    assert set(skipped) == {OPTED_OUT, OPTED_OUT_GROUP, DENIED_GROUP} and all(skipped.values()), skipped
    assert ELSEWHERE not in {t.cluster for t in plan.targets}  # a subscription outside the scope is not read
    assert world.directory.writes == 0 and world.clusters.resets_started == 0 and world.vault.stored_key_ids() == set()


def test_an_operators_dry_run_in_observe_mode_is_its_own_record_beside_the_applications_plan() -> None:
    from remediation.intake.requests import RemediationRequest

    world = fleet(REMEDIATOR_MODE="observe")
    _every_cluster_fails_then_the_sweep(world)
    asked = world.remediations.request(RemediationRequest(CLUSTER, dry_run=True))
    world.drain()

    assert asked.remediation is not None and asked.remediation.id != observe_plan_id(APP_ID)
    assert {r.id for r in world.store.all()} == {observe_plan_id(APP_ID), asked.remediation.id}
