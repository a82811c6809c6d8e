"""A fleet controller written from proto/PROTOCOL.md ("Fleet") alone, with pyzmq and msgpack,
driving three real lb-agents (each managing its own real haproxy).

If this small controller can push a config to every agent and read their acks, the written
protocol is enough to write a controller without reading the C++: that is what this test is for.
It binds PUB + ROUTER on ipc:// in a temp dir, sends beacons, answers hellos with the agent's
desired push (or `uptodate`), publishes pushes on fleet/all, and collects acks.

Run: LB_AGENT_BIN=... HAPROXY_BIN=... /usr/bin/python3 -m unittest -v test_fleet_controller
"""

import hashlib
import os
import shutil
import tempfile
import time
import unittest

import msgpack
import zmq

from harness import BACKEND, LbEnv, LbTestCase, free_port

CONTROLLER_ID = "py-controller"
BEACON_INTERVAL = 0.2
ACK_TIMEOUT = 30


class MiniController:
    """The whole controller side of the protocol, single-threaded: the test calls pump_until(),
    which sends beacons on time and answers what agents send while it waits."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="lbpy-fleet-")
        self.pub_endpoint = "ipc://" + os.path.join(self.dir, "pub.sock")
        self.router_endpoint = "ipc://" + os.path.join(self.dir, "router.sock")
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(self.pub_endpoint)
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind(self.router_endpoint)
        self.latest = 0
        self.pushes = []      # every push message, oldest first
        self.hellos = []      # every hello received, oldest first
        self.acks = {}        # (agent, version) -> ack
        self.bad = []         # frames that were not what the protocol says
        self._next_beacon = 0.0

    def close(self):
        self.pub.close()
        self.router.close()
        self.ctx.term()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- sending -------------------------------------------------------------------------

    def _publish(self, topic, body):
        self.pub.send_multipart([topic.encode(), msgpack.packb(body)])

    def beacon(self):
        self._publish("fleet/beacon", {"v": 1, "type": "beacon", "controller": CONTROLLER_ID,
                                       "latest": self.latest,
                                       "ts_ms": int(time.time() * 1000)})

    def push(self, config, version=None):
        """Publishes a reload of `config` for every agent; returns the push message. `version`
        overrides the counter (to re-deliver an old one)."""
        if version is None:
            self.latest += 1
            version = self.latest
        message = {"v": 1, "type": "push", "controller": CONTROLLER_ID, "version": version,
                   "target": {"kind": "all"}, "cmd": "reload", "args": {"config": config}}
        if version == self.latest:
            self.pushes.append(message)
        self._publish("fleet/all", message)
        return message

    def _desired(self):
        return self.pushes[-1] if self.pushes else None

    # ---- receiving -----------------------------------------------------------------------

    def _handle(self, frames):
        envelope, payload = frames[:-1], frames[-1]
        try:
            message = msgpack.unpackb(payload, raw=False)
        except Exception as e:  # noqa: BLE001 - recorded as a protocol violation
            self.bad.append("not msgpack: %r (%s)" % (payload[:80], e))
            return
        if not isinstance(message, dict) or message.get("v", 1) != 1:
            self.bad.append("not a v1 map: %r" % (message,))
            return
        kind = message.get("type")
        if kind == "hello":
            self.hellos.append(message)
            desired = self._desired()
            if desired is not None and desired["version"] > message.get("applied_version", 0):
                answer = desired
            else:
                answer = {"v": 1, "type": "uptodate", "controller": CONTROLLER_ID,
                          "latest": self.latest}
            self.router.send_multipart(envelope + [msgpack.packb(answer)])
        elif kind == "ack":
            self.acks[(message.get("agent"), message.get("version"))] = message
        else:
            self.bad.append("unknown type: %r" % (message,))

    def pump_until(self, predicate, timeout, what):
        """Beacons and answers until predicate() is true; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return
            now = time.monotonic()
            if now >= deadline:
                raise AssertionError("timed out after %.1f s waiting for %s; hellos: %r; "
                                     "acks: %r; bad: %r"
                                     % (timeout, what, self.hellos, self.acks, self.bad))
            if now >= self._next_beacon:
                self.beacon()
                self._next_beacon = now + BEACON_INTERVAL
            if self.router.poll(timeout=int(min(BEACON_INTERVAL, deadline - now) * 1000)):
                while True:
                    try:
                        frames = self.router.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._handle(frames)

    def acks_for(self, agents, version):
        return {a: self.acks[(a, version)] for a in agents if (a, version) in self.acks}


class FleetEnv(LbEnv):
    """An LbEnv whose agent also has an agent_id and a [fleet] section."""

    def __init__(self, agent_id, controller, **kwargs):
        super().__init__(**kwargs)
        self.agent_id = agent_id
        self.controller = controller

    def agent_config(self):
        text = super().agent_config()
        text = text.replace("[lb-agent]\n", "[lb-agent]\nagent_id = %s\n" % self.agent_id, 1)
        return text + (
            "\n[fleet]\n"
            "controller_pub = %s\n"
            "controller_router = %s\n"
            "groups = py, %s\n"
            "state_file = fleet-state.json\n"
            "beacon_timeout = 1\n"
        ) % (self.controller.pub_endpoint, self.controller.router_endpoint,
             "g" + self.agent_id)


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


class FleetControllerTest(LbTestCase):

    def setUp(self):
        self.controller = MiniController()
        self.addCleanup(self.controller.close)  # runs after the envs' cleanups (LIFO)
        self.envs = []
        for i in range(3):
            env = FleetEnv("py%d" % i, self.controller)
            self._lb_envs = getattr(self, "_lb_envs", [])
            self._lb_envs.append(env)
            self.addCleanup(env.stop)
            env.start()
            self.envs.append(env)
        self.ids = [env.agent_id for env in self.envs]

    def fleet_config(self, port, servers):
        """One config for every agent: they share the frontend port (haproxy binds it with
        SO_REUSEPORT), and the servers are env 0's backends, reachable from every haproxy."""
        env = self.envs[0]
        return (
            "defaults\n"
            "    mode http\n"
            "    timeout connect 2s\n"
            "    timeout client 10s\n"
            "    timeout server 10s\n"
            "    timeout check 1s\n"
            "\n"
            "frontend fe\n"
            "    bind 127.0.0.1:%d\n"
            "    default_backend %s\n"
            "\n"
            "backend %s\n"
            "    balance roundrobin\n"
            "%s") % (port, BACKEND, BACKEND, env.server_lines(servers))

    def test_push_reaches_every_agent_and_acks_carry_the_live_sha(self):
        ctl = self.controller
        # Every agent says hello with its live config and no applied version yet.
        ctl.pump_until(lambda: {h["agent"] for h in ctl.hellos} >= set(self.ids), 30,
                       "a hello from every agent")
        for env in self.envs:
            hello = next(h for h in ctl.hellos if h["agent"] == env.agent_id)
            self.assertEqual(hello["type"], "hello")
            self.assertEqual(sorted(hello["groups"]), sorted(["py", "g" + env.agent_id]))
            self.assertEqual(hello["sha256"], hashlib.sha256(env.read_live()).hexdigest())
            self.assertEqual(hello.get("applied_version", 0), 0)

        # A new config: every agent applies it; acks name the version and the pushed sha.
        port = free_port()
        config = self.fleet_config(port, ["alpha", "bravo"])
        push = ctl.push(config)
        ctl.pump_until(lambda: len(ctl.acks_for(self.ids, push["version"])) == 3, ACK_TIMEOUT,
                       "an ack of version %d from every agent" % push["version"])
        for agent, ack in ctl.acks_for(self.ids, push["version"]).items():
            self.assertEqual(ack["outcome"], "applied", ack)
            self.assertEqual(ack["sha256"], sha256(config), ack)
            self.assertNotIn("error", ack)
        for env in self.envs:
            self.assertEqual(env.read_live(), config.encode())
            self.assertEqual(env.call_ok("get_config")["sha256"], sha256(config))
        self.envs[0].wait_traffic_only({"alpha", "bravo"}, port=port)
        self.assertEqual(ctl.bad, [])

        # The same config again, as a new version: unchanged, no reload.
        reloads = [env.call_ok("info")["haproxy"]["reloads"] for env in self.envs]
        again = ctl.push(config)
        ctl.pump_until(lambda: len(ctl.acks_for(self.ids, again["version"])) == 3, ACK_TIMEOUT,
                       "an ack of version %d from every agent" % again["version"])
        for ack in ctl.acks_for(self.ids, again["version"]).values():
            self.assertEqual(ack["outcome"], "unchanged", ack)
            self.assertEqual(ack["sha256"], sha256(config), ack)
        self.assertEqual([env.call_ok("info")["haproxy"]["reloads"] for env in self.envs],
                         reloads)

        # An old version re-delivered with another config: ignored, nothing changes.
        other = self.fleet_config(port, ["alpha"])
        stale = ctl.push(other, version=push["version"])
        ctl.pump_until(lambda: len(ctl.acks_for(self.ids, stale["version"])) == 3
                       and all(a["outcome"] == "ignored"
                               for a in ctl.acks_for(self.ids, stale["version"]).values()),
                       ACK_TIMEOUT, "acks 'ignored' of the re-delivered version")
        for env in self.envs:
            self.assertEqual(env.read_live(), config.encode())
        self.assertEqual(ctl.bad, [])


if __name__ == "__main__":
    unittest.main()
