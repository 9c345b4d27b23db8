#!/usr/bin/env python3
"""lockp_session.py: plays a LOCKP session written as in the README against a real lockd.

Usage: lockp_session.py 'COMMAND' < SESSION

COMMAND is the README's connect line (e.g. nc "$LOCKD_HOST" "$LOCKD_PORT"), run by the
shell as it stands. SESSION holds lines '> request' (sent) and '< reply' (expected, one
per request, in order). In a reply, <name> matches one field and remembers it; in a
request, <name> is replaced by what it remembered (the README's "type that token").
Prints each exchange and the remembered fields as 'captured name=value'; exits 1 on the
first reply that does not match (or does not come within 10 s)."""
import re
import select
import subprocess
import sys
import time


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    lines = [ln.rstrip("\n") for ln in sys.stdin if ln.strip()]
    proc = subprocess.Popen(sys.argv[1], shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, bufsize=1)
    seen = {}
    buf = ""
    rc = 0
    try:
        for ln in lines:
            if ln.startswith("> "):
                req = re.sub(r"<(\w+)>", lambda m: seen.get(m.group(1), m.group(0)), ln[2:])
                print(f"> {req}", flush=True)
                proc.stdin.write(req + "\n")
                proc.stdin.flush()
            elif ln.startswith("< "):
                want = ln[2:]
                deadline = time.monotonic() + 10
                while "\n" not in buf:
                    left = deadline - time.monotonic()
                    r, _, _ = select.select([proc.stdout], [], [], max(left, 0))
                    if not r:
                        print(f"FAIL: no reply within 10 s, expected '{want}'", flush=True)
                        return 1
                    chunk = proc.stdout.readline()
                    if chunk == "":
                        print(f"FAIL: connection closed, expected '{want}'", flush=True)
                        return 1
                    buf += chunk
                got, buf = buf.split("\n", 1)
                print(f"< {got}", flush=True)
                parts = re.split(r"<(\w+)>", want)  # text, name, text, name, ..., text
                names = parts[1::2]
                rx = "^" + r"(\S+)".join(re.escape(t) for t in parts[0::2]) + "$"
                m = re.match(rx, got)
                if not m:
                    print(f"FAIL: expected '{want}'", flush=True)
                    return 1
                for name, val in zip(names, m.groups()):
                    if name in seen and seen[name] != val:
                        print(f"FAIL: <{name}> was {seen[name]}, now {val}", flush=True)
                        return 1
                    seen[name] = val
            else:
                print(f"FAIL: session line is neither '> ' nor '< ': {ln}", flush=True)
                return 1
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for k, v in seen.items():
        print(f"captured {k}={v}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
