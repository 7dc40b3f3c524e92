"""The API's token check when Entra ID's key endpoint is slow or down, against the sandbox's Entra ID stand-in.

    hanging   8 requests at once while every fetch of the keys outlasts the client's timeout (1 s): how many
              fetches, and how long until all 8 have their answer (a 503 each)
    slow      8 requests at once while the key endpoint takes 2 s to answer (within the timeout)
    outage    the keys fetched, the set an hour old, then the key endpoint failing: 200 requests answered from the
              last good set, and how many fetches they caused

`python benchmarks/signing_keys.py [hanging|slow|outage ...]` prints the figures; tests/test_api_auth.py asserts
the same structure (fetch counts), not the times.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from remediation.adapters.entra_tokens import KEY_REFRESH_SECONDS, EntraTokenValidator, SigningKeys  # noqa: E402
from remediation.errors import RemediationError  # noqa: E402
from sandbox import Sandbox  # noqa: E402

REQUESTS = 8


class _Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


def _validator(sandbox: Sandbox, *, timeout: float, clock: _Clock | None = None) -> EntraTokenValidator:
    keys = SigningKeys(f"{sandbox.endpoints['login']}/{sandbox.tenant_id}/discovery/v2.0/keys",
                       ca_bundle=sandbox.ca_path, timeout=timeout, clock=clock or time.monotonic)
    return EntraTokenValidator(authority_host=sandbox.endpoints["login"], tenant_id=sandbox.tenant_id,
                               audiences=(sandbox.api_client_id,), keys=keys)


def _fault(sandbox: Sandbox, **body: Any) -> None:
    requests.post(f"{sandbox.endpoints['admin']}/_sandbox/faults", verify=sandbox.ca_path,
                  json={"api": "login", "route": "GET keys", **body}).raise_for_status()


def _answer(validator: EntraTokenValidator, token: str) -> str:
    try:
        validator.validate(token)
    except RemediationError as err:
        return err.code
    return "accepted"


def concurrent(*, latency: float, timeout: float = 1.0) -> dict[str, Any]:
    with Sandbox() as sandbox:
        validator, token = _validator(sandbox, timeout=timeout), sandbox.api_token()
        _fault(sandbox, kind="latency", seconds=latency, count=100)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
            answers = list(pool.map(lambda _: _answer(validator, token), range(REQUESTS)))
        return {"requests": REQUESTS, "latency": latency, "timeout": timeout,
                "answers": {a: answers.count(a) for a in sorted(set(answers))},
                "keyFetches": sandbox.snapshot()["keyFetches"], "seconds": round(time.monotonic() - started, 2)}


def outage(requests_count: int = 200) -> dict[str, Any]:
    with Sandbox() as sandbox:
        clock = _Clock()
        validator, token = _validator(sandbox, timeout=10.0, clock=clock), sandbox.api_token()
        _answer(validator, token)
        _fault(sandbox, kind="error", status=503, count=10_000)
        clock.now += KEY_REFRESH_SECONDS + 1
        started = time.monotonic()
        answers = [_answer(validator, token) for _ in range(requests_count)]
        elapsed = time.monotonic() - started
        time.sleep(0.5)  # the background refresh has failed by now
        return {"requests": requests_count, "answers": {a: answers.count(a) for a in sorted(set(answers))},
                "keyFetches": sandbox.snapshot()["keyFetches"], "seconds": round(elapsed, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", default=["hanging", "slow", "outage"])
    args = parser.parse_args(argv)
    if "hanging" in args.which:
        print("hanging:", json.dumps(concurrent(latency=2.0)), flush=True)
    if "slow" in args.which:
        print("slow:", json.dumps(concurrent(latency=2.0, timeout=10.0)), flush=True)
    if "outage" in args.which:
        print("outage:", json.dumps(outage()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
