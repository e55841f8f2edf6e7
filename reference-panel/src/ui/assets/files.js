// The file manager: browse, edit text files, upload, download, rename, delete, new files
// and folders, compress and decompress; every action through the panel's file routes, which
// check the user's file.* permissions and pass the path to the node, confined there.
"use strict";

function fileManager() {
  const rows = document.getElementById("file-rows");
  if (!rows || !ServerPage) return;
  const files = ServerPage.base + "/files";
  const can = ServerPage.can;
  const error = document.getElementById("files-error");
  const progress = document.getElementById("files-progress");
  const selectAll = document.getElementById("select-all");
  const ARCHIVE = /\.(zip|tar|tar\.gz|tgz|tar\.zst|tar\.xz|tar\.bz2|gz)$/i;
  const fromHash = () => {
    try { return decodeURIComponent(location.hash.slice(1)) || "/"; } catch (e) { return "/"; }
  };
  let directory = fromHash();
  let entries = [];
  let loads = 0;

  const join = (dir, name) => (dir.replace(/\/+$/, "") + "/" + name).replace(/^\/+/, "/");
  const q = (name, value) => "?" + name + "=" + encodeURIComponent(value);
  const fail = (e) => { error.textContent = e.message; };
  const busy = (text) => { progress.textContent = text || ""; progress.hidden = !text; };

  function crumbs() {
    const nav = document.getElementById("crumbs");
    const parts = directory.split("/").filter(Boolean);
    const links = [Nexus.el("a", { href: "#/", text: "home" })];
    parts.forEach((part, i) => {
      links.push(" / ", Nexus.el("a", { href: "#/" + parts.slice(0, i + 1).map(encodeURIComponent).join("/"), text: part }));
    });
    nav.replaceChildren(...links);
  }

  // The checked rows' names, and the folder they were listed from (never the folder the
  // page may have moved to since).
  // Until a folder is listed, nothing acts on any folder.
  function forget() {
    rows.replaceChildren();
    entries = [];
    delete rows.dataset.dir;
    toolbar(false);
  }
  function toolbar(on) {
    ["new-file", "new-folder", "upload"].forEach((id) => {
      const control = document.getElementById(id);
      if (control) control.disabled = !on;
    });
    if (!on) selectionChanged();
  }

  function selected() {
    return [...rows.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.dataset.name);
  }
  function selectionChanged() {
    const n = selected().length;
    const compress = document.getElementById("compress");
    const remove = document.getElementById("delete-selected");
    if (compress) compress.disabled = n === 0;
    if (remove) remove.disabled = n === 0;
  }

  async function load() {
    error.textContent = "";
    crumbs();
    const mine = ++loads;
    const listed = directory;
    let answer;
    try {
      answer = await Nexus.api("GET", files + q("directory", listed));
    } catch (e) {
      if (mine !== loads) return;
      forget();
      return fail(e);
    }
    if (mine !== loads) return; // a newer listing is on its way
    entries = answer;
    rows.dataset.dir = listed;
    toolbar(true);
    entries.sort((a, b) => (a.kind === "directory") === (b.kind === "directory") ? a.name.localeCompare(b.name) : a.kind === "directory" ? -1 : 1);
    rows.replaceChildren(...entries.map((entry) => row(entry, listed)));
    selectAll.checked = false;
    selectionChanged();
  }

  function row(entry, folder) {
    const path = join(folder, entry.name);
    const isDir = entry.kind === "directory";
    const name = isDir
      ? Nexus.el("a", { href: "#" + path.split("/").map(encodeURIComponent).join("/"), class: "dir", text: entry.name + "/" })
      : can("file.read-content") && !entry.denied
        ? Nexus.el("button", { type: "button", class: "link", text: entry.name, onclick: () => openEditor(path) })
        : Nexus.el("span", { text: entry.name });
    const actions = Nexus.el("td", { class: "actions" });
    if (!isDir && can("file.read-content") && !entry.denied) {
      actions.append(Nexus.el("a", { href: files + "/download" + q("file", path), download: entry.name, text: "Download" }));
    }
    if (can("file.update")) {
      actions.append(Nexus.el("button", { type: "button", class: "link", text: "Rename", onclick: () => rename(path, entry.name) }));
    }
    if (!isDir && can("file.archive") && ARCHIVE.test(entry.name)) {
      actions.append(Nexus.el("button", { type: "button", class: "link", text: "Decompress", onclick: () => decompress(path) }));
    }
    if (can("file.delete")) {
      actions.append(Nexus.el("button", { type: "button", class: "link danger", text: "Delete", onclick: () => remove(folder, [entry.name]) }));
    }
    const check = Nexus.el("input", { type: "checkbox", "data-name": entry.name, "aria-label": "Select " + entry.name, onchange: selectionChanged });
    return Nexus.el("tr", { "data-file": entry.name },
      Nexus.el("td", { class: "check" }, check),
      Nexus.el("td", {}, name),
      Nexus.el("td", { class: "num", text: isDir ? "" : Nexus.bytes(entry.size) }),
      Nexus.el("td", { text: entry.modified ? new Date(entry.modified).toLocaleString() : "" }),
      actions);
  }

  async function rename(path, name) {
    const to = prompt("New name (or path) for " + name, name);
    if (!to || to === name) return;
    const target = to.startsWith("/") ? to : join(path.slice(0, path.length - name.length) || "/", to);
    try { await Nexus.api("POST", files + "/rename", { from: path, to: target }); } catch (e) { return fail(e); }
    load();
  }

  async function remove(folder, names) {
    if (!names.length) return;
    if (!confirm("Delete " + (names.length === 1 ? names[0] : names.length + " items") + "? This cannot be undone.")) return;
    for (const name of names) {
      try { await Nexus.api("DELETE", files + q("file", join(folder, name))); } catch (e) { fail(e); break; }
    }
    load();
  }

  async function decompress(path) {
    busy("Extracting…");
    try {
      const folder = rows.dataset.dir;
      const summary = await Nexus.api("POST", files + "/decompress", { file: path, destination: folder });
      busy("Extracted " + summary.entries + " entries (" + Nexus.bytes(summary.bytes) + ").");
    } catch (e) { busy(); fail(e); }
    load();
  }

  // --- the editor ---
  const editor = document.getElementById("editor");
  const text = document.getElementById("editor-text");
  const editorError = document.getElementById("editor-error");
  let editing = null;
  let crlf = false;
  async function openEditor(path) {
    editorError.textContent = "";
    let content;
    try {
      content = await Nexus.api("GET", files + "/contents" + q("file", path));
    } catch (e) { return fail(e); }
    // A textarea turns CRLF into LF; a file written with CRLF is saved with CRLF again.
    crlf = content.includes("\r\n");
    text.value = content;
    editing = path;
    document.getElementById("editor-name").textContent = path;
    editor.hidden = false;
    text.focus();
  }
  const save = document.getElementById("editor-save");
  if (save) save.addEventListener("click", async () => {
    editorError.textContent = "";
    save.disabled = true;
    try {
      const content = crlf ? text.value.replace(/\r?\n/g, "\r\n") : text.value;
      await Nexus.api("PUT", files + "/contents" + q("file", editing), undefined, { raw: content, contentType: "text/plain; charset=utf-8" });
      save.textContent = "Saved";
      setTimeout(() => (save.textContent = "Save"), 1500);
      load();
    } catch (e) { editorError.textContent = e.message; }
    save.disabled = false;
  });
  document.getElementById("editor-close").addEventListener("click", () => { editor.hidden = true; editing = null; });

  // --- toolbar ---
  const newFile = document.getElementById("new-file");
  if (newFile) newFile.addEventListener("click", async () => {
    const name = prompt("Name of the new file");
    if (!name) return;
    if (entries.some((e) => e.name === name) && !confirm(name + " exists; open it instead?")) return;
    const path = join(rows.dataset.dir, name);
    if (entries.some((e) => e.name === name)) return openEditor(path);
    try { await Nexus.api("PUT", files + "/contents" + q("file", path), undefined, { raw: "" }); } catch (e) { return fail(e); }
    await load();
    openEditor(path);
  });
  const newFolder = document.getElementById("new-folder");
  if (newFolder) newFolder.addEventListener("click", async () => {
    const name = prompt("Name of the new folder");
    if (!name) return;
    try { await Nexus.api("POST", files + "/create-folder", { path: join(rows.dataset.dir, name) }); } catch (e) { return fail(e); }
    load();
  });
  const upload = document.getElementById("upload");
  if (upload) upload.addEventListener("change", async () => {
    const folder = rows.dataset.dir;
    const existing = new Set(entries.map((e) => e.name));
    const replacing = [...upload.files].filter((f) => existing.has(f.name)).map((f) => f.name);
    if (replacing.length && !confirm("Replace " + replacing.join(", ") + "?")) { upload.value = ""; return; }
    for (const file of upload.files) {
      busy("Uploading " + file.name + " (" + Nexus.bytes(file.size) + ")…");
      try {
        await Nexus.api("PUT", files + "/contents" + q("file", join(folder, file.name)), undefined, { raw: file });
      } catch (e) { fail(e); break; }
    }
    busy();
    upload.value = "";
    load();
  });
  const compress = document.getElementById("compress");
  if (compress) compress.addEventListener("click", async () => {
    busy("Compressing…");
    try {
      const archive = await Nexus.api("POST", files + "/compress", { root: rows.dataset.dir, files: selected() });
      busy("Created " + archive.name + " (" + Nexus.bytes(archive.size) + ").");
    } catch (e) { busy(); fail(e); }
    load();
  });
  const removeSelected = document.getElementById("delete-selected");
  if (removeSelected) removeSelected.addEventListener("click", () => remove(rows.dataset.dir, selected()));
  selectAll.addEventListener("change", () => {
    rows.querySelectorAll("input[type=checkbox]").forEach((c) => (c.checked = selectAll.checked));
    selectionChanged();
  });

  toolbar(false); // until the first folder is listed
  window.addEventListener("hashchange", () => {
    directory = fromHash();
    editor.hidden = true;
    forget();
    load();
  });
  load();
}

document.addEventListener("DOMContentLoaded", fileManager);
