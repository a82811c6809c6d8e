"""The 2015 lb-agent's clients, unchanged, against lb-bridge + lb-agent + a real haproxy.

The calls are written exactly as the 2015 README writes them: `requests.post(url, data=...)`
with no Content-Type, no timeout, then `.json()` and `["success"]`, `["message"]`/`["error"]`.
Each test runs its own load balancer (harness.LbEnv with bridge=True).
"""

import os
import pwd
import unittest

import requests

import harness
from harness import BACKEND, DEAD

UP_TO_DATE = "Load Balancer up to date"

# The 2015 README's HAPROXY_TEMPLATE, verbatim (written for haproxy 1.5).
README_HAPROXY_TEMPLATE = """\
global
    log         127.0.0.1 local2
    chroot      /var/lib/haproxy
    pidfile     /var/run/haproxy.pid
    maxconn     4000
    user        haproxy
    group       haproxy
    daemon

    stats socket /var/lib/haproxy/stats

defaults
    mode                    http
    log                     global
    option                  httplog
    option                  dontlognull
    option http-server-close
    option forwardfor       except 127.0.0.0/8
    option                  redispatch
    retries                 3
    timeout http-request    10s
    timeout queue           1m
    timeout connect         10s
    timeout client          1m
    timeout server          1m
    timeout http-keep-alive 10s
    timeout check           10s
    maxconn                 300


frontend  main *:5000
    default_backend             scaling_nodes


#---------------------------------------------------------------------
# round robin balancing between the various backends
#---------------------------------------------------------------------
backend scaling_nodes
    balance     roundrobin
"""


def readme_config(env, port, addresses, bind_line):
    """The README's template and server lines (its own join), adapted only in the frontend
    port, the stats socket path and the server addresses.

    With bind_line, the frontend's address moves to a `bind` line: haproxy 2.x no longer
    accepts an address on the `frontend` line itself (haproxy 1.5's syntax, which the README
    used); everything else stays as the README wrote it."""
    template = README_HAPROXY_TEMPLATE.replace(
        "stats socket /var/lib/haproxy/stats", "stats socket " + env.stats_sock)
    if bind_line:
        template = template.replace("frontend  main *:5000\n",
                                    "frontend  main\n    bind *:%d\n" % port)
    else:
        template = template.replace("frontend  main *:5000\n", "frontend  main *:%d\n" % port)
    node1, node2, node3 = addresses
    return '\n'.join([template,
                      'server  node1 %s check' % node1,
                      'server  node2 %s check' % node2,
                      'server  node3 %s check' % node3,
                      '\n'])


class LegacyClientsTest(harness.LbTestCase):

    def setUp(self):
        self.env = self.start_env(bridge=True)
        self.url = self.env.bridge_url

    # ---- /getBackends ----------------------------------------------------------------------

    def assert_initial_backends(self, message):
        self.assertIsInstance(message, list)
        servers = {}
        for entry in message:
            for key in ("instance_id", "state", "description"):
                self.assertIn(key, entry)
            servers[entry["instance_id"]] = entry
        self.assertEqual(set(servers), {"alpha", "bravo", DEAD})
        self.assertEqual(servers["alpha"]["state"], "UP")
        self.assertEqual(servers["bravo"]["state"], "UP")
        self.assertEqual(servers[DEAD]["state"], "DOWN")
        for entry in message:
            self.assertTrue(entry["description"] is None or isinstance(entry["description"], str),
                            entry)
        # The failed check's explanation (last_chk) is the DOWN server's description.
        self.assertIsInstance(servers[DEAD]["description"], str)
        self.assertIn("refused", servers[DEAD]["description"].lower())

    def test_get_backends_lists_servers_up_and_down(self):
        resp = requests.post(self.url + '/getBackends')
        self.assertEqual(resp.status_code, 200, resp.text)
        body = resp.json()
        self.assertIs(body["success"], True, body)
        self.assert_initial_backends(body["message"])

    def test_get_backends_with_readme_body_and_by_get(self):
        # The README's own example posts the template to /getBackends: the body is ignored.
        before = self.env.read_live()
        template = readme_config(self.env, harness.free_port("0.0.0.0"),
                                 [self.env.address_of(n) for n in ("alpha", "bravo", "charlie")],
                                 bind_line=True)
        body = requests.post(self.url + '/getBackends', data=template).json()
        self.assertIs(body["success"], True, body)
        self.assert_initial_backends(body["message"])
        self.assertEqual(self.env.read_live(), before)
        # GET is served too.
        body = requests.get(self.url + '/getBackends').json()
        self.assertIs(body["success"], True, body)
        self.assert_initial_backends(body["message"])

    # ---- /reloadHaproxy and /reload ---------------------------------------------------------

    def legacy_states(self):
        body = requests.post(self.url + '/getBackends').json()
        self.assertIs(body["success"], True, body)
        return {e["instance_id"]: e["state"] for e in body["message"]}

    def reload_and_check_traffic(self, route, new_servers):
        config = self.env.haproxy_config(new_servers)
        resp = requests.post(self.url + route, data=config)
        self.assertEqual(resp.status_code, 200, resp.text)
        body = resp.json()
        self.assertIs(body["success"], True, body)
        self.assertEqual(body["message"], UP_TO_DATE)
        self.assertEqual(self.env.read_live(), config.encode())
        # haproxy now sends the traffic to the new server set only.
        self.env.wait_traffic_only(new_servers)
        # /getBackends lists the new servers; a server not checked yet since the reload may
        # show a transitional state ("UP 1/3") for a moment, so poll until every one is UP.
        expected = {name: "UP" for name in new_servers}
        harness.wait_until(lambda: self.legacy_states() == expected, harness.STATE_TIMEOUT,
                           "/getBackends to list %r" % (expected,))

    def test_reload_haproxy_applies_config_and_traffic_follows(self):
        # charlie was not in the old config: all answers from charlie prove the switch.
        self.reload_and_check_traffic('/reloadHaproxy', ["charlie"])

    def test_reload_applies_config_and_traffic_follows(self):
        # alpha was in the old config and is not in the new one.
        self.reload_and_check_traffic('/reload', ["bravo", "charlie"])

    def test_readme_template_with_chroot_via_reload_haproxy(self):
        port = harness.free_port("0.0.0.0")
        nodes = ("alpha", "bravo", "charlie")
        config = readme_config(self.env, port, [self.env.address_of(n) for n in nodes],
                               bind_line=True)
        before = self.env.read_live()
        resp = requests.post(self.url + '/reloadHaproxy', data=config)
        body = resp.json()
        if os.geteuid() == 0:
            # chroot/user/group work when haproxy starts as root: the config is applied.
            self.assertEqual(resp.status_code, 200, body)
            self.assertIs(body["success"], True, body)
            self.assertEqual(body["message"], UP_TO_DATE)
            self.assertEqual(self.env.read_live(), config.encode())
            # The new worker really runs chrooted, as user haproxy.
            worker = self.env.call_ok("info")["haproxy"]["pid"]
            self.assertEqual(os.readlink("/proc/%d/root" % worker), "/var/lib/haproxy")
            with open("/proc/%d/status" % worker) as f:
                uids = [line.split()[1:] for line in f if line.startswith("Uid:")][0]
            self.assertEqual({int(u) for u in uids}, {pwd.getpwnam("haproxy").pw_uid})
            answers = self.env.wait_traffic_only(set(nodes), port=port)
            self.assertEqual(set(answers), set(nodes))
            expected = {"node1": "UP", "node2": "UP", "node3": "UP"}
            harness.wait_until(lambda: self.legacy_states() == expected, harness.STATE_TIMEOUT,
                               "/getBackends to list %r" % (expected,))
        else:
            # Not root: haproxy could not chroot; the agent refuses and says why.
            self.assertEqual(resp.status_code, 422, body)
            self.assertIs(body["success"], False, body)
            self.assertIn("chroot", body["error"])
            self.assertEqual(self.env.read_live(), before)

    def test_readme_template_verbatim_frontend_line_is_refused_with_haproxys_complaint(self):
        # Adapted only in ports, socket path and addresses: `frontend main *:<port>` is
        # haproxy 1.5 syntax that haproxy 2.x rejects. A 2015 client sending it learns why.
        before = self.env.read_live()
        config = readme_config(self.env, harness.free_port("0.0.0.0"),
                               [self.env.address_of(n) for n in ("alpha", "bravo", "charlie")],
                               bind_line=False)
        resp = requests.post(self.url + '/reloadHaproxy', data=config)
        body = resp.json()
        self.assertEqual(resp.status_code, 422, body)
        self.assertIs(body["success"], False, body)
        self.assertEqual(body.get("code"), "invalid_config", body)
        self.assertIn("bind", body["error"])
        self.assertEqual(self.env.read_live(), before)

    def test_invalid_config_is_refused_with_422_and_live_file_untouched(self):
        before = self.env.read_live()
        config = self.env.haproxy_config(["charlie"]).replace(
            "    balance roundrobin\n", "    balance roundrobin\n    no_such_keyword 42\n")
        for route in ('/reloadHaproxy', '/reload'):
            with self.subTest(route=route):
                resp = requests.post(self.url + route, data=config)
                body = resp.json()
                self.assertEqual(resp.status_code, 422, body)
                self.assertIs(body["success"], False, body)
                self.assertEqual(body.get("code"), "invalid_config", body)
                # haproxy's own complaint names the offending keyword.
                self.assertIn("no_such_keyword", body["error"])
                self.assertEqual(self.env.read_live(), before)
        # haproxy still serves the old server set.
        self.env.wait_traffic_only({"alpha", "bravo"})


if __name__ == "__main__":
    unittest.main()
