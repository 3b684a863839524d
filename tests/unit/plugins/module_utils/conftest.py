"""Fixtures shared by the module_utils unit tests: the fake clock, and the fake Nova of the engine tests (a test
file that needs another fake, HostNova or ServiceNova, defines its own ``nova``)."""

import pytest
from engine_fakes import FakeNova
from nova_fakes import Clock


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def nova(clock):
    return FakeNova(clock)
