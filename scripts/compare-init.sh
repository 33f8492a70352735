#!/usr/bin/env bash
# Runs issue 19's scenarios against tini, dumb-init and `pidbeat run` side by side, in one
# run, and prints a Markdown table (docs/GUIDE.md's containers section shows one).
#
#   scripts/compare-init.sh [--rounds N] [--no-docker]
#
# PIDBEAT= names the pidbeat binary (default: the release build of this checkout, built if
# missing). Needs root for the PID namespace, the memory cgroup and Docker rows; python3 for
# the measurements; tini, dumb-init (Debian packages), util-linux's script and unshare;
# Docker (docker.io) for the docker rows: the engine that answers `docker info`, else a
# private dockerd under a temp dir (no bridge, no iptables), stopped and removed at the end.
# Every container runs with --network none. Leaves nothing behind.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
if [[ -z "${PIDBEAT:-}" ]]; then
    target=$(cd "$here/.." && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    PIDBEAT="$target/release/pidbeat"
    [[ -x "$PIDBEAT" ]] || (cd "$here/.." && cargo build --release --bin pidbeat >&2)
fi
for t in tini dumb-init python3 script unshare; do
    command -v "$t" >/dev/null || {
        echo "compare-init: $t is required (scripts/deps.sh installs it)" >&2
        exit 1
    }
done
export PIDBEAT
exec python3 - "$@" <<'PY'
import json, os, select, shutil, signal, statistics, subprocess, sys, tempfile, time

ROUNDS = 100
DOCKER = True
args = sys.argv[1:]
while args:
    a = args.pop(0)
    if a == "--rounds":
        ROUNDS = int(args.pop(0))
    elif a == "--no-docker":
        DOCKER = False
    else:
        sys.exit(f"compare-init: unknown argument {a}")

PIDBEAT = os.environ["PIDBEAT"]
WORK = tempfile.mkdtemp(prefix="compare-init-")
SUPS = ["tini", "dumb-init", "pidbeat run"]


def sup(name, group=False, subreaper=False, rundir=None):
    """The supervisor's argv up to and including `--`: the child's argv follows."""
    if name == "tini":
        return ["tini"] + (["-g"] if group else []) + (["-s"] if subreaper else []) + ["--"]
    if name == "dumb-init":
        # dumb-init signals the child's whole session by default; --single-child does not.
        return ["dumb-init"] + ([] if group else ["--single-child"]) + ["--"]
    rd = rundir or tempfile.mkdtemp(dir=WORK)
    return [PIDBEAT, "run", "--agent", "cmp", "--run-dir", rd] + \
        (["--kill-group"] if group else []) + (["--subreaper"] if subreaper else []) + ["--"]


def state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def readline(p, timeout):
    r, _, _ = select.select([p.stdout], [], [], timeout)
    return p.stdout.readline().decode().strip() if r else None


def tree(pid):
    """`pid` and its descendants, deepest first."""
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                for c in f.read().split():
                    out += tree(int(c))
    except OSError:
        pass
    return out + [pid]


def end(p):
    """Lets `p` end on EOF, else kills it and everything it started; reaps it."""
    if p.stdin:
        try:
            p.stdin.close()
        except OSError:
            pass
    try:
        p.wait(timeout=2)
        return
    except subprocess.TimeoutExpired:
        pass
    for pid in tree(p.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    p.wait()


TABLE_SIGS = ["TERM", "INT", "HUP", "QUIT", "USR1", "USR2", "WINCH", "CONT", "TSTP", "TTIN"]
TRAPS = "".join(f"trap 'echo got {s}' {s}\n" for s in TABLE_SIGS) + \
    "echo ready\nwhile :; do read -r -t 0.02 _; [ $? -gt 128 ] || break; done\n"


def signals_row(name, pid1):
    """How many of the table's signals reach the child; what happens to the supervisor."""
    reached, fates = 0, []
    for s in TABLE_SIGS:
        argv = sup(name) + ["bash", "-c", TRAPS]
        if pid1:
            argv = ["unshare", "--pid", "--fork", "--mount-proc"] + argv
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        if readline(p, 5) != "ready":
            end(p)
            fates.append(f"{s}: no start")
            continue
        target = p.pid
        if pid1:
            with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
                target = int(f.read().split()[0])
        os.kill(target, getattr(signal, "SIG" + s))
        line = readline(p, 0.5)
        if line == f"got {s}":
            reached += 1
        time.sleep(0.05)
        st = state(target)
        if st is None or st == "Z":
            fates.append(f"{s} kills it")
        elif st == "T":
            fates.append(f"{s} stops it")
        end(p)
    out = f"{reached} of {len(TABLE_SIGS)} reach the child"
    return out + ("; " + ", ".join(fates) if fates else "; none harms it")


COUNT = "n=0; trap 'n=$((n+1))' INT; echo ready; i=0\n" \
    "while [ $i -lt 300 ]; do read -r -t 0.01 _; i=$((i+1))\n" \
    "if [ $n -eq 0 ]; then i=0; fi; [ $i -gt 30 ] && break; done; echo sigints=$n\n"


def ctrl_c_row(name, runs=15):
    script = os.path.join(WORK, "count.sh")
    with open(script, "w") as f:
        f.write(COUNT)
    once = 0
    for _ in range(runs):
        cmd = " ".join(f"'{a}'" for a in sup(name) + ["bash", script])
        p = subprocess.Popen(["script", "-qec", cmd, "/dev/null"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        ok = False
        while time.time() < deadline:
            l = readline(p, 1)
            if l and "ready" in l:
                p.stdin.write(b"\x03")
                p.stdin.flush()
            if l and "sigints=" in l:
                ok = l[l.index("sigints="):].strip() == "sigints=1"
                break
        once += ok
        end(p)
    return f"exactly one SIGINT {once}/{runs}"


def pending(pid):
    bits = 0
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith(("SigPnd:", "ShdPnd:")):
                bits |= int(l.split()[1], 16)
    return bits


def child_of(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return int(f.read().split()[0])


def blocked_term_row(name):
    def pre():
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    p = subprocess.Popen(sup(name) + ["sleep", "1000"], preexec_fn=pre,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    time.sleep(0.3)
    child = child_of(p.pid)
    os.kill(p.pid, signal.SIGTERM)
    time.sleep(0.3)
    # The child inherited the mask (tini, pidbeat), so a forwarded SIGTERM waits pending
    # there; a supervisor that unblocks it in the child (dumb-init) sees it die of it.
    try:
        forwarded = bool(pending(child) & (1 << 14))
    except OSError:
        forwarded = True
    end(p)
    # Killed by the signal itself (not exiting with the child's 143): it never handled it.
    died = p.returncode == -signal.SIGTERM
    return ("forwarded" if forwarded else "not forwarded: deaf to SIGTERM") + \
        ("; dies of it" if died else "")


def group_row(name):
    script = "trap 'echo caught' TERM; sleep 1000; echo done"
    p = subprocess.Popen(sup(name, group=True) + ["sh", "-c", script],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    time.sleep(0.3)
    t = time.monotonic()
    os.kill(p.pid, signal.SIGTERM)
    try:
        p.wait(timeout=3)
        out = f"exits in {(time.monotonic() - t) * 1000:.0f} ms"
    except subprocess.TimeoutExpired:
        out = "hangs (3 s)"
    end(p)
    flag = {"tini": "-g", "dumb-init": "(default)", "pidbeat run": "--kill-group"}[name]
    return f"{flag}: {out}"


def inherit_row(name):
    want_ign = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGPIPE - 1))
    want_blk = 1 << (signal.SIGUSR1 - 1)

    def pre():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, [signal.SIGUSR1])
    out = subprocess.run(sup(name) + ["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"],
                         preexec_fn=pre, capture_output=True, timeout=10).stdout.decode()
    got = dict((l.split(":")[0], int(l.split()[1], 16)) for l in out.splitlines())
    mask = 0xffffffff3fffffff  # not glibc's 32 and 33
    blk, ign = got.get("SigBlk", -1) & mask, got.get("SigIgn", -1) & mask
    if (blk, ign) == (want_blk, want_ign):
        return "kept exactly"
    return f"changed: SigBlk {blk:x} (want {want_blk:x}), SigIgn {ign:x} (want {want_ign:x})"


def orphans_row(name):
    if name == "dumb-init":
        return "no subreaper option"
    pidfile = os.path.join(WORK, f"orphan-{name.split()[0]}")
    p = subprocess.Popen(sup(name, subreaper=True) +
                         ["sh", "-c", f"(sleep 0.5 & echo $! > {pidfile}); sleep 1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    orphan = int(open(pidfile).read())
    with open(f"/proc/{orphan}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    time.sleep(0.4)
    reaped = state(orphan) is None
    p.wait(timeout=10)
    flag = {"tini": "-s", "pidbeat run": "--subreaper"}[name]
    if ppid == p.pid:
        return f"{flag}: adopted" + (", reaped" if reaped else ", left a zombie")
    return f"{flag}: goes to PID {ppid}"


def rundir_row(name):
    if name != "pidbeat run":
        return "the app runs (no run dir)"
    res = []
    blocker = os.path.join(WORK, "blocker")
    open(blocker, "w").close()
    open_dir = tempfile.mkdtemp(dir=WORK)
    os.chmod(open_dir, 0o777)
    for what, rd in [("cannot be made", os.path.join(blocker, "run")), ("0777", open_dir)]:
        r = subprocess.run(sup(name, rundir=rd) + ["sh", "-c", "exit 5"],
                           capture_output=True, timeout=20)
        warns = r.stderr.decode().count("warning")
        res.append(f"{what}: the app runs (exit {r.returncode}), {warns} warning"
                   + ("s" if warns != 1 else ""))
    return "; ".join(res)


def latency_once(argv):
    p = subprocess.Popen(argv + ["sh", "-c", "echo $$; read x"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    child = int(p.stdout.readline())
    cfd, sfd = os.pidfd_open(child), os.pidfd_open(p.pid)
    time.sleep(0.01)
    p.stdin.close()
    select.select([cfd], [], [])
    t0 = time.monotonic_ns()
    select.select([sfd], [], [])
    t1 = time.monotonic_ns()
    p.wait()
    os.close(cfd)
    os.close(sfd)
    return (t1 - t0) / 1e6


def latency_rows(rundir_base=None):
    """Child exit -> supervisor exit, interleaved so that load hits all alike."""
    v = {n: [] for n in SUPS}
    rd = tempfile.mkdtemp(dir=rundir_base or WORK)
    for _ in range(ROUNDS):
        for n in SUPS:
            v[n].append(latency_once(sup(n, rundir=rd)))
    out = {}
    for n, xs in v.items():
        xs.sort()
        out[n] = f"median {statistics.median(xs):.2f} ms, p90 {xs[int(len(xs) * 0.9)]:.2f}, " \
                 f"max {xs[-1]:.2f}"
    return out


def fs_of(path):
    r = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "--target", path], capture_output=True)
    return r.stdout.decode().strip() or "?"


def full_disk_row():
    """pidbeat run on a full tmpfs in a private mount namespace: child exit -> run exit."""
    mnt = tempfile.mkdtemp(dir=WORK)
    code = ("import os,select,subprocess,time\n"
            f"argv={sup('pidbeat run', rundir=mnt + '/run')!r}\n"
            "p=subprocess.Popen(argv+['sh','-c','read x'],stdin=subprocess.PIPE,"
            "stderr=subprocess.DEVNULL)\n"
            "time.sleep(0.3)\n"
            f"os.system('dd if=/dev/zero of={mnt}/fill bs=4k 2>/dev/null;"
            f" dd if=/dev/zero of={mnt}/fill2 bs=1 2>/dev/null')\n"
            "t=time.monotonic(); p.stdin.close(); p.wait()\n"
            "print((time.monotonic()-t)*1000)\n")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f"mount -t tmpfs -o size=64k cmp {mnt} && exec python3 -c \"$0\"",
                        code], capture_output=True, timeout=60)
    try:
        return f"{float(r.stdout.split()[-1]):.1f} ms to exit (full tmpfs)"
    except (ValueError, IndexError):
        return "n/a: " + r.stderr.decode().strip()[:80]


def oom_row(name):
    own = open("/proc/self/cgroup").read()
    v1 = [l.split(":", 2)[2] for l in own.splitlines() if "memory" in l.split(":")[1].split(",")]
    if v1:
        cg, limit = f"/sys/fs/cgroup/memory{v1[0]}/compare-init-{os.getpid()}", "memory.limit_in_bytes"
    else:
        cg, limit = f"/sys/fs/cgroup{own.split('0::')[1].split()[0]}/compare-init-{os.getpid()}", "memory.max"
    try:
        os.mkdir(cg)
        open(f"{cg}/{limit}", "w").write(str(32 << 20))
    except OSError as e:
        return f"n/a ({e})"
    try:
        rd = tempfile.mkdtemp(dir=WORK)
        r = subprocess.run(["sh", "-c", f"echo $$ > {cg}/cgroup.procs && exec \"$@\"", "sh"] +
                           sup(name, rundir=rd) + ["sh", "-c", "exec tail /dev/zero"],
                           capture_output=True, timeout=60)
        if name != "pidbeat run":
            return f"exit {r.returncode}, nothing says oom"
        ps = subprocess.run([PIDBEAT, "ps", "--run-dir", rd, "-o", "exit", "--no-header"],
                            capture_output=True, timeout=10).stdout.decode().strip()
        return f"exit {r.returncode}, ps: `{ps}`"
    finally:
        for _ in range(100):
            try:
                os.rmdir(cg)
                break
            except OSError:
                time.sleep(0.05)


# ---- Docker ---------------------------------------------------------------------------
class Docker:
    def __init__(self):
        self.own = None
        self.host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if not self.answers():
            if not shutil.which("dockerd"):
                raise RuntimeError("no engine answers and dockerd is not installed")
            t = tempfile.mkdtemp(prefix="compare-init-dockerd-", dir="/tmp")
            self.host = f"unix://{t}/docker.sock"
            log = open(f"{t}/log", "w")
            self.own = (subprocess.Popen(
                ["dockerd", "--bridge=none", "--iptables=false", "--ip-masq=false",
                 "--data-root", f"{t}/data", "--exec-root", f"{t}/exec", "--pidfile",
                 f"{t}/pid", "--host", self.host], stdout=log, stderr=log), t)
            for _ in range(300):
                if self.answers():
                    break
                time.sleep(0.1)
            else:
                self.close()
                raise RuntimeError("dockerd did not answer")
        self.tag = f"compare-init-{os.getpid()}"
        self.image = f"{self.tag}:image"
        self.build()

    def env(self):
        return dict(os.environ, DOCKER_HOST=self.host)

    def answers(self):
        return subprocess.run(["docker", "info"], env=self.env(), capture_output=True).returncode == 0

    def run(self, *a, check=True):
        r = subprocess.run(["docker", *a], env=self.env(), capture_output=True, timeout=120)
        if check and r.returncode:
            raise RuntimeError(f"docker {a}: {r.stderr.decode()}")
        return r.stdout.decode().strip()

    def build(self):
        root = tempfile.mkdtemp(dir=WORK)
        for d in ["bin", "usr/local/bin", "tmp", "pb"]:
            os.makedirs(f"{root}/{d}")
        shutil.copy("/bin/busybox", f"{root}/bin/busybox")
        for a in ["sh", "sleep", "cat", "tail", "kill", "echo", "true"]:
            os.symlink("busybox", f"{root}/bin/{a}")
        for b, dest in [(PIDBEAT, "pidbeat"), (shutil.which("tini-static") or shutil.which("tini"), "tini"),
                        (shutil.which("dumb-init"), "dumb-init")]:
            shutil.copy(b, f"{root}/usr/local/bin/{dest}")
            for l in subprocess.run(["ldd", b], capture_output=True).stdout.decode().splitlines():
                lib = next((w for w in l.split() if w.startswith("/")), None)
                if lib:
                    os.makedirs(os.path.dirname(root + lib), exist_ok=True)
                    shutil.copy(lib, root + lib)
        subprocess.run(["tar", "-C", root, "-cf", f"{root}.tar", "."], check=True)
        self.run("import", f"{root}.tar", self.image)

    def stop_row(self, name, stopsig):
        sig = stopsig.replace("SIG", "")
        c = f"{self.tag}-{name.split()[0]}-{sig}"
        argv = {"tini": ["tini", "--"], "dumb-init": ["dumb-init", "--"],
                "pidbeat run": ["pidbeat", "run", "--agent", "c", "--run-dir", "/pb", "--"]}[name]
        self.run("run", "-d", "--name", c, "--network", "none", "--stop-signal", stopsig,
                 self.image, *argv, "sh", "-c", f"trap 'exit 0' {sig}; while true; do sleep 0.05; done")
        time.sleep(0.5)
        t = time.monotonic()
        self.run("stop", "-t", "3", c)
        took = time.monotonic() - t
        code = self.run("inspect", "-f", "{{.State.ExitCode}}", c)
        self.run("rm", "-f", c)
        return f"{took:.2f} s, exit {code}"

    def close(self):
        if hasattr(self, "image"):
            ids = self.run("ps", "-aq", "--filter", f"name={self.tag}", check=False).split()
            if ids:
                self.run("rm", "-f", *ids, check=False)
            self.run("rmi", "-f", self.image, check=False)
        if self.own:
            p, t = self.own
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            shutil.rmtree(t, ignore_errors=True)
            self.own = None


def main():
    rows = []

    def row(title, f):
        cells = []
        for n in SUPS:
            try:
                cells.append(f(n))
            except Exception as e:  # one broken cell must not hide the others
                cells.append(f"error: {e}")
        rows.append((title, cells))
        print(f"compare-init: {title}: done", file=sys.stderr)

    row("signals sent to the supervisor, on a host (TERM INT HUP QUIT USR1 USR2 WINCH CONT TSTP TTIN)",
        lambda n: signals_row(n, False))
    row("the same, as PID 1 of `unshare --pid`", lambda n: signals_row(n, True))
    if DOCKER:
        try:
            d = Docker()
        except Exception as e:
            d = None
            print(f"compare-init: no Docker rows: {e}", file=sys.stderr)
        if d:
            try:
                for s in ["SIGQUIT", "SIGWINCH"]:
                    row(f"`docker stop -t 3` with `--stop-signal {s}`", lambda n: d.stop_row(n, s))
            finally:
                d.close()
    row("Ctrl-C on a TTY (`script`)", ctrl_c_row)
    row("SIGTERM blocked by the parent before exec", blocked_term_row)
    row("child ignores SIGTERM, its shell's child does not (group signalling)", group_row)
    row("child's inherited signal state (SIGINT, SIGPIPE ignored; SIGUSR1 blocked)", inherit_row)
    row("orphans when not PID 1", orphans_row)
    row("run dir unusable (cannot be made; world-writable)", rundir_row)
    lat = latency_rows()
    rows.append((f"child exit → supervisor exit ({ROUNDS} rounds, interleaved; run dir on "
                 f"{fs_of(WORK)})", [lat[n] for n in SUPS]))
    if os.path.isdir("/dev/shm"):
        lat = latency_rows("/dev/shm")
        rows.append(("the same, run dir on tmpfs (/dev/shm)", [lat[n] for n in SUPS]))
    rows.append(("the same, run dir on a full disk", ["–", "–", full_disk_row()]))
    row("a cgroup OOM kill (32 MiB memory cgroup)", oom_row)

    print(f"| scenario | {' | '.join(SUPS)} |")
    print("|---|" + "---|" * len(SUPS))
    for title, cells in rows:
        print(f"| {title} | {' | '.join(cells)} |")


try:
    main()
finally:
    shutil.rmtree(WORK, ignore_errors=True)
PY
