"""A subscriber of lb-agent's event stream written only from proto/PROTOCOL.md ("Events"):

    SUB socket on event_endpoint, topic prefix "" for everything;
    each event is TWO frames: [topic, msgpack map];
    every map has v, agent, epoch, seq (+1 per event, all topics), topic_seq, ts_ms, type;
    server events carry the server's absolute new state (status None = removed);
    heartbeats do not advance seq: theirs is the last event's, so a gap shows there too;
    late joiners subscribe first, then call `status`, whose result carries `seq` and `epoch`,
    and apply only events with a higher seq of the same epoch.

Each test runs its own lb-agent + haproxy (harness.LbEnv) with heartbeats every 0.2 s.
"""

import time
import unittest

import msgpack
import zmq

import harness
from harness import BACKEND, DEAD

HEARTBEAT_S = 0.2
TIMEOUT = 30  # seconds, for anything that depends on haproxy's checks


class EventsEnv(harness.LbEnv):
    """LbEnv with frequent heartbeats (a subscription is live once one arrives)."""

    def agent_config(self):
        return super().agent_config().replace(
            "\n[haproxy]\n",
            "poll_interval = 0.25\nheartbeat_interval = %s\n\n[haproxy]\n" % HEARTBEAT_S, 1)

    @property
    def event_endpoint(self):
        return "ipc://%s/events.sock" % self.dir


class Subscriber:
    """Follows one agent: a view {(backend, server): status} from a `status` snapshot plus
    the events published after it. Records gaps in seq (lost events) instead of hiding them."""

    def __init__(self, context, endpoint):
        self.sock = context.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)
        self.view = {}
        self.seq = None
        self.epoch = None
        self.gaps = []
        self.applied = []  # (topic, body) of the events applied, in order
        self.last_heartbeat = None

    def close(self):
        self.sock.close()

    def receive(self, timeout):
        """(topic, body) of the next event, or None after `timeout` seconds."""
        if not self.sock.poll(int(timeout * 1000)):
            return None
        frames = self.sock.recv_multipart()
        if len(frames) != 2:
            raise AssertionError("an event is two frames, got %d: %r" % (len(frames), frames))
        topic = frames[0].decode()
        body = msgpack.unpackb(frames[1], raw=False)
        if not isinstance(body, dict):
            raise AssertionError("event body is not a map: %r" % (body,))
        for key in ("v", "agent", "epoch", "seq", "topic_seq", "ts_ms", "type"):
            if key not in body:
                raise AssertionError("event %s has no %r: %r" % (topic, key, body))
        if body["v"] != 1:
            raise AssertionError("event version %r" % body["v"])
        return topic, body

    def join(self, call):
        """The late-joiner procedure. `call(cmd, args)` returns a command's result."""
        # Subscribed already (constructor). A heartbeat proves the subscription reached the
        # publisher: nothing published from now on is missed. Keep what came before it.
        pending = []
        deadline = time.monotonic() + TIMEOUT
        while True:
            event = self.receive(max(0, deadline - time.monotonic()))
            if event is None:
                raise AssertionError("no heartbeat within %d s" % TIMEOUT)
            pending.append(event)
            if event[1]["type"] == "heartbeat":
                break
        snapshot = call("status", {"backend": "*"})
        self.seq = snapshot["seq"]
        self.epoch = snapshot["epoch"]
        self.view = {(b["name"], s["name"]): s["status"]
                     for b in snapshot["backends"] for s in b["servers"]}
        for topic, body in pending:
            self.apply(topic, body)

    def apply(self, topic, body):
        if body["epoch"] != self.epoch:
            raise AssertionError("epoch changed from %r to %r: the agent restarted, join again"
                                 % (self.epoch, body["epoch"]))
        if body["type"] == "heartbeat":
            if body["seq"] > self.seq:
                self.gaps.append((self.seq, body["seq"]))
                self.seq = body["seq"]
            self.last_heartbeat = body
            return
        if body["seq"] <= self.seq:
            return  # the snapshot shows it already
        if body["seq"] != self.seq + 1:
            self.gaps.append((self.seq, body["seq"]))
        self.seq = body["seq"]
        if body["type"] == "server":
            if topic != "server/%s/%s" % (body["backend"], body["server"]):
                raise AssertionError("topic %s for %r" % (topic, body))
            key = (body["backend"], body["server"])
            if body["status"] is None:
                self.view.pop(key, None)
            else:
                self.view[key] = body["status"]
        self.applied.append((topic, body))

    def follow_until(self, predicate, timeout, what):
        """Applies events until predicate() is true; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            event = self.receive(max(0, left)) if left > 0 else None
            if event is None:
                raise AssertionError("timed out after %.1f s waiting for %s; view %r; applied %r"
                                     % (timeout, what, self.view, self.applied[-10:]))
            self.apply(*event)


class EventSubscriberTest(harness.LbTestCase):

    def start_events_env(self):
        env = EventsEnv()
        self._lb_envs.append(env)
        self.addCleanup(env.stop)
        env.start()
        return env

    def subscriber(self, env):
        context = zmq.Context()
        sub = Subscriber(context, env.event_endpoint)

        def close():
            sub.close()
            context.term()

        self.addCleanup(close)
        return sub

    def test_late_joiner_follows_servers_reloads_and_heartbeats(self):
        env = self.start_events_env()
        sub = self.subscriber(env)
        sub.join(env.call_ok)
        self.assertEqual(sub.view[(BACKEND, "alpha")], "UP")
        self.assertEqual(sub.view[(BACKEND, DEAD)], "DOWN")

        # A killed backend: the view follows it to DOWN through events alone.
        env.backends["alpha"].stop()
        sub.follow_until(lambda: sub.view[(BACKEND, "alpha")] == "DOWN", TIMEOUT, "alpha DOWN")
        down = [b for t, b in sub.applied if t == "server/%s/alpha" % BACKEND]
        self.assertEqual(down[-1]["status"], "DOWN")
        self.assertIn(down[-1]["source"], ("poll", "log"))
        self.assertTrue(down[-1]["previous"].startswith("UP"), down[-1])

        # A reload that drops the dead server: a reload event with the new sha256, and the
        # server leaves the view.
        result = env.call_ok("reload", {"config": env.haproxy_config(("alpha", "bravo"))},
                             timeout=30)
        self.assertEqual(result["outcome"], "applied")
        sub.follow_until(lambda: any(t == "reload" for t, _ in sub.applied), TIMEOUT,
                         "the reload event")
        reload_event = [b for t, b in sub.applied if t == "reload"][-1]
        self.assertEqual(reload_event["type"], "reload")
        self.assertEqual(reload_event["outcome"], "applied")
        self.assertEqual(reload_event["sha256"], result["sha256"])
        self.assertEqual(reload_event["previous_sha256"], result["previous_sha256"])
        sub.follow_until(lambda: (BACKEND, DEAD) not in sub.view, TIMEOUT,
                         "the dead server to be removed")

        # A heartbeat after the reload names the live config.
        live_sha = env.call_ok("get_config")["sha256"]
        self.assertEqual(live_sha, result["sha256"])
        sub.last_heartbeat = None
        sub.follow_until(lambda: sub.last_heartbeat is not None, TIMEOUT, "a heartbeat")
        self.assertEqual(sub.last_heartbeat["sha256"], live_sha)
        self.assertGreater(sub.last_heartbeat["haproxy_pid"], 0)
        self.assertEqual(sub.last_heartbeat["interval_s"], HEARTBEAT_S)

        # The new worker checks alpha again (no server-state file here): once status settles,
        # the view built from events alone says the same, and nothing was lost.
        expected = {"alpha": "DOWN", "bravo": "UP"}
        env.wait_server_states(expected)
        sub.follow_until(lambda: {s: st for (b, s), st in sub.view.items() if b == BACKEND}
                         == expected, TIMEOUT, "the view to match status %r" % (expected,))
        self.assertEqual(sub.gaps, [])

    def test_a_subscriber_that_joins_after_events_skips_what_the_snapshot_shows(self):
        env = self.start_events_env()
        env.backends["bravo"].stop()
        env.wait_server_states({"alpha": "UP", "bravo": "DOWN", DEAD: "DOWN"})
        # Joins after bravo went DOWN: the snapshot's seq already counts those events.
        sub = self.subscriber(env)
        sub.join(env.call_ok)
        self.assertGreater(sub.seq, 0)
        self.assertEqual(sub.view[(BACKEND, "bravo")], "DOWN")
        self.assertFalse(any(t == "server/%s/bravo" % BACKEND for t, _ in sub.applied))
        # The next change is applied, with nothing missed in between.
        result = env.call_ok("reload", {"config": env.haproxy_config(("alpha", "bravo", DEAD))
                                        + "# again\n"}, timeout=30)
        sub.follow_until(lambda: any(b.get("sha256") == result["sha256"]
                                     for t, b in sub.applied if t == "reload"),
                         TIMEOUT, "the reload event")
        self.assertEqual(sub.gaps, [])


if __name__ == "__main__":
    unittest.main()
