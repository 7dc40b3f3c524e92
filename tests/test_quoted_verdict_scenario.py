"""The quoted-verdict attack from the outside, over HTTP against the sandbox with the function app in its
own worker process (benchmarks/quoted_verdict.py): a healthy cluster's write refused by ARM over a tag value that
quotes Entra ID's verdict on the cluster's own application. The cluster is not reset and no password is minted."""

from __future__ import annotations

import pytest

from benchmarks.quoted_verdict import quoted
from remediation.decide.classify import RULES

# Minutes of worker processes over HTTP: out of the inner loop (`pytest -m "not slow"`), in `make test`.
pytestmark = pytest.mark.slow

REQUEST_INPUT = next(rule for rule in RULES if rule.name == "request_input")


def test_a_tag_quoting_an_entra_verdict_never_resets_a_healthy_cluster() -> None:
    figures = quoted()
    assert figures["graphPasswordValidDays"] >= 199, figures  # Graph: the password is valid for 200 days
    for name, attack in figures["attacks"].items():
        # ARM refuses the write in its own words, quoting the value, and logs it as a failed write.
        assert (attack["status"], attack["code"], attack["quotesTheValue"]) == (
            400, "InvalidTagValueLength", True), (name, attack)
        assert attack["valueLength"] > 256, (name, attack)
        # The remediator read the failure as a refused request value (the classifier's request_input rule).
        assert attack["decision"] == {"act": "none", "code": "NotServicePrincipal", "kind": "not_sp",
                                      "message": REQUEST_INPUT.description}, (name, attack)
    assert figures["activityLogFailures"] == ["InvalidTagValueLength"] * 2, figures
    assert figures["resets"] == 0 and figures["addPassword"] == 0 and figures["remediations"] == 0, figures
    assert figures["secretValidNow"] and figures["sameClientId"], figures
