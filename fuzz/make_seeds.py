#!/usr/bin/python3
"""Writes the seed corpus of fuzz/corpus/ (run once by a person; scripts/fuzz only reads it).

  /usr/bin/python3 fuzz/make_seeds.py

Seeds are real inputs: frames of real requests and replies encoded with python3-msgpack the way
lb-agent's codec encodes them, the answers of a real haproxy 2.6 (started here in a temporary
directory, stats and master sockets only, no TCP port), lb-agent.cfg files from etc/, HTTP
bodies the 2015 clients send, CURVE allow-lists made with pyzmq.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
HAPROXY_CFG = open(os.path.join(ROOT, "etc", "demo", "haproxy.cfg")).read()


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def command_frames():
    def req(cmd, args=None, id_=1):
        return msgpack.packb({"v": 1, "id": id_, "cmd": cmd, "args": args or {}})

    write("command_frame", "ping", req("ping"))
    write("command_frame", "status", req("status", {"backend": "scaling_nodes"}, "c-7"))
    write("command_frame", "status_all", req("status", {"backend": "*"}))
    write("command_frame", "info", req("info", id_=None))
    write("command_frame", "get_config", req("get_config", id_=[1, "x"]))
    write("command_frame", "reload", req("reload", {"config": HAPROXY_CFG}))
    write("command_frame", "reload_force",
          req("reload", {"config": HAPROXY_CFG, "force": True, "expect_sha256": "ab" * 32}, 42))
    write("command_frame", "validate_latin1",
          msgpack.packb({"v": 1, "id": 3, "cmd": "validate",
                         "args": {"config": b"# caf\xe9\n" + HAPROXY_CFG.encode()}},
                        use_bin_type=True))
    write("command_frame", "reply_ok",
          msgpack.packb({"v": 1, "id": 1, "ok": True,
                         "result": {"outcome": "applied", "sha256": "cd" * 32,
                                    "warnings": [], "total_ms": 104.5}}))
    write("command_frame", "reply_error",
          msgpack.packb({"v": 1, "id": 1, "ok": False,
                         "error": {"code": "invalid_config", "message": "haproxy -c refused it",
                                   "details": {"lines": ["[ALERT] parsing [x:3]"]}}}))
    write("command_frame", "negative_ints",
          msgpack.packb({"v": 1, "id": -2**63, "cmd": "status", "args": {"n": 2**64 - 1}}))


def fleet_frames():
    """Every fleet message (proto/fleet.h), as the agent, lb-controller and lbctl read them."""
    web = {"kind": "group", "name": "web"}
    ack = {"agent": "lb-1", "version": 7, "outcome": "refused",
           "error": {"code": "invalid_config", "message": "[ALERT] line 3"},
           "sha256": "ab" * 32, "total_ms": 88}
    seeds = {
        "fleet_push": {"v": 1, "type": "push", "controller": "ctl-1", "version": 7,
                       "target": web, "cmd": "reload",
                       "args": {"config": HAPROXY_CFG, "force": True}},
        "fleet_beacon": {"v": 1, "type": "beacon", "controller": "ctl-1", "latest": 7,
                         "ts_ms": 1700000000000},
        "fleet_uptodate": {"v": 1, "type": "uptodate", "controller": "ctl-1", "latest": 6},
        "fleet_hello": {"v": 1, "type": "hello", "agent": "lb-1", "groups": ["web", "eu"],
                        "sha256": "cd" * 32, "applied_version": 6, "synced_version": 6,
                        "completed_version": 6, "hello_interval_ms": 5000},
        "fleet_ack": dict({"v": 1, "type": "ack"}, **ack),
        "fleet_push_request": {"target": web, "cmd": "reload", "args": {"config": HAPROXY_CFG},
                               "desired": "always", "allow_no_match": True},
        "fleet_agents_result": {"controller": "ctl-1", "latest": 7, "now_ms": 1700000000500,
                                "agents": [{"agent": "lb-1", "groups": ["web"],
                                            "sha256": "cd" * 32, "applied_version": 7,
                                            "synced_version": 7, "desired_version": 6,
                                            "first_seen_ms": 1, "last_seen_ms": 2,
                                            "last_hello_ms": 2, "liveness": "alive",
                                            "hello_interval_ms": 5000,
                                            "last_ack": dict(ack, received_ms=3),
                                            "curve_key": "", "refused_messages": 0,
                                            "refused_key": ""}],
                                "targets": [{"target": web, "key": "group/web",
                                             "desired_version": 6,
                                             "desired_because": "applied",
                                             "pending_version": 0, "rejected_version": 7}]},
        "fleet_acks_result": {"latest": 7, "acks": [dict(ack, received_ms=3)]},
    }
    for name, message in seeds.items():
        write("command_frame", name, msgpack.packb(message))


def haproxy_answers():
    d = tempfile.mkdtemp(prefix="lb-fuzz-seeds.")
    cfg = f"""global
    stats socket {d}/stats.sock mode 600 level admin
    server-state-file {d}/server-state
    hard-stop-after 5s

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    timeout check 1s
    load-server-state-from-file global

frontend main
    bind unix@{d}/fe.sock
    default_backend scaling_nodes

backend scaling_nodes
    balance roundrobin
    server i-node1 127.0.0.1:1 check inter 200ms
    server i-node2 127.0.0.1:2 check inter 200ms weight 50
    server i-backup 127.0.0.1:3 backup
    server maint 127.0.0.1:4 disabled

backend api
    server api1 [::1]:5 check inter 200ms
    server api2 127.0.0.1:6
"""
    with open(os.path.join(d, "haproxy.cfg"), "w") as f:
        f.write(cfg)
    proc = subprocess.Popen(["haproxy", "-W", "-db", "-S", f"{d}/master.sock", "-f",
                             f"{d}/haproxy.cfg"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def ask(sock, command):
        deadline = time.monotonic() + 5
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(5)
                s.connect(os.path.join(d, sock))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        s.sendall(command.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk

    try:
        ask("stats.sock", "show info")
        time.sleep(1)  # a few health checks fail, so that check columns are filled
        stat = ask("stats.sock", "show stat")
        write("show_stat", "haproxy-2.6", stat)
        write("show_stat", "cut_short", stat[: len(stat) // 2])
        write("show_stat", "crlf", stat.replace(b"\n", b"\r\n"))
        write("show_stat", "typed_header_only", stat.split(b"\n")[0] + b"\n\n")
        write("show_info", "haproxy-2.6", ask("stats.sock", "show info"))
        write("show_info", "cut_short", ask("stats.sock", "show info")[:300])
        # A `show servers state` also seeds the CSV parser as a wrong answer.
        state = ask("stats.sock", "show servers state")
        write("show_stat", "servers_state_instead", state)
        write("servers_state", "haproxy-2.6", state)
        write("servers_state", "cut_short", state[: len(state) - 7])
        write("servers_state", "one_backend", ask("stats.sock", "show servers state api"))
        # An operator's hand: MAINT, DRAIN, a weight; a dynamic server added at runtime.
        ask("stats.sock", "set server scaling_nodes/i-node1 state maint")
        ask("stats.sock", "set server scaling_nodes/i-node2 state drain")
        ask("stats.sock", "set server scaling_nodes/i-backup weight 7")
        ask("stats.sock", "add server api/dyn 127.0.0.1:7 weight 3 enabled")
        write("servers_state", "operator_changes", ask("stats.sock", "show servers state"))
        write("servers_state", "conns", ask("stats.sock", "show servers conn scaling_nodes"))
        write("show_proc", "haproxy-2.6", ask("master.sock", "show proc"))
        ask("master.sock", "reload")
        time.sleep(1)
        write("show_proc", "after_reload", ask("master.sock", "show proc"))
        write("show_proc", "error", ask("master.sock", "show pro"))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        shutil.rmtree(d, ignore_errors=True)


def quoted_show_stat():
    """A `show stat` whose last_agt haproxy quotes: an agent check answers a description with a
    comma and double quotes, which haproxy 2.6 prints as "via agent : up (say ""hi"", ok)"."""
    import threading
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    agent_port = listener.getsockname()[1]

    def agent():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b'up #say "hi", ok\n')

    threading.Thread(target=agent, daemon=True).start()
    d = tempfile.mkdtemp(prefix="lb-fuzz-seeds.")
    cfg = f"""global
    stats socket {d}/stats.sock mode 600 level admin

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    timeout check 1s

frontend main
    bind unix@{d}/fe.sock
    default_backend scaling_nodes

backend scaling_nodes
    server node1 127.0.0.1:1 agent-check agent-port {agent_port} agent-inter 100ms
    server node2 127.0.0.1:2 check inter 200ms
"""
    with open(os.path.join(d, "haproxy.cfg"), "w") as f:
        f.write(cfg)
    proc = subprocess.Popen(["haproxy", "-W", "-db", "-S", f"{d}/master.sock", "-f",
                             f"{d}/haproxy.cfg"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(5)
                s.connect(os.path.join(d, "stats.sock"))
                s.sendall(b"show stat\n")
                s.shutdown(socket.SHUT_WR)
                stat = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    stat += chunk
                s.close()
            except OSError:
                stat = b""
            if b'""hi""' in stat:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("haproxy never printed the agent's quoted description")
            time.sleep(0.05)
        write("show_stat", "quoted_last_agt", stat)
        # The same answer cut inside the quoted field: the record must be dropped, not shifted.
        write("show_stat", "quoted_cut_inside_quotes", stat[: stat.index(b'""hi""') + 3])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        listener.close()
        shutil.rmtree(d, ignore_errors=True)


def settings_files():
    for name, path in [("etc_lb-agent.cfg", "etc/lb-agent.cfg"),
                       ("demo_lb-agent.cfg", "etc/demo/lb-agent.cfg"),
                       ("supervisord_lb-agent.ini", "etc/supervisord.d/lb-agent.ini")]:
        text = open(os.path.join(ROOT, path), "rb").read()
        write("ini", name, text)
        write("settings", name, text)
    write("settings", "legacy_2015.cfg",
          "[lb-agent]\nhost = 0.0.0.0\nport = 6666\n\n[haproxy]\n"
          "config_file_path = /etc/haproxy/haproxy.cfg\nreload_method = systemd\n"
          "systemd_service_name = haproxy\ndefault_backend = scaling_nodes\n")
    write("ini", "continuation", "[a]\nkey = one\n  two ; comment\nk2: v\n\n[B]\nKEY=x\r\n")


def http_requests():
    write("http_request", "get", "GET /getBackends?backend=web&force=1 HTTP/1.1\r\nHost: x\r\n"
          "Accept: */*\r\n\r\n")
    write("http_request", "post_lf", "POST /reload HTTP/1.0\nContent-Length: 3\n\nabc")
    write("http_request", "encoded", "GET /v1/backends/a%2Fb%20c?topic=x+y&e HTTP/1.1\r\n\r\n")
    write("http_request", "multipart",
          "POST /reload HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=\"xyz\"\r\n\r\n"
          "--xyz\r\nContent-Disposition: form-data; name=\"config\"; filename=\"h.cfg\"\r\n"
          "Content-Type: text/plain\r\n\r\n" + HAPROXY_CFG + "\r\n--xyz--\r\n")
    write("http_request", "folded", "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n")


def bridge_bodies():
    write("bridge_body", "raw_no_type", "\n" + HAPROXY_CFG)
    write("bridge_body", "raw_text_plain", "text/plain; charset=utf-8\n" + HAPROXY_CFG)
    write("bridge_body", "form_raw",
          "application/x-www-form-urlencoded\n" + HAPROXY_CFG)  # curl --data-binary @file
    write("bridge_body", "form_field",
          "application/x-www-form-urlencoded\nforce=true&config=global%0A++maxconn+100%0A"
          "&x=%zz")
    import json
    write("bridge_body", "json", "application/json\n" + json.dumps({"config": HAPROXY_CFG}))
    write("bridge_body", "json_wrong", "Application/JSON ; charset=utf-8\n[\"config\"]")
    write("bridge_body", "multipart",
          "multipart/form-data; boundary=xyz\nconfig\0" + HAPROXY_CFG + "\0force\0true")
    write("bridge_body", "multipart_no_config", "multipart/form-data; boundary=x\nfile\0abc")


def haproxy_configs():
    write("haproxy_config", "demo.cfg", HAPROXY_CFG)
    # Server lines the runtime planner reads (the fuzz target plans from demo.cfg to the input).
    write("haproxy_config", "servers.cfg",
          HAPROXY_CFG + "\nbackend more\n    balance leastconn\n    default-server inter 2s\n"
          "    server m1 [::1]:8080 check weight 3 backup\n    server m2 ipv4@10.0.0.2:80 disabled\n"
          "    server-template t 2-4 app.example.com:80 check\n"
          ".if defined(HAPROXY_LOCALPEER)\n    server m3 10.0.0.3:80 track more/m1\n.endif\n"
          "    use-server m1 if { src 10.0.0.0/8 }\n    stick-table type ip size 1k\n")
    write("haproxy_config", "service.cfg",
          "global\n    daemon\n    chroot /var/lib/haproxy\n    user haproxy\n    group haproxy\n"
          "    pidfile /run/haproxy.pid\n    stats socket /run/haproxy/admin.sock mode 660 level admin\n"
          "    server-state-base /var/lib/haproxy\n    server-state-file state\n\n"
          "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1m\n"
          "    timeout server 1m\n\nlisten db\n    bind :3306\n"
          "    server-template db 3 10.0.0.1:3306 check\n")
    write("haproxy_config", "code_directives.cfg",
          "global\n    lua-load /etc/haproxy/x.lua\n    \"lua\"-load-per-thread 'a b.lua'\n"
          "    insecure-fork-wanted\n    setenv LD_PRELOAD /tmp/x.so\n"
          "    \"${CMD}\" arg # comment \\# not\n\n"
          "backend scaling_nodes\n    option external-check\n"
          "    external-check command /bin/true\n    server a 127.0.0.1:80 check\n\n"
          "program logger\n    command /usr/bin/logger -t haproxy\n")
    # Every kind of path the policy reads (config_paths.cc), inside and outside /etc/haproxy.
    write("haproxy_config", "paths.cfg",
          "global\n    chroot /var/lib/haproxy\n    pidfile /run/haproxy.pid\n"
          "    crt-base /etc/ssl/private\n    ca-base ../ssl/certs\n"
          "    server-state-file /etc/passwd\n    stats socket ipv4@127.0.0.1:9999\n"
          "    stats socket /run/haproxy/admin.sock mode 600 level admin\n"
          "    log /dev/log local0\n    log unix@/tmp/log.sock local1\n"
          "    lua-prepend-path /usr/share/haproxy/?.lua\n\n"
          "frontend f\n    bind :443 ssl crt site.pem ca-file ca.pem crt-list /etc/haproxy/l.txt\n"
          "    bind /run/haproxy/f.sock\n    acl bad src -f /etc/haproxy/bad.lst -f ../../etc/shadow\n"
          "    http-request set-var(txn.x) src,map_ip(/etc/haproxy/x.map)\n"
          "    http-request set-map(/etc/haproxy/m.map) %[src] 1\n"
          "    http-request return status 200 file \"${HOME}/x\"\n"
          "    filter spoe engine e config /etc/shadow\n    errorfile 503 /etc/haproxy/errors/503.http\n"
          "    default_backend b\n\nbackend b\n    server s1 /run/haproxy/app.sock\n"
          "    server s2 unix@app2.sock\n    server s3 10.0.0.1:80 ssl ca-file /etc/ssl/certs/ca.pem\n")
    write("haproxy_config", "escapes.cfg",
          "frontend f\r\n    bind 127.0.0.1:80\n    http-request set-header X \"a\\x41\\ b\\t\"\n"
          "    default_backend\n.if defined(X)\n  lua-load x\n.endif\n")


def many_values():
    """Frames near and beyond the agent's object-count limit (10,000 msgpack values)."""
    write("command_frame", "values_9000",
          msgpack.packb({"v": 1, "id": 1, "cmd": "reload", "args": {"x": [None] * 9000}}))
    write("command_frame", "values_12000_nested",
          msgpack.packb({"v": 1, "id": 2, "cmd": "status",
                         "args": {"x": [[0] * 100 for _ in range(120)]}}))


def bridge_access():
    token = "3f9a1c0be5d24e7f8a6b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f"
    other = "ops-team-token-0123456789"
    tokens = f"# lb-bridge tokens (one per line)\n{token}\n  {other}  \r\n\n"
    write("bridge_access", "token_reload",
          f"{tokens}\0POST /reload\nAuthorization: Bearer {token}\nContent-Type: text/plain\n")
    write("bridge_access", "token_wrong",
          f"{tokens}\0POST /reloadHaproxy\nAuthorization: bearer  {token[:-1]}x \n")
    write("bridge_access", "healthz_no_token", f"{tokens}\0GET /healthz\n")
    write("bridge_access", "events_no_token", f"{tokens}\0GET /events?topic=server/\n")
    write("bridge_access", "status_page_no_token", f"{tokens}\0GET /\n")
    write("bridge_access", "status_data_no_token", f"{tokens}\0GET /ui/status\n")
    write("bridge_access", "form_post_cross_site",
          "\0POST /reloadHaproxy\nOrigin: https://evil.example\n"
          "Content-Type: application/x-www-form-urlencoded\nSec-Fetch-Site: cross-site\n")
    write("bridge_access", "xhr", "\0POST /reload\nX-Requested-With: XMLHttpRequest\n"
          "Content-Type: text/plain;charset=UTF-8\nOrigin: http://127.0.0.1:6666\n")
    write("bridge_access", "python_requests",
          "\0POST /reloadHaproxy\nUser-Agent: python-requests/2.28.1\nAccept: */*\n")
    write("bridge_access", "json_type", "\0POST /reload\nContent-Type: application/json\n")
    write("bridge_access", "get_backends_post", "\0POST /getBackends\nOrigin: https://x\n")
    write("bridge_access", "short_token", "short\n\0GET /getBackends\n")
    write("bridge_access", "token_with_space", "abcdefgh ijklmnopqrstu\n\0GET /healthz\n")


def allow_lists():
    keys = [zmq.curve_keypair()[0].decode() for _ in range(3)]
    write("allow_list", "keys", f"# lbctl on ops-1\n{keys[0]} ops-1\n{keys[1]}\tbridge\n\n")
    write("allow_list", "zcert_public",
          "#   ****  Generated on 2024-05-01 by lbctl keygen  ****\n"
          "#   ZeroMQ CURVE Public Certificate\n"
          "#   Exchange securely, or use a secure mechanism to verify the contents\n"
          "#   of this file after exchange. Store public certificates in your home\n"
          "#   directory, in the .curve subdirectory.\n\n"
          "metadata\n    name = \"bridge\"\ncurve\n"
          f"    public-key = \"{keys[2]}\"\n")
    write("allow_list", "secret_refused",
          f"curve\n    public-key = \"{keys[0]}\"\n    secret-key = \"{keys[1]}\"\n")
    write("allow_list", "bad_key", "not-a-key\n")


if __name__ == "__main__":
    http_requests()
    command_frames()
    many_values()
    fleet_frames()
    haproxy_answers()
    quoted_show_stat()
    settings_files()
    haproxy_configs()
    bridge_bodies()
    bridge_access()
    allow_lists()
    print("seeds written to", CORPUS, file=sys.stderr)
