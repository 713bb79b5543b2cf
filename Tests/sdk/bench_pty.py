"""PTY load benchmark (scripts/bench-pty runs it; not part of the test suite): 100 concurrent PTY
sessions across 20 sandboxes for a while, each typing one character at a time and timing its
echo through atolld, side by side with the same measurement on a local pty pair (python's
pty.fork running bash, the peer in the same run). Prints p50/p95 of both, atolld's RSS over the
run, and checks that nothing is left once the sessions close: atolld's descriptors and threads
back to where they were, no shell left in any sandbox, no /dev/pts entry left."""

import os
import pty
import select
import statistics
import threading
import time
import unittest

from daytona import CreateSandboxFromSnapshotParams, PtySize, Resources

import bench_report
from test_sdk import RUN, client

SANDBOXES = int(os.environ.get("ATOLL_PTY_SANDBOXES", "20"))
SESSIONS = int(os.environ.get("ATOLL_PTY_SESSIONS", "100"))
SECONDS = float(os.environ.get("ATOLL_PTY_SECONDS", "60"))


def daemon_pid():
    data = os.environ["ATOLL_DATA_DIR"]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if args and args[0].endswith(b"atolld") and data.encode() in args:
                return int(pid)
    raise RuntimeError("atolld not found")


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])


def descriptors(pid):
    """atolld's open descriptors by kind: TCP sockets (client connections, kept alive by the SDK's
    connection pools), unix sockets (agent connections), pipes, terminals (ptmx) and the rest."""
    with open(f"/proc/{pid}/net/unix") as f:
        unix = {line.split()[6] for line in f.readlines()[1:] if len(line.split()) > 6}
    kinds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = ("unix socket" if target[8:-1] in unix else "socket") if target.startswith("socket:") else "pipe" if target.startswith("pipe:") else \
            "terminal" if "ptmx" in target or "/dev/pts" in target else "other"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def report(sessions, sandboxes, seconds, samples, single, peer, rss, fds_before, fds_after, leftovers, pts):
    """Writes the figures into BENCHMARKS.md, replacing the section an earlier run wrote
    (scripts/bench keeps it when it rewrites the rest)."""
    import platform
    cpu = os.cpu_count()
    build = "release" if "release" in os.environ.get("ATOLL_BIN", "") else "debug"
    section = f"""<!-- bench-pty -->
## PTY load

Measured {time.strftime('%Y-%m-%d')} by `scripts/bench-pty` ({cpu} CPUs, Linux {platform.release()}; a {build} atolld): {sessions} PTY sessions across {sandboxes} sandboxes for {seconds:.0f} s through atolld, each typing one
character every 50 ms and timing its echo (the SDK's PTY WebSocket, one Python client thread per session on the same
machine); the peer is bash on a local pty pair (python's `pty.fork`) measured the same way in the same run.

| figure | p50 ms | p95 ms | echoes |
| --- | --- | --- | --- |
| echo through atolld, one session alone (10 s before the load) | {percentile(single, .5):.2f} | {percentile(single, .95):.2f} | {len(single)} |
| echo through atolld, {sessions} sessions at once | {percentile(samples, .5):.2f} | {percentile(samples, .95):.2f} | {len(samples)} |
| local pty pair (peer, one session, during the load) | {percentile(peer, .5):.2f} | {percentile(peer, .95):.2f} | {len(peer)} |

atolld RSS during the run: first {rss[0] / 1024:.1f} MiB, median {statistics.median(rss) / 1024:.1f} MiB, at most {max(rss) / 1024:.1f} MiB,
last {rss[-1] / 1024:.1f} MiB. After the sessions closed: atolld's descriptors {fds_before} → {fds_after} (by kind, sandboxes still
there), shells left per sandbox {sorted(set(leftovers))}, /dev/pts entries left {sorted(set(pts))}.
<!-- /bench-pty -->
"""
    bench_report.write_section("bench-pty", section)


class Echo:
    """Types one character at a time and waits for it to come back."""

    def __init__(self, handle):
        self.handle = handle
        self.data = b""
        self.cond = threading.Condition()
        self.samples = []

    def on_data(self, chunk):
        with self.cond:
            self.data += chunk
            self.cond.notify_all()

    def run(self, until):
        import random
        while time.time() < until:
            ch = random.choice("abcdefghijklmnopqrstuvwxyz").encode()
            with self.cond:
                self.data = b""
            start = time.perf_counter()
            self.handle.send_input(ch)
            with self.cond:
                if self.cond.wait_for(lambda: ch in self.data, timeout=10):
                    self.samples.append(time.perf_counter() - start)
            time.sleep(0.05)
        self.handle.send_input(b"\x15")  # Ctrl-U: drop the typed line


def local_peer(until):
    """The same measurement on a local pty pair: bash on python's pty.fork."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv("/bin/bash", ["bash", "--norc", "--noprofile"])
    samples = []
    time.sleep(0.3)
    os.read(fd, 65536)
    import random
    while time.time() < until:
        ch = random.choice("abcdefghijklmnopqrstuvwxyz").encode()
        start = time.perf_counter()
        os.write(fd, ch)
        got = b""
        while ch not in got:
            ready, _, _ = select.select([fd], [], [], 10)
            if not ready:
                break
            got += os.read(fd, 65536)
        else:
            samples.append(time.perf_counter() - start)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    os.close(fd)
    return samples


class PtyLoadBenchmark(unittest.TestCase):
    def test_load(self):
        daytona = client()
        atolld = daemon_pid()
        sandboxes = [daytona.create(CreateSandboxFromSnapshotParams(labels={"pty-bench": RUN}, resources=Resources(cpu=1, memory=1)))
                     for _ in range(SANDBOXES)]
        try:
            # Measured with the sandboxes there (each holds descriptors of its own: pidfd, cgroup,
            # namespaces), before the first terminal.
            for sandbox in sandboxes:
                sandbox.process.exec("true")
            fds_before = descriptors(atolld)
            threads_before = status(atolld, "Threads")
            echoes = []
            for i in range(SESSIONS):
                sandbox = sandboxes[i % len(sandboxes)]
                handle = sandbox.process.create_pty_session(f"load-{i}", pty_size=PtySize(rows=24, cols=80))
                echo = Echo(handle)
                threading.Thread(target=handle.wait, kwargs={"on_data": echo.on_data}, daemon=True).start()
                echoes.append((sandbox, handle, echo))
            time.sleep(1)
            # One session alone first: the same measurement as the peer's, through atolld.
            alone = echoes[0][2]
            alone.run(time.time() + 10)
            single = list(alone.samples)
            alone.samples.clear()
            until = time.time() + SECONDS
            rss = []
            workers = [threading.Thread(target=e.run, args=(until,)) for _, _, e in echoes]
            for w in workers:
                w.start()
            peer = []
            peer_thread = threading.Thread(target=lambda: peer.extend(local_peer(until)))
            peer_thread.start()
            while time.time() < until:
                rss.append(status(atolld, "VmRSS"))
                time.sleep(1)
            for w in workers + [peer_thread]:
                w.join()
            samples = [s for _, _, e in echoes for s in e.samples]
            for sandbox, handle, _ in echoes:
                handle.kill()
                handle.disconnect()
            time.sleep(2)
            leftovers = [sandbox.process.exec("pgrep -c -f -- '-bash|bash -l' || true").result.strip() for sandbox in sandboxes]
            pts = [sandbox.process.exec("ls /dev/pts | grep -v ptmx | wc -l").result.strip() for sandbox in sandboxes]
            fds_after = descriptors(atolld)
            threads_after = status(atolld, "Threads")
            print(f"\nPTY load: {SESSIONS} sessions across {SANDBOXES} sandboxes for {SECONDS:.0f} s, {len(samples)} echoes")
            print(f"  echo through atolld   p50 {percentile(samples, .5):.2f} ms   p95 {percentile(samples, .95):.2f} ms")
            print(f"  local pty pair (peer) p50 {percentile(peer, .5):.2f} ms   p95 {percentile(peer, .95):.2f} ms   ({len(peer)} echoes)")
            print(f"  atolld RSS MiB: first {rss[0] / 1024:.1f}, max {max(rss) / 1024:.1f}, last {rss[-1] / 1024:.1f}, "
                  f"median {statistics.median(rss) / 1024:.1f}")
            print(f"  atolld descriptors {fds_before} -> {fds_after}, threads {threads_before} -> {threads_after}")
            print(f"  shells left per sandbox {sorted(set(leftovers))}, /dev/pts entries left {sorted(set(pts))}")
            print(f"  one session alone     p50 {percentile(single, .5):.2f} ms   p95 {percentile(single, .95):.2f} ms   ({len(single)} echoes)")
            report(SESSIONS, SANDBOXES, SECONDS, samples, single, peer, rss, fds_before, fds_after, leftovers, pts)
            self.assertGreater(len(samples), SESSIONS)
            self.assertEqual(set(pts), {"0"})
            # Every terminal's master, wake pipe and agent connection is closed (client sockets the
            # SDK keeps alive are not the daemon's to close).
            for kind in ["pipe", "terminal", "unix socket", "other"]:
                self.assertLessEqual(fds_after.get(kind, 0), fds_before.get(kind, 0) + 2, kind)
        finally:
            for sandbox in sandboxes:
                daytona.delete(sandbox)
