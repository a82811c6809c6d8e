#!/usr/bin/python3
"""fleet_bench: what a fleet push costs, next to doing the same reloads one host at a time.

For each fleet size (default 10, 50, 100) it starts one controller (lb-controller) and that
many real lb-agents in managed mode, each with its own real haproxy, in temp dirs on ipc://
endpoints. Then, each measured --repeat times (the median is printed):

  (s) status     a `status` push (the protocol's other push command) through the controller's
                 control socket: each agent runs `show stat` and acks. The messaging cost.
  (e) refused    `lbctl fleet push --all` of a config each agent's own checks refuse before
                 haproxy -c (its default_backend is missing): messaging plus next to no work.
  (a) unchanged  `lbctl fleet push --all` of the config every agent already has: each agent
                 answers `unchanged`, but only after haproxy -c (the reload pipeline validates
                 before it compares), so this is N validations, not the messaging cost.
  (d) validate   `validate` of a config, one agent after another through each command socket:
                 the work (a) asks of every agent; (d)/cores is (a)'s CPU floor.
  (b) new        `lbctl fleet push --all` of a new config: validate + reload + verify everywhere.
  (c) serial     new configs sent to each agent's own command socket (`reload`), one agent after
                 another: how an HTTP client of the old agent does it. (c)/cores is (b)'s floor
                 on this machine: N validations and reloads need the same CPU in parallel.

A push's time runs from just before the push (lbctl's start, or the control request) to the
moment the controller received the last ack (its `acks` request gives received_ms; same host,
same clock). `lbctl fleet push`'s own wall time is shown in brackets: it polls the controller
for acks every 20 ms and exits at the next poll. Every agent's live sha256 is checked after
(a), (b) and (e).

Every pushed config is the same text for every agent, so its frontend binds one shared port
(haproxy uses SO_REUSEPORT); servers have no health checks.

Usage: /usr/bin/python3 bench/fleet_bench.py [--agent PATH] [--lbctl PATH] [--controller PATH]
                        [--haproxy PATH] [--sizes 10,50,100] [--repeat 3] [--cores N] [--keep]
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - retried until the deadline
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for " + what)
        time.sleep(0.05)


def haproxy_config(port, server, backend_port):
    return ("global\n"
            "    hard-stop-after 10s\n"
            "defaults\n"
            "    mode http\n"
            "    timeout connect 1s\n"
            "    timeout client 10s\n"
            "    timeout server 10s\n"
            "frontend main\n"
            "    bind 127.0.0.1:%d\n"
            "    default_backend scaling_nodes\n"
            "backend scaling_nodes\n"
            "    balance roundrobin\n"
            "    server %s 127.0.0.1:%d\n") % (port, server, backend_port)


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


class Agent:
    def __init__(self, root, index, args, controller):
        self.id = "b%03d" % index
        self.dir = os.path.join(root, self.id)
        os.makedirs(self.dir)
        self.endpoint = "ipc://" + os.path.join(self.dir, "cmd.sock")
        with open(os.path.join(self.dir, "haproxy.cfg"), "w") as f:
            f.write(haproxy_config(free_port(), "web", 9))
        with open(os.path.join(self.dir, "lb-agent.cfg"), "w") as f:
            f.write("[lb-agent]\n"
                    "agent_id = %s\n"
                    "command_endpoint = %s\n"
                    "event_endpoint = ipc://%s/events.sock\n"
                    "history_dir = history\n"
                    "poll_interval = 5\n"
                    "heartbeat_interval = 5\n"
                    "[haproxy]\n"
                    "config_file_path = haproxy.cfg\n"
                    "default_backend = scaling_nodes\n"
                    "master_socket = master.sock\n"
                    "pid_file = haproxy.pid\n"
                    "haproxy_binary = %s\n"
                    "reload_method = managed\n"
                    "[fleet]\n"
                    "controller_pub = %s\n"
                    "controller_router = %s\n"
                    "groups = bench\n"
                    "state_file = fleet-state.json\n"
                    "beacon_timeout = 3\n"
                    % (self.id, self.endpoint, self.dir, args.haproxy, controller.pub,
                       controller.router))
        self.log = open(os.path.join(self.dir, "agent.log"), "ab")
        self.proc = subprocess.Popen([args.agent, "--config", os.path.join(self.dir, "lb-agent.cfg")],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def call(self, ctx, cmd, args=None, timeout=30):
        s = ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
        try:
            s.connect(self.endpoint)
            s.send(msgpack.packb({"v": 1, "id": 1, "cmd": cmd, "args": args or {}}))
            reply = msgpack.unpackb(s.recv(), raw=False)
        finally:
            s.close()
        if not reply["ok"]:
            raise RuntimeError("%s %s: %r" % (self.id, cmd, reply["error"]))
        return reply["result"]

    def ready(self, ctx):
        if self.proc.poll() is not None:
            raise RuntimeError("%s exited: see %s/agent.log" % (self.id, self.dir))
        return self.call(ctx, "info", timeout=2)["haproxy"].get("pid", 0) > 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            with open(os.path.join(self.dir, "haproxy.pid")) as f:
                os.killpg(int(f.read().split()[0]), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass
        self.log.close()


class Controller:
    def __init__(self, root, args):
        self.args = args
        self.pub = "ipc://" + os.path.join(root, "pub.sock")
        self.router = "ipc://" + os.path.join(root, "router.sock")
        self.control = "ipc://" + os.path.join(root, "control.sock")
        self.log = open(os.path.join(root, "controller.log"), "ab")
        cfg = os.path.join(root, "lb-controller.cfg")
        with open(cfg, "w") as f:
            f.write("[controller]\nid = bench\npub = %s\nrouter = %s\ncontrol = %s\n"
                    "state_dir = %s\nbeacon_interval = 0.5\n"
                    % (self.pub, self.router, self.control, os.path.join(root, "state")))
        self.proc = subprocess.Popen(
            [args.controller, "--config", cfg],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def lbctl(self, *words, timeout=300):
        return subprocess.run([self.args.lbctl, "fleet"] + list(words) + ["--control", self.control],
                              capture_output=True, text=True, timeout=timeout)

    def known(self):
        r = self.lbctl("agents", "--json", timeout=10)
        if r.returncode != 0:
            return 0
        report = json.loads(r.stdout)
        agents = report.get("agents", report) if isinstance(report, dict) else report
        return len(agents)

    def control_call(self, ctx, cmd, args):
        """One request on the controller's control socket (what lbctl fleet does)."""
        s = ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVTIMEO, 10000)
        try:
            s.connect(self.control)
            s.send(msgpack.packb({"v": 1, "id": 1, "cmd": cmd, "args": args}))
            reply = msgpack.unpackb(s.recv(), raw=False)
        finally:
            s.close()
        if not reply["ok"]:
            raise RuntimeError("control %s: %r" % (cmd, reply["error"]))
        return reply["result"]

    def last_ack_ms(self, ctx, version, n):
        """Unix ms when the controller received the last of `n` acks of `version`."""
        acks = self.control_call(ctx, "acks", {"versions": [version]})["acks"]
        if len(acks) != n:
            raise RuntimeError("%d acks of version %d, not %d" % (len(acks), version, n))
        return max(a["received_ms"] for a in acks)

    def push(self, ctx, path, expect, want_exit=0):
        """`lbctl fleet push --all`: (its wall time, push to the controller's last ack, report).
        Both times start just before lbctl starts."""
        start = time.monotonic()
        start_unix_ms = time.time() * 1000
        r = self.lbctl("push", path, "--all", "--expect", str(expect), "--timeout", "300",
                       "--json")
        elapsed = (time.monotonic() - start) * 1000
        if r.returncode != want_exit:
            raise RuntimeError("push exited %d:\n%s%s" % (r.returncode, r.stdout, r.stderr))
        report = json.loads(r.stdout)
        last = self.last_ack_ms(ctx, report["final_version"], expect) - start_unix_ms
        return elapsed, last, report

    def push_status(self, ctx, n):
        """A `status` push (the protocol's other command; lbctl has no flag for it) through the
        control socket: push to the controller's last ack, in ms."""
        start_unix_ms = time.time() * 1000
        version = self.control_call(ctx, "push", {"target": {"kind": "all"}, "cmd": "status",
                                             "args": {}})["version"]
        deadline = time.monotonic() + 60
        while True:
            acks = self.control_call(ctx, "acks", {"versions": [version]})["acks"]
            if len(acks) >= n:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("status push: %d of %d acks" % (len(acks), n))
            time.sleep(0.01)
        bad = [a for a in acks if a["outcome"] not in ("applied", "unchanged")]
        if bad:
            raise RuntimeError("status push: %r" % bad[:3])
        return max(a["received_ms"] for a in acks) - start_unix_ms

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def outcomes(report):
    entries = report.get("agents", report.get("results", [])) if isinstance(report, dict) else []
    if isinstance(entries, dict):
        entries = list(entries.values())
    counts = {}
    for e in entries:
        counts[e.get("outcome")] = counts.get(e.get("outcome"), 0) + 1
    return counts


def bench(n, args, ctx):
    root = tempfile.mkdtemp(prefix="lb-fleet-bench-")
    controller = Controller(root, args)
    agents = []
    try:
        t0 = time.monotonic()
        wait_until(lambda: controller.lbctl("agents", timeout=5).returncode == 0, 30,
                   "the controller")
        for i in range(n):
            agents.append(Agent(root, i, args, controller))
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda a: wait_until(lambda: a.ready(ctx), 120, a.id + " ready"),
                          agents))
        wait_until(lambda: controller.known() >= n, 120, "every agent's hello")
        startup = (time.monotonic() - t0) * 1000
        port = free_port()

        def write(tag):
            text = haproxy_config(port, "web-" + tag, 9)
            path = os.path.join(root, "push-%s.cfg" % tag)
            with open(path, "w") as f:
                f.write(text)
            return path, text

        def check_all(text):
            want = sha256(text)
            bad = [a.id for a in agents if a.call(ctx, "get_config")["sha256"] != want]
            if bad:
                raise RuntimeError("not on the pushed config: %s" % bad)

        base_path, base_text = write("base")
        controller.push(ctx, base_path, n)
        check_all(base_text)
        m = {k: [] for k in ("status", "lint", "lint_cli", "unchanged", "unchanged_cli", "new",
                             "new_cli", "serial", "validate")}
        # (s) a status push: messaging plus one `show stat` per agent.
        for r in range(args.repeat):
            m["status"].append(controller.push_status(ctx, n))
        # (e) a config the agents' own checks refuse before haproxy -c (its default_backend is
        # missing): messaging plus next to no work per agent.
        lint_path = os.path.join(root, "push-lint.cfg")
        with open(lint_path, "w") as f:
            f.write(base_text.replace("scaling_nodes", "not_the_default_backend"))
        for r in range(args.repeat):
            cli, last, report = controller.push(ctx, lint_path, n, want_exit=4)
            counts = outcomes(report)
            if counts.get("refused") != n:
                raise RuntimeError("(e) expected %d refused, got %r" % (n, counts))
            m["lint"].append(last)
            m["lint_cli"].append(cli)
        check_all(base_text)
        # (a) the config every agent already has.
        for r in range(args.repeat):
            cli, last, report = controller.push(ctx, base_path, n)
            counts = outcomes(report)
            if counts.get("unchanged") != n:
                raise RuntimeError("(a) expected %d unchanged, got %r" % (n, counts))
            m["unchanged"].append(last)
            m["unchanged_cli"].append(cli)
        # (b) a new config.
        for r in range(args.repeat):
            path, text = write("new-%d" % r)
            cli, last, report = controller.push(ctx, path, n)
            counts = outcomes(report)
            if counts.get("applied") != n:
                raise RuntimeError("(b) expected %d applied, got %r" % (n, counts))
            check_all(text)
            m["new"].append(last)
            m["new_cli"].append(cli)
        # (c) new configs, one agent after another through its command socket.
        for r in range(args.repeat):
            text = haproxy_config(port, "web-serial-%d" % r, 9)
            start = time.monotonic()
            for a in agents:
                result = a.call(ctx, "reload", {"config": text}, timeout=60)
                if result["outcome"] != "applied":
                    raise RuntimeError("(c) %s: %r" % (a.id, result))
            m["serial"].append((time.monotonic() - start) * 1000)
        # (d) what (a) asks of every agent, one agent after another: `validate` of the config
        # it already has (an unchanged reload runs every check, haproxy -c included).
        for r in range(args.repeat):
            start = time.monotonic()
            for a in agents:
                a.call(ctx, "validate", {"config": text}, timeout=60)
            m["validate"].append((time.monotonic() - start) * 1000)
        m["n"] = n
        m["startup_ms"] = startup
        return m
    finally:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda a: a.stop(), agents))
        controller.stop()
        if args.keep:
            sys.stderr.write("kept %s\n" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--agent", default=os.path.join(REPO, "build", "agent", "lb-agent"))
    p.add_argument("--lbctl", default=os.path.join(REPO, "build", "cli", "lbctl"))
    p.add_argument("--controller",
                   default=os.path.join(REPO, "build", "controller", "lb-controller"))
    p.add_argument("--haproxy", default="/usr/sbin/haproxy")
    p.add_argument("--sizes", default="10,50,100")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cores", type=int, default=os.cpu_count())
    p.add_argument("--keep", action="store_true", help="keep the temp dirs")
    args = p.parse_args()
    for path in (args.agent, args.lbctl, args.controller, args.haproxy):
        if not os.access(path, os.X_OK):
            sys.exit("not executable: %s" % path)
    ctx = zmq.Context()
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        sys.stderr.write("fleet of %d agents...\n" % n)
        rows.append(bench(n, args, ctx))
    med = statistics.median
    print("Fleet push: from the push to the controller's last ack (lbctl fleet push's own wall "
          "time,\nwhich polls acks every 20 ms, in brackets); median of %d runs, %d cores, ms."
          % (args.repeat, args.cores))
    head = ("agents", "(s) status", "(e) refused", "(a) unchanged", "(d) serial", "(a)/",
            "(b) new", "(c) serial", "(c)/cores", "(b)/")
    sub = ("", "push", "early", "push", "validate", "((d)/cores)", "push", "reloads", "floor",
           "((c)/cores)")
    fmt = "%6s %10s %13s %15s %10s %11s %15s %10s %9s %11s"
    print(fmt % head)
    print(fmt % sub)
    for r in rows:
        a, b, c, d = med(r["unchanged"]), med(r["new"]), med(r["serial"]), med(r["validate"])
        print(fmt % (r["n"], "%.0f" % med(r["status"]),
                     "%.0f [%.0f]" % (med(r["lint"]), med(r["lint_cli"])),
                     "%.0f [%.0f]" % (a, med(r["unchanged_cli"])), "%.0f" % d,
                     "%.2f" % (a / (d / args.cores)),
                     "%.0f [%.0f]" % (b, med(r["new_cli"])), "%.0f" % c,
                     "%.0f" % (c / args.cores), "%.2f" % (b / (c / args.cores))))
    print("raw (ms):")
    for r in rows:
        print("  %d agents (started and all said hello in %.1f s): %s" % (
            r["n"], r["startup_ms"] / 1000,
            " ".join("%s=%s" % (k, [round(x) for x in r[k]])
                     for k in ("status", "lint", "lint_cli", "unchanged", "unchanged_cli", "new",
                               "new_cli", "serial", "validate"))))

if __name__ == "__main__":
    main()
