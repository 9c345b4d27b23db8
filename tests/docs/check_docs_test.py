#!/usr/bin/env python3
"""check_docs_test.py: ctest docs_check. Runs check_docs.py on the tree as it is (must
pass), then on copies of the tree with one planted fault each (must fail, naming it):
a broken link, a reference to a paper outside the repository, a README over 250 lines,
a usage block that differs from --help, a wrong version. So the checker is shown to
catch what it claims to.

Usage: check_docs_test.py ROOT BIN_DIR"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK = os.path.join(HERE, "check_docs.py")


def run(root, bindir):
    p = subprocess.run([sys.executable, CHECK, root, bindir], capture_output=True, text=True,
                       timeout=120)
    return p.returncode, p.stdout + p.stderr


def edit(path, fn):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    new = fn(text)
    assert new != text, f"plant in {path} changed nothing"
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


PLANTS = [
    ("broken link", "README.md", lambda t: t + "\nSee [the guide](docs/no-such-guide.md).\n",
     "docs/no-such-guide.md: no such file"),
    ("outside reference", "docs/protocol.md", lambda t: t + "\nAs SPEC §2 says.\n", "refers to SPEC"),
    ("README too long", "README.md", lambda t: t + "\nfiller\n" * 260, "at most 250"),
    ("usage drift", "docs/operations.md",
     lambda t: t.replace("<!-- help: lockd -->\n```\n", "<!-- help: lockd -->\n```\nusage: lockd --bogus\n", 1),
     "differs from lockd --help"),
    ("wrong version", "README.md", lambda t: t.replace("\nVersion ", "\nVersion 9", 1), "README says 9"),
]


def main():
    root, bindir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    rc, out = run(root, bindir)
    print(out)
    if rc != 0:
        print("FAIL: the documentation checks fail on the tree")
        return 1
    bad = 0
    for name, rel, fn, want in PLANTS:
        tmp = tempfile.mkdtemp(prefix="docs-plant.")
        try:
            copy = os.path.join(tmp, "tree")
            shutil.copytree(root, copy, symlinks=True,
                            ignore=shutil.ignore_patterns(".git", "build*", "node_modules"))
            edit(os.path.join(copy, rel), fn)
            rc, out = run(copy, bindir)
            ok = rc != 0 and want in out
            print(f"planted {name} in {rel}: {'caught' if ok else 'NOT caught'}")
            if not ok:
                print(out)
                bad += 1
        finally:
            shutil.rmtree(tmp)
    print("docs_check:", "PASS" if bad == 0 else "FAIL")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
