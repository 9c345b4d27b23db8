#!/usr/bin/env python3
"""check_docs.py: the documentation checks of the test command.

Usage: check_docs.py ROOT BIN_DIR

Checks, on the tree at ROOT and the programs in BIN_DIR:
  - README.md: at most 250 lines, a table of contents, the version line equal to what
    every program prints for --version, and a "Try it" section;
  - docs/ and ARCHITECTURE.md: every document the README promises exists and is linked;
  - links: every relative link in README.md, ARCHITECTURE.md and docs/*.md names a file that exists, and
    every #anchor a heading of that file;
  - no document refers to anything outside the repository (the contract files, issue
    numbers, absolute paths of a workstation);
  - every usage block marked <!-- help: PROG --> in docs/ equals PROG --help's usage
    lines, so the docs cannot drift from the programs.
Prints one line per failure and exits 1 if there was any."""
import os
import re
import subprocess
import sys

DOCS = ["protocol.md", "api.md", "security.md", "operations.md", "performance.md", "chaos.md",
        "testing.md", "openapi.yaml"]
PROGRAMS = ["lockd", "reserved", "lockctl", "fakepay", "bookbench", "lockbench"]
# References that only make sense to someone holding papers outside this repository.
OUTSIDE = [
    (re.compile(r"\bSPEC\b"), "refers to SPEC"),
    (re.compile(r"\bissues? #?\d+", re.I), "refers to an issue number"),
    (re.compile(r"the issue'?s\b", re.I), "refers to 'the issue'"),
    (re.compile(r"\.\./shared|/work/"), "names a path outside the repository"),
]

failures = []


def fail(msg):
    failures.append(msg)


def anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to '-'."""
    h = re.sub(r"`", "", heading.strip().lower())
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


def headings(path):
    out = set()
    in_code = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("```"):
                in_code = not in_code
            elif not in_code and line.startswith("#"):
                out.add(anchor(line.lstrip("#")))
    return out


def check_links(root, rel):
    path = os.path.join(root, rel)
    text = open(path, encoding="utf-8").read()
    text_nocode = re.sub(r"```.*?```", "", text, flags=re.S)
    for m in re.finditer(r"\[[^\]]*\]\(([^)\s]+)\)", text_nocode):
        target = m.group(1)
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, frag = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if not os.path.exists(dest):
            fail(f"{rel}: link to {target}: no such file")
            continue
        if not os.path.realpath(dest).startswith(os.path.realpath(root) + os.sep):
            fail(f"{rel}: link to {target}: outside the repository")
            continue
        if frag and dest.endswith(".md") and frag not in headings(dest):
            fail(f"{rel}: link to {target}: no heading with anchor #{frag}")


def check_outside(root, rel):
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            for rx, why in OUTSIDE:
                if rx.search(line):
                    fail(f"{rel}:{n}: {why}: {line.strip()[:80]}")


def run(args):
    p = subprocess.run(args, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


def check_help_blocks(root, bindir, rel):
    text = open(os.path.join(root, rel), encoding="utf-8").read()
    for m in re.finditer(r"<!-- help: (\w+) -->\s*```\n(.*?)```", text, flags=re.S):
        prog, block = m.group(1), m.group(2)
        rc, out = run([os.path.join(bindir, prog), "--help"])
        usage = out.split("\n\n")[0].rstrip("\n") + "\n"
        if rc != 0:
            fail(f"{rel}: {prog} --help exited {rc}")
        elif block != usage:
            fail(f"{rel}: the usage of {prog} differs from {prog} --help:\n"
                 f"--- docs\n{block}--- {prog} --help\n{usage}")


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    root, bindir = sys.argv[1], sys.argv[2]
    readme = os.path.join(root, "README.md")
    lines = open(readme, encoding="utf-8").read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) > 250:
        fail(f"README.md: {len(lines)} lines, at most 250")
    text = "\n".join(lines)
    if not re.search(r"^- \[[^\]]+\]\(#", text, flags=re.M):
        fail("README.md: no table of contents (a list of links to its sections)")
    if not re.search(r"^## Try it$", text, flags=re.M):
        fail("README.md: no '## Try it' section")
    m = re.search(r"^Version (\d+\.\d+\.\d+)", text, flags=re.M)
    if not m:
        fail("README.md: no 'Version X.Y.Z' line")
    else:
        for prog in PROGRAMS:
            rc, out = run([os.path.join(bindir, prog), "--version"])
            if rc != 0 or out.strip() != f"{prog} {m.group(1)}":
                fail(f"{prog} --version: {out.strip()!r} (exit {rc}), README says {m.group(1)}")
    if not os.path.exists(os.path.join(root, "LICENSE")):
        fail("no LICENSE file")
    for d in DOCS:
        if not os.path.exists(os.path.join(root, "docs", d)):
            fail(f"docs/{d} is missing")
        elif d.endswith(".md") and f"docs/{d}" not in text:
            fail(f"README.md does not link docs/{d}")
    if "ARCHITECTURE.md" not in text:
        fail("README.md does not link ARCHITECTURE.md")
    mds = ["README.md", "ARCHITECTURE.md"] + [os.path.join("docs", d) for d in sorted(os.listdir(os.path.join(root, "docs")))
                           if d.endswith(".md")]
    for rel in mds:
        check_links(root, rel)
        check_outside(root, rel)
        check_help_blocks(root, bindir, rel)
    rc, out = run(["bash", os.path.join(root, "scripts", "demo.sh"), "--help"])
    if rc != 0 or re.search(r"\bissue\b|\bSPEC\b", out):
        fail(f"scripts/demo.sh --help (exit {rc}) refers to issues or SPEC or fails")
    for f in failures:
        print("FAIL:", f)
    print(f"check_docs: {len(failures)} failures in {len(mds)} documents")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
