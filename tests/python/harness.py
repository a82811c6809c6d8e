"""Test fixture for the Python end-to-end tests: real lb-agent, real haproxy, real backends.

Each test gets its own LbEnv: a temp dir, free ports, 3 in-process HTTP backends (each answers
200 with its own name), an haproxy.cfg and lb-agent.cfg written into the temp dir, lb-agent in
managed mode (it starts haproxy itself) and, when asked, lb-bridge. Everything is started with
deadlines (no fixed sleeps) and torn down whatever happened: SIGTERM, wait, SIGKILL, then any
haproxy left behind (found through its pid file and through its command line, which names the
temp dir) is killed by process group. When a test fails, the processes' logs are printed.

Binaries come from LB_AGENT_BIN, LB_BRIDGE_BIN and HAPROXY_BIN, with the build tree as fallback.
A missing binary fails the test with a clear message; it is never a skip.

Only the standard library plus python3-zmq, python3-msgpack and python3-requests (Debian's
/usr/bin/python3) are used.
"""

import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import msgpack
import requests
import zmq

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.path.join(REPO_ROOT, "build")

DEFAULT_BINARIES = {
    "LB_AGENT_BIN": os.path.join(BUILD_DIR, "agent", "lb-agent"),
    "LB_BRIDGE_BIN": os.path.join(BUILD_DIR, "bridge", "lb-bridge"),
    "HAPROXY_BIN": "/usr/sbin/haproxy",
}

BACKEND = "scaling_nodes"
DEAD = "dead"  # the server name that always points at a closed port

# Deadlines (seconds). Generous: the machine is small and shared with parallel tests.
START_TIMEOUT = 30
STATE_TIMEOUT = 30
TRAFFIC_TIMEOUT = 20
STOP_TIMEOUT = 15
# Past this, the watchdog kills the processes so that a hung client call fails (with logs)
# instead of eating the whole ctest timeout.
TEST_WATCHDOG = float(os.environ.get("LB_TEST_WATCHDOG", "150"))


def binary(env_var):
    """The path of a binary under test; raises AssertionError (a test failure) when missing."""
    path = os.environ.get(env_var) or DEFAULT_BINARIES[env_var]
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise AssertionError(
            "%s: binary not found or not executable: %s (set %s, or build it: "
            "cmake --build %s -j2 --target %s)"
            % (env_var, path, env_var, BUILD_DIR, os.path.basename(path)))
    return path


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago (bind to port 0 and read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls `predicate` until it returns a true value (returned) or `timeout` passes.

    `predicate` may raise; the last exception or false value is named in the failure."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - reported below
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s (last: %r)"
                                 % (timeout, what, last))
        time.sleep(interval)


class _NameHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with 200 and the server's name (body and X-Backend header)."""

    protocol_version = "HTTP/1.0"

    def do_GET(self):  # noqa: N802 - http.server's naming
        body = (self.server.backend_name + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", self.server.backend_name)
        self.end_headers()
        self.wfile.write(body)
        with self.server.hits_lock:
            self.server.hits += 1

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        pass


class BackendServer:
    """An HTTP server on 127.0.0.1:<free port> in a thread of this process."""

    def __init__(self, name):
        self.name = name
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NameHandler)
        self.httpd.daemon_threads = True
        self.httpd.backend_name = name
        self.httpd.hits = 0
        self.httpd.hits_lock = threading.Lock()
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.1},
                                       name="backend-" + name, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class ClosedPort:
    """A port that refuses connections for as long as this object lives: bound, never listening
    (so nothing else can take it, and a connect gets RST)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def close(self):
        self.sock.close()


class AgentError(Exception):
    pass


class LbEnv:
    """One load balancer under test. Use through LbTestCase.start_env()."""

    def __init__(self, backends=("alpha", "bravo", "charlie"), initial=("alpha", "bravo", DEAD),
                 bridge=False):
        self.want_bridge = bridge
        self.initial = tuple(initial)
        self.dir = tempfile.mkdtemp(prefix="lbpy-")
        self.haproxy_cfg = os.path.join(self.dir, "haproxy.cfg")
        self.agent_cfg = os.path.join(self.dir, "lb-agent.cfg")
        self.agent_log = os.path.join(self.dir, "lb-agent.log")
        self.bridge_log = os.path.join(self.dir, "lb-bridge.log")
        self.pid_file = os.path.join(self.dir, "haproxy.pid")
        self.master_sock = os.path.join(self.dir, "master.sock")
        self.stats_sock = os.path.join(self.dir, "stats.sock")
        self.endpoint = "ipc://" + os.path.join(self.dir, "cmd.sock")
        self.agent_proc = None
        self.bridge_proc = None
        self.saved_logs = ""
        self._zmq = zmq.Context()
        self._stopped = False
        self._watchdog = None
        self.backends = {}
        self.closed = ClosedPort()
        for name in backends:
            self.backends[name] = BackendServer(name)
        self.frontend_port = free_port()
        self.bridge_port = free_port()
        self.bridge_url = "http://127.0.0.1:%d" % self.bridge_port
        self.frontend_url = "http://127.0.0.1:%d" % self.frontend_port

    # ---- configs -------------------------------------------------------------------------

    def address_of(self, name):
        return self.closed.address if name == DEAD else self.backends[name].address

    def server_lines(self, names, options="check inter 200ms"):
        return "".join("    server %s %s %s\n" % (n, self.address_of(n), options) for n in names)

    def haproxy_config(self, servers, frontend_port=None):
        """A complete haproxy.cfg whose backend `scaling_nodes` holds `servers` (names)."""
        return (
            "global\n"
            "    stats socket %(stats)s mode 600 level admin\n"
            "\n"
            "defaults\n"
            "    mode http\n"
            "    timeout connect 2s\n"
            "    timeout client 10s\n"
            "    timeout server 10s\n"
            "    timeout check 1s\n"
            "\n"
            "frontend fe\n"
            "    bind 127.0.0.1:%(port)d\n"
            "    default_backend %(backend)s\n"
            "\n"
            "backend %(backend)s\n"
            "    balance roundrobin\n"
            "%(servers)s"
        ) % {"stats": self.stats_sock, "port": frontend_port or self.frontend_port,
             "backend": BACKEND, "servers": self.server_lines(servers)}

    def agent_config(self):
        return (
            "[lb-agent]\n"
            "host = 127.0.0.1\n"
            "port = %(bridge_port)d\n"
            "command_endpoint = %(endpoint)s\n"
            "event_endpoint = ipc://%(dir)s/events.sock\n"
            "history_dir = history\n"
            "agent_timeout = 5\n"
            "\n"
            "[haproxy]\n"
            "config_file_path = haproxy.cfg\n"
            "default_backend = %(backend)s\n"
            "socket_path = %(stats)s\n"
            "master_socket = master.sock\n"
            "pid_file = haproxy.pid\n"
            "reload_method = managed\n"
            "haproxy_binary = %(haproxy)s\n"
        ) % {"bridge_port": self.bridge_port, "endpoint": self.endpoint, "backend": BACKEND,
             "dir": self.dir,
             "stats": self.stats_sock, "haproxy": self.haproxy_bin}

    def read_live(self):
        """The live haproxy.cfg, as bytes."""
        with open(self.haproxy_cfg, "rb") as f:
            return f.read()

    # ---- start ---------------------------------------------------------------------------

    def start(self):
        self.agent_bin = binary("LB_AGENT_BIN")
        self.haproxy_bin = binary("HAPROXY_BIN")
        self.bridge_bin = binary("LB_BRIDGE_BIN") if self.want_bridge else None
        with open(self.haproxy_cfg, "w") as f:
            f.write(self.haproxy_config(self.initial))
        with open(self.agent_cfg, "w") as f:
            f.write(self.agent_config())
        self._watchdog = threading.Timer(TEST_WATCHDOG, self._watchdog_fired)
        self._watchdog.daemon = True
        self._watchdog.start()

        self.agent_proc = self._spawn(self.agent_bin, self.agent_log)
        wait_until(lambda: self._alive(self.agent_proc, "lb-agent")
                   and self.call("ping", timeout=1)["ok"],
                   START_TIMEOUT, "lb-agent to answer ping on " + self.endpoint)
        if self.want_bridge:
            self.bridge_proc = self._spawn(self.bridge_bin, self.bridge_log)
            wait_until(lambda: self._alive(self.bridge_proc, "lb-bridge")
                       and requests.get(self.bridge_url + "/healthz", timeout=2).status_code == 200,
                       START_TIMEOUT, "lb-bridge GET /healthz 200 on " + self.bridge_url)
        expected = {n: ("DOWN" if n == DEAD else "UP") for n in self.initial}
        self.wait_server_states(expected)

    def _spawn(self, path, log_path):
        log = open(log_path, "ab")
        try:
            return subprocess.Popen(
                [path, "--config", self.agent_cfg], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, cwd=self.dir)
        finally:
            log.close()

    @staticmethod
    def _alive(proc, name):
        code = proc.poll()
        if code is not None:
            raise AssertionError("%s exited with code %s during start-up" % (name, code))
        return True

    # ---- the agent's command socket (for the fixture's own polling) ----------------------

    def call(self, cmd, args=None, timeout=10):
        """One request on the agent's command socket; returns the decoded reply (a dict)."""
        sock = self._zmq.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
        sock.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        try:
            sock.connect(self.endpoint)
            sock.send(msgpack.packb({"v": 1, "id": "harness", "cmd": cmd, "args": args or {}}))
            try:
                frame = sock.recv()
            except zmq.Again:
                raise AgentError("no answer to %r within %.1f s" % (cmd, timeout)) from None
            return msgpack.unpackb(frame, raw=False)
        finally:
            sock.close()

    def call_ok(self, cmd, args=None, timeout=10):
        reply = self.call(cmd, args, timeout)
        if not reply.get("ok"):
            raise AgentError("%s failed: %r" % (cmd, reply.get("error")))
        return reply["result"]

    def server_states(self):
        """{server name: status} of backend scaling_nodes, from the agent's `status`."""
        result = self.call_ok("status", {"backend": BACKEND}, timeout=5)
        for b in result["backends"]:
            if b["name"] == BACKEND:
                return {s["name"]: s["status"] for s in b["servers"]}
        raise AgentError("status has no backend %s: %r" % (BACKEND, result))

    def wait_server_states(self, expected, timeout=STATE_TIMEOUT):
        """Waits until backend scaling_nodes holds exactly `expected` ({name: status})."""
        return wait_until(lambda: self.server_states() == expected, timeout,
                          "server states %r" % (expected,))

    # ---- traffic through haproxy's frontend ----------------------------------------------

    def fetch(self, port=None):
        """One GET through the frontend: (HTTP status, the answering backend's name)."""
        r = requests.get("http://127.0.0.1:%d/" % (port or self.frontend_port), timeout=3,
                         headers={"Connection": "close"})
        return r.status_code, r.text.strip()

    def wait_traffic_only(self, names, consecutive=12, timeout=TRAFFIC_TIMEOUT, port=None):
        """Waits until `consecutive` GETs in a row through the frontend are all answered 200
        by servers in `names`, and every one of `names` answered at least once in that run.

        A reload hands the listening sockets to a new worker while the old one finishes; this
        polls past that hand-over instead of sleeping. Returns the run's {name: count}."""
        names = set(names)
        history = []

        def run_complete():
            run = {}
            for _ in range(consecutive):
                try:
                    status, who = self.fetch(port)
                except requests.RequestException as e:
                    history.append(repr(e))
                    return False
                history.append((status, who))
                if status != 200 or who not in names:
                    return False
                run[who] = run.get(who, 0) + 1
            return run if set(run) == names else False

        try:
            return wait_until(run_complete, timeout,
                              "%d answers in a row from %s only" % (consecutive, sorted(names)))
        except AssertionError as e:
            raise AssertionError("%s; last answers: %r" % (e, history[-2 * consecutive:])) from None

    # ---- stop ----------------------------------------------------------------------------

    def _watchdog_fired(self):
        sys.stderr.write("\nWATCHDOG: test still running after %.0f s in %s: killing lb-bridge "
                         "and lb-agent so that the test fails instead of hanging\n"
                         % (TEST_WATCHDOG, self.dir))
        for p in (self.bridge_proc, self.agent_proc):
            if p is not None and p.poll() is None:
                p.kill()

    @staticmethod
    def _stop_process(proc, name, notes):
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                notes.append("%s did not exit %d s after SIGTERM: SIGKILL" % (name, STOP_TIMEOUT))
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        notes.append("%s exit code %s" % (name, proc.returncode))

    def _our_haproxy_pids(self):
        """Pids of processes whose command line names this env's temp dir (haproxy left over),
        plus the master pid from the pid file when that process names the temp dir."""
        pids = set()
        candidates = []
        try:
            with open(self.pid_file) as f:
                candidates.append(int(f.read().split()[0]))
        except (OSError, ValueError, IndexError):
            pass
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                candidates.append(int(entry))
        own = {os.getpid()}
        for p in (self.agent_proc, self.bridge_proc):
            if p is not None:
                own.add(p.pid)
        for pid in candidates:
            if pid in own:
                continue
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if self.dir.encode() in cmdline and b"haproxy" in cmdline:
                pids.add(pid)
        return pids

    def _kill_haproxy(self, notes):
        """Kills any haproxy of this env by process group (the agent may have been SIGKILLed,
        or may have failed to stop it)."""
        pids = self._our_haproxy_pids()
        for pid in pids:
            notes.append("haproxy pid %d still running after the agent stopped: SIGKILL" % pid)
            try:
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if pids:
            try:
                wait_until(lambda: not self._our_haproxy_pids(), STOP_TIMEOUT,
                           "haproxy processes to exit")
            except AssertionError as e:
                notes.append(str(e))

    def stop(self):
        """Tears everything down; safe to call more than once and after a failed start."""
        if self._stopped:
            return
        self._stopped = True
        notes = []
        try:
            self._stop_process(self.bridge_proc, "lb-bridge", notes)
            self._stop_process(self.agent_proc, "lb-agent", notes)
        finally:
            self._kill_haproxy(notes)
            if self._watchdog is not None:
                self._watchdog.cancel()
            for b in self.backends.values():
                b.stop()
            self.closed.close()
            self._zmq.term()
            self.saved_logs = self._collect_logs(notes)
            if os.environ.get("LB_KEEP_TMP"):
                sys.stderr.write("LB_KEEP_TMP: kept %s\n" % self.dir)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)

    def _collect_logs(self, notes):
        parts = ["==== %s ====" % self.dir]
        parts += ["teardown: " + n for n in notes]
        for name in ("lb-agent.cfg", "haproxy.cfg", "lb-agent.log", "lb-bridge.log"):
            path = os.path.join(self.dir, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
                parts.append("---- %s ----\n%s" % (name, text.rstrip()))
        return "\n".join(parts) + "\n"


class LbTestCase(unittest.TestCase):
    """Base class: start_env() gives the test its own load balancer, torn down after the test;
    the logs of every env of a failed test are printed on stderr."""

    def start_env(self, **kwargs):
        env = LbEnv(**kwargs)
        self._lb_envs = getattr(self, "_lb_envs", [])
        self._lb_envs.append(env)
        self.addCleanup(env.stop)
        env.start()
        return env

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        self._lb_envs = []
        super().run(result)
        if len(result.failures) + len(result.errors) > before:
            for env in self._lb_envs:
                env.stop()  # no-op when the cleanup already ran
                sys.stderr.write("\n%s: logs of the failed test\n%s" % (self.id(), env.saved_logs))
                sys.stderr.flush()
        return result
