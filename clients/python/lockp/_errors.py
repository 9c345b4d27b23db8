"""lockp errors: one class per LOCKP error code, all under LockError, and the reasons
a lock is lost.

Every error carries ``code`` (the LOCKP code, or the client's own: BADARG,
NOTCONNECTED, DISCONNECTED, CLIENT_TIMEOUT, CLOSED) and, where it is about one
lock, ``resource``. ``LockLost`` also carries ``reason``: one of LOCKD_REASONS (the
fourth field of lockd's ``* LOST <resource> <token> <reason>``, SPEC 2b) or one of
LOCAL_REASONS (a loss the client decides itself, SPEC 3b).
"""

# lockd's reasons, as pushed (SPEC 2b): a fixed lease ran out; a majority of masters
# holds another value; renewals missed the quorum until validity ran out; an admin
# REVOKEd it; this lockd is stopping; the session timed out (read when it wakes).
LOCKD_REASONS = ("expired", "renew_refused", "no_quorum", "revoked", "shutdown", "session")

# The client's own reasons (SPEC 3b), for losses it decides without lockd's word:
DEADLINE = "deadline"  # the lock's local validity deadline passed (not renewed in time)
LOCKD_DEAD = "lockd_dead"  # nothing received from lockd for the client timeout
DISCONNECTED = "disconnected"  # the session ended: EOF, reset or read error
CLOSED = "closed"  # the client was closed while holding it
NO_REASON = "lost"  # lockd said LOST without a reason (a lockd of before SPEC 2b's
#                     reasons), or answered a RENEW or RELEASE with LOST
LOCAL_REASONS = (DEADLINE, LOCKD_DEAD, DISCONNECTED, CLOSED, NO_REASON)


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
    """The lock was lost while held; ``reason`` says how (LOCKD_REASONS or
    LOCAL_REASONS)."""

    code = "LOST"

    def __init__(self, message="", *, resource=None, reason=NO_REASON):
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
