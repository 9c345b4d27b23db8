"""Fixtures for tests/clients: `world` (servers stopped by PID after each test), from
the lockp test helpers in clients/python/tests/servers.py."""

import os
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))
sys.path.insert(0, os.path.join(REPO, "clients", "python", "tests"))

from servers import world  # noqa: E402,F401  (the fixture)

