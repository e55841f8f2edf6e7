// Nexus panel: the helpers every page uses, and the small pages (login, server list,
// account, eggs, new server). Everything goes through /api/v1 with the session cookie and
// the page's CSRF token. Text from the API is written with textContent, never as HTML.
"use strict";

// Script errors of this page, kept for the browser tests (and a curious operator's console).
window.nexusErrors = [];
window.addEventListener("error", (e) => window.nexusErrors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => window.nexusErrors.push(String(e.reason && e.reason.message || e.reason)));

const Nexus = (() => {
  const csrf = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };

  // Words a customer understands for what the API answered.
  function explain(status, error) {
    if (status === 0) return "The panel could not be reached. Check your connection and try again.";
    if (status === 401) return "Your session has ended. Log in again.";
    if (status === 413) return (error && error.message) || "That is too large.";
    if (status === 429) return (error && error.message) || "Too many attempts. Wait a moment and try again.";
    if (status === 503 && error && error.message && error.code !== "node_unavailable") return sentence(error.message);
    if (status === 502 || status === 503 || status === 504)
      return "The server's node is not answering right now. Try again in a moment.";
    if (status >= 500) return "Something went wrong on our side. Try again; if it persists, tell your host.";
    if (error && error.message) return sentence(error.message);
    return "That did not work (" + status + ").";
  }

  function sentence(text) {
    const t = String(text).trim();
    return t ? t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".") : t;
  }

  class ApiError extends Error {
    constructor(status, error) {
      super(explain(status, error));
      this.status = status;
      this.code = error ? error.code : "network";
      this.field = error ? error.field : undefined;
    }
  }

  // One API call: JSON in (or raw bytes when `raw` is given), JSON or text out.
  async function api(method, path, body, options = {}) {
    const headers = { "x-csrf-token": csrf() };
    let payload;
    if (options.raw !== undefined) {
      payload = options.raw;
      headers["content-type"] = options.contentType || "application/octet-stream";
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["content-type"] = "application/json";
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
    } catch (e) {
      throw new ApiError(0, null);
    }
    const type = response.headers.get("content-type") || "";
    const data = response.status === 204 ? null : type.startsWith("application/json") ? await response.json().catch(() => null) : await response.text();
    if (!response.ok) {
      if (response.status === 401 && !path.startsWith("/api/v1/auth/")) {
        location.href = "/login";
      }
      throw new ApiError(response.status, data && data.error);
    }
    return data;
  }

  // Shows `error` next to the field it is about, else in the form's general slot.
  function showError(form, error) {
    clearErrors(form);
    const slot = error.field && form.querySelector('[data-error-for="' + CSS.escape(error.field) + '"]');
    if (slot) {
      slot.textContent = error.message;
      const input = form.querySelector('[name="' + CSS.escape(error.field) + '"]');
      if (input) input.setAttribute("aria-invalid", "true");
    } else {
      const general = form.querySelector(".form-error");
      if (general) general.textContent = error.message;
    }
  }

  function clearErrors(form) {
    form.querySelectorAll(".error, .form-error").forEach((e) => (e.textContent = ""));
    form.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
  }

  // Runs `work` for a form's submit with its button disabled; errors land next to fields.
  function onSubmit(form, work) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const buttons = form.querySelectorAll("button[type=submit]");
      buttons.forEach((b) => (b.disabled = true));
      clearErrors(form);
      try {
        await work(new FormData(form));
      } catch (e) {
        showError(form, e instanceof ApiError ? e : new ApiError(0, null));
      } finally {
        buttons.forEach((b) => (b.disabled = false));
      }
    });
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== false && v !== undefined && v !== null) node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function bytes(n) {
    if (!Number.isFinite(n)) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
  }

  function stateLabel(state) {
    return String(state || "unknown").replace(/_/g, " ");
  }

  return { api, ApiError, explain, showError, clearErrors, onSubmit, el, bytes, stateLabel };
})();

// Forms declared in the page: <form data-api="METHOD /path" data-then="reload|message">.
function bindDeclaredForms() {
  document.querySelectorAll("form[data-api]").forEach((form) => {
    const [method, path] = form.dataset.api.split(" ");
    Nexus.onSubmit(form, async (data) => {
      const body = {};
      for (const [k, v] of data.entries()) body[k] = v;
      await Nexus.api(method, path, body);
      if (form.dataset.then === "reload") location.reload();
      const ok = form.querySelector(".ok");
      if (ok) ok.hidden = false;
      form.reset();
    });
  });
}

function bindLogout() {
  const button = document.getElementById("logout");
  if (!button) return;
  button.addEventListener("click", async () => {
    try { await Nexus.api("POST", "/api/v1/auth/logout"); } catch (e) { /* gone already */ }
    location.href = "/login";
  });
}

function loginPage() {
  const form = document.getElementById("login-form");
  if (!form) return;
  const totp = document.getElementById("totp-form");
  let loginToken = null;
  Nexus.onSubmit(form, async (data) => {
    const answer = await Nexus.api("POST", "/api/v1/auth/login", { login: data.get("login"), password: data.get("password") });
    if (answer && answer.totp_required) {
      loginToken = answer.login_token;
      form.hidden = true;
      totp.hidden = false;
      document.getElementById("totp-code").focus();
      return;
    }
    location.href = "/";
  });
  Nexus.onSubmit(totp, async (data) => {
    await Nexus.api("POST", "/api/v1/auth/login/totp", { login_token: loginToken, code: data.get("code") });
    location.href = "/";
  });
}

// The server list: state from the store, resource bars from each server's node, refreshed.
function serverListPage() {
  const list = document.getElementById("servers");
  if (!list) return;
  const rows = new Map();
  let refreshing = false;
  async function refresh() {
    if (refreshing) return; // the last round is still out (a slow node): skip this one
    refreshing = true;
    try { await refreshOnce(); } finally { refreshing = false; }
  }
  async function refreshOnce() {
    let page;
    try {
      page = await Nexus.api("GET", "/api/v1/servers?per_page=100");
      document.getElementById("list-error").textContent = "";
    } catch (e) {
      document.getElementById("list-error").textContent = e.message;
      return;
    }
    document.getElementById("servers-empty").hidden = page.data.length > 0;
    const seen = new Set();
    const figures = [];
    for (const server of page.data) {
      seen.add(server.id);
      let row = rows.get(server.id);
      if (!row) {
        row = {
          state: Nexus.el("span", { class: "state" }),
          cpu: Nexus.el("meter", { min: 0, max: 100, value: 0, title: "CPU" }),
          mem: Nexus.el("meter", { min: 0, max: 1, value: 0, title: "Memory" }),
          figures: Nexus.el("small", { class: "muted" }),
        };
        row.item = Nexus.el("li", { class: "server", "data-server": server.id },
          Nexus.el("a", { href: "/server/" + encodeURIComponent(server.id), text: server.name }),
          row.state,
          Nexus.el("span", { class: "bars" }, Nexus.el("label", { text: "CPU " }, row.cpu), Nexus.el("label", { text: "RAM " }, row.mem)),
          row.figures);
        rows.set(server.id, row);
        list.append(row.item);
      }
      row.state.textContent = Nexus.stateLabel(server.state) + (server.suspended ? " (suspended)" : "");
      row.state.dataset.state = server.state;
      if (["starting", "running", "stopping"].includes(server.state)) {
        figures.push(Nexus.api("GET", "/api/v1/servers/" + encodeURIComponent(server.id) + "/resources").then((r) => {
          const s = r.stats;
          if (!s) return;
          const cpuMax = server.limits.cpu_percent || 100;
          row.cpu.max = cpuMax;
          row.cpu.value = Math.min(s.cpu_percent, cpuMax);
          row.mem.max = s.memory_limit_bytes || 1;
          row.mem.value = s.memory_bytes;
          row.figures.textContent = s.cpu_percent.toFixed(1) + "% · " + Nexus.bytes(s.memory_bytes) + " / " + Nexus.bytes(s.memory_limit_bytes);
        }).catch(() => { row.figures.textContent = "node not answering"; }));
      } else {
        row.cpu.value = 0;
        row.mem.value = 0;
        row.figures.textContent = "";
      }
    }
    for (const [id, row] of rows) if (!seen.has(id)) { row.item.remove(); rows.delete(id); }
    await Promise.all(figures);
  }
  refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, 5000);
}

function accountPage() {
  const keys = document.getElementById("keys");
  if (!keys) return;
  async function load() {
    const list = await Nexus.api("GET", "/api/v1/account/api-keys");
    keys.replaceChildren(...list.map((key) => Nexus.el("li", {},
      Nexus.el("code", { text: key.identifier }), " ",
      Nexus.el("span", { text: key.kind + (key.memo ? " · " + key.memo : "") }), " ",
      Nexus.el("button", { type: "button", class: "link danger", text: "Delete", onclick: async () => {
        try { await Nexus.api("DELETE", "/api/v1/account/api-keys/" + encodeURIComponent(key.id)); } catch (e) { alert(e.message); }
        load().catch(() => {});
      } }))));
  }
  load().catch((e) => { document.querySelector("#key-form .form-error").textContent = e.message; });
  Nexus.onSubmit(document.getElementById("key-form"), async (data) => {
    const ips = String(data.get("allowed_ips") || "").split(/\s+/).filter(Boolean);
    const created = await Nexus.api("POST", "/api/v1/account/api-keys", { kind: data.get("kind"), memo: data.get("memo"), allowed_ips: ips });
    document.getElementById("new-key-value").textContent = created.secret;
    document.getElementById("new-key").hidden = false;
    load().catch(() => {});
  });
}

function totpSection() {
  const begin = document.getElementById("totp-begin");
  if (begin) begin.addEventListener("click", async () => {
    try {
      const setup = await Nexus.api("POST", "/api/v1/account/totp");
      document.getElementById("totp-secret").textContent = setup.secret;
      document.getElementById("totp-uri").href = setup.uri;
      document.getElementById("totp-setup").hidden = false;
      begin.hidden = true;
    } catch (e) { alert(e.message); }
  });
  const enable = document.getElementById("totp-enable-form");
  if (enable) Nexus.onSubmit(enable, async (data) => {
    const answer = await Nexus.api("POST", "/api/v1/account/totp/enable", { code: data.get("code") });
    document.getElementById("recovery-codes").replaceChildren(...answer.recovery_codes.map((c) => Nexus.el("li", {}, Nexus.el("code", { text: c }))));
    document.getElementById("totp-setup").hidden = true;
    document.getElementById("totp-codes").hidden = false;
  });
  const disable = document.getElementById("totp-disable-form");
  if (disable) Nexus.onSubmit(disable, async (data) => {
    await Nexus.api("POST", "/api/v1/account/totp/disable", { password: data.get("password") });
    location.reload();
  });
}

function eggsPage() {
  const form = document.getElementById("egg-import");
  if (!form) return;
  const list = document.getElementById("eggs");
  const nests = document.getElementById("nests");
  const nestSelect = document.getElementById("egg-nest");
  const error = document.getElementById("eggs-error");
  let nestNames = new Map();
  async function load() {
    const [eggs, nestPage] = await Promise.all([Nexus.api("GET", "/api/v1/eggs?per_page=100"), Nexus.api("GET", "/api/v1/nests?per_page=100")]);
    nestNames = new Map(nestPage.data.map((n) => [n.id, n.name]));
    const chosen = nestSelect.value;
    nestSelect.replaceChildren(Nexus.el("option", { value: "", text: "none" }), ...nestPage.data.map((n) => Nexus.el("option", { value: n.id, text: n.name, selected: n.id === chosen })));
    nests.replaceChildren(...nestPage.data.map((n) => Nexus.el("li", {},
      Nexus.el("strong", { text: n.name }), " ", Nexus.el("span", { class: "muted", text: n.description || "" }), " ",
      Nexus.el("button", { type: "button", class: "link danger", text: "Delete", onclick: async () => {
        try { await Nexus.api("DELETE", "/api/v1/nests/" + n.id); error.textContent = ""; } catch (e) { error.textContent = e.message; }
        load().catch((e) => { error.textContent = e.message; });
      } }))));
    list.replaceChildren(...eggs.data.map((egg) => Nexus.el("li", { "data-egg": egg.name },
      Nexus.el("strong", { text: egg.name }), " ",
      Nexus.el("span", { class: "muted", text: (egg.author || "") + (egg.nest ? " · " + (nestNames.get(egg.nest) || "") : "") }), " ",
      Nexus.el("a", { href: "/api/v1/eggs/" + egg.id + "/export", download: "", text: "Export (Pterodactyl)" }), " ",
      Nexus.el("a", { href: "/api/v1/eggs/" + egg.id + "/export?format=plcn_v3", download: "", text: "Export (Pelican)" }), " ",
      Nexus.el("button", { type: "button", class: "link danger", text: "Delete", onclick: async () => {
        if (!confirm("Delete the egg " + egg.name + "?")) return;
        try { await Nexus.api("DELETE", "/api/v1/eggs/" + egg.id); error.textContent = ""; } catch (e) { error.textContent = e.message; }
        load().catch((e) => { error.textContent = e.message; });
      } }))));
  }
  load().catch((e) => { error.textContent = e.message; });
  Nexus.onSubmit(form, async () => {
    const file = document.getElementById("egg-file").files[0];
    if (!file) throw new Nexus.ApiError(422, { field: "file", message: "choose an egg file first", code: "invalid" });
    const text = await file.text();
    const yaml = /\.ya?ml$/i.test(file.name);
    const path = nestSelect.value ? "/api/v1/nests/" + nestSelect.value + "/eggs" : "/api/v1/eggs";
    const egg = await Nexus.api("POST", path, undefined, { raw: text, contentType: yaml ? "application/yaml" : "application/json" });
    const done = document.getElementById("egg-imported");
    done.textContent = "Imported " + egg.name + ".";
    done.hidden = false;
    form.reset();
    load().catch((e) => { error.textContent = e.message; });
  });
  const nestForm = document.getElementById("nest-form");
  Nexus.onSubmit(nestForm, async (data) => {
    await Nexus.api("POST", "/api/v1/nests", { name: data.get("name"), description: data.get("description") });
    nestForm.reset();
    load().catch((e) => { error.textContent = e.message; });
  });
}

function newServerPage() {
  const form = document.getElementById("new-server-form");
  if (!form) return;
  const select = document.getElementById("server-egg");
  const fieldset = document.getElementById("egg-variables");
  let eggs = [];
  function showVariables() {
    const egg = eggs.find((e) => e.id === select.value);
    fieldset.replaceChildren(Nexus.el("legend", { text: "Variables" }));
    if (!egg) return;
    for (const v of egg.variables) {
      fieldset.append(Nexus.el("label", {},
        v.name + " ",
        Nexus.el("input", { name: "var:" + v.env_variable, value: v.default_value, "data-env": v.env_variable }),
        Nexus.el("small", { class: "muted", text: (v.description ? v.description + " · " : "") + "rules: " + v.rules.join("|") })),
        Nexus.el("small", { class: "error", "data-error-for": v.env_variable }));
    }
  }
  Nexus.api("GET", "/api/v1/eggs?per_page=100").then((page) => {
    eggs = page.data;
    select.replaceChildren(...eggs.map((egg) => Nexus.el("option", { value: egg.id, text: egg.name })));
    showVariables();
  }).catch((e) => { form.querySelector(".form-error").textContent = e.message; });
  select.addEventListener("change", showVariables);
  Nexus.onSubmit(form, async (data) => {
    const email = String(data.get("owner_email") || "").trim();
    const users = await Nexus.api("GET", "/api/v1/users?email=" + encodeURIComponent(email));
    const owner = users.data[0];
    if (!owner) throw new Nexus.ApiError(422, { field: "owner", message: "no user has this e-mail address", code: "invalid" });
    const variables = {};
    form.querySelectorAll("[data-env]").forEach((input) => (variables[input.dataset.env] = input.value));
    const created = await Nexus.api("POST", "/api/v1/servers", {
      name: data.get("name"), owner: owner.id, egg: data.get("egg"), variables,
      limits: { memory_mb: Number(data.get("memory_mb")), disk_mb: Number(data.get("disk_mb")), cpu_percent: Number(data.get("cpu_percent")) },
    });
    location.href = "/server/" + encodeURIComponent(created.server.id);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  bindLogout();
  bindDeclaredForms();
  loginPage();
  serverListPage();
  accountPage();
  totpSection();
  eggsPage();
  newServerPage();
});
