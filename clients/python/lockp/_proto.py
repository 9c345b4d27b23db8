"""LOCKP/1 wire details: argument checks and line parsing (no I/O here)."""

from ._errors import BadArgument

RESOURCE_MAX = 256  # bytes, SPEC 2
NAME_MAX = 64  # HELLO name, as the C client
SECRET_MAX = 256
LINE_MAX = 4096
TOKEN_LEN = 32


def _printable(s):
    return all(0x21 <= ord(ch) <= 0x7E for ch in s)


def check_resource(resource):
    """The resource as sent, or BadArgument saying what is wrong with it."""
    if not isinstance(resource, str):
        raise BadArgument(f"resource must be a str, not {type(resource).__name__}")
    if not resource:
        raise BadArgument("resource is empty")
    if len(resource) > RESOURCE_MAX:
        raise BadArgument(f"resource is {len(resource)} characters long (at most {RESOURCE_MAX})",
                          resource=resource)
    if not _printable(resource):
        raise BadArgument(f"resource {resource!r}: only printable ASCII without spaces "
                          "(0x21-0x7E) is allowed", resource=resource)
    return resource


def check_word(value, what, maxlen):
    """A HELLO name or AUTH secret: 1..maxlen printable ASCII characters."""
    if not isinstance(value, str) or not value or len(value) > maxlen or not _printable(value):
        raise BadArgument(f"{what} must be 1-{maxlen} printable ASCII characters without spaces")
    return value


def check_ms(value, what):
    """A non-negative integer number of milliseconds."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= 1 << 63:
        raise BadArgument(f"{what} must be a non-negative int (milliseconds), not {value!r}")
    return value


def parse_endpoint(ep):
    """"host:port" or "[v6]:port" -> (host, port)."""
    if not isinstance(ep, str):
        raise BadArgument(f"endpoint must be a 'host:port' string, not {type(ep).__name__}")
    if ep.startswith("["):
        host, sep, port = ep[1:].partition("]:")
    else:
        host, sep, port = ep.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadArgument(f"bad endpoint {ep!r}: expected 'host:port' with a port in 1-65535")
    return host, int(port)


def parse_endpoints(endpoints):
    """One endpoint string or a list of them -> [(host, port), ...], in order."""
    if isinstance(endpoints, str):
        endpoints = [endpoints]
    try:
        eps = [parse_endpoint(ep) for ep in endpoints]
    except TypeError:
        raise BadArgument("endpoints must be a 'host:port' string or a list of them") from None
    if not eps:
        raise BadArgument("no endpoint given")
    return eps


def split_reply(line):
    """"<tag> <WORD> [rest]" -> (tag, WORD, rest); a push has tag "*"."""
    tag, _, rest = line.partition(" ")
    word, _, rest = rest.partition(" ")
    return tag, word.upper(), rest


def parse_info(rest):
    """INFO's "k=v k=v ..." -> dict (values that look like ints become ints)."""
    out = {}
    for field in rest.split():
        k, _, v = field.partition("=")
        out[k] = int(v) if v.isdigit() else v
    return out
