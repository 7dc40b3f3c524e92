"""What the sandbox's own tests share: one sandbox per test module (the expired-secret world), and raw HTTPS calls
against it. A module that needs another world defines its own `sandbox` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox import Sandbox
from tests.support.wire import Wire


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(scenario="expired-secret") as running:
        yield running


@pytest.fixture
def wire(sandbox: Sandbox) -> Wire:
    return Wire(sandbox)
