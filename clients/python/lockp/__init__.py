"""lockp: a LOCKP/1 client for lockd (standard library only).

    import lockp
    client = lockp.Client(["127.0.0.1:7380", "127.0.0.1:7381"], name="worker-1")
    with client.lock("Performance:42", wait_ms=5000) as lease:
        ...  # lease.fence, lease.token; lease.lost is set the moment the lock is lost
    client.close()

The client keeps its own deadline for every lock and judges lockd's liveness by
what it receives (SPEC 3b), so a holder is told of a loss before anyone else can be
granted the lock. AsyncClient is the asyncio twin (``async with client.lock(...)``).
"""

from ._async import AsyncClient, AsyncLease, Lease
from ._errors import (LOCAL_REASONS, LOCKD_REASONS, AuthError, BadArgument, BadRequest,
                      LimitExceeded, LockError, LockHeld, LockLost, LockTimeout, NoQuorum,
                      Unavailable)
from ._sync import Client

__version__ = "0.1.0"

__all__ = [
    "Client", "AsyncClient", "Lease", "AsyncLease", "LockError", "LockTimeout", "NoQuorum",
    "LockLost", "LockHeld", "LimitExceeded", "AuthError", "BadRequest", "Unavailable",
    "BadArgument", "LOCKD_REASONS", "LOCAL_REASONS",
]
