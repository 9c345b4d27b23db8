"""lockp errors: one class per LOCKP error code, all under LockError.

Every error carries ``code`` (the LOCKP code, or the client's own: BADARG,
NOTCONNECTED, DISCONNECTED, CLIENT_TIMEOUT, CLOSED) and, where it is about one
lock, ``resource``. ``LockLost`` also carries ``reason`` (SPEC 2b's LOST reason, or
the client's own: ``expired``, ``unreachable``, ``disconnected``, ``closed``,
``lost``).
"""


class LockError(Exception):
    """Base of every lockp error."""

    code = "ERROR"

    def __init__(self, message="", *, code=None, resource=None):
        super().__init__(message or self.__class__.__name__)
        if code is not None:
            self.code = code
        self.resource = resource


class LockTimeout(LockError):
    """ACQUIRE waited wait_ms without getting the lock (LOCKP ``TIMEOUT``)."""

    code = "TIMEOUT"


class NoQuorum(LockError):
    """Fewer than a quorum of Redis masters is reachable (answered at once)."""

    code = "NOQUORUM"


class LockLost(LockError):
    """The lock was lost while held; ``reason`` says how."""

    code = "LOST"

    def __init__(self, message="", *, resource=None, reason="lost"):
        super().__init__(message, resource=resource)
        self.reason = reason


class LockHeld(LockError):
    """This session holds the lock already (locks are not reentrant)."""

    code = "HELD"


class LimitExceeded(LockError):
    """A configured lockd limit is hit (max lease, max wait, waiters, sessions)."""

    code = "LIMIT"


class AuthError(LockError):
    """``AUTH`` refused (code AUTH) or needed and not sent (code NOAUTH)."""

    code = "AUTH"


class BadRequest(LockError):
    """lockd refused a request as malformed (LOCKP ``BADREQ``)."""

    code = "BADREQ"


class Unavailable(LockError):
    """No answer: no lockd reachable (NOTCONNECTED), the session ended before the
    reply (DISCONNECTED, SESSION), lockd stopping (SHUTDOWN), no reply in time
    (CLIENT_TIMEOUT) or the client was closed (CLOSED)."""

    code = "NOTCONNECTED"


class BadArgument(LockError, ValueError):
    """A bad argument, found before anything is sent (an endpoint, a resource, ...)."""

    code = "BADARG"


_BY_CODE = {
    "TIMEOUT": LockTimeout,
    "NOQUORUM": NoQuorum,
    "LOST": LockLost,
    "HELD": LockHeld,
    "LIMIT": LimitExceeded,
    "AUTH": AuthError,
    "NOAUTH": AuthError,
    "BADREQ": BadRequest,
}


def error_for(code, message, resource=None):
    """The exception for a LOCKP ``ERR <code> <text>`` reply."""
    cls = _BY_CODE.get(code, Unavailable if code in ("SESSION", "SHUTDOWN") else LockError)
    if cls is LockLost:
        return LockLost(message, resource=resource)
    return cls(message, code=code, resource=resource)
