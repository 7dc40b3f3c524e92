"""The path of one Event Grid failure to the reset call, module by module.

Over the stateful fakes (the tests' world, with the app's use cases built over it by `bootstrap`), one cluster's
failed write arrives at `function_app.on_resource_failure` as the azure-functions library decodes it; the lookup
and work messages it leads to are handed to the app's queue triggers, decoded the same way, the clock moving to
each message's visible time; the path ends at the first call of the AKS port's
`begin_reset_service_principal_profile`. `sys.setprofile` sees every Python call on the way. Counted, for the
product's modules only (`function_app` and `remediation.*`):

- modules: distinct product modules entered;
- edges: distinct caller-module -> callee-module pairs (the caller is the nearest product frame on the stack);
- hops: calls from one product module into another (every crossing, not only the first);
- calls: product function calls in all.

Run from the repository root (`python benchmarks/path.py [--edges]`); it runs in any checkout of the project,
so the same file measures the code before and after a change (copy it into a worktree of the older commit).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections import Counter
from datetime import UTC
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import azure.functions as func  # noqa: E402

try:  # where the tests' world and the host's converters live, in either layout
    from tests.support.world import CLUSTER, make_world
except ImportError:
    from tests.conftest import CLUSTER, make_world  # type: ignore[no-redef]
try:
    from sandbox.functions_host import event_grid_input, queue_input
except ImportError:
    from sandbox.runner import event_grid_input, queue_input  # type: ignore[no-redef]

RESET_CALL = "begin_reset_service_principal_profile"


def product_module(frame: Any) -> str | None:
    name = frame.f_globals.get("__name__", "")
    return name if name == "function_app" or name.startswith("remediation") else None


class PathTrace:
    """Calls between product modules until the reset call; then it stops looking."""

    def __init__(self) -> None:
        self.modules: list[str] = []
        self.edges: Counter[tuple[str, str]] = Counter()
        self.calls = 0
        self.reached = False

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event != "call" or self.reached:
            return
        if frame.f_code.co_name == RESET_CALL:
            self.reached = True
            caller = self._nearest_product(frame.f_back)
            if caller:
                self.edges[(caller, "AKS port")] += 1
            return
        module = product_module(frame)
        if module is None:
            return
        self.calls += 1
        if module not in self.modules:
            self.modules.append(module)
        caller = self._nearest_product(frame.f_back)
        if caller and caller != module:
            self.edges[(caller, module)] += 1

    @staticmethod
    def _nearest_product(frame: Any) -> str | None:
        while frame is not None:
            if module := product_module(frame):
                return module
            frame = frame.f_back
        return None


def failure_event(world: Any) -> func.EventGridEvent:
    """The cluster's failed write as Event Grid delivers it, decoded by the library as the worker does."""
    failed = world.operate(CLUSTER)
    assert failed is not None, "the cluster's write should fail"
    event = {"id": str(uuid.uuid4()), "topic": f"/subscriptions/{CLUSTER.subscription_id}",
             "subject": str(CLUSTER), "eventType": "Microsoft.Resources.ResourceWriteFailure",
             "eventTime": failed.event_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z"),
             "data": {"resourceUri": str(CLUSTER), "operationName": failed.operation_name,
                      "correlationId": failed.correlation_id, "status": "Failed",
                      "subscriptionId": CLUSTER.subscription_id},
             "dataVersion": "2", "metadataVersion": "1"}
    return event_grid_input(event).decode()


def run() -> PathTrace:
    import function_app

    world = make_world()
    composition_root = function_app.services
    function_app.services = lambda: world.services  # the triggers' composition root, pointed at the fakes
    try:
        return _follow(function_app, world)
    finally:
        function_app.services = composition_root


def _follow(function_app: Any, world: Any) -> PathTrace:
    event = failure_event(world)
    triggers = ((world.lookups, function_app.look_up_incident), (world.queue, function_app.advance_remediation))
    trace = PathTrace()
    sys.setprofile(trace)
    try:
        function_app.on_resource_failure(event)
        for _ in range(100):  # the host: each visible message to its trigger, else the clock to the next one
            if trace.reached:
                break
            delivered = False
            for queue, trigger in triggers:
                for message in queue.receive_visible():
                    delivered = True
                    message.dequeue_count += 1
                    trigger(queue_input(json.dumps(message.body), dequeue_count=message.dequeue_count).decode())
                    if trace.reached:
                        break
            if not delivered:
                upcoming = [at for queue, _ in triggers if (at := queue.next_visible_at())]
                if not upcoming:
                    break
                world.clock.now = max(world.clock.now, min(upcoming))
    finally:
        sys.setprofile(None)
    if not trace.reached:
        raise SystemExit("the path never reached the reset call")
    return trace


def main(argv: list[str]) -> None:
    trace = run()
    hops = sum(trace.edges.values())
    print(f"one Event Grid failure to {RESET_CALL}: {len(trace.modules)} product modules, "
          f"{len(trace.edges)} module->module edges, {hops} hops between modules, {trace.calls} product calls")
    print("modules in the order first entered: " + " > ".join(trace.modules))
    if "--edges" in argv:
        for (caller, callee), count in sorted(trace.edges.items(), key=lambda item: -item[1]):
            print(f"  {count:4d}  {caller} -> {callee}")


if __name__ == "__main__":
    main(sys.argv[1:])
