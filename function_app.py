"""The triggers: the edge the Functions host calls. Each parses its input into one domain type, calls one use case
of the services remediation/app/bootstrap.py builds (the composition root: the only place clients are made from
settings), and renders the outcome. No SDK but azure-functions here; errors are handled here, once."""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import azure.functions as func

from remediation import telemetry
from remediation.app import logs
from remediation.app.settings import CHECK_QUEUE, INCIDENT_QUEUE, STORAGE_CONNECTION, WORK_QUEUE
from remediation.auth import READ_ROLE, WRITE_ROLE, ForbiddenError, UnauthorizedError
from remediation.errors import (
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RemediationError,
    TransientError,
)
from remediation.ids import ClusterId
from remediation.intake.detection import IncidentLookup
from remediation.intake.events import IgnoredEvent, parse_event
from remediation.intake.health import EXPIRED_NOW_LOG, MIGRATION_PLAN_ROUTE, CredentialCheck, Health
from remediation.intake.requests import RemediationRequest
from remediation.run.chain import WorkItem

if TYPE_CHECKING:
    from remediation.app.bootstrap import Services

log = logging.getLogger("remediator")
logs.install()  # input's control characters are escaped in every log line of the app
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# Most specific first: the first matching class decides the status.
_STATUS_BY_ERROR: tuple[tuple[type[RemediationError], int], ...] = (
    (InvalidInputError, 400),
    (UnauthorizedError, 401),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (ConfigurationError, 500),
    (TransientError, 503),
    (RemediationError, 502),
)


# A request decided to change nothing gets 409, except these.
_STATUS_BY_REFUSAL = {"ClusterNotFound": 404, "OutOfScope": 403}

# Events acknowledged without work, by event type: logged with each, kept for this worker's life. Types are
# whatever a sender writes: past MAX_IGNORED_KINDS of them, new ones are counted under "other".
MAX_IGNORED_KINDS = 50
ignored_events: Counter[str] = Counter()
_ignored_lock = threading.Lock()


_services_lock = threading.Lock()


@functools.cache
def built_services() -> Services:
    """The services, built from the app settings on first use (`built_services.cache_clear()` forgets them)."""
    from remediation.app.bootstrap import bootstrap

    return bootstrap()


def services() -> Services:
    """The services every invocation of this worker shares: built once, even when the first invocations arrive
    together (a cold start under load), so there is one health cache and one set of clients per worker."""
    with _services_lock:
        return built_services()


@app.route(route="remediations", methods=["POST"])
def start_remediation(req: func.HttpRequest) -> func.HttpResponse:
    """Ask for a remediation of one cluster (or a dry run). Needs Remediations.Write.

    Decided from the cluster's present state: 202 with a new remediation, 200 with the one already
    running, or a JSON error saying why nothing was started (a decision's reason code)."""
    try:
        caller = services().api_auth.authenticate(req.headers.get("Authorization"), WRITE_ROLE)
        with telemetry.span("remediator.request", kind="server"):
            decision = services().remediations.request(RemediationRequest.from_json(req.get_body(),
                                                                                    requested_by=caller))
    except RemediationError as err:
        return _error_response(err, "start_remediation")
    if decision.remediation is None:
        status = _STATUS_BY_REFUSAL.get(decision.code, 409)
        log.warning("start_remediation refused (%s %s): %s", status, decision.code, decision.verdict.message)
        return _json_response({"error": {"code": decision.code, "message": decision.verdict.message}}, status)
    remediation = decision.remediation
    body = {**remediation.view(), "decision": {"code": decision.code, "message": decision.verdict.message}}
    return _json_response(body, 202 if decision.created else 200,
                          headers={"Location": f"{_base_url(req)}/{remediation.id}"})


@app.route(route="remediations", methods=["GET"])
def list_remediations(req: func.HttpRequest) -> func.HttpResponse:
    """Remediations, newest first: one cluster's with `?clusterResourceId=<ARM id>`, else the fleet's
    (`?active=true` for unfinished ones only; `?limit=` up to 200). Needs Remediations.Read."""
    try:
        services().api_auth.authenticate(req.headers.get("Authorization"), READ_ROLE)
        limit = _limit(req.params.get("limit"))
        raw = req.params.get("clusterResourceId")
        if raw is not None:
            found = services().remediations.list_for_cluster(ClusterId.parse(raw), limit=limit)
        else:
            found = services().remediations.list_recent(active_only=_flag(req.params.get("active")), limit=limit)
    except RemediationError as err:
        return _error_response(err, "list_remediations")
    return _json_response({"value": [r.view() for r in found]}, 200)


@app.route(route="remediations/{remediation_id}", methods=["GET"])
def get_remediation(req: func.HttpRequest) -> func.HttpResponse:
    """Show one remediation: status, steps with times and reason codes, ids; never a secret. Needs Remediations.Read."""
    try:
        services().api_auth.authenticate(req.headers.get("Authorization"), READ_ROLE)
        remediation = services().remediations.get(req.route_params.get("remediation_id", ""))
    except RemediationError as err:
        return _error_response(err, "get_remediation")
    return _json_response(remediation.view(), 200)


@app.route(route="decisions", methods=["GET"])
def list_decisions(req: func.HttpRequest) -> func.HttpResponse:
    """Decisions with their reason codes, newest first; `?clusterResourceId=<ARM id>` for one cluster's.
    Needs Remediations.Read."""
    try:
        services().api_auth.authenticate(req.headers.get("Authorization"), READ_ROLE)
        raw = req.params.get("clusterResourceId")
        cluster = ClusterId.parse(raw) if raw is not None else None
        found = services().remediations.list_decisions(cluster, limit=_limit(req.params.get("limit")))
    except RemediationError as err:
        return _error_response(err, "list_decisions")
    return _json_response({"value": found}, 200)


@app.route(route="orphans", methods=["GET"])
def list_orphans(req: func.HttpRequest) -> func.HttpResponse:
    """Applications the remediator owns or minted passwords for that no cluster it can see uses, with their
    credentials' end dates and the command to delete them; nothing is deleted. Needs Remediations.Read."""
    try:
        services().api_auth.authenticate(req.headers.get("Authorization"), READ_ROLE)
        found = services().remediations.orphans()
    except RemediationError as err:
        return _error_response(err, "list_orphans")
    now = datetime.now(UTC)
    return _json_response({"value": [o.view(now) for o in found]}, 200)


@app.route(route="health", methods=["GET"])
def fleet_health(req: func.HttpRequest) -> func.HttpResponse:
    """Every cluster in scope with its credential health (healthy, expiring within N days, expired now, application
    missing, managed identity), read from Resource Graph and Graph at most 5 minutes ago (`generatedAt`, `ageSeconds`
    and the `Age` header say when; concurrent readers share one scan); nothing is written. `?health=expired,expiring`
    keeps only those. Needs Remediations.Read."""
    try:
        services().api_auth.authenticate(req.headers.get("Authorization"), READ_ROLE)
        wanted = _health_filter(req.params.get("health"))
        recent = services().health.recent_report()
    except RemediationError as err:
        return _error_response(err, "fleet_health")
    body = recent.view()
    if wanted:
        body["value"] = [c for c in body["value"] if c["health"] in wanted]
    return _json_response(body, 200, headers={"Age": str(body["ageSeconds"])})


@app.route(route=MIGRATION_PLAN_ROUTE, methods=["GET"])
def migration_plan(req: func.HttpRequest) -> func.HttpResponse:
    """`?clusterResourceId=<ARM id>`: the plan to move the cluster to managed identity, read now as the remediator
    (the cluster, its service principal, the principal's role assignments, the maintenance configurations) and checked
    against the deployment's guardrails; what ARM refused to show is named in it. Nothing is written. Needs
    Remediations.Read."""
    try:
        services().api_auth.authenticate(req.headers.get("Authorization"), READ_ROLE)
        plan = services().migrations.plan(ClusterId.parse(req.params.get("clusterResourceId")))
    except RemediationError as err:
        return _error_response(err, "migration_plan")
    return _json_response(plan.view(), 200)


@app.route(route="migration-plans", methods=["GET"])
def migration_plans(req: func.HttpRequest) -> func.HttpResponse:
    """The migration plan of every service-principal cluster of the health report (the one `GET /api/health` serves,
    at most 5 minutes old; no scan of its own), `?health=expired,expiring` for those only; with the counts and the
    clusters that could not be planned (`errors`). Nothing is written. Needs Remediations.Read."""
    try:
        services().api_auth.authenticate(req.headers.get("Authorization"), READ_ROLE)
        plans = services().migrations.plan_fleet(_health_filter(req.params.get("health")))
    except RemediationError as err:
        return _error_response(err, "migration_plans")
    return _json_response(plans.view(), 200)


@app.timer_trigger(arg_name="timer", schedule="%REMEDIATOR_HEALTH_SCHEDULE%", run_on_startup=False)
def check_fleet_health(timer: func.TimerRequest) -> None:
    """The daily fleet credential health check: report, remediate what expired, rotate opted-in clusters whose secret
    ends soon inside their maintenance window (or queue a check for when it opens)."""
    try:
        with telemetry.span("remediator.health_check"):
            report = services().health.check()
    except RemediationError as err:
        log.error("fleet health check failed: %s", err)
        return
    counts = report.counts
    log.info("fleet health: %s clusters, %s applications: %s; nearest expiry in %s days", len(report.clusters),
             report.applications, counts, report.days_to_nearest_expiry)
    if counts[Health.EXPIRED]:
        log.warning("%s %s", counts[Health.EXPIRED], EXPIRED_NOW_LOG)


@app.queue_trigger(arg_name="message", queue_name=CHECK_QUEUE, connection=STORAGE_CONNECTION)
def recheck_credential(message: func.QueueMessage) -> None:
    """A cluster's maintenance window opens: decide its proactive rotation from what is true now."""
    try:
        check = CredentialCheck.from_message(message.get_body())
    except InvalidInputError as err:
        log.error("dropping queue message %s: %s", message.id, err)
        return
    with telemetry.span("remediator.credential_check", carrier=telemetry.carrier_of(check.traceparent),
                        kind="consumer", attributes={"remediator.cluster.resource_id": str(check.cluster)}):
        decision = services().health.recheck(check)
    log.info("credential check of %s: %s: %s", check.cluster.name, decision.code, decision.verdict.message)


@app.queue_trigger(arg_name="message", queue_name=WORK_QUEUE, connection=STORAGE_CONNECTION)
def advance_remediation(message: func.QueueMessage) -> None:
    """Run a remediation's next steps. A malformed, stale or duplicate message is logged and dropped;
    storage trouble raises so the host retries the message (then moves it to the poison queue)."""
    try:
        item = WorkItem.from_message(message.get_body())
    except InvalidInputError as err:
        log.error("dropping queue message %s: %s", message.id, err)
        return
    try:
        with telemetry.span("remediator.advance", carrier=telemetry.carrier_of(item.traceparent), kind="consumer",
                            attributes={"remediator.remediation.id": item.remediation_id,
                                        "remediator.remediation.generation": item.generation}) as span:
            remediation = services().remediations.advance(item)
            span.set_attributes(telemetry.remediation_attributes(remediation))  # where the remediation stands now
    except NotFoundError as err:
        log.error("dropping queue message %s: %s", message.id, err)
        return
    log.info("remediation %s is %s: %s", remediation.id, remediation.status.value, remediation.reason)


@app.queue_trigger(arg_name="message", queue_name=f"{WORK_QUEUE}-poison", connection=STORAGE_CONNECTION)
def fail_poisoned_remediation(message: func.QueueMessage) -> None:
    """A work message the host gave up on: its remediation's chain is dead, so it fails, with the reason."""
    try:
        item = WorkItem.from_message(message.get_body())
        remediation = services().remediations.fail_poisoned(item, message.dequeue_count)
    except (InvalidInputError, NotFoundError) as err:
        log.error("dropping poison message %s: %s", message.id, err)
        return
    log.error("poison message %s: remediation %s is %s", message.id, remediation.id, remediation.status.value)


@app.event_grid_trigger(arg_name="event")
def on_resource_failure(event: func.EventGridEvent) -> None:
    """Failed writes and actions from the subscription's system topic, in the Event Grid or CloudEvents schema.
    Answers at once: a cluster failure only enqueues a lookup; every other event, and one it cannot use (no
    type, malformed, out of time), is logged with the reason and acknowledged, so Event Grid does not retry it.

    The library hands a CloudEvents event over as `func.CloudEvent` despite the annotation (a Union annotation
    breaks the worker's indexing); `parse_event` reads both."""
    try:
        parsed = parse_event(event)
        if isinstance(parsed, IgnoredEvent):
            log.info("acknowledged event %s without work: %s (%s ignored so far)", _event_id(event), parsed.reason,
                     _count_ignored(parsed.event_type[:100]))
            return
        with telemetry.span("remediator.failure_event", kind="consumer",
                            attributes={"remediator.cluster.resource_id": str(parsed.cluster),
                                        "remediator.correlation_id": parsed.correlation_id}):
            services().detector.accept_event(parsed)
    except InvalidInputError as err:
        _count_ignored("malformed")
        log.error("acknowledged malformed event %s: %s", _event_id(event), err)


@app.queue_trigger(arg_name="message", queue_name=INCIDENT_QUEUE, connection=STORAGE_CONNECTION)
def look_up_incident(message: func.QueueMessage) -> None:
    """Find the Activity Log entry of a cluster's newest failure event, classify it, and start a remediation if it is
    a bad secret. A message of a lookup that was decided or replaced meanwhile changes nothing (`Superseded`)."""
    try:
        lookup = IncidentLookup.from_message(message.get_body())
    except InvalidInputError as err:
        log.error("dropping queue message %s: %s", message.id, err)
        return
    with telemetry.span("remediator.look_up_incident", carrier=telemetry.carrier_of(lookup.traceparent),
                        kind="consumer", attributes={"remediator.cluster.resource_id": str(lookup.cluster),
                                                     "remediator.correlation_id": lookup.correlation_id,
                                                     "remediator.lookup.attempt": lookup.attempt}):
        decision = services().detector.look_up(lookup)
    log.info("incident %s of %s: %s: %s", decision.hint.correlation_id, lookup.cluster.name, decision.code,
             decision.verdict.message)


@app.timer_trigger(arg_name="timer", schedule="%REMEDIATOR_SWEEP_SCHEDULE%", run_on_startup=False)
def sweep_activity_log(timer: func.TimerRequest) -> None:
    """Catch what events missed: decide every failed cluster operation since the last sweep, and resume
    remediations whose work messages were lost. One subscription's failure does not stop the others."""
    for subscription_id in services().settings.subscription_ids:
        try:
            sweep = services().detector.sweep(subscription_id)
        except RemediationError as err:
            log.error("sweep of %s failed: %s", subscription_id, err)
            continue
        log.info("sweep of %s: %s entries, %s", subscription_id, sweep.entries,
                 dict(Counter(d.code for d in sweep.decisions)))
    try:
        resumed = services().remediations.resume_stalled()
    except RemediationError as err:
        log.error("resuming stalled remediations failed: %s", err)
        return
    if resumed:
        log.warning("resumed %s stalled remediation(s): %s", len(resumed), ", ".join(r.id for r in resumed))


def _limit(raw: str | None, default: int = 50, most: int = 200) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise InvalidInputError(f"limit must be a whole number from 1 to {most}", code="InvalidLimit")
    return int(raw)


def _health_filter(raw: str | None) -> set[str]:
    if not raw:
        return set()
    wanted = {part.strip() for part in raw.split(",") if part.strip()}
    known = {h.value for h in Health}
    if not wanted <= known:
        raise InvalidInputError(f"health is a comma-separated list of {', '.join(sorted(known))}",
                                code="InvalidHealthFilter")
    return wanted


def _flag(raw: str | None) -> bool:
    if raw is None or raw.lower() in ("false", "0"):
        return False
    if raw.lower() in ("true", "1"):
        return True
    raise InvalidInputError("a flag is true or false", code="InvalidFlag")


def _count_ignored(kind: str) -> int:
    """Count one event acknowledged without work under its kind (or "other"); the total so far."""
    with _ignored_lock:
        ignored_events[kind if kind in ignored_events or len(ignored_events) < MAX_IGNORED_KINDS else "other"] += 1
        return sum(ignored_events.values())


def _event_id(event: func.EventGridEvent) -> str:
    return repr(getattr(event, "id", None))[:80]


def _error_response(err: RemediationError, function: str) -> func.HttpResponse:
    status = next(code for kind, code in _STATUS_BY_ERROR if isinstance(err, kind))
    log.log(logging.WARNING if status < 500 else logging.ERROR, "%s rejected (%s %s): %s",
            function, status, err.code, err)
    headers = {}
    if isinstance(err, UnauthorizedError):
        headers["WWW-Authenticate"] = err.www_authenticate
    if isinstance(err, TransientError) and err.retry_after is not None:
        headers["Retry-After"] = str(int(err.retry_after + 0.999))
    return _json_response({"error": {"code": err.code, "message": str(err)}}, status, headers=headers)


def _json_response(body: Any, status: int, *, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json",
                             headers=headers or {})


def _base_url(req: func.HttpRequest) -> str:
    # Drop the query string: it may carry the function key (`code=`).
    return req.url.split("?", 1)[0].rstrip("/")
