"""Decide from an AKS failure's error text whether the cluster's service-principal secret is bad.

A wrong "rotate" resets the cluster's credentials and re-images every node of a production
cluster, so the classifier is built for precision: it answers ``ROTATE_SECRET`` only when the
text names a bad client secret *of the cluster's own service principal*, and a failure with a
known other cause (quota, subnet, VM size, policy, the caller's own permissions or token, an
operation already in progress, an RBAC gap or replication delay of the service principal)
never rotates, even when it also mentions credentials. Secret wording ("expired client
secret", "invalid client secret", ...), error codes that other services share and Entra ID's own
verdicts (AADSTS7000215, ...) count only in AKS service-principal context (``_AKS_SP_CONTEXT``),
so another component's expired secret (an ingress controller's, a pipeline's, a registry's) does
not reset the cluster. An Entra ID verdict counts only in the AKS service-principal *error chain*
(the error object it sits in or one enclosing it), never in a sibling detail; and a refused
request value (``InvalidParameter``: a tag, a parameter) is a trap, so a verdict quoted in one
(anyone who may tag the cluster chooses that text) is ``NOT_SP``. Text can still be forged, so the
caller confirms a bad-secret verdict with Graph or a sign-in wherever it can (``reconcile``).

``CREDENTIAL_REJECTED`` (action ``CONFIRM``) is the cluster's own credential refused with
HTTP 401 on a token refresh, without Entra ID saying why: invalid, expired and deleted look the
same. The caller acts on it only when Graph or a sign-in confirms (see
``refine_with_credential_dates``); an Entra ID (AADSTS) verdict in the same text outranks it.

How it reads a failure:

1. The input (free text, an Activity Log ``properties.statusMessage`` JSON string or dict, or a
   whole Activity Log entry) is walked into fragments: every string in the JSON tree, with the
   ``code`` of the nearest enclosing error object. JSON found inside strings (AKS often puts a
   JSON document in ``message``, or ``Response body: {...}`` mid-sentence) is parsed and walked
   too, at any depth. Every error object (JSON object) is a scope nested in the one around it,
   so a rule can ask whether its context is in the hit's error chain: the same object, the
   objects enclosing it and the text around an embedded document, never a sibling detail.
2. ``RULES`` is an ordered table. The first rule that matches anywhere decides the kind; the
   order is the policy: trap codes, trap phrases, Entra ID (AADSTS) codes, service-principal
   codes, then generic wording, then the bare 401 refusal. Anything else is ``NOT_SP``.

Guarantees: pure (no I/O, no logging); never raises for any input; bounded work (input is cut at
``MAX_TEXT_CHARS``, JSON nesting at ``MAX_DEPTH``, and a context pattern is searched at most once
per fragment and once over the whole text, however many hits ask); ``evidence`` is at most ``EVIDENCE_LIMIT``
characters with anything shaped like an Entra ID client secret masked; ``reason`` never quotes
the input's text (it may name an error code).
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol


class FailureKind(StrEnum):
    INVALID_SECRET = "invalid_secret"
    EXPIRED_SECRET = "expired_secret"
    SP_NOT_FOUND = "sp_not_found"
    # The cluster's credential was refused (HTTP 401 on its token refresh) and the text cannot tell
    # invalid from expired from deleted.
    CREDENTIAL_REJECTED = "credential_rejected"
    SP_OTHER = "sp_other"
    NOT_SP = "not_sp"


class Action(StrEnum):
    ROTATE_SECRET = "rotate_secret"
    NEW_SERVICE_PRINCIPAL = "new_service_principal"
    # The cluster's credential was refused: act only when Graph (every password ended, or the app is
    # gone) or a sign-in with the stored secret confirms which.
    CONFIRM = "confirm"
    NONE = "none"


ACTION_FOR_KIND: dict[FailureKind, Action] = {
    FailureKind.INVALID_SECRET: Action.ROTATE_SECRET,
    FailureKind.EXPIRED_SECRET: Action.ROTATE_SECRET,
    FailureKind.SP_NOT_FOUND: Action.NEW_SERVICE_PRINCIPAL,
    FailureKind.CREDENTIAL_REJECTED: Action.CONFIRM,
    FailureKind.SP_OTHER: Action.NONE,
    FailureKind.NOT_SP: Action.NONE,
}


@dataclass(frozen=True, slots=True)
class Classification:
    """What a failure is, what to do about it, and the code and phrase that decided it."""

    kind: FailureKind
    action: Action
    code: str  # the deciding error code ("AADSTS7000215", "QuotaExceeded", ...); "" if no code decided
    reason: str  # one sentence for people; never quotes the input's text
    evidence: str  # the phrase or code that decided, at most EVIDENCE_LIMIT characters


EVIDENCE_LIMIT = 200
# Activity Log status messages are a few KB; the cap keeps a hostile or broken input cheap. Text past
# the cap is not read, which can only turn a verdict into NOT_SP, never into a rotation.
MAX_TEXT_CHARS = 256 * 1024
MAX_DEPTH = 24
MAX_FRAGMENTS = 1024
# Attempts to find JSON inside one string; a failed attempt costs a scan, so keep it small.
MAX_EMBEDDED_JSON = 4


# ------------------------------------------------------------------------------------ the rule table

class Matcher(Protocol):
    # Lowercase ASCII words of which one must occur in the text for the table to try the matcher
    # at all; None means "try whenever the text has an AADSTS code".
    triggers: frozenset[bytes] | None

    def find(self, scanned: _Scanned) -> tuple[int, str, str] | None:
        """(offset in ``scanned.text``, evidence, code) of the first hit, or None."""


class Codes:
    """Any of these error codes, as a whole word anywhere: a ``code`` field, ``Code="X"``, ``(X)``... (any case).

    ``wording`` and ``context``, when given, must each match in the error object the code belongs to, one
    enclosing it or one inside it (its message, the JSON its message carries, its details): a code that other
    services use too decides only with the words that give it this meaning beside it.
    """

    def __init__(self, *codes: str, wording: str | None = None, context: str | None = None) -> None:
        self.codes = codes
        self._words = frozenset(code.lower().encode() for code in codes)
        self.triggers: frozenset[bytes] | None = self._words
        # Whole words in the lowercased text: no ASCII letter or digit on either side (as ``_Scanned.words`` splits).
        self._mention = re.compile(
            r"(?<![a-z0-9])(?:" + "|".join(re.escape(code.lower()) for code in codes) + r")(?![a-z0-9])")
        self.wording = _lowercase_pattern(wording) if wording else None
        self.context = _lowercase_pattern(context) if context else None

    def find(self, scanned: _Scanned) -> tuple[int, str, str] | None:
        found = self._words.intersection(scanned.words)
        if not found:
            return None
        if self.wording is None and self.context is None:  # the common case, kept cheap: the outermost mention
            offset, length = min((scanned.lowered.find(word.decode()), len(word)) for word in found)
            code = scanned.text[offset:offset + length]
            return offset, code, code
        for mention in self._mention.finditer(scanned.lowered):  # the outermost mention first
            index = scanned.fragment_index(mention.start())
            if self.wording is not None and not scanned.related(index, self.wording):
                continue
            if self.context is not None and not scanned.related(index, self.context):
                continue
            code = scanned.text[mention.start():mention.end()]
            return mention.start(), code, code
        return None


class Aadsts:
    """Entra ID error codes (``AADSTS7000215``) in ``context``'s error chain; the evidence runs to the end of the code's
    sentence.

    Entra ID's verdict is on whatever secret was presented to it, and any text can quote one: another component's
    failed sign-in, or a value someone wrote into a tag. So a code counts only where ``context`` matches in the
    chain of the error object it sits in (its own text and code, or an enclosing object's), as ``Phrase`` does;
    every mention is tried, outermost first, so a quote elsewhere neither decides nor hides the chain's own verdict.
    """

    def __init__(self, *numbers: str, any_number: bool = False, context: str) -> None:
        self.numbers = frozenset(numbers)
        self.any_number = any_number
        self.context = _lowercase_pattern(context)
        self.triggers: frozenset[bytes] | None = None

    def find(self, scanned: _Scanned) -> tuple[int, str, str] | None:
        for number, offset, index in scanned.aadsts:  # in text order, one per number and fragment
            if (self.any_number or number in self.numbers) and scanned.in_chain(index, self.context):
                sentence = _AADSTS_SENTENCE.match(scanned.lowered, offset)
                end = sentence.end() if sentence else offset + 6 + len(number)
                return offset, scanned.text[offset:end], f"AADSTS{number}"
        return None


class Phrase:
    """Case-insensitive patterns, tried (by the table) only when one of ``words`` occurs in the text.

    The patterns run on the lowercased text and each starts with a literal, so the regex engine
    can jump to candidates instead of trying every position (the difference is ~30x). They stay
    inside one sentence (``[^.\\n]``) so that words of unrelated sentences never combine.
    ``context``, when given, must also match in the hit's error chain: its own error object (its
    text, its code) or one enclosing it, never a sibling detail.
    """

    def __init__(self, *patterns: str, words: tuple[str, ...], context: str | None = None) -> None:
        self.patterns = tuple(_lowercase_pattern(pattern) for pattern in patterns)
        self.triggers: frozenset[bytes] | None = frozenset(word.encode() for word in words)
        self.context = _lowercase_pattern(context) if context else None

    def find(self, scanned: _Scanned) -> tuple[int, str, str] | None:
        for pattern in self.patterns:
            for match in pattern.finditer(scanned.lowered):
                index = scanned.fragment_index(match.start())
                if self.context is not None and not scanned.in_chain(index, self.context):
                    continue
                return match.start(), scanned.text[match.start():match.end()], scanned.code_near(index, match.start())
        return None


def _lowercase_pattern(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern`` for the lowercased text; written in natural case for reading."""
    if re.search(r"\\[A-Z]", pattern):  # lowering would turn \S into \s
        raise ValueError(f"use a character class instead of an uppercase escape in {pattern!r}")
    return re.compile(pattern.lower())


@dataclass(frozen=True)
class Rule:
    """One row of the decision table: when ``matcher`` hits, the failure is ``kind`` because ``description``."""

    name: str
    kind: FailureKind
    description: str
    matcher: Matcher


_REPLICATION = ("The service principal is not visible to Azure yet (directory replication after it was created); "
                "a retry later should pass, and rotating would not help.")
_RBAC_GAP = "The cluster's service principal lacks a role assignment (an RBAC gap); its secret is not the problem."
_QUOTA = "The operation hit a quota or capacity limit, not a credential problem."
_SUBNET = "The cluster's subnet or address plan is the problem, not its credentials."
_VM_SIZE = "The requested VM size is not available or not allowed, not a credential problem."
_POLICY = "An Azure Policy assignment denied the request, not a credential problem."
_REQUEST_INPUT = ("Azure refused a value of the request itself (a parameter, a tag, a template); credential text in "
                  "its message quotes that value and is no verdict on the cluster's secret.")
_CALLER = "The caller's own identity lacks permission for the operation; the cluster's secret is not involved."
_CALLER_TOKEN = ("Azure Resource Manager refused the caller's access token itself (expired, malformed, or issued for "
                 "another tenant or audience); no client secret was judged.")
_NOT_FOUND = r"(?:not found|does not exist|could not be found)"

# Where the failing credential is the cluster's own service principal. Decided from the corpus: every AKS
# resource-provider text names ServicePrincipalProfile, ServicePrincipalValidationClientError, the aks-sp-help link
# or (for InvalidClientSecret) "Customer auth is not valid for tenant"; the cluster's cloud provider (load balancers
# of Kubernetes Services, disk attach and provisioning, the node pools' scale sets, kube-controller-manager's service
# and route controllers) calls ARM for the node resource group MC_... . An azure.BearerAuthorizer / adal token-refresh
# wrapper is NOT context on its own: Terraform, Rancher, AGIC, velero and external-dns wrap their own principals'
# refreshes the same way (see the corpus traps). Each alternative stays in one sentence and starts with a literal, so
# that the regex engine skips to candidate characters (a leading \b would cost that: "aks" checks its left edge with a
# lookbehind after the literal instead).
_AKS_SP_CONTEXT = (
    r"serviceprincipalprofile|serviceprincipalvalidationclienterror|aka\.ms/(?:aks|acs)-sp-help"
    r"|customer auth is not valid for tenant"
    r"|aks(?<![a-z0-9]aks)\b[^.\n]{0,80}?\bservice principal|managed ?clusters?\b[^.\n]{0,80}?\bservice principal"
    r"|kubernetes (?:cluster|service)\b[^.\n]{0,80}?\bservice principal"
    r"|service principal\b[^.\n]{0,80}?\b(?:aks|managed ?clusters?|kubernetes (?:cluster|service))\b"
    r"|/resourcegroups/mc_|/virtualmachinescalesets/aks-"
    r"|load balancer for service [^\s/]{1,253}/|lb for service [^\s/]{1,253}/"
    r"|attachvolume\.attach failed|azuredisk\b|failed to provision volume with storageclass|azure-cloud-provider\b"
    r"|servicecontroller\.go:|routecontroller\.go:")
# What says that a code which other services share is, here, about a client secret. Whole words only: the code
# itself ("InvalidClientSecret") is no wording.
_SECRET_WORDING = (r"\bclient[ _-]?secret\b|\bsecret keys?\b|\bsecret\b[^.\n]{0,60}?\b(?:expired|invalid|not valid)\b"
                   r"|\bcredentials?\b[^.\n]{0,60}?\b(?:expired|invalid|not valid)\b")

NOT_SP, SP_OTHER = FailureKind.NOT_SP, FailureKind.SP_OTHER

# Order is the policy: the first rule that matches decides.
#
# Codes, reviewed (issue #8, point 7). Generic HTTP-shaped codes (BadRequest, Unauthorized, Conflict,
# InternalServerError, ResourceOperationFailure, DeploymentFailed, InvalidTemplateDeployment) never decide: they only
# carry the cause. Trap codes (sections 1 and 2) need no wording: they can only stop a rotation. A code that can start
# one must be AKS's own, or carry the secret wording and AKS context beside it (section 4).
RULES: tuple[Rule, ...] = (
    # --- 1. Trap codes: a specific cause named anywhere outranks every credential wording. ----------
    Rule("principal_replication", SP_OTHER, _REPLICATION,
         Codes("PrincipalNotFound", "ServicePrincipalNotFoundTimedoutError")),
    Rule("sp_rbac_gap", SP_OTHER, _RBAC_GAP,
         Codes("CreateRoleAssignmentError", "CustomPrivateDNSZoneMissingPermissionError")),
    Rule("quota_or_capacity", NOT_SP, _QUOTA,
         Codes("QuotaExceeded", "PublicIPCountLimitReached", "SkuNotAvailable", "AllocationFailed",
               "ZonalAllocationFailed", "OverconstrainedAllocationRequest", "OverconstrainedZonalAllocationRequest",
               "AKSCapacityError", "AKSCapacityHeavyUsage")),
    Rule("subnet", NOT_SP, _SUBNET,
         Codes("SubnetIsFull", "InsufficientSubnetSize", "InvalidSubnet", "InvalidSubnetID", "SubnetNotFound",
               "SubnetIsDelegated", "NetworkProfileCIDROverlapVNET", "ServiceCidrOverlapExistingSubnetsCidr",
               "DnsServiceIpOutOfServiceCidr")),
    Rule("vm_size", NOT_SP, _VM_SIZE,
         Codes("VMSizeNotSupported", "VMSizeNotSupportedForWindowsAgentPool", "InvalidVMSize",
               "UnsupportedGen2VMSize")),
    Rule("policy", NOT_SP, _POLICY, Codes("RequestDisallowedByPolicy")),
    # A value of the request refused (ARM and AKS echo it back in the message): whatever credential words it holds are
    # that value quoted (a tag that reads "AADSTS7000215 ...", issue 2), never a verdict on the cluster's secret. ARM's
    # own refusals of a tag (a value over 256 characters, a name with < > % & \ ? /) quote the tag in full, with
    # whatever AKS wording its writer put in: they are this trap whatever else the text says.
    Rule("request_input", NOT_SP, _REQUEST_INPUT,
         Codes("InvalidParameter", "InvalidRequestContent", "InvalidRequestFormat", "InvalidTemplate",
               "InvalidTagValueLength", "InvalidTagNameCharacters", "InvalidTagName")),
    Rule("caller_authorization", NOT_SP, _CALLER, Codes("AuthorizationFailed", "LinkedAuthorizationFailed")),
    # ARM's 401s for a token it received: the caller's (the operator's, a pipeline's, a driver's cached) token, never
    # a verdict on a client secret. Such a 401 must not be read as the cluster's credential being refused.
    Rule("caller_token", NOT_SP, _CALLER_TOKEN,
         Codes("InvalidAuthenticationToken", "InvalidAuthenticationTokenTenant", "InvalidAuthenticationTokenAudience",
               "ExpiredAuthenticationToken", "AuthenticationFailed")),
    Rule("throttled", NOT_SP, "The request was throttled or preempted by another operation; try again later.",
         Codes("TooManyRequests", "SubscriptionRequestsThrottled", "AKSRequestsThrottled", "Throttled",
               "OperationPreempted", "AKSOperationPreempted")),
    # --- 2. Trap phrases: the same causes worded without their code. --------------------------------
    Rule("replication_delay", SP_OTHER, _REPLICATION, Phrase(
        r"not found[^\n]{0,400}?(?:replication|propagat)",
        r"does not exist[^\n]{0,400}?(?:replication|propagat)",
        r"could not be found[^\n]{0,400}?(?:replication|propagat)",
        rf"replication[^\n]{{0,200}}?{_NOT_FOUND}",
        rf"propagat[^\n]{{0,200}}?{_NOT_FOUND}",
        words=("replication", "propagate", "propagated", "propagation", "propagating"))),
    Rule("caller_authorization_phrase", NOT_SP, _CALLER, Phrase(
        r"The client '[^']{0,200}' with object id '[^']{0,100}'[^.\n]{0,40}?"
        r"(?:does not have authorization|has permission to perform action)",
        words=("object",))),
    Rule("sp_rbac_gap_phrase", SP_OTHER, _RBAC_GAP, Phrase(
        r"service principal[^.\n]{0,200}?"
        r"\b(?:does not have|doesn't have|do not have|must be given|must have|lacks?)\b"
        r"[^.\n]{0,80}?(?:permission|authori[sz]ation|access|role)",
        words=("permission", "permissions", "authorization", "authorisation", "access", "role", "roles"))),
    Rule("quota_phrase", NOT_SP, _QUOTA, Phrase(
        r"exceed(?:s|ing|ed)?\b[^.\n]{0,80}?\bquota\b", r"quota\b[^.\n]{0,60}?\bexceeded\b", words=("quota",))),
    Rule("subnet_phrase", NOT_SP, _SUBNET, Phrase(
        r"does not have enough capacity for \d+ IP address", r"Pre-allocated IPs \d+ exceeds IPs available",
        words=("capacity", "allocated"))),
    Rule("vm_size_phrase", NOT_SP, _VM_SIZE, Phrase(
        r"The VM size of [^.\n]{0,120}? is not allowed", r"VM SKU chosen for this cluster",
        r"VirtualMachineSize '[^']{0,80}' is not supported",
        words=("vm", "virtualmachinesize"))),
    Rule("policy_phrase", NOT_SP, _POLICY, Phrase(r"was disallowed by policy", words=("disallowed",))),
    Rule("in_progress_phrase", NOT_SP,
         "Another operation on the cluster was in progress (409); try again when it ends.",
         Phrase(r"Another (?:\w+ )?operation \([^)\n]{0,120}\) is in progress",
                r"Operation is not allowed because there'?s an in progress",
                r"is in progress on agent pool",
                r"Provisioning State\(\w+\)[^.\n]{0,120}?cannot be performed",
                words=("progress", "performed"))),
    # OperationNotAllowed also covers quota and cluster-state refusals; the phrases above name the
    # cause when they can, this catches the rest.
    Rule("operation_not_allowed", NOT_SP,
         "Azure refused the operation in the cluster's current state or quota; not a credential problem.",
         Codes("OperationNotAllowed")),
    # --- 3. Entra ID's own verdict: outranks the generic wording AKS wraps it in, and the bare 401. ----
    # Only in the AKS service-principal error chain (issue 2): the error object the code sits in, or one enclosing it,
    # must be AKS's service-principal error (_AKS_SP_CONTEXT: ServicePrincipalValidationClientError, "credentials in
    # ServicePrincipalProfile", the cluster's cloud provider, ...). Quoted anywhere else (another component's sign-in,
    # a sibling detail, a tag value) it is not the cluster's verdict, and the text falls through to NOT_SP.
    Rule("aadsts_expired", FailureKind.EXPIRED_SECRET,
         "Entra ID rejected the cluster's client secret because it has expired.",
         Aadsts("7000222", context=_AKS_SP_CONTEXT)),
    Rule("aadsts_invalid", FailureKind.INVALID_SECRET,
         "Entra ID rejected the cluster's client secret as invalid (rotated elsewhere, mistyped or expired).",
         Aadsts("7000215", "50012", context=_AKS_SP_CONTEXT)),
    Rule("aadsts_app_not_found", FailureKind.SP_NOT_FOUND,
         "Entra ID has no application with the cluster's client id in the tenant (deleted, or the wrong tenant).",
         Aadsts("700016", "70001", context=_AKS_SP_CONTEXT)),
    # A token request that never got Entra ID's verdict says nothing about the secret. Only in the AKS service-principal
    # error chain, as the verdicts above: another component's refresh beside a timeout of its own (Rancher's "Timeout
    # waiting for ssh key", rancher/rancher#30432) is not the cluster's service principal at all.
    Rule("aad_unreachable", SP_OTHER,
         "Azure could not reach Entra ID to check the service principal (a network or service fault); "
         "the secret was not judged, so it is not rotated.",
         Phrase(r"i/o timeout", r"timed out", r"timeout\b", r"context deadline exceeded", r"connection refused",
                r"connection reset", r"no such host", r"dial tcp", r"TLS handshake", r"temporarily unavailable",
                words=("timeout", "timed", "deadline", "refused", "reset", "host", "dial", "tls", "unavailable"),
                context=_AKS_SP_CONTEXT)),
    Rule("aadsts_other", SP_OTHER,
         "Entra ID refused the service principal's sign-in for a reason other than a bad secret (see the AADSTS "
         "code); rotating would not help.", Aadsts(any_number=True, context=_AKS_SP_CONTEXT)),
    # --- 4. Service-principal codes without an Entra ID verdict. ------------------------------------
    # InvalidClientSecret is AKS's (MS Learn), but also MSAL's error name and other services'; the
    # InvalidServicePrincipalCredential(s) codes are Azure Red Hat OpenShift's too, which sends InvalidServicePrincipal-
    # Credentials for "must not have the Application.ReadWrite.OwnedBy permission"; InvalidServicePrincipalSecret and
    # ServicePrincipalCredentialsInvalid have no public instance. So all of them need the secret wording and AKS
    # context beside them; without it AKS's own "Customer auth is not valid ... 401" falls to credential_rejected.
    Rule("invalid_secret_code", FailureKind.INVALID_SECRET,
         "AKS reported the cluster's service-principal secret as invalid.",
         Codes("InvalidClientSecret", "InvalidServicePrincipalSecret", "InvalidServicePrincipalCredentials",
               "InvalidServicePrincipalCredential", "ServicePrincipalCredentialsInvalid",
               wording=_SECRET_WORDING, context=_AKS_SP_CONTEXT)),
    # AKS's own code, also seen with the message "Internal server error" alone, so it needs no wording; other products
    # use the name too, but its action (a new service principal) is only reported, and the caller checks Graph first.
    Rule("sp_not_found_code", FailureKind.SP_NOT_FOUND,
         "AKS could not find the cluster's service principal in the tenant.", Codes("ServicePrincipalNotFound")),
    # --- 5. Generic wording, last, and only in AKS service-principal context: an ingress controller's, a
    # pipeline's or a registry's expired secret is not the cluster's. ----------------------------------
    Rule("expired_phrase", FailureKind.EXPIRED_SECRET, "The cluster's client secret has expired.", Phrase(
        # Always "client secret": a Key Vault secret that expired is not the cluster's credential.
        r"client secret keys?\b[^.\n]{0,80}?\b(?:are|is) expired\b",
        r"client secret[^.\n]{0,40}?\b(?:has|have|had|is|are|was|were)(?: been)? expired\b",
        r"expired client secrets?\b",
        words=("expired",), context=_AKS_SP_CONTEXT)),
    Rule("invalid_phrase", FailureKind.INVALID_SECRET,
         "AKS reported the cluster's service-principal credentials as invalid.", Phrase(
             r"The credentials in ServicePrincipalProfile were invalid", r"invalid client secret\b",
             r"client secret[^.\n]{0,40}?\b(?:is|are|was|were)(?: been)? (?:invalid|not valid)\b",
             words=("serviceprincipalprofile", "secret"), context=_AKS_SP_CONTEXT)),
    Rule("sp_not_found_phrase", FailureKind.SP_NOT_FOUND,
         "The cluster's service principal was not found in the tenant.",
         Phrase(r"Service principal clientID: ?[^\s]{1,100} not found in Active Directory tenant\b",
                r"Application with identifier '[^']{0,200}' was not found in the directory\b",
                r"service principal[^.\n]{0,120}?\b(?:does not exist|was not found|not found|could not be found)\b",
                words=("found", "exist"))),
    # --- 6. The cluster's credential refused without a verdict: adal's "Refresh request failed. Status Code = '401'"
    # (the cloud provider's azure.BearerAuthorizer wrapping, or AKS's ServicePrincipalValidationClientError) with no
    # AADSTS code. AKS's maintainers read it as a deleted service principal, a changed password or an expired one
    # (Azure/AKS#339): the text cannot tell, so the caller confirms before acting. Only in AKS context: Terraform's,
    # Rancher's or an ingress controller's own refresh fails with the same words.
    Rule("credential_rejected", FailureKind.CREDENTIAL_REJECTED,
         "The cluster's credential was refused (HTTP 401 on its token refresh) without Entra ID saying why: invalid, "
         "expired or deleted; act only once Graph or a sign-in confirms which.",
         # adal through azure.BearerAuthorizer; older autorest straight from the token endpoint.
         Phrase(r"refresh request failed\. status code = '401'",
                r"/oauth2/token[^\s]{0,40} failed with 401 unauthorized",
                words=("401",), context=_AKS_SP_CONTEXT)),
    Rule("sp_validation_other", SP_OTHER,
         "AKS could not validate the service principal, but the error does not say the secret is bad; "
         "it is not rotated.", Codes("ServicePrincipalValidationClientError")),
)


def _index_rules(rules: tuple[Rule, ...]) -> tuple[dict[bytes, tuple[int, ...]], tuple[int, ...]]:
    """Trigger word -> positions of the rules it can fire; and the positions of the AADSTS rules."""
    by_word: dict[bytes, list[int]] = {}
    for position, rule in enumerate(rules):
        for word in rule.matcher.triggers or ():
            by_word.setdefault(word, []).append(position)
    aadsts = tuple(position for position, rule in enumerate(rules) if rule.matcher.triggers is None)
    return {word: tuple(positions) for word, positions in by_word.items()}, aadsts


# Most inputs hold one or two trigger words, so only a few rules are ever tried.
_RULES_BY_WORD, _AADSTS_RULES = _index_rules(RULES)
_TRIGGER_WORDS = frozenset(_RULES_BY_WORD)  # a set, so that intersecting walks the smaller side


# ------------------------------------------------------------------------------------- entry points

def classify_message(message: str) -> Classification:
    """Classify free error text (JSON inside it is read too)."""
    if not isinstance(message, str):
        return _nothing(f"No error text to classify (got {type(message).__name__}).")
    if not message.strip():
        return _nothing("The error text is empty.")
    return _classify_tree(message[:MAX_TEXT_CHARS])


def classify_status_message(status_message: str | dict) -> Classification:
    """Classify an Activity Log ``properties.statusMessage``: a JSON string, or the dict it encodes.

    A string that is not JSON is read as free text.
    """
    if isinstance(status_message, dict):
        return _classify_tree(status_message)
    if not isinstance(status_message, str):
        return _nothing(f"No status message to classify (got {type(status_message).__name__}).")
    text = status_message[:MAX_TEXT_CHARS]
    stripped = text.lstrip()
    if not stripped:
        return _nothing("The status message is empty.")
    if stripped[0] in '{["':  # only then can it be a JSON document worth parsing
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            return _classify_tree(text)
        return _classify_tree(parsed)
    return _classify_tree(text)


# Where an Activity Log entry holds the failure text; responseBody is a fallback some entries carry.
_ENTRY_TEXT_KEYS = ("statusMessage", "responseBody")


def classify_activity_log_entry(entry: dict) -> Classification:
    """Classify an Activity Log entry as the REST API returns it (the cause is in ``properties.statusMessage``)."""
    if not isinstance(entry, dict):
        return _nothing(f"Not an Activity Log entry (got {type(entry).__name__}).")
    properties = entry.get("properties")
    if not isinstance(properties, dict):
        return _nothing("The Activity Log entry has no properties, so no status message to classify.")
    for key in _ENTRY_TEXT_KEYS:
        value = properties.get(key)
        if isinstance(value, str | dict) and value:
            return classify_status_message(value)
    return _nothing("The Activity Log entry has no status message.")


_GUID = r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"
_NAMED_APP = re.compile(rf"(?:added to app|keys for app|Application with identifier)\s*'({_GUID})'")


def apps_named(text: str) -> frozenset[str]:
    """The application ids (lower case) that Entra ID's AADSTS texts in `text` name as the one whose secret failed.

    Current AADSTS7000215/7000222/700016 texts say which app they are about; an id here that is not the
    cluster's clientId means the failing secret is another app's (e.g. a legacy Azure AD server app).
    """
    return frozenset(m.lower() for m in _NAMED_APP.findall(text[:MAX_TEXT_CHARS]))


def refine_with_credential_dates(c: Classification, *, newest_password_end: datetime | None,
                                 now: datetime) -> Classification:
    """Call a bad or refused credential expired when the application's newest password ended before ``now``.

    Pass the end date of the newest password of the cluster's own application (the app whose appId is the
    cluster's ``servicePrincipalProfile.clientId``, as Graph lists its ``passwordCredentials``): when even the
    newest one has ended, every one has, so the cluster's secret has expired.

    - ``INVALID_SECRET``: Entra ID answers AADSTS7000215 ("invalid") for expired secrets too; Graph's end dates
      tell the two apart. It becomes ``EXPIRED_SECRET``; either way the action is ``ROTATE_SECRET``. When it (or an
      ``EXPIRED_SECRET`` read from the text) comes back while a password is still valid, only the text says the
      secret is bad: where the caller holds the secret it gave the cluster, it signs in with it before acting.
    - ``CREDENTIAL_REJECTED`` (action ``CONFIRM``): a 401 on the cluster's token refresh, cause unknown. It becomes
      ``EXPIRED_SECRET`` (``ROTATE_SECRET``). When it comes back unchanged, the dates did not confirm anything
      and the caller must not rotate on the text: if Graph has no such application, treat it as ``SP_NOT_FOUND``
      (a new service principal, for a person); if a password is still valid, sign in with the secret stored for
      the cluster (a refusal confirms a bad secret: rotate; a success means the cluster holds another, stale
      secret or the refusal was transient: leave it to a person); with no stored secret, leave it to a person.
      An application with no password at all (``None`` here) is for the caller to judge: nothing is guessed.

    Other kinds, a missing date or a date still ahead leave ``c`` unchanged; the code and evidence are kept. A
    naive datetime is taken as UTC.
    """
    refinable = c.kind is FailureKind.INVALID_SECRET or c.kind is FailureKind.CREDENTIAL_REJECTED
    if not refinable or newest_password_end is None:
        return c
    end, current = _aware(newest_password_end), _aware(now)
    if end >= current:
        return c
    if c.kind is FailureKind.CREDENTIAL_REJECTED:
        reason = (f"The cluster's credential was refused (HTTP 401 on its token refresh) and its application's "
                  f"newest client secret ended {end.isoformat()}, so the secret has expired.")
    else:
        reason = (f"{c.reason} The application's newest client secret ended {end.isoformat()}, "
                  "so the secret has expired.")
    return replace(c, kind=FailureKind.EXPIRED_SECRET, action=ACTION_FOR_KIND[FailureKind.EXPIRED_SECRET],
                   reason=reason)


# ---------------------------------------------------------------------------------------- internals

def _classify_tree(tree: Any) -> Classification:
    scanned = _Scanned(tree)
    if not scanned.texts:
        return _nothing("The error text holds no error message.")
    candidates = {position for word in scanned.words & _TRIGGER_WORDS for position in _RULES_BY_WORD[word]}
    if scanned.aadsts:
        candidates.update(_AADSTS_RULES)
    for position in sorted(candidates):  # table order is the policy
        rule = RULES[position]
        hit = rule.matcher.find(scanned)
        if hit is not None:
            _, evidence, code = hit
            return Classification(rule.kind, ACTION_FOR_KIND[rule.kind], code, rule.description, _evidence(evidence))
    code = scanned.innermost_code()
    reason = "No service-principal credential failure in the error text"
    return _nothing(f"{reason} (innermost error code {code})." if code else f"{reason}.", code=code)


def _nothing(reason: str, *, code: str = "") -> Classification:
    return Classification(FailureKind.NOT_SP, Action.NONE, code, reason, "")


# Keys that never carry a cause (Entra ID's trace fields); skipping them keeps the scanned text short.
_UNREAD_KEYS = frozenset({"code", "trace_id", "correlation_id", "timestamp", "error_uri", "error_codes"})
_AADSTS = re.compile(r"aadsts(\d{5,7})(?!\d)")  # on the lowercased text; a literal prefix keeps it fast
# Stop at a quote or backslash as well: the sentence may sit inside escaped JSON.
_AADSTS_SENTENCE = re.compile(r"aadsts\d+[^.\r\n\"\\]{0,160}\.?")
# Where free text names a code: Code="X", ERROR CODE: X, SubCode: X, "(X) message". On the lowercased text. An HTTP
# status ("StatusCode=401", autorest's "WithErrorUnlessStatusCode: POST ...") is not an error code; it is filtered out
# after matching, since a lookbehind in the pattern would cost the literal search its speed.
_CODE_IN_TEXT = (re.compile(r"code[^a-z0-9]{0,10}([a-z][a-z0-9]{2,})"), re.compile(r"\(([a-z][a-z0-9]{2,})\)"))
# Bytes that separate words: everything but ASCII letters and digits (the text is lowercased first).
_TO_SPACE = bytes(byte if chr(byte).isascii() and chr(byte).isalnum() and not chr(byte).isupper() else 32
                  for byte in range(256))
_DECODER = json.JSONDecoder()


class _Scanned:
    """The fragments of one input, joined once so that every rule scans one string.

    ``text`` joins the fragments with "\\n" (fragments never contain one, so no match spans two);
    ``lowered`` is ``text`` lowercased with the same offsets; ``words`` is the set of its words.
    Each fragment belongs to a scope: the input's root, or a JSON object (an error object) whose scope
    is nested in the one around it, so ``parents`` is a tree and a fragment's error chain is its scope
    and that scope's ancestors.
    """

    __slots__ = ("texts", "codes", "scopes", "parents", "explicit_codes", "text", "lowered", "starts", "words",
                 "aadsts", "_budget", "_found_in", "_found_in_fragment", "_found_in_scope", "_scope_fragments")

    def __init__(self, tree: Any) -> None:
        self.texts: list[str] = []
        self.codes: list[str] = []  # per fragment: the code of its nearest enclosing error object
        self.scopes: list[int] = []  # per fragment: its scope
        self.parents: list[int] = [-1]  # per scope: the enclosing scope; scope 0 is the root
        self.explicit_codes: list[str] = []  # values of ``code`` fields, outer first
        self._budget = MAX_TEXT_CHARS
        self._found_in: dict[re.Pattern[str], tuple[frozenset[int], frozenset[int]]] = {}
        self._found_in_fragment: dict[tuple[re.Pattern[str], int], bool] = {}
        self._found_in_scope: dict[tuple[re.Pattern[str], int], bool] = {}
        self._scope_fragments: dict[int, list[int]] = {}  # per scope: its own fragments (not its children's)
        self._walk(tree, "", 0, 0)
        self.text = "\n".join(self.texts)
        self.lowered = self.text.lower()
        if len(self.lowered) != len(self.text):  # a few letters lowercase to two characters: keep offsets equal
            self.texts = [text.lower() if len(text.lower()) != len(text) else text for text in self.texts]
            self.text = "\n".join(self.texts)
            self.lowered = self.text.lower()
        self.starts: list[int] = []
        offset = 0
        for text in self.texts:
            self.starts.append(offset)
            offset += len(text) + 1
        self.words = frozenset(self.lowered.encode("ascii", "replace").translate(_TO_SPACE).split())
        # (number, offset, fragment) of each AADSTS code, the first of each number in each fragment, in text order.
        self.aadsts: list[tuple[str, int, int]] = []
        if "aadsts" in self.lowered:
            seen: set[tuple[str, int]] = set()
            for match in _AADSTS.finditer(self.lowered):
                number, index = match.group(1), self.fragment_index(match.start())
                if (number, index) not in seen:
                    seen.add((number, index))
                    self.aadsts.append((number, match.start(), index))

    def fragment_index(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset) - 1

    def in_chain(self, index: int, pattern: re.Pattern[str]) -> bool:
        """Whether ``pattern`` matches in fragment ``index``'s error object or in one enclosing it."""
        if self._fragment_matches(index, pattern):  # most often the context is in the hit's own text
            return True
        if len(self.texts) == 1:  # free text: nothing else to scan
            return False
        # Innermost first: AKS's own error object (its code, its message) is usually right around the hit, so the
        # long texts further out are seldom searched. Each scope is judged once per pattern, each fragment searched
        # once: never more than one scan of the text, however many hits ask.
        scope = self.scopes[index]
        while scope >= 0:
            key = (pattern, scope)
            known = self._found_in_scope.get(key)
            if known is None:
                known = self._found_in_scope[key] = any(
                    self._fragment_matches(fragment, pattern) for fragment in self._scope_fragments.get(scope, ()))
            if known:
                return True
            scope = self.parents[scope]
        return False

    def related(self, index: int, pattern: re.Pattern[str]) -> bool:
        """``in_chain``, or ``pattern`` matches inside fragment ``index``'s error object (its details, its JSON)."""
        _, below_or_at = self._scopes_matching(pattern)
        return self.scopes[index] in below_or_at or self.in_chain(index, pattern)

    def _fragment_matches(self, index: int, pattern: re.Pattern[str]) -> bool:
        """Whether ``pattern`` matches in fragment ``index``; searched once per fragment, however many hits it has."""
        key = (pattern, index)
        known = self._found_in_fragment.get(key)
        if known is None:
            start = self.starts[index]
            known = self._found_in_fragment[key] = (
                pattern.search(self.lowered, start, start + len(self.texts[index])) is not None)
        return known

    def _scopes_matching(self, pattern: re.Pattern[str]) -> tuple[frozenset[int], frozenset[int]]:
        """(scopes with a match, those scopes and all their ancestors); one scan of the text per pattern."""
        cached = self._found_in.get(pattern)
        if cached is not None:
            return cached
        found: set[int] = set()
        position = 0
        while (match := pattern.search(self.lowered, position)) is not None:
            index = self.fragment_index(match.start())
            found.add(self.scopes[index])
            position = self.starts[index] + len(self.texts[index]) + 1  # one hit per fragment is enough
        below_or_at: set[int] = set()
        for scope in found:
            while scope >= 0 and scope not in below_or_at:
                below_or_at.add(scope)
                scope = self.parents[scope]
        result = self._found_in[pattern] = (frozenset(found), frozenset(below_or_at))
        return result

    def code_near(self, index: int, offset: int) -> str:
        """The code a hit at ``offset`` belongs to: its error object's, else the last one named before it."""
        if self.codes[index]:
            return self.codes[index]
        return self._named_code(self.starts[index], offset)

    def innermost_code(self) -> str:
        return self.explicit_codes[-1] if self.explicit_codes else self._named_code(0, len(self.lowered))

    def _named_code(self, start: int, end: int) -> str:
        lowered = self.lowered
        named = [(match.start(1), match.end(1)) for pattern in _CODE_IN_TEXT
                 for match in pattern.finditer(lowered, start, end)
                 if not lowered.endswith(("status", "status "), max(0, match.start() - 7), match.start())]
        if not named:
            return ""
        first, last = max(named)
        return self.text[first:last]

    def _walk(self, node: Any, code: str, depth: int, scope: int) -> None:
        """Collect every string under ``node`` with the code of its nearest enclosing error object and its scope."""
        # isinstance with single types: a union or tuple costs more, and this runs for every node.
        if depth > MAX_DEPTH or len(self.texts) >= MAX_FRAGMENTS or self._budget <= 0:
            return
        if isinstance(node, dict):
            parent, scope = scope, len(self.parents)
            self.parents.append(parent)
            own = node.get("code")
            if isinstance(own, str) and own.strip():
                code = own.strip()
                self.explicit_codes.append(code)
                self._add(code, code, scope)  # so that a code whose message is empty is still seen
            for key, value in node.items():
                if key in _UNREAD_KEYS:
                    continue
                if isinstance(value, str):
                    self._text(value, code, depth, scope)
                elif isinstance(value, dict) or isinstance(value, list):
                    self._walk(value, code, depth + 1, scope)
        elif isinstance(node, list):
            for item in node:
                if isinstance(item, str):
                    self._text(item, code, depth, scope)
                elif isinstance(item, dict) or isinstance(item, list):
                    self._walk(item, code, depth + 1, scope)
        elif isinstance(node, str):
            self._text(node, code, depth, scope)

    def _text(self, text: str, code: str, depth: int, scope: int) -> None:
        documents: list[Any] = []
        if "{" in text or "[" in text:
            text, documents = _split_embedded_json(text)
        if text and not text.isspace():
            self._add(text, code, scope)
        for document in documents:  # inside this text's error object: the text around it is in their chain
            self._walk(document, code, depth + 1, scope)

    def _add(self, text: str, code: str, scope: int) -> None:
        if "\n" in text or "\r" in text:
            text = text.replace("\r", " ").replace("\n", " ")
        text = text[:self._budget]
        self._budget -= len(text) + 1
        self.texts.append(text)
        self.codes.append(code)
        self._scope_fragments.setdefault(scope, []).append(len(self.scopes))
        self.scopes.append(scope)


def _split_embedded_json(text: str) -> tuple[str, list[Any]]:
    """Cut JSON objects and arrays out of ``text``: (the text around them, the parsed documents)."""
    documents: list[Any] = []
    search_from = 0
    for _ in range(MAX_EMBEDDED_JSON):
        brace, bracket = text.find("{", search_from), text.find("[", search_from)
        start = brace if bracket < 0 or 0 <= brace < bracket else bracket
        if start < 0:
            break
        try:
            document, end = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):
            search_from = start + 1
            continue
        if isinstance(document, (dict, list)) and document:
            documents.append(document)
            text = f"{text[:start]} {text[end:]}"
            search_from = start
        else:
            search_from = end
    return text, documents


# Entra ID client secrets look like "abc8Q~" and 31 to 34 more characters; never let one into evidence.
_SECRET_SHAPE = re.compile(r"[A-Za-z0-9_\-.~]{3}\dQ~[A-Za-z0-9_\-.~]{31,34}")


def _evidence(matched: str) -> str:
    evidence = " ".join(matched.split())
    if "Q~" in evidence:
        evidence = _SECRET_SHAPE.sub("[redacted]", evidence)
    if len(evidence) > EVIDENCE_LIMIT:
        evidence = evidence[:EVIDENCE_LIMIT - 1].rstrip() + "…"
    return evidence


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
