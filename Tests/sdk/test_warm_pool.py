"""The warm pool through the suite's atolld (ATOLL_WARM_POOL unset: 2 ready sandboxes of the
default key): creates are served from it with what they asked for, policies included (checked
with real traffic), and its members appear in no list, usage report or metric."""
import json
import os
import sqlite3
import time
import unittest
import urllib.parse

from daytona import CreateSandboxFromSnapshotParams, Daytona, DaytonaConfig, Resources

from private_daemon import http_get
from test_metering import assert_matches_schema
from test_sdk import PROBE

API_URL = os.environ["DAYTONA_API_URL"]
API_KEY = os.environ["DAYTONA_API_KEY"]
BASE_URL = API_URL.rsplit("/api", 1)[0]
DATA_DIR = os.environ["ATOLL_DATA_DIR"]


def pool_status():
    status, body = http_get(BASE_URL + "/api/warm-pool", API_KEY)
    assert status == 200, body
    return json.loads(body)


def wait_until_ready(test, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        pools = pool_status()
        if all(p["ready"] >= p["size"] for p in pools):
            return pools
        time.sleep(0.1)
    test.fail(f"the warm pool did not fill: {pool_status()}")


def member_ids():
    """Pool members straight from the daemon's database (read-only): what must stay invisible."""
    with sqlite3.connect(f"file:{DATA_DIR}/atoll.db?mode=ro", uri=True) as db:
        return {row[0] for row in db.execute("SELECT id FROM sandbox WHERE pool IS NOT NULL")}


class WarmPoolTests(unittest.TestCase):
    def setUp(self):
        self.daytona = Daytona(DaytonaConfig(api_key=API_KEY, api_url=API_URL))
        self.created = []

    def tearDown(self):
        for sandbox in self.created:
            self.daytona.delete(sandbox)

    def create(self, **params):
        sandbox = self.daytona.create(CreateSandboxFromSnapshotParams(**params))
        self.created.append(sandbox)
        return sandbox

    def test_claims_apply_the_create_and_members_stay_invisible(self):
        pools = wait_until_ready(self)
        assert_matches_schema(self, pools, {"type": "array", "items": {"$ref": "#/components/schemas/WarmPool"}})
        self.assertEqual([(p["snapshot"], p["cpu"], p["memory"], p["disk"], p["user"], p["size"]) for p in pools],
                         [("default", 1, 1, 3, "sandbox", 2)])
        claims = pools[0]["claims"]
        members = member_ids()
        self.assertEqual(len(members), 2)

        blocked = self.create(name=f"pool-blocked-{os.getpid()}", labels={"pool-test": "1"}, env_vars={"GREETING": "hi"},
                              network_block_all=True)
        self.assertIn(blocked.id, members, "served from the pool")
        self.assertEqual(blocked.process.code_run(PROBE).result.strip(), "EHOSTUNREACH")
        self.assertEqual(blocked.process.exec("echo $GREETING $(hostname)").result.strip(), f"hi {blocked.id}")
        self.assertEqual(self.daytona.get(blocked.name).labels, {"pool-test": "1", "code-toolbox-language": "python"})

        allowed = self.create(network_allow_list="203.0.113.10/32")
        self.assertIn(allowed.id, members)
        self.assertEqual(allowed.process.code_run(PROBE).result.strip(), "ok outside")
        self.assertEqual(pool_status()[0]["claims"], claims + 2)

        # Other resources: built cold, the pool untouched.
        cold = self.create(resources=Resources(cpu=2))
        self.assertNotIn(cold.id, members | member_ids())

        # Members are nobody's: not listed, not in usage, not in /metrics.
        wait_until_ready(self)
        now_members = member_ids()
        listed = {s.id for s in self.daytona.list()}
        self.assertFalse(listed & now_members, "pool members listed")
        status, body = http_get(BASE_URL + "/api/usage?" + urllib.parse.urlencode({"from": time.time() - 3600}), API_KEY)
        self.assertEqual(status, 200)
        usage_ids = {i for item in json.loads(body)["items"] for i in item["sandboxIds"]}
        self.assertFalse(usage_ids & now_members, "pool members in usage")
        self.assertTrue({blocked.id, allowed.id, cold.id} <= usage_ids)
        status, metrics = http_get(BASE_URL + "/metrics", API_KEY)
        self.assertFalse(any(member.encode() in metrics for member in now_members), "pool members in /metrics")
        self.assertIn(b'atoll_warm_pool_ready{key="default/1/1/3/sandbox"} 2', metrics)


if __name__ == "__main__":
    unittest.main()
