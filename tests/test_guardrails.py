"""The limits operators put around the remediator (remediation/decide/guardrails.py): first the pure rules (where a
scope refuses a cluster, where two scopes meet, the control tags, the circuit breaker's count), then each limit as a
fleet over stateful fakes meets it (tests/support/world.py's `fleet`): every refusal a recorded decision with its reason
code, observe mode, the fleet's reset cap, the circuit breaker. The decision chain's order of checks is
tests/test_reconcile.py's; the rotation's fan-out skipping what the limits refuse is tests/test_rotation.py's.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remediation.decide.guardrails import ANY, ControlTag, Guardrails, ProactiveRotation, Scope, names
from remediation.ids import ClusterId
from remediation.intake.requests import RemediationRequest
from remediation.model import Status
from tests.support.world import (
    CLUSTER,
    DENIED_GROUP,
    ELSEWHERE,
    MSI_CLUSTER,
    OPTED_OUT,
    OPTED_OUT_GROUP,
    SHARED,
    fleet,
    make_world,
    rotations,
)

# Two subscriptions of their own: the scopes below name them, never the world's.
SUB = "00000000-0000-0000-0000-00000000000a"
OTHER_SUB = "00000000-0000-0000-0000-00000000000b"
IN_SUB = ClusterId(SUB, "rg-payments", "aks-payments")


# ---------------------------------------------------------------- where a scope acts


def test_an_empty_scope_refuses_nothing() -> None:
    assert Scope().refusal(IN_SUB) is None and Scope().refusal_at(OTHER_SUB, "any-group") is None


def test_a_subscription_allow_list_refuses_every_other_subscription() -> None:
    scope = Scope(subscriptions=frozenset({SUB}))
    assert scope.refusal(IN_SUB) is None
    code, message = scope.refusal_at(OTHER_SUB, "rg-payments")
    assert code == "OutOfScope" and OTHER_SUB in message and "REMEDIATOR_SUBSCRIPTION_IDS" in message


@pytest.mark.parametrize(("scope", "code", "setting"), [
    (Scope(subscriptions=frozenset({SUB}), deny_subscriptions=frozenset({SUB})), "DeniedSubscription",
     "REMEDIATOR_DENY_SUBSCRIPTION_IDS"),
    (Scope(resource_groups=frozenset({"rg-payments"}), deny_resource_groups=frozenset({"rg-payments"})),
     "DeniedResourceGroup", "REMEDIATOR_DENY_RESOURCE_GROUPS"),
    (Scope(deny_subscriptions=frozenset({SUB}), deny_resource_groups=frozenset({"rg-payments"})),
     "DeniedSubscription", "REMEDIATOR_DENY_SUBSCRIPTION_IDS"),  # the subscription is looked at first
], ids=["subscription", "resource-group", "subscription-before-group"])
def test_a_deny_list_wins_over_an_allow_list(scope: Scope, code: str, setting: str) -> None:
    refused = scope.refusal(IN_SUB)
    assert refused is not None and refused[0] == code and setting in refused[1]


def test_a_resource_group_entry_is_a_name_in_any_subscription_or_one_in_a_named_subscription() -> None:
    for entry in ("rg-payments", f"{SUB}/rg-payments"):
        assert Scope(resource_groups=frozenset({entry})).refusal(IN_SUB) is None
        assert Scope(deny_resource_groups=frozenset({entry})).refusal(IN_SUB)[0] == "DeniedResourceGroup"
    elsewhere = f"{OTHER_SUB}/rg-payments"  # the same name in another subscription is another group
    assert Scope(deny_resource_groups=frozenset({elsewhere})).refusal(IN_SUB) is None
    code, message = Scope(resource_groups=frozenset({elsewhere})).refusal(IN_SUB)
    assert code == "OutOfScope" and "REMEDIATOR_ALLOW_RESOURCE_GROUPS" in message


def test_names_are_compared_case_insensitively_as_arm_compares_them() -> None:
    # Microsoft Learn, "Naming rules and restrictions for Azure resources": resource and resource group names are
    # case-insensitive. The settings are lower-cased once (`names`); the cluster's id keeps ARM's spelling.
    assert names(" RG-Payments, rg-orders ,,") == frozenset({"rg-payments", "rg-orders"}) and names("") == frozenset()
    shouting = ClusterId(SUB.upper(), "RG-PAYMENTS", "aks-payments")
    assert Scope(subscriptions=names(SUB.upper())).refusal(shouting) is None
    assert Scope(deny_resource_groups=names("rg-payments")).refusal(shouting)[0] == "DeniedResourceGroup"
    assert Scope(deny_resource_groups=names(f"{SUB}/Rg-Payments")).refusal(shouting)[0] == "DeniedResourceGroup"


# ---------------------------------------------------------------- where two scopes meet

# preflight's OverlappingRemediator (remediation/cli/preflight.py): two remediators whose scopes meet would both act on
# one cluster, so a second deployment is refused unless the scopes are disjoint.


@pytest.mark.parametrize(("mine", "theirs", "meet"), [
    (Scope(), Scope(), (ANY, ANY)),
    (Scope(resource_groups=frozenset({"rg-a"})), Scope(), (ANY, "rg-a")),
    (Scope(subscriptions=frozenset({SUB})), Scope(), (SUB, ANY)),
    (Scope(resource_groups=frozenset({f"{SUB}/rg-a"})), Scope(resource_groups=frozenset({"rg-a"})), (SUB, "rg-a")),
    (Scope(subscriptions=frozenset({SUB})), Scope(subscriptions=frozenset({OTHER_SUB})), None),
    (Scope(subscriptions=frozenset({SUB})), Scope(deny_subscriptions=frozenset({SUB})), None),
    (Scope(resource_groups=frozenset({"rg-a"})), Scope(deny_resource_groups=frozenset({"rg-a"})), None),
    (Scope(resource_groups=frozenset({f"{SUB}/rg-a"})), Scope(resource_groups=frozenset({f"{OTHER_SUB}/rg-a"})), None),
], ids=["both-everywhere", "one-group-in-any-subscription", "one-subscription", "a-named-group", "two-subscriptions",
        "denied-there", "the-only-group-denied", "same-name-other-subscription"])
def test_two_scopes_meet_at_a_place_both_may_act_or_nowhere(mine: Scope, theirs: Scope, meet) -> None:
    assert mine.overlap(theirs) == meet
    assert (theirs.overlap(mine) is None) == (meet is None)


_GROUPS = st.sampled_from(["rg-a", "rg-b", "rg-c"])
_SUBS = st.sampled_from([SUB, OTHER_SUB])


@st.composite
def scopes(draw: st.DrawFn) -> Scope:
    entries = st.one_of(_GROUPS, st.builds(lambda s, g: f"{s}/{g}", _SUBS, _GROUPS))
    return Scope(subscriptions=frozenset(draw(st.sets(_SUBS, max_size=2))),
                 deny_subscriptions=frozenset(draw(st.sets(_SUBS, max_size=1))),
                 resource_groups=frozenset(draw(st.sets(entries, max_size=3))),
                 deny_resource_groups=frozenset(draw(st.sets(entries, max_size=2))))


@given(scopes(), scopes())
@settings(suppress_health_check=[HealthCheck.too_slow])  # drawing scopes is slow on a loaded CI machine, not wrong
def test_overlap_finds_a_shared_place_exactly_when_one_exists(mine: Scope, theirs: Scope):
    # Brute force over every named subscription and group, plus one of each that no list names ("-other").
    subscriptions, groups = [SUB, OTHER_SUB, "00000000-0000-0000-0000-0000000000ff"], ["rg-a", "rg-b", "rg-c", "rg-x"]
    shared = [(s, g) for s in subscriptions for g in groups
              if mine.refusal_at(s, g) is None and theirs.refusal_at(s, g) is None]
    found = mine.overlap(theirs)
    assert (found is not None) == bool(shared), (found, shared)
    if found is not None:
        sub, group = found
        probe_sub = subscriptions[-1] if sub == ANY else sub
        probe_group = groups[-1] if group == ANY else group
        assert mine.refusal_at(probe_sub, probe_group) is None and theirs.refusal_at(probe_sub, probe_group) is None
    assert (mine.overlap(theirs) is None) == (theirs.overlap(mine) is None)


# ---------------------------------------------------------------- control tags

# Azure's tag names are case-insensitive (Microsoft Learn, "Use tags to organize your Azure resources": "Tag names are
# case-insensitive for operations"); the remediator reads the value case-insensitively too, so "Off" opts out as "off"
# does.


def test_the_opt_out_and_the_opt_in_are_one_key_with_two_values() -> None:
    opt_out, opt_in = ControlTag(), ProactiveRotation().opt_in
    assert (str(opt_out), str(opt_in)) == ("aks-sp-remediator=off", "aks-sp-remediator=rotate")
    assert opt_out.on({"Aks-SP-Remediator": "OFF"}) and opt_in.on({"AKS-SP-REMEDIATOR": "Rotate"})
    assert not opt_out.on({"aks-sp-remediator": "rotate"}) and not opt_in.on({"aks-sp-remediator": "off"})
    assert not opt_out.on(None) and not opt_out.on({}) and not opt_out.on({"aks-sp-remediator-x": "off"})


def test_a_tag_setting_is_key_equals_value_with_the_value_taken_whole() -> None:
    assert ControlTag.parse(" team = Payments=1 ") == ControlTag("team", "Payments=1")  # split at the first "="


@pytest.mark.parametrize("raw", ["", "off", "=off", "aks-sp-remediator=", " = "])
def test_a_tag_setting_without_a_key_or_a_value_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="a tag is key=value"):
        ControlTag.parse(raw)


# ---------------------------------------------------------------- the circuit breaker's count


def test_the_breaker_opens_at_its_count_of_failures_and_zero_turns_it_off() -> None:
    guardrails = Guardrails(breaker_failures=3)
    assert not guardrails.breaker_open(["a", "b"]) and guardrails.breaker_open(["a", "b", "c"])
    assert guardrails.breaker_open(at for at in ("a", "b", "c"))  # any iterable of failure times, read once
    assert not Guardrails(breaker_failures=0).breaker_open(range(100))


# ---------------------------------------------------------------- the limits, as a fleet meets them


def test_observe_mode_decides_and_plans_but_writes_nothing() -> None:
    world = fleet(REMEDIATOR_MODE="observe")
    world.detector.accept_event(world.operate(CLUSTER))
    world.remediations.request(RemediationRequest(SHARED[0], force=True))
    world.drain()
    assert world.directory.writes == 0 and world.vault.secrets == {} and world.clusters.resets_started == 0
    plans = rotations(world)
    assert plans and all(r.status is Status.PLANNED and r.mode == "observe" for r in plans)
    assert any("az aks update-credentials" in line and "aks-orders" in line for line in plans[0].plan)
    assert world.store.claims == {}
    assert "observe mode" in world.incidents.decisions[0]["message"]


def test_the_reset_cap_holds_across_the_fleet() -> None:
    world = fleet(REMEDIATOR_MAX_RESETS_PER_HOUR="2")
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    starts = sorted(world.incidents.reset_starts)
    assert len(starts) == 3 and world.clusters.resets_started == 3
    for index, start in enumerate(starts):
        in_window = [s for s in starts if start <= s < start + timedelta(hours=1)]
        assert len(in_window) <= 2, (index, starts)
    [rotation] = rotations(world)
    assert rotation.status is Status.SUCCEEDED


def test_the_circuit_breaker_stops_a_cluster_that_keeps_failing_until_a_person_looks() -> None:
    world = make_world({"REMEDIATOR_BREAKER_FAILURES": "2"})
    world.clusters.fail_resets = 10**6  # every reset fails inside AKS
    for _ in range(2):
        world.remediations.request(RemediationRequest(CLUSTER, force=True))
        world.drain()
    assert [r.status for r in rotations(world)] == [Status.FAILED, Status.FAILED]
    refused = world.remediations.request(RemediationRequest(CLUSTER, force=True))
    assert refused.code == "CircuitOpen" and "a person must look" in refused.verdict.message
    event = world.operate(CLUSTER)
    world.detector.accept_event(event)
    world.drain()
    assert world.incidents.decisions[-1]["code"] == "CircuitOpen"
    world.clock.advance(hours=25)  # the window passes: it may be tried again
    assert world.remediations.request(RemediationRequest(CLUSTER, force=True)).code == "Requested"


def test_every_refusal_is_a_recorded_decision_with_its_reason_code() -> None:
    world = fleet()
    for cluster in (OPTED_OUT, OPTED_OUT_GROUP, DENIED_GROUP, ELSEWHERE, MSI_CLUSTER):
        world.remediations.request(RemediationRequest(cluster))
    assert [d["code"] for d in world.incidents.decisions] == ["OptedOut", "OptedOut", "DeniedResourceGroup",
                                                              "OutOfScope", "ManagedIdentityCluster"]
    assert world.clusters.resets_started == 0 and world.directory.writes == 0
