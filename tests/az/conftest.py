"""Each module of tests/az/ gets one sandbox and one Azure CLI signed in to it as the operator: the CLI's start-up
(1 to 2 s a command) makes a sandbox per test too dear, so a test works on clusters and applications of its own
or on what no other test of its module changes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox import Sandbox
from tests.support.az import Az, pointed_at


@pytest.fixture(scope="module")
def az(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Az]:
    with Sandbox(scenario="expired-secret") as sandbox:
        yield pointed_at(sandbox, tmp_path_factory.mktemp("az"))
