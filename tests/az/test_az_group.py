"""`az group show/list/update --tags`: ARM's resource groups (GET, list, and the PUT `az group update` sends back),
with the tags kept where the remediator reads them."""

from __future__ import annotations

from tests.support.az import Az


def test_group_update_sets_tags_that_show_list_and_the_state_hold(az: Az) -> None:
    shown = az("group", "show", "-n", "rg-platform")
    assert shown["location"] == "westeurope" and shown["properties"]["provisioningState"] == "Succeeded"
    updated = az("group", "update", "-n", "rg-platform", "--tags", "aks-sp-remediator=off", "owner=platform")
    assert updated["tags"] == {"aks-sp-remediator": "off", "owner": "platform"}
    assert az("group", "show", "-n", "rg-platform")["tags"] == updated["tags"]
    listed = {g["name"]: g for g in az("group", "list")}
    assert {"rg-platform", "rg-payments"} <= set(listed) and listed["rg-platform"]["tags"] == updated["tags"]
    [group] = [g for g in az.sandbox.snapshot()["resourceGroups"] if g["name"] == "rg-platform"]
    assert group["tags"] == updated["tags"]


def test_a_group_that_does_not_exist_is_not_found(az: Az) -> None:
    missing = az.fails("group", "show", "-n", "rg-nowhere")
    assert "ResourceGroupNotFound" in missing.stderr
