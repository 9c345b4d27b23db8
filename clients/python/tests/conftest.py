"""Fixtures: `world` (a fresh set of servers per test, all stopped after it, pass or
fail) and `shared` (three redis masters and two lockds for the whole module, for the
tests that break nothing), both with servers.FAST's short timeouts."""

import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
sys.path.insert(0, os.path.dirname(__file__))

import servers  # noqa: E402
from servers import world  # noqa: E402,F401  (the fixture)

FAST = servers.FAST


@pytest.fixture(scope="module")
def shared():
    w = servers.World()
    try:
        w.masters = [w.redis() for _ in range(3)]
        w.l1 = w.lockd(w.masters, FAST)
        w.l2 = w.lockd(w.masters, FAST)
        yield w
    finally:
        w.stop_all()


@pytest.fixture
def res():
    """A resource name no other test uses."""
    return f"test:{uuid.uuid4().hex[:12]}"
