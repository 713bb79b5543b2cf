"""Image benchmark (scripts/bench-images runs it; not part of the test suite), side by side in one
run: pull + unpack of a ~100 MB multi-layer image from a loopback registry by `atoll image pull`
vs `skopeo copy` + `umoci unpack`; creating a sandbox from a cached image snapshot vs from the
default snapshot; a cached rebuild of a built Dockerfile. Writes a section into BENCHMARKS.md."""
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
import unittest
import urllib.request

from daytona import CreateSandboxFromSnapshotParams, CreateSnapshotParams, Image

import bench_report
import images
from private_daemon import PrivateDaemon

ROUNDS = int(os.environ.get("ATOLL_IMAGE_ROUNDS", "3"))
CREATES = int(os.environ.get("ATOLL_IMAGE_CREATES", "10"))
BIN = os.environ["ATOLL_BIN"]


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


class ImageBenchmark(unittest.TestCase):
    def test_images(self):
        registry = images.Registry()
        work = tempfile.mkdtemp(prefix="atoll-bench-images-", dir="/var/tmp")
        daemon = None
        try:
            refs = images.build_test_images(registry, work, base_compression="gzip")
            ref = refs["multi"]
            pulls, peers = [], []
            env = dict(os.environ, ATOLL_INSECURE_REGISTRIES=registry.host)
            for _ in range(ROUNDS):
                data = tempfile.mkdtemp(prefix="atoll-bench-store-", dir="/var/tmp")
                started = time.monotonic()
                subprocess.run([f"{BIN}/atoll", "image", "pull", "--data-dir", data, ref], env=env, check=True, capture_output=True)
                pulls.append(time.monotonic() - started)
                shutil.rmtree(data)
                peer = tempfile.mkdtemp(prefix="atoll-bench-umoci-", dir="/var/tmp")
                started = time.monotonic()
                subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"oci:{peer}/oci:bench"],
                               check=True, capture_output=True)
                subprocess.run(["umoci", "unpack", "--image", f"{peer}/oci:bench", f"{peer}/bundle"], check=True, capture_output=True)
                peers.append(time.monotonic() - started)
                shutil.rmtree(peer)
            size = sum(l["size"] for l in json.loads(subprocess.run(
                ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"], check=True, capture_output=True).stdout)["layers"])

            daemon = PrivateDaemon("bimg", os.environ["ATOLL_IMAGE_NETNS"], id_offset=3 << 27, extra_env={
                "ATOLL_INSECURE_REGISTRIES": registry.host, "ATOLL_WARM_POOL": "0"})
            daemon.start()
            daytona = daemon.client()
            daytona.snapshot.create(CreateSnapshotParams(name="bench", image=ref), timeout=300)
            from_image, from_default = [], []
            for _ in range(CREATES):
                for snapshot, samples in (("bench", from_image), ("default", from_default)):
                    started = time.monotonic()
                    sandbox = daytona.create(CreateSandboxFromSnapshotParams(snapshot=snapshot), timeout=120)
                    samples.append(time.monotonic() - started)
                    daytona.delete(sandbox)

            dockerfile = Image.base(ref).dockerfile_commands(["USER root"]).run_commands("echo one > /opt/one", "echo two > /opt/two").dockerfile()
            rebuilds = []
            for index in range(ROUNDS + 1):
                started = time.monotonic()
                created = self.post(daemon, "/api/snapshots", {"name": f"rebuild-{index}", "buildInfo": {"dockerfileContent": dockerfile}})
                while True:
                    current = json.loads(daemon.get(f"/api/snapshots/{created['id']}")[1])
                    if current["state"] not in ("pending", "building"):
                        break
                    time.sleep(0.002)
                self.assertEqual(current["state"], "active", current.get("errorReason"))
                if index > 0:  # the first one builds; the others hit the cache
                    rebuilds.append(time.monotonic() - started)
            self.report(size, pulls, peers, from_image, from_default, rebuilds)
        finally:
            if daemon:
                daemon.cleanup()
            registry.close()
            shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def post(daemon, path, body):
        request = urllib.request.Request(daemon.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Authorization": f"Bearer {daemon.key}", "Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(request, timeout=60).read())

    def report(self, size, pulls, peers, from_image, from_default, rebuilds):
        build = "release" if "release" in BIN else "debug"
        ms = lambda v: f"{v * 1000:.0f}"
        pull, peer = statistics.median(pulls), statistics.median(peers)
        image_p50, default_p50 = percentile(from_image, .5), percentile(from_default, .5)
        section = f"""<!-- bench-images -->
## Images

Measured {time.strftime('%Y-%m-%d')} by `scripts/bench-images` ({os.cpu_count()} CPUs, Linux {platform.release()}; a {build} build), interleaved
in one run. The image: {size / 1e6:.0f} MB in 3 layers (gzip, gzip, uncompressed; 7,500 entries, 281 MiB unpacked) from Debian's
docker-registry on loopback.

| figure | Atoll | peer | ratio |
| --- | --- | --- | --- |
| pull + unpack into an empty store, median of {len(pulls)} (ms) | {ms(pull)} (`atoll image pull`) | {ms(peer)} (`skopeo copy` + `umoci unpack`) | {pull / peer:.2f} |
| create a sandbox, p50 / p95 of {len(from_image)} (ms) | {ms(image_p50)} / {ms(percentile(from_image, .95))} (from the image's snapshot) | {ms(default_p50)} / {ms(percentile(from_default, .95))} (from `default`) | {image_p50 / default_p50:.2f} |
| rebuild of a built 3-step Dockerfile, until `active`, median of {len(rebuilds)} (ms) | {ms(statistics.median(rebuilds))} | | |

Creates go through atolld's API with the SDK, no warm pool; the rebuild polls the snapshot every 2 ms.
<!-- /bench-images -->
"""
        print(section)
        bench_report.write_section("bench-images", section)


if __name__ == "__main__":
    unittest.main()
