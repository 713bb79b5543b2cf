"""The interactive toolbox through the unmodified SDK: PTY sessions, following a command's logs,
input to a running command, and the stateful code interpreter (all WebSockets on atolld's port)."""

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

from daytona import PtySize, SessionExecuteRequest
from daytona.common.errors import DaytonaError

from test_sdk import API_KEY, API_URL, BIN, SDKTestCase, SharedSandboxTestCase, http


class Collector:
    """Gathers a PTY's output and waits for text to appear in it."""

    def __init__(self):
        self.data = b""
        self.lock = threading.Condition()

    def __call__(self, chunk):
        with self.lock:
            self.data += chunk
            self.lock.notify_all()

    def wait_for(self, pattern, timeout=20):
        deadline = time.time() + timeout
        with self.lock:
            while not re.search(pattern, self.data):
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"{pattern!r} did not appear in {self.data[-400:]!r}")
                self.lock.wait(left)
            return self.data


class PtyTests(SharedSandboxTestCase):
    def start(self, handle):
        collector = Collector()
        result = {}
        thread = threading.Thread(target=lambda: result.update(r=handle.wait(on_data=collector)), daemon=True)
        thread.start()
        return collector, result, thread

    def test_python_repl_resize_interrupt_and_exit_code(self):
        sid = f"py-{time.time_ns()}"
        handle = self.shared.process.create_pty_session(sid, cwd="/tmp", envs={"ATOLL_MARK": "m1"}, pty_size=PtySize(rows=24, cols=80))
        out, result, thread = self.start(handle)
        handle.send_input("echo cwd=$(pwd) mark=$ATOLL_MARK tty=$(tty)\n")
        out.wait_for(rb"cwd=/tmp mark=m1 tty=/dev/pts/\d+")
        handle.send_input("stty size\n")
        out.wait_for(rb"24 80")
        info = handle.resize(PtySize(rows=40, cols=120))
        self.assertEqual((info.rows, info.cols), (40, 120))
        handle.send_input("stty size\n")
        out.wait_for(rb"40 120")
        # A real terminal: python3 -i reads lines, answers, and Ctrl-C interrupts it.
        handle.send_input("python3 -i -q\n")
        out.wait_for(rb">>> ")
        handle.send_input("6 * 7\n")
        out.wait_for(rb"\b42\b")
        handle.send_input("while True: pass\n")
        time.sleep(0.5)
        handle.send_input("\x03")
        out.wait_for(rb"KeyboardInterrupt")
        handle.send_input("exit()\n")
        handle.send_input("exit 7\n")
        thread.join(30)
        self.assertFalse(thread.is_alive())
        self.assertEqual(result["r"].exit_code, 7)
        # Listed as ended until it is killed (forgotten).
        sessions = {s.id: s for s in self.shared.process.list_pty_sessions()}
        self.assertFalse(sessions[sid].active)
        self.shared.process.kill_pty_session(sid)
        self.assertNotIn(sid, [s.id for s in self.shared.process.list_pty_sessions()])

    def test_output_before_connect_is_kept_and_reconnect_works(self):
        sid = f"re-{time.time_ns()}"
        handle = self.shared.process.create_pty_session(sid)
        handle.send_input("stty -echo; sleep 1; for i in 1 2 3; do echo tick-$i; done; echo done-ticking\n")
        handle.disconnect()  # output produced while nobody is connected is kept
        time.sleep(2.0)
        info = self.shared.process.get_pty_session_info(sid)
        self.assertTrue(info.active)
        again = self.shared.process.connect_pty_session(sid)
        out, result, thread = self.start(again)
        out.wait_for(rb"tick-3")
        out.wait_for(rb"done-ticking")
        again.kill()
        thread.join(20)
        self.assertFalse(thread.is_alive())
        self.assertEqual(result["r"].exit_code, 137)

    def test_pings_are_answered(self):
        import websocket
        base = API_URL[:-len("/api")].replace("http://", "ws://")
        ws = websocket.create_connection(f"{base}/toolbox/{self.shared.id}/process/pty/create-connect?id=ping-{time.time_ns()}",
                                         header=[f"Authorization: Bearer {API_KEY}"], timeout=30)
        try:
            ws.ping(b"are-you-there")
            deadline = time.time() + 10
            while time.time() < deadline:
                opcode, data = ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_PONG:
                    self.assertEqual(data, b"are-you-there")
                    break
            else:
                self.fail("no pong")
        finally:
            ws.close()

    def test_errors(self):
        with self.assertRaises(DaytonaError) as caught:
            self.shared.process.connect_pty_session("no-such-pty")
        self.assertIn("not found", str(caught.exception))
        status, body = http("POST", f"/toolbox/{self.shared.id}/process/pty/x/resize", {"cols": 10, "rows": 10})
        self.assertEqual(status, 404, body)
        status, body = http("GET", f"/toolbox/{self.shared.id}/process/pty/create-connect?id=a&cols=5000")
        self.assertEqual((status, body["code"]), (400, "invalid_argument"))
        self.assertIn("cols", body["message"])
        status, body = http("GET", f"/toolbox/{self.shared.id}/process/pty/create-connect?id=a")
        self.assertEqual(status, 400)
        self.assertIn("WebSocket", body["message"])


class SessionStreamingTests(SharedSandboxTestCase):
    def test_follow_logs_arrive_as_printed(self):
        sid = f"f-{time.time_ns()}"
        self.shared.process.create_session(sid)
        command = self.shared.process.execute_session_command(
            sid, SessionExecuteRequest(command="for i in $(seq 1 10); do echo line-$i; echo err-$i >&2; sleep 0.1; done", run_async=True))
        arrivals, errors = [], []
        asyncio.run(self.shared.process.get_session_command_logs_async(
            sid, command.cmd_id, lambda text: arrivals.append((time.time(), text)), lambda text: errors.append(text)))
        text = "".join(t for _, t in arrivals)
        self.assertEqual(re.findall(r"line-\d+", text), [f"line-{i}" for i in range(1, 11)])
        self.assertEqual(re.findall(r"err-\d+", "".join(errors)), [f"err-{i}" for i in range(1, 11)])
        # Streamed: the first line came well before the last (the command takes about a second).
        first = next(at for at, t in arrivals if "line-1" in t)
        last = next(at for at, t in arrivals if "line-10" in t)
        self.assertGreater(last - first, 0.5)

    def test_input_to_a_running_command(self):
        sid = f"i-{time.time_ns()}"
        self.shared.process.create_session(sid)
        command = self.shared.process.execute_session_command(sid, SessionExecuteRequest(command="read x; echo got $x", run_async=True))
        time.sleep(0.3)
        self.assertIsNone(self.shared.process.get_session_command(sid, command.cmd_id).exit_code)
        self.shared.process.send_session_command_input(sid, command.cmd_id, "Alice")
        deadline = time.time() + 20
        while self.shared.process.get_session_command(sid, command.cmd_id).exit_code is None and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.shared.process.get_session_command_logs(sid, command.cmd_id).stdout, "got Alice\n")
        # Input for a command that has ended is refused (410, as Daytona's daemon answers).
        status, body = http("POST", f"/toolbox/{self.shared.id}/process/session/{sid}/command/{command.cmd_id}/input", {"data": "late"})
        self.assertEqual((status, body["code"]), (410, "gone"), body)
        # Ctrl-D alone closes the command's stdin: cat sees EOF and ends.
        cat = self.shared.process.execute_session_command(sid, SessionExecuteRequest(command="cat; echo eof-seen", run_async=True))
        self.shared.process.send_session_command_input(sid, cat.cmd_id, "one")
        self.shared.process.send_session_command_input(sid, cat.cmd_id, "\x04")
        deadline = time.time() + 20
        while self.shared.process.get_session_command(sid, cat.cmd_id).exit_code is None and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.shared.process.get_session_command_logs(sid, cat.cmd_id).stdout, "one\neof-seen\n")


class InterpreterTests(SDKTestCase):
    def test_contexts_keep_state_apart_and_survive_a_timeout(self):
        sandbox = self.create()
        ci = sandbox.code_interpreter
        ctx = ci.create_context(cwd="/tmp")
        self.assertEqual(ctx.cwd, "/tmp")
        self.assertEqual(ci.run_code("counter = 1\nimport os", context=ctx).error, None)
        ci.run_code("counter += 1", context=ctx)
        result = ci.run_code("print(counter, os.getcwd())", context=ctx)
        self.assertEqual(result.stdout, "2 /tmp\n")
        other = ci.create_context()
        isolated = ci.run_code("print(counter)", context=other)
        self.assertEqual(isolated.error.name, "NameError")
        self.assertIn("counter", isolated.error.value)
        # Streaming callbacks and errors with tracebacks.
        seen = []
        failed = ci.run_code("import sys\nprint('out')\nprint('err', file=sys.stderr)\n1/0", context=ctx,
                             on_stdout=lambda m: seen.append(("out", m.output)), on_stderr=lambda m: seen.append(("err", m.output)))
        self.assertEqual(failed.error.name, "ZeroDivisionError")
        self.assertIn("Traceback", failed.error.traceback)
        self.assertIn(("out", "out\n"), seen)
        self.assertIn(("err", "err\n"), seen)
        # A runaway run is interrupted by its timeout; the context and its variables survive.
        started = time.time()
        with self.assertRaises(DaytonaError) as caught:
            ci.run_code("while True: pass", context=ctx, timeout=2)
        self.assertIn("timed out", str(caught.exception).lower())
        self.assertLess(time.time() - started, 15)
        self.assertEqual(ci.run_code("print(counter)", context=ctx).stdout, "2\n")
        # The default context persists across calls without a context.
        ci.run_code("default_value = 'kept'")
        self.assertEqual(ci.run_code("print(default_value)").stdout, "kept\n")
        ids = [c.id for c in ci.list_contexts()]
        self.assertIn(ctx.id, ids)
        self.assertIn(other.id, ids)
        ci.delete_context(other)
        self.assertNotIn(other.id, [c.id for c in ci.list_contexts()])
        with self.assertRaises(DaytonaError):
            ci.run_code("1", context=other)


class CLILiveTests(SharedSandboxTestCase):
    """`atoll exec` through atolld: output as it is produced, stdin forwarded, and `-it` a real
    terminal, driven here through tmux (a terminal of the test's own)."""

    def env(self):
        return dict(os.environ, ATOLL_API_KEY=API_KEY)

    def test_exec_streams_output_before_the_command_ends(self):
        process = subprocess.Popen([f"{BIN}/atoll", "exec", "--url", API_URL, self.shared.id, "-c", "echo first; sleep 3; echo second"],
                                   stdout=subprocess.PIPE, env=self.env())
        started = time.time()
        first = process.stdout.readline()
        self.assertEqual(first, b"first\n")
        self.assertLess(time.time() - started, 2.5, "the first line waited for the command to end")
        self.assertEqual(process.stdout.read(), b"second\n")
        process.stdout.close()
        self.assertEqual(process.wait(30), 0)
        # stdin reaches a command given after --.
        piped = subprocess.run([f"{BIN}/atoll", "exec", "--url", API_URL, self.shared.id, "--", "tr", "a-z", "A-Z"],
                               input=b"shout\n", capture_output=True, env=self.env(), timeout=60)
        self.assertEqual((piped.returncode, piped.stdout), (0, b"SHOUT\n"))

    def test_logs_follow(self):
        sid = f"cli-{time.time_ns()}"
        self.shared.process.create_session(sid)
        command = self.shared.process.execute_session_command(
            sid, SessionExecuteRequest(command="for i in 1 2 3; do echo out-$i; echo err-$i >&2; sleep 0.2; done", run_async=True))
        followed = subprocess.run([f"{BIN}/atoll", "logs", "--url", API_URL, self.shared.id, sid, command.cmd_id, "--follow"],
                                  capture_output=True, env=self.env(), timeout=60)
        self.assertEqual((followed.returncode, followed.stdout, followed.stderr),
                         (0, b"out-1\nout-2\nout-3\n", b"err-1\nerr-2\nerr-3\n"))

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, check=True, timeout=30).stdout.decode()

    def screen_shows(self, pattern, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            screen = self.tmux("capture-pane", "-p", "-t", "cli")
            if re.search(pattern, screen, re.M):
                return screen
            time.sleep(0.1)
        self.fail(f"{pattern!r} did not appear on the screen:\n{screen}")

    def test_exec_it_is_a_terminal_with_resize_and_exit_code(self):
        if shutil.which("tmux") is None:
            self.fail("tmux is missing (scripts/setup installs it)")
        self.socket = f"atoll-test-{os.getpid()}-{time.time_ns()}"
        status_file = tempfile.NamedTemporaryFile(delete=False)
        status_file.close()
        command = (f"ATOLL_API_KEY={API_KEY} {BIN}/atoll exec -it --url {API_URL} {self.shared.id} -- bash --norc --noprofile; "
                   f"echo $? > {status_file.name}; sleep 60")
        self.tmux("new-session", "-d", "-s", "cli", "-x", "100", "-y", "30", command)
        try:
            self.screen_shows(r"\$ *$")
            self.tmux("send-keys", "-t", "cli", "tty; stty size", "Enter")
            self.screen_shows(r"/dev/pts/\d+\s+30 100")
            self.tmux("resize-window", "-t", "cli", "-x", "120", "-y", "40")
            time.sleep(0.5)
            self.tmux("send-keys", "-t", "cli", "stty size", "Enter")
            self.screen_shows(r"40 120")
            self.tmux("send-keys", "-t", "cli", "exit 3", "Enter")
            def status():
                with open(status_file.name) as f:
                    return f.read().strip()
            deadline = time.time() + 20
            while time.time() < deadline and not status():
                time.sleep(0.1)
            self.assertEqual(status(), "3")
        finally:
            subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
            os.unlink(status_file.name)


class InterpreterOOMTests(SDKTestCase):
    def test_a_context_killed_by_oom_is_reported_and_can_be_recreated(self):
        sandbox = self.create()
        ci = sandbox.code_interpreter
        ctx = ci.create_context()
        ci.run_code("kept = 1", context=ctx)
        # More than the sandbox's 1 GiB: the kernel's OOM killer ends the context's process.
        result = ci.run_code("hog = bytearray(3 * 1024 ** 3)", context=ctx, timeout=60)
        self.assertIsNotNone(result.error)
        self.assertEqual(result.error.name, "ContextEnded", result.error)
        self.assertIn("killed", result.error.value)
        with self.assertRaises(DaytonaError) as caught:
            ci.run_code("print(kept)", context=ctx)
        self.assertIn("has ended", str(caught.exception))
        ci.delete_context(ctx)
        fresh = ci.create_context()
        self.assertEqual(ci.run_code("print(40 + 2)", context=fresh).stdout, "42\n")
        # The sandbox itself is fine.
        self.assertEqual(sandbox.process.exec("echo alive").result, "alive\n")
