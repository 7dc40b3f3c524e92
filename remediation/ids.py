"""Parsing of Azure resource ids into the one kind the remediator acts on."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from remediation.errors import InvalidInputError

_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# ARM ids are case-insensitive; names follow ARM's rules for resource groups and AKS.
_RESOURCE_ID = re.compile(
    rf"^/subscriptions/(?P<sub>{_GUID})/resourceGroups/(?P<rg>[-\w._()]{{1,90}})"
    r"/providers/(?P<provider>[\w.]+)/(?P<type>[\w]+)/(?P<name>[^/]+)(?P<rest>(/.*)?)$",
    re.IGNORECASE,
)
_CLUSTER_NAME = re.compile(r"^[a-zA-Z0-9][-_a-zA-Z0-9]{0,61}[a-zA-Z0-9]$|^[a-zA-Z0-9]$")
MAX_ID_LENGTH = 1024


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
        # One form only, everywhere: no surrounding space, no empty segment, no trailing slash (ARM writes none).
        if value != value.strip() or "//" in value or value.endswith("/"):
            raise InvalidInputError("clusterResourceId has surrounding space, an empty segment or a trailing slash",
                                    code="InvalidClusterResourceId")
        match = _RESOURCE_ID.match(value)
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
        if not _CLUSTER_NAME.match(match["name"]):
            raise InvalidInputError("the cluster name in clusterResourceId is not a valid AKS name",
                                    code="InvalidClusterResourceId")
        return cls(match["sub"].lower(), match["rg"], match["name"])

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
