"""The SDK's surface beyond the core: preview URLs through atolld's proxy, Git, and the small
calls (replace in files, forced and graceful stops, env updates, metrics, list filters and
sorting, refusals of what Atoll cannot honour, 501 for what it does not serve).

Run through Tests/sdk/run (see test_sdk.py for the environment). Traffic goes only to atolld on
loopback and, through its proxy, to servers inside the suite's own sandboxes.
"""
import asyncio
import base64
import http.client as httpclient
import os
import time
import unittest
import urllib.parse

from daytona import CreateSandboxFromSnapshotParams, Resources
from daytona.common.errors import DaytonaBadRequestError, DaytonaError

from test_sdk import API_URL, RUN, SDKTestCase, SharedSandboxTestCase, client, http

BASE = urllib.parse.urlsplit(API_URL)
DAEMON_PID = int(os.environ["ATOLL_DAEMON_PID"])


def fetch(path, host=None, headers=None, method="GET"):
    """A request to atolld's listener with any Host header; returns (status, headers, body)."""
    connection = httpclient.HTTPConnection(BASE.hostname, BASE.port, timeout=30)
    try:
        all_headers = dict(headers or {})
        if host:
            all_headers["Host"] = host
        connection.request(method, path, headers=all_headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def daemon_rss_kib():
    with open(f"/proc/{DAEMON_PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def serve(sandbox, port, directory="/home/sandbox/www"):
    """Starts python3's HTTP server in the sandbox and waits until it accepts connections."""
    sandbox.process.exec(f"mkdir -p {directory} && echo 'hello from {sandbox.id}' > {directory}/index.html")
    session = f"web-{port}"
    sandbox.process.create_session(session)
    from daytona import SessionExecuteRequest
    sandbox.process.execute_session_command(session, SessionExecuteRequest(
        command=f"cd {directory} && exec python3 -m http.server {port} --bind 0.0.0.0", run_async=True))
    for _ in range(100):
        probe = sandbox.process.exec(
            f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 1)' 2>/dev/null && echo up")
        if "up" in probe.result:
            return
        time.sleep(0.1)
    raise AssertionError(f"the server on port {port} did not come up")


class PreviewTests(SDKTestCase):
    def test_preview_links_tokens_public_and_failures(self):
        sandbox = self.create()
        serve(sandbox, 8000)
        link = sandbox.get_preview_link(8000)
        host = f"8000-{sandbox.id}.localhost"
        self.assertEqual(urllib.parse.urlsplit(link.url).hostname, host)
        self.assertFalse(sandbox.public)

        # Host form with the token header; without a token it is refused.
        status, _, body = fetch("/index.html", host=f"{host}:{BASE.port}", headers={"x-daytona-preview-token": link.token})
        self.assertEqual((status, body), (200, f"hello from {sandbox.id}\n".encode()))
        status, _, body = fetch("/index.html", host=host)
        self.assertEqual(status, 401)
        self.assertIn(b"needs its token", body)
        status, _, _ = fetch("/index.html", host=host, headers={"x-daytona-preview-token": "0" * 40})
        self.assertEqual(status, 401)

        # Path form: the token as a query parameter becomes a cookie for that path.
        status, headers, body = fetch(f"/preview/{sandbox.id}/8000/index.html?atoll-preview-token={link.token}")
        self.assertEqual(status, 200, body)
        cookie = headers["Set-Cookie"].split(";")[0]
        self.assertIn(f"atoll-preview-{sandbox.id}-8000=", cookie)
        self.assertIn(f"Path=/preview/{sandbox.id}/8000", headers["Set-Cookie"])
        status, _, body = fetch(f"/preview/{sandbox.id}/8000/", headers={"Cookie": cookie})
        self.assertEqual((status, body), (200, f"hello from {sandbox.id}\n".encode()))

        # The token of one sandbox opens nothing of another; a port nothing listens on is a 502
        # at once (port 22: the proxy reaches only the sandbox's own address, never the host's).
        other = self.create()
        status, _, _ = fetch("/", host=f"8000-{other.id}.localhost", headers={"x-daytona-preview-token": link.token})
        self.assertEqual(status, 401)
        other_link = other.get_preview_link(22)
        status, _, body = fetch("/", host=f"22-{other.id}.localhost", headers={"x-daytona-preview-token": other_link.token})
        self.assertEqual(status, 502, body)
        status, _, _ = fetch("/", host="8000-nosuchsandbox.localhost")
        self.assertEqual(status, 404)

        # Signed URLs: valid until they expire or are expired early.
        signed = sandbox.create_signed_preview_url(8000, expires_in_seconds=60)
        self.assertEqual((signed.port, signed.sandbox_id), (8000, sandbox.id))
        status, _, _ = fetch("/", host=host, headers={"x-daytona-preview-token": signed.token})
        self.assertEqual(status, 200)
        query = urllib.parse.urlsplit(signed.url).query
        status, _, _ = fetch(f"/?{query}", host=host)
        self.assertEqual(status, 200)
        status, _, _ = fetch("/", host=f"8001-{sandbox.id}.localhost", headers={"x-daytona-preview-token": signed.token})
        self.assertEqual(status, 401, "a signed token opens only its port")
        sandbox.expire_signed_preview_url(8000, signed.token)
        status, _, _ = fetch("/", host=host, headers={"x-daytona-preview-token": signed.token})
        self.assertEqual(status, 401)
        short = sandbox.create_signed_preview_url(8000, expires_in_seconds=1)
        time.sleep(2.1)
        status, _, _ = fetch("/", host=host, headers={"x-daytona-preview-token": short.token})
        self.assertEqual(status, 401)

        # Public: no token needed, and `public` says so; private again afterwards.
        sandbox.set_public(True)
        self.assertTrue(sandbox.public)
        self.assertTrue(self.daytona.get(sandbox.id).public)
        status, _, _ = fetch("/index.html", host=host)
        self.assertEqual(status, 200)
        sandbox.set_public(False)
        status, _, _ = fetch("/index.html", host=host)
        self.assertEqual(status, 401)


        # A large download streams: the daemon's memory stays flat.
        sandbox.process.exec("head -c 300000000 /dev/zero > /home/sandbox/www/big")
        before = daemon_rss_kib()
        connection = httpclient.HTTPConnection(BASE.hostname, BASE.port, timeout=60)
        connection.request("GET", "/big", headers={"Host": host, "x-daytona-preview-token": link.token})
        response = connection.getresponse()
        self.assertEqual(response.status, 200)
        received, peak = 0, before
        while chunk := response.read(1 << 20):
            received += len(chunk)
            if received % (32 << 20) < (1 << 20):
                peak = max(peak, daemon_rss_kib())
        connection.close()
        self.assertEqual(received, 300_000_000)
        print(f"\n  preview download of 300 MB: daemon RSS {before} KiB before, peak {peak} KiB (+{(peak - before) / 1024:.1f} MiB)")
        self.assertLess(peak - before, 48 * 1024)

        # A client that leaves after the head (the body never read) costs the daemon nothing.
        for _ in range(3):
            connection = httpclient.HTTPConnection(BASE.hostname, BASE.port, timeout=60)
            connection.request("GET", "/big", headers={"Host": host, "x-daytona-preview-token": link.token})
            self.assertEqual(connection.getresponse().status, 200)
            connection.close()
        status, _, _ = fetch("/index.html", host=host, headers={"x-daytona-preview-token": link.token})
        self.assertEqual(status, 200)

        # A server that accepts and never answers: a 504 after the deadline (3 s in this suite).
        from daytona import SessionExecuteRequest
        sandbox.process.create_session("silent")
        sandbox.process.execute_session_command("silent", SessionExecuteRequest(
            command="exec python3 -c 'import socket, time\ns = socket.socket(); s.bind((\"0.0.0.0\", 8767)); s.listen(); c = s.accept(); time.sleep(3600)'",
            run_async=True))
        time.sleep(0.5)
        start = time.monotonic()
        status, _, body = fetch("/", host=f"8767-{sandbox.id}.localhost", headers={"x-daytona-preview-token": link.token})
        self.assertEqual(status, 504, body)
        self.assertIn(b"did not answer within 3 s", body)
        self.assertLess(time.monotonic() - start, 10)

        # A stopped sandbox answers 503 at once.
        sandbox.stop()
        start = time.monotonic()
        status, _, body = fetch("/", host=host, headers={"x-daytona-preview-token": link.token})
        self.assertEqual(status, 503, body)
        self.assertLess(time.monotonic() - start, 5)


ECHO_SERVER = r"""
import base64, hashlib, socket, struct, threading
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def exact(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d:
            raise EOFError
        b += d
    return b
def handle(c):
    data = b""
    while b"\r\n\r\n" not in data:
        data += c.recv(4096)
    lines = data.decode().split("\r\n")
    headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest()).decode()
    c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Accept: " + accept + "\r\n\r\n").encode())
    path = lines[0].split()[1][:100].encode()
    c.sendall(bytes([0x81, len(path)]) + path)  # greets with its path
    while True:
        b1, b2 = exact(c, 2)
        op, n = b1 & 15, b2 & 127
        if n == 126:
            n = struct.unpack(">H", exact(c, 2))[0]
        elif n == 127:
            n = struct.unpack(">Q", exact(c, 8))[0]
        mask = exact(c, 4) if b2 & 128 else b"\0\0\0\0"
        raw = exact(c, n)
        payload = bytes(x ^ mask[i % 4] for i, x in enumerate(raw))
        if op == 8:
            c.sendall(b"\x88\x00")
            return
        if op in (1, 2):
            size = bytes([n]) if n < 126 else (bytes([126]) + struct.pack(">H", n) if n < 65536 else bytes([127]) + struct.pack(">Q", n))
            c.sendall(bytes([0x80 | op]) + size + payload)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8765))
s.listen()
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"""

SSE_SERVER = r"""
import http.server, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i in range(3):
            self.wfile.write(f"data: {i}\n\n".encode())
            self.wfile.flush()
            time.sleep(1.5)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8766), H).serve_forever()
"""


class PreviewStreamingTests(SDKTestCase):
    def test_websocket_and_server_sent_events(self):
        import websocket  # websocket-client, installed with the SDK
        from daytona import SessionExecuteRequest
        sandbox = self.create()
        sandbox.fs.upload_file(ECHO_SERVER.encode(), "echo.py")
        sandbox.fs.upload_file(SSE_SERVER.encode(), "sse.py")
        for script in ("echo.py", "sse.py"):
            sandbox.process.create_session(script)
            sandbox.process.execute_session_command(script, SessionExecuteRequest(command=f"python3 {script}", run_async=True))
        for port in (8765, 8766):
            for _ in range(100):
                if "up" in sandbox.process.exec(
                        f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 1)' 2>/dev/null && echo up").result:
                    break
                time.sleep(0.1)
        token = sandbox.get_preview_link(8765).token

        # WebSocket through the proxy: the server's greeting, text and a 200 kB binary echoed.
        ws = websocket.create_connection(f"ws://{BASE.hostname}:{BASE.port}/chat", host=f"8765-{sandbox.id}.localhost",
                                         header=[f"x-daytona-preview-token: {token}"], timeout=30)
        self.assertEqual(ws.recv(), "/chat")
        ws.send("hello")
        self.assertEqual(ws.recv(), "hello")
        blob = os.urandom(200_000)
        ws.send_binary(blob)
        self.assertEqual(ws.recv(), blob)
        ws.close()
        # The path form works too; without the token the upgrade is refused with the 401 page.
        ws = websocket.create_connection(f"ws://{BASE.hostname}:{BASE.port}/preview/{sandbox.id}/8765/x?atoll-preview-token={token}", timeout=30)
        self.assertEqual(ws.recv(), "/x")
        ws.close()
        def closed_with(url, **kwargs):
            ws = websocket.create_connection(url, timeout=30, **kwargs)
            opcode, data = ws.recv_data(control_frame=True)
            ws.close()
            self.assertEqual(opcode, websocket.ABNF.OPCODE_CLOSE)
            return int.from_bytes(data[:2], "big"), data[2:].decode()
        code, reason = closed_with(f"ws://{BASE.hostname}:{BASE.port}/", host=f"8765-{sandbox.id}.localhost")
        self.assertEqual(code, 4401)
        self.assertIn("needs its token", reason)
        code, reason = closed_with(f"ws://{BASE.hostname}:{BASE.port}/", host=f"8766-{sandbox.id}.localhost",
                                   header=[f"x-daytona-preview-token: {token}"])
        self.assertEqual(code, 4502, reason)
        self.assertIn("does not accept a WebSocket", reason)
        code, _ = closed_with(f"ws://{BASE.hostname}:{BASE.port}/", host=f"8799-{sandbox.id}.localhost",
                              header=[f"x-daytona-preview-token: {token}"])
        self.assertEqual(code, 4502)

        # Server-sent events stream as they are produced: the first arrives long before the last.
        connection = httpclient.HTTPConnection(BASE.hostname, BASE.port, timeout=30)
        start = time.monotonic()
        connection.request("GET", "/events", headers={"Host": f"8766-{sandbox.id}.localhost", "x-daytona-preview-token": token})
        response = connection.getresponse()
        self.assertEqual(response.getheader("Content-Type"), "text/event-stream")
        first = response.readline()
        self.assertEqual(first, b"data: 0\n")
        self.assertLess(time.monotonic() - start, 1.4, "the first event was held back")
        rest = response.read()
        self.assertIn(b"data: 2", rest)
        connection.close()


class GitTests(SharedSandboxTestCase):
    def test_init_commit_branch_push_clone_pull_status(self):
        git = self.shared.git
        git.init("origin.git", bare=True, initial_branch="main")
        git.init("work", initial_branch="main")
        self.shared.fs.upload_file(b"one\n", "work/a.txt")
        status = git.status("work")
        self.assertEqual(status.current_branch, "main")
        self.assertEqual([(f.name, f.worktree) for f in status.file_status], [("a.txt", "Untracked")])
        git.add("work", ["a.txt"])
        self.assertEqual([(f.name, f.staging) for f in git.status("work").file_status], [("a.txt", "Added")])
        first = git.commit("work", "first", "Ada", "ada@example.com")
        self.assertRegex(first.sha, r"^[0-9a-f]{40}$")
        git.remote_add("work", "origin", "/home/sandbox/origin.git")
        self.assertEqual([(r.name, r.url) for r in git.remotes("work").remotes], [("origin", "/home/sandbox/origin.git")])
        git.push("work", remote="origin", branch="main", set_upstream=True)
        self.assertEqual(git.status("work").upstream, "origin/main")
        git.create_branch("work", "feature")
        self.assertEqual(sorted(git.branches("work").branches), ["feature", "main"])
        git.checkout_branch("work", "feature")
        self.assertEqual(git.status("work").current_branch, "feature")
        git.checkout_branch("work", "main")
        git.delete_branch("work", "feature")
        self.assertEqual(git.branches("work").branches, ["main"])

        # Clone, then pull a commit pushed meanwhile.
        git.clone("/home/sandbox/origin.git", "copy")
        self.assertEqual(self.shared.fs.download_file("copy/a.txt"), b"one\n")
        self.shared.fs.upload_file(b"two\n", "work/b.txt")
        git.add("work", ["."])
        git.commit("work", "second", "Ada", "ada@example.com")
        self.shared.process.exec("git -C work push origin main")
        git.pull("copy")
        self.assertEqual(self.shared.fs.download_file("copy/b.txt"), b"two\n")
        log = self.shared.process.exec("git -C copy log --format='%an <%ae> %s'").result.split("\n")
        self.assertEqual(log[:2], ["Ada <ada@example.com> second", "Ada <ada@example.com> first"])

        # git's own message, with the SDK's error classes.
        with self.assertRaises(DaytonaError) as missing_branch:
            git.checkout_branch("work", "no-such-branch")
        self.assertIn("no-such-branch", str(missing_branch.exception))
        self.assertEqual(type(missing_branch.exception).__name__, "DaytonaGitBranchNotFoundError")
        with self.assertRaises(DaytonaError) as missing_repo:
            git.clone("/home/sandbox/nothing-here.git", "nothing")
        self.assertEqual(type(missing_repo.exception).__name__, "DaytonaGitRepoNotFoundError")
        with self.assertRaises(DaytonaError):
            git.status("not-a-repo-dir")

    def test_credentials_reach_the_server_and_are_not_kept(self):
        """A clone with a username and password sends them (as HTTP basic auth) to a server in the
        sandbox that records what it got, and leaves them in no git configuration file."""
        sb = self.shared
        recorder = (
            "import http.server\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        open('/home/sandbox/seen-auth', 'a').write((self.headers.get('Authorization') or 'none') + '\\n')\n"
            "        self.send_response(401 if not self.headers.get('Authorization') else 404)\n"
            "        self.send_header('WWW-Authenticate', 'Basic realm=x')\n"
            "        self.end_headers()\n"
            "    def log_message(self, *a): pass\n"
            "http.server.HTTPServer(('127.0.0.1', 9418), H).serve_forever()\n")
        sb.fs.upload_file(recorder.encode(), "recorder.py")
        from daytona import SessionExecuteRequest
        sb.process.create_session("git-recorder")
        sb.process.execute_session_command("git-recorder", SessionExecuteRequest(command="exec python3 recorder.py", run_async=True))
        time.sleep(0.5)
        secret = f"s3cret-{RUN}"
        with self.assertRaises(DaytonaError) as failed:
            sb.git.clone("http://127.0.0.1:9418/repo.git", "private", username="ada", password=secret)
        self.assertNotIn(secret, str(failed.exception))
        seen = sb.fs.download_file("seen-auth").decode()
        self.assertIn("Basic " + base64.b64encode(f"ada:{secret}".encode()).decode(), seen)
        leftovers = sb.process.exec(f"grep -rs {secret} ~/.gitconfig ~/.config/git private/.git/config /etc/gitconfig; echo end").result
        self.assertEqual(leftovers.strip(), "end")


class CoverageTests(unittest.TestCase):
    def test_readme_states_the_coverage_this_daemon_has(self):
        """scripts/sdk-coverage probes this suite's daemon; the README's count must be its result."""
        import json as jsonlib
        import re
        import subprocess
        root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
        result = subprocess.run([os.path.join(root, "scripts", "sdk-coverage"), "--json"], capture_output=True, text=True,
                                timeout=300, env=dict(os.environ))
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        report = jsonlib.loads(result.stdout)
        with open(os.path.join(root, "README.md")) as f:
            stated = re.search(r"\*\*(\d+) of (\d+)\*\*", f.read())
        self.assertIsNotNone(stated, "the README states the SDK coverage as **N of M**")
        self.assertEqual((int(stated.group(1)), int(stated.group(2))), (report["served"], report["total"]))


class SmallCallTests(SDKTestCase):
    def test_unknown_routes_are_501_naming_them(self):
        sandbox = self.create()
        for method, path in [("POST", f"/api/sandbox/{sandbox.id}/fork"), ("GET", f"/toolbox/{sandbox.id}/lsp/completions"),
                             ("GET", "/api/volumes")]:
            status, body = http(method, path, {})
            self.assertEqual((status, body["code"]), (501, "not_implemented"), path)
            self.assertIn(path, body["message"])
        # A WebSocket Atoll does not serve (LSP) is accepted only to be closed with 4501 naming it.
        import websocket
        ws = websocket.create_connection(f"ws://{BASE.hostname}:{BASE.port}/toolbox/{sandbox.id}/lsp/completions",
                                         header=[f"Authorization: Bearer {os.environ['DAYTONA_API_KEY']}"], timeout=30)
        opcode, data = ws.recv_data(control_frame=True)
        ws.close()
        self.assertEqual((opcode, int.from_bytes(data[:2], "big")), (websocket.ABNF.OPCODE_CLOSE, 4501))
        self.assertIn("lsp/completions is not implemented", data[2:].decode())

    def test_refused_create_fields(self):
        for field, value in [("target", "eu"), ("kvm", True), ("gpuType", "A100"), ("domainAllowList", "example.com")]:
            status, body = http("POST", "/api/sandbox", {field: value})
            self.assertEqual(status, 400, field)
            self.assertIn(field, body["message"])

    def test_replace_in_files(self):
        sandbox = self.create()
        sandbox.fs.upload_file(b"alpha beta alpha\n", "r/one.txt")
        sandbox.fs.upload_file(b"\xff\xfe alpha \x00\n", "r/two.bin")
        sandbox.process.exec("chmod 0751 r/one.txt")
        results = sandbox.fs.replace_in_files(["r/one.txt", "r/two.bin", "r/missing"], "alpha", "omega")
        self.assertEqual([(r.file, r.success) for r in results], [("r/one.txt", True), ("r/two.bin", True), ("r/missing", False)])
        self.assertIn("missing", results[2].error)
        self.assertEqual(sandbox.fs.download_file("r/one.txt"), b"omega beta omega\n")
        self.assertEqual(sandbox.fs.download_file("r/two.bin"), b"\xff\xfe omega \x00\n")
        self.assertEqual(sandbox.process.exec("stat -c %a r/one.txt").result.strip(), "751")

    def test_graceful_and_forced_stop(self):
        """A graceful stop lets a process that handles SIGTERM finish its work; force kills at once."""
        script = ("import signal, sys, time\n"
                  "def bye(*_):\n"
                  "    open('/home/sandbox/said-goodbye', 'w').write('yes')\n"
                  "    sys.exit(0)\n"
                  "signal.signal(signal.SIGTERM, bye)\n"
                  "open('/home/sandbox/ready', 'w').write('1')\n"
                  "time.sleep(3600)\n")
        for force, expected in [(False, True), (True, False)]:
            sandbox = self.create()
            sandbox.fs.upload_file(script.encode(), "term.py")
            from daytona import SessionExecuteRequest
            sandbox.process.create_session("t")
            sandbox.process.execute_session_command("t", SessionExecuteRequest(command="exec python3 term.py", run_async=True))
            for _ in range(100):
                if "1" in sandbox.process.exec("cat ready 2>/dev/null").result:
                    break
                time.sleep(0.05)
            sandbox.stop(force=force)
            sandbox.start()
            said = sandbox.process.exec("cat said-goodbye 2>/dev/null").result == "yes"
            self.assertEqual(said, expected, f"force={force}")

    def test_pause_resume_ttl_auto_pause(self):
        """pause freezes every process (memory kept), start thaws them where they were."""
        sandbox = self.create()
        from daytona import SessionExecuteRequest
        sandbox.process.create_session("count")
        sandbox.process.execute_session_command("count", SessionExecuteRequest(
            command="python3 -c 'import time\nn = 0\nwhile True:\n    n += 1; open(\"/home/sandbox/n\", \"w\").write(str(n)); time.sleep(0.05)'",
            run_async=True))
        time.sleep(0.5)
        sandbox.pause()
        self.assertEqual(sandbox.state, "paused")
        with self.assertRaises(DaytonaError) as refused:
            sandbox.process.exec("true")
        self.assertIn("paused", str(refused.exception))
        usage_paused = http("GET", f"/api/sandbox/{sandbox.id}")[1]
        self.assertEqual(usage_paused["desiredState"], "paused")
        sandbox.start()
        self.assertEqual(sandbox.state, "started")
        first = int(sandbox.process.exec("cat n").result)
        time.sleep(0.3)
        self.assertGreater(int(sandbox.process.exec("cat n").result), first, "the same process carries on counting")
        self.assertEqual(sandbox.process.exec("pgrep -c -f 'while True'").result.strip(), "1")
        sandbox.set_auto_pause_interval(30)
        sandbox.set_ttl(120)
        fresh = self.daytona.get(sandbox.id)
        self.assertEqual(fresh.auto_pause_interval, 30)
        self.assertIsNotNone(fresh.auto_destroy_at)
        sandbox.pause()
        sandbox.stop()
        self.assertEqual(sandbox.state, "stopped")

    def test_signed_file_urls(self):
        """download_url / upload_url work without a key, only for their path and operation,
        until they expire or the signing key is rotated."""
        import urllib.request as request
        import urllib.error
        sandbox = self.create()
        sandbox.fs.upload_file(b"signed payload", "report.txt")
        url = sandbox.download_url("report.txt", ttl_seconds=60)
        with request.urlopen(url, timeout=30) as response:
            self.assertEqual(response.read(), b"signed payload")
        def status(url, data=None, headers=None):
            try:
                with request.urlopen(request.Request(url, data=data, headers=headers or {}), timeout=30) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code
        self.assertEqual(status(url.replace("report.txt", "other.txt")), 401, "the signature covers the path")
        self.assertEqual(status(url.replace("/files/download", "/files/info")), 401, "and only downloads")
        boundary = "atollboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\nuploaded\r\n--{boundary}--\r\n").encode()
        upload = sandbox.upload_url("up/new.txt", ttl_seconds=60)
        self.assertEqual(status(upload, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}), 200)
        self.assertEqual(sandbox.fs.download_file("up/new.txt"), b"uploaded")
        expired = sandbox.download_url("report.txt", ttl_seconds=1)
        time.sleep(2.1)
        self.assertEqual(status(expired), 401)
        sandbox.rotate_signing_key()
        self.assertEqual(status(url), 401, "a rotated key ends the old URLs")
        sandbox._signing_key = None  # the SDK caches the key for 15 s
        with request.urlopen(sandbox.download_url("report.txt"), timeout=30) as response:
            self.assertEqual(response.read(), b"signed payload")

    def test_entrypoint_session_is_empty(self):
        sandbox = self.create()
        session = sandbox.process.get_entrypoint_session()
        self.assertEqual((session.session_id, session.commands or []), ("entrypoint", []))
        logs = sandbox.process.get_entrypoint_logs()
        self.assertEqual(logs.output, "")
        # Following them is a WebSocket that ends at once (there is nothing to follow); a plain
        # request for it is told it needs the upgrade.
        status, body = http("GET", f"/toolbox/{sandbox.id}/process/session/entrypoint/logs?follow=true")
        self.assertEqual((status, body["code"]), (400, "invalid_argument"))
        self.assertIn("WebSocket", body["message"])
        seen = []
        asyncio.run(sandbox.process.get_entrypoint_logs_async(seen.append, seen.append))
        self.assertEqual(seen, [])

    def test_daytona_drop_in_paths(self):
        """Programs written for Daytona use /home/daytona and the user daytona: both lead to the
        sandbox user and its home, while user-home-dir still tells the truth."""
        sandbox = self.create()
        sandbox.fs.upload_file(b"hi", "/home/daytona/dropin.txt")
        self.assertEqual(sandbox.fs.download_file("/home/sandbox/dropin.txt"), b"hi")
        self.assertEqual(sandbox.process.exec("cd /home/daytona && cat dropin.txt").result, "hi")
        self.assertEqual(sandbox.get_user_home_dir(), "/home/sandbox")
        self.assertEqual(sandbox.process.exec("id -un").result.strip(), "sandbox")
        self.assertEqual(sandbox.process.exec("getent passwd daytona | cut -d: -f3,6").result.strip(), "1000:/home/sandbox")
        as_daytona = self.create(user="daytona")
        self.assertEqual(as_daytona.process.exec("id -u; echo $HOME").result.split(), ["1000", "/home/sandbox"])
        self.assertEqual(as_daytona.get_user_home_dir(), "/home/sandbox")

    def test_update_env_and_metrics(self):
        sandbox = self.create(env_vars={"KEEP": "1", "DROP": "x"})
        sandbox.update_env({"ADDED": "two words"}, unset=["DROP"])
        result = sandbox.process.exec('echo "$KEEP|$DROP|$ADDED"').result
        self.assertEqual(result, "1||two words\n")
        self.assertEqual(self.daytona.get(sandbox.id).env.get("ADDED"), "two words")
        status, body = http("POST", f"/toolbox/{sandbox.id}/env", {"set": {"1BAD": "x"}})
        self.assertEqual(status, 400)
        self.assertIn("1BAD", body["message"])
        # History from the per-second meter: the sandbox's limits and what it used.
        sandbox.process.exec("python3 -c 'x = bytearray(64 << 20); import time; time.sleep(2.5)'")
        history = sandbox.get_metrics()
        self.assertGreaterEqual(len(history), 2, history)
        self.assertEqual({m.cpu_count for m in history}, {1})
        self.assertEqual({m.mem_total for m in history}, {1 << 30})
        self.assertGreater(max(m.mem_used for m in history), 64 << 20)
        status, body = http("GET", f"/api/sandbox/{sandbox.id}/telemetry/metrics?metricNames=daytona.sandbox.gpu.use")
        self.assertEqual(status, 400)
        self.assertIn("gpu", body["message"])
        metrics = sandbox.get_metrics_latest()
        self.assertEqual(metrics.cpu_count, 1)
        self.assertEqual(metrics.mem_total, 1 << 30)
        self.assertGreater(metrics.mem_used, 0)
        self.assertGreaterEqual(metrics.cpu_used_pct, 0)

    def test_list_filters_and_sorting(self):
        small = self.create(name=f"b-small-{RUN}", labels={"filters": RUN})
        big = self.create(name=f"a-big-{RUN}", labels={"filters": RUN})
        big.resize(Resources(cpu=2, memory=2))
        label = urllib.parse.quote(f'{{"filters":"{RUN}"}}')
        def names(query):
            status, body = http("GET", f"/api/sandbox?labels={label}&{query}")
            self.assertEqual(status, 200, body)
            return [s["name"] for s in body["items"]]
        self.assertEqual(names("minCpu=2"), [big.name])
        self.assertEqual(names("maxMemoryGiB=1"), [small.name])
        self.assertEqual(names("sort=name&order=asc"), [big.name, small.name])
        self.assertEqual(names("sort=createdAt&order=desc"), [big.name, small.name])
        self.assertEqual(names("snapshots=default"), [small.name, big.name])
        self.assertEqual(names("snapshots=other"), [])
        self.assertEqual(names("isPublic=true"), [])
        self.assertEqual(names("createdAtAfter=2999-01-01T00:00:00Z"), [])
        status, body = http("GET", f"/api/sandbox?sort=colour")
        self.assertEqual(status, 400)
        self.assertIn("sort", body["message"])
        status, body = http("GET", f"/api/sandbox?autoDestroyAtAfter=yesterday")
        self.assertEqual(status, 400)
        self.assertIn("autoDestroyAtAfter", body["message"])


if __name__ == "__main__":
    unittest.main()
