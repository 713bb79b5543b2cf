"""Regression tests of the security review (docs/security.md): each reproduces an attack the review
found, from inside a sandbox and through the real API, and passes because the attack now fails.

Every probe that runs in a sandbox and could change a host if it ran there by mistake (an edit of
/etc/passwd, a kill loop) first proves it runs inside the sandbox it was meant for (a user
namespace that is not the host's, and the sandbox's id as the hostname) and refuses otherwise.
Attacks aimed at host files aim at files this test made and owns.

Run through Tests/sdk/run (see test_sdk.py for the environment).
"""
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from daytona import CreateSandboxFromSnapshotParams, DaytonaConfig, Daytona, Resources
from daytona.common.errors import DaytonaError

from private_daemon import PrivateDaemon
from test_sdk import API_KEY, API_URL, DATA_DIR, OTHER_KEY, RUN, SDKTestCase, client, http

BASE_URL = API_URL.rsplit("/api", 1)[0]
CGROUP_NAME = os.environ["ATOLL_CGROUP_NAME"]
DAEMON_PID = int(os.environ["ATOLL_DAEMON_PID"])


def guard_sh(sandbox_id):
    """A shell prelude that refuses (exit 99) unless it runs inside sandbox `sandbox_id`."""
    return (f'[ "$(hostname)" = "{sandbox_id}" ] && ! grep -qE "^ +0 +0 +4294967295" /proc/self/uid_map '
            '|| { echo "REFUSE: not inside the expected sandbox"; exit 99; }; ')


GUARD_PY = '''
import os, sys
def _inside(expected):
    with open("/proc/self/uid_map") as f:
        fields = f.read().split()
    return fields[:3] != ["0", "0", "4294967295"] and os.uname().nodename == expected
if len(sys.argv) < 2 or not _inside(sys.argv[1]):
    print("REFUSE: not inside the expected sandbox", flush=True)
    sys.exit(99)
'''


def health_latency():
    """Seconds /health takes to answer (it needs no key)."""
    start = time.monotonic()
    with urllib.request.urlopen(BASE_URL + "/health", timeout=30) as response:
        response.read()
    return time.monotonic() - start


class HealthWatch:
    """Polls /health in the background; `worst` is the slowest answer seen."""

    def __init__(self, interval=0.1):
        self.interval = interval
        self.worst = 0.0
        self.samples = 0
        self.failures = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                self.worst = max(self.worst, health_latency())
                self.samples += 1
            except Exception as error:  # noqa: BLE001 - any failure is what we look for
                self.failures.append(repr(error))
            time.sleep(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=60)


def init_pid(sandbox_id):
    """The host pid of a sandbox's PID 1 (the test reads its own daemon's cgroups)."""
    for path in (f"/sys/fs/cgroup/pids/{CGROUP_NAME}/{sandbox_id}/cgroup.procs", f"/sys/fs/cgroup/{CGROUP_NAME}/{sandbox_id}/cgroup.procs"):
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    pid = line.strip()
                    try:
                        with open(f"/proc/{pid}/comm") as c:
                            if c.read().strip() == "atoll-init":
                                return int(pid)
                    except OSError:
                        continue
    raise AssertionError(f"no atoll-init in the cgroup of {sandbox_id}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class SecurityTestCase(SDKTestCase):
    """Sandboxes of the second organization are deleted afterwards too."""

    def setUp(self):
        super().setUp()
        self.other = client(OTHER_KEY)
        self.other_created = []

    def tearDown(self):
        super().tearDown()
        for sandbox in self.other_created:
            try:
                self.other.delete(sandbox)
            except DaytonaError:
                pass

    def create_other(self, **params):
        params.setdefault("labels", {"sdk-suite": RUN})
        sandbox = self.other.create(CreateSandboxFromSnapshotParams(**params))
        self.other_created.append(sandbox)
        return sandbox

    def run_in(self, sandbox, command, timeout=60):
        """A guarded shell command inside `sandbox`; fails the test if the guard refused."""
        result = sandbox.process.exec(guard_sh(sandbox.id) + command, timeout=timeout)
        self.assertNotIn("REFUSE", result.result, "the probe did not run inside the sandbox")
        return result


class AgentBoundaryTests(SecurityTestCase):
    def test_1_permissions_through_a_symlink_never_reach_the_host_or_another_sandbox(self):
        """files/permissions on a link to a host file, or to another organization's file through
        /proc/<its PID 1>/root, changes neither: the link is resolved inside the sandbox."""
        host_dir = tempfile.mkdtemp(prefix="atoll-sec-chmod-")
        try:
            os.chmod(host_dir, 0o755)
            victim = os.path.join(host_dir, "victim.txt")
            with open(victim, "w") as f:
                f.write("host")
            os.chmod(victim, 0o644)
            theirs = self.create_other()
            theirs.process.exec("echo theirs > /home/sandbox/theirs.txt && chmod 644 /home/sandbox/theirs.txt")
            their_init = init_pid(theirs.id)
            attacker = self.create(os_user="root")
            self.run_in(attacker, f"ln -sfn {victim} /root/x && ln -sfn /proc/{their_init}/root/home/sandbox/theirs.txt /root/y "
                                  "&& echo mine > /root/real")
            for target in ("/root/x", "/root/y"):
                for mode in ("646", "4755"):
                    status, reply = http("POST", f"/toolbox/{attacker.id}/files/permissions?path={target}&mode={mode}")
                    self.assertEqual(status, 404, f"{target} {mode}: {reply}")
                    self.assertEqual(reply["code"], "FILE_NOT_FOUND")
                status, reply = http("POST", f"/toolbox/{attacker.id}/files/permissions?path={target}&owner=root&group=root")
                self.assertEqual(status, 200, reply)  # the link itself (owner change does not follow)
            self.assertEqual(stat.S_IMODE(os.stat(victim).st_mode), 0o644)
            self.assertEqual(theirs.process.exec("stat -c %a /home/sandbox/theirs.txt").result.strip(), "644")
            # The same call on a file of the sandbox works: the route is not simply refusing.
            status, reply = http("POST", f"/toolbox/{attacker.id}/files/permissions?path=/root/real&mode=600")
            self.assertEqual(status, 200, reply)
            self.assertEqual(attacker.process.exec("stat -c %a /root/real").result.strip(), "600")
        finally:
            shutil.rmtree(host_dir)

    def test_2_nothing_of_the_daemon_is_readable_during_execs(self):
        """A loop inside the sandbox reads every /proc/<pid>/cmdline and environ while execs,
        code runs and file operations happen: it never sees the daemon's command line, its
        environment, its key or its data directory."""
        sandbox = self.create()
        watcher = GUARD_PY + '''
import json, time
seen = {"cmdline": set(), "environ": set()}
end = time.time() + float(sys.argv[2])
me = os.getpid()
rounds = 0
while time.time() < end:
    rounds += 1
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        for name in seen:
            try:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    seen[name].add(f.read().decode("latin-1"))
            except OSError:
                pass
with open("/tmp/seen.json.tmp", "w") as f:
    json.dump({"rounds": rounds, **{k: sorted(v) for k, v in seen.items()}}, f)
os.rename("/tmp/seen.json.tmp", "/tmp/seen.json")
'''
        sandbox.fs.upload_file(watcher.encode(), "/tmp/watch.py")
        sandbox.process.exec(f"nohup python3 /tmp/watch.py {sandbox.id} 8 >/tmp/watch.log 2>&1 &")
        for i in range(25):
            sandbox.process.exec(f"echo exec-{i} >/dev/null")
            if i % 5 == 0:
                sandbox.process.code_run("print(1)")
                sandbox.fs.upload_file(b"x", f"/tmp/f{i}")
                sandbox.fs.download_file(f"/tmp/f{i}")
        for _ in range(200):
            try:
                seen = json.loads(sandbox.fs.download_file("/tmp/seen.json"))
                break
            except DaytonaError:
                time.sleep(0.1)
        else:
            self.fail("the watcher never finished: " + sandbox.process.exec("cat /tmp/watch.log").result)
        self.assertGreater(seen["rounds"], 10)
        everything = "\n".join(seen["cmdline"] + seen["environ"])
        self.assertIn("/bin/sh", everything, "the watcher saw no exec at all: the check would mean nothing")
        for secret in ("atolld", API_KEY, DATA_DIR, "ATOLLD_API_KEY"):
            self.assertNotIn(secret, everything)
        # The daemon's own command line and environment on the host hold no key either.
        for name in ("cmdline", "environ"):
            with open(f"/proc/{DAEMON_PID}/{name}", "rb") as f:
                self.assertNotIn(API_KEY.encode(), f.read())

    def test_3_stopped_processes_cannot_freeze_the_daemon(self):
        """The sandbox's user stops every process it may signal, over and over, while execs run:
        its own execs end by their timeout, and the daemon keeps answering everyone else."""
        attacker = self.create()
        bystander = self.create_other()
        self.run_in(attacker, "nohup sh -c 'while :; do for p in /proc/[0-9]*; do q=${p#/proc/}; "
                              "[ \"$q\" != \"$$\" ] && kill -STOP $q 2>/dev/null; done; done' >/dev/null 2>&1 &")
        results = []

        def attacked_exec():
            start = time.monotonic()
            try:
                attacker.process.exec("sleep 1; echo done", timeout=3)
                results.append(("ok", time.monotonic() - start))
            except DaytonaError as error:
                results.append((type(error).__name__, time.monotonic() - start))

        with HealthWatch() as watch:
            threads = [threading.Thread(target=attacked_exec) for _ in range(4)]
            for t in threads:
                t.start()
            for i in range(5):
                start = time.monotonic()
                self.assertEqual(bystander.process.exec(f"echo {i}").result.strip(), str(i))
                self.assertLess(time.monotonic() - start, 10)
            for t in threads:
                t.join(timeout=60)
        self.assertEqual(len(results), 4, results)
        for _, seconds in results:
            self.assertLess(seconds, 20, results)  # the timeout (3 s) plus the agent's grace
        self.assertFalse(watch.failures, watch.failures)
        self.assertGreater(watch.samples, 5)
        self.assertLess(watch.worst, 2.0)

    def test_4_proc_and_sys_through_the_files_api_are_what_the_sandbox_sees(self):
        """Kernel data the sandbox's root may not read is not readable through the files API
        either, and writes into /proc and /sys are refused (an empty upload: harmless even if
        it reached the host)."""
        sandbox = self.create(os_user="root")
        for path in ("/proc/kallsyms", "/proc/slabinfo", "/proc/1/stack", "/proc/kpageflags", "/proc/1/environ"):
            inside = sandbox.process.exec(f"cat {path} >/dev/null 2>&1; echo $?").result.strip()
            status, body = http("GET", f"/toolbox/{sandbox.id}/files/download?path={path}")
            if inside != "0":
                self.assertIn(status, (400, 403, 404), f"{path}: {status} {body[:200] if isinstance(body, bytes) else body}")
            elif path == "/proc/kallsyms":
                self.assertEqual(status, 200)
                addresses = {line.split()[0] for line in body.decode().splitlines()[:2000] if line}
                self.assertEqual(addresses, {"0" * 16}, "real kernel addresses were readable")
        for path in ("/proc/mtrr", "/proc/sys/vm/drop_caches", "/sys/kernel/mm/transparent_hugepage/enabled"):
            try:
                with open(path, "rb") as f:
                    before = f.read()
            except OSError:
                before = None  # absent, or write-only (drop_caches)
            status, reply = http("POST", f"/toolbox/{sandbox.id}/files/upload?path={path}",
                                 raw=b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n\r\n--B--\r\n",
                                 headers={"Content-Type": "multipart/form-data; boundary=B"})
            self.assertIn(status, (400, 403, 404, 409), f"{path}: {status} {reply}")
            if before is not None:
                with open(path, "rb") as f:
                    self.assertEqual(f.read(), before)


class IdentityTests(SecurityTestCase):
    def test_5_and_6_an_unmapped_uid_is_refused_and_the_daemon_stays_up(self):
        """root:x:4294967295 in the sandbox's own /etc/passwd: execs, code runs, sessions,
        uploads and new folders as that user are refused with a reason — no process runs as
        host root, nothing is created, the daemon does not crash."""
        sandbox = self.create(os_user="root")
        edit = self.run_in(sandbox, "sed -i 's/^root:x:0:0:/root:x:4294967295:0:/; s/^sandbox:x:1000:1000:/sandbox:x:4294967295:1000:/' "
                                    "/etc/passwd && grep -c 4294967295 /etc/passwd")
        self.assertEqual(edit.result.strip(), "2", edit.result)
        status, reply = http("POST", f"/toolbox/{sandbox.id}/process/execute", {"command": "id -u > /tmp/ran-as; touch /tmp/owned"})
        self.assertFalse(status == 200 and reply.get("exitCode") == 0, reply)
        self.assertIn("4294967295", json.dumps(reply))
        root = f"/proc/{init_pid(sandbox.id)}/root/tmp"
        self.assertFalse(os.path.exists(f"{root}/owned") or os.path.exists(f"{root}/ran-as"), "a process ran")
        for method, path, body in [
            ("POST", f"/toolbox/{sandbox.id}/process/code-run", {"code": "open('/tmp/owned', 'w')"}),
            ("POST", f"/toolbox/{sandbox.id}/process/session", {"sessionId": "s1"}),
            ("POST", f"/toolbox/{sandbox.id}/files/folder?path=/tmp/newdir&mode=755", None),
        ]:
            status, reply = http(method, path, body)
            self.assertIn(status, (400, 404), f"{path}: {status} {reply}")
            self.assertLess(health_latency(), 5)
        with self.assertRaises(DaytonaError):
            sandbox.fs.upload_file(b"x", "/tmp/uploaded")
        self.assertFalse(os.path.exists(f"{root}/owned") or os.path.exists(f"{root}/newdir") or os.path.exists(f"{root}/uploaded"))
        self.assertLess(health_latency(), 5)


class TreeTests(SecurityTestCase):
    def test_7_a_20000_level_tree_is_searched_and_deleted_without_crashing(self):
        sandbox = self.create()
        made = sandbox.process.exec("python3 -c \"import os\nfor _ in range(20000):\n    os.mkdir('d'); os.chdir('d')\nprint('made')\"",
                                    cwd="/home/sandbox", timeout=300)
        self.assertIn("made", made.result)
        with HealthWatch() as watch:
            status, reply = http("GET", f"/toolbox/{sandbox.id}/files/search?path=d&pattern=d")
            self.assertEqual(status, 200, reply)
            self.assertGreater(len(reply["files"]), 100)
            status, reply = http("GET", f"/toolbox/{sandbox.id}/files/find?path=d&pattern=x")
            self.assertEqual(status, 200, reply)
            status, reply = http("DELETE", f"/toolbox/{sandbox.id}/files?path=d&recursive=true")
            self.assertIn(status, (200, 204), reply)
        self.assertFalse(watch.failures, watch.failures)
        self.assertEqual(sandbox.process.exec("test -e /home/sandbox/d && echo left || echo gone").result.strip(), "gone")
        self.assertLess(fd_count(DAEMON_PID), 4000)


class CreateTests(SecurityTestCase):
    def test_8_restrictions_atoll_cannot_honour_are_refused(self):
        # (ttlMinutes and autoPauseInterval are honoured now: test_surface covers them.)
        for field, value in [("domainAllowList", "example.com"), ("outboundProxyUrl", "http://proxy.test:3128"),
                             ("secrets", [{"envVar": "X", "secretName": "y"}]), ("target", "eu"), ("kvm", True), ("gpuType", "A100")]:
            label = f"refused-{field.lower()}-{RUN}"
            status, reply = http("POST", "/api/sandbox", {field: value, "labels": {"sdk-suite": RUN, "probe": label}})
            self.assertEqual(status, 400, f"{field}: {reply}")
            self.assertIn(field, reply["message"])
            status, listed = http("GET", "/api/sandbox?labels=" + urllib.parse.quote(json.dumps({"probe": label})))
            self.assertEqual((status, listed["items"]), (200, []), f"a sandbox was created despite {field}")
        with self.assertRaises(DaytonaError):
            self.create(domain_allow_list="example.com")


class LoadTests(SecurityTestCase):
    def test_9_slow_file_work_does_not_stall_the_daemon(self):
        """Two content searches over 400 MB run while /health and another tenant's execs answer."""
        sandbox = self.create()
        self.assertEqual(sandbox.process.exec("mkdir -p /tmp/hay && for i in $(seq 50); do yes atoll-haystack-line | head -c 8000000 > /tmp/hay/f$i; done; "
                                              "cat /tmp/hay/* | wc -c", timeout=300).result.strip(), "400000000")
        bystander = self.create_other()
        finished = []

        def search():
            start = time.monotonic()
            status, _ = http("GET", f"/toolbox/{sandbox.id}/files/find?path=/tmp/hay&pattern=needle-not-there")
            finished.append((status, time.monotonic() - start))

        with HealthWatch(interval=0.05) as watch:
            threads = [threading.Thread(target=search) for _ in range(2)]
            for t in threads:
                t.start()
            time.sleep(0.2)
            start = time.monotonic()
            bystander.process.exec("true")
            bystander_seconds = time.monotonic() - start
            for t in threads:
                t.join(timeout=300)
        self.assertEqual([s for s, _ in finished], [200, 200], finished)
        self.assertFalse(watch.failures, watch.failures)
        self.assertLess(watch.worst, 1.0, f"/health took {watch.worst:.2f} s while searches ran {finished}")
        self.assertLess(bystander_seconds, 3)

    def test_9_idle_and_slow_connections_are_cut_and_capped(self):
        """Thousands of idle connections from one peer neither exhaust the daemon's descriptors
        nor keep another peer out; idle connections and dribbled headers are cut off."""
        daemon = PrivateDaemon("conn", os.environ["ATOLL_RESTART_NETNS"], 40 * 65536, extra_env={
            "ATOLL_WARM_POOL": "0", "ATOLL_HTTP_IDLE_SECONDS": "2", "ATOLL_HTTP_MAX_CONNECTIONS_PER_PEER": "50",
            "ATOLL_HTTP_MAX_CONNECTIONS": "200"})
        sockets = []
        try:
            url = daemon.start()
            port = int(url.rsplit(":", 1)[1])
            pid = daemon.process.pid
            baseline = fd_count(pid)
            # Idle connections are closed by the server after the idle time (2 s here).
            idle = [socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.4", 0)) for _ in range(20)]
            time.sleep(3.5)
            for s in idle:
                s.settimeout(1)
                try:
                    self.assertEqual(s.recv(1), b"", "an idle connection was left open")
                except ConnectionResetError:
                    pass
                s.close()
            for _ in range(1500):
                s = socket.socket()
                s.settimeout(5)
                try:
                    s.connect(("127.0.0.1", port))
                except OSError:
                    s.close()
                    continue
                sockets.append(s)
            time.sleep(0.5)
            self.assertLess(fd_count(pid), baseline + 260, "connections were not capped")
            other = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0))
            other.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertIn(b"200", other.recv(4096).split(b"\r\n")[0])
            other.close()
            # Slowloris: headers dribbled one byte at a time are cut off with the idle time.
            slow = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.3", 0))
            cut = False
            start = time.monotonic()
            for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                try:
                    slow.sendall(bytes([byte]))
                except OSError:
                    cut = True
                    break
                time.sleep(0.2)
                if time.monotonic() - start > 8:
                    break
            if not cut:
                slow.settimeout(5)
                try:
                    cut = slow.recv(1) == b""
                except OSError:
                    cut = True
            self.assertTrue(cut, "a connection dribbling its headers stayed open")
            slow.close()
            time.sleep(3)
            self.assertLess(fd_count(pid), baseline + 60, "idle connections were not closed")
        finally:
            for s in sockets:
                s.close()
            daemon.cleanup()


class AdmissionTests(SecurityTestCase):
    def test_10_creates_beyond_the_host_capacity_are_refused(self):
        accepted, refusal = [], None
        try:
            for i in range(10):
                status, reply = http("POST", "/api/sandbox", {"cpu": 4, "memory": 8, "disk": 10, "labels": {"sdk-suite": RUN}})
                if status != 200:
                    refusal = reply
                    break
                accepted.append(reply["id"])
        finally:
            for sandbox_id in accepted:
                http("DELETE", f"/api/sandbox/{sandbox_id}")
        self.assertIsNotNone(refusal, f"{len(accepted)} sandboxes of 4 vCPU / 8 GiB accepted")
        self.assertEqual((refusal["statusCode"], refusal["code"]), (503, "resource_exhausted"), refusal)
        self.assertRegex(refusal["message"], r"no room for \d+ more (vCPUs|GiB) of (CPU|memory|disk)")
        with open("/proc/meminfo") as f:
            mem_gib = int(f.readline().split()[1]) / 1048576
        self.assertLessEqual(len(accepted) * 8, mem_gib)
        self.assertLessEqual(len(accepted) * 4, os.cpu_count() * 8)

    def test_10_organization_quotas_and_task_limits(self):
        daemon = PrivateDaemon("quota", os.environ["ATOLL_RESTART_NETNS"], 42 * 65536,
                               extra_env={"ATOLL_WARM_POOL": "0", "ATOLL_ORG_MAX_CPU": "2", "ATOLL_ORG_MAX_SANDBOXES": "3"})
        try:
            daemon.start()

            def create(body):
                request = urllib.request.Request(daemon.url + "/api/sandbox", data=json.dumps(body).encode(), method="POST",
                                                 headers={"Authorization": f"Bearer {daemon.key}", "Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=120) as response:
                        return response.status, json.loads(response.read())
                except urllib.error.HTTPError as error:
                    return error.code, json.loads(error.read())

            status, first = create({"cpu": 2})
            self.assertEqual(status, 200, first)
            status, refused = create({})
            self.assertEqual((status, refused["code"]), (403, "quota_exceeded"), refused)
            self.assertIn("ATOLL_ORG_MAX_CPU", refused["message"])
            # All sandboxes together keep a quarter of the host's pids free; each has a sixteenth.
            with open("/proc/sys/kernel/pid_max") as f:
                pid_max = int(f.read())
            name = daemon.env["ATOLL_CGROUP_NAME"]
            for top in (f"/sys/fs/cgroup/pids/{name}", f"/sys/fs/cgroup/{name}"):
                if os.path.exists(f"{top}/pids.max"):
                    with open(f"{top}/pids.max") as f:
                        self.assertEqual(int(f.read()), pid_max // 4 * 3)
                    with open(f"{top}/{first['id']}/pids.max") as f:
                        self.assertEqual(int(f.read()), min(4096, max(512, pid_max // 16)))
                    break
            else:
                self.fail("no pids controller found for the top-level group")
        finally:
            daemon.cleanup()

    def test_10_transfers_stream_with_bounded_memory(self):
        """A 1 GiB upload (the largest one request may carry) and a 3 x 256 MiB bulk download move
        through the daemon without growing its memory by more than a few MiB (measured every
        20 ms while they run, and after)."""
        sandbox = self.create()
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kib(DAEMON_PID))
                time.sleep(0.02)

        baseline = rss_kib(DAEMON_PID)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            sandbox.fs.upload_file(bytes(1 << 30), "/tmp/big.bin")
            upload_peak = peak[0]
            after_upload = rss_kib(DAEMON_PID)
            sandbox.process.exec("for i in 1 2 3; do head -c 268435456 /dev/zero > /tmp/d$i; done", timeout=120)
            request = urllib.request.Request(f"{BASE_URL}/toolbox/{sandbox.id}/files/bulk-download", method="POST",
                                             data=json.dumps({"paths": ["/tmp/d1", "/tmp/d2", "/tmp/d3"]}).encode(),
                                             headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
            received = 0
            with urllib.request.urlopen(request, timeout=300) as response:
                while chunk := response.read(1 << 20):
                    received += len(chunk)
        finally:
            stop.set()
            sampler.join()
        after = rss_kib(DAEMON_PID)
        print(f"\n    daemon RSS {baseline} KiB before; at most {upload_peak} KiB during the 1 GiB upload, {after_upload} KiB after it; "
              f"at most {peak[0]} KiB during the 3 x 256 MiB download, {after} KiB after it", flush=True)
        self.assertGreater(received, 3 * (256 << 20))
        self.assertEqual(sandbox.process.exec("stat -c %s /tmp/big.bin").result.strip(), str(1 << 30))
        self.assertLess(upload_peak - baseline, 16 << 10, f"upload: RSS {baseline} -> {upload_peak} KiB")
        self.assertLess(peak[0] - baseline, 64 << 10, f"download: RSS {baseline} -> {peak[0]} KiB")


class LeakTests(SecurityTestCase):
    def test_11_no_host_paths_or_other_tenants_inside_or_in_errors(self):
        sandbox = self.create()
        others = self.create_other()
        mountinfo = sandbox.fs.download_file("/proc/self/mountinfo").decode()
        for leak in (DATA_DIR, "/var/lib/atoll", "sandboxes/", "snapshots/"):
            self.assertNotIn(leak, mountinfo)
        self.assertIn("lowerdir=lower", mountinfo)
        view = sandbox.process.exec("cat /sys/block/*/loop/backing_file /sys/devices/virtual/block/*/loop/backing_file 2>/dev/null; "
                                    "ls /sys/block /sys/class/block /sys/devices/virtual/block 2>/dev/null").result
        self.assertNotIn("disk.img", view)
        self.assertNotIn(others.id, view)
        self.assertNotIn(DATA_DIR, view)
        # An error that names a file of the data directory names it relative to it.
        stopped = self.create()
        stopped.stop()
        os.unlink(os.path.join(DATA_DIR, "sandboxes", stopped.id, "disk.img"))
        status, reply = http("POST", f"/api/sandbox/{stopped.id}/start")
        self.assertGreaterEqual(status, 400, reply)
        self.assertNotIn(DATA_DIR, json.dumps(reply))
        self.assertIn("$ATOLL_DATA", json.dumps(reply))

    def test_11_metrics_and_the_warm_pool_are_per_organization(self):
        def usage_count(key):
            status, body = http("GET", "/metrics", key=key)
            self.assertEqual(status, 200)
            text = body.decode() if isinstance(body, bytes) else str(body)
            return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                       if line.startswith("atoll_http_requests_total{") and 'route="/api/usage"' in line), text
        before, _ = usage_count(API_KEY)
        for _ in range(5):
            self.assertEqual(http("GET", "/api/usage", key=OTHER_KEY)[0], 200)
        after, _ = usage_count(API_KEY)
        self.assertEqual(after, before, "another organization's requests show in this organization's /metrics")
        theirs, other_text = usage_count(OTHER_KEY)
        self.assertGreaterEqual(theirs, 5)
        self.assertNotIn("atoll_warm_pool", other_text)
        status, reply = http("GET", "/api/warm-pool", key=OTHER_KEY)
        self.assertEqual(status, 403, reply)
        self.assertEqual(http("GET", "/api/warm-pool")[0], 200)


if __name__ == "__main__":
    unittest.main()
