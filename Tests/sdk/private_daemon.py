"""An atolld of a test's own: its data directory, cgroup name, id region and network namespace,
so it can be killed, restarted or left in a state that must not disturb the suite's daemon."""
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from daytona import Daytona, DaytonaConfig

BIN = os.environ["ATOLL_BIN"]


def http_get(url, key):
    """GET with a bearer key (none if `key` is None); returns (status, body bytes)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class PrivateDaemon:
    """`suffix` keeps cgroup names and id regions apart; `netns` is a namespace Tests/sdk/run
    made (two runners on one namespace would each rebuild its one firewall from their own
    database). `extra_env` reaches atolld, e.g. prices."""

    def __init__(self, suffix, netns, id_offset, extra_env=None):
        self.data = tempfile.mkdtemp(prefix=f"atoll-sdk-{suffix}-", dir="/var/tmp")
        self.env = dict(os.environ, ATOLL_CGROUP_NAME=os.environ.get("ATOLL_CGROUP_NAME", "atoll-sdk") + "-" + suffix,
                        ATOLL_NETNS=netns,
                        ATOLL_ID_RANGE_START=str(int(os.environ["ATOLL_ID_RANGE_START"]) + id_offset),
                        **(extra_env or {}))
        self.key = f"atl_{suffix}_" + os.urandom(16).hex()
        self.process = None
        self.url = None

    def start(self):
        """Starts atolld and waits for its endpoint file; returns the base URL."""
        url_file = os.path.join(self.data, "atolld.url")
        if os.path.exists(url_file):  # left by a daemon that was SIGKILLed
            os.unlink(url_file)
        with open(self.log_path, "ab") as log:
            key_file = os.path.join(self.data, "given-key")
            with open(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write(self.key)
            self.process = subprocess.Popen([f"{BIN}/atolld", "--data-dir", self.data, "--listen", "127.0.0.1:0", "--api-key-file", key_file],
                                            env=self.env, stdout=subprocess.DEVNULL, stderr=log)
        for _ in range(400):
            if os.path.exists(url_file):
                with open(url_file) as f:
                    url = f.read().strip()
                if url:
                    self.url = url
                    return url
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.process.kill()
        raise AssertionError("atolld did not start: " + self.log())

    @property
    def log_path(self):
        return os.path.join(self.data, "atolld.log")

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def client(self):
        return Daytona(DaytonaConfig(api_key=self.key, api_url=self.url + "/api"))

    def get(self, path):
        """GET on the daemon with its key; returns (status, body bytes)."""
        return http_get(self.url + path, self.key)

    def terminate(self):
        """SIGTERM and wait; returns the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def kill(self):
        """SIGKILL: the daemon gets no chance to write anything more."""
        self.process.kill()
        self.process.wait(timeout=30)

    def atoll(self, *args, words=1, **kwargs):
        """The CLI, embedded, on this daemon's data directory; the first `words` arguments name
        the (sub)command, options follow them."""
        return subprocess.run([f"{BIN}/atoll", *args[:words], "--data-dir", self.data, *args[words:]], env=self.env,
                              capture_output=True, **kwargs)

    def cgroup_procs(self, sandbox_id):
        """Pids in the sandbox's cgroup (pids controller on v1, the group itself on v2)."""
        name = self.env["ATOLL_CGROUP_NAME"]
        for path in (f"/sys/fs/cgroup/pids/{name}/{sandbox_id}/cgroup.procs", f"/sys/fs/cgroup/{name}/{sandbox_id}/cgroup.procs"):
            if os.path.exists(path):
                with open(path) as f:
                    return [int(line) for line in f if line.strip()]
        return []

    def cleanup(self):
        """Stops the daemon if it runs, deletes what is left with the embedded runner, removes
        the data directory and the cgroups."""
        if self.process and self.process.poll() is None:
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.kill()
        drained = self.atoll("pool", "drain", words=2)
        if drained.returncode != 0:
            print("cleanup: atoll pool drain failed:", drained.stderr.decode(errors="replace"))
        self.atoll("gc")
        sandboxes = os.path.join(self.data, "sandboxes")
        for sandbox_id in os.listdir(sandboxes) if os.path.isdir(sandboxes) else []:
            self.atoll("delete", sandbox_id)
        shutil.rmtree(self.data, ignore_errors=True)
        for root in os.listdir("/sys/fs/cgroup"):
            path = f"/sys/fs/cgroup/{root}/{self.env['ATOLL_CGROUP_NAME']}"
            if os.path.isdir(path):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
