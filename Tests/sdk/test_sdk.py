"""The official Daytona Python SDK (pinned in Tests/sdk/run) against a real atolld.

Run through Tests/sdk/run, which starts atolld and sets DAYTONA_API_URL, DAYTONA_API_KEY,
ATOLL_OTHER_KEY (a key of a second organization), ATOLL_DATA_DIR and ATOLL_BIN.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import uuid

from daytona import (CodeRunParams, CreateSandboxFromImageParams, CreateSandboxFromSnapshotParams, Daytona,
                     DaytonaConfig, ListSandboxesQuery, Resources, SessionExecuteRequest)
from daytona.common.errors import (DaytonaAuthenticationError, DaytonaBadRequestError, DaytonaError,
                                   DaytonaFileNotFoundError, DaytonaNotFoundError,
                                   DaytonaProcessExecutionTimeoutError)

from private_daemon import PrivateDaemon

API_URL = os.environ["DAYTONA_API_URL"]
API_KEY = os.environ["DAYTONA_API_KEY"]
OTHER_KEY = os.environ["ATOLL_OTHER_KEY"]
DATA_DIR = os.environ["ATOLL_DATA_DIR"]
BIN = os.environ["ATOLL_BIN"]
RUN = uuid.uuid4().hex[:8]


def client(key=API_KEY):
    return Daytona(DaytonaConfig(api_key=key, api_url=API_URL))


def http(method, path, body=None, key=API_KEY, headers=None, raw=None):
    """A raw request to atolld; returns (status, parsed JSON or bytes)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(API_URL.rsplit("/api", 1)[0] + path, data=data, method=method)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        request.add_header(k, v)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        payload, status = error.read(), error.code
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload


class SDKTestCase(unittest.TestCase):
    """Sandboxes a test creates are deleted afterwards, also when it fails."""

    def setUp(self):
        self.daytona = client()
        self.created = []

    def tearDown(self):
        for sandbox in self.created:
            try:
                self.daytona.delete(sandbox)
            except DaytonaNotFoundError:
                pass

    def create(self, **params):
        params.setdefault("labels", {})
        params["labels"].setdefault("sdk-suite", RUN)
        sandbox = self.daytona.create(CreateSandboxFromSnapshotParams(**params))
        self.created.append(sandbox)
        return sandbox


class SharedSandboxTestCase(SDKTestCase):
    """One sandbox, `cls.shared`, for every test of the class (they only read or write files
    and run processes in it)."""

    @classmethod
    def setUpClass(cls):
        cls.shared = client().create(CreateSandboxFromSnapshotParams(labels={"sdk-suite": RUN}))

    @classmethod
    def tearDownClass(cls):
        client().delete(cls.shared)


class LifecycleTests(SDKTestCase):
    def test_create_with_everything_and_get_by_name(self):
        name = f"full-{RUN}"
        sandbox = self.create(name=name, language="typescript", labels={"team": "atoll", "tier": "1"},
                              env_vars={"GREETING": "hello"}, auto_stop_interval=30, auto_archive_interval=120,
                              auto_delete_interval=-1)
        self.assertEqual(sandbox.state, "started")
        self.assertEqual(sandbox.name, name)
        self.assertEqual(sandbox.labels["team"], "atoll")
        self.assertEqual(sandbox.labels["code-toolbox-language"], "typescript")
        self.assertEqual(sandbox.env, {"GREETING": "hello"})
        self.assertEqual((sandbox.cpu, sandbox.memory, sandbox.disk), (1, 1, 3))
        self.assertEqual((sandbox.auto_stop_interval, sandbox.auto_archive_interval, sandbox.auto_delete_interval), (30, 120, -1))
        by_name = self.daytona.get(name)
        self.assertEqual(by_name.id, sandbox.id)
        self.assertEqual(by_name.labels, sandbox.labels)
        self.assertEqual(sandbox.process.exec("echo $GREETING").result, "hello\n")

    def test_stop_start_archive_start_and_list_by_label(self):
        tag = uuid.uuid4().hex[:8]
        sandbox = self.create(labels={"cycle": tag})
        sandbox.process.exec("echo kept > ~/kept.txt")
        sandbox.stop()
        self.assertEqual(sandbox.state, "stopped")
        sandbox.start()
        self.assertEqual(sandbox.state, "started")
        listed = list(self.daytona.list(ListSandboxesQuery(labels={"cycle": tag})))
        self.assertEqual([s.id for s in listed], [sandbox.id])
        self.assertEqual(list(self.daytona.list(ListSandboxesQuery(labels={"cycle": "no-such-" + tag}))), [])
        # The SDK pattern: stop, archive (which does not wait), start.
        sandbox.stop()
        sandbox.archive()
        sandbox.start()
        self.assertEqual(sandbox.state, "started")
        self.assertEqual(sandbox.process.exec("cat ~/kept.txt").result, "kept\n")
        # Archive to the end, then start again from the archive.
        sandbox.stop()
        sandbox.archive()
        deadline = time.time() + 60
        while sandbox.state != "archived" and time.time() < deadline:
            time.sleep(0.2)
            sandbox.refresh_data()
        self.assertEqual(sandbox.state, "archived")
        sandbox.start()
        self.assertEqual(sandbox.process.exec("cat ~/kept.txt").result, "kept\n")

    def test_labels_and_intervals(self):
        sandbox = self.create()
        sandbox.set_labels({"a": "1", "code-toolbox-language": "python"})
        sandbox.set_autostop_interval(0)
        sandbox.set_auto_archive_interval(60)
        sandbox.set_auto_delete_interval(-1)
        fresh = self.daytona.get(sandbox.id)
        self.assertEqual(fresh.labels, {"a": "1", "code-toolbox-language": "python"})
        self.assertEqual((fresh.auto_stop_interval, fresh.auto_archive_interval, fresh.auto_delete_interval), (0, 60, -1))
        sandbox.refresh_activity()

    def test_resize_started_and_stopped(self):
        sandbox = self.create()
        sandbox.resize(Resources(cpu=2, memory=2))
        self.assertEqual((sandbox.cpu, sandbox.memory, sandbox.disk), (2, 2, 3))
        with self.assertRaises(DaytonaError):
            sandbox.resize(Resources(disk=4))  # the disk only while stopped
        sandbox.stop()
        sandbox.resize(Resources(cpu=1, memory=1, disk=5))
        self.assertEqual((sandbox.cpu, sandbox.memory, sandbox.disk), (1, 1, 5))
        sandbox.start()
        size = sandbox.process.exec("df -B1G --output=size /tmp | tail -1").result.strip()
        self.assertEqual(size, "5")

    def test_recover_from_a_failed_archive(self):
        sandbox = self.create()
        sandbox.process.exec("echo precious > ~/file")
        sandbox.stop()
        store = os.path.join(DATA_DIR, "archive")
        shutil.rmtree(store)
        with open(store, "w") as f:
            f.write("not a directory")  # the archive cannot be written
        try:
            sandbox.archive()
            deadline = time.time() + 30
            while sandbox.state != "error" and time.time() < deadline:
                time.sleep(0.2)
                sandbox.refresh_data()
            self.assertEqual(sandbox.state, "error")
            self.assertTrue(sandbox.recoverable)
            self.assertIn("archive", sandbox.error_reason)
        finally:
            os.remove(store)
            os.mkdir(store)
        sandbox.recover()
        self.assertEqual(sandbox.state, "started")
        self.assertEqual(sandbox.process.exec("cat ~/file").result, "precious\n")

    def test_ephemeral_sandbox_is_gone_after_stop(self):
        sandbox = self.create(ephemeral=True)
        sandbox.stop()
        with self.assertRaises(DaytonaNotFoundError):
            self.daytona.get(sandbox.id)

    def test_delete(self):
        sandbox = self.create()
        self.daytona.delete(sandbox)
        self.created.remove(sandbox)
        with self.assertRaises(DaytonaNotFoundError):
            self.daytona.get(sandbox.id)


class ProcessTests(SharedSandboxTestCase):
    def test_exec_env_cwd_exit_code(self):
        sb = self.shared
        self.assertEqual(sb.process.exec("echo hi").result, "hi\n")
        result = sb.process.exec("echo $A $B; pwd", cwd="/tmp", env={"A": "1", "B": "two words"})
        self.assertEqual(result.result, "1 two words\n/tmp\n")
        self.assertEqual(sb.process.exec("pwd").result, "/home/sandbox\n")
        failing = sb.process.exec("echo out; echo err >&2; exit 3")
        self.assertEqual(failing.exit_code, 3)
        self.assertEqual(failing.result, "out\nerr\n")

    def test_exec_timeout(self):
        start = time.time()
        with self.assertRaises(DaytonaProcessExecutionTimeoutError):
            self.shared.process.exec("sleep 30", timeout=1)
        self.assertLess(time.time() - start, 10)

    def test_code_run_in_three_languages(self):
        py = self.shared.process.code_run("import sys\nprint('py', sys.argv[1:])",
                                          params=CodeRunParams(argv=["x", "y"]))
        self.assertEqual((py.exit_code, py.result), (0, "py ['x', 'y']\n"))
        self.assertEqual(self.shared.process.code_run("import sys; sys.exit(4)").exit_code, 4)
        for language, code, expected in [
            ("javascript", "console.log('js', 40 + 2)", "js 42\n"),
            ("typescript", "const n: number = 41; console.log(`ts ${n + 1}`)", "ts 42\n"),
        ]:
            sandbox = self.create(language=language)
            result = sandbox.process.code_run(code)
            self.assertEqual((result.exit_code, result.result), (0, expected), language)

    def test_sessions(self):
        sb = self.shared
        sid = f"session-{uuid.uuid4().hex[:6]}"
        sb.process.create_session(sid)
        first = sb.process.execute_session_command(sid, SessionExecuteRequest(command="cd /tmp && export X=carried && echo sync"))
        self.assertEqual((first.exit_code, first.output), (0, "sync\n"))
        second = sb.process.execute_session_command(sid, SessionExecuteRequest(command="pwd; echo $X; exit_code_test() { return 7; }; exit_code_test"))
        self.assertEqual((second.exit_code, second.stdout), (7, "/tmp\ncarried\n"))
        started = sb.process.execute_session_command(sid, SessionExecuteRequest(command="sleep 1; echo async; echo oops >&2", run_async=True))
        self.assertIsNone(started.exit_code)
        deadline = time.time() + 30
        while sb.process.get_session_command(sid, started.cmd_id).exit_code is None and time.time() < deadline:
            time.sleep(0.2)
        self.assertEqual(sb.process.get_session_command(sid, started.cmd_id).exit_code, 0)
        logs = sb.process.get_session_command_logs(sid, started.cmd_id)
        self.assertEqual((logs.stdout, logs.stderr), ("async\n", "oops\n"))
        session = sb.process.get_session(sid)
        self.assertEqual(len(session.commands), 3)
        self.assertIn(sid, [s.session_id for s in sb.process.list_sessions()])
        sb.process.delete_session(sid)
        with self.assertRaises(DaytonaNotFoundError):
            sb.process.get_session(sid)


class FileTests(SharedSandboxTestCase):
    def test_upload_download_list_info(self):
        fs = self.shared.fs
        payload = os.urandom(300_000)
        fs.upload_file(payload, "data/blob.bin")
        fs.upload_file(b"hello\n", "/tmp/abs.txt")
        fs.upload_file(b"", "data/empty")
        self.assertEqual(fs.download_file("data/blob.bin"), payload)
        self.assertEqual(fs.download_file("/tmp/abs.txt"), b"hello\n")
        self.assertEqual(fs.download_file("data/empty"), b"")
        names = {f.name: f for f in fs.list_files("data")}
        self.assertEqual(set(names), {"blob.bin", "empty"})
        self.assertEqual(names["blob.bin"].size, 300_000)
        info = fs.get_file_info("data/blob.bin")
        self.assertEqual((info.is_dir, info.permissions, info.mode), (False, "0644", "-rw-r--r--"))
        self.assertEqual(info.owner, "1000")
        self.assertEqual(self.shared.process.exec("stat -c '%U %s' ~/data/blob.bin").result, "sandbox 300000\n")
        with self.assertRaises(DaytonaFileNotFoundError):
            fs.download_file("data/missing")
        with self.assertRaises(DaytonaFileNotFoundError):
            fs.get_file_info("data/missing")

    def test_folder_move_permissions_delete_find_search(self):
        fs = self.shared.fs
        fs.create_folder("work/sub", "750")
        self.assertEqual(fs.get_file_info("work/sub").permissions, "0750")
        fs.upload_file(b"alpha\nneedle here\nomega\n", "work/sub/a.txt")
        fs.upload_file(b"nothing\n", "work/b.py")
        fs.move_files("work/b.py", "work/sub/c.py")
        fs.set_file_permissions("work/sub/c.py", mode="700")
        self.assertEqual(fs.get_file_info("work/sub/c.py").permissions, "0700")
        fs.set_file_permissions("work/sub/c.py", owner="root", group="root")
        self.assertEqual(fs.get_file_info("work/sub/c.py").owner, "0")
        matches = fs.find_files("work", "needle")
        self.assertEqual([(m.file, m.line, m.content) for m in matches], [("work/sub/a.txt", 2, "needle here")])
        self.assertEqual(fs.search_files("work", "*.py").files, ["work/sub/c.py"])
        fs.move_files("work/sub/a.txt", "/tmp/moved.txt")  # /tmp is another filesystem: copied, then removed
        self.assertEqual(fs.download_file("/tmp/moved.txt"), b"alpha\nneedle here\nomega\n")
        fs.delete_file("work", recursive=True)
        with self.assertRaises(DaytonaFileNotFoundError):
            fs.get_file_info("work")
        self.assertEqual(self.shared.get_user_home_dir(), "/home/sandbox")
        self.assertEqual(self.shared.get_work_dir(), "/home/sandbox")


class EscapeTests(SharedSandboxTestCase):
    """No file endpoint reaches a host file: not through `..`, absolute symlinks, or a symlink
    swapped in while requests run."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sentinel_dir = tempfile.mkdtemp(prefix="atoll-sdk-sentinel-")
        cls.sentinel = os.path.join(cls.sentinel_dir, "sentinel.txt")
        with open(cls.sentinel, "w") as f:
            f.write("host secret")

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.sentinel_dir)

    def host_hostname(self):
        with open("/etc/hostname") as f:
            return f.read()

    def test_dotdot_stays_inside(self):
        fs = self.shared.fs
        climb = "../../../../../../.."
        self.assertEqual(fs.download_file(f"{climb}/etc/hostname").decode(), self.shared.id + "\n")
        fs.upload_file(b"inside", f"{climb}{self.sentinel}")
        with open(self.sentinel) as f:
            self.assertEqual(f.read(), "host secret")
        self.assertEqual(self.shared.process.exec(f"cat {self.sentinel}").result, "inside")
        fs.delete_file(f"{climb}{self.sentinel}")
        self.assertTrue(os.path.exists(self.sentinel))
        fs.set_file_permissions(f"{climb}/etc/hostname", mode="600")
        self.assertNotEqual(oct(os.stat("/etc/hostname").st_mode & 0o777), "0o600")

    def test_every_file_endpoint_stays_inside(self):
        """Each file endpoint, aimed at a host file through `..`: it acts inside the sandbox (where
        the host path does not exist) and the host file is untouched."""
        sb, sid = self.shared, self.shared.id
        # A host directory of this test alone: nothing in the sandbox has ever used its path.
        host_dir = tempfile.mkdtemp(prefix="atoll-sdk-host-", dir=self.sentinel_dir)
        host_file = os.path.join(host_dir, "secret.txt")
        with open(host_file, "w") as f:
            f.write("host secret")
        climb = "../../../../../../.."
        target = f"{climb}{host_file}"
        checks = [
            ("GET", f"/toolbox/{sid}/files/info?path={target}", None, 404),
            ("GET", f"/toolbox/{sid}/files?path={climb}{host_dir}", None, 404),
            ("GET", f"/toolbox/{sid}/files/download?path={target}", None, 404),
            ("GET", f"/toolbox/{sid}/files/find?path={climb}{host_dir}&pattern=secret", None, 404),
            ("GET", f"/toolbox/{sid}/files/search?path={climb}{host_dir}&pattern=*", None, 404),
            ("POST", f"/toolbox/{sid}/files/permissions?path={target}&mode=777", None, 404),
            ("POST", f"/toolbox/{sid}/files/move?source={target}&destination=/tmp/stolen", None, 404),
            ("DELETE", f"/toolbox/{sid}/files?path={target}&recursive=true", None, 404),
            ("POST", f"/toolbox/{sid}/files/bulk-download", {"paths": [target]}, 200),
        ]
        for method, path, body, expected in checks:
            status, reply = http(method, path, body)
            self.assertEqual(status, expected, f"{method} {path}: {reply}")
            if expected == 404:
                self.assertEqual(reply["code"], "FILE_NOT_FOUND", path)
        self.assertIn(b'name="error"', http("POST", f"/toolbox/{sid}/files/bulk-download", {"paths": [target]})[1])
        sb.fs.create_folder(f"{climb}{host_dir}/made-inside", "755")
        self.assertFalse(os.path.exists(os.path.join(host_dir, "made-inside")))
        with open(host_file) as f:
            self.assertEqual(f.read(), "host secret")
        self.assertEqual(oct(os.stat(host_file).st_mode & 0o777), "0o644")

    def test_upload_through_a_swapped_symlink(self):
        sb = self.shared
        victim = os.path.join(self.sentinel_dir, "written-through-race")
        sb.process.exec(f"mkdir -p ~/updir; nohup sh -c 'while :; do ln -sfn {self.sentinel_dir} ~/upswap; ln -sfn ~/updir ~/upswap; done' >/dev/null 2>&1 &")
        written = 0
        try:
            for i in range(100):
                try:
                    sb.fs.upload_file(b"x", "upswap/written-through-race")
                    written += 1
                except DaytonaError:
                    pass
            self.assertFalse(os.path.exists(victim), "a write followed a symlink out of the sandbox")
            # Uploads raced the swapper (some landed inside), so the check above meant something.
            self.assertGreater(written, 0, "no upload succeeded: the race was never run")
        finally:
            sb.process.exec("pkill -f 'ln -sfn' || true")

    def test_absolute_symlinks_resolve_inside(self):
        sb = self.shared
        sb.process.exec(f"ln -sfn /etc/shadow ~/shadow-link; ln -sfn {self.sentinel_dir} ~/dir-link; ln -sfn / ~/root-link")
        own = sb.fs.download_file("shadow-link")
        with open("/etc/shadow", "rb") as f:
            host = f.read()
        self.assertNotEqual(own, host)
        self.assertIn(b"sandbox:", own)
        with self.assertRaises(DaytonaFileNotFoundError):
            sb.fs.download_file("dir-link/sentinel.txt")  # the host directory does not exist inside
        self.assertEqual(sb.fs.download_file("root-link/etc/hostname").decode(), sb.id + "\n")
        for entry in sb.fs.list_files("root-link/etc"):
            self.assertNotEqual(entry.name, "atoll-host-only-file")
        with self.assertRaises(DaytonaError):  # the link leads nowhere inside: refused, not followed out
            sb.fs.upload_file(b"through a link", "dir-link/sentinel.txt")
        with open(self.sentinel) as f:
            self.assertEqual(f.read(), "host secret")

    def test_symlink_swapped_during_requests(self):
        sb = self.shared
        sb.process.exec("mkdir -p ~/real/etc && echo decoy > ~/real/etc/hostname")
        # Swap ~/race between a directory inside the sandbox and a link to / as fast as possible.
        sb.process.exec("nohup sh -c 'while :; do ln -sfn / ~/race; ln -sfn ~/real ~/race; done' >/dev/null 2>&1 &")
        host = self.host_hostname().encode()
        seen = set()
        try:
            for _ in range(150):
                try:
                    content = sb.fs.download_file("race/etc/hostname")
                except DaytonaError:
                    continue
                seen.add(content)
                self.assertNotEqual(content, host)
        finally:
            sb.process.exec("pkill -f 'ln -sfn' || true")
        self.assertTrue(seen <= {b"decoy\n", (sb.id + "\n").encode()}, seen)
        self.assertTrue(seen, "no download succeeded: the race was never run")


PROBE = '''
import errno, socket, sys
s = socket.socket()
s.settimeout(30)
try:
    s.connect(("203.0.113.10", 8080))
    s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    reply = b""
    while chunk := s.recv(4096):
        reply += chunk
    print("ok", reply.split(b"\\r\\n\\r\\n", 1)[1].decode().strip())
except socket.timeout:
    print("timeout")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
'''


class NetworkTests(SDKTestCase):
    """Egress policies through the SDK, checked with real traffic to a server in a network
    namespace the suite made (behind atolld's host namespace uplink)."""

    def probe(self, sandbox):
        return sandbox.process.code_run(PROBE).result.strip()

    def test_block_all_allow_list_and_restore(self):
        sandbox = self.create(network_block_all=True)
        self.assertTrue(sandbox.network_block_all)
        self.assertEqual(self.probe(sandbox), "EHOSTUNREACH")
        sandbox.update_network_settings(network_allow_list="203.0.113.0/24")
        self.assertFalse(sandbox.network_block_all)
        self.assertEqual(sandbox.network_allow_list, "203.0.113.0/24")
        self.assertEqual(self.probe(sandbox), "ok outside")
        sandbox.update_network_settings(network_allow_list="198.51.100.0/24")
        self.assertEqual(self.probe(sandbox), "EHOSTUNREACH")
        sandbox.update_network_settings(network_block_all=False)
        self.assertIsNone(sandbox.network_allow_list)
        self.assertEqual(self.probe(sandbox), "ok outside")
        fetched = self.daytona.get(sandbox.id)
        self.assertFalse(fetched.network_block_all)
        self.assertIsNone(fetched.network_allow_list)

    def test_allow_list_at_create_and_bad_settings(self):
        sandbox = self.create(network_allow_list="203.0.113.10/32")
        self.assertEqual(self.probe(sandbox), "ok outside")
        with self.assertRaises(DaytonaError) as bad:
            sandbox.update_network_settings(network_allow_list="203.0.113.0/33")
        self.assertIn("203.0.113.0/33", str(bad.exception))
        with self.assertRaises(DaytonaError) as domains:
            sandbox.update_network_settings(domain_allow_list="example.com")
        self.assertIn("domainAllowList is not supported", str(domains.exception))
        self.assertEqual(self.daytona.get(sandbox.id).network_allow_list, "203.0.113.10/32")
        status, body = http("POST", f"/api/sandbox/{sandbox.id}/network-settings", raw=b"{not json")
        self.assertEqual(status, 400)
        with self.assertRaises(DaytonaError) as created:
            self.create(network_allow_list="10.0.0.0/8,nonsense")
        self.assertIn("nonsense", str(created.exception))


class ErrorTests(SDKTestCase):
    def test_unknown_ids_and_bad_keys(self):
        with self.assertRaises(DaytonaNotFoundError):
            self.daytona.get("no-such-sandbox")
        with self.assertRaises(DaytonaAuthenticationError):
            client("atl_not_a_real_key_0000000000000").get("anything")
        status, body = http("GET", "/api/sandbox", key=None)
        self.assertEqual(status, 401)
        self.assertEqual(body["statusCode"], 401)

    def test_key_revocation(self):
        created = subprocess.run([f"{BIN}/atoll", "keys", "create", "--data-dir", DATA_DIR, "--name", "short-lived"],
                                 capture_output=True, check=True)
        key = created.stdout.decode().strip()
        self.assertEqual(http("GET", "/api/sandbox", key=key)[0], 200)
        listing = subprocess.run([f"{BIN}/atoll", "keys", "list", "--data-dir", DATA_DIR], capture_output=True, check=True).stdout.decode()
        self.assertNotIn(key, listing, "keys are stored hashed and never shown again")
        self.assertIn(key[:12], listing)
        subprocess.run([f"{BIN}/atoll", "keys", "revoke", "--data-dir", DATA_DIR, key[:12]], capture_output=True, check=True)
        status, body = http("GET", "/api/sandbox", key=key)
        self.assertEqual((status, body["code"]), (401, "unauthenticated"))

    def test_tenancy(self):
        mine = self.create(name=f"mine-{RUN}")
        other = client(OTHER_KEY)
        with self.assertRaises(DaytonaNotFoundError):
            other.get(mine.id)
        with self.assertRaises(DaytonaNotFoundError):
            other.get(mine.name)
        self.assertEqual([s.id for s in other.list()], [])
        status, _ = http("POST", f"/toolbox/{mine.id}/process/execute", {"command": "id"}, key=OTHER_KEY)
        self.assertEqual(status, 404)
        status, _ = http("DELETE", f"/api/sandbox/{mine.id}", key=OTHER_KEY)
        self.assertEqual(status, 404)
        self.assertEqual(self.daytona.get(mine.id).state, "started")
        theirs = other.create(CreateSandboxFromSnapshotParams(name=f"mine-{RUN}"))  # names are per organization
        try:
            self.assertNotEqual(theirs.id, mine.id)
        finally:
            other.delete(theirs)

    def test_bad_input(self):
        with self.assertRaises(DaytonaBadRequestError) as context:
            self.daytona.create(CreateSandboxFromImageParams(image="127.0.0.1:9/nothing/here:1", resources=Resources(cpu=64)))
        self.assertIn("cpu 64 exceeds the per-sandbox maximum of 4", str(context.exception))
        status, body = http("POST", "/api/sandbox", raw=b"{not json")
        self.assertEqual((status, body["message"]), (400, "invalid request body: not valid JSON"))
        status, body = http("POST", "/api/sandbox", {"cpu": "two"})
        self.assertEqual(status, 400)
        self.assertIn("cpu must be an integer", body["message"])
        status, body = http("GET", "/api/sandbox?states=bogus")
        self.assertEqual(status, 400)
        self.assertIn("bogus", body["message"])
        status, body = http("POST", "/api/sandbox", raw=b"[" + b"1," * (3 << 20) + b"1]")
        self.assertEqual(status, 413)
        status, body = http("POST", "/api/sandbox/whatever/autostop/soon")
        self.assertEqual(status, 400)
        status, body = http("GET", "/api/sandbox/no-such-id")
        self.assertEqual((status, body["code"]), (404, "not_found"))
        status, body = http("POST", "/api/sandbox", {"name": "bad name with spaces"})
        self.assertEqual(status, 400)
        self.assertIn("name", body["message"])
        status, body = http("POST", "/api/sandbox", {"labels": {"code-toolbox-language": "cobol"}})
        self.assertEqual(status, 400)
        status, body = http("POST", "/api/sandbox", {"networkAllowList": "10.0.0.0/33"})
        self.assertEqual(status, 400)
        self.assertIn("10.0.0.0/33", body["message"])

    def test_paginated_and_toolbox_url_and_activity(self):
        sandbox = self.create(labels={"page": RUN})
        status, body = http("GET", "/api/sandbox/paginated?page=1&limit=1&labels=" + urllib.request.quote(json.dumps({"page": RUN})))
        self.assertEqual(status, 200)
        self.assertEqual((body["total"], body["page"], body["totalPages"], [i["id"] for i in body["items"]]), (1, 1, 1, [sandbox.id]))
        status, body = http("GET", f"/api/sandbox/{sandbox.id}/toolbox-proxy-url")
        self.assertEqual((status, body["url"]), (200, API_URL.rsplit("/api", 1)[0] + "/toolbox"))
        before = self.daytona.get(sandbox.id).last_activity_at
        time.sleep(1.1)
        sandbox.process.exec("true")  # a toolbox call is activity
        status, _ = http("POST", f"/api/sandbox/{sandbox.id}/stop")
        self.assertEqual(status, 200)
        self.assertGreater(self.daytona.get(sandbox.id).last_activity_at, before)
        status, body = http("POST", f"/toolbox/{sandbox.id}/process/code-run", {"code": "x", "language": "ruby"})
        self.assertIn(status, (400, 409))

    def test_image_build_fails_with_a_reason(self):
        # A registry on a loopback port nothing listens on: the pull fails at once, and no test
        # sends traffic past loopback (images that build: test_images.py, with its own registry).
        with self.assertRaises(DaytonaError) as context:
            self.daytona.create(CreateSandboxFromImageParams(image="127.0.0.1:9/nothing/here:1"))
        self.assertIn("127.0.0.1:9/nothing/here:1", str(context.exception))
        failed = [s for s in self.daytona.list() if s.state == "build_failed"]
        self.assertTrue(failed)
        for sandbox in failed:
            self.assertIn("cannot pull 127.0.0.1:9/nothing/here:1", sandbox.error_reason)
            self.daytona.delete(sandbox)


class DaemonRestartTests(unittest.TestCase):
    """SIGTERM stops atolld gracefully and leaves sandboxes running; a new atolld adopts them."""

    def test_graceful_shutdown_and_readoption(self):
        daemon = PrivateDaemon("r", os.environ["ATOLL_RESTART_NETNS"], id_offset=1 << 27)
        try:
            daemon.start()
            daytona = daemon.client()
            sandbox = daytona.create()
            sandbox.process.exec("nohup sleep 300 >/dev/null 2>&1 &")
            self.assertEqual(daemon.terminate(), 0)
            self.assertFalse(os.path.exists(os.path.join(daemon.data, "atolld.url")), "a stopped daemon removes its endpoint file")
            info = json.loads(daemon.atoll("info", "--json", sandbox.id, check=True).stdout)
            self.assertEqual(info["state"], "started")
            # Still running with its processes: the embedded runner (no daemon now) adopts it.
            alive = daemon.atoll("exec", "--embedded", sandbox.id, "--", "pgrep", "-c", "sleep")
            self.assertEqual(alive.stdout, b"1\n", alive.stderr)
            daemon.start()
            daytona = daemon.client()
            again = daytona.get(sandbox.id)
            self.assertEqual(again.state, "started")
            self.assertEqual(again.process.exec("pgrep -c sleep").result, "1\n")
            daytona.delete(again)
        finally:
            daemon.cleanup()


class CLIThroughDaemonTests(unittest.TestCase):
    """The `atoll` CLI talks to atolld when given its URL (or when the local one runs)."""

    def atoll(self, *args, stdin=None, check=True):
        # Options go before any `--`, after which everything belongs to the program.
        # The key goes through the environment: a key on the command line is refused.
        result = subprocess.run([f"{BIN}/atoll", args[0], "--url", API_URL, *args[1:]],
                                input=stdin, capture_output=True, timeout=300, env=dict(os.environ, ATOLL_API_KEY=API_KEY))
        if check and result.returncode != 0:
            self.fail(f"atoll {' '.join(args)} exited {result.returncode}: {result.stderr.decode()}")
        return result

    def test_commands(self):
        name = f"cli-{RUN}"
        sandbox_id = self.atoll("create", "--name", name, "--label", f"sdk-suite={RUN}", "--language", "javascript").stdout.decode().strip()
        try:
            listed = json.loads(self.atoll("list", "--label", f"sdk-suite={RUN}", "--json").stdout)
            self.assertIn(sandbox_id, [s["id"] for s in listed])
            info = json.loads(self.atoll("info", name, "--json").stdout)
            self.assertEqual((info["id"], info["state"], info["labels"]["code-toolbox-language"]), (sandbox_id, "started", "javascript"))
            self.assertEqual(self.atoll("upload", name, "-", "in/data.txt", stdin=b"payload").returncode, 0)
            self.assertEqual(self.atoll("download", name, "in/data.txt").stdout, b"payload")
            failing = self.atoll("exec", name, "-c", "cat in/data.txt; exit 5", check=False)
            self.assertEqual((failing.returncode, failing.stdout), (5, b"payload"))
            ran = self.atoll("code-run", name, "-c", "console.log(process.argv.slice(2).join('-'))", "--", "a", "b")
            self.assertEqual(ran.stdout, b"a-b\n")
            self.assertIn(b"stopped", self.atoll("stop", name).stdout)
            self.assertIn(b"archived", self.atoll("archive", name).stdout)
            self.assertIn(b"started", self.atoll("start", name).stdout)
            self.atoll("labels", name, "team=cli")
            self.assertEqual(client().get(sandbox_id).labels, {"team": "cli", "code-toolbox-language": "javascript"})
            missing = self.atoll("info", "no-such-sandbox", check=False)
            self.assertEqual(missing.returncode, 1)
            self.assertIn(b"not found", missing.stderr)
            run = subprocess.run([f"{BIN}/atoll", "run", "--url", API_URL, "-c", "import sys; print('via daemon'); sys.exit(3)"],
                                 capture_output=True, timeout=300, env=dict(os.environ, ATOLL_API_KEY=API_KEY))
            self.assertEqual((run.returncode, run.stdout), (3, b"via daemon\n"))
        finally:
            self.atoll("delete", sandbox_id, check=False)
        self.assertEqual(self.atoll("info", sandbox_id, check=False).returncode, 1)


if __name__ == "__main__":
    unittest.main()
