// A server's schedules, users, activity and settings pages. Buttons appear only with the
// permission their route needs; the API checks again.
"use strict";

// Friendly words for the audit log's route names.
const ACTIONS = {
  "POST /api/v1/servers/{id}/power": "Power action",
  "POST /api/v1/servers/{id}/command": "Console command",
  "POST /api/v1/servers/{id}/rename": "Renamed the server",
  "POST /api/v1/servers/{id}/reinstall": "Reinstalled",
  "PUT /api/v1/servers/{id}/startup": "Changed startup variables",
  "PUT /api/v1/servers/{id}/build": "Changed limits",
  "POST /api/v1/servers/{id}/suspend": "Suspended",
  "POST /api/v1/servers/{id}/unsuspend": "Unsuspended",
  "POST /api/v1/servers/{id}/users": "Added a user",
  "PUT /api/v1/servers/{id}/users/{user}": "Changed a user's permissions",
  "DELETE /api/v1/servers/{id}/users/{user}": "Removed a user",
  "POST /api/v1/servers/{id}/schedules": "Created a schedule",
  "PUT /api/v1/servers/{id}/schedules/{schedule}": "Changed a schedule",
  "DELETE /api/v1/servers/{id}/schedules/{schedule}": "Deleted a schedule",
  "POST /api/v1/servers/{id}/schedules/{schedule}/run": "Ran a schedule",
  "PUT /api/v1/servers/{id}/files/contents": "Wrote a file",
  "DELETE /api/v1/servers/{id}/files": "Deleted a file",
  "POST /api/v1/servers/{id}/files/rename": "Renamed a file",
  "POST /api/v1/servers/{id}/files/copy": "Copied a file",
  "POST /api/v1/servers/{id}/files/create-folder": "Created a folder",
  "POST /api/v1/servers/{id}/files/chmod": "Changed file permissions",
  "POST /api/v1/servers/{id}/files/compress": "Compressed files",
  "POST /api/v1/servers/{id}/files/decompress": "Extracted an archive",
  "DELETE /api/v1/servers/{id}": "Deleted the server",
  "schedule.run": "Schedule ran",
};

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

// --- schedules -----------------------------------------------------------------------
function schedulesPage() {
  const rows = document.getElementById("schedule-rows");
  if (!rows || !ServerPage) return;
  const base = ServerPage.base + "/schedules";
  const can = ServerPage.can;
  const error = document.getElementById("schedules-error");
  const form = document.getElementById("schedule-form");
  const editor = document.getElementById("schedule-editor");
  let editing = null;

  function taskRow(task) {
    const kind = task ? task.action.kind : "command";
    const payload = task ? task.action.payload : "";
    const select = Nexus.el("select", { "data-task": "kind", "aria-label": "Task" },
      Nexus.el("option", { value: "command", text: "Send a command", selected: kind === "command" }),
      Nexus.el("option", { value: "power", text: "Power action", selected: kind === "power" }));
    const value = Nexus.el("input", { "data-task": "payload", "aria-label": "Command or power action (start, stop, restart, kill)", value: payload });
    const offset = Nexus.el("input", { "data-task": "offset", type: "number", min: 0, value: task ? task.offset_seconds : 0, "aria-label": "Seconds after the previous task" });
    const go = Nexus.el("input", { "data-task": "continue", type: "checkbox", checked: task ? task.continue_on_failure : false });
    const row = Nexus.el("div", { class: "row wrap task" },
      Nexus.el("label", {}, "Do ", select), Nexus.el("label", {}, "What ", value),
      Nexus.el("label", {}, "Wait (s) ", offset), Nexus.el("label", { class: "inline" }, go, " go on if it fails"),
      Nexus.el("button", { type: "button", class: "link danger", text: "Remove", onclick: () => row.remove() }));
    return row;
  }

  async function load() {
    let list;
    try { list = await Nexus.api("GET", base); } catch (e) { error.textContent = e.message; return; }
    document.getElementById("schedules-empty").hidden = list.length > 0;
    rows.replaceChildren(...list.map((s) => {
      // The result comes from the activity log's recent entries; an older run shows its time.
      const result = s.last_result
        ? (s.last_result.ok ? "ok" : "failed: " + (s.last_result.error || "")) + " · " + when(s.last_result.at)
        : s.last_run_at ? "ran " + when(s.last_run_at) : "never ran";
      const actions = Nexus.el("td", { class: "actions" });
      if (can("schedule.update")) {
        actions.append(Nexus.el("button", { type: "button", class: "link", text: "Run now", onclick: async () => {
          try { await Nexus.api("POST", base + "/" + s.id + "/run"); error.textContent = ""; setTimeout(load, 1500); } catch (e) { error.textContent = e.message; }
        } }));
        actions.append(Nexus.el("button", { type: "button", class: "link", text: "Edit", onclick: () => edit(s) }));
      }
      if (can("schedule.delete")) {
        actions.append(Nexus.el("button", { type: "button", class: "link danger", text: "Delete", onclick: async () => {
          if (!confirm("Delete the schedule " + s.name + "?")) return;
          try { await Nexus.api("DELETE", base + "/" + s.id); } catch (e) { error.textContent = e.message; }
          load();
        } }));
      }
      return Nexus.el("tr", { "data-schedule": s.name },
        Nexus.el("td", {}, Nexus.el("strong", { text: s.name }), s.enabled ? "" : Nexus.el("small", { class: "muted", text: " (off)" })),
        Nexus.el("td", {}, Nexus.el("code", { text: s.cron }), " ", Nexus.el("small", { class: "muted", text: s.timezone })),
        Nexus.el("td", { text: s.enabled ? when(s.next_run_at) : "–" }),
        Nexus.el("td", { class: s.last_result && !s.last_result.ok ? "bad" : "", text: result }),
        actions);
    }));
  }

  function edit(schedule) {
    editing = schedule ? schedule.id : null;
    editor.hidden = false;
    document.getElementById("schedule-editor-title").textContent = schedule ? "Edit " + schedule.name : "New schedule";
    document.getElementById("schedule-name").value = schedule ? schedule.name : "";
    document.getElementById("schedule-cron").value = schedule ? schedule.cron : "0 4 * * *";
    document.getElementById("schedule-timezone").value = schedule ? schedule.timezone : "UTC";
    document.getElementById("schedule-enabled").checked = schedule ? schedule.enabled : true;
    document.getElementById("schedule-online").checked = schedule ? schedule.only_when_online : false;
    document.getElementById("task-rows").replaceChildren(...(schedule ? schedule.tasks.map(taskRow) : [taskRow(null)]));
    document.getElementById("schedule-cancel").hidden = !schedule;
    Nexus.clearErrors(form);
    editor.scrollIntoView({ block: "nearest" });
  }

  if (form) {
    document.getElementById("add-task").addEventListener("click", () => document.getElementById("task-rows").append(taskRow(null)));
    document.getElementById("schedule-cancel").addEventListener("click", () => {
      if (can("schedule.create")) edit(null); else editor.hidden = true;
    });
    Nexus.onSubmit(form, async (data) => {
      const tasks = [...form.querySelectorAll(".task")].map((row) => ({
        action: { kind: row.querySelector("[data-task=kind]").value, payload: row.querySelector("[data-task=payload]").value },
        offset_seconds: Number(row.querySelector("[data-task=offset]").value) || 0,
        continue_on_failure: row.querySelector("[data-task=continue]").checked,
      }));
      const body = {
        name: data.get("name"), cron: data.get("cron"), timezone: data.get("timezone"),
        enabled: data.get("enabled") === "on", only_when_online: data.get("only_when_online") === "on", tasks,
      };
      if (editing) await Nexus.api("PUT", base + "/" + editing, body);
      else await Nexus.api("POST", base, body);
      edit(null);
      if (!can("schedule.create")) editor.hidden = true;
      load();
    });
    if (can("schedule.create")) edit(null);
  }
  load();
}

// --- subusers --------------------------------------------------------------------------
function usersPage() {
  const list = document.getElementById("subusers");
  if (!list || !ServerPage) return;
  const base = ServerPage.base + "/users";
  const can = ServerPage.can;
  const error = document.getElementById("users-error");
  const editor = document.getElementById("subuser-editor");
  const form = document.getElementById("subuser-form");
  const email = document.getElementById("subuser-email");
  let catalog = [];
  let editing = null;

  function boxes(granted) {
    // Grouped by prefix (control, file, schedule, ...); only what the editor holds can be given.
    const groups = new Map();
    for (const name of catalog) {
      const group = name.split(".")[0];
      if (!groups.has(group)) groups.set(group, []);
      groups.get(group).push(name);
    }
    const out = [];
    for (const [group, names] of groups) {
      out.push(Nexus.el("fieldset", {}, Nexus.el("legend", { text: group }),
        ...names.map((name) => Nexus.el("label", { class: "inline" },
          Nexus.el("input", { type: "checkbox", name: "permission", value: name, checked: granted.has(name), disabled: !ServerPage.perms.has(name) }),
          " " + name + (ServerPage.perms.has(name) ? "" : " (kept: you do not hold it)")))));
    }
    document.getElementById("permission-boxes").replaceChildren(...out);
  }

  function open(subuser) {
    editing = subuser ? subuser.user.id : null;
    editor.hidden = false;
    document.getElementById("subuser-title").textContent = subuser ? "Permissions of " + subuser.user.username : "Add a user";
    email.value = subuser ? subuser.user.email : "";
    email.readOnly = !!subuser;
    boxes(new Set(subuser ? subuser.permissions : []));
    Nexus.clearErrors(form);
  }

  async function load() {
    let users;
    try { users = await Nexus.api("GET", base); } catch (e) { error.textContent = e.message; return; }
    document.getElementById("subusers-empty").hidden = users.length > 0;
    list.replaceChildren(...users.map((s) => Nexus.el("li", {},
      Nexus.el("strong", { text: s.user.username }), " ",
      Nexus.el("span", { class: "muted", text: s.user.email + " · " + s.permissions.length + " permissions" }), " ",
      can("user.update") ? Nexus.el("button", { type: "button", class: "link", text: "Edit", onclick: async () => { if (await catalogLoaded) open(s); } }) : null,
      can("user.delete") ? Nexus.el("button", { type: "button", class: "link danger", text: "Remove", onclick: async () => {
        if (!confirm("Remove " + s.user.username + " from this server?")) return;
        try { await Nexus.api("DELETE", base + "/" + s.user.id); } catch (e) { error.textContent = e.message; }
        load();
      } }) : null)));
  }

  // Without the permission list the editor would save an empty grant: it is not opened.
  const catalogLoaded = Nexus.api("GET", "/api/v1/permissions").then((names) => { catalog = names; return true; })
    .catch((e) => { error.textContent = e.message; return false; });
  const add = document.getElementById("subuser-add");
  if (add) add.addEventListener("click", async () => { if (await catalogLoaded) open(null); });
  document.getElementById("subuser-cancel").addEventListener("click", () => { editor.hidden = true; });
  Nexus.onSubmit(form, async (data) => {
    const permissions = data.getAll("permission");
    if (editing) await Nexus.api("PUT", base + "/" + editing, { permissions });
    else await Nexus.api("POST", base, { email: data.get("email"), permissions });
    editor.hidden = true;
    load();
  });
  load();
}

// --- activity (a server's, or the whole panel's for admins) ------------------------------
function activityPage() {
  const table = document.getElementById("activity");
  if (!table) return;
  const rows = document.getElementById("activity-rows");
  const newer = document.getElementById("activity-newer");
  const older = document.getElementById("activity-older");
  let page = 1;
  async function load() {
    let answer;
    try { answer = await Nexus.api("GET", table.dataset.source + "?per_page=50&page=" + page); }
    catch (e) { document.getElementById("activity-error").textContent = e.message; return; }
    rows.replaceChildren(...answer.data.map((e) => {
      let what = ACTIONS[e.action] || e.action;
      if (e.action === "schedule.run" && e.metadata) {
        what += ": " + (e.metadata.name || "") + (e.metadata.ok ? " (ok)" : " (failed: " + (e.metadata.error || "") + ")");
      }
      return Nexus.el("tr", {},
        Nexus.el("td", { text: when(e.at) }),
        Nexus.el("td", { text: what }),
        Nexus.el("td", { text: e.actor_name || (e.actor ? "deleted account" : "the panel") }),
        Nexus.el("td", { text: e.ip || "" }));
    }));
    newer.disabled = page === 1;
    older.disabled = !answer.pagination.has_more;
  }
  newer.addEventListener("click", () => { page = Math.max(1, page - 1); load(); });
  older.addEventListener("click", () => { page += 1; load(); });
  load();
}

// --- settings --------------------------------------------------------------------------
function settingsPage() {
  if (!ServerPage) return;
  const rename = document.getElementById("rename-form");
  if (rename) Nexus.onSubmit(rename, async (data) => {
    const server = await Nexus.api("POST", ServerPage.base + "/rename", { name: data.get("name") });
    document.querySelector(".server-head h1").textContent = server.name;
    rename.querySelector(".ok").hidden = false;
  });
  const reinstall = document.getElementById("reinstall-form");
  if (reinstall) Nexus.onSubmit(reinstall, async () => {
    if (!confirm("Run the install script again?")) return;
    await Nexus.api("POST", ServerPage.base + "/reinstall");
    reinstall.querySelector(".ok").hidden = false;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  schedulesPage();
  usersPage();
  activityPage();
  settingsPage();
});
