// lb-bridge's status page: follows the bridge's event stream and, after each event, reads the
// whole status again (debounced), so the page always shows what the agent last read from haproxy.
//
// DESIGN
// - Read-only: the page only ever sends GET requests (/events and /ui/status).
// - Every text that comes from haproxy or the agent (backend and server names, addresses, check
//   text, error messages) reaches the DOM through textContent or a dataset attribute, never as
//   HTML, so a name or a check reason a backend controls cannot become markup.
// - The stream is read with fetch() rather than EventSource, because EventSource cannot send an
//   Authorization header: with tokens on, the token goes in the header, never in a URL (where it
//   would land in logs and history). The token is asked for once and kept in sessionStorage:
//   this tab only, gone when it closes.
// - Late joiner rule (proto/PROTOCOL.md): the stream is connected first, then the status read, so
//   no change falls between the two. When the stream breaks it is reopened with a backoff
//   (1 s doubling to 10 s); the status is read at each attempt, and again once it is back.
"use strict";

(() => {
  const TOKEN_KEY = "lb-bridge-token";
  const DEBOUNCE_MS = 100;
  const MAX_BACKOFF_MS = 10000;

  const $ = (id) => document.getElementById(id);
  let refreshTimer = null;
  let refreshing = false;
  let refreshAgain = false;
  let streamAbort = null;
  let backoffMs = 1000;

  let memoryToken = "";  // when sessionStorage refuses (some private modes): this page only

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || memoryToken;
    } catch (e) {
      return memoryToken;
    }
  }

  function headers() {
    const t = token();
    return t ? { Authorization: "Bearer " + t } : {};
  }

  // A 401 shows the token form; any other error is shown as the bridge worded it.
  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function errorOf(response) {
    let message = "HTTP " + response.status;
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") message += ": " + body.error;
    } catch (e) {
      // not JSON: the status alone
    }
    return new HttpError(response.status, message);
  }

  function showError(error) {
    if (error && error.status === 401) {
      $("token-form").hidden = false;
      $("error").hidden = false;
      $("error").textContent = token() ? "The token was refused." : "This bridge needs a token.";
      return;
    }
    $("error").hidden = !error;
    $("error").textContent = error ? String(error.message || error) : "";
  }

  function setLive(state, text) {
    $("live").dataset.state = state;
    $("live").textContent = text;
  }

  // --- Status -------------------------------------------------------------------------------

  function scheduleRefresh() {
    if (refreshTimer !== null) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      refresh();
    }, DEBOUNCE_MS);
  }

  async function refresh() {
    if (refreshing) {
      refreshAgain = true;
      return;
    }
    refreshing = true;
    try {
      const response = await fetch("/ui/status", { headers: headers(), cache: "no-store" });
      if (!response.ok) throw await errorOf(response);
      render(await response.json());
      showError(null);
    } catch (error) {
      showError(error);
    } finally {
      refreshing = false;
      if (refreshAgain) {
        refreshAgain = false;
        scheduleRefresh();
      }
    }
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function stateClass(state) {
    if (state === "UP") return "up";
    if (state === "DOWN") return "down";
    if (state === "MAINT" || state === "DRAIN") return "maint";
    return "warn";  // UP 1/3, DOWN 1/2, NOLB, no check
  }

  function number(value) {
    return typeof value === "number" && value >= 0 ? String(value) : "–";
  }

  function when(ms) {
    if (typeof ms !== "number" || ms <= 0) return "";
    const date = new Date(ms);
    const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
    const ago = seconds < 90 ? seconds + " s ago"
      : seconds < 5400 ? Math.round(seconds / 60) + " min ago"
      : Math.round(seconds / 3600) + " h ago";
    return date.toLocaleString() + " (" + ago + ")";
  }

  function cell(label, className, text) {
    const td = el("td", className, text);
    td.dataset.label = label;
    return td;
  }

  function serverRow(backend, server) {
    const tr = el("tr");
    tr.dataset.backend = backend;
    tr.dataset.server = String(server.name);
    tr.appendChild(cell("Server", "name", server.name));
    const state = cell("State", "state");
    const badge = el("span", "badge " + stateClass(server.status), server.status);
    state.appendChild(badge);
    if (server.backup) state.appendChild(el("span", "backup", " backup"));
    tr.appendChild(state);
    tr.appendChild(cell("Address", "address", server.address));
    tr.appendChild(cell("Weight", "num weight", number(server.weight)));
    const check = [server.check_status, server.last_chk].filter((s) => s).join(" · ");
    tr.appendChild(cell("Check", "check", check || "–"));
    tr.appendChild(cell("Sessions", "num sessions",
                        number(server.current_sessions) + " / " + number(server.total_sessions)));
    return tr;
  }

  function backendSection(backend) {
    const section = el("section", "backend");
    section.dataset.backend = String(backend.name);
    const head = el("div", "backend-head");
    head.appendChild(el("h2", null, backend.name));
    head.appendChild(el("span", "badge " + stateClass(backend.status), backend.status));
    const servers = Array.isArray(backend.servers) ? backend.servers : [];
    const up = servers.filter((s) => s.status === "UP").length;
    head.appendChild(el("span", "count", up + " of " + servers.length + " servers UP"));
    section.appendChild(head);
    if (servers.length === 0) {
      section.appendChild(el("p", "empty", "no servers"));
      return section;
    }
    const table = el("table");
    const headRow = el("tr");
    for (const title of ["Server", "State", "Address", "Weight", "Check", "Sessions (now / total)"]) {
      headRow.appendChild(el("th", null, title));
    }
    table.appendChild(el("thead")).appendChild(headRow);
    const body = el("tbody");
    for (const server of servers) body.appendChild(serverRow(String(backend.name), server));
    table.appendChild(body);
    section.appendChild(table);
    return section;
  }

  function render(status) {
    const haproxy = status.haproxy || {};
    $("haproxy").textContent = haproxy.running
      ? "running" + (haproxy.version ? " " + haproxy.version : "") +
        (haproxy.pid ? ", worker pid " + haproxy.pid : "")
      : "not running" + (haproxy.error ? ": " + haproxy.error : "");
    const sha = status.config && typeof status.config.sha256 === "string" ? status.config.sha256 : "";
    $("sha256").textContent = sha || "–";
    $("sha256").title = sha;
    const last = status.last_reload;
    if (last && typeof last === "object") {
      let text = String(last.outcome || "?");
      if (last.applied_via) text += " via " + last.applied_via;
      if (typeof last.total_ms === "number") text += ", " + last.total_ms + " ms";
      const at = when(last.time_unix_ms);
      if (at) text += ", " + at;
      if (last.error && last.error.message) text += ": " + last.error.message;
      $("last-reload").textContent = text;
    } else {
      $("last-reload").textContent = "none since the agent started";
    }
    $("updated").textContent = new Date().toLocaleTimeString();
    const backends = Array.isArray(status.backends) ? status.backends : [];
    const container = $("backends");
    container.replaceChildren(...backends.map(backendSection));
    if (backends.length === 0) container.appendChild(el("p", "empty", "no backends"));
  }

  // --- Events ---------------------------------------------------------------------------------

  // Reads text/event-stream from `reader`; calls onEvent for every event (comments excluded).
  async function readEvents(reader, onEvent) {
    const decoder = new TextDecoder();
    let buffer = "";
    let data = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        if (line === "") {
          if (data) onEvent();
          data = false;
        } else if (line.startsWith("data:")) {
          data = true;
        }
      }
      if (buffer.length > 1 << 20) throw new Error("event stream line too long");
    }
  }

  async function follow() {
    for (;;) {
      streamAbort = new AbortController();
      try {
        const response = await fetch("/events", {
          headers: headers(), cache: "no-store", signal: streamAbort.signal,
        });
        if (!response.ok) throw await errorOf(response);
        setLive("live", "live");
        backoffMs = 1000;
        refresh();  // after subscribing: nothing falls between the snapshot and the stream
        await readEvents(response.body.getReader(), scheduleRefresh);
        throw new Error("the event stream ended");
      } catch (error) {
        if (streamAbort.signal.aborted) continue;  // restarted with a new token
        if (error.status === 401) {
          showError(error);
          setLive("down", "needs a token");
          await new Promise((resolve) => { tokenEntered = resolve; });
          continue;
        }
        // Without a stream (the bridge's stream limit reached, say) the page still shows the
        // status, read again at each attempt.
        refresh();
        setLive("down", "reconnecting in " + Math.round(backoffMs / 1000) + " s");
        await new Promise((resolve) => setTimeout(resolve, backoffMs));
        backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
        setLive("connecting", "connecting…");
      }
    }
  }

  let tokenEntered = null;

  function useToken(value) {
    memoryToken = value;
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      // storage refused: memoryToken lasts until the page is closed
    }
    $("forget").hidden = !token();
    $("token-form").hidden = true;
    showError(null);
    if (tokenEntered) {
      const resume = tokenEntered;
      tokenEntered = null;
      resume();
    } else if (streamAbort) {
      streamAbort.abort();
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token").value.trim();
      $("token").value = "";
      if (value) useToken(value);
    });
    $("forget").addEventListener("click", () => useToken(""));
    $("forget").hidden = !token();
    follow();
  });
})();
