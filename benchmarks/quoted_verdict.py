"""A healthy cluster's write refused over a tag that quotes Entra ID's verdict (issue 17, part 2), over HTTP against the
sandbox with the function app in its own worker process.

    quoted   the `healthy` world: aks-payments' password is valid for another 200 days (Graph), and the cluster holds
             it. Someone allowed to write the cluster's tags (here the operator, with ARM's own GET and PUT) sets a tag
             whose value quotes AADSTS7000215 for the cluster's own application: once Entra ID's answer as it reads
             ("bare"), once dressed in AKS's own service-principal error ("dressed"). Both are over 256 characters,
             so ARM refuses each write with 400 InvalidTagValueLength, quoting the value; the failed write lands in
             the Activity Log and reaches the remediator as an Event Grid event, as any failed write does. Before
             issue 17 the bare quote was read as the cluster's secret refused: the cluster was reset (its nodes
             re-imaged) and a password minted.

`python benchmarks/quoted_verdict.py` prints the figures; tests/test_quoted_verdict_scenario.py asserts them.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.fleet import ADD_PASSWORD, FAST, Fleet, served  # noqa: E402
from benchmarks.scenarios import _call  # noqa: E402
from sandbox import Sandbox  # noqa: E402
from sandbox.azurite import Azurite  # noqa: E402

ARM_API = "2024-09-01"
TAG = "owner-note"


def verdicts(app_id: str) -> dict[str, str]:
    """The tag values: Entra ID's answer for a wrong secret of the cluster's own application, in its current
    wording (with its trace lines, as a log would have them), bare and in AKS's service-principal error."""
    entra = (f"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the "
             f"client secret value, not the client secret ID, for a secret added to app '{app_id}'. Trace ID: "
             f"{uuid.uuid4()} Correlation ID: {uuid.uuid4()} Timestamp: 2026-11-23 12:00:00Z")
    body = json.dumps({"error": "invalid_client", "error_description": entra, "error_codes": [7000215]})
    return {"bare": entra,
            "dressed": "The credentials in ServicePrincipalProfile were invalid. Please see https://aka.ms/aks-sp-help"
                       f" for more details. (Details: adal: Refresh request failed. Status Code = '401'. Response"
                       f" body: {body})"}


def tag_write(world: Fleet, cluster_id: str, value: str) -> dict[str, Any]:
    """The operator reads the cluster and writes it back with one more tag, as `az resource tag` would: ARM's answer
    and the correlation id the write was logged under."""
    token = world.sandbox.credential(world.sandbox.operator).get_token("https://management.azure.com/.default").token
    url = f"{world.sandbox.endpoints['arm']}{cluster_id}?api-version={ARM_API}"
    headers = {"Authorization": f"Bearer {token}"}
    status, payload = _call("GET", url, None, headers=headers, ca=world.sandbox.ca_path)
    if status != 200:
        raise RuntimeError(f"operator GET {cluster_id}: {status} {payload[:300]!r}")
    body = json.loads(payload)
    body["tags"] = {**(body.get("tags") or {}), TAG: value}
    correlation = str(uuid.uuid4())
    status, payload = _call("PUT", url, body, headers={**headers, "x-ms-correlation-request-id": correlation},
                            ca=world.sandbox.ca_path)
    error = (json.loads(payload or b"null") or {}).get("error") or {}
    return {"status": status, "code": error.get("code"), "quotesTheValue": value in error.get("message", ""),
            "valueLength": len(value), "correlationId": correlation}


def decision_of(world: Fleet, correlation_id: str) -> dict[str, Any] | None:
    return next((d for d in (world.api("GET", "decisions?limit=200")[1] or {}).get("value", [])
                 if d.get("correlationId") == correlation_id and d["code"] != "Waiting"), None)


def quoted(*, timeout: float = 180) -> dict[str, Any]:
    with Azurite() as azurite, Sandbox("healthy") as sandbox, served(sandbox, azurite, FAST) as world:
        cluster = next(c for c in world.clusters() if c["name"] == "aks-payments")
        attacks = {}
        # One after the other: failures of one cluster that arrive while its lookup is pending join that lookup
        # (one decision, on the newest), and each attack should get a decision of its own.
        for name, value in verdicts(cluster["clientId"]).items():
            attacks[name] = attack = tag_write(world, cluster["id"], value)
            world.wait(lambda a=attack: decision_of(world, a["correlationId"]) is not None, timeout,
                       f"the remediator's decision on the {name} tag write")
            decision = decision_of(world, attack["correlationId"]) or {}
            attack["decision"] = {key: decision.get(key) for key in ("act", "code", "kind", "message")}
        time.sleep(3)  # anything started would have written by now
        snapshot = world.snapshot()
        after = next(c for c in snapshot["clusters"] if c["name"] == "aks-payments")
        logged = [json.loads(e["properties"]["statusMessage"])["error"]["code"] for e in sandbox.state.activity_log
                  if e["correlationId"] in {a["correlationId"] for a in attacks.values()}
                  and e["status"]["value"] == "Failed"]
        return {
            "seconds": round(time.monotonic() - world.started, 1),
            "attacks": attacks,
            "activityLogFailures": logged,
            "graphPasswordValidDays": max(
                ((datetime.fromisoformat(p["endDateTime"].replace("Z", "+00:00")) - sandbox.state.now()).days
                 for a in snapshot["applications"] if a["appId"] == cluster["clientId"]
                 for p in a["passwords"] if p["validNow"]), default=None),
            "resets": after["writes"]["reset"],
            "addPassword": snapshot["requests"].get("graph", {}).get(ADD_PASSWORD, 0),
            "remediations": len(world.remediations()),
            "secretValidNow": after["secretValidNow"],
            "sameClientId": after["clientId"] == cluster["clientId"],
        }


def main() -> int:
    print("quoted verdict:", json.dumps(quoted()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
