"""lb-bridge's status page (GET /) in a real headless Chromium, against a real haproxy, lb-agent
and lb-bridge with real HTTP backends (tests/python/harness.py).

The browser is Debian's /usr/bin/chromium driven by playwright-core through driver.cjs (run.sh
installs playwright-core with `npm ci` and sets LB_NODE_MODULES); this file starts the load
balancer, acts on it (kills a backend, reloads) and asks the driver what the page shows.

Figures printed (stdout): how long after haproxy reported a server DOWN, and after the backend
was killed, the page showed it DOWN.
"""

import hashlib
import http.server
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

from harness import BACKEND, DEAD, LbEnv, LbTestCase, wait_until  # noqa: E402

# What the page must show within this long after haproxy reported a change (issue 10).
PAGE_LATENCY_LIMIT_S = 2.0
# Generous deadlines for what is normally fast: CI runs this next to 3 other tests on 2 cores.
BROWSER_TIMEOUT_S = 60
WAIT_MS = 15000

FAST_CHECKS = "check inter 200ms fall 1 rise 1"
# A backend's health-check answer reaches the page as haproxy's last_chk text.
HOSTILE_REASON = '<img src=x onerror="window.__lbInjected=true">'
TOKEN = "status-page-test-token-0123456789abcdef"


class Browser:
    """driver.cjs in a child process: one JSON command per line, one JSON answer per line."""

    def __init__(self):
        node = "/usr/bin/node" if os.path.exists("/usr/bin/node") else "node"
        if not os.environ.get("LB_NODE_MODULES"):
            raise AssertionError("LB_NODE_MODULES is not set: run this test through run.sh "
                                 "(ctest -R Browser), which installs playwright-core with npm ci")
        self.log = []
        self.proc = subprocess.Popen([node, os.path.join(HERE, "driver.cjs")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.answers = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.answers.put),
                         daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.log.append),
                         daemon=True).start()

    @staticmethod
    def _read(stream, sink):
        for line in stream:
            sink(line.rstrip("\n"))
        sink(None)

    def call(self, cmd, timeout=BROWSER_TIMEOUT_S, **args):
        self.proc.stdin.write(json.dumps(dict(args, cmd=cmd)) + "\n")
        self.proc.stdin.flush()
        try:
            line = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("browser driver: no answer to %s within %d s" % (cmd, timeout))
        if line is None:
            raise AssertionError("browser driver exited (code %s) during %s"
                                 % (self.proc.poll(), cmd))
        answer = json.loads(line)
        if not answer.pop("ok"):
            raise AssertionError("browser driver: %s failed: %s" % (cmd, answer["error"]))
        return answer

    def close(self):
        if self.proc.poll() is None:
            try:
                self.call("quit", timeout=20)
            except AssertionError:
                pass
            self.proc.stdin.close()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class _HostileCheckHandler(http.server.BaseHTTPRequestHandler):
    """Fails every health check with a reason phrase that is HTML."""

    protocol_version = "HTTP/1.0"

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(503, HOSTILE_REASON)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):  # noqa: A002
        pass


class TokenEnv(LbEnv):
    """An LbEnv whose bridge requires TOKEN ([security] bridge_tokens_file)."""

    def agent_config(self):
        tokens = os.path.join(self.dir, "tokens")
        with open(tokens, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(tokens, 0o600)
        return super().agent_config() + "\n[security]\nbridge_tokens_file = %s\n" % tokens


class StatusPageTest(LbTestCase):
    def setUp(self):
        self.out_dir = os.environ.get("LB_BROWSER_OUT") or tempfile.mkdtemp(prefix="lb-page-")

    def start_browser(self):
        """The browser, closed before the load balancer stops (cleanups run last-in first-out):
        a page whose bridge is gone keeps retrying its stream, and Chromium then takes long to
        close."""
        self.browser = Browser()
        self.addCleanup(self._close_browser)

    def _close_browser(self):
        self.browser.close()
        sys.stderr.write("---- browser driver log ----\n%s\n" % "\n".join(
            line for line in self.browser.log if line is not None))

    def start_token_env(self):
        env = TokenEnv(bridge=True)
        self._lb_envs.append(env)
        self.addCleanup(env.stop)
        env.start()
        return env

    @staticmethod
    def last_chk(env, backend, server):
        for b in env.call_ok("status", {"backend": backend}, timeout=5)["backends"]:
            for s in b["servers"]:
                if s["name"] == server:
                    return s["last_chk"]
        return None

    @staticmethod
    def config(env, servers, extra=""):
        return env.haproxy_config(servers).replace("check inter 200ms", FAST_CHECKS) + extra

    def reload(self, env, config):
        result = env.call_ok("reload", {"config": config}, timeout=30)
        self.assertIn(result["outcome"], ("applied", "unchanged"))
        return hashlib.sha256(config.encode()).hexdigest()

    def wait_summary(self, predicate, what):
        return wait_until(lambda: (lambda s: s if predicate(s) else False)(
            self.browser.call("summary")), 15, what)

    def test_page_follows_servers_going_down_and_a_reload_without_navigating(self):
        env = self.start_env(bridge=True)
        self.start_browser()
        sha = self.reload(env, self.config(env, ["alpha", "bravo", DEAD]))
        env.wait_server_states({"alpha": "UP", "bravo": "UP", DEAD: "DOWN"})

        opened = self.browser.call("open", url=env.bridge_url + "/")
        self.assertEqual(opened["status"], 200)
        self.assertIn("default-src 'none'", opened["csp"])
        self.assertIn("script-src 'self'", opened["csp"])
        self.assertEqual(opened["nosniff"], "nosniff")

        # Every server of the backend, as haproxy has them.
        for server, state in (("alpha", "UP"), ("bravo", "UP"), (DEAD, "DOWN")):
            self.browser.call("wait_state", backend=BACKEND, server=server, state=state,
                              timeout_ms=WAIT_MS)
        rows = {r["server"]: r for r in self.browser.call("rows")["rows"]}
        self.assertEqual(sorted(rows), sorted(["alpha", "bravo", DEAD]))
        for name, row in rows.items():
            self.assertEqual(row["backend"], BACKEND)
            self.assertEqual(row["address"], env.address_of(name))
            self.assertEqual(row["weight"], "1")
        summary = self.wait_summary(lambda s: s["sha256"] == sha and s["live"] == "live",
                                    "the page to show sha256 %s and a live stream" % sha)
        self.assertTrue(summary["last_reload"].startswith("applied"), summary)
        self.assertIn("running", summary["haproxy"])

        # Some traffic, so that the sessions column has something to show from the next refresh.
        env.wait_traffic_only(["alpha", "bravo"])

        # A backend dies: its row turns DOWN, measured from when haproxy said so.
        haproxy_down = {}

        def watch_haproxy():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if env.server_states().get("bravo") == "DOWN":
                    haproxy_down["at"] = time.time()
                    return
                time.sleep(0.01)

        killed_at = time.time()
        env.backends["bravo"].stop()
        watcher = threading.Thread(target=watch_haproxy)
        watcher.start()
        page_down_at = self.browser.call("wait_state", backend=BACKEND, server="bravo",
                                         state="DOWN", timeout_ms=WAIT_MS)["at_ms"] / 1000.0
        watcher.join()
        self.assertIn("at", haproxy_down, "haproxy never reported bravo DOWN")
        latency = page_down_at - haproxy_down["at"]
        print("status page: bravo DOWN on the page %.0f ms after haproxy reported it, %.0f ms "
              "after the backend was killed" % (latency * 1000, (page_down_at - killed_at) * 1000))
        self.assertLessEqual(latency, PAGE_LATENCY_LIMIT_S)

        # A reload adds a server: it appears, and the sha256 follows.
        sha = self.reload(env, self.config(env, ["alpha", "bravo", DEAD, "charlie"]))
        self.browser.call("wait_state", backend=BACKEND, server="charlie", state="UP",
                          timeout_ms=WAIT_MS)
        self.wait_summary(lambda s: s["sha256"] == sha, "the page to show sha256 %s" % sha)
        self.browser.call("wait_state", backend=BACKEND, server="bravo", state="DOWN",
                          timeout_ms=WAIT_MS)
        rows = {r["server"]: r for r in self.browser.call("rows")["rows"]}
        self.assertEqual(sorted(rows), sorted(["alpha", "bravo", DEAD, "charlie"]))
        self.assertEqual(rows["charlie"]["address"], env.address_of("charlie"))

        # All of that without the page being loaded again.
        navigations = self.browser.call("navigations")
        self.assertEqual(navigations["navigations"], 1, navigations)
        self.assertEqual(navigations["marker"], "set at open", navigations)
        self.assertEqual(navigations["navigation_entries"], 1, navigations)

        # Readable on a screen and on a phone: nothing wider than the viewport.
        for name, width, height in (("status-page.png", 1280, 720),
                                    ("status-page-phone.png", 390, 844)):
            shot = self.browser.call("screenshot", path=os.path.join(self.out_dir, name),
                                     width=width, height=height)
            self.assertLessEqual(shot["scroll_width"], width, name)
        self.assertEqual(self.browser.call("problems")["problems"], [])

    def test_with_tokens_page_asks_once_and_shows_haproxy_text_as_text(self):
        env = self.start_token_env()
        self.start_browser()
        hostile = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HostileCheckHandler)
        hostile.daemon_threads = True
        threading.Thread(target=hostile.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True).start()
        self.addCleanup(hostile.server_close)
        self.addCleanup(hostile.shutdown)
        extra = ("\nbackend static\n    option httpchk GET /\n"
                 "    server hostile 127.0.0.1:%d %s\n" % (hostile.server_address[1], FAST_CHECKS))
        self.reload(env, self.config(env, ["alpha", "bravo"], extra))
        wait_until(lambda: self.last_chk(env, "static", "hostile") == HOSTILE_REASON, 30,
                   "haproxy's last_chk of static/hostile to be the hostile reason phrase")

        self.browser.call("open", url=env.bridge_url + "/")
        summary = self.wait_summary(lambda s: s["token_form"], "the page to ask for a token")
        self.assertEqual(self.browser.call("rows")["rows"], [])
        self.assertIn("token", summary["error"])

        self.browser.call("enter_token", token=TOKEN)
        self.browser.call("wait_state", backend="static", server="hostile", state="DOWN",
                          timeout_ms=WAIT_MS)
        self.browser.call("wait_state", backend=BACKEND, server="alpha", state="UP",
                          timeout_ms=WAIT_MS)
        self.wait_summary(lambda s: s["live"] == "live" and not s["token_form"],
                          "the event stream to run with the token")
        # haproxy empties last_chk while each check runs (set_server_check_status(START)), so a
        # page refresh that fell in that window shows "L7STS" alone; the next event (at the
        # latest the agent's heartbeat, every 5 s) refreshes it again.
        def hostile_check():
            rows = {r["server"]: r for r in self.browser.call("rows")["rows"]}
            return HOSTILE_REASON in rows["hostile"]["check"]
        wait_until(hostile_check, 30, "the page to show the hostile reason phrase as text")
        probe = self.browser.call("probe")
        self.assertFalse(probe["injected_ran"])
        self.assertEqual(probe["images"], 0)
        # Only the page's own 401s (before the token) reached the console.
        for problem in self.browser.call("problems")["problems"]:
            self.assertIn("401", problem)


if __name__ == "__main__":
    unittest.main()
