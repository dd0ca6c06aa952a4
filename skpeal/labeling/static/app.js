// skpeal label: the page. Plain JavaScript, no dependency, served by skpeal itself.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
let client = sessionStorage.getItem("skpeal-client");
if (!client) {
  client = "tab-" + Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
  sessionStorage.setItem("skpeal-client", client);
}

let classes = [];
let items = [];            // the batch shown: [{image_id, file, suggestion, probability}]
const choice = {};         // image_id -> class name, or null (skip)
let focus = 0;
let status = null;
let loading = false;
let submitting = false;

const $ = (id) => document.getElementById(id);

function api(path, body) {
  const headers = {};
  if (token) headers["X-Skpeal-Token"] = token;
  const opts = { headers };
  if (body !== undefined) {
    opts.method = "POST";
    headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  return fetch(path, opts).then(async (r) => {
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.detail || r.statusText);
    return data;
  });
}

function imageUrl(id) {
  return "api/image/" + id + (token ? "?token=" + encodeURIComponent(token) : "");
}

function showError(msg) {
  const el = $("error");
  el.hidden = !msg;
  el.textContent = msg || "";
}

function pct(p) { return p == null ? "–" : Math.round(p * 100) + "%"; }

function renderStatus() {
  if (!status) return;
  classes = status.classes || classes;
  const n = status.n_images || 0, done = (status.n_labelled || 0) + (status.n_skipped || 0);
  $("progress-bar").style.width = (n ? (100 * done / n) : 0) + "%";
  $("progress-text").textContent = (status.n_labelled || 0) + " labelled, " +
    (status.n_skipped || 0) + " skipped / " + n + " images";
  $("model-info").textContent = status.ready
    ? "model round " + status.round + " · estimated accuracy " + pct(status.estimated_accuracy)
    : "";
  const st = status.state || {};
  const busy = $("busy");
  if (!status.ready || status.busy) {
    busy.hidden = false;
    let text = "Working…";
    if (st.phase === "encoding") text = "Encoding the images: " + st.done + " / " + st.total;
    else if (st.phase === "training") text = "Training the model on " + st.total + " labels…";
    else if (st.phase === "scoring") text = "Scoring the images: " + st.done + " / " + st.total;
    else if (!status.ready) text = "Starting…";
    $("busy-text").textContent = text + (status.ready ? " (you can keep using the page)" : "");
    const frac = st.total ? st.done / st.total : 0;
    $("busy-bar").style.width = (st.phase === "training" ? 30 : 100 * frac) + "%";
  } else {
    busy.hidden = true;
  }
  showError(status.error);
  const table = $("counts");
  table.innerHTML = "";
  classes.forEach((c, i) => {
    const tr = document.createElement("tr");
    const key = i < 10 ? String((i + 1) % 10) : "";
    tr.innerHTML = "<td class=key></td><td class=name></td><td class=n></td>";
    tr.children[0].textContent = key;
    tr.children[1].textContent = c;
    tr.children[2].textContent = (status.counts || {})[c] || 0;
    tr.dataset.cls = c;
    table.appendChild(tr);
  });
  renderCurve(status.rounds || []);
  renderStopSuggestion(status.stop_suggestion);
}

// The stopping criteria's suggestion (skpeal.labeling.stop): a line, never an automatic stop.
function renderStopSuggestion(sug) {
  const el = $("stop-suggestion");
  el.hidden = !sug;
  if (!sug) return;
  el.textContent = "Suggestion: " + sug.message;
  el.classList.toggle("stop", !!sug.should_stop);
  el.title = (sug.criteria || []).map((c) => c.name + ": " + c.message).join("\n");
}

function renderCurve(rounds) {
  const svg = $("curve");
  const W = 240, H = 140, L = 30, B = 20, T = 8, R = 8;
  const pts = rounds.filter((r) => r.estimated_accuracy != null);
  let s = "<line x1='" + L + "' y1='" + (H - B) + "' x2='" + (W - R) + "' y2='" + (H - B) +
    "' stroke='#999'/><line x1='" + L + "' y1='" + T + "' x2='" + L + "' y2='" + (H - B) +
    "' stroke='#999'/>";
  for (const v of [0, 0.5, 1]) {
    const y = H - B - v * (H - B - T);
    s += "<text x='2' y='" + (y + 4) + "' font-size='10' fill='#667'>" + v * 100 + "%</text>";
  }
  if (pts.length) {
    const maxX = Math.max(1, pts.length - 1);
    const xy = pts.map((r, i) => [L + (W - L - R) * (pts.length === 1 ? 0 : i / maxX),
                                  H - B - r.estimated_accuracy * (H - B - T)]);
    s += "<polyline fill='none' stroke='#2f6db5' stroke-width='2' points='" +
      xy.map((p) => p.join(",")).join(" ") + "'/>";
    xy.forEach((p, i) => {
      s += "<circle class='pt' cx='" + p[0] + "' cy='" + p[1] + "' r='3' fill='#2f6db5'>" +
        "<title>round " + pts[i].round + ": " + pts[i].n_labels + " labels, " +
        pct(pts[i].estimated_accuracy) + "</title></circle>";
    });
    s += "<text x='" + L + "' y='" + (H - 4) + "' font-size='10' fill='#667'>round 0</text>";
    s += "<text x='" + (W - R - 50) + "' y='" + (H - 4) + "' font-size='10' fill='#667'>round " +
      pts[pts.length - 1].round + "</text>";
  }
  svg.innerHTML = s;
}

function renderBatch() {
  const grid = $("grid");
  grid.innerHTML = "";
  if (!items.length) {
    const div = document.createElement("div");
    div.className = "empty";
    div.id = "empty";
    div.textContent = status && status.ready
      ? (status.busy ? "The model is learning from your labels; the next batch comes next."
                     : "Nothing left to label.")
      : "Preparing the images…";
    grid.appendChild(div);
  }
  items.forEach((it, i) => {
    const card = document.createElement("div");
    card.className = "card" + (i === focus ? " focus" : "") +
      (choice[it.image_id] === null ? " skipped" : "");
    card.dataset.imageId = it.image_id;
    card.dataset.label = choice[it.image_id] === null ? "" : choice[it.image_id];
    const img = document.createElement("img");
    img.src = imageUrl(it.image_id);
    img.alt = it.file;
    const file = document.createElement("div");
    file.className = "file";
    file.textContent = it.file;
    const sug = document.createElement("div");
    sug.className = "suggest";
    sug.textContent = "model: " + it.suggestion + " (" + pct(it.probability) + ")";
    const sel = document.createElement("select");
    sel.setAttribute("aria-label", "class of " + it.file);
    classes.forEach((c, k) => {
      const o = document.createElement("option");
      o.value = c;
      o.textContent = (k < 10 ? ((k + 1) % 10) + "  " : "") + c;
      sel.appendChild(o);
    });
    const skip = document.createElement("option");
    skip.value = "__skip__";
    skip.textContent = "s  not sure (skip)";
    sel.appendChild(skip);
    sel.value = choice[it.image_id] === null ? "__skip__" : choice[it.image_id];
    sel.addEventListener("change", () => {
      choice[it.image_id] = sel.value === "__skip__" ? null : sel.value;
      focus = i;
      renderBatch();
    });
    sel.addEventListener("keydown", (e) => { if (/^[0-9su]$|^Enter$/.test(e.key)) e.preventDefault(); });
    card.addEventListener("click", () => { focus = i; renderBatch(); });
    card.append(img, file, sug, sel);
    grid.appendChild(card);
  });
  $("submit").disabled = !items.length || submitting;
}

async function loadBatch() {
  if (loading) return;
  loading = true;
  try {
    const data = await api("api/batch?client=" + encodeURIComponent(client));
    const old = items.map((x) => x.image_id).join(",");
    items = data.items || [];
    for (const it of items) if (!(it.image_id in choice)) choice[it.image_id] = it.suggestion;
    if (items.map((x) => x.image_id).join(",") !== old) focus = 0;
    renderBatch();
  } catch (e) {
    showError(e.message);
  } finally {
    loading = false;
  }
}

async function refresh() {
  try {
    status = await api("api/status");
    renderStatus();
    if (status.ready && !items.length) await loadBatch();
  } catch (e) {
    showError("lost the server: " + e.message);
  }
  const fast = !status || !status.ready || status.busy || !items.length;
  setTimeout(refresh, fast ? 500 : 3000);
}

async function submit() {
  if (!items.length || submitting) return;
  submitting = true;
  $("submit").disabled = true;
  const answers = items.map((it) => ({ image_id: it.image_id, label: choice[it.image_id] }));
  try {
    const r = await api("api/answers", { client, answers });
    $("message").textContent = "Saved " + r.saved + " answers.";
    items = [];
    renderBatch();
    status = await api("api/status");
    renderStatus();
    renderBatch();
  } catch (e) {
    showError(e.message);
  } finally {
    submitting = false;
    $("submit").disabled = !items.length;
  }
}

async function undo() {
  try {
    const r = await api("api/undo", { client });
    if (!r.undone) { $("message").textContent = "Nothing to undo."; return; }
    $("message").textContent = "Undone: " + (r.undone.label || "skip") + " (image " +
      r.undone.image_id + "); it is back in the batch.";
    delete choice[r.undone.image_id];
    items = [];
    await loadBatch();
  } catch (e) {
    showError(e.message);
  }
}

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "Enter") { e.preventDefault(); submit(); return; }
  if (e.key === "u") { e.preventDefault(); undo(); return; }
  if (!items.length) return;
  const it = items[focus];
  if (/^[0-9]$/.test(e.key)) {
    const k = e.key === "0" ? 9 : Number(e.key) - 1;
    if (k < classes.length) {
      choice[it.image_id] = classes[k];
      focus = Math.min(focus + 1, items.length - 1);
      renderBatch();
    }
  } else if (e.key === "s") {
    choice[it.image_id] = null;
    focus = Math.min(focus + 1, items.length - 1);
    renderBatch();
  } else if (e.key === "ArrowRight") {
    focus = Math.min(focus + 1, items.length - 1); renderBatch();
  } else if (e.key === "ArrowLeft") {
    focus = Math.max(focus - 1, 0); renderBatch();
  }
});
$("submit").addEventListener("click", submit);
$("undo").addEventListener("click", undo);
if (token) $("export").href = "api/export.csv?token=" + encodeURIComponent(token);
renderBatch();
refresh();
