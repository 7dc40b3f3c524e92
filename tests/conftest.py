"""Shared fixtures: a world of stateful fakes (tests/support/world.py), Azurite (npm) and fresh storage names."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from sandbox.azurite import Azurite
from tests.support.world import World, make_world


@pytest.fixture
def world() -> World:
    return make_world()


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as running:
        yield running


@pytest.fixture
def unique_name() -> str:
    """A fresh table/queue name, so tests sharing one Azurite never see each other's rows."""
    return "t" + uuid.uuid4().hex[:12]
