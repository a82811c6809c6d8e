// A headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core, for
// status_page_test.py. The test sends one JSON command per line on stdin; each answer is one JSON
// line on stdout ({"ok": true, ...} or {"ok": false, "error": ...}). The browser's console
// messages, page errors and requests that failed go to stderr, and the ones that matter
// (errors, CSP violations) are also kept for the "problems" command.
//
// Commands:
//   {"cmd": "open", "url"}                       a new page at `url`; counts its navigations
//   {"cmd": "wait_state", "backend", "server", "state", "timeout_ms"}
//        waits until the server's row shows `state`; answers {"at_ms"}: the page's Date.now()
//        when it was seen (polled every 10 ms)
//   {"cmd": "rows"}                              every server row: {backend, server, state, ...}
//   {"cmd": "summary"}                           the sha256, last reload and error texts, the
//                                                stream's state, whether the token form shows
//   {"cmd": "navigations"}                       main-frame navigations since open, and whether the
//                                                marker set on the window at open is still there
//   {"cmd": "probe"}                             whether anything injected by haproxy text ran
//   {"cmd": "screenshot", "path", "width", "height"}  the whole page at that viewport; answers
//                                                {"scroll_width"} (wider than `width`: it overflows)
//   {"cmd": "enter_token", "token"}              types the token into the page's form, submits
//   {"cmd": "problems"}                          console errors and page errors so far
//   {"cmd": "quit"}
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const readline = require("readline");

const modules = process.env.LB_NODE_MODULES;
if (!modules) throw new Error("LB_NODE_MODULES is not set (run.sh sets it after npm ci)");
const { chromium } = require(path.join(modules, "playwright-core"));

const CHROMIUM = "/usr/bin/chromium";

let context = null;
let page = null;
let profile = null;
let navigations = 0;
const problems = [];

function log(...args) {
  process.stderr.write("[browser] " + args.join(" ") + "\n");
}

async function open({ url }) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(CHROMIUM + " not found: install Debian's chromium (scripts/deps does)");
  }
  profile = fs.mkdtempSync(path.join(os.tmpdir(), "lb-chromium-"));
  // A persistent context on a fresh profile directory: playwright passes it to Chromium as
  // --user-data-dir (it refuses that flag in `args`).
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60000,
    viewport: { width: 1280, height: 800 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  page = context.pages()[0] || await context.newPage();
  page.on("console", (message) => {
    log("console." + message.type() + ":", message.text());
    if (message.type() === "error") problems.push("console: " + message.text());
  });
  page.on("pageerror", (error) => {
    log("page error:", error.message);
    problems.push("page error: " + error.message);
  });
  page.on("requestfailed", (request) => {
    // The event stream is aborted when the page closes; anything else is a problem.
    log("request failed:", request.url(), request.failure() && request.failure().errorText);
  });
  page.on("framenavigated", (frame) => {
    if (frame === page.mainFrame()) navigations += 1;
  });
  const response = await page.goto(url, { waitUntil: "load", timeout: 30000 });
  await page.evaluate(() => { window.__lbTestMarker = "set at open"; });
  return {
    status: response.status(),
    csp: response.headers()["content-security-policy"] || "",
    nosniff: response.headers()["x-content-type-options"] || "",
  };
}

async function waitState({ backend, server, state, timeout_ms: timeoutMs }) {
  const handle = await page.waitForFunction(
    ([b, s, want]) => {
      for (const row of document.querySelectorAll("tr[data-server]")) {
        if (row.dataset.backend !== b || row.dataset.server !== s) continue;
        const cell = row.querySelector("td.state .badge");
        if (cell && cell.textContent === want) return Date.now();
      }
      return false;
    },
    [backend, server, state],
    { polling: 10, timeout: timeoutMs },
  );
  return { at_ms: await handle.jsonValue() };
}

async function rows() {
  return {
    rows: await page.evaluate(() => Array.from(document.querySelectorAll("tr[data-server]"), (row) => ({
      backend: row.dataset.backend,
      server: row.dataset.server,
      state: (row.querySelector("td.state .badge") || {}).textContent,
      address: row.querySelector("td.address").textContent,
      weight: row.querySelector("td.weight").textContent,
      check: row.querySelector("td.check").textContent,
      sessions: row.querySelector("td.sessions").textContent,
    }))),
  };
}

async function summary() {
  return await page.evaluate(() => ({
    sha256: document.getElementById("sha256").textContent,
    last_reload: document.getElementById("last-reload").textContent,
    haproxy: document.getElementById("haproxy").textContent,
    live: document.getElementById("live").dataset.state,
    token_form: !document.getElementById("token-form").hidden,
    error: document.getElementById("error").hidden ? "" : document.getElementById("error").textContent,
  }));
}

async function navigationCount() {
  const marker = await page.evaluate(() => window.__lbTestMarker || null);
  const entries = await page.evaluate(() => performance.getEntriesByType("navigation").length);
  return { navigations, marker, navigation_entries: entries };
}

async function probe() {
  return await page.evaluate(() => ({
    injected_ran: window.__lbInjected === true,
    images: document.querySelectorAll("img").length,
  }));
}

async function screenshot({ path: file, width, height }) {
  await page.setViewportSize({ width, height });
  // Two animation frames: the layout for the new width is done and painted.
  await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
  await page.screenshot({ path: file, fullPage: true });
  const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
  return { path: file, scroll_width: scrollWidth };
}

async function enterToken({ token }) {
  await page.fill("#token", token);
  await page.click("#token-form button[type=submit]");
  return {};
}

async function quit() {
  if (context) await context.close();
  context = null;
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
  return {};
}

const commands = {
  open, wait_state: waitState, rows, summary, navigations: navigationCount, probe, screenshot,
  enter_token: enterToken, problems: async () => ({ problems }), quit,
};

async function main() {
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let answer;
    let request = {};
    try {
      request = JSON.parse(line);
      const run = commands[request.cmd];
      if (!run) throw new Error("unknown command " + JSON.stringify(request.cmd));
      const started = Date.now();
      answer = { ok: true, ...(await run(request)) };
      log(request.cmd, "took", Date.now() - started, "ms");
    } catch (error) {
      answer = { ok: false, error: String(error && error.stack || error) };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
    if (request.cmd === "quit") break;
  }
  await quit();
}

// stdin stays open after "quit": exit rather than wait for the test to close it.
main().then(() => process.exit(0), async (error) => {
  log("driver failed:", error && error.stack || error);
  try { await quit(); } catch (e) { /* already gone */ }
  process.exit(1);
});
