"""Images and snapshots through the official SDK: snapshots from images in a real registry
(Debian's docker-registry on loopback, filled by images.py), Dockerfile builds from the SDK's
Image builder with RUN steps in build sandboxes, sandboxes from them, and the errors.

A daemon of the module's own (its data directory, cgroup name, id region and network namespace)
is told that the test registry speaks plain HTTP and mirrors Docker Hub; no public registry is
reachable here, so `python:3.11.12-slim-bookworm` (what Image.debian_slim("3.11") starts FROM)
is a stand-in the test builds from Debian's Python and pushes under that name."""
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import unittest
import urllib.request

from daytona import (CreateSandboxFromImageParams, CreateSandboxFromSnapshotParams, CreateSnapshotParams, Daytona,
                     DaytonaConfig, DaytonaError, Image, Resources)

import images
from private_daemon import PrivateDaemon


def run(sandbox, command):
    result = sandbox.process.exec(command, timeout=60)
    return result.exit_code, result.result.strip()


class ImageTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.registry = images.Registry()
        try:
            started = time.monotonic()
            cls.workdir = tempfile.mkdtemp(prefix="atoll-images-", dir="/var/tmp")
            cls.refs = images.build_test_images(cls.registry, cls.workdir)
            print(f"\ntest images built and pushed in {time.monotonic() - started:.1f} s", flush=True)
            cls.daemon = PrivateDaemon("img", os.environ["ATOLL_IMAGE_NETNS"], id_offset=3 << 27, extra_env={
                "ATOLL_INSECURE_REGISTRIES": cls.registry.host,
                "ATOLL_REGISTRY_MIRRORS": f"http://{cls.registry.host}",
                "ATOLL_WARM_POOL": "0",
            })
            cls.daemon.start()
        except Exception:
            cls.registry.close()
            shutil.rmtree(getattr(cls, "workdir", "/nonexistent"), ignore_errors=True)
            raise
        cls.daytona = cls.daemon.client()

    @classmethod
    def tearDownClass(cls):
        cls.daemon.cleanup()
        cls.registry.close()
        shutil.rmtree(cls.workdir, ignore_errors=True)

    def make_snapshot(self, name, image, **kwargs):
        lines = []
        snapshot = self.daytona.snapshot.create(CreateSnapshotParams(name=name, image=image, **kwargs), on_logs=lines.append, timeout=300)
        self.addCleanup(self.delete_snapshot, name)
        return snapshot, lines

    def delete_snapshot(self, name):
        try:
            self.daytona.snapshot.delete(self.daytona.snapshot.get(name))
        except Exception:
            pass

    def sandbox(self, **kwargs):
        sandbox = self.daytona.create(CreateSandboxFromSnapshotParams(**kwargs), timeout=120)
        self.addCleanup(self.delete_sandbox, sandbox)
        return sandbox

    def delete_sandbox(self, sandbox):
        try:
            self.daytona.delete(sandbox)
        except DaytonaError as error:
            if "not found" not in str(error):
                raise

    def test_snapshot_from_registry_image_runs_its_layers_and_config(self):
        snapshot, lines = self.make_snapshot("atoll_test/multi:1", self.refs["multi"])
        self.assertEqual(snapshot.state, "active", lines)
        got = self.daytona.snapshot.get("atoll_test/multi:1")
        self.assertEqual((got.id, got.image_name, got.state), (snapshot.id, self.refs["multi"], "active"))
        self.assertGreater(got.size, 0.1)  # GiB of unpacked layers
        self.assertIn(snapshot.id, [s.id for s in self.daytona.snapshot.list().items])

        sandbox = self.sandbox(snapshot="atoll_test/multi:1")
        self.assertEqual(sandbox.snapshot, "atoll_test/multi:1")
        # The image config: USER 1000:1000, WorkingDir, Env.
        self.assertEqual(run(sandbox, "id -u; id -g; pwd; echo $GREETING"), (0, "1000\n1000\n/opt/app\nfrom-image"))
        # Layers stacked in order: the top layer's whiteout hides /etc/motd, its opaque directory
        # hides what the layer below put there; setuid bits, hard links and symlinks are kept.
        code, out = run(sandbox, "test -e /etc/motd && echo motd; ls /opt/app/cache; stat -c '%a %h' /opt/app/tool /opt/app/hello.py; readlink /opt/app/latest")
        self.assertEqual((code, out.split("\n")), (0, ["new", "4755 1", "644 2", "hello.py"]))
        # Code runs with the image's interpreter, in the image's working directory.
        response = sandbox.process.code_run("import os; print(open('hello.py').read().strip(), os.getcwd())")
        self.assertEqual(response.result.strip(), "print('hello from the image') /opt/app")

        # A snapshot in use cannot be deleted; unused, it can, and its name is free again.
        with self.assertRaises(DaytonaError) as raised:
            self.daytona.snapshot.delete(got)
        self.assertIn("used by sandbox", str(raised.exception))
        self.daytona.delete(sandbox)
        self.daytona.snapshot.delete(got)
        with self.assertRaises(DaytonaError):
            self.daytona.snapshot.get("atoll_test/multi:1")

    def test_snapshot_of_a_running_sandbox(self):
        source = self.sandbox()
        self.assertEqual(run(source, "echo mine > ~/mine.txt; rm ~/.bashrc; sleep 600 >/dev/null 2>&1 & echo $!")[0], 0)
        sleeper = run(source, "pgrep -x sleep")[1]
        source.create_snapshot("from-sandbox")
        self.addCleanup(self.delete_snapshot, "from-sandbox")
        source.refresh_data()
        self.assertEqual(source.state, "started")
        self.assertEqual(run(source, "pgrep -x sleep")[1], sleeper, "the sandbox's processes survive (frozen, then thawed)")
        got = self.daytona.snapshot.get("from-sandbox")
        self.assertEqual(got.state, "active")
        copy = self.sandbox(snapshot="from-sandbox")
        self.assertEqual(run(copy, "cat ~/mine.txt; test -e ~/.bashrc || echo removed; id -un"), (0, "mine\nremoved\nsandbox"))
        # A stopped sandbox too; a sandbox in another state is refused.
        self.daytona.stop(copy)
        copy.create_snapshot("from-stopped")
        self.addCleanup(self.delete_snapshot, "from-stopped")
        copy.refresh_data()
        self.assertEqual(copy.state, "stopped")
        with self.assertRaises(DaytonaError) as raised:
            source.create_snapshot("from-sandbox")
        self.assertIn("already exists", str(raised.exception))

    def test_cli_pulls_imports_lists_and_removes_images(self):
        # Image commands work on the store directly (root), next to the running daemon.
        env_ref = self.refs["index"]
        pulled = self.daemon.atoll("image", "pull", env_ref, words=2)
        self.assertEqual(pulled.returncode, 0, pulled.stderr)
        self.assertIn("already unpacked", pulled.stdout.decode())  # layers shared with the other images
        archives = tempfile.mkdtemp(prefix="atoll-archives-", dir="/var/tmp")
        self.addCleanup(shutil.rmtree, archives, True)
        for transport, name, ref in (("docker-archive", "docker.tar", "small"), ("oci-archive", "oci.tar", "multi")):
            subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{self.refs[ref]}",
                            f"{transport}:{archives}/{name}:imported:1"], check=True, capture_output=True)
            imported = self.daemon.atoll("image", "import", f"{archives}/{name}", "--name", f"localhost/imported/{name[:-4]}:1", words=2)
            self.assertEqual(imported.returncode, 0, imported.stderr)
        listed = self.daemon.atoll("image", "list", "--json", words=2)
        references = [image["reference"] for image in json.loads(listed.stdout)]
        self.assertIn("localhost/imported/docker:1", references)
        self.assertIn("localhost/imported/oci:1", references)
        # A snapshot of an imported image: no registry serves it, the stored copy does.
        snapshot, lines = self.make_snapshot("imported", "localhost/imported/oci:1")
        self.assertEqual(snapshot.state, "active", lines)
        removed = self.daemon.atoll("image", "rm", "localhost/imported/docker:1", words=2)
        self.assertEqual(removed.returncode, 0, removed.stderr)
        missing = self.daemon.atoll("image", "rm", "localhost/imported/docker:1", words=2)
        self.assertEqual(missing.returncode, 1)
        self.assertIn("not in the store", missing.stderr.decode())
        bad = self.daemon.atoll("image", "import", "/etc/hostname", words=2)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("not a tar archive", bad.stderr.decode())

    def test_a_daemon_killed_mid_build_makes_the_snapshot_again_and_fails_the_waiting_sandbox(self):
        dockerfile = Image.base(self.refs["multi"]).run_commands("sleep 3; echo slept > /home/sandbox/slept").dockerfile()
        created = self.post("/api/snapshots", {"name": "interrupted", "buildInfo": {"dockerfileContent": dockerfile}})
        self.addCleanup(self.delete_snapshot, "interrupted")
        waiting = self.post("/api/sandbox", {"buildInfo": {"dockerfileContent": dockerfile + "RUN true\n"}})
        self.assertEqual(waiting["state"], "pending_build")
        deadline = time.monotonic() + 30
        while json.loads(self.daemon.get(f"/api/snapshots/{created['id']}")[1])["state"] != "building" and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)  # inside the RUN step's sandbox
        self.daemon.kill()
        self.daemon.start()
        type(self).daytona = self.daemon.client()
        self.assertEqual(self.daytona.get(waiting["id"]).state, "build_failed")
        self.assertIn("interrupted", self.daytona.get(waiting["id"]).error_reason)
        deadline = time.monotonic() + 60
        while (state := json.loads(self.daemon.get(f"/api/snapshots/{created['id']}")[1])["state"]) != "active" and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual(state, "active")
        # The waiting sandbox's own snapshot (its Dockerfile has one more step) is made again too:
        # once nothing is being built, no build sandbox is left.
        deadline = time.monotonic() + 60
        while any(s.state in ("pending", "building") for s in self.daytona.snapshot.list().items) and time.monotonic() < deadline:
            time.sleep(0.2)
        with sqlite3.connect(os.path.join(self.daemon.data, "atoll.db")) as db:
            left = db.execute("SELECT id, state, errorReason FROM sandbox WHERE organizationId = 'atoll-build' AND state != 'destroyed'").fetchall()
        self.assertEqual(left, [], "build sandboxes of the killed daemon are gone")
        self.assertEqual([n for n in os.listdir(os.path.join(self.daemon.data, "images", "snapshots")) if n.startswith("build-")], [])
        self.daytona.delete(self.daytona.get(waiting["id"]))

    def post(self, path, body):
        request = urllib.request.Request(self.daemon.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Authorization": f"Bearer {self.daemon.key}", "Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(request, timeout=60).read())

    def test_a_minimal_image_runs_and_says_what_it_lacks(self):
        # One file, no /bin/sh, no python3, no /etc/passwd: the sandbox starts (the runtime brings
        # its own PID 1, agent and mount points), files work, and what the image lacks is named.
        snapshot, lines = self.make_snapshot("small", self.refs["small"])
        self.assertEqual(snapshot.state, "active", lines)
        sandbox = self.sandbox(snapshot="small")
        self.assertEqual(sandbox.user, "root")
        self.assertEqual(sandbox.fs.download_file("/hello.txt"), b"small\n")
        with self.assertRaises(DaytonaError) as raised:
            sandbox.process.exec("echo hi")
        self.assertIn("/bin/sh is not in this sandbox's image", str(raised.exception))
        with self.assertRaises(Exception) as raised:  # the SDK does not wrap code_run's errors
            sandbox.process.code_run("print(1)")
        self.assertIn("has no python interpreter", str(raised.exception))

    def test_image_index_resolves_to_linux_amd64(self):
        snapshot, lines = self.make_snapshot("from-index", self.refs["index"])
        self.assertEqual(snapshot.state, "active", lines)

    def test_a_layer_that_escapes_is_refused_and_named(self):
        lines = []
        with self.assertRaises(DaytonaError) as raised:
            self.daytona.snapshot.create(CreateSnapshotParams(name="escape", image=self.refs["escape"]), on_logs=lines.append, timeout=120)
        self.addCleanup(self.delete_snapshot, "escape")
        self.assertIn('"../escape"', str(raised.exception))
        self.assertEqual(self.daytona.snapshot.get("escape").state, "error")
        self.assertFalse(os.path.exists(os.path.join(self.daemon.data, "images", "escape")))

    def test_an_image_that_does_not_exist_is_an_error_with_the_reason(self):
        with self.assertRaises(DaytonaError) as raised:
            self.daytona.snapshot.create(CreateSnapshotParams(name="missing", image=f"{self.registry.host}/no/such:1"), timeout=120)
        self.addCleanup(self.delete_snapshot, "missing")
        self.assertIn("no/such", str(raised.exception))

    def test_dockerfile_snapshot_from_the_image_builder(self):
        # The image's USER is 1000: RUN steps run as it until a USER says otherwise.
        image = (Image.base(self.refs["multi"])
                 .run_commands(["sh", "-c", "id -u > /home/sandbox/uid-before.txt"])
                 .dockerfile_commands(["USER root"])
                 .run_commands("echo built > /opt/built.txt && rm /opt/app/hello.py", ["sh", "-c", "id -u > /opt/uid.txt"])
                 .dockerfile_commands(["USER 1000"])
                 .env({"BUILT": "yes please"}).workdir("/srv/work"))
        snapshot, lines = self.make_snapshot("built", image, resources=Resources(cpu=1, memory=1, disk=3))
        self.assertEqual(snapshot.state, "active", lines)
        sandbox = self.sandbox(snapshot="built")
        self.assertEqual(
            run(sandbox, "cat /home/sandbox/uid-before.txt /opt/built.txt /opt/uid.txt; test -e /opt/app/hello.py || echo gone; echo $BUILT; pwd; id -u"),
            (0, "1000\nbuilt\n0\ngone\nyes please\n/srv/work\n1000"))
        # A rebuild of the same Dockerfile under another name is served from the step cache.
        started = time.monotonic()
        again, lines = self.make_snapshot("built-again", image)
        self.assertEqual(again.state, "active", lines)
        print(f"\ncached rebuild of the 4-step Dockerfile: {time.monotonic() - started:.2f} s (the SDK polls once a second)", flush=True)
        status, log = self.daemon.get(f"/api/snapshots/{again.id}/build-logs")
        self.assertEqual(log.decode().count("CACHED"), 3, log.decode())

    def test_sandbox_from_image_builds_with_logs_resources_and_cache(self):
        image = Image.base(self.refs["multi"]).run_commands("echo step-output-for-the-callback", "touch /tmp/marker")
        logs = []
        started = time.monotonic()
        sandbox = self.daytona.create(
            CreateSandboxFromImageParams(image=image, resources=Resources(cpu=2, memory=2, disk=4)),
            on_snapshot_create_logs=logs.append, timeout=300)
        first = time.monotonic() - started
        self.addCleanup(self.delete_sandbox, sandbox)
        self.assertEqual((sandbox.state, sandbox.cpu, sandbox.memory, sandbox.disk), ("started", 2, 2, 4))
        self.assertTrue(any("step-output-for-the-callback" in line for line in logs), logs)
        self.assertEqual(run(sandbox, "id -u"), (0, "1000"))
        # The same Dockerfile again: the snapshot is reused, nothing is built.
        started = time.monotonic()
        again = self.daytona.create(CreateSandboxFromImageParams(image=image), timeout=120)
        second = time.monotonic() - started
        self.addCleanup(self.delete_sandbox, again)
        self.assertEqual(again.snapshot, sandbox.snapshot)
        print(f"\ncreate from an image: first {first:.2f} s (build), again {second:.2f} s (cached)", flush=True)

    def test_a_failing_run_step_ends_in_build_failed_with_the_reason(self):
        image = Image.base(self.refs["multi"]).run_commands("echo about-to-fail; exit 3")
        with self.assertRaises(DaytonaError) as raised:
            self.daytona.create(CreateSandboxFromImageParams(image=image), timeout=120)
        message = str(raised.exception)
        self.assertIn("BUILD_FAILED", message.upper())
        self.assertIn("RUN", message)
        self.assertIn("exited with code 3", message)
        self.assertIn("about-to-fail", message)
        for sandbox in self.daytona.list():
            if sandbox.state == "build_failed":
                self.daytona.delete(sandbox)

    def test_debian_slim_resolves_through_the_registry_mirror(self):
        # FROM python:3.11.12-slim-bookworm is docker.io/library/python:…, served by the mirror
        # (the stand-in, with stub apt-get and pip: the sandboxes reach no package mirror here).
        lines = []
        sandbox = self.daytona.create(CreateSandboxFromImageParams(image=Image.debian_slim("3.11")), on_snapshot_create_logs=lines.append,
                                      timeout=300)
        self.addCleanup(self.delete_sandbox, sandbox)
        self.assertTrue(any("stand-in apt-get install -y gcc" in line for line in lines), lines)
        self.assertEqual(sandbox.process.code_run("print(6 * 7)").result.strip(), "42")

    def test_snapshot_api_errors(self):
        with self.assertRaises(DaytonaError):
            self.daytona.snapshot.get("never-made")
        for bad in ["../up", "/abs", "a b", ""]:
            with self.assertRaises(DaytonaError, msg=bad):
                self.daytona.snapshot.create(CreateSnapshotParams(name=bad, image=self.refs["multi"]), timeout=30)
        snapshot, _ = self.make_snapshot("twice", self.refs["multi"])
        with self.assertRaises(DaytonaError) as raised:
            self.daytona.snapshot.create(CreateSnapshotParams(name="twice", image=self.refs["multi"]), timeout=30)
        self.assertIn("already exists", str(raised.exception))
        with self.assertRaises(Exception) as raised:  # the SDK does not wrap activate's errors
            self.daytona.snapshot.activate(snapshot)
        self.assertIn("only an inactive snapshot", str(raised.exception))
        # Another organization sees nothing of it, and cannot create a sandbox from it.
        other_key = self.daemon.atoll("keys", "create", "--org", "someone-else", "--name", "image tests", words=2).stdout.decode().strip()
        other = Daytona(DaytonaConfig(api_key=other_key, api_url=self.daemon.url + "/api"))
        self.assertEqual([s.name for s in other.snapshot.list().items], [])
        with self.assertRaises(DaytonaError):
            other.snapshot.get("twice")
        with self.assertRaises(DaytonaError) as raised:
            other.create(CreateSandboxFromSnapshotParams(snapshot="twice"), timeout=30)
        self.assertIn("not found", str(raised.exception))

    def test_build_logs_follow_streams_until_the_build_ends(self):
        image = Image.base(self.refs["multi"]).run_commands("for i in 1 2 3; do echo tick-$i; sleep 0.3; done")
        body = {"name": "followed", "buildInfo": {"dockerfileContent": image.dockerfile()}}
        request = urllib.request.Request(self.daemon.url + "/api/snapshots", data=json.dumps(body).encode(), method="POST",
                                         headers={"Authorization": f"Bearer {self.daemon.key}", "Content-Type": "application/json"})
        created = json.loads(urllib.request.urlopen(request, timeout=30).read())
        self.addCleanup(self.delete_snapshot, "followed")
        status, url = self.daemon.get(f"/api/snapshots/{created['id']}/build-logs-url")
        self.assertEqual(status, 200)
        follow = urllib.request.Request(json.loads(url)["url"] + "?follow=true", headers={"Authorization": f"Bearer {self.daemon.key}"})
        with urllib.request.urlopen(follow, timeout=120) as response:
            text = response.read().decode()
        for tick in ("tick-1", "tick-2", "tick-3", "is active"):
            self.assertIn(tick, text)
        self.assertEqual(self.daytona.snapshot.get("followed").state, "active")


if __name__ == "__main__":
    unittest.main()
