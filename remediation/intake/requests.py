"""An operator's request (`POST /api/remediations`): parsed and checked before anything is read or written, and
turned into a hint like any other (remediation/decide/hints.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from remediation.auth import Caller
from remediation.decide.hints import Hint, Source
from remediation.errors import InvalidInputError
from remediation.ids import ClusterId
from remediation.model import Credential

MAX_BODY_BYTES = 64 * 1024
MAX_REASON = 500
_FIELDS = {"clusterResourceId", "dryRun", "reason", "force", "credential"}


@dataclass(frozen=True)
class RemediationRequest:
    """An operator's request: a hint like any other, with their words and, if they insist, force."""

    cluster: ClusterId
    dry_run: bool = False
    reason: str = ""
    force: bool = False
    requested_by: Caller | None = None
    credential: Credential | None = None  # None: the service principal's

    @classmethod
    def from_json(cls, body: bytes, *, requested_by: Caller | None = None) -> RemediationRequest:
        """Parse `{"clusterResourceId": str, "dryRun": bool, "reason": str, "force": bool, "credential":
        "servicePrincipal" | "aadServer"}`; InvalidInputError."""
        if len(body) > MAX_BODY_BYTES:
            raise InvalidInputError(f"the request body is larger than {MAX_BODY_BYTES} bytes", code="BodyTooLarge")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise InvalidInputError(f"the request body is not valid JSON: {err}", code="InvalidJson") from err
        except RecursionError as err:
            raise InvalidInputError("the request body is nested too deeply", code="InvalidJson") from err
        if not isinstance(data, dict):
            raise InvalidInputError("the request body must be a JSON object", code="InvalidJson")
        if "clusterResourceId" not in data:
            raise InvalidInputError("clusterResourceId is required", code="MissingClusterResourceId")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise InvalidInputError(f"unknown field(s): {', '.join(unknown)[:200]}", code="UnknownField")
        dry_run, force = data.get("dryRun", False), data.get("force", False)
        if not isinstance(dry_run, bool):
            raise InvalidInputError("dryRun must be true or false", code="InvalidDryRun")
        if not isinstance(force, bool):
            raise InvalidInputError("force must be true or false", code="InvalidForce")
        reason = data.get("reason", "")
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise InvalidInputError(f"reason must be a string of at most {MAX_REASON} characters",
                                    code="InvalidReason")
        credential = data.get("credential", Credential.SERVICE_PRINCIPAL.value)
        if credential not in {c.value for c in Credential}:
            raise InvalidInputError("credential must be servicePrincipal (the cluster's service principal) or"
                                    " aadServer (the legacy Azure AD integration's server application)",
                                    code="InvalidCredential")
        return cls(ClusterId.parse(data["clusterResourceId"]), dry_run=dry_run, reason=reason, force=force,
                   requested_by=requested_by, credential=Credential(credential))

    def hint(self) -> Hint:
        return Hint(self.cluster, Source.MANUAL, requested_by=self.requested_by, reason=self.reason,
                    dry_run=self.dry_run, force=self.force, credential=self.credential)
