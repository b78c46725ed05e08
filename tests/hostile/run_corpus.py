#!/usr/bin/python3
"""Runs kvant on the hostile-input corpus (issue 15) and checks every case.

    run_corpus.py KVANT [--keep DIR] [--only SUBSTRING]

The corpus is generated fresh (make_corpus.py) in a temporary folder. Every
case runs under a time limit (30 s) and, outside sanitizer builds, an
address-space limit (RLIMIT_AS 3 GiB, so kvant's default memory budget is
1.5 GiB). Each must end in a clean error (exit 1, one line "kvant: error:
..." naming what is wrong) or a correct result (exit 0), never a signal, a
hang, another exit status, raw control characters on the terminal, or a
file written or changed anywhere but its own outputs (the corpus folder is
compared before and after each case, and a victim file must keep its bytes).
Sanitizer builds (KVANT_SANITIZED=1 in the environment) run without the
address-space limit (ASan reserves terabytes of shadow), so the one case that
needs it is reported as not run there.
"""
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TIME_LIMIT_S = int(os.environ.get("KVANT_HOSTILE_TIMEOUT", "30"))
AS_LIMIT = 3 << 30


def snapshot(folder):
    """path -> (kind, size, mtime_ns, inode) for every file under folder;
    folders by kind only (creating an allowed output changes its folder's
    mtime). The links planted in planted/ are not walked (they point at
    the victim, which is checked by content); what kvant may write there is."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        if dirpath == folder and "planted" in dirnames:
            dirnames.remove("planted")
            for name in ("q.onnx", "q.onnx.data"):
                path = os.path.join(folder, "planted", name)
                if os.path.lexists(path):
                    st = os.lstat(path)
                    out["planted/" + name] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ino)
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            out[os.path.relpath(path, folder)] = (kind,) if stat.S_ISDIR(st.st_mode) else (
                kind, st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def limits(apply_as):
    def apply():
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if apply_as:
            resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    return apply


def main():
    kvant = os.path.abspath(sys.argv[1])
    keep = sys.argv[sys.argv.index("--keep") + 1] if "--keep" in sys.argv else None
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    sanitized = os.environ.get("KVANT_SANITIZED") == "1"
    work = keep or tempfile.mkdtemp(prefix="kvant_hostile_")
    if keep:
        shutil.rmtree(keep, ignore_errors=True)
    started = time.monotonic()
    subprocess.run([sys.executable, os.path.join(HERE, "make_corpus.py"), work,
                    os.path.join(ROOT, "models", "fashion_mnist_cnn.onnx")], check=True)
    made = time.monotonic() - started
    with open(os.path.join(work, "cases.json")) as f:
        cases = json.load(f)
    victim = os.path.join(work, "victim.txt")
    victim_bytes = open(victim, "rb").read()
    failures, passed, not_run = [], 0, []
    for c in cases:
        if only and only not in c["name"]:
            continue
        if sanitized and not c["sanitized"]:
            not_run.append(c["name"])
            continue
        args = [a.replace("{D}", work) for a in c["args"]]
        planted = 0
        if c.get("plant"):
            # Links to the victim at the temporary names older kvant used,
            # for the next 4000 pids (kvant's will be among them).
            last = int(open("/proc/sys/kernel/ns_last_pid").read())
            pid_max = int(open("/proc/sys/kernel/pid_max").read())
            for pid in range(last + 1, last + 4001):
                path = os.path.join(work, c["plant"] + str(pid % pid_max))
                if not os.path.lexists(path):
                    os.symlink(os.path.relpath(victim, os.path.dirname(path)), path)
                    planted += 1
        before = snapshot(work)
        t0 = time.monotonic()
        problem = None
        try:
            r = subprocess.run([kvant, *args], capture_output=True, timeout=TIME_LIMIT_S, cwd=work,
                               preexec_fn=limits(c["limit_as"] and not sanitized))
            rc, out, err = r.returncode, r.stdout, r.stderr
        except subprocess.TimeoutExpired:
            rc, out, err = None, b"", b""
            problem = f"hung: no exit within {TIME_LIMIT_S} s"
        seconds = time.monotonic() - t0
        text = err.decode("utf-8", "replace")
        if problem is None and rc is not None and rc < 0:
            problem = f"killed by signal {-rc}: {text[-300:]}"
        elif problem is None and rc not in (0, 1):
            problem = f"exit status {rc}: {text[-300:]}"
        elif problem is None and any(b < 0x20 and b not in (0x0A, 0x09) for b in out + err):
            problem = "raw control characters in the output"
        elif problem is None and c["expect"] == "error":
            lines = text.splitlines()
            if rc != 1:
                problem = f"exit {rc}, want a clean error ('{c['needle']}'): {text[-300:]}"
            elif len(lines) != 1 or not lines[0].startswith("kvant: error: "):
                problem = f"stderr is not one 'kvant: error:' line: {text[-500:]}"
            elif c["needle"] not in lines[0]:
                problem = f"message lacks '{c['needle']}': {lines[0]}"
        elif problem is None and c["expect"] == "ok":
            if rc != 0:
                problem = f"exit {rc}, want success: {text[-500:]}"
            elif c["needle"] and c["needle"] not in (out.decode("utf-8", "replace") + text):
                problem = f"output lacks '{c['needle']}'"
        after = snapshot(work)
        allowed = tuple(c["outputs"])
        changed = sorted(p for p in set(before) | set(after)
                         if before.get(p) != after.get(p)
                         and not any(p == a or p.startswith(a + "/") for a in allowed))
        if problem is None and changed:
            problem = f"files changed outside the case's outputs: {changed[:5]}"
        if problem is None and open(victim, "rb").read() != victim_bytes:
            problem = "the victim file was overwritten"
            with open(victim, "wb") as f:
                f.write(victim_bytes)
        if problem is None and planted:
            problem = None if planted == 4000 else f"only {planted} links planted"
        status = "ok  " if problem is None else "FAIL"
        print(f"{status} {c['name']:<42} defect {c['defect']:<6} {seconds:6.2f} s"
              + ("" if problem is None else f"  {problem}"), flush=True)
        if problem is None:
            passed += 1
        else:
            failures.append(c["name"])
    for name in not_run:
        print(f"note {name}: not run in a sanitizer build (needs RLIMIT_AS, which ASan cannot run under)")
    total = time.monotonic() - started
    print(f"hostile corpus: {passed} passed, {len(failures)} failed, {len(not_run)} not run; "
          f"corpus made in {made:.1f} s, {total:.1f} s in all")
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
