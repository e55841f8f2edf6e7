// A server's pages: power buttons that follow its state, the console (straight from the
// node's socket with a panel-issued token: ANSI colours, command history, auto-scroll that
// pauses when you scroll up, reconnect after a drop), live charts, and the startup page.
"use strict";

const ServerPage = (() => {
  const head = document.getElementById("server");
  if (!head) return null;
  const id = head.dataset.id;
  const perms = new Set((head.dataset.perms || "").split(" ").filter(Boolean));
  const base = "/api/v1/servers/" + encodeURIComponent(id);
  const listeners = [];

  // Which power actions make sense in each state (the node refuses the others anyway).
  const allowedIn = {
    start: ["installed", "stopped", "crashed"],
    restart: ["running", "starting", "stopped", "crashed", "installed"],
    stop: ["running", "starting"],
    kill: ["running", "starting", "stopping"],
  };

  function setState(state) {
    head.dataset.state = state;
    const label = document.getElementById("state");
    label.textContent = Nexus.stateLabel(state);
    label.dataset.state = state;
    document.querySelectorAll("[data-power]").forEach((button) => {
      button.disabled = !allowedIn[button.dataset.power].includes(state);
    });
    listeners.forEach((f) => f(state));
  }

  document.querySelectorAll("[data-power]").forEach((button) => {
    button.addEventListener("click", async () => {
      const error = document.getElementById("power-error");
      error.textContent = "";
      button.disabled = true;
      try {
        await Nexus.api("POST", base + "/power", { action: button.dataset.power });
        // The state normally moves on (and sets the buttons); if it does not, the buttons
        // come back as the state allows.
        setTimeout(() => setState(head.dataset.state), 5000);
      } catch (e) {
        error.textContent = e.message;
        button.disabled = false;
      }
    });
  });
  setState(head.dataset.state);

  // The state as the store has it, for pages without a console socket.
  async function pollState() {
    try {
      const server = await Nexus.api("GET", base);
      if (server.state !== head.dataset.state) setState(server.state);
    } catch (e) { /* shown by the next action */ }
  }

  // Without a live console (no permission, or the socket is down) the state comes from the
  // store every few seconds.
  let live = false;
  setInterval(() => { if (!live && !document.hidden) pollState(); }, 5000);

  const can = (permission) => perms.has(permission);
  return { id, base, perms, can, setState, pollState, setLive: (on) => { live = on; }, onState: (f) => listeners.push(f) };
})();

// --- ANSI colours --------------------------------------------------------------------
const Ansi = (() => {
  const PALETTE = ["#000", "#c33", "#3a3", "#cc3", "#36c", "#c3c", "#3cc", "#ccc",
    "#666", "#f66", "#6f6", "#ff6", "#69f", "#f6f", "#6ff", "#fff"];
  function color256(n) {
    if (n < 16) return PALETTE[n];
    if (n >= 232) { const v = 8 + (n - 232) * 10; return "rgb(" + v + "," + v + "," + v + ")"; }
    n -= 16;
    const c = (x) => (x === 0 ? 0 : 55 + x * 40);
    return "rgb(" + c(Math.floor(n / 36)) + "," + c(Math.floor(n / 6) % 6) + "," + c(n % 6) + ")";
  }
  // Splits `text` into styled runs; escape sequences other than colours are dropped.
  function render(text, line) {
    let style = { fg: null, bg: null, bold: false, italic: false, underline: false };
    const pattern = /\x1b\[([0-9;]*)([A-Za-z])|\x1b[()][A-Za-z0-9]|\x1b[@-_]/g;
    let last = 0;
    let m;
    const push = (chunk) => {
      if (!chunk) return;
      const span = document.createElement("span");
      span.textContent = chunk;
      if (style.fg) span.style.color = style.fg;
      if (style.bg) span.style.backgroundColor = style.bg;
      if (style.bold) span.style.fontWeight = "bold";
      if (style.italic) span.style.fontStyle = "italic";
      if (style.underline) span.style.textDecoration = "underline";
      line.append(span);
    };
    while ((m = pattern.exec(text)) !== null) {
      push(text.slice(last, m.index));
      last = pattern.lastIndex;
      if (m[2] !== "m") continue;
      const codes = (m[1] || "0").split(";").map((c) => parseInt(c || "0", 10));
      for (let i = 0; i < codes.length; i++) {
        const c = codes[i];
        if (c === 0) style = { fg: null, bg: null, bold: false, italic: false, underline: false };
        else if (c === 1) style.bold = true;
        else if (c === 3) style.italic = true;
        else if (c === 4) style.underline = true;
        else if (c === 22) style.bold = false;
        else if (c === 23) style.italic = false;
        else if (c === 24) style.underline = false;
        else if (c >= 30 && c <= 37) style.fg = PALETTE[c - 30];
        else if (c >= 90 && c <= 97) style.fg = PALETTE[c - 90 + 8];
        else if (c === 39) style.fg = null;
        else if (c >= 40 && c <= 47) style.bg = PALETTE[c - 40];
        else if (c >= 100 && c <= 107) style.bg = PALETTE[c - 100 + 8];
        else if (c === 49) style.bg = null;
        else if ((c === 38 || c === 48) && codes[i + 1] === 5) {
          const value = color256(codes[i + 2] & 255);
          if (c === 38) style.fg = value; else style.bg = value;
          i += 2;
        } else if ((c === 38 || c === 48) && codes[i + 1] === 2) {
          const value = "rgb(" + (codes[i + 2] & 255) + "," + (codes[i + 3] & 255) + "," + (codes[i + 4] & 255) + ")";
          if (c === 38) style.fg = value; else style.bg = value;
          i += 4;
        }
      }
    }
    push(text.slice(last));
  }
  return { render };
})();

// --- Charts: a rolling line on a canvas ----------------------------------------------
class Chart {
  constructor(canvas, color, max) {
    this.canvas = canvas;
    this.color = color;
    this.fixedMax = max;
    this.values = [];
  }
  push(value) {
    this.values.push(value);
    if (this.values.length > 60) this.values.shift();
    this.draw();
  }
  draw() {
    const { canvas } = this;
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    const max = this.fixedMax || Math.max(1, ...this.values) * 1.2;
    ctx.strokeStyle = "#2a3340";
    ctx.beginPath();
    for (let y = 0; y <= 2; y++) { ctx.moveTo(0, (h * y) / 2); ctx.lineTo(w, (h * y) / 2); }
    ctx.stroke();
    ctx.strokeStyle = this.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    this.values.forEach((v, i) => {
      const x = (w * i) / 59, y = h - (Math.min(v, max) / max) * (h - 4) - 2;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

// --- Console ---------------------------------------------------------------------------
function consolePage() {
  const screen = document.getElementById("console");
  if (!screen || !ServerPage) return;
  const status = document.getElementById("console-status");
  const MAX_LINES = 1000;
  let follow = true;
  screen.addEventListener("scroll", () => {
    follow = screen.scrollTop + screen.clientHeight >= screen.scrollHeight - 8;
  });
  function line(text, kind) {
    const row = document.createElement("div");
    row.className = "line" + (kind ? " " + kind : "");
    Ansi.render(text, row);
    screen.append(row);
    while (screen.childElementCount > MAX_LINES) screen.firstElementChild.remove();
    if (follow) screen.scrollTop = screen.scrollHeight;
  }

  const cpu = new Chart(document.getElementById("cpu-chart"), "#4aa3ff", 0);
  const mem = new Chart(document.getElementById("mem-chart"), "#5ccf7a", 0);
  const net = new Chart(document.getElementById("net-chart"), "#e0a040", 0);
  let lastNet = null;
  function stats(s) {
    cpu.push(s.cpu_percent);
    document.getElementById("cpu-now").textContent = s.cpu_percent.toFixed(1) + "%";
    mem.fixedMax = s.memory_limit_bytes || 0;
    mem.push(s.memory_bytes);
    document.getElementById("mem-now").textContent = Nexus.bytes(s.memory_bytes) + " / " + Nexus.bytes(s.memory_limit_bytes);
    const total = s.network_rx_bytes + s.network_tx_bytes;
    const at = s.at ? Date.parse(s.at) : Date.now();
    if (lastNet && at > lastNet.at) {
      const rate = Math.max(0, (total - lastNet.total) / ((at - lastNet.at) / 1000));
      net.push(rate);
      document.getElementById("net-now").textContent = Nexus.bytes(rate) + "/s";
    }
    lastNet = { total, at };
  }

  let socket = null;
  let retry = 1000;
  let openedAt = 0;
  async function connect() {
    status.textContent = "Connecting…";
    let access;
    try {
      access = await Nexus.api("GET", ServerPage.base + "/websocket");
    } catch (e) {
      status.textContent = e.message;
      if (e.status === 403 || e.status === 404) return; // not theirs to watch: nothing to retry
      return later();
    }
    socket = new WebSocket(access.socket + "?token=" + encodeURIComponent(access.token));
    socket.addEventListener("open", () => {
      status.textContent = "Connected";
      openedAt = Date.now();
      ServerPage.setLive(true);
      screen.replaceChildren();
    });
    socket.addEventListener("message", (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      switch (event.type) {
        case "line": line(event.data.text, event.data.stream === "stderr" ? "stderr" : ""); break;
        case "install": line(event.data, "install"); break;
        case "notice": line("[Nexus] " + event.data, "notice"); break;
        case "state": ServerPage.setState(event.data.to); break;
        case "stats": stats(event.data); break;
        case "error": {
          const error = document.getElementById("command-error") || status;
          error.textContent = Nexus.explain(400, event.error);
          break;
        }
      }
    });
    socket.addEventListener("close", (event) => {
      socket = null;
      ServerPage.setLive(false);
      // A socket that stayed up a while was healthy: start the back-off over. One closed at
      // once (refused, or dropped by a proxy) keeps backing off, so a page never hammers.
      if (openedAt && Date.now() - openedAt > 10000) retry = 1000;
      openedAt = 0;
      if (event.code >= 4000 && event.code < 5000) {
        status.textContent = "The console closed: " + (event.reason || "refused") + ". Reload the page to try again.";
        return;
      }
      status.textContent = "Disconnected. Reconnecting…";
      later();
    });
  }
  function later() {
    setTimeout(connect, retry + Math.random() * retry * 0.3);
    retry = Math.min(retry * 2, 30000);
  }
  connect();

  const form = document.getElementById("command-form");
  if (form) {
    const input = document.getElementById("command");
    const history = [];
    let cursor = 0;
    input.addEventListener("keydown", (e) => {
      if (e.key === "ArrowUp" && cursor > 0) { cursor--; input.value = history[cursor]; e.preventDefault(); }
      else if (e.key === "ArrowDown") {
        if (cursor < history.length - 1) { cursor++; input.value = history[cursor]; }
        else { cursor = history.length; input.value = ""; }
        e.preventDefault();
      }
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const command = input.value;
      if (!command.trim()) return;
      const error = document.getElementById("command-error");
      error.textContent = "";
      if (!socket || socket.readyState !== WebSocket.OPEN) {
        error.textContent = "The console is not connected yet; try again in a moment.";
        return;
      }
      socket.send(JSON.stringify({ type: "command", line: command }));
      if (history[history.length - 1] !== command) history.push(command);
      if (history.length > 100) history.shift();
      cursor = history.length;
      input.value = "";
      follow = true;
    });
  }
}

// --- Startup variables -----------------------------------------------------------------
function startupPage() {
  const form = document.getElementById("startup-form");
  if (!form || !ServerPage) return;
  const canEdit = form.dataset.canEdit === "yes";
  const box = document.getElementById("variables");
  Nexus.api("GET", ServerPage.base + "/startup").then((startup) => {
    document.getElementById("startup-command").textContent = startup.startup;
    box.replaceChildren(...startup.variables.map((v) => Nexus.el("div", { class: "variable" },
      Nexus.el("label", {}, v.name + " ",
        Nexus.el("input", { name: v.env_variable, value: v.value, readonly: !(canEdit && v.editable), "data-env": v.env_variable })),
      Nexus.el("small", { class: "muted", text: (v.description ? v.description + " · " : "") + v.env_variable + " · rules: " + v.rules.join("|") }),
      Nexus.el("small", { class: "error", "data-error-for": v.env_variable }))));
  }).catch((e) => { form.querySelector(".form-error").textContent = e.message; });
  if (!canEdit) return;
  Nexus.onSubmit(form, async () => {
    document.getElementById("startup-saved").hidden = true;
    const variables = {};
    form.querySelectorAll("[data-env]:not([readonly])").forEach((input) => (variables[input.dataset.env] = input.value));
    await Nexus.api("PUT", ServerPage.base + "/startup", { variables });
    document.getElementById("startup-saved").hidden = false;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  consolePage();
  startupPage();
});
