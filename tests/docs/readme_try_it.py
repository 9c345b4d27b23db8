#!/usr/bin/env python3
"""readme_try_it.py: follows the README's "Try it" section literally.

Usage: readme_try_it.py ROOT BIN_DIR

1. Reads the section "## Try it" of ROOT/README.md. Its first shell block must be the
   command that starts the demo; it is run as written from ROOT, with DEMO_BIN=BIN_DIR
   (no build), a short storm (DURATION=5) and the env file in a temp work dir.
2. Waits for the env file, then runs every other shell block, in order, in one bash
   (set -euo pipefail) in the work dir, where build/bin is BIN_DIR and build/demo.env is
   the demo's env file: the commands the README prints, not a copy of them. curl fails on
   an HTTP error unless the command prints the status itself (-w). A block holding only
   an `nc` line followed by a session block ('> ' / '< ' lines) is played by
   lockp_session.py, which checks every reply.
3. Checks what the README says the commands show: the second booking of a seat answers
   409 SEAT_TAKEN, a read of the reservation without a token 401 UNAUTHENTICATED, the
   logout 204, lockctl's fence is greater than the fence of the nc session; and that
   every line of the README's sample demo summary (its label, and OK for a check) is a
   line the demo printed this time (a line "..." marks lines left out).
4. Sends SIGTERM to the demo, as Ctrl-C would: it must stop everything and exit 0, and
   the env file must be gone.
The demo is stopped by PID on every path."""
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def try_it_blocks(readme):
    text = open(readme, encoding="utf-8").read()
    m = re.search(r"^## Try it\n(.*?)(?=^## )", text, flags=re.S | re.M)
    if not m:
        raise SystemExit("FAIL: README.md has no '## Try it' section")
    return re.findall(r"^```(\w*)\n(.*?)^```", m.group(1), flags=re.S | re.M)


def summary_labels(readme):
    """The labels of the README's sample summary: '  seats     200' -> 'seats'."""
    text = open(readme, encoding="utf-8").read()
    m = re.search(r"^```\n(== summary.*?)^```", text, flags=re.S | re.M)
    if not m:
        raise SystemExit("FAIL: README.md shows no demo summary")
    labels = []
    for line in m.group(1).split("\n")[1:]:
        if line.strip() and line.strip() != "...":  # "...": lines left out of an excerpt
            parts = re.split(r" {2,}", line.strip(), maxsplit=1)
            label, value = parts[0], parts[1] if len(parts) > 1 else ""
            labels.append((label, value.strip() == "OK"))
    return labels


def build_script(blocks):
    """The bash script of every block after the first; returns (script, demo command)."""
    if not blocks or blocks[0][0] != "sh":
        raise SystemExit("FAIL: the first block of 'Try it' is not a shell block")
    demo_cmd = blocks[0][1].strip()
    if demo_cmd != "bash scripts/demo.sh --keep":
        raise SystemExit(f"FAIL: the first block starts '{demo_cmd}', not the demo")
    out = ["set -euo pipefail",
           # An HTTP error fails the step, unless the command prints the status itself.
           'curl() { local a; for a in "$@"; do [[ $a == -w ]] && { command curl "$@"; return; }; '
           'done; command curl --fail-with-body "$@"; }']
    i = 1
    sessions = 0
    while i < len(blocks):
        lang, body = blocks[i]
        if lang == "sh" and body.strip().startswith("nc ") and len(body.strip().split("\n")) == 1:
            if i + 1 >= len(blocks) or blocks[i + 1][0] != "":
                raise SystemExit("FAIL: the nc line is not followed by a session block")
            out.append(f"echo '$ {body.strip()}'")
            out.append(f"python3 {shlex.quote(os.path.join(HERE, 'lockp_session.py'))} "
                       f"{shlex.quote(body.strip())} <<'LOCKP_SESSION'\n{blocks[i + 1][1]}LOCKP_SESSION")
            sessions += 1
            i += 2
            continue
        if lang == "sh":
            for cmd_line in body.rstrip("\n").split("\n"):
                out.append(f"echo {shlex.quote('$ ' + cmd_line)}")
            out.append(body.rstrip("\n"))
        elif lang != "":
            raise SystemExit(f"FAIL: a '{lang}' block in 'Try it' that this test cannot run")
        i += 1
    if sessions != 1:
        raise SystemExit(f"FAIL: {sessions} nc sessions in 'Try it', want 1")
    return "\n".join(out) + "\n", demo_cmd


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    root, bindir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    script, demo_cmd = build_script(try_it_blocks(os.path.join(root, "README.md")))
    work = tempfile.mkdtemp(prefix="readme-try-it.")
    os.makedirs(os.path.join(work, "build"))
    os.symlink(bindir, os.path.join(work, "build", "bin"))
    env_file = os.path.join(work, "build", "demo.env")
    env = dict(os.environ, DEMO_BIN=bindir, DURATION="5", CLIENTS="32", DEMO_ENV_FILE=env_file)
    demo_log = open(os.path.join(work, "demo.log"), "w")
    demo = subprocess.Popen(shlex.split(demo_cmd), cwd=root, env=env, stdout=demo_log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    rc = 1
    try:
        deadline = time.monotonic() + 240
        while not os.path.exists(env_file):
            if demo.poll() is not None:
                print(f"FAIL: the demo exited {demo.returncode} before writing {env_file}")
                return 1
            if time.monotonic() > deadline:
                print("FAIL: no env file after 240 s")
                return 1
            time.sleep(0.5)
        time.sleep(0.5)  # the file is written before the "running" line
        p = subprocess.run(["bash", "-c", script], cwd=work, capture_output=True, text=True,
                           timeout=120, env={k: v for k, v in os.environ.items()
                                             if not k.startswith(("LOCKD_", "API", "PAY",
                                                                  "TOKEN", "ADMIN_TOKEN"))})
        out = p.stdout + p.stderr
        print(out)
        if p.returncode != 0:
            print(f"FAIL: the Try it commands exited {p.returncode}")
            return 1
        problems = []
        if not re.search(r"SEAT_TAKEN[^\n]* HTTP 409$", out, re.M):
            problems.append("the second booking did not show 409 SEAT_TAKEN")
        if not re.search(r"UNAUTHENTICATED[^\n]* HTTP 401$", out, re.M):
            problems.append("a read without a token did not show 401 UNAUTHENTICATED")
        if not re.search(r"^logout: HTTP 204$", out, re.M):
            problems.append("the logout did not show HTTP 204")
        m_nc = re.search(r"^captured fence=(\d+)$", out, re.M)
        m_ctl = re.search(r"^holding Performance:try, fence (\d+)$", out, re.M)
        if not m_nc or not m_ctl or int(m_ctl.group(1)) <= int(m_nc.group(1)):
            problems.append(f"lockctl's fence is not above the nc session's ({m_nc and m_nc.group(1)}"
                            f", {m_ctl and m_ctl.group(1)})")
        demo_out = re.sub(r"\x1b\[[0-9;]*m", "", open(os.path.join(work, "demo.log")).read())
        for label, is_check in summary_labels(os.path.join(root, "README.md")):
            rx = r"^  " + re.escape(label) + (r" +OK$" if is_check else r" {2,}\S")
            if not re.search(rx, demo_out, re.M):
                problems.append(f"the README's summary line '{label}' is not in the demo's output")
        if "CANCELLED" not in out:
            problems.append("the cancel did not show CANCELLED")
        for pr in problems:
            print("FAIL:", pr)
        rc = 1 if problems else 0
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
                demo.wait()
                print("FAIL: the demo did not stop within 60 s of SIGTERM")
                rc = 1
        demo_log.close()
        tail = open(os.path.join(work, "demo.log")).read()[-3000:]
        print("---- demo output (end) ----\n" + tail)
    if rc == 0 and demo.returncode != 0:
        print(f"FAIL: the demo exited {demo.returncode} after SIGTERM, want 0")
        rc = 1
    if rc == 0 and os.path.exists(env_file):
        print("FAIL: the demo left its env file behind")
        rc = 1
    if rc == 0:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work dir kept: {work} (demo.log, build/demo.env)")
    print("readme_try_it:", "PASS" if rc == 0 else "FAIL")
    return rc


if __name__ == "__main__":
    sys.exit(main())
