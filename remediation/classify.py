"""Decide from an AKS failure's error text whether the cluster's service-principal secret is bad.

A wrong "rotate" resets the cluster's credentials and re-images every node of a production
cluster, so the classifier is built for precision: it answers ``ROTATE_SECRET`` only when the
text names a bad client secret, and a failure with a known other cause (quota, subnet, VM
size, policy, the caller's own permissions, an operation already in progress, an RBAC gap or
replication delay of the service principal) never rotates, even when it also mentions
credentials.

How it reads a failure:

1. The input (free text, an Activity Log ``properties.statusMessage`` JSON string or dict, or a
   whole Activity Log entry) is walked into fragments: every string in the JSON tree, with the
   ``code`` of the nearest enclosing error object. JSON found inside strings (AKS often puts a
   JSON document in ``message``, or ``Response body: {...}`` mid-sentence) is parsed and walked
   too, at any depth.
2. ``RULES`` is an ordered table. The first rule that matches anywhere decides the kind; the
   order is the policy: trap codes, trap phrases, Entra ID (AADSTS) codes, service-principal
   codes, then generic wording. Anything else is ``NOT_SP``.

Guarantees: pure (no I/O, no logging); never raises for any input; bounded work (input is cut at
``MAX_TEXT_CHARS``, JSON nesting at ``MAX_DEPTH``); ``evidence`` is at most ``EVIDENCE_LIMIT``
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
    SP_OTHER = "sp_other"
    NOT_SP = "not_sp"


class Action(StrEnum):
    ROTATE_SECRET = "rotate_secret"
    NEW_SERVICE_PRINCIPAL = "new_service_principal"
    NONE = "none"


ACTION_FOR_KIND: dict[FailureKind, Action] = {
    FailureKind.INVALID_SECRET: Action.ROTATE_SECRET,
    FailureKind.EXPIRED_SECRET: Action.ROTATE_SECRET,
    FailureKind.SP_NOT_FOUND: Action.NEW_SERVICE_PRINCIPAL,
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
    """Any of these error codes, as a whole word anywhere: a ``code`` field, ``Code="X"``, ``(X)``... (any case)."""

    def __init__(self, *codes: str) -> None:
        self.codes = codes
        self._words = frozenset(code.lower().encode() for code in codes)
        self.triggers: frozenset[bytes] | None = self._words

    def find(self, scanned: _Scanned) -> tuple[int, str, str] | None:
        found = self._words.intersection(scanned.words)
        if not found:
            return None
        # Report the outermost mention, as written.
        offset, length = min((scanned.lowered.find(word.decode()), len(word)) for word in found)
        code = scanned.text[offset:offset + length]
        return offset, code, code


class Aadsts:
    """Entra ID error codes (``AADSTS7000215``); the evidence runs to the end of the code's sentence."""

    def __init__(self, *numbers: str, any_number: bool = False) -> None:
        self.numbers = frozenset(numbers)
        self.any_number = any_number
        self.triggers: frozenset[bytes] | None = None

    def find(self, scanned: _Scanned) -> tuple[int, str, str] | None:
        for number, offset in scanned.aadsts.items():  # in order of first appearance
            if self.any_number or number in self.numbers:
                sentence = _AADSTS_SENTENCE.match(scanned.lowered, offset)
                end = sentence.end() if sentence else offset + 6 + len(number)
                return offset, scanned.text[offset:end], f"AADSTS{number}"
        return None


class Phrase:
    """Case-insensitive patterns, tried (by the table) only when one of ``words`` occurs in the text.

    The patterns run on the lowercased text and each starts with a literal, so the regex engine
    can jump to candidates instead of trying every position (the difference is ~30x). They stay
    inside one sentence (``[^.\\n]``) so that words of unrelated sentences never combine.
    ``context``, when given, must also match the fragment of the hit or its error code.
    """

    def __init__(self, *patterns: str, words: tuple[str, ...], context: str | None = None) -> None:
        self.patterns = tuple(_lowercase_pattern(pattern) for pattern in patterns)
        self.triggers: frozenset[bytes] | None = frozenset(word.encode() for word in words)
        self.context = _lowercase_pattern(context) if context else None

    def find(self, scanned: _Scanned) -> tuple[int, str, str] | None:
        for pattern in self.patterns:
            for match in pattern.finditer(scanned.lowered):
                index = scanned.fragment_index(match.start())
                if self.context is not None and not (self.context.search(scanned.lowered_fragment(index))
                                                     or self.context.search(scanned.codes[index].lower())):
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
_CALLER = "The caller's own identity lacks permission for the operation; the cluster's secret is not involved."
_NOT_FOUND = r"(?:not found|does not exist|could not be found)"

NOT_SP, SP_OTHER = FailureKind.NOT_SP, FailureKind.SP_OTHER

# Order is the policy: the first rule that matches decides.
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
    Rule("caller_authorization", NOT_SP, _CALLER, Codes("AuthorizationFailed", "LinkedAuthorizationFailed")),
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
    # --- 3. Entra ID's own verdict: outranks the generic wording AKS wraps it in. -------------------
    Rule("aadsts_expired", FailureKind.EXPIRED_SECRET,
         "Entra ID rejected the cluster's client secret because it has expired.", Aadsts("7000222")),
    Rule("aadsts_invalid", FailureKind.INVALID_SECRET,
         "Entra ID rejected the cluster's client secret as invalid (rotated elsewhere, mistyped or expired).",
         Aadsts("7000215", "50012")),
    Rule("aadsts_app_not_found", FailureKind.SP_NOT_FOUND,
         "Entra ID has no application with the cluster's client id in the tenant (deleted, or the wrong tenant).",
         Aadsts("700016", "70001")),
    # A token request that never got Entra ID's verdict says nothing about the secret.
    Rule("aad_unreachable", SP_OTHER,
         "Azure could not reach Entra ID to check the service principal (a network or service fault); "
         "the secret was not judged, so it is not rotated.",
         Phrase(r"i/o timeout", r"timed out", r"timeout\b", r"context deadline exceeded", r"connection refused",
                r"connection reset", r"no such host", r"dial tcp", r"TLS handshake", r"temporarily unavailable",
                words=("timeout", "timed", "deadline", "refused", "reset", "host", "dial", "tls", "unavailable"),
                context=r"ServicePrincipalValidationClientError|error getting token|Refresh request failed|\badal\b"
                        r"|login\.microsoftonline|ServicePrincipalProfile|service principal")),
    Rule("aadsts_other", SP_OTHER,
         "Entra ID refused the service principal's sign-in for a reason other than a bad secret (see the AADSTS "
         "code); rotating would not help.", Aadsts(any_number=True)),
    # --- 4. Service-principal codes without an Entra ID verdict. ------------------------------------
    Rule("invalid_secret_code", FailureKind.INVALID_SECRET,
         "AKS reported the cluster's service-principal secret as invalid.",
         Codes("InvalidClientSecret", "InvalidServicePrincipalSecret", "InvalidServicePrincipalCredentials",
               "InvalidServicePrincipalCredential", "ServicePrincipalCredentialsInvalid")),
    Rule("sp_not_found_code", FailureKind.SP_NOT_FOUND,
         "AKS could not find the cluster's service principal in the tenant.", Codes("ServicePrincipalNotFound")),
    # --- 5. Generic wording, last. --------------------------------------------------------------------
    Rule("expired_phrase", FailureKind.EXPIRED_SECRET, "The cluster's client secret has expired.", Phrase(
        # Always "client secret": a Key Vault secret that expired is not the cluster's credential.
        r"client secret keys?\b[^.\n]{0,80}?\b(?:are|is) expired\b",
        r"client secret[^.\n]{0,40}?\b(?:has|have|had) expired\b", r"expired client secrets?\b",
        words=("expired",))),
    Rule("invalid_phrase", FailureKind.INVALID_SECRET,
         "AKS reported the cluster's service-principal credentials as invalid.", Phrase(
             r"The credentials in ServicePrincipalProfile were invalid", r"invalid client secret\b",
             r"client secret[^.\n]{0,40}?\b(?:is|was) (?:invalid|not valid)\b",
             words=("serviceprincipalprofile", "secret"))),
    Rule("sp_not_found_phrase", FailureKind.SP_NOT_FOUND,
         "The cluster's service principal was not found in the tenant.",
         Phrase(r"Service principal clientID: ?[^\s]{1,100} not found in Active Directory tenant\b",
                r"Application with identifier '[^']{0,200}' was not found in the directory\b",
                r"service principal[^.\n]{0,120}?\b(?:does not exist|was not found|not found|could not be found)\b",
                words=("found", "exist"))),
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
    """Call an invalid secret expired when the application's newest password ended before ``now``.

    Entra ID answers AADSTS7000215 ("invalid") for expired secrets too; Graph's end dates tell the
    two apart. Other kinds, a missing date or a date still ahead leave ``c`` unchanged. A naive
    datetime is taken as UTC.
    """
    if c.kind is not FailureKind.INVALID_SECRET or newest_password_end is None:
        return c
    end, current = _aware(newest_password_end), _aware(now)
    if end >= current:
        return c
    return replace(c, kind=FailureKind.EXPIRED_SECRET, action=ACTION_FOR_KIND[FailureKind.EXPIRED_SECRET],
                   reason=f"{c.reason} The application's newest client secret ended {end.isoformat()}, "
                          "so the secret has expired.")


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
# Where free text names a code: Code="X", ERROR CODE: X, SubCode: X, "(X) message". On the lowercased text.
_CODE_IN_TEXT = (re.compile(r"code[^a-z0-9]{0,10}([a-z][a-z0-9]{2,})"), re.compile(r"\(([a-z][a-z0-9]{2,})\)"))
# Bytes that separate words: everything but ASCII letters and digits (the text is lowercased first).
_TO_SPACE = bytes(byte if chr(byte).isascii() and chr(byte).isalnum() and not chr(byte).isupper() else 32
                  for byte in range(256))
_DECODER = json.JSONDecoder()


class _Scanned:
    """The fragments of one input, joined once so that every rule scans one string.

    ``text`` joins the fragments with "\\n" (fragments never contain one, so no match spans two);
    ``lowered`` is ``text`` lowercased with the same offsets; ``words`` is the set of its words.
    """

    __slots__ = ("texts", "codes", "explicit_codes", "text", "lowered", "starts", "words", "aadsts", "_budget")

    def __init__(self, tree: Any) -> None:
        self.texts: list[str] = []
        self.codes: list[str] = []  # per fragment: the code of its nearest enclosing error object
        self.explicit_codes: list[str] = []  # values of ``code`` fields, outer first
        self._budget = MAX_TEXT_CHARS
        self._walk(tree, "", 0)
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
        self.aadsts: dict[str, int] = {}
        if "aadsts" in self.lowered:
            for match in _AADSTS.finditer(self.lowered):
                self.aadsts.setdefault(match.group(1), match.start())

    def fragment_index(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset) - 1

    def lowered_fragment(self, index: int) -> str:
        start = self.starts[index]
        return self.lowered[start:start + len(self.texts[index])]

    def code_near(self, index: int, offset: int) -> str:
        """The code a hit at ``offset`` belongs to: its error object's, else the last one named before it."""
        if self.codes[index]:
            return self.codes[index]
        return self._named_code(self.starts[index], offset)

    def innermost_code(self) -> str:
        return self.explicit_codes[-1] if self.explicit_codes else self._named_code(0, len(self.lowered))

    def _named_code(self, start: int, end: int) -> str:
        named = [(match.start(1), match.end(1)) for pattern in _CODE_IN_TEXT
                 for match in pattern.finditer(self.lowered, start, end)]
        if not named:
            return ""
        first, last = max(named)
        return self.text[first:last]

    def _walk(self, node: Any, code: str, depth: int) -> None:
        """Collect every string under ``node`` with the code of its nearest enclosing error object."""
        # isinstance with single types: a union or tuple costs more, and this runs for every node.
        if depth > MAX_DEPTH or len(self.texts) >= MAX_FRAGMENTS or self._budget <= 0:
            return
        if isinstance(node, dict):
            own = node.get("code")
            if isinstance(own, str) and own.strip():
                code = own.strip()
                self.explicit_codes.append(code)
                self._add(code, code)  # so that a code whose message is empty is still seen
            for key, value in node.items():
                if key in _UNREAD_KEYS:
                    continue
                if isinstance(value, str):
                    self._text(value, code, depth)
                elif isinstance(value, dict) or isinstance(value, list):
                    self._walk(value, code, depth + 1)
        elif isinstance(node, list):
            for item in node:
                if isinstance(item, str):
                    self._text(item, code, depth)
                elif isinstance(item, dict) or isinstance(item, list):
                    self._walk(item, code, depth + 1)
        elif isinstance(node, str):
            self._text(node, code, depth)

    def _text(self, text: str, code: str, depth: int) -> None:
        documents: list[Any] = []
        if "{" in text or "[" in text:
            text, documents = _split_embedded_json(text)
        if text and not text.isspace():
            self._add(text, code)
        for document in documents:
            self._walk(document, code, depth + 1)

    def _add(self, text: str, code: str) -> None:
        if "\n" in text or "\r" in text:
            text = text.replace("\r", " ").replace("\n", " ")
        text = text[:self._budget]
        self._budget -= len(text) + 1
        self.texts.append(text)
        self.codes.append(code)


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
