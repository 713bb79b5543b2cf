"""Metering through a real atolld: allocation periods across a SIGKILL of the daemon, the usage
API and CLI, and /metrics read with the official Prometheus text parser.

Run through Tests/sdk/run (see test_sdk.py for the environment it sets; ATOLL_METER_NETNS is a
network namespace for this module's own daemon).
"""
import json
import os
import subprocess
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime

from daytona import CreateSandboxFromSnapshotParams, Daytona, DaytonaConfig
from prometheus_client.parser import text_string_to_metric_families

from private_daemon import PrivateDaemon, http_get

API_URL = os.environ["DAYTONA_API_URL"]
API_KEY = os.environ["DAYTONA_API_KEY"]
BIN = os.environ["ATOLL_BIN"]
BASE_URL = API_URL.rsplit("/api", 1)[0]


def seconds(iso):
    """ISO 8601 as the daemon writes it (UTC, optional fraction) to seconds since 1970."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


OPENAPI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "atoll-openapi.json")


def assert_matches_schema(test, value, schema, where="response"):
    """`value` has what docs/atoll-openapi.json says: every required field, no undocumented one,
    the documented JSON types (a small validator for the subset the document uses)."""
    with open(OPENAPI) as f:
        components = json.load(f)["components"]["schemas"]
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    kind = schema.get("type")
    python_types = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "boolean": bool}
    if kind:
        test.assertIsInstance(value, python_types[kind], f"{where} should be a {kind}")
    if kind == "object" and "properties" in schema:
        missing = set(schema.get("required", [])) - value.keys()
        test.assertFalse(missing, f"{where} lacks documented required fields {missing}")
        undocumented = value.keys() - schema["properties"].keys()
        test.assertFalse(undocumented, f"{where} has fields the OpenAPI file does not document: {undocumented}")
        for key, item in value.items():
            assert_matches_schema(test, item, schema["properties"][key], f"{where}.{key}")
    elif kind == "object" and "additionalProperties" in schema:
        for key, item in value.items():
            assert_matches_schema(test, item, schema["additionalProperties"], f"{where}.{key}")
    elif kind == "array":
        for index, item in enumerate(value):
            assert_matches_schema(test, item, schema["items"], f"{where}[{index}]")
    if "enum" in schema:
        test.assertIn(value, schema["enum"], where)


def assert_contiguous(test, periods):
    """Periods of one sandbox follow each other without gap or overlap; only the last is open."""
    for earlier, later in zip(periods, periods[1:]):
        test.assertIsNotNone(earlier.get("endedAt"), f"only the last period may be open: {periods}")
        test.assertAlmostEqual(seconds(earlier["endedAt"]), seconds(later["startedAt"]), delta=0.001,
                               msg=f"a gap or an overlap between {earlier} and {later}")
        test.assertLessEqual(seconds(earlier["startedAt"]), seconds(earlier["endedAt"]))


class CrashTests(unittest.TestCase):
    """SIGKILL of the daemon, a restart: no period is lost or counted twice."""

    PRICES = {"ATOLL_PRICE_VCPU_SECOND": "0.00002", "ATOLL_PRICE_MEMORY_GIB_SECOND": "0.000005",
              "ATOLL_PRICE_DISK_GIB_SECOND": "0.0000001", "ATOLL_PRICE_ARCHIVE_GIB_MONTH": "0.02"}

    def usage(self, daemon, sandbox_id, since):
        status, body = daemon.get(f"/api/usage?sandboxId={sandbox_id}&from={since}")
        self.assertEqual(status, 200, body)
        report = json.loads(body)
        assert_matches_schema(self, report, {"$ref": "#/components/schemas/UsageReport"})
        self.assertEqual(len(report["items"]), 1, report)
        return report, report["items"][0]

    def test_sigkill_neither_loses_nor_doubles_a_period(self):
        daemon = PrivateDaemon("m", os.environ["ATOLL_METER_NETNS"], id_offset=2 << 27, extra_env=self.PRICES)
        try:
            daemon.start()
            since = time.time() - 5
            daytona = daemon.client()
            before_create = time.time()
            survivor = daytona.create(CreateSandboxFromSnapshotParams(auto_stop_interval=0))
            after_create = time.time()
            victim = daytona.create(CreateSandboxFromSnapshotParams(auto_stop_interval=0))
            time.sleep(3)  # a few samples of both

            daemon.kill()
            killed_at = time.time()
            # While no daemon watches: the survivor keeps running, the victim's processes die.
            pids = daemon.cgroup_procs(victim.id)
            self.assertTrue(pids, "the victim's processes are in its cgroup")
            for pid in pids:
                os.kill(pid, 9)
            time.sleep(3)

            daemon.start()
            daytona = daemon.client()
            self.assertEqual(daytona.get(victim.id).state, "stopped", "reconciled: PID 1 was gone")
            self.assertEqual(daytona.get(survivor.id).state, "started", "adopted")
            time.sleep(2)
            before_stop = time.time()
            daytona.stop(daytona.get(survivor.id))
            after_stop = time.time()

            # The survivor was started, without a break, from its create until its stop: the
            # compute periods add up to that wall-clock time (1 vCPU) within a second.
            report, survivor_usage = self.usage(daemon, survivor.id, since)
            periods = survivor_usage["periods"]
            assert_contiguous(self, periods)
            self.assertEqual([p["kind"] for p in periods], ["compute", "disk"], periods)
            self.assertIsNone(periods[-1].get("endedAt"), "the disk period is open")
            self.assertGreaterEqual(survivor_usage["vcpuSecondsAllocated"], before_stop - after_create - 1)
            self.assertLessEqual(survivor_usage["vcpuSecondsAllocated"], after_stop - before_create + 1)
            self.assertAlmostEqual(survivor_usage["memoryGiBSecondsAllocated"], survivor_usage["vcpuSecondsAllocated"], delta=0.001)
            self.assertGreater(survivor_usage["memoryBytesPeak"], 0)
            self.assertGreater(survivor_usage["diskBytesUsed"], 0)
            prices = report["prices"]
            expected = (survivor_usage["vcpuSecondsAllocated"] * prices["vcpuSecond"]
                        + survivor_usage["memoryGiBSecondsAllocated"] * prices["memoryGiBSecond"]
                        + survivor_usage["diskGiBSecondsAllocated"] * prices["diskGiBSecond"]
                        + survivor_usage["archiveGiBSecondsAllocated"] * prices["archiveGiBMonth"] / (30 * 86400))
            self.assertEqual(prices["vcpuSecond"], 0.00002, "prices come from the daemon's environment")
            self.assertAlmostEqual(survivor_usage["estimatedCost"], expected, delta=1e-9)

            # The victim died while nobody watched: its compute period ends at the last sample
            # the killed daemon made durable (within the meter's second before the kill), and
            # its disk period starts right there.
            _, victim_usage = self.usage(daemon, victim.id, since)
            periods = victim_usage["periods"]
            assert_contiguous(self, periods)
            self.assertEqual([p["kind"] for p in periods], ["compute", "disk"], periods)
            compute_end = seconds(periods[0]["endedAt"])
            self.assertLessEqual(compute_end, killed_at + 0.01)
            self.assertGreaterEqual(compute_end, killed_at - 2.5, "samples were durable up to the kill")

            # The embedded runner reports the same numbers with the daemon down.
            self.assertEqual(daemon.terminate(), 0)
            cli = daemon.atoll("usage", "--sandbox", survivor.id, "--since", "10m", "--json")
            self.assertEqual(cli.returncode, 0, cli.stderr)
            self.assertAlmostEqual(json.loads(cli.stdout)["items"][0]["vcpuSecondsAllocated"],
                                   survivor_usage["vcpuSecondsAllocated"], delta=0.001)
        finally:
            daemon.cleanup()


class UsageAPITests(unittest.TestCase):
    """GET /api/usage and `atoll usage` against the suite's daemon."""

    def get(self, path, key=API_KEY):
        return http_get(BASE_URL + path, key)

    def test_grouping_bad_input_and_cli(self):
        daytona = Daytona(DaytonaConfig(api_key=API_KEY, api_url=API_URL))
        team = "meter-" + os.urandom(4).hex()
        sandboxes = [daytona.create(CreateSandboxFromSnapshotParams(labels={"team": team})) for _ in range(2)]
        try:
            time.sleep(2)
            status, body = self.get("/api/usage?groupBy=" + urllib.parse.quote("label:team"))
            self.assertEqual(status, 200, body)
            report = json.loads(body)
            assert_matches_schema(self, report, {"$ref": "#/components/schemas/UsageReport"})
            groups = {item["label"]: item for item in report["items"]}
            self.assertEqual(sorted(groups[team]["sandboxIds"]), sorted(s.id for s in sandboxes))
            self.assertGreater(groups[team]["vcpuSecondsAllocated"], 2 * 1.5)

            for query, field in [("from=yesterday", "from"), ("to=soon", "to"), ("groupBy=team", "groupBy"),
                                 ("from=2000&to=1000", "before")]:
                status, body = self.get("/api/usage?" + query)
                self.assertEqual(status, 400, query)
                error = json.loads(body)
                assert_matches_schema(self, error, {"$ref": "#/components/schemas/Error"})
                self.assertIn(field, error["message"], query)
            status, body = self.get("/api/usage?sandboxId=no-such-sandbox")
            self.assertEqual(status, 404, body)
            self.assertEqual(self.get("/api/usage", key=None)[0], 401)

            cli = subprocess.run([f"{BIN}/atoll", "usage", "--url", API_URL, "--sandbox", sandboxes[0].id],
                                 capture_output=True, timeout=60, env=dict(os.environ, ATOLL_API_KEY=API_KEY))
            self.assertEqual(cli.returncode, 0, cli.stderr)
            self.assertIn(sandboxes[0].id.encode(), cli.stdout)
            lines = cli.stdout.decode().splitlines()
            self.assertTrue(lines[1].startswith("SANDBOX") and "COST" in lines[1], lines)
            self.assertTrue(lines[-1].startswith("total"), lines)
        finally:
            for sandbox in sandboxes:
                daytona.delete(sandbox)


class MetricsTests(unittest.TestCase):
    """/metrics is Prometheus text that the official parser reads, and its counters only grow."""

    def scrape(self):
        request = urllib.request.Request(BASE_URL + "/metrics", headers={"Authorization": f"Bearer {API_KEY}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            self.assertTrue(response.headers["Content-Type"].startswith("text/plain; version=0.0.4"))
            text = response.read().decode()
        families = {family.name: family for family in text_string_to_metric_families(text)}
        samples = {}
        for family in families.values():
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = (family.type, sample.value)
        return families, samples

    def test_parses_and_counters_grow(self):
        daytona = Daytona(DaytonaConfig(api_key=API_KEY, api_url=API_URL))
        sandbox = daytona.create()
        try:
            sandbox.process.exec("true")
            time.sleep(1.5)
            families, first = self.scrape()
            for name in ["atoll_sandbox_state", "atoll_sandbox_cpu_seconds", "atoll_sandbox_memory_bytes", "atoll_sandbox_disk_bytes",
                         "atoll_sandbox_oom_kills", "atoll_sandboxes", "atoll_http_requests", "atoll_http_request_duration_seconds"]:
                self.assertIn(name, families)
            self.assertEqual(families["atoll_http_request_duration_seconds"].type, "histogram")
            state = [s for s in families["atoll_sandbox_state"].samples if s.labels["sandbox_id"] == sandbox.id]
            self.assertEqual([s.labels["state"] for s in state], ["started"])
            routes = {s.labels["route"] for s in families["atoll_http_requests"].samples}
            self.assertTrue(any("toolbox" in route and "{" in route for route in routes),
                            f"routes are patterns, not paths with ids: {routes}")

            # Work in the sandbox, more requests; the counters may only have grown.
            sandbox.process.exec("python3 -c 'x = 0\nfor i in range(3_000_000): x += i'")
            time.sleep(1.5)
            _, second = self.scrape()
            counters = {key: value for key, (kind, value) in first.items()
                        if kind in ("counter", "histogram") and not key[0].endswith("_created")}
            self.assertTrue(counters)
            for key, value in counters.items():
                self.assertIn(key, second, f"{key} disappeared")
                self.assertGreaterEqual(second[key][1], value, f"{key} went down")
            cpu_key = ("atoll_sandbox_cpu_seconds_total", (("sandbox_id", sandbox.id),))
            self.assertGreater(second[cpu_key][1], first[cpu_key][1] + 0.05, "the busy sandbox used CPU")
            requests_first = sum(v for (name, _), (_, v) in first.items() if name == "atoll_http_requests_total")
            requests_second = sum(v for (name, _), (_, v) in second.items() if name == "atoll_http_requests_total")
            self.assertGreater(requests_second, requests_first)

            unauthorized = urllib.request.Request(BASE_URL + "/metrics")
            with self.assertRaises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(unauthorized, timeout=60)
            self.assertEqual(refused.exception.code, 401)
        finally:
            daytona.delete(sandbox)


if __name__ == "__main__":
    unittest.main()
