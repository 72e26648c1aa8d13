#!/usr/bin/env python3
"""Mutation runner: applies each listed mutant to a scratch copy of the tree, rebuilds only what
changed, runs the tests that should catch it, and prints killed/survived per mutant.

Mutants live in tests/mutants/*.mut (format in tests/mutants/README.md). A mutant is killed when
at least one of its test commands fails; it survives when all of them pass. Before any mutant
runs, each test command is run once on the unmutated tree: a command that fails there would kill
every mutant and prove nothing, so the run stops.

Usage: tests/mutants/run.sh [--list] [--fail-fast] [--jobs N] [ID_OR_GLOB ...]
"""
import argparse
import fnmatch
import glob
import os
import shutil
import subprocess
import sys
import threading
import time

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGETS = {"tollgate", "fake_upstream", "unit_config_tests", "unit_policies_tests",
           "unit_upstream_tests", "unit_keys_tests", "unit_usage_tests", "unit_gateway_tests",
           "integration_tests"}


class Mutant:
    def __init__(self, source, line):
        self.source, self.line = source, line
        self.id = self.file = self.why = ""
        self.tests = []  # [(target, filter or "")]
        self.original = self.replacement = None

    def where(self):
        return f"{os.path.relpath(self.source, ROOT)}:{self.line}"


def parse(path):
    """Blocks of `key: value` lines, then <<< original === replacement >>>."""
    mutants, cur, mode, buf = [], None, None, []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for n, line in enumerate(lines, 1):
        if mode == "orig":
            if line == "===":
                cur.original, buf, mode = "\n".join(buf), [], "repl"
            else:
                buf.append(line)
            continue
        if mode == "repl":
            if line == ">>>":
                cur.replacement, buf, mode = "\n".join(buf), [], None
                mutants.append(cur)
                cur = None
            else:
                buf.append(line)
            continue
        if not line.strip() or line.startswith("#"):
            continue
        if line == "<<<":
            if cur is None:
                sys.exit(f"{path}:{n}: '<<<' before a 'mutant:' line")
            mode, buf = "orig", []
            continue
        key, sep, value = line.partition(":")
        if not sep:
            sys.exit(f"{path}:{n}: expected 'key: value', '<<<', '===' or '>>>'")
        key, value = key.strip(), value.strip()
        if key == "mutant":
            if cur is not None:
                sys.exit(f"{cur.where()}: mutant '{cur.id}' has no <<< ... >>> block")
            cur = Mutant(path, n)
            cur.id = value
        elif cur is None:
            sys.exit(f"{path}:{n}: '{key}:' before a 'mutant:' line")
        elif key == "file":
            cur.file = value
        elif key == "why":
            cur.why = value
        elif key == "tests":
            for spec in value.split():
                target, _, filt = spec.partition(":")
                if target not in TARGETS:
                    sys.exit(f"{path}:{n}: unknown test target '{target}'")
                cur.tests.append((target, filt))
        else:
            sys.exit(f"{path}:{n}: unknown key '{key}'")
    if mode is not None or cur is not None:
        sys.exit(f"{path}: the last mutant is not closed with '>>>'")
    return mutants


def load_all():
    mutants, seen = [], {}
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "mutants", "*.mut"))):
        for m in parse(path):
            if m.id in seen:
                sys.exit(f"{m.where()}: mutant id '{m.id}' already used at {seen[m.id]}")
            seen[m.id] = m.where()
            if not (m.file and m.tests and m.why):
                sys.exit(f"{m.where()}: '{m.id}' needs file:, tests: and why:")
            mutants.append(m)
    return mutants


def run(cmd, log, cwd=None, timeout=None, env=None):
    with open(log, "ab") as out:
        out.write(("\n$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        try:
            return subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout, env=env).returncode
        except subprocess.TimeoutExpired:
            out.write(b"\n[timed out]\n")
            return 124


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ids", nargs="*", help="mutant ids or globs (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--fail-fast", action="store_true", help="stop at the first survivor")
    ap.add_argument("--jobs", type=int, default=2,
                    help="mutants tried at once, each in its own scratch tree (default 2)")
    args = ap.parse_args()

    mutants = load_all()
    if args.ids:
        mutants = [m for m in mutants if any(fnmatch.fnmatch(m.id, p) for p in args.ids)]
        if not mutants:
            sys.exit("no mutant matches " + " ".join(args.ids))
    if args.list:
        stale = 0
        for m in mutants:
            print(f"{m.id:44} {m.file:36} {m.why}")
            with open(os.path.join(ROOT, m.file), encoding="utf-8") as f:
                count = f.read().count(m.original)
            if count != 1:
                stale += 1
                print(f"  {m.where()}: its original text occurs {count} times in {m.file} "
                      f"(must be exactly once)")
        print(f"{len(mutants)} mutants" + (f", {stale} no longer apply" if stale else ""))
        return 1 if stale else 0

    work = os.path.realpath(os.environ.get("MUTANTS_DIR", os.path.join(ROOT, "build-mutants")))
    logs = os.path.join(work, "logs")
    shutil.rmtree(logs, ignore_errors=True)
    os.makedirs(logs)
    setup_log = os.path.join(logs, "setup.log")
    # Every worker's tree has the same layout below `work`, so ccache (paths made relative to
    # `work`) compiles each file once for all of them.
    env = dict(os.environ, CCACHE_BASEDIR=work, CCACHE_NOHASHDIR="1")
    workers = [Worker(os.path.join(work, f"w{k}"), env) for k in range(max(1, args.jobs))]
    for w in workers:
        w.sync()

    for m in mutants:  # every mutant must still apply to today's code
        with open(os.path.join(workers[0].src, m.file), encoding="utf-8") as f:
            count = f.read().count(m.original)
        if count != 1:
            sys.exit(f"{m.where()}: mutant '{m.id}': its original text occurs {count} times in "
                     f"{m.file} (must be exactly once): update the mutant to today's code")

    all_targets = sorted(set().union(*(targets_of(m) for m in mutants)))
    for w in workers:
        print(f"building the unmutated tree in {w.build} (log: {setup_log})", flush=True)
        if w.configure(setup_log) != 0 or w.build_targets(all_targets, setup_log) != 0:
            sys.exit(f"the unmutated tree does not build: see {setup_log}")
    # Each target once, with every filter the mutants name for it: all must pass unmutated.
    filters = {}
    for m in mutants:
        for target, filt in m.tests:
            filters.setdefault(target, set()).add(filt or "*")
    print(f"checking that the named tests pass on the unmutated tree", flush=True)
    for target, filts in sorted(filters.items()):
        if workers[0].test(target, ":".join(sorted(filts)), setup_log) != 0:
            sys.exit(f"{target} fails WITHOUT any mutant: fix that first (see {setup_log})")

    results = {}  # id -> "killed" | "survived" | "invalid"
    lock = threading.Lock()
    pending = list(enumerate(mutants, 1))
    stop = threading.Event()
    start = time.monotonic()

    def work_on(w):
        while not stop.is_set():
            with lock:
                if not pending:
                    return
                i, m = pending.pop(0)
            t0 = time.monotonic()
            verdict, by = w.try_mutant(m, os.path.join(logs, m.id + ".log"))
            with lock:
                results[m.id] = verdict
                text = {"killed": f"killed   by {by}", "survived": "SURVIVED",
                        "invalid": "INVALID (does not build)"}[verdict]
                print(f"[{i:3}/{len(mutants)}] {m.id:44} {text}  ({time.monotonic() - t0:.0f} s)",
                      flush=True)
                if verdict != "killed" and args.fail_fast:
                    stop.set()

    threads = [threading.Thread(target=work_on, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in workers:  # leave the scratch builds matching the checkout
        w.build_targets(all_targets, setup_log)

    count = lambda v: sum(1 for r in results.values() if r == v)
    print(f"\n{count('killed')} killed, {count('survived')} survived, {count('invalid')} invalid, "
          f"{len(mutants)} listed ({time.monotonic() - start:.0f} s with {len(workers)} workers; "
          f"logs in {logs})")
    for m in mutants:
        if results.get(m.id, "not run") != "killed":
            print(f"  {results.get(m.id, 'not run')}: {m.id} ({m.where()}): {m.why}")
    return 0 if count("killed") == len(mutants) else 1


def targets_of(m):
    # The unit tests' CMake targets depend on the binary (CLI tests run it), so it is built anyway.
    t = {"tollgate"} | {target for target, _ in m.tests}
    if "integration_tests" in t:
        t.add("fake_upstream")
    return sorted(t)


class Worker:
    """One scratch copy of the tree and its build directory."""

    def __init__(self, root, env):
        self.src, self.build, self.env = os.path.join(root, "src"), os.path.join(root, "build"), env

    def sync(self):
        # A scratch copy: a mutant is never written into the checkout, even if this is killed.
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                               check=True, capture_output=True, text=True).stdout.split("\n")
        for rel in filter(None, files):
            a, b = os.path.join(ROOT, rel), os.path.join(self.src, rel)
            if not os.path.isfile(a) or rel.startswith("build"):
                continue
            os.makedirs(os.path.dirname(b), exist_ok=True)
            with open(a, "rb") as fa:
                data = fa.read()
            old = None
            if os.path.exists(b):
                with open(b, "rb") as fb:
                    old = fb.read()
            if old != data:  # unchanged files keep their mtime: the build stays incremental
                with open(b, "wb") as fb:
                    fb.write(data)
                shutil.copymode(a, b)

    def configure(self, log):
        cmd = ["cmake", "-S", self.src, "-B", self.build, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
               "-DTOLLGATE_BUILD_BENCH=OFF"]
        if shutil.which("ccache"):
            cmd.append("-DCMAKE_CXX_COMPILER_LAUNCHER=ccache")
        return run(cmd, log, env=self.env)

    def build_targets(self, targets, log):
        return run(["cmake", "--build", self.build, "-j", str(os.cpu_count() or 2), "--target"] +
                   targets, log, env=self.env)

    def test(self, target, filt, log):
        cmd = [os.path.join(self.build, target), "--gtest_brief=1"]
        if filt:
            cmd.append("--gtest_filter=" + filt)
        return run(cmd, log, cwd=self.build, timeout=600, env=self.env)

    def try_mutant(self, m, log):
        path = os.path.join(self.src, m.file)
        with open(path, encoding="utf-8") as f:
            original = f.read()
        with open(path, "w", encoding="utf-8") as f:
            f.write(original.replace(m.original, m.replacement, 1))
        try:
            if self.build_targets(targets_of(m), log) != 0:
                return "invalid", None
            for target, filt in m.tests:
                if self.test(target, filt, log) != 0:
                    return "killed", f"{target}:{filt}" if filt else target
            return "survived", None
        finally:
            with open(path, "w", encoding="utf-8") as f:
                f.write(original)

if __name__ == "__main__":
    sys.exit(main())
