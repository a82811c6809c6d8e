"""A client of lb-agent's command socket written only from the protocol description:

    request:  ONE frame, msgpack {"v": 1, "id": <any>, "cmd": <str>, "args": {...}}
    reply:    ONE frame, msgpack {"v": 1, "id": <same>, "ok": true, "result": {...}}
                              or {"v": 1, "id": <same>, "ok": false,
                                  "error": {"code", "message", "details"?}}

over a ZeroMQ REQ socket with a receive timeout. Each test runs its own lb-agent + haproxy.
"""

import hashlib
import itertools
import unittest

import msgpack
import zmq

import harness
from harness import BACKEND, DEAD

ERROR_CODES = {"bad_request", "unknown_command", "too_large", "invalid_config", "reload_failed",
               "conflict", "superseded", "haproxy_unavailable", "timeout", "internal"}


class CommandClient:
    """REQ client: one socket per request, so that a timed-out request never leaves a REQ
    socket stuck in its send/receive state machine."""

    _ids = itertools.count(1)

    def __init__(self, endpoint, timeout_ms=15000):
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        self.context = zmq.Context()

    def close(self):
        self.context.term()

    def request(self, cmd, args=None):
        """Sends one request; returns the whole decoded reply after checking its envelope."""
        request_id = "py-%d" % next(self._ids)
        sock = self.context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, self.timeout_ms)
        sock.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
        try:
            sock.connect(self.endpoint)
            sock.send(msgpack.packb({"v": 1, "id": request_id, "cmd": cmd, "args": args or {}},
                                    use_bin_type=True))
            try:
                frames = sock.recv_multipart()
            except zmq.Again:
                raise AssertionError("no reply to %r within %d ms" % (cmd, self.timeout_ms))
        finally:
            sock.close()
        if len(frames) != 1:
            raise AssertionError("reply to %r has %d frames, expected one" % (cmd, len(frames)))
        reply = msgpack.unpackb(frames[0], raw=False)
        if not isinstance(reply, dict):
            raise AssertionError("reply to %r is not a map: %r" % (cmd, reply))
        if reply.get("v") != 1 or reply.get("id") != request_id or not isinstance(reply.get("ok"),
                                                                                   bool):
            raise AssertionError("bad reply envelope for %r (id %r): %r" % (cmd, request_id, reply))
        if reply["ok"]:
            if not isinstance(reply.get("result"), dict):
                raise AssertionError("ok reply to %r without a result map: %r" % (cmd, reply))
        else:
            error = reply.get("error")
            if not (isinstance(error, dict) and error.get("code") in ERROR_CODES
                    and isinstance(error.get("message"), str)):
                raise AssertionError("error reply to %r without a valid error: %r" % (cmd, reply))
        return reply

    def result(self, cmd, args=None):
        reply = self.request(cmd, args)
        if not reply["ok"]:
            raise AssertionError("%s failed: %r" % (cmd, reply["error"]))
        return reply["result"]

    def error(self, cmd, args=None):
        reply = self.request(cmd, args)
        if reply["ok"]:
            raise AssertionError("%s succeeded, expected an error: %r" % (cmd, reply["result"]))
        return reply["error"]


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


class ZmqClientTest(harness.LbTestCase):

    def setUp(self):
        self.env = self.start_env()
        self.client = CommandClient(self.env.endpoint)
        self.addCleanup(self.client.close)

    def test_ping(self):
        reply = self.client.request("ping")
        self.assertTrue(reply["ok"], reply)
        self.assertIsInstance(reply["result"], dict)

    def test_status_reports_up_and_down_servers(self):
        result = self.client.result("status", {"backend": BACKEND})
        self.assertEqual([b["name"] for b in result["backends"]], [BACKEND])
        servers = {s["name"]: s for s in result["backends"][0]["servers"]}
        self.assertEqual(set(servers), {"alpha", "bravo", DEAD})
        for name in ("alpha", "bravo"):
            self.assertEqual(servers[name]["status"], "UP", servers[name])
            self.assertEqual(servers[name]["address"], self.env.address_of(name))
        self.assertEqual(servers[DEAD]["status"], "DOWN", servers[DEAD])
        self.assertEqual(servers[DEAD]["address"], self.env.address_of(DEAD))
        # The failed check is explained, as the 2015 agent's "description" (last_chk) did.
        self.assertTrue(servers[DEAD]["last_chk"], servers[DEAD])
        for s in servers.values():
            for key in ("name", "address", "status", "weight", "check_status", "last_chk",
                        "current_sessions", "total_sessions", "seconds_since_change"):
                self.assertIn(key, s)

        # "*" lists every backend; the frontend is not a backend.
        every = self.client.result("status", {"backend": "*"})
        self.assertIn(BACKEND, [b["name"] for b in every["backends"]])
        self.assertNotIn("fe", [b["name"] for b in every["backends"]])

    def test_reload_applies_then_unchanged_and_routes_traffic(self):
        before = self.env.read_live()
        config = self.env.haproxy_config(["charlie"])
        result = self.client.result("reload", {"config": config})
        self.assertEqual(result["outcome"], "applied", result)
        self.assertEqual(result["sha256"], sha256(config))
        self.assertEqual(result["previous_sha256"], hashlib.sha256(before).hexdigest())
        self.assertFalse(result["rolled_back"])
        self.assertIsInstance(result["warnings"], list)
        self.assertIsInstance(result["validate_ms"], (int, float))
        self.assertIsInstance(result["reload_ms"], (int, float))
        self.assertEqual(self.env.read_live(), config.encode())

        # The same config again changes nothing.
        again = self.client.result("reload", {"config": config})
        self.assertEqual(again["outcome"], "unchanged", again)
        self.assertEqual(again["sha256"], sha256(config))

        # Traffic reaches the new server set only: charlie was not in the old config.
        self.env.wait_server_states({"charlie": "UP"})
        self.env.wait_traffic_only({"charlie"})

    def test_reload_with_wrong_expect_sha256_is_conflict(self):
        before = self.env.read_live()
        config = self.env.haproxy_config(["charlie"])
        error = self.client.error("reload", {"config": config, "expect_sha256": "0" * 64})
        self.assertEqual(error["code"], "conflict", error)
        self.assertEqual(self.env.read_live(), before)
        # With the right one, the same reload goes through.
        result = self.client.result(
            "reload", {"config": config, "expect_sha256": hashlib.sha256(before).hexdigest()})
        self.assertEqual(result["outcome"], "applied", result)

    def test_get_config_returns_applied_text(self):
        config = self.env.haproxy_config(["bravo", "charlie"])
        applied = self.client.result("reload", {"config": config})
        self.assertEqual(applied["outcome"], "applied", applied)
        result = self.client.result("get_config")
        self.assertEqual(result["config"], config)
        self.assertEqual(result["sha256"], sha256(config))
        self.assertEqual(result["path"], self.env.haproxy_cfg)

    def test_unknown_command_is_unknown_command(self):
        error = self.client.error("no_such_command", {})
        self.assertEqual(error["code"], "unknown_command", error)
        # The agent still serves afterwards.
        self.assertTrue(self.client.request("ping")["ok"])


if __name__ == "__main__":
    unittest.main()
