"""The classifier against a corpus of real AKS error texts, and at its edges: context, nesting, dates, limits."""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_classify import hostile_inputs
from remediation.decide.classify import (
    ACTION_FOR_KIND,
    EVIDENCE_LIMIT,
    MAX_TEXT_CHARS,
    RULES,
    Aadsts,
    Action,
    Classification,
    Codes,
    FailureKind,
    Phrase,
    classify_activity_log_entry,
    classify_message,
    classify_status_message,
    refine_with_credential_dates,
)

CORPUS: list[dict[str, Any]] = json.loads((Path(__file__).parent / "data" / "error_corpus.json").read_text("utf-8"))
# Written out here rather than taken from the module, so that a change to the mapping fails a test.
EXPECTED_ACTION = {
    "invalid_secret": Action.ROTATE_SECRET,
    "expired_secret": Action.ROTATE_SECRET,
    "sp_not_found": Action.NEW_SERVICE_PRINCIPAL,
    "credential_rejected": Action.CONFIRM,
    "sp_other": Action.NONE,
    "not_sp": Action.NONE,
}
AADSTS_7000215_BODY = json.dumps({
    "error": "invalid_client",
    "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request "
                         "is the client secret value, not the client secret ID.\r\nTrace ID: 1\r\nTimestamp: 2024",
    "error_codes": [7000215]})
AKS_INVALID = ("The credentials in ServicePrincipalProfile were invalid. Please see https://aka.ms/aks-sp-help for "
               f"more details. (Details: adal: Refresh request failed. Status Code = '401'. Response body: "
               f"{AADSTS_7000215_BODY})")
# The AKS cloud provider's token refresh refused with 401 and no Entra ID verdict (Azure/AKS#222, #339).
CLOUD_PROVIDER_401 = (
    "Error creating load balancer (will retry): Failed to ensure load balancer for service istio-system/istio-ingress: "
    "azure.BearerAuthorizer#WithAuthorization: Failed to refresh the Token for request to https://management.azure.com/"
    "subscriptions/x/resourceGroups/MC_rg_aks_eastus/providers/Microsoft.Network/loadBalancers/kubernetes-internal"
    "?api-version=2017-03-01: StatusCode=0 -- Original Error: adal: Refresh request failed. Status Code = '401'")
# Terraform's own principal refreshing for provider registration: the operator's credential, not the cluster's.
OPERATOR_401 = (
    "Error ensuring Resource Providers are registered: azure.BearerAuthorizer#WithAuthorization: Failed to refresh the "
    "Token for request to https://management.azure.com/subscriptions/x/providers?api-version=2016-02-01: "
    "StatusCode=401 -- Original Error: adal: Refresh request failed. Status Code = '401'")


def classify_case(case: dict[str, Any]) -> Classification:
    if "text" in case:
        return classify_message(case["text"])
    if "statusMessage" in case:
        return classify_status_message(case["statusMessage"])
    return classify_activity_log_entry(case["entry"])


def status_message(*details: dict[str, Any], code: str = "ResourceOperationFailure") -> str:
    """The JSON string AKS writes to properties.statusMessage, with the causes in error.details."""
    return json.dumps({"status": "Failed", "error": {
        "code": code, "message": "The resource operation completed with terminal provisioning state 'Failed'.",
        "details": list(details)}})


# ------------------------------------------------------------------------------------------- the corpus

@pytest.mark.parametrize("case", CORPUS, ids=[case["id"] for case in CORPUS])
def test_corpus_entry_gets_its_kind_action_and_code(case: dict[str, Any]) -> None:
    result = classify_case(case)
    assert (result.kind, result.action, result.code) == (
        FailureKind(case["expected_kind"]), EXPECTED_ACTION[case["expected_kind"]], case["expected_code"])
    assert len(result.evidence) <= EVIDENCE_LIMIT
    assert result.reason.endswith(".") and "\n" not in result.reason
    if result.kind is not FailureKind.NOT_SP:
        assert result.evidence, "a decision names the phrase or code that made it"


def test_the_action_for_every_kind_is_written_down() -> None:
    assert {kind.value: action for kind, action in ACTION_FOR_KIND.items()} == EXPECTED_ACTION
    assert set(ACTION_FOR_KIND) == set(FailureKind)


def test_the_corpus_is_mostly_real_and_covers_every_kind() -> None:
    real = [case for case in CORPUS if case["source"].startswith("https://")]
    synthetic = [case for case in CORPUS if case["source"].startswith("synthetic")]
    assert len(real) + len(synthetic) == len(CORPUS)
    assert len(real) >= 30
    assert all(case["note"] for case in CORPUS)
    assert len({case["id"] for case in CORPUS}) == len(CORPUS)
    kinds = Counter(case["expected_kind"] for case in real)
    assert all(kinds[kind] >= 5 for kind in EXPECTED_ACTION), kinds


@pytest.mark.parametrize("code", ["QuotaExceeded", "OperationNotAllowed", "SubnetIsFull", "InsufficientSubnetSize",
                                  "RequestDisallowedByPolicy", "AuthorizationFailed", "LinkedAuthorizationFailed",
                                  "PrincipalNotFound", "CreateRoleAssignmentError", "InvalidAuthenticationToken",
                                  "ExpiredAuthenticationToken"])
def test_the_corpus_holds_each_trap_code_and_none_of_them_rotates(code: str) -> None:
    cases = [case for case in CORPUS if case["expected_code"] == code]
    assert cases, f"no corpus entry decided by {code}"
    assert all(classify_case(case).action is Action.NONE for case in cases)


def test_a_dict_status_message_is_classified_like_its_json_string() -> None:
    for case in CORPUS:
        encoded = case.get("statusMessage") or case.get("entry", {}).get("properties", {}).get("statusMessage")
        if encoded:
            assert classify_status_message(json.loads(encoded)) == classify_status_message(encoded), case["id"]


# ---------------------------------------------------------------------------------- reading the structure

def test_the_cause_is_found_in_json_inside_a_string_inside_details_inside_a_string() -> None:
    adal = f"adal: Refresh request failed. Response body: {AADSTS_7000215_BODY}"
    innermost = json.dumps({"error": {"code": "ServicePrincipalValidationClientError", "message": adal}})
    middle = json.dumps({"code": "DeploymentFailed", "message": "At least one resource deployment operation failed.",
                         "details": [{"code": "BadRequest", "message": innermost}]})
    result = classify_status_message(status_message({"code": "Conflict", "message": middle}))
    assert (result.kind, result.code) == (FailureKind.INVALID_SECRET, "AADSTS7000215")
    assert result.evidence == "AADSTS7000215: Invalid client secret provided."


def test_the_code_reported_is_that_of_the_innermost_error_object_even_inside_a_string() -> None:
    inner = json.dumps({"code": "ServicePrincipalValidationClientError",
                        "message": "The credentials in ServicePrincipalProfile were invalid."})
    result = classify_status_message(status_message({"code": "BadRequest", "message": inner}))
    assert (result.kind, result.code) == (FailureKind.INVALID_SECRET, "ServicePrincipalValidationClientError")
    unexplained = json.dumps({"error": {"code": "ControlPlaneAddOnsNotReady", "message": "Pods not in Running status"}})
    result = classify_status_message(status_message({"code": "BadRequest", "message": unexplained}))
    assert (result.kind, result.code) == (FailureKind.NOT_SP, "ControlPlaneAddOnsNotReady")
    assert "ControlPlaneAddOnsNotReady" in result.reason


def test_escapes_of_an_inner_document_are_decoded_before_reading() -> None:
    # ARM may write apostrophes as \u0027; in a JSON document inside a JSON string they decode only
    # when the inner document is parsed.
    inner = json.dumps({"code": "BadRequest", "message": "Application with identifier 'a1b2' was not found in "
                                                         "the directory 'contoso'."}).replace("'", "\\u0027")
    assert "'" not in inner
    result = classify_status_message(status_message({"code": "BadRequest", "message": inner}))
    assert result.kind is FailureKind.SP_NOT_FOUND
    assert result.evidence == "Application with identifier 'a1b2' was not found in the directory"


def test_json_encoded_six_times_over_is_still_read() -> None:
    message: Any = {"code": "ServicePrincipalValidationClientError", "message": AKS_INVALID}
    for _ in range(6):
        message = {"code": "BadRequest", "message": json.dumps({"error": message})}
    assert classify_status_message(status_message(message)).code == "AADSTS7000215"


def test_a_trap_code_deep_in_the_tree_outranks_a_credential_error_at_the_top() -> None:
    quota_deep = json.dumps({"error": {"code": "InvalidTemplateDeployment", "message": "See inner errors.",
                                       "details": [{"code": "QuotaExceeded", "message": ""}]}})
    result = classify_status_message(status_message(
        {"code": "ServicePrincipalValidationClientError", "message": AKS_INVALID},
        {"code": "BadRequest", "message": quota_deep}))
    assert (result.kind, result.action, result.code) == (FailureKind.NOT_SP, Action.NONE, "QuotaExceeded")


def test_the_aadsts_verdict_outranks_the_wording_aks_wraps_it_in() -> None:
    not_found = AKS_INVALID.replace("AADSTS7000215: Invalid client secret provided.",
                                    "AADSTS700016: Application with identifier 'x' was not found in the directory 'y'.")
    result = classify_message(not_found)
    assert (result.kind, result.action, result.code) == (
        FailureKind.SP_NOT_FOUND, Action.NEW_SERVICE_PRINCIPAL, "AADSTS700016")


def test_expired_outranks_invalid_when_entra_id_says_both() -> None:
    text = ("The credentials in ServicePrincipalProfile were invalid. AADSTS7000215: Invalid client secret provided. "
            "AADSTS7000222: The provided client secret keys are expired.")
    assert classify_message(text).kind is FailureKind.EXPIRED_SECRET


def test_the_callers_own_authorization_failure_never_rotates_even_without_its_code() -> None:
    caller = ("The client 'ops@contoso.com' with object id '0d0d' does not have authorization to perform action "
              "'Microsoft.ContainerService/managedClusters/write' over scope '/subscriptions/x'")
    result = classify_status_message(status_message({"code": "ServicePrincipalValidationClientError",
                                                     "message": caller}))
    assert (result.kind, result.action) == (FailureKind.NOT_SP, Action.NONE)


@pytest.mark.parametrize(("message", "expected"), [
    ("error getting token: adal: Failed to execute the refresh request: dial tcp 20.190.160.1:443: i/o timeout",
     FailureKind.SP_OTHER),
    ("could not validate the service principal", FailureKind.SP_OTHER),
    ("AADSTS90033: A transient error has occurred. Please try again.", FailureKind.SP_OTHER),
    (AKS_INVALID, FailureKind.INVALID_SECRET),
])
def test_service_principal_validation_errors_rotate_only_on_a_credential_verdict(message: str,
                                                                                 expected: FailureKind) -> None:
    result = classify_status_message(status_message({"code": "ServicePrincipalValidationClientError",
                                                     "message": message}))
    assert result.kind is expected


@pytest.mark.parametrize("text", [
    "Secret 'tls-cert' in key vault 'kv-payments' has expired.",
    "The client certificate has expired.",
    "The secret expired yesterday.",
])
def test_expiry_of_anything_but_a_client_secret_does_not_rotate(text: str) -> None:
    assert classify_message(text).action is Action.NONE


def test_a_timeout_without_a_service_principal_in_sight_is_not_about_the_service_principal() -> None:
    assert classify_message("context deadline exceeded while waiting for the agent pool").kind is FailureKind.NOT_SP


def test_codes_match_in_any_case_but_only_as_whole_words() -> None:
    assert classify_message("Code=\"VmSizeNotSupported\" Message=\"bad size\"").code == "VmSizeNotSupported"
    # "QuotaExceeded" inside a longer word is not the trap code.
    result = classify_message(f"SubscriptionQuotaExceededWarning {AKS_INVALID}")
    assert (result.kind, result.code) == (FailureKind.INVALID_SECRET, "AADSTS7000215")


def test_replication_wording_makes_not_found_a_transient_not_a_new_principal() -> None:
    text = ("Service principal clientID: 1111 not found in Active Directory tenant 2222; this may be due to "
            "replication delay, please retry.")
    assert classify_message(text).kind is FailureKind.SP_OTHER
    assert classify_message(text.split(";")[0]).kind is FailureKind.SP_NOT_FOUND


# ------------------------------------------------------------------ AKS service-principal context

INGRESS_EXPIRED = ("ingress-azure: failed to reconcile the Application Gateway: the App Gateway ingress controller's "
                   "service principal has an expired client secret; renew it in armAuth.secretJSON.")


@pytest.mark.parametrize("text", [
    INGRESS_EXPIRED,
    "Our actions for deploying to azure throws warnings about expired client secret.",  # equinor/design-system#2029
    "The provided client secret keys are expired",  # sjkp/letsencrypt-siteextension#358
    "Client secret is expired.",  # zumwald/better-vsts-npm-auth#63
    "secrets-store-csi-driver: failed to get keyvault client: invalid client secret for the csi driver's app",
    "ACR login for the build pipeline: the service connection's client secret was invalid.",
], ids=["ingress", "actions", "letsencrypt", "npm-auth", "csi-driver", "pipeline"])
def test_another_components_secret_wording_never_rotates(text: str) -> None:
    result = classify_message(text)
    assert (result.kind, result.action) == (FailureKind.NOT_SP, Action.NONE), result


@pytest.mark.parametrize("text", [
    "The credentials in ServicePrincipalProfile were invalid: expired client secret.",
    "The AKS cluster's service principal has an expired client secret.",
    "Service principal of managed cluster aks-prod: client secret has expired. See https://aka.ms/aks-sp-help.",
    "failed to ensure load balancer for service default/web: the client secret keys are expired",
], ids=["profile", "aks-sp", "managed-cluster", "cloud-provider"])
def test_an_aks_service_principals_expired_secret_wording_rotates(text: str) -> None:
    result = classify_message(text)
    assert (result.kind, result.action) == (FailureKind.EXPIRED_SECRET, Action.ROTATE_SECRET), result


def test_context_counts_in_the_hits_error_chain_not_in_a_sibling_detail() -> None:
    phrase = {"code": "BadRequest", "message": "The client secret has expired."}
    # The enclosing error object is AKS's: the phrase is about the cluster's secret.
    enclosed = status_message({"code": "ServicePrincipalValidationClientError", "message": "Validation failed.",
                               "details": [phrase]})
    assert classify_status_message(enclosed).kind is FailureKind.EXPIRED_SECRET
    # Context carried by the text around an embedded JSON document counts too.
    around = status_message({"code": "BadRequest", "message": "The credentials in ServicePrincipalProfile could not "
                             f"be used. Details: {json.dumps({'error': phrase})}"})
    assert classify_status_message(around).kind is FailureKind.EXPIRED_SECRET
    # A sibling detail about the service principal lends nothing to another component's expired secret.
    siblings = status_message({"code": "ServicePrincipalValidationClientError", "message": "Validation pending."},
                              {"code": "IngressControllerError", "message": INGRESS_EXPIRED})
    assert classify_status_message(siblings).action is Action.NONE


@pytest.mark.parametrize("detail", [
    {"code": "InvalidClientSecret", "message": "x"},
    {"code": "InvalidClientSecret", "message": "Customer auth is not valid for tenant: t"},
    {"code": "InvalidServicePrincipalCredentials",  # Azure/ARO-RP
     "message": "properties.servicePrincipalProfile: The provided service principal must not have the "
                "Application.ReadWrite.OwnedBy permission."},
    {"code": "InvalidClientSecret", "message": "Invalid client secret provided for the OData linked service."},
], ids=["no-wording", "aks-context-no-wording", "aro-permission", "wording-no-aks-context"])
def test_a_shared_code_rotates_only_with_secret_wording_and_aks_context_beside_it(detail: dict[str, str]) -> None:
    result = classify_status_message(status_message(detail, code="DeploymentFailed"))
    assert result.action is not Action.ROTATE_SECRET, result


def test_a_shared_code_with_secret_wording_in_aks_context_rotates_and_reports_the_code() -> None:
    detail = {"code": "InvalidClientSecret", "message": "Customer auth is not valid for tenant: t: the client secret "
                                                        "is invalid."}
    result = classify_status_message(status_message(detail))
    assert (result.kind, result.action, result.code) == (
        FailureKind.INVALID_SECRET, Action.ROTATE_SECRET, "InvalidClientSecret")
    # The wording may sit inside the code's error object (its details), the context around it.
    nested = {"code": "InvalidClientSecret", "message": "Customer auth is not valid for tenant: t",
              "details": [{"code": "Inner", "message": "The client secret keys for the app are wrong."}]}
    assert classify_status_message(status_message(nested)).code == "InvalidClientSecret"


def test_every_code_that_can_rotate_needs_secret_wording_and_aks_context() -> None:
    rotating = [rule for rule in RULES if ACTION_FOR_KIND[rule.kind] is Action.ROTATE_SECRET
                and isinstance(rule.matcher, Codes)]
    assert rotating, "the table has service-principal codes"
    assert all(rule.matcher.wording is not None and rule.matcher.context is not None for rule in rotating)
    phrases = [rule for rule in RULES if rule.name in ("expired_phrase", "invalid_phrase", "credential_rejected")]
    assert len(phrases) == 3 and all(rule.matcher.context is not None for rule in phrases)


def test_every_entra_id_verdict_counts_only_in_the_aks_service_principal_chain() -> None:
    entra = [rule for rule in RULES if isinstance(rule.matcher, Aadsts)]
    assert {rule.name for rule in entra} == {"aadsts_expired", "aadsts_invalid", "aadsts_app_not_found",
                                             "aadsts_other"}
    aks_context = next(rule for rule in RULES if rule.name == "invalid_phrase").matcher.context
    assert all(rule.matcher.context == aks_context for rule in entra)


# ------------------------------------------------------------------------- the cluster's credential refused

def test_a_401_on_the_cloud_providers_refresh_is_credential_rejected_and_asks_for_confirmation() -> None:
    result = classify_message(CLOUD_PROVIDER_401)
    assert (result.kind, result.action) == (FailureKind.CREDENTIAL_REJECTED, Action.CONFIRM)
    assert result.evidence == "Refresh request failed. Status Code = '401'"
    assert result.reason.endswith(".") and "401" in result.reason


def test_a_401_under_aks_service_principal_validation_is_credential_rejected() -> None:
    detail = {"code": "ServicePrincipalValidationClientError",
              "message": "adal: Refresh request failed. Status Code = '401'. Response body: "}
    result = classify_status_message(status_message(detail))
    assert (result.kind, result.action, result.code) == (
        FailureKind.CREDENTIAL_REJECTED, Action.CONFIRM, "ServicePrincipalValidationClientError")


@pytest.mark.parametrize(("body", "kind", "code"), [
    (AADSTS_7000215_BODY, FailureKind.INVALID_SECRET, "AADSTS7000215"),
    ('{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys are expired."}',
     FailureKind.EXPIRED_SECRET, "AADSTS7000222"),
    ('{"error":"unauthorized_client","error_description":"AADSTS700016: Application with identifier \'a\' was not '
     'found in the directory \'t\'."}', FailureKind.SP_NOT_FOUND, "AADSTS700016"),
    ('{"error":"invalid_client","error_description":"AADSTS700024: Client assertion is not within its valid time '
     'range."}', FailureKind.SP_OTHER, "AADSTS700024"),
], ids=["7000215", "7000222", "700016", "700024"])
def test_an_entra_id_verdict_in_the_refused_refresh_outranks_credential_rejected(body: str, kind: FailureKind,
                                                                                 code: str) -> None:
    result = classify_message(f"{CLOUD_PROVIDER_401}. Response body: {body}")
    assert (result.kind, result.code) == (kind, code)


@pytest.mark.parametrize("text", [
    OPERATOR_401,
    # The operator's own token refused by ARM (Azure/login#252, Azure/AKS#4287).
    "(InvalidAuthenticationToken) The received access token is not valid: at least one of the claims 'puid' or "
    "'altsecid' or 'oid' should be present. If you are accessing as application please make sure service principal "
    "is properly created in the tenant.",
    f"{CLOUD_PROVIDER_401}\nRESPONSE 401: 401 Unauthorized\nERROR CODE: ExpiredAuthenticationToken",
    # A registry's 401 (Azure/AKS#4459) and the caller's 403s.
    "Failed to pull image \"r.azurecr.io/app:v1\": failed to authorize: failed to fetch anonymous token: unexpected "
    "status from GET request to https://r.azurecr.io/oauth2/token?scope=repository%3Aapp%3Apull: 401 Unauthorized",
    f"Code=\"AuthorizationFailed\" Message=\"The client 'ops' with object id 'x' does not have authorization\" "
    f"{CLOUD_PROVIDER_401}",
    f"Code=\"LinkedAuthorizationFailed\" {CLOUD_PROVIDER_401}",
    # Another cloud's 401 behind the same Kubernetes wording (digitalocean-cloud-controller-manager#62).
    "Error creating load balancer (will retry): Failed to ensure load balancer for service default/web: GET "
    "https://api.digitalocean.com/v2/load_balancers: 401 Unable to authenticate you.",
], ids=["terraform-refresh", "invalid-token", "expired-token", "registry", "authorization-failed", "linked",
        "other-cloud"])
def test_a_401_or_403_of_another_caller_is_not_credential_rejected(text: str) -> None:
    result = classify_message(text)
    assert result.kind is not FailureKind.CREDENTIAL_REJECTED, result
    assert result.action is Action.NONE, result


@pytest.mark.parametrize("status", ["400", "404", "500"])
def test_only_a_401_is_the_credential_refused(status: str) -> None:
    assert classify_message(CLOUD_PROVIDER_401.replace("'401'", f"'{status}'")).kind is FailureKind.NOT_SP


def test_another_components_aadsts_verdict_is_not_read_as_the_clusters() -> None:
    # AGIC's own service principal (Azure/application-gateway-kubernetes-ingress#791), old wording naming no app.
    agic = ("Failed fetching config for App Gateway instance. Will retry in 10s. Error: azure.BearerAuthorizer#"
            "WithAuthorization: Failed to refresh the Token for request to https://management.azure.com/subscriptions/s/"
            "resourceGroups/myrgname/providers/Microsoft.Network/applicationGateways/MYAPPGW?api-version=2019-09-01: "
            "StatusCode=401 -- Original Error: adal: Refresh request failed. Status Code = '401'. Responsebody: "
            f"{AADSTS_7000215_BODY}")
    assert classify_message(agic).action is Action.NONE


# ------------------------------------- Entra ID verdicts count only in the AKS service-principal error chain

QUOTED_VERDICT = ("AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the "
                  "client secret value, not the client secret ID.")


def refused_over_a_tag(code: str, value: str = QUOTED_VERDICT) -> dict[str, Any]:
    """An Activity Log entry as the REST API returns it: a write to the cluster refused over a tag `value` that anyone
    allowed to tag the cluster chose (the envelope is entry-spvce-7000215's; ARM's synchronous 400 has no status)."""
    entry = copy.deepcopy(next(case["entry"] for case in CORPUS if case["id"] == "entry-spvce-7000215"))
    entry["properties"]["statusMessage"] = json.dumps({"error": {
        "code": code, "target": "tags['owner-note']",
        "message": f"The value '{value}' of tag 'owner-note' is not valid: a tag value may hold at most 256 "
                   "characters."}})
    return entry


def test_an_entra_verdict_quoted_in_an_invalid_parameter_error_is_not_sp() -> None:
    # The attack: a healthy cluster's write refused over a tag value that quotes AADSTS7000215.
    result = classify_activity_log_entry(refused_over_a_tag("InvalidParameter"))
    assert (result.kind, result.action) == (FailureKind.NOT_SP, Action.NONE), result


@pytest.mark.parametrize("entry", [
    # Under a carrier code, with no AKS service-principal error around it: only the scoping stops it.
    refused_over_a_tag("BadRequest"),
    # The quote dressed in AKS's words, or as a whole AKS error document, inside a refused parameter.
    refused_over_a_tag("InvalidParameter",
                       f"The credentials in ServicePrincipalProfile were invalid. {QUOTED_VERDICT}"),
    refused_over_a_tag("InvalidParameter", json.dumps({"code": "ServicePrincipalValidationClientError",
                                                       "message": QUOTED_VERDICT})),
], ids=["carrier-code", "aks-wording-in-the-value", "aks-document-in-the-value"])
def test_an_entra_verdict_quoted_outside_the_aks_chain_is_not_sp(entry: dict[str, Any]) -> None:
    result = classify_activity_log_entry(entry)
    assert (result.kind, result.action) == (FailureKind.NOT_SP, Action.NONE), result


def arm_refuses_a_tag(code: str, value: str) -> str:
    """ARM's synchronous 400 for a tag, as the Activity Log's statusMessage holds it. The wording is the one
    Microsoft's Az.Migrate module reproduces from ARM (Azure/azure-powershell, New-AzMigrateServerReplication.ps1);
    sandbox/arm.py answers the same."""
    message = {"InvalidTagValueLength": f"Tag value too large. Following tag value '{value}' exceeded the maximum "
                                        "length. Maximum allowed length for tag value - '256' characters.",
               "InvalidTagNameCharacters": f"The tag names '{value}' have reserved characters '<,>,%,&,\\,?,/' or "
                                           "control characters."}[code]
    return json.dumps({"error": {"code": code, "message": message}})


# What a writer of tags chooses: the verdict alone, or dressed in the AKS service-principal error's own words and
# naming the cluster's application, so that neither the scoping nor the named-app check can tell it apart.
DRESSED_VERDICT = ("The credentials in ServicePrincipalProfile were invalid. Please see https://aka.ms/aks-sp-help "
                   "for more details. (Details: adal: Refresh request failed. Status Code = '401'. "
                   f"{QUOTED_VERDICT[:-1]}, for a secret added to app '11111111-2222-4333-8444-555555555555'.)")


@pytest.mark.parametrize("code", ["InvalidTagValueLength", "InvalidTagNameCharacters"])
@pytest.mark.parametrize("value", [QUOTED_VERDICT + " " * 250, DRESSED_VERDICT + " " * 60],
                         ids=["quoted", "dressed"])
def test_arm_refusing_a_tag_that_quotes_an_entra_verdict_is_a_refused_request_value(code: str, value: str) -> None:
    result = classify_status_message(arm_refuses_a_tag(code, value))
    request_input = next(rule for rule in RULES if rule.name == "request_input")
    assert (result.kind, result.action, result.code, result.reason) == (
        FailureKind.NOT_SP, Action.NONE, code, request_input.description), result


def test_a_sibling_aks_error_lends_no_chain_to_a_quoted_entra_verdict() -> None:
    siblings = status_message({"code": "ServicePrincipalValidationClientError", "message": "Validation pending."},
                              {"code": "BadRequest", "message": f"Tag value '{QUOTED_VERDICT}' is not valid."})
    result = classify_status_message(siblings)
    assert result.action is Action.NONE and result.kind is not FailureKind.INVALID_SECRET, result


def test_an_entra_verdict_in_the_nested_errors_of_an_aks_service_principal_error_decides() -> None:
    nested = {"code": "ServicePrincipalValidationClientError", "message": "Validation failed.",
              "details": [{"code": "Unauthorized", "message": f"adal: Refresh request failed. {QUOTED_VERDICT}"}]}
    result = classify_status_message(status_message(nested))
    assert (result.kind, result.action, result.code) == (
        FailureKind.INVALID_SECRET, Action.ROTATE_SECRET, "AADSTS7000215")


def test_a_quoted_verdict_before_the_chains_own_does_not_hide_or_replace_it() -> None:
    quoted = {"code": "BadRequest", "message": "Tag value 'AADSTS7000222: The provided client secret keys are "
                                               "expired.' is not valid."}
    own = {"code": "ServicePrincipalValidationClientError", "message": (
        "The credentials in ServicePrincipalProfile were invalid. AADSTS700016: Application with identifier 'a' was "
        "not found in the directory 't'.")}
    result = classify_status_message(status_message(quoted, own))
    assert (result.kind, result.code) == (FailureKind.SP_NOT_FOUND, "AADSTS700016"), result


def test_inputs_built_to_make_scoping_expensive_still_get_a_verdict() -> None:
    # Their cost is measured by `make bench` (benchmarks/bench_classify.py), not asserted here.
    hostile = list(hostile_inputs().values())
    for value in (*hostile, hostile[0][:MAX_TEXT_CHARS]):
        assert classify_status_message(value).action is Action.NONE


# ------------------------------------------------------------------------------------ dates from Graph

INVALID = classify_message(AKS_INVALID)
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_an_invalid_secret_whose_newest_password_ended_is_expired() -> None:
    ended = NOW - timedelta(days=3)
    refined = refine_with_credential_dates(INVALID, newest_password_end=ended, now=NOW)
    assert (refined.kind, refined.action, refined.code, refined.evidence) == (
        FailureKind.EXPIRED_SECRET, Action.ROTATE_SECRET, "AADSTS7000215", INVALID.evidence)
    assert ended.isoformat() in refined.reason


@pytest.mark.parametrize("end", [NOW + timedelta(days=30), NOW, None], ids=["future", "exactly-now", "no-date"])
def test_an_invalid_secret_stays_invalid_unless_the_end_date_has_passed(end: datetime | None) -> None:
    assert refine_with_credential_dates(INVALID, newest_password_end=end, now=NOW) == INVALID


REJECTED = classify_message(CLOUD_PROVIDER_401)


def test_a_refused_credential_whose_newest_password_ended_is_expired_and_rotates() -> None:
    assert REJECTED.kind is FailureKind.CREDENTIAL_REJECTED
    ended = NOW - timedelta(days=1)
    refined = refine_with_credential_dates(REJECTED, newest_password_end=ended, now=NOW)
    assert (refined.kind, refined.action, refined.code, refined.evidence) == (
        FailureKind.EXPIRED_SECRET, Action.ROTATE_SECRET, REJECTED.code, REJECTED.evidence)
    assert ended.isoformat() in refined.reason and "401" in refined.reason
    assert refined.reason.endswith(".") and "confirms" not in refined.reason


@pytest.mark.parametrize("end", [NOW + timedelta(days=30), NOW, None], ids=["future", "exactly-now", "no-date"])
def test_a_refused_credential_stays_to_be_confirmed_unless_every_password_ended(end: datetime | None) -> None:
    refined = refine_with_credential_dates(REJECTED, newest_password_end=end, now=NOW)
    assert refined == REJECTED and refined.action is Action.CONFIRM


@pytest.mark.parametrize("text", ["SubnetIsFull: no room", "Service principal clientID: 1 not found in Active "
                                  "Directory tenant 2", "The credentials in ServicePrincipalProfile were invalid. "
                                  "AADSTS7000222: The provided client secret keys are expired."])
def test_other_kinds_are_never_refined(text: str) -> None:
    classification = classify_message(text)
    assert refine_with_credential_dates(classification, newest_password_end=NOW - timedelta(days=400),
                                        now=NOW) == classification


def test_a_naive_end_date_is_read_as_utc() -> None:
    naive_past = (NOW - timedelta(hours=1)).replace(tzinfo=None)
    refined = refine_with_credential_dates(INVALID, newest_password_end=naive_past, now=NOW)
    assert refined.kind is FailureKind.EXPIRED_SECRET


# ----------------------------------------------------------------------------------- limits and secrets

def test_evidence_is_cut_to_the_limit() -> None:
    text = "Service principal not found " + "in region westeurope " * 18 + "due to replication delay"
    result = classify_message(text)
    assert result.kind is FailureKind.SP_OTHER
    assert EVIDENCE_LIMIT - 5 < len(result.evidence) <= EVIDENCE_LIMIT and result.evidence.endswith("…")
    assert result.evidence.startswith("not found in region westeurope")


def test_a_secret_shaped_token_never_reaches_the_evidence() -> None:
    secret = "Ab3" + "8Q~" + "x" * 34
    result = classify_message(f"Service principal clientID: {secret} not found in Active Directory tenant 1")
    assert result.kind is FailureKind.SP_NOT_FOUND
    assert secret not in result.evidence and "[redacted]" in result.evidence


def test_the_reason_does_not_quote_the_input() -> None:
    marker = "zebra-marker-8841"
    for text in (f"{AKS_INVALID} {marker}", f"QuotaExceeded {marker}", f"nothing to see {marker}"):
        assert marker not in classify_message(text).reason


def test_text_past_the_cap_is_not_read() -> None:
    padding = "x" * MAX_TEXT_CHARS
    assert classify_message(f"{AKS_INVALID} {padding}").kind is FailureKind.INVALID_SECRET
    assert classify_message(f"{padding} {AKS_INVALID}").kind is FailureKind.NOT_SP


# ------------------------------------------------------------------------------------------------ garbage

MEGABYTE = 1024 * 1024


@pytest.mark.parametrize("value", [
    "", "   \n", "not json at all", "{broken", "[1, 2, 3]", "[]", "{}", "42", "-1.5e10", "null", "true", '"a string"',
    '{"error": null}', '{"error": {"code": 7, "message": ["x", {"y": null}]}}',
    "x" * MEGABYTE, "{" * MEGABYTE, "[" * 100_000, "[" * 5_000 + "]" * 5_000, '{"a":' * 50_000 + "1" + "}" * 50_000,
    None, 42, 3.5, ["AADSTS7000215"], {}, {"status": "Failed"},
], ids=lambda value: repr(value)[:30])
def test_garbage_is_not_sp_with_a_reason_and_never_raises(value: Any) -> None:
    for classify in (classify_status_message, classify_message):
        result = classify(value)
        assert (result.kind, result.action) == (FailureKind.NOT_SP, Action.NONE)
        assert result.reason


@pytest.mark.parametrize(("entry", "says"), [
    ({}, "no properties"),
    ({"properties": None}, "no properties"),
    ({"properties": {"statusCode": "Created"}}, "no status message"),
    ({"properties": {"statusMessage": ""}}, "no status message"),
    ({"properties": {"statusMessage": 17}}, "no status message"),
    (["not", "an", "entry"], "Not an Activity Log entry"),
])
def test_an_activity_log_entry_without_a_status_message_is_not_sp_and_says_why(entry: Any, says: str) -> None:
    result = classify_activity_log_entry(entry)
    assert result.kind is FailureKind.NOT_SP and says in result.reason


def test_an_entry_falls_back_to_its_response_body() -> None:
    message = "The credentials in ServicePrincipalProfile were invalid: the client secret is invalid."
    body = {"error": {"code": "InvalidClientSecret", "message": message}}
    entry = {"properties": {"responseBody": json.dumps(body)}}
    assert classify_activity_log_entry(entry).kind is FailureKind.INVALID_SECRET


# ------------------------------------------------------------------------------------------ the table

def test_the_rule_table_is_well_formed() -> None:
    assert len({rule.name for rule in RULES}) == len(RULES)
    assert all(rule.description.endswith(".") for rule in RULES)
    assert RULES[-1].name == "sp_validation_other", "the catch-all for ServicePrincipalValidationClientError is last"


def test_a_phrase_with_an_uppercase_escape_is_refused() -> None:
    with pytest.raises(ValueError, match="uppercase escape"):
        Phrase(r"clientID: \S+ not found", words=("found",))
