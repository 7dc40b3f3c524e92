"""AKS planned maintenance in the sandbox: the real SDK lists, gets, creates and deletes a cluster's
maintenanceConfigurations, with the bodies of the official examples; fleets and the admin API give clusters them;
a restart keeps them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import date, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.containerservice import ContainerServiceClient

from remediation.decide.maintenance import MaintenanceSchedule, choose_schedule
from sandbox import Sandbox
from sandbox.fleets import ScenarioError, build_fleet
from sandbox.state import REMEDIATOR_ARM_ACTIONS
from tests.support.wire import Wire, assert_arm_error, sample

LIST = "aks_MaintenanceConfigurationsList_MaintenanceWindow_2024-09-01.json"
LEGACY = "aks_MaintenanceConfigurationsList_2024-09-01.json"
CREATE = "aks_MaintenanceConfigurationsCreate_Update_MaintenanceWindow_2024-09-01.json"
READ = "Microsoft.ContainerService/managedClusters/maintenanceConfigurations/read"
NODE_OS, AUTO = "aksManagedNodeOSUpgradeSchedule", "aksManagedAutoUpgradeSchedule"


def examples(name: str) -> list[dict[str, Any]]:
    return sample(name)["responses"]["200"]["body"]["value"]


def world() -> dict[str, Any]:
    """rg1/clustername1 holds the List example's two configurations, rg1/aks-legacy the legacy one, rg1/aks-none
    none."""
    return {"resourceGroups": [{"name": "rg1"}],
            "applications": [{"displayName": "aks-sp", "passwords": [{"endInDays": 100}]}],
            "clusters": [
                {"resourceGroup": "rg1", "name": "clustername1", "application": "aks-sp",
                 "maintenanceConfigurations": {c["name"]: c["properties"] for c in examples(LIST)}},
                {"resourceGroup": "rg1", "name": "aks-legacy", "managedIdentity": True,
                 "maintenanceConfigurations": {"default": examples(LEGACY)[0]["properties"]}},
                {"resourceGroup": "rg1", "name": "aks-none", "managedIdentity": True}]}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(fleet=world()) as running:
        yield running


def aks(sandbox: Sandbox, identity: Any = None) -> ContainerServiceClient:
    return ContainerServiceClient(sandbox.credential(identity or sandbox.operator), sandbox.subscription_id,
                                  base_url=sandbox.endpoints["arm"], connection_verify=sandbox.ca_path)


def as_served(reference: dict[str, Any], sandbox: Sandbox) -> dict[str, Any]:
    """An example's configuration as the sandbox serves it: in the sandbox's subscription, with the type the legacy
    examples show."""
    zero = "00000000-0000-0000-0000-000000000000"
    return {**reference, "id": reference["id"].replace(zero, sandbox.subscription_id),
            "type": "Microsoft.ContainerService/managedClusters/maintenanceConfigurations"}


def config_path(sandbox: Sandbox, cluster: str, config: str = "") -> str:
    path = (f"/subscriptions/{sandbox.subscription_id}/resourceGroups/rg1/providers/Microsoft.ContainerService/"
            f"managedClusters/{cluster}/maintenanceConfigurations")
    return f"{path}/{config}" if config else path


def test_the_sdk_lists_and_gets_them_as_the_list_example_shows_them(sandbox: Sandbox) -> None:
    listed = list(aks(sandbox).maintenance_configurations.list_by_managed_cluster("rg1", "clustername1"))
    assert [c.as_dict() for c in listed] == [as_served(c, sandbox) for c in examples(LIST)]
    node_os = aks(sandbox).maintenance_configurations.get("rg1", "clustername1", NODE_OS)
    assert node_os.maintenance_window.schedule.daily.interval_days == 5  # the model reads the example's fields
    window = node_os.maintenance_window
    assert window.utc_offset == "-07:00" and window.start_date == date(2023, 1, 1)  # the SDK reads dates as dates
    # On the wire, exactly the example's body (plus its type), as the remediator's adapter will read it.
    raw = Wire(sandbox).arm("GET", config_path(sandbox, "clustername1", NODE_OS)).json()
    assert raw == as_served(examples(LIST)[0], sandbox)
    # The SDK's models are Mappings of the REST names: the schedule reads straight from them.
    name, schedule = choose_schedule({c.name: c for c in listed})
    assert name == NODE_OS and schedule.describe() == "every 5 days 13:30 for 10 h (UTC-07:00), from 2023-01-01"


def test_the_legacy_form_and_a_cluster_without_any(sandbox: Sandbox) -> None:
    legacy = list(aks(sandbox).maintenance_configurations.list_by_managed_cluster("rg1", "aks-legacy"))
    served = as_served(examples(LEGACY)[0], sandbox)
    assert [c.as_dict() for c in legacy] == [{**served, "id": served["id"].replace("clustername1", "aks-legacy")}]
    assert legacy[0].time_in_week[0].hour_slots == [1, 2]
    assert list(aks(sandbox).maintenance_configurations.list_by_managed_cluster("rg1", "aks-none")) == []
    assert Wire(sandbox).arm("GET", config_path(sandbox, "aks-none")).json() == {"value": []}


def test_a_configuration_or_cluster_that_is_not_there_is_404(sandbox: Sandbox) -> None:
    client = aks(sandbox)
    with pytest.raises(ResourceNotFoundError):
        client.maintenance_configurations.get("rg1", "clustername1", "default")
    with pytest.raises(ResourceNotFoundError):
        client.maintenance_configurations.get("rg1", "aks-none", NODE_OS)
    wire = Wire(sandbox)
    assert_arm_error(wire.arm("GET", config_path(sandbox, "aks-none", NODE_OS)), 404, "NotFound")
    assert_arm_error(wire.arm("GET", config_path(sandbox, "aks-nope")), 404, "ResourceNotFound")
    assert_arm_error(wire.arm("GET", config_path(sandbox, "aks-nope", NODE_OS)), 404, "ResourceNotFound")
    assert_arm_error(wire.arm("GET", config_path(sandbox, "clustername1"), api_version=None), 400,
                     "MissingApiVersionParameter")


def test_reading_them_takes_the_maintenance_configurations_read_action(sandbox: Sandbox) -> None:
    remediator = Wire(sandbox, sandbox.remediator)
    answer = remediator.arm("GET", config_path(sandbox, "clustername1"))
    if READ in REMEDIATOR_ARM_ACTIONS:  # infra/'s custom role grants it
        assert answer.status_code == 200, answer.text
    else:  # managedClusters/read does not cover a child resource's read
        assert_arm_error(answer, 403, "AuthorizationFailed")
        assert READ in answer.json()["error"]["message"]


def test_create_or_update_stores_the_request_and_delete_removes_it(sandbox: Sandbox) -> None:
    request = sample(CREATE)["parameters"]
    client, wire = aks(sandbox), Wire(sandbox)
    created = client.maintenance_configurations.create_or_update("rg1", "aks-none", AUTO, request["parameters"])
    # The example's own responses show a weekly schedule for a relativeMonthly request; a PUT answers what it stored.
    assert created.as_dict()["properties"] == request["parameters"]["properties"]
    assert created.maintenance_window.schedule.relative_monthly.week_index == "First"
    stored = wire.arm("GET", config_path(sandbox, "aks-none", AUTO)).json()
    response = sample(CREATE)["responses"]["201"]["body"]
    assert set(stored) == set(response) | {"type"} and stored["name"] == response["name"]
    again = wire.arm("PUT", config_path(sandbox, "aks-none", AUTO), json=request["parameters"])
    assert again.status_code == 200 and again.json() == stored
    assert wire.arm("PUT", config_path(sandbox, "aks-none", NODE_OS), json=request["parameters"]).status_code == 201
    counts = sandbox.snapshot()["responses"]["arm"]
    assert counts["PUT managedClusters/{name}/maintenanceConfigurations/{config}"] == {"201": 2, "200": 1}

    client.maintenance_configurations.delete("rg1", "aks-none", AUTO)
    assert wire.arm("DELETE", config_path(sandbox, "aks-none", AUTO)).status_code == 204  # gone already
    assert [c.name for c in client.maintenance_configurations.list_by_managed_cluster("rg1", "aks-none")] == [NODE_OS]
    assert wire.arm("DELETE", config_path(sandbox, "aks-none", NODE_OS)).status_code == 200
    assert wire.arm("GET", config_path(sandbox, "aks-none")).json() == {"value": []}


def test_a_configuration_without_a_start_date_starts_today(sandbox: Sandbox) -> None:
    window = {"schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Monday"}}, "durationHours": 4,
              "utcOffset": "+14:00", "startTime": "01:00"}
    wire = Wire(sandbox)
    answer = wire.arm("PUT", config_path(sandbox, "aks-none", "default"),
                      json={"properties": {"maintenanceWindow": window}})
    today_there = sandbox.state.now().astimezone(timezone(timedelta(hours=14))).date().isoformat()
    assert answer.status_code == 201 and answer.json()["properties"]["maintenanceWindow"]["startDate"] == today_there
    wire.arm("DELETE", config_path(sandbox, "aks-none", "default"))


@pytest.mark.parametrize(("config", "properties", "message"), [
    ("aksManagedFoo", {"maintenanceWindow": {}}, "Only 'default', 'aksManagedAutoUpgradeSchedule' and "
                                                 "'aksManagedNodeOSUpgradeSchedule' are allowed configNames"),
    ("default", {"maintenanceWindow": {"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 4,
                                       "startTime": "01:00"}}, "only supports a weekly schedule"),
    (NODE_OS, {"timeInWeek": [{"day": "Monday", "hourSlots": [1]}]}, "maintenanceWindow is invalid"),
    (NODE_OS, {"maintenanceWindow": {"schedule": {"daily": {"intervalDays": 8}}, "durationHours": 4,
                                     "startTime": "01:00"}}, "intervalDays"),
    (NODE_OS, {"maintenanceWindow": {"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 3,
                                     "startTime": "01:00"}}, "durationHours"),
    (NODE_OS, {"maintenanceWindow": {"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 4,
                                     "startTime": "1:00"}}, "startTime"),
    ("default", {"timeInWeek": [{"day": "Monday", "hourSlots": [24]}]}, "timeInWeek"),
])
def test_what_aks_refuses_is_a_400(sandbox: Sandbox, config: str, properties: dict[str, Any], message: str) -> None:
    answer = Wire(sandbox).arm("PUT", config_path(sandbox, "aks-none", config), json={"properties": properties})
    assert_arm_error(answer, 400, "InvalidParameter")
    assert message in answer.json()["error"]["message"]
    with pytest.raises(HttpResponseError):
        aks(sandbox).maintenance_configurations.create_or_update("rg1", "aks-none", config, {"properties": properties})


# ---------------------------------------------------------------------- fleets, the admin API, restarts


def test_the_admin_api_gives_a_new_cluster_its_configurations(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    body = {"resourceGroup": "rg1", "name": "aks-admin", "managedIdentity": True,
            "maintenanceConfigurations": {NODE_OS: sample(CREATE)["parameters"]["parameters"]["properties"]}}
    assert wire.admin("clusters", body).status_code == 201
    _, schedule = choose_schedule({c.name: c for c in aks(sandbox).maintenance_configurations.list_by_managed_cluster(
        "rg1", "aks-admin")})
    assert schedule.describe().startswith("every 3 months on the first Monday 08:30 for 10 h (UTC+05:30)")
    refused = wire.admin("clusters", {**body, "name": "aks-refused", "maintenanceConfigurations": {"weekly": {}}})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "InvalidRequest"
    assert refused.json()["error"]["message"].startswith("maintenanceConfigurations.weekly: Only 'default'")
    assert "aks-refused" not in {c["name"] for c in sandbox.snapshot()["clusters"]}  # nothing half made
    for value in (None, 0, True, "", [], [{}], {"": ""}, {"default": None}, {"default": []},
                  {"default": {"maintenanceWindow": {"schedule": []}}}, {"default": {"timeInWeek": [1]}},
                  {"default": {"timeInWeek": [], "notAllowedTime": "x"}}):
        answer = wire.admin("clusters", {**body, "name": "aks-odd", "maintenanceConfigurations": value})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "InvalidRequest", (value, answer.text)


def test_a_scenario_document_that_gives_a_bad_configuration_says_where() -> None:
    document = world()
    document["clusters"][1]["maintenanceConfigurations"] = {"default": {"timeInWeek": [{"day": "Someday"}]}}
    with pytest.raises(ScenarioError, match=r"^clusters\[1\]: maintenanceConfigurations.default: .*timeInWeek"):
        build_fleet(document)


def test_a_restart_keeps_them(tmp_path: Path) -> None:
    first = Sandbox(fleet=world(), state_dir=tmp_path).start()
    try:
        window = copy.deepcopy(sample(CREATE)["parameters"]["parameters"])
        Wire(first).arm("PUT", config_path(first, "aks-none", AUTO), json=window)
        before = {c["name"]: Wire(first).arm("GET", config_path(first, c["name"])).json()
                  for c in first.snapshot()["clusters"]}
    finally:
        first.stop()
    second = Sandbox(state_dir=tmp_path).start()
    try:
        after = {c["name"]: Wire(second).arm("GET", config_path(second, c["name"])).json()
                 for c in second.snapshot()["clusters"]}
        assert after == before and [c["name"] for c in after["aks-none"]["value"]] == [AUTO]
        properties = after["clustername1"]["value"][0]["properties"]
        assert isinstance(MaintenanceSchedule.from_properties(properties), MaintenanceSchedule)
    finally:
        second.stop()
