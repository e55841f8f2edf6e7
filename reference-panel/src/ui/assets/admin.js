// Admin pages: nodes (register, heartbeat age, booked resources, delete), a node's
// allocations, users, all servers (suspend, delete), locations.
"use strict";

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? s + " s ago" : s < 7200 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
}

// Pages through a list route, appending rows; `more` loads the next page.
function pager(path, tbody, moreButton, render) {
  let page = 0;
  async function next(reset) {
    if (reset) { page = 0; tbody.replaceChildren(); }
    page += 1;
    const answer = await Nexus.api("GET", path + (path.includes("?") ? "&" : "?") + "per_page=100&page=" + page);
    tbody.append(...answer.data.map(render));
    if (moreButton) moreButton.disabled = !answer.pagination.has_more;
    return answer;
  }
  if (moreButton) moreButton.addEventListener("click", () => next(false));
  return next;
}

function nodesPage() {
  const tbody = document.getElementById("node-rows");
  if (!tbody) return;
  const error = document.getElementById("nodes-error");
  const load = pager("/api/v1/nodes", tbody, null, (node) => Nexus.el("tr", { "data-node": node.name },
    Nexus.el("td", {}, Nexus.el("a", { href: "/admin/nodes/" + node.id, text: node.name }), Nexus.el("br"), Nexus.el("small", { class: "muted", text: node.fqdn + ":" + node.daemon_port })),
    Nexus.el("td", {}, Nexus.el("span", { class: "state", "data-state": node.status === "online" ? "running" : "crashed", text: node.status })),
    Nexus.el("td", { class: "num", text: ago(node.last_heartbeat) }),
    Nexus.el("td", { text: node.capacity.memory_mb + " MiB" }),
    Nexus.el("td", { text: node.capacity.disk_mb + " MiB" }),
    Nexus.el("td", { class: "actions" },
      Nexus.el("a", { href: "/api/v1/nodes/" + node.id + "/configuration", download: "nexus-wings.toml", text: "Configuration" }),
      Nexus.el("button", { type: "button", class: "link danger", text: "Delete", onclick: async () => {
        if (!confirm("Remove the node " + node.name + "? It must have no servers.")) return;
        try { await Nexus.api("DELETE", "/api/v1/nodes/" + node.id); error.textContent = ""; } catch (e) { error.textContent = e.message; }
        refresh();
      } }))));
  // Never two refreshes at once (rows would double); one asked for meanwhile runs after.
  let loading = false;
  let again = false;
  let listError = false;
  const refresh = async () => {
    if (loading) { again = true; return; }
    loading = true;
    try {
      await load(true);
      if (listError) error.textContent = ""; // clear only what a refresh itself showed
      listError = false;
    } catch (e) { error.textContent = e.message; listError = true; } finally { loading = false; }
    if (again) { again = false; refresh(); }
  };
  refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, 10000);
  Nexus.onSubmit(document.getElementById("node-form"), async (data) => {
    const created = await Nexus.api("POST", "/api/v1/nodes", {
      name: data.get("name"), fqdn: data.get("fqdn"), daemon_port: Number(data.get("daemon_port")),
      capacity: { memory_mb: Number(data.get("memory_mb")), disk_mb: Number(data.get("disk_mb")), cpu_percent: Number(data.get("cpu_percent")) },
    });
    document.getElementById("node-token").textContent = created.token;
    document.getElementById("node-config").href = "/api/v1/nodes/" + created.node.id + "/configuration";
    document.getElementById("node-registered").hidden = false;
    refresh();
  });
}

function nodePage() {
  const section = document.getElementById("allocations");
  if (!section) return;
  const node = section.dataset.node;
  const load = pager("/api/v1/nodes/" + node + "/allocations", document.getElementById("allocation-rows"), document.getElementById("allocations-older"),
    (a) => Nexus.el("tr", {}, Nexus.el("td", { text: a.ip + ":" + a.port }),
      Nexus.el("td", {}, a.server ? Nexus.el("a", { href: "/server/" + a.server, text: "in use" }) : Nexus.el("span", { class: "muted", text: "free" }))));
  load(true).catch((e) => { document.getElementById("allocations-error").textContent = e.message; });
  const form = document.getElementById("allocation-form");
  Nexus.onSubmit(form, async (data) => {
    const added = await Nexus.api("POST", "/api/v1/nodes/" + node + "/allocations", { ip: data.get("ip"), ports: data.get("ports") });
    const ok = form.querySelector(".ok");
    ok.textContent = "Added " + added.length + " allocations.";
    ok.hidden = false;
    load(true).catch((e) => { document.getElementById("allocations-error").textContent = e.message; });
  });
}

function usersAdminPage() {
  const tbody = document.getElementById("user-rows");
  if (!tbody) return;
  const load = pager("/api/v1/users", tbody, document.getElementById("users-more"), (u) => Nexus.el("tr", {},
    Nexus.el("td", { text: u.username }), Nexus.el("td", { text: u.email }), Nexus.el("td", { text: u.role }),
    Nexus.el("td", { text: new Date(u.created_at).toLocaleDateString() })));
  load(true).catch((e) => { document.getElementById("users-error").textContent = e.message; });
  const form = document.getElementById("user-form");
  Nexus.onSubmit(form, async (data) => {
    await Nexus.api("POST", "/api/v1/users", { username: data.get("username"), email: data.get("email"), password: data.get("password"), role: data.get("role") });
    form.reset();
    load(true).catch((e) => { document.getElementById("users-error").textContent = e.message; });
  });
}

function serversAdminPage() {
  const tbody = document.getElementById("admin-server-rows");
  if (!tbody) return;
  const error = document.getElementById("servers-error");
  const act = (label, method, path, danger) => Nexus.el("button", { type: "button", class: "link" + (danger ? " danger" : ""), text: label, onclick: async () => {
    if (danger && !confirm(label + "?")) return;
    try { await Nexus.api(method, path); error.textContent = ""; } catch (e) { error.textContent = e.message; }
    load(true).catch((e) => { error.textContent = e.message; });
  } });
  const load = pager("/api/v1/servers?sort=name", tbody, document.getElementById("servers-more"), (s) => Nexus.el("tr", { "data-server": s.name },
    Nexus.el("td", {}, Nexus.el("a", { href: "/server/" + s.id, text: s.name })),
    Nexus.el("td", {}, Nexus.el("span", { class: "state", "data-state": s.state, text: Nexus.stateLabel(s.state) + (s.suspended ? " · suspended" : "") + (s.deletion_requested_at ? " · deleting" : "") })),
    Nexus.el("td", { text: s.limits.memory_mb + " MiB" }),
    Nexus.el("td", { text: new Date(s.created_at).toLocaleDateString() }),
    Nexus.el("td", { class: "actions" },
      s.suspended ? act("Unsuspend", "POST", "/api/v1/servers/" + s.id + "/unsuspend") : act("Suspend", "POST", "/api/v1/servers/" + s.id + "/suspend"),
      act("Delete", "DELETE", "/api/v1/servers/" + s.id, true))));
  load(true).catch((e) => { error.textContent = e.message; });
}

function settingsAdminPage() {
  const list = document.getElementById("locations");
  if (!list) return;
  async function load() {
    const page = await Nexus.api("GET", "/api/v1/locations?per_page=100");
    list.replaceChildren(...page.data.map((l) => Nexus.el("li", {}, Nexus.el("strong", { text: l.short }), " ", Nexus.el("span", { class: "muted", text: l.long }))));
  }
  load().catch(() => {});
  const form = document.getElementById("location-form");
  Nexus.onSubmit(form, async (data) => {
    await Nexus.api("POST", "/api/v1/locations", { short: data.get("short"), long: data.get("long") });
    form.reset();
    load().catch(() => {});
  });
}

document.addEventListener("DOMContentLoaded", () => {
  nodesPage();
  nodePage();
  usersAdminPage();
  serversAdminPage();
  settingsAdminPage();
});
