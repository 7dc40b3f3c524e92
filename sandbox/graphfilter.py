"""Microsoft Graph's `$filter` on applications and service principals: the clauses Entra ID answers without advanced
query parameters, which are what the Azure CLI and the SDKs send.

Supported, as the application and servicePrincipal resource pages list them ("Supports $filter (eq, ...
startsWith)"), and joined with `and`:

- `prop eq 'value'` on `id`, `appId`, `displayName` (both resources), `uniqueName` (applications),
  `servicePrincipalType` (service principals);
- `startswith(displayName,'value')`;
- a lambda on a string collection, `identifierUris/any(s:s eq 'value')` (applications) and
  `servicePrincipalNames/any(c:c eq 'value')` (service principals: the appId and the application's identifier URIs).

Anything else answers Graph's 400 `Request_UnsupportedQuery`, "Unsupported or invalid query filter clause specified
for property '<p>' of resource '<Resource>'." (Graph's answer, quoted in
microsoftgraph/microsoft-graph-docs-contrib#1726). Assumed: the same answer for a property the resource does not
have, or a clause the sandbox cannot read (Graph then names the property it stumbled on; the sandbox names the first
word of the clause); and that string comparisons ignore case, as Entra ID's directory does (clients do not rely on it:
`az ad app create` lists by `startswith(displayName,...)` and keeps the exact matches itself).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sandbox.state import ApiError

_LITERAL = r"'((?:[^']|'')*)'"
_EQ = re.compile(rf"^(?P<prop>\w+)\s+eq\s+{_LITERAL}$")
_STARTSWITH = re.compile(rf"^startswith\(\s*(?P<prop>\w+)\s*,\s*{_LITERAL}\s*\)$", re.IGNORECASE)
_ANY = re.compile(rf"^(?P<prop>\w+)/any\(\s*(?P<var>\w+)\s*:\s*(?P=var)\s+eq\s+{_LITERAL}\s*\)$")
_AND_OR_LITERAL = re.compile(r"'(?:[^']|'')*'|\s+and\s+", re.IGNORECASE)
_FIRST_WORD = re.compile(r"^\W*(?:startswith\(\s*)?(\w+)", re.IGNORECASE)


@dataclass(frozen=True)
class Filterable:
    """What one resource supports: properties for `eq`, for `startswith`, and string collections for `any`."""

    resource: str
    eq: frozenset[str]
    startswith: frozenset[str]
    any_eq: frozenset[str]


APPLICATION = Filterable("Application", frozenset({"id", "appId", "displayName", "uniqueName"}),
                         frozenset({"displayName"}), frozenset({"identifierUris"}))
SERVICE_PRINCIPAL = Filterable("ServicePrincipal", frozenset({"id", "appId", "displayName", "servicePrincipalType"}),
                               frozenset({"displayName"}), frozenset({"servicePrincipalNames"}))


@dataclass(frozen=True)
class Clause:
    prop: str
    op: str  # "eq", "startswith" or "any"
    value: str

    def holds(self, body: dict[str, Any]) -> bool:
        """Whether the object (as Graph shows it) passes this clause."""
        wanted = self.value.lower()
        found = body.get(self.prop)
        if self.op == "any":
            return any(isinstance(v, str) and v.lower() == wanted for v in found or ())
        if not isinstance(found, str):
            return False
        return found.lower().startswith(wanted) if self.op == "startswith" else found.lower() == wanted


@dataclass(frozen=True)
class Filter:
    clauses: tuple[Clause, ...] = ()

    def matches(self, body: dict[str, Any]) -> bool:
        return all(c.holds(body) for c in self.clauses)

    def value_of(self, prop: str) -> str | None:
        """The value an `eq` clause asks `prop` to have, if there is one (a lookup by key)."""
        return next((c.value for c in self.clauses if c.op == "eq" and c.prop == prop), None)


def parse_filter(text: str | None, supported: Filterable) -> Filter:
    """The `$filter` text (None: no filter) as clauses the resource supports; ApiError as Graph refuses it."""
    if text is None:
        return Filter()
    return Filter(tuple(_clause(part.strip(), supported) for part in _conjuncts(text)))


def _conjuncts(text: str) -> list[str]:
    """The text split at each `and` outside a string literal."""
    parts, start = [], 0
    for match in _AND_OR_LITERAL.finditer(text):
        if not match.group().startswith("'"):
            parts.append(text[start:match.start()])
            start = match.end()
    return [*parts, text[start:]]


def _clause(text: str, supported: Filterable) -> Clause:
    for op, pattern, allowed in (("eq", _EQ, supported.eq), ("startswith", _STARTSWITH, supported.startswith),
                                 ("any", _ANY, supported.any_eq)):
        match = pattern.match(text)
        if match and match.group("prop") in allowed:
            return Clause(match.group("prop"), op, match.groups()[-1].replace("''", "'"))
    word = _FIRST_WORD.match(text)
    raise unsupported(word.group(1) if word else "", supported.resource)


def unsupported(prop: str, resource: str) -> ApiError:
    return ApiError(400, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause specified for "
                    f"property '{prop}' of resource '{resource}'.")
