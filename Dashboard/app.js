// Atoll's dashboard: sign-in, sandboxes (live table, actions), create form, sandbox detail
// (terminal, files, history, metering charts, cost), usage and the warm pool. Every action goes
// through the API the SDK uses, with the signed-in key, so tenancy holds as it does there.

import { ago, allSandboxes, api, ApiError, apiKey, escapeHTML, setApiKey, stateBadge, TRANSITIONS } from "./api.js";
import { barChart, lineChart } from "./charts.js";
import { Console } from "./terminal.js";

const main = document.getElementById("main");
let cleanup = [];
let who = null;

function onLeave(fn) { cleanup.push(fn); }

function toast(message, bad = false) {
  const box = document.getElementById("toast");
  const item = document.createElement("div");
  item.className = bad ? "bad" : "";
  item.textContent = message;
  box.append(item);
  setTimeout(() => item.remove(), bad ? 8000 : 3000);
}

/** Runs an action, reporting its error (the API's message names what was wrong). */
async function attempt(what, fn) {
  try {
    const result = await fn();
    return result;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) { signOut(error.message); return; }
    toast(`${what}: ${error.message}`, true);
    throw error;
  }
}

function signOut(message) {
  setApiKey(null);
  who = null;
  location.hash = "#/signin";
  route(message);
}

// MARK: - Sign-in

function signIn(message) {
  main.innerHTML = `<section class="card signin" aria-labelledby="signin-title">
<h1 id="signin-title">Sign in to Atoll</h1>
<form id="signin-form">
  <label for="key">API key</label>
  <input id="key" name="key" type="password" autocomplete="off" required aria-describedby="key-hint key-error">
  <p class="hint" id="key-hint">A key from <code>atoll keys create</code> (or the daemon's <code>DATA_DIR/api-key</code>). It stays in this tab only.</p>
  <p class="error" id="key-error" role="alert">${escapeHTML(message || "")}</p>
  <button class="primary" type="submit">Sign in</button>
</form></section>`;
  const form = document.getElementById("signin-form");
  document.getElementById("key").focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setApiKey(form.key.value.trim());
    try {
      who = await api("GET", "/api/me");
      location.hash = "#/sandboxes";
    } catch (error) {
      setApiKey(null);
      document.getElementById("key-error").textContent =
        error.status === 401 ? `The key was refused: ${error.message}.` : `Cannot reach atolld: ${error.message}`;
    }
  });
}

// MARK: - Sandboxes

const columns = [
  ["name", "Name"], ["id", "Id"], ["state", "State"], ["snapshot", "Snapshot"], ["cpu", "CPU"], ["memory", "Memory"],
  ["disk", "Disk"], ["labels", "Labels"], ["createdAt", "Age"], ["lastActivityAt", "Last activity"],
];
const view = { sort: "createdAt", descending: true, label: "", state: "" };

function sandboxActions(s) {
  const state = s.state;
  const buttons = [];
  if (["stopped", "archived", "paused"].includes(state)) buttons.push(["start", "Start"]);
  if (state === "started") buttons.push(["stop", "Stop"]);
  if (state === "stopped") buttons.push(["archive", "Archive"]);
  if (state === "error" && s.recoverable) buttons.push(["recover", "Recover"]);
  if (!TRANSITIONS.has(state)) buttons.push(["delete", "Delete"]);
  return buttons.map(([action, text]) =>
    `<button type="button" data-action="${action}" data-id="${escapeHTML(s.id)}" class="${action === "delete" ? "danger" : ""}" aria-label="${text} ${escapeHTML(s.name)}">${text}</button>`).join("");
}

async function act(action, id, name) {
  if (action === "delete" && !confirm(`Delete sandbox ${name || id}? Its filesystem is removed.`)) return false;
  const path = `/api/sandbox/${encodeURIComponent(id)}`;
  await attempt(`${action} ${name || id}`, () => action === "delete" ? api("DELETE", path) : api("POST", `${path}/${action}`));
  toast(`${action === "delete" ? "Deleted" : `${action[0].toUpperCase()}${action.slice(1)}ed`} ${name || id}`);
  return true;
}

function matches(s) {
  if (view.state && s.state !== view.state) return false;
  if (view.label) {
    for (const pair of view.label.split(",").map((p) => p.trim()).filter(Boolean)) {
      const [k, v] = pair.split("=");
      if (!(k in (s.labels || {})) || (v !== undefined && s.labels[k] !== v)) return false;
    }
  }
  return true;
}

function sortValue(s, key) {
  if (key === "labels") return Object.entries(s.labels || {}).map(([k, v]) => `${k}=${v}`).join(",");
  return s[key] ?? "";
}

async function sandboxes() {
  main.innerHTML = `<h1>Sandboxes</h1>
<div class="toolbar" role="search">
  <div><label for="f-label">Labels</label><input id="f-label" placeholder="team=a,tier" value="${escapeHTML(view.label)}"></div>
  <div><label for="f-state">State</label><select id="f-state"><option value="">any</option>
    ${["started", "stopped", "archived", "paused", "error", "creating", "starting", "stopping", "archiving"].map((s) => `<option ${view.state === s ? "selected" : ""}>${s}</option>`).join("")}</select></div>
  <a class="button" href="#/create">Create sandbox</a>
  <span class="hint" id="count" aria-live="polite"></span>
</div>
<div class="table-wrap"><table id="sandboxes" aria-describedby="count"><thead><tr>
${columns.map(([key, title]) => `<th scope="col" class="${["cpu", "memory", "disk"].includes(key) ? "num" : ""} ${["snapshot", "labels", "id"].includes(key) ? "hide-narrow" : ""}"
  aria-sort="${view.sort === key ? (view.descending ? "descending" : "ascending") : "none"}"><button type="button" data-sort="${key}">${title}</button></th>`).join("")}
<th scope="col">Actions</th></tr></thead><tbody></tbody></table></div>`;
  const body = main.querySelector("tbody");
  let latest = [];
  let previous = [];
  const render = () => {
    const started = performance.now();
    const shown = latest.filter(matches).sort((a, b) => {
      const x = sortValue(a, view.sort), y = sortValue(b, view.sort);
      const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return view.descending ? -order : order;
    });
    document.getElementById("count").textContent = `${shown.length} of ${latest.length} sandboxes`;
    const rows = shown.map((s) => `<tr data-id="${escapeHTML(s.id)}">
<td><a href="#/sandbox/${encodeURIComponent(s.id)}">${escapeHTML(s.name)}</a></td>
<td class="hide-narrow"><code>${escapeHTML(s.id.slice(0, 8))}</code></td>
<td>${stateBadge(s.state)}${s.errorReason ? ` <span class="error" title="${escapeHTML(s.errorReason)}">${escapeHTML(s.errorReason.slice(0, 60))}</span>` : ""}</td>
<td class="hide-narrow">${escapeHTML(s.snapshot || "")}</td>
<td class="num">${s.cpu}</td><td class="num">${s.memory} GiB</td><td class="num">${s.disk} GiB</td>
<td class="labels hide-narrow">${Object.entries(s.labels || {}).map(([k, v]) => `<span>${escapeHTML(k)}=${escapeHTML(v)}</span>`).join("")}</td>
<td>${escapeHTML(ago(s.createdAt))}</td><td>${escapeHTML(ago(s.lastActivityAt || s.updatedAt))}</td>
<td class="actions">${sandboxActions(s)}</td></tr>`);
    // Only rows that changed are replaced: a refresh of an unchanged table touches no DOM.
    const sameShape = rows.length === previous.length && body.rows.length === rows.length;
    const changed = sameShape ? rows.filter((html, i) => html !== previous[i]).length : rows.length;
    if (!sameShape || changed > 40) {
      body.innerHTML = rows.join("");
    } else if (changed > 0) {
      rows.forEach((html, i) => { if (html !== previous[i]) body.rows[i].outerHTML = html; });
    }
    previous = rows;
    // How long the table took, layout included (read by the browser tests' 500-row measurement).
    void body.offsetHeight;
    const ms = performance.now() - started;
    window.atollRenders = [...(window.atollRenders || []).slice(-50), { rows: shown.length, changed, ms }];
  };
  const refresh = async () => {
    try {
      latest = await allSandboxes();
      render();
    } catch (error) {
      if (error.status === 401) signOut(error.message);
    }
  };
  main.querySelector("#f-label").addEventListener("input", (e) => { view.label = e.target.value; render(); });
  main.querySelector("#f-state").addEventListener("change", (e) => { view.state = e.target.value; render(); });
  main.querySelector("thead").addEventListener("click", (e) => {
    const key = e.target.closest("button")?.dataset.sort;
    if (!key) return;
    view.descending = view.sort === key ? !view.descending : false;
    view.sort = key;
    sandboxes();
  });
  body.addEventListener("click", async (e) => {
    const button = e.target.closest("button[data-action]");
    if (!button) return;
    const s = latest.find((x) => x.id === button.dataset.id);
    button.disabled = true;
    try { await act(button.dataset.action, button.dataset.id, s?.name); } catch { /* reported */ }
    await refresh();
  });
  await refresh();
  const timer = setInterval(refresh, 2000);
  onLeave(() => clearInterval(timer));
}

// MARK: - Create

function parsePairs(text, what) {
  const result = {};
  for (const line of text.split(/\n|,/).map((l) => l.trim()).filter(Boolean)) {
    const at = line.indexOf("=");
    if (at <= 0) throw new Error(`${what}: "${line}" is not KEY=VALUE`);
    result[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return result;
}

function create() {
  main.innerHTML = `<h1>Create a sandbox</h1>
<form id="create-form" class="card">
<div class="grid">
  <div><label for="c-name">Name</label><input id="c-name" name="name" placeholder="(the id)"></div>
  <div><label for="c-snapshot">Snapshot</label><input id="c-snapshot" name="snapshot" value="default"></div>
  <div><label for="c-language">Language</label><select id="c-language" name="language"><option>python</option><option>typescript</option><option>javascript</option></select></div>
  <div><label for="c-cpu">vCPUs</label><input id="c-cpu" name="cpu" type="number" min="1" max="64" value="1"></div>
  <div><label for="c-memory">Memory (GiB)</label><input id="c-memory" name="memory" type="number" min="1" max="256" value="1"></div>
  <div><label for="c-disk">Disk (GiB)</label><input id="c-disk" name="disk" type="number" min="1" max="1024" value="3"></div>
  <div><label for="c-labels">Labels</label><input id="c-labels" name="labels" placeholder="team=a, tier=1"></div>
  <div><label for="c-network">Network</label><select id="c-network" name="network"><option value="open">open</option><option value="block">block all</option><option value="allow">allow list</option></select></div>
  <div><label for="c-allow">Allow list (CIDRs)</label><input id="c-allow" name="allow" placeholder="10.0.0.0/8,192.0.2.0/24"></div>
  <div><label for="c-autostop">Auto-stop (min, 0 never)</label><input id="c-autostop" name="autostop" type="number" min="0" value="15"></div>
  <div><label for="c-autoarchive">Auto-archive (min)</label><input id="c-autoarchive" name="autoarchive" type="number" min="0" value="10080"></div>
  <div><label for="c-autodelete">Auto-delete (min, −1 never)</label><input id="c-autodelete" name="autodelete" type="number" min="-1" value="-1"></div>
  <div><label><input type="checkbox" name="ephemeral" id="c-ephemeral"> Ephemeral (deleted when stopped)</label></div>
</div>
<label for="c-env">Environment</label><textarea id="c-env" name="env" rows="3" placeholder="KEY=VALUE, one per line"></textarea>
<p class="error" id="create-error" role="alert"></p>
<button class="primary" type="submit">Create</button>
</form>`;
  const form = document.getElementById("create-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("create-error");
    error.textContent = "";
    let body;
    try {
      const labels = parsePairs(form.labels.value, "labels");
      labels["code-toolbox-language"] = form.language.value;
      body = {
        snapshot: form.snapshot.value || undefined, cpu: +form.cpu.value, memory: +form.memory.value, disk: +form.disk.value,
        labels, env: parsePairs(form.env.value, "environment"), autoStopInterval: +form.autostop.value,
        autoArchiveInterval: +form.autoarchive.value, autoDeleteInterval: form.ephemeral.checked ? 0 : +form.autodelete.value,
      };
      if (form.name.value.trim()) body.name = form.name.value.trim();
      if (form.network.value === "block") body.networkBlockAll = true;
      if (form.network.value === "allow") body.networkAllowList = form.allow.value.trim();
    } catch (e) {
      error.textContent = e.message;
      return;
    }
    form.querySelector("button[type=submit]").disabled = true;
    try {
      const sandbox = await api("POST", "/api/sandbox", { json: body });
      toast(`Created ${sandbox.name} (${sandbox.state})`);
      location.hash = `#/sandbox/${encodeURIComponent(sandbox.id)}`;
    } catch (e) {
      error.textContent = e.message;
      form.querySelector("button[type=submit]").disabled = false;
    }
  });
}

// MARK: - Sandbox detail

async function detail(id) {
  const path = `/api/sandbox/${encodeURIComponent(id)}`;
  let s;
  try {
    s = await api("GET", path);
  } catch (error) {
    main.innerHTML = `<h1>Sandbox</h1><p class="error" role="alert">${escapeHTML(error.message)}</p><p><a href="#/sandboxes">All sandboxes</a></p>`;
    return;
  }
  main.innerHTML = `<p><a href="#/sandboxes">← All sandboxes</a></p>
<h1>${escapeHTML(s.name)} <span id="d-state">${stateBadge(s.state)}</span></h1>
<div class="actions" id="d-actions"></div>
<p class="error" id="d-error" role="alert"></p>
<section class="card"><dl class="kv" id="d-info"></dl></section>
<div class="grid">
<form class="card" id="d-resize" aria-label="Resize"><h2>Resources</h2>
  <div class="grid"><div><label for="r-cpu">vCPUs</label><input id="r-cpu" name="cpu" type="number" min="1" value="${s.cpu}"></div>
  <div><label for="r-memory">Memory (GiB)</label><input id="r-memory" name="memory" type="number" min="1" value="${s.memory}"></div>
  <div><label for="r-disk">Disk (GiB)</label><input id="r-disk" name="disk" type="number" min="1" value="${s.disk}"></div></div>
  <p class="hint">CPU and memory grow while running; disk, or any decrease, while stopped.</p><button type="submit">Resize</button></form>
<form class="card" id="d-labels" aria-label="Labels"><h2>Labels</h2>
  <label for="l-labels">KEY=VALUE, comma separated</label><input id="l-labels" name="labels" value="${escapeHTML(Object.entries(s.labels || {}).map(([k, v]) => `${k}=${v}`).join(", "))}">
  <button type="submit">Save labels</button></form>
<form class="card" id="d-intervals" aria-label="Intervals"><h2>Intervals (minutes)</h2>
  <div class="grid"><div><label for="i-stop">Auto-stop</label><input id="i-stop" name="autostop" type="number" min="0" value="${s.autoStopInterval ?? 15}"></div>
  <div><label for="i-archive">Auto-archive</label><input id="i-archive" name="autoarchive" type="number" min="0" value="${s.autoArchiveInterval ?? 10080}"></div>
  <div><label for="i-delete">Auto-delete</label><input id="i-delete" name="autodelete" type="number" min="-1" value="${s.autoDeleteInterval ?? -1}"></div></div>
  <button type="submit">Save intervals</button></form>
<form class="card" id="d-network" aria-label="Network"><h2>Network</h2>
  <label for="n-mode">Egress</label><select id="n-mode" name="mode"><option value="open">open</option><option value="block" ${s.networkBlockAll ? "selected" : ""}>block all</option><option value="allow" ${s.networkAllowList ? "selected" : ""}>allow list</option></select>
  <label for="n-allow">Allow list (CIDRs)</label><input id="n-allow" name="allow" value="${escapeHTML(s.networkAllowList || "")}">
  <button type="submit">Apply</button></form>
</div>
<div class="tabs" role="tablist" aria-label="Sandbox views">
  ${["terminal", "files", "metrics", "history"].map((t, i) => `<button type="button" role="tab" id="tab-${t}" aria-selected="${i === 0}" aria-controls="panel">${t[0].toUpperCase()}${t.slice(1)}</button>`).join("")}
</div>
<section class="card" id="panel" role="tabpanel"></section>`;
  const info = document.getElementById("d-info");
  const renderInfo = (x) => {
    s = x;
    document.getElementById("d-state").innerHTML = stateBadge(x.state);
    document.getElementById("d-error").textContent = x.errorReason ? `Error: ${x.errorReason}` : "";
    const rows = [["Id", x.id], ["Snapshot", x.snapshot], ["Language", x.labels?.["code-toolbox-language"]], ["Resources", `${x.cpu} vCPU, ${x.memory} GiB memory, ${x.disk} GiB disk`],
      ["Labels", Object.entries(x.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ")], ["Network", x.networkBlockAll ? "blocked" : x.networkAllowList ? `allow ${x.networkAllowList}` : "open"],
      ["Created", `${x.createdAt} (${ago(x.createdAt)} ago)`], ["Last activity", x.lastActivityAt || ""], ["Public", String(!!x.public)]];
    info.innerHTML = rows.map(([k, v]) => `<dt>${escapeHTML(k)}</dt><dd>${escapeHTML(v ?? "")}</dd>`).join("");
    document.getElementById("d-actions").innerHTML = sandboxActions(x);
  };
  renderInfo(s);
  const refresh = async () => { try { renderInfo(await api("GET", path)); } catch (e) { if (e.status === 404) location.hash = "#/sandboxes"; } };
  const timer = setInterval(refresh, 2000);
  onLeave(() => clearInterval(timer));
  document.getElementById("d-actions").addEventListener("click", async (e) => {
    const b = e.target.closest("button[data-action]");
    if (!b) return;
    b.disabled = true;
    try {
      if (await act(b.dataset.action, id, s.name) && b.dataset.action === "delete") { location.hash = "#/sandboxes"; return; }
    } catch { /* reported */ }
    await refresh();
  });
  const submit = (formId, what, fn) => document.getElementById(formId).addEventListener("submit", async (e) => {
    e.preventDefault();
    try { await attempt(what, () => fn(e.target)); toast(`${what}: done`); await refresh(); } catch { /* reported */ }
  });
  submit("d-resize", "Resize", (f) => api("POST", `${path}/resize`, { json: { cpu: +f.cpu.value, memory: +f.memory.value, disk: +f.disk.value } }));
  submit("d-labels", "Labels", (f) => api("PUT", `${path}/labels`, { json: { labels: parsePairs(f.labels.value, "labels") } }));
  submit("d-intervals", "Intervals", async (f) => {
    await api("POST", `${path}/autostop/${+f.autostop.value}`);
    await api("POST", `${path}/autoarchive/${+f.autoarchive.value}`);
    await api("POST", `${path}/autodelete/${+f.autodelete.value}`);
  });
  submit("d-network", "Network", (f) => api("POST", `${path}/network-settings`, {
    json: f.mode.value === "block" ? { networkBlockAll: true } : { networkBlockAll: false, networkAllowList: f.mode.value === "allow" ? f.allow.value : "" },
  }));
  const panel = document.getElementById("panel");
  let closePanel = () => {};
  const show = async (tab) => {
    closePanel();
    closePanel = () => {};
    document.querySelectorAll("[role=tab]").forEach((b) => b.setAttribute("aria-selected", String(b.id === `tab-${tab}`)));
    if (tab === "terminal") {
      if (s.state !== "started") { panel.innerHTML = `<p class="hint">Start the sandbox to open a terminal.</p>`; return; }
      const terminal = new Console(panel, id);
      closePanel = () => terminal.close();
    } else if (tab === "files") {
      closePanel = await fileBrowser(panel, s);
    } else if (tab === "metrics") {
      closePanel = await metrics(panel, s);
    } else {
      await history(panel, s);
    }
  };
  document.querySelector(".tabs").addEventListener("click", (e) => { const b = e.target.closest("[role=tab]"); if (b) show(b.id.slice(4)); });
  onLeave(() => closePanel());
  show("terminal");
}

async function fileBrowser(panel, s) {
  const base = `/toolbox/${encodeURIComponent(s.id)}`;
  let dir = "";
  panel.innerHTML = `<div class="toolbar"><div style="flex:1"><label for="fb-path">Folder</label><input id="fb-path"></div>
<button type="button" id="fb-go">Open</button><button type="button" id="fb-up">Up</button>
<div><label for="fb-upload">Upload a file here</label><input id="fb-upload" type="file"></div></div>
<div class="table-wrap"><table id="files"><thead><tr><th scope="col">Name</th><th scope="col" class="num">Size</th><th scope="col">Modified</th><th scope="col">Actions</th></tr></thead><tbody></tbody></table></div>`;
  const pathInput = panel.querySelector("#fb-path");
  const load = async (path) => {
    if (s.state !== "started") { panel.querySelector("tbody").innerHTML = `<tr><td colspan="4">Start the sandbox to browse its files.</td></tr>`; return; }
    if (!path) path = await api("GET", `${base}/user-home-dir`).then((r) => r.dir);
    const entries = await attempt("List files", () => api("GET", `${base}/files?path=${encodeURIComponent(path)}`));
    dir = path;
    pathInput.value = path;
    panel.querySelector("tbody").innerHTML = entries.sort((a, b) => (b.isDir - a.isDir) || a.name.localeCompare(b.name)).map((f) => {
      const full = `${path.replace(/\/$/, "")}/${f.name}`;
      return `<tr><td>${f.isDir ? `<button type="button" class="link-dir" data-open="${escapeHTML(full)}">${escapeHTML(f.name)}/</button>` : escapeHTML(f.name)}</td>
<td class="num">${f.isDir ? "" : f.size}</td><td>${escapeHTML(f.modTime.slice(0, 19).replace("T", " "))}</td>
<td class="actions">${f.isDir ? "" : `<button type="button" data-download="${escapeHTML(full)}" aria-label="Download ${escapeHTML(f.name)}">Download</button>`}
<button type="button" class="danger" data-delete="${escapeHTML(full)}" data-dir="${f.isDir}" aria-label="Delete ${escapeHTML(f.name)}">Delete</button></td></tr>`;
    }).join("") || `<tr><td colspan="4" class="hint">Empty folder</td></tr>`;
  };
  panel.querySelector("#fb-go").addEventListener("click", () => load(pathInput.value));
  panel.querySelector("#fb-up").addEventListener("click", () => load(dir.replace(/\/[^/]+\/?$/, "") || "/"));
  pathInput.addEventListener("keydown", (e) => { if (e.key === "Enter") load(pathInput.value); });
  panel.querySelector("#fb-upload").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file, file.name);
    const target = `${dir.replace(/\/$/, "")}/${file.name}`;
    try {
      await attempt("Upload", () => api("POST", `${base}/files/upload?path=${encodeURIComponent(target)}`, { raw: form }));
      toast(`Uploaded ${target}`);
    } catch { /* reported */ }
    e.target.value = "";
    await load(dir);
  });
  panel.querySelector("tbody").addEventListener("click", async (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    if (b.dataset.open) return load(b.dataset.open);
    if (b.dataset.download) {
      const blob = await attempt("Download", () => api("GET", `${base}/files/download?path=${encodeURIComponent(b.dataset.download)}`, { as: "blob" }));
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = b.dataset.download.split("/").pop();
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
      return;
    }
    if (b.dataset.delete && confirm(`Delete ${b.dataset.delete}?`)) {
      try { await attempt("Delete", () => api("DELETE", `${base}/files?path=${encodeURIComponent(b.dataset.delete)}&recursive=${b.dataset.dir}`)); } catch { /* reported */ }
      await load(dir);
    }
  });
  try { await load(""); } catch { /* reported */ }
  return () => {};
}

async function metrics(panel, s) {
  const draw = async () => {
    const to = new Date();
    const from = new Date(to - 10 * 60 * 1000);
    const range = `from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
    const [data, usage] = await Promise.all([
      api("GET", `/api/sandbox/${encodeURIComponent(s.id)}/telemetry/metrics?${range}`),
      api("GET", `/api/usage?sandboxId=${encodeURIComponent(s.id)}&from=${encodeURIComponent(new Date(Date.parse(s.createdAt) - 1000).toISOString())}`),
    ]);
    const series = (name) => (data.series.find((x) => x.metricName === name)?.dataPoints || []).map((p) => [Date.parse(p.timestamp), p.value]);
    const cost = usage.total.estimatedCost;
    panel.innerHTML = `<p id="cost">Cost so far: <strong>${cost.toFixed(6)} ${escapeHTML(usage.prices.currency)}</strong>
(${usage.total.vcpuSecondsAllocated.toFixed(0)} vCPU·s, ${usage.total.memoryGiBSecondsAllocated.toFixed(0)} GiB·s memory, ${usage.total.diskGiBSecondsAllocated.toFixed(0)} GiB·s disk allocated)</p>
${lineChart([{ name: "CPU %", points: series("daytona.sandbox.cpu.utilization") }], { title: "CPU, last 10 minutes (per second, from the meter)", format: (v) => `${v.toFixed(1)} %` })}
${lineChart([{ name: "memory", points: series("daytona.sandbox.memory.usage") }], { title: "Memory, last 10 minutes", format: (v) => `${(v / 1048576).toFixed(1)} MiB` })}`;
  };
  await draw().catch((e) => { panel.innerHTML = `<p class="error">${escapeHTML(e.message)}</p>`; });
  const timer = setInterval(() => draw().catch(() => {}), 5000);
  return () => clearInterval(timer);
}

async function history(panel, s) {
  try {
    const items = await api("GET", `/api/sandbox/${encodeURIComponent(s.id)}/history`);
    panel.innerHTML = `<div class="table-wrap"><table><thead><tr><th scope="col">When</th><th scope="col">From</th><th scope="col">To</th><th scope="col">Why</th></tr></thead><tbody>
${items.map((h) => `<tr><td>${escapeHTML(h.at)}</td><td>${escapeHTML(h.from || "")}</td><td>${stateBadge(h.to)}</td><td>${escapeHTML(h.reason || "")}</td></tr>`).join("")}</tbody></table></div>`;
  } catch (e) {
    panel.innerHTML = `<p class="error">${escapeHTML(e.message)}</p>`;
  }
}

// MARK: - Usage

const usageView = { range: "86400", group: "sandbox" };

async function usage() {
  main.innerHTML = `<h1>Usage</h1>
<form class="toolbar" id="u-form">
  <div><label for="u-range">Range</label><select id="u-range">${[["3600", "last hour"], ["86400", "last 24 hours"], ["604800", "last 7 days"], ["2592000", "last 30 days"]]
    .map(([v, t]) => `<option value="${v}" ${usageView.range === v ? "selected" : ""}>${t}</option>`).join("")}</select></div>
  <div><label for="u-group">Group by</label><input id="u-group" value="${escapeHTML(usageView.group)}" placeholder="sandbox or label:KEY"></div>
  <button type="submit">Show</button><button type="button" id="u-csv">Download CSV</button>
</form><p class="error" id="u-error" role="alert"></p><div id="u-chart"></div>
<div class="table-wrap"><table id="usage"><thead><tr><th scope="col">Group</th><th scope="col" class="num">vCPU·s</th><th scope="col" class="num">CPU s used</th>
<th scope="col" class="num">Memory GiB·s</th><th scope="col" class="num">Disk GiB·s</th><th scope="col" class="num">Cost</th></tr></thead><tbody></tbody><tfoot></tfoot></table></div>`;
  let report = null;
  const name = (item) => item.label ?? item.name ?? item.sandboxId ?? "";
  const row = (item, total = false) => `<tr${total ? ' class="total"' : ""}><td>${total ? "<strong>Total</strong>" : escapeHTML(name(item))}</td>
<td class="num">${item.vcpuSecondsAllocated.toFixed(0)}</td><td class="num">${item.cpuSecondsUsed.toFixed(1)}</td>
<td class="num">${item.memoryGiBSecondsAllocated.toFixed(0)}</td><td class="num">${item.diskGiBSecondsAllocated.toFixed(0)}</td>
<td class="num" data-cost="${item.estimatedCost}">${item.estimatedCost.toFixed(6)}</td></tr>`;
  const load = async () => {
    usageView.range = main.querySelector("#u-range").value;
    usageView.group = main.querySelector("#u-group").value.trim() || "sandbox";
    const to = new Date();
    const from = new Date(to - +usageView.range * 1000);
    try {
      report = await api("GET", `/api/usage?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}&groupBy=${encodeURIComponent(usageView.group)}`);
      main.querySelector("#u-error").textContent = "";
    } catch (e) {
      main.querySelector("#u-error").textContent = e.message;
      return;
    }
    main.querySelector("#u-chart").innerHTML = barChart(report.items.map((i) => ({ label: name(i), value: i.estimatedCost })),
      { title: `Estimated cost (${report.prices.currency}) per ${report.groupBy}`, format: (v) => v.toFixed(4) });
    main.querySelector("#usage tbody").innerHTML = report.items.map((i) => row(i)).join("");
    main.querySelector("#usage tfoot").innerHTML = row(report.total, true);
  };
  main.querySelector("#u-form").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  main.querySelector("#u-csv").addEventListener("click", () => {
    if (!report) return;
    const quote = (v) => `"${String(v).replace(/"/g, '""')}"`;
    const lines = [["group", "vcpu_seconds", "cpu_seconds_used", "memory_gib_seconds", "disk_gib_seconds", "archive_gib_seconds", "estimated_cost"].join(",")];
    for (const i of [...report.items, { ...report.total, label: "total" }]) {
      lines.push([quote(name(i)), i.vcpuSecondsAllocated, i.cpuSecondsUsed, i.memoryGiBSecondsAllocated, i.diskGiBSecondsAllocated, i.archiveGiBSecondsAllocated, i.estimatedCost].join(","));
    }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
    link.download = `atoll-usage-${report.groupBy.replace(/[^a-z0-9]+/gi, "-")}.csv`;
    link.click();
  });
  await load();
}

// MARK: - Warm pool

async function pool() {
  main.innerHTML = `<h1>Warm pool</h1><p class="hint">Sandboxes started ahead of creates, per snapshot and size (configured on atolld).</p>
<div class="table-wrap"><table id="pool"><thead><tr><th scope="col">Snapshot</th><th scope="col" class="num">CPU</th><th scope="col" class="num">Memory</th><th scope="col" class="num">Disk</th><th scope="col" class="num">Target</th><th scope="col" class="num">Ready</th></tr></thead><tbody></tbody></table></div>`;
  try {
    const pools = await api("GET", "/api/warm-pool");
    main.querySelector("tbody").innerHTML = pools.map((p) => `<tr><td>${escapeHTML(p.snapshot)}</td><td class="num">${p.cpu}</td><td class="num">${p.memory} GiB</td>
<td class="num">${p.disk} GiB</td><td class="num">${p.target ?? p.size ?? ""}</td><td class="num">${p.ready ?? p.available ?? ""}</td></tr>`).join("")
      || `<tr><td colspan="6" class="hint">No warm pool is configured.</td></tr>`;
  } catch (e) {
    main.querySelector("tbody").innerHTML = `<tr><td colspan="6" class="error">${escapeHTML(e.message)}</td></tr>`;
  }
}

// MARK: - Router

async function route(message) {
  for (const fn of cleanup.splice(0)) { try { fn(); } catch { /* best effort */ } }
  const hash = location.hash || "#/sandboxes";
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", hash.startsWith(`#/${a.dataset.nav}`)));
  if (!apiKey()) { document.getElementById("who").textContent = ""; document.getElementById("sign-out").hidden = true; return signIn(message); }
  if (!who) {
    try { who = await api("GET", "/api/me"); } catch (e) { setApiKey(null); return signIn(e.status === 401 ? `The key was refused: ${e.message}.` : e.message); }
  }
  document.getElementById("who").textContent = `Organization: ${who.organizationId}${who.admin ? " (admin)" : ""}`;
  document.getElementById("sign-out").hidden = false;
  main.focus({ preventScroll: true });
  const [, page, arg] = hash.split("/");
  if (page === "sandbox" && arg) return detail(decodeURIComponent(arg));
  if (page === "create") return create();
  if (page === "usage") return usage();
  if (page === "pool") return pool();
  return sandboxes();
}

document.getElementById("sign-out").addEventListener("click", () => signOut(""));
window.addEventListener("hashchange", () => route());
route();
