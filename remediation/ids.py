"""Parsing of Azure resource ids into the one kind the remediator acts on."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from remediation.errors import InvalidInputError

_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# ARM ids are case-insensitive. The names inside are checked by `name_problem` (ARM's rules), not by this shape.
_RESOURCE_ID = re.compile(
    rf"/subscriptions/(?P<sub>{_GUID})/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/(?P<provider>[A-Za-z0-9.]+)/(?P<type>[A-Za-z0-9]+)/(?P<name>[^/]+)(?P<rest>(/[^/]+)*)",
    re.IGNORECASE | re.ASCII,
)
# Microsoft Learn, "Naming rules and restrictions for Azure resources": a resource group has 1-90 letters, digits,
# underscores, parentheses, hyphens and periods and does not end with a period (ARM also takes Unicode letters; we
# take ASCII only, by choice); an AKS cluster has 1-63 letters, digits, underscores and hyphens, beginning and ending
# with a letter or digit. A name ending in a period (`.`, `..` among them) would let an HTTP client collapse a dot
# segment, so that ARM is sent another path than the one the scope was checked on.
_RESOURCE_GROUP = re.compile(r"[-A-Za-z0-9_.()]{0,89}[-A-Za-z0-9_()]", re.ASCII)
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9](?:[-_A-Za-z0-9]{0,61}[A-Za-z0-9])?", re.ASCII)
_GUID_ONLY = re.compile(_GUID, re.ASCII)
MAX_ID_LENGTH = 1024


def is_guid(value: object) -> bool:
    """A GUID in its 8-4-4-4-12 hex form and nothing else (no braces, no space, no trailing newline)."""
    return isinstance(value, str) and _GUID_ONLY.fullmatch(value) is not None


def subscription_of(scope: str) -> str:
    """The subscription id an ARM scope or resource id names, lower-case; "" for one above any subscription (a
    management group, the tenant root)."""
    parts = scope.split("/")
    return parts[2].lower() if len(parts) > 2 and parts[0] == "" and parts[1].lower() == "subscriptions" else ""


@dataclass(frozen=True)
class ClusterId:
    """A managed cluster's ARM id, with the casing ARM and Key Vault need."""

    subscription_id: str
    resource_group: str
    name: str

    @classmethod
    def parse(cls, value: object, *, allow_child: bool = False) -> ClusterId:
        """Parse a managed cluster's ARM id, case-insensitively, as ARM does.

        Form: /subscriptions/{guid}/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters/{name}.
        The subscription id is normalised to lower case (ARM ids are case-insensitive; `key` compares them so).
        With `allow_child`, the id of a resource under the cluster (an agent pool) gives its cluster.
        Raises InvalidInputError for anything else, saying what is wrong.
        """
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError("clusterResourceId must be a non-empty string", code="InvalidClusterResourceId")
        if len(value) > MAX_ID_LENGTH:
            raise InvalidInputError("clusterResourceId is too long to be an ARM id", code="InvalidClusterResourceId")
        if not (value.isascii() and value.isprintable()):
            raise InvalidInputError("clusterResourceId holds a character outside printable ASCII",
                                    code="InvalidClusterResourceId")
        # One form only, everywhere: no surrounding space, no empty segment, no trailing slash (ARM writes none).
        if value != value.strip() or "//" in value or value.endswith("/"):
            raise InvalidInputError("clusterResourceId has surrounding space, an empty segment or a trailing slash",
                                    code="InvalidClusterResourceId")
        match = _RESOURCE_ID.fullmatch(value)
        if not match:
            raise InvalidInputError(
                "clusterResourceId is not an ARM resource id of the form /subscriptions/{id}/resourceGroups/{group}"
                "/providers/Microsoft.ContainerService/managedClusters/{name}",
                code="InvalidClusterResourceId",
            )
        resource_type = f"{match['provider']}/{match['type']}"
        child = match["rest"] if not allow_child else ""
        if resource_type.lower() != "microsoft.containerservice/managedclusters" or child:
            raise InvalidInputError(
                f"clusterResourceId names a {resource_type}{match['rest'] or ''} resource,"
                " not a Microsoft.ContainerService/managedClusters cluster",
                code="NotAManagedCluster",
            )
        return cls(match["sub"].lower(), match["rg"], match["name"])

    def __post_init__(self) -> None:
        """Every ClusterId, parsed or built, holds names by ARM's rules: the one check of a name, wherever it came
        from (a request, an event, a queue message, the CLI, a listing)."""
        problem = name_problem(self.resource_group, self.name)
        if problem:
            raise InvalidInputError(f"clusterResourceId: {problem}", code="InvalidClusterResourceId")

    def __str__(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.ContainerService/managedClusters/{self.name}")

    @property
    def key(self) -> str:
        """A short stable key, equal for ids that differ only in case (as ARM treats them)."""
        return hashlib.sha256(str(self).lower().encode()).hexdigest()[:16]

    @property
    def vault_secret_name(self) -> str:
        """The Key Vault secret that holds this cluster's service principal secret.

        Key Vault names allow letters, digits and dashes up to 127 characters; the key
        keeps two clusters with the same name in different groups apart.
        """
        readable = re.sub(r"[^a-zA-Z0-9-]", "-", self.name)[:60].strip("-") or "cluster"
        return f"aks-sp-{readable}-{self.key}"


def name_problem(resource_group: str, cluster_name: str) -> str | None:
    """What is wrong with a resource group's and a cluster's names by ARM's rules (see `_RESOURCE_GROUP`), or None."""
    if not isinstance(resource_group, str) or not _RESOURCE_GROUP.fullmatch(resource_group):
        return ("the resource group name is not 1-90 ASCII letters, digits, '-', '_', '.', '(' or ')' not ending"
                " with '.'")
    if not isinstance(cluster_name, str) or not _CLUSTER_NAME.fullmatch(cluster_name):
        return ("the cluster name is not a valid AKS name (1-63 ASCII letters, digits, '-' or '_', beginning and"
                " ending with a letter or digit)")
    return None
