"""`python -m remediation doctor`: check the Azure CLI's cached AKS service principals on this machine.

`az aks create` without `--service-principal` reuses the service principal it cached in
`~/.azure/aksServicePrincipal.json` (`{"<subscription id>": {"service_principal": "<appId>",
"client_secret": "<secret>"}}`) for that subscription. The CLI made that secret valid for one year,
so a year later every new cluster is created with an expired secret and fails its first write
(AKS's docs on service principals; Azure/azure-cli issues on the cache). This check reads the
cache, and for each entry asks Microsoft Graph for the application and its passwords' end dates,
and Entra ID whether the cached secret still signs in. It warns before the secret expires and says
how to fix it. It writes nothing.

The cached secret is sent only to Entra ID's token endpoint, as the sign-in; it is never printed,
logged or compared outside that (the password it is, is recognised by Entra ID's verdict and
Graph's end dates, not by its text).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from remediation.errors import NotFoundError, RemediationError
from remediation.model import Application, SecretText, SignInResult

CACHE_FILE = Path("~/.azure/aksServicePrincipal.json")
WARN_DAYS = 30

OK, WARNING, ERROR = "ok", "warning", "error"
# Entra ID's verdicts on a client secret (AADSTS error codes reference).
EXPIRED, INVALID, NO_APPLICATION = "AADSTS7000222", "AADSTS7000215", "AADSTS700016"


class CacheError(Exception):
    """The cache file exists but cannot be read as the Azure CLI writes it."""


@dataclass(frozen=True)
class CachedPrincipal:
    subscription_id: str
    app_id: str
    secret: SecretText


@dataclass(frozen=True)
class Finding:
    subscription_id: str
    app_id: str
    level: str  # ok | warning | error
    code: str
    message: str
    fix: str = ""

    def view(self) -> dict[str, str]:
        return {"subscriptionId": self.subscription_id, "appId": self.app_id, "level": self.level,
                "code": self.code, "message": self.message, "fix": self.fix}


def read_cache(path: Path) -> list[CachedPrincipal] | None:
    """The cached service principals, or None when there is no cache. CacheError names what is wrong, never
    quoting the file (it holds secrets)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CacheError(f"cannot read {path}: {err.strerror}") from err
    try:
        document = json.loads(text)
    except ValueError as err:
        raise CacheError(f"{path} is not JSON (line {getattr(err, 'lineno', '?')})") from None
    if not isinstance(document, dict):
        raise CacheError(f"{path} is not a JSON object of subscriptions")
    found = []
    for subscription, entry in document.items():
        app_id = entry.get("service_principal") if isinstance(entry, dict) else None
        secret = entry.get("client_secret") if isinstance(entry, dict) else None
        if not isinstance(app_id, str) or not isinstance(secret, str) or not app_id or not secret:
            raise CacheError(f"{path}: the entry of subscription {subscription} has no service_principal and "
                             "client_secret strings")
        found.append(CachedPrincipal(str(subscription), app_id, SecretText(secret)))
    return found


def examine(cached: CachedPrincipal, *, application: Callable[[str], Application],
            sign_in: Callable[[str, SecretText], SignInResult], now: datetime,
            warn_days: int = WARN_DAYS) -> Finding:
    """One entry's finding: a pure decision over what Graph and Entra ID answered."""
    sub, app_id = cached.subscription_id, cached.app_id
    forget = (f"remove subscription {sub}'s entry from {CACHE_FILE} (or the file), so that `az aks create` makes a "
              "new service principal, or pass --service-principal and --client-secret")
    try:
        app = application(app_id)
    except NotFoundError:
        return Finding(sub, app_id, ERROR, "ApplicationNotFound",
                       f"the cached service principal's application {app_id} no longer exists in Entra ID", forget)
    verdict = sign_in(app_id, cached.secret)
    reset = f"az ad app credential reset --id {app_id} --append --years 1"
    if not verdict.ok:
        code = verdict.code or "SignInRefused"
        what = {EXPIRED: "the cached secret has expired", INVALID: "the cached secret is not one of the "
                "application's passwords any more (rotated elsewhere)", NO_APPLICATION: "Entra ID does not know the "
                "application"}.get(code, f"Entra ID refused the cached secret ({code})")
        return Finding(sub, app_id, ERROR, "CachedSecretRefused", f"{what}: a cluster created with it fails its "
                       "first write", f"{forget}; for a new secret on the same application: {reset}")
    ends = sorted(p.end for p in app.passwords if p.end is not None and p.end > now)
    if not ends:
        return Finding(sub, app_id, WARNING, "NoEndDate", "the cached secret signs in, but Graph shows no "
                       "unexpired password end date for the application")
    # The cached secret is one of the unexpired passwords; without comparing its text, the earliest end is the
    # one it may have.
    soonest = ends[0]
    days = (soonest - now) / timedelta(days=1)
    if days <= warn_days:
        return Finding(sub, app_id, WARNING, "ExpiresSoon", f"the cached secret signs in, but a password of the "
                       f"application ends {soonest.date().isoformat()} (in {days:.0f} days)",
                       f"{forget}; or add a password now: {reset}")
    return Finding(sub, app_id, OK, "Valid", f"the cached secret signs in; the application's passwords end "
                   f"{soonest.date().isoformat()} at the earliest")


def render(findings: list[Finding], path: Path) -> str:
    if not findings:
        return f"No cached AKS service principal in {path}: `az aks create` will make a new one.\n"
    lines = [f"{path}:"]
    for f in findings:
        lines.append(f"  [{f.level}] subscription {f.subscription_id}, application {f.app_id}: {f.code}: "
                     f"{f.message}")
        if f.fix:
            lines.append(f"      fix: {f.fix}")
    return "\n".join(lines) + "\n"


def exit_status(findings: list[Finding]) -> int:
    return 1 if any(f.level != OK for f in findings) else 0


def cache_path(given: str | None) -> Path:
    return Path(given).expanduser() if given else Path(os.path.expanduser(str(CACHE_FILE)))


def run(cached: list[CachedPrincipal], *, application: Callable[[str], Application],
        sign_in: Callable[[str, SecretText], SignInResult], now: datetime | None = None,
        warn_days: int = WARN_DAYS) -> list[Finding]:
    moment = now or datetime.now(UTC)
    findings = []
    for entry in cached:
        try:
            findings.append(examine(entry, application=application, sign_in=sign_in, now=moment,
                                    warn_days=warn_days))
        except RemediationError as err:
            findings.append(Finding(entry.subscription_id, entry.app_id, WARNING, "NotChecked",
                                    f"could not check: {err}"))
    return findings
