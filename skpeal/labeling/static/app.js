// skpeal label: the page. Plain JavaScript, no dependency, served by skpeal itself.
//
// Every pick (a number key, s, a click in the list) is sent to the server at once, in a
// request of its own (side by side with the picks still on their way), and stored there
// (SQLite) before its card says "saved"; a reload or a restarted server gives the picks
// back. Each pick and undo carries this tab's count of them ("seq"): the server keeps,
// per image, the latest pick whatever order the requests arrive in. Enter turns the
// batch's answers into labels.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
let client = sessionStorage.getItem("skpeal-client");
if (!client) {
  client = "tab-" + Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
  sessionStorage.setItem("skpeal-client", client);
}

let classes = [];
let items = [];            // the batch shown, as the server gave it (with its stored picks)
// image_id -> the latest pick not stored yet: {label, seq, t0, state: "saving" | "unsent"}
const local = {};
const inFlight = new Set(); // pick requests on their way (promises)
let holding = false;       // a submit on its way: the picks made meanwhile wait here
let sendSoon = false;      // picks made in this turn of the event loop go in one request
// the last pick the server confirmed per image, numbered: a batch asked for before a
// confirmation may not show that pick yet (loadBatch puts it back)
const confirmed = new Map();
let nConfirmed = 0;
let focus = 0;
let status = null;
let serverId = null;
let online = true;
let loading = false;
let submitting = false;
let confirmSubmit = false; // Enter pressed once with unanswered images
// this tab's count of its picks and undos (kept over a reload, as the tab's client id is)
let seq = Number(sessionStorage.getItem("skpeal-seq") || 0);
function nextSeq() {
  seq += 1;
  sessionStorage.setItem("skpeal-seq", String(seq));
  return seq;
}
const RESEND_MS = 1000;    // an answer or undo sent before the model loaded: sent again
const LOADING_TEXT = "The model is still loading; your picks are saved. ";
const LEARNS_LATER = " The model learns from them once it is loaded.";
const viewer = { open: false, scale: 1, x: 0, y: 0 };
window.skpealSaveTimes = [];  // keypress-to-saved round trips in ms (benchmarks read them)

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
    if (!r.ok) {
      const err = new Error(data.detail || r.statusText);
      err.status = r.status;
      // 503 + X-Skpeal-Loading: the model is still loading; nothing changed, send it again
      err.loading = r.headers.get("X-Skpeal-Loading") === "1";
      throw err;
    }
    return data;
  });
}

// A closed (or reloaded) tab gives its batch back at once: the next tab gets it first,
// with its picks (else it would wait for the lease to lapse).
addEventListener("pagehide", () => {
  const headers = { "Content-Type": "application/json" };
  if (token) headers["X-Skpeal-Token"] = token;
  fetch("api/leave", { method: "POST", keepalive: true, headers,
                       body: JSON.stringify({ client }) }).catch(() => {});
});

function withToken(url) {
  return token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token)
               : url;
}
function imageUrl(id, size) { return withToken("api/image/" + id + "?size=" + size); }
function fullUrl(id) { return withToken("api/image/" + id + "?full=1"); }

function showError(msg) {
  const el = $("error");
  el.hidden = !msg;
  el.textContent = msg || "";
}
function say(msg) { $("message").textContent = msg; }

function pct(p) { return p == null ? "–" : Math.round(p * 100) + "%"; }

// ------------------------------------------------------------------ answers
// The answer of an image: the person's pick (local first, then stored), else the
// model's suggestion when it is confident enough to be pre-selected, else none.
function answerOf(it) {
  const id = it.image_id;
  if (id in local) return { label: local[id].label, by: local[id].state };
  if (it.picked) return { label: it.pick, by: "saved" };
  if (it.preselect) return { label: it.suggestion, by: "suggestion" };
  return null;
}

function stateText(it) {
  const a = answerOf(it);
  if (!a) return ["no answer yet", "none"];
  const what = a.label === null ? "not sure (skip)" : a.label;
  if (a.by === "saved") return ["✓ saved: " + what, "saved"];
  if (a.by === "saving") return ["saving… " + what, "saving"];
  if (a.by === "unsent") return ["not saved yet (kept here, sent again): " + what, "unsent"];
  return ["suggested: " + what + " (Enter accepts)", "suggested"];
}

function pick(it, label) {
  confirmSubmit = false;
  local[it.image_id] = { label, seq: nextSeq(), state: "saving", t0: performance.now() };
  // sent before the cards are drawn again (both before the next paint): the request does
  // not wait for the layout, and picks made in one go are drawn once
  if (!sendSoon) {
    sendSoon = true;
    queueMicrotask(() => { sendSoon = false; send(); renderBatch(); });
  }
}

// Each pick is sent at once, side by side with the requests still on their way (the
// browser carries several at a time): a fast typist waits for one round trip, not for the
// picks before. Picks made in one go (a script firing keys) share a request, and so do
// those made while MAX_PICK_REQUESTS are on their way (the browser's six connections to
// the server: the other three are the batch's images', MAX_IMAGE_REQUESTS). While a
// submit is on its way the picks wait here (submit sends them after its reply).
const MAX_PICK_REQUESTS = 3;
function send(only, again) {  // again: the picks not saved yet (the server was away) too
  if (holding || (!only && !again && inFlight.size >= MAX_PICK_REQUESTS)) return;
  const group = (only || Object.keys(local)).map((id) => [id, local[id]])
    .filter(([, p]) => p && !p.sending && (again || p.state !== "unsent"));
  if (!group.length) return;
  for (const [, p] of group) { p.sending = true; p.state = "saving"; }
  const picks = group.map(([id, p]) => ({ image_id: Number(id), label: p.label, seq: p.seq }));
  const req = api("api/pick", { client, picks }).then(() => {
    for (const [id, p] of group) {
      if (local[id] !== p) continue;  // a later pick of this image is on its way
      const it = items.find((x) => x.image_id === Number(id));
      if (it) { it.picked = true; it.pick = p.label; }
      confirmed.set(Number(id), { n: ++nConfirmed, label: p.label });
      window.skpealSaveTimes.push(performance.now() - p.t0);
      delete local[id];
    }
  }, (e) => {
    const mine = group.filter(([id, p]) => { p.sending = false; return local[id] === p; });
    if (e.status === undefined) {  // the server is away: kept, sent again when it is back
      for (const [, p] of mine) p.state = "unsent";
      online = false;
      renderOnline();
    } else if (e.status >= 500) {  // e.g. 507, a full disk: nothing stored; sent again
      for (const [, p] of mine) p.state = "unsent";
      showError("pick not saved yet: " + e.message + " (kept here; sent again in 2 s)");
      setTimeout(flush, 2000);
    } else if (mine.length > 1) {  // one refused pick refuses its group: keep the others
      for (const [id] of mine) send([id]);
    } else {
      for (const [id] of mine) delete local[id];
      showError("pick not saved: " + e.message);
    }
  }).finally(() => { inFlight.delete(req); send(); renderBatch(); });
  inFlight.add(req);
}

// Send the picks not stored yet (again) and wait until every pick request has its reply.
async function flush() {
  send(undefined, true);
  while (inFlight.size) await Promise.allSettled([...inFlight]);
}

// ------------------------------------------------------------------ status
function renderOnline() {
  $("offline").hidden = online;
}

function renderStatus() {
  if (!status) return;
  classes = status.classes || classes;
  const n = status.n_images || 0, done = (status.n_labelled || 0) + (status.n_skipped || 0);
  $("progress-bar").style.width = (n ? (100 * done / n) : 0) + "%";
  $("progress-text").textContent = (status.n_labelled || 0) + " labelled, " +
    (status.n_skipped || 0) + " skipped" + (n ? " / " + n + " images" : "");  // 0: not listed yet
  // round -1: a batch served before any model (a restart's, a random first batch)
  $("model-info").textContent = !status.ready ? "" : status.round < 0 ? "no model yet"
    : "model round " + status.round + " · estimated accuracy " + pct(status.estimated_accuracy);
  const st = status.state || {};
  const busy = $("busy");
  if (!status.ready || status.busy) {
    busy.hidden = false;
    let text = "Working…";
    if (st.phase === "encoding") text = "Encoding the images: " + st.done + " / " + st.total;
    else if (st.phase === "training") text = "Training the model on " + st.total + " labels…";
    else if (st.phase === "scoring") text = "Scoring the images: " + st.done + " / " + st.total;
    else if (st.phase === "loading") text = "Loading the model…";
    else if (!status.ready) text = "Starting…";
    $("busy-text").textContent = text + (status.ready ? " (you can keep using the page)" : "");
    const frac = st.total ? st.done / st.total : 0;
    $("busy-bar").style.width = (st.phase === "training" ? 30 : 100 * frac) + "%";
  } else {
    busy.hidden = true;
  }
  showError(status.error);
  const said = $("message").textContent;  // a submit's message from before the model
  if (said.endsWith(LEARNS_LATER) && status.ready && st.phase !== "loading") {
    say(said.slice(0, -LEARNS_LATER.length) + " The model is loaded and learns from them.");
  }
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

// What the model says of an image: its suggestion, or that there is none yet (a first
// batch picked before the model was loaded: --init pixels or random).
function modelSays(it) {
  if (it.suggestion == null) return "no suggestion yet";
  return "model: " + it.suggestion + " (" + pct(it.probability) + ")";
}

// The stopping criteria's suggestion (skpeal.labeling.stop): plain words on the page, the
// criteria's details behind a toggle; never an automatic stop.
function renderStopSuggestion(sug) {
  const el = $("stop-suggestion");
  el.hidden = !sug;
  if (!sug) return;
  // the message says the estimate and its interval once (skpeal.labeling.stop)
  $("stop-text").textContent = "Suggestion: " + sug.message;
  el.classList.toggle("stop", !!sug.should_stop);
  $("stop-details").textContent = (sug.criteria || [])
    .map((c) => c.name + ": " + c.message).join("\n");
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
    if (pts.length > 1) {  // one round: "round 0" once, not at both ends
      s += "<text x='" + (W - R - 50) + "' y='" + (H - 4) + "' font-size='10' fill='#667'>" +
        "round " + pts[pts.length - 1].round + "</text>";
    }
  }
  svg.innerHTML = s;
}

// ------------------------------------------------------------------ the batch
function cardSize() { return Number(localStorage.getItem("skpeal-card") || 200); }

function applyCardSize() {
  const px = cardSize();
  document.documentElement.style.setProperty("--card", px + "px");
  $("card-size").value = px;
}

// The parts of a card that change with a pick, the focus or the card size (only what
// changed is written: a pick touches one card, not the images of all of them).
function updateCard(card, it, i, px) {
  const a = answerOf(it);
  const [text, cls] = stateText(it);
  const state = card.querySelector(".state"), img = card.querySelector("img");
  const sel = card.querySelector("select"), sug = card.querySelector(".suggest");
  const value = !a ? "__none__" : (a.label === null ? "__skip__" : a.label);
  const props = [[card, "className", "card" + (i === focus ? " focus" : "") +
                  (a && a.label === null ? " skipped" : "") + (it.reopened ? " reopened" : "")],
                 [card.dataset, "label", a ? (a.label === null ? "" : a.label) : ""],
                 [card.dataset, "answered", a ? "1" : "0"], [img, "sizes", px + "px"],
                 [sel, "value", value], [sug, "textContent", modelSays(it)],
                 [state, "className", "state " + cls],
                 [state, "textContent", text]];
  for (const [el, key, v] of props) if (el[key] !== v) el[key] = v;
}

// A batch's images load at most MAX_IMAGE_REQUESTS at a time, in card order: the browser
// has six connections to the server, and the ten images of a new batch took all six, so
// the picks typed meanwhile waited for one (3-74 ms median with ten keys fired at once,
// measured); the other three connections are the picks' (MAX_PICK_REQUESTS). The images
// of a batch that is replaced while they load are cancelled (their connections freed).
const MAX_IMAGE_REQUESTS = 3;
const images = { queue: [], loading: new Set() };  // loading: the <img>s on their way
function queueImage(img, id) {
  images.queue.push([img, id]);
  queueMicrotask(nextImage);
}
function nextImage() {
  while (images.loading.size < MAX_IMAGE_REQUESTS && images.queue.length) {
    const [img, id] = images.queue.shift();
    images.loading.add(img);
    const release = () => { if (images.loading.delete(img)) nextImage(); };
    img.addEventListener("load", release, { once: true });
    img.addEventListener("error", release, { once: true });
    img.alt = img.dataset.alt;
    img.title = "z or click: full size";
    img.srcset = [192, 384, 768].map((s) => imageUrl(id, s) + " " + s + "w").join(", ");
    img.src = imageUrl(id, 384);
  }
}
function dropImages() {  // the cards are rebuilt: their images still to load are not needed
  images.queue = [];
  for (const img of images.loading) { img.removeAttribute("srcset"); img.removeAttribute("src"); }
  images.loading.clear();
}

function buildCard(it, i) {
  const card = document.createElement("div");
  card.dataset.imageId = it.image_id;
  const img = document.createElement("img");
  // sharp on high-DPI screens: the browser takes the size its pixel ratio needs
  img.sizes = cardSize() + "px";
  queueImage(img, it.image_id);
  // its alt and title when its turn to load comes: Chromium draws a broken-image icon
  // with either on an <img> without a source
  img.dataset.alt = it.file;
  img.addEventListener("click", (e) => { e.stopPropagation(); focus = i; openViewer(); });
  const file = document.createElement("div");
  file.className = "file";
  file.textContent = (it.reopened ? "reopened · " : "") + it.file;
  const sug = document.createElement("div");
  sug.className = "suggest";
  sug.textContent = modelSays(it);
  const sel = document.createElement("select");
  sel.setAttribute("aria-label", "class of " + it.file);
  const none = document.createElement("option");
  none.value = "__none__";
  none.textContent = "– no answer –";
  none.disabled = true;
  sel.appendChild(none);
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
  sel.addEventListener("change", () => {
    focus = i;
    pick(it, sel.value === "__skip__" ? null : sel.value);
  });
  sel.addEventListener("keydown", (e) => {
    if (/^[0-9suz]$|^Enter$|^Escape$/.test(e.key)) e.preventDefault();
  });
  const state = document.createElement("div");
  state.className = "state";
  card.addEventListener("click", () => { focus = i; renderBatch(); });
  card.append(img, file, sug, sel, state);
  return card;
}

// Cards are built once per batch and updated in place afterwards (a pick redraws no image).
let shownItems = null;
const scrolled = { card: null, px: 0 };  // the card last scrolled into view, at what size
function renderBatch() {
  const grid = $("grid");
  const px = cardSize();
  if (shownItems !== items || grid.children.length !== items.length || !items.length) {
    shownItems = items;
    grid.innerHTML = "";
    dropImages();
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
    items.forEach((it, i) => grid.appendChild(buildCard(it, i)));
  }
  items.forEach((it, i) => updateCard(grid.children[i], it, i, px));
  $("submit").disabled = !items.length || submitting;
  const focused = grid.querySelector(".card.focus");
  if (focused && (focused !== scrolled.card || px !== scrolled.px)) {  // a layout: only then
    focused.scrollIntoView({ block: "nearest" });
    scrolled.card = focused;
    scrolled.px = px;
  }
  if (viewer.open) renderViewer();
}

async function loadBatch(force) {
  if (loading) return;
  loading = true;
  try {
    const since = nConfirmed;
    const data = await api("api/batch?client=" + encodeURIComponent(client));
    const focusedId = items[focus] ? items[focus].image_id : null;
    const fresh = data.items || [];
    for (const it of fresh) {  // picks confirmed while this batch was on its way
      const c = confirmed.get(it.image_id);
      if (c && c.n > since) { it.picked = true; it.pick = c.label; }
    }
    if (force || fresh.map((x) => x.image_id).join(",") !== items.map((x) => x.image_id).join(",")
        || !items.length) {
      items = fresh;
      // the card focused stays focused; a batch new to the page (a reload, the next
      // batch) starts at its first card without a pick, so the keys never land on a
      // card answered before the reload
      const k = items.findIndex((x) => x.image_id === focusedId);
      const open = items.findIndex((x) => !x.picked && !(x.image_id in local));
      focus = k >= 0 ? k : Math.max(open, 0);
    }
    renderBatch();
  } catch (e) {
    if (e.status === undefined) { online = false; renderOnline(); } else showError(e.message);
  } finally {
    loading = false;
  }
}

// A batch picked before the model loaded (--init pixels or random) gets the model's
// suggestions once the server has them: merged into the cards shown, whose picks, order
// and focus stay as they are. Asked again only when the model's state changes.
let suggestedFor = null;
async function addSuggestions() {
  const key = status.model_version + "/" + (status.state || {}).phase;
  if (key === suggestedFor || !items.some((it) => it.suggestion == null)) return;
  suggestedFor = key;
  const data = await api("api/batch?client=" + encodeURIComponent(client));
  const fresh = new Map((data.items || []).map((it) => [it.image_id, it]));
  for (const it of items) {
    const f = fresh.get(it.image_id);
    if (it.suggestion == null && f && f.suggestion != null) {
      Object.assign(it, { suggestion: f.suggestion, probability: f.probability,
                          preselect: f.preselect });
    }
  }
  renderBatch();
}

async function refresh() {
  try {
    status = await api("api/status");
    const restarted = serverId !== null && status.server_id !== serverId;
    serverId = status.server_id;
    if (!online || restarted) {  // back: send what waited, then the server's batch
      online = true;
      renderOnline();
      if (restarted) say("The server restarted; your saved picks are back.");
      await flush();
      await loadBatch(true);
    }
    renderStatus();
    if (status.ready && !items.length) await loadBatch();
    else if (status.ready && status.round >= 0) await addSuggestions();
  } catch (e) {
    online = false;
    renderOnline();
  }
  const fast = !online || !status || !status.ready || status.busy || !items.length;
  setTimeout(refresh, fast ? 500 : 3000);
}

// ------------------------------------------------------------------ submit and undo
async function submit(again) {
  if (again) submitting = false;  // the resend of a submit that waited for the model
  if (!items.length || submitting) return;
  submitting = true;
  let waiting = false;  // the model is loading: sent again by itself, the button stays off
  try {
    await flush();
    if (Object.values(local).some((p) => p.state === "unsent")) {
      say("Some picks are not saved yet (the server is away): wait.");
      return;
    }
    const answered = items.filter((it) => answerOf(it));
    const open = items.length - answered.length;
    if (!answered.length) { say("Nothing answered yet: pick a class with the number keys."); return; }
    if (open && !confirmSubmit && !again) {
      confirmSubmit = true;
      say(open + " image" + (open > 1 ? "s have" : " has") + " no answer yet. Enter again " +
          "submits only the " + answered.length + " answered (the others go back to the " +
          "pool, unlabelled); Esc keeps answering.");
      return;
    }
    confirmSubmit = false;
    $("submit").disabled = true;
    const batch = items;
    const answers = answered.map((it) => ({ image_id: it.image_id, label: answerOf(it).label }));
    const sent = Object.fromEntries(answers.map((a) => [a.image_id, a.label]));
    let r;
    holding = true;
    try {
      r = await api("api/answers", { client, answers, release_rest: open > 0 });
    } finally {
      holding = false;
    }
    // picks made while the answers were on their way: the latest of each image is its
    // answer, sent as a correction (the server keeps the latest answer of an image)
    const later = batch.filter((it) => it.image_id in local && local[it.image_id].label !==
                               sent[it.image_id])
      .map((it) => ({ image_id: it.image_id, label: local[it.image_id].label }));
    for (const it of batch) delete local[it.image_id];
    if (later.length) {
      await api("api/answers", { client, answers: later }).catch((e) => showError(
        later.length + " picks made after Enter not saved: " + e.message));
    }
    say("Saved " + r.saved + " answers." + (later.length ? " " + later.length + " changed " +
        "after Enter: saved too." : "") + (!r.refit ? "" : (status && (status.state || {})
        .phase === "loading" ? LEARNS_LATER
        : " The model is learning from them.")));
    items = [];
    renderBatch();
    // the status beside the batch, not before it: the next batch waits for no status
    let asked = null, failed = null;
    const statusAsked = api("api/status").then((st) => { asked = st; }, (e) => { failed = e; });
    await loadBatch(true);
    await statusAsked;
    if (failed) throw failed;
    status = asked;
    renderStatus();
    if (!items.length) renderBatch();  // its empty text says what the status says
  } catch (e) {
    flush();  // picks held while the answers were on their way: the batch is still there
    if (e.loading) {
      waiting = true;
      say(LOADING_TEXT + "Your answers are submitted by themselves when it is ready.");
      setTimeout(() => submit(true), RESEND_MS);
    } else showError(e.message);
  } finally {
    submitting = waiting;
    $("submit").disabled = !items.length || waiting;
  }
}

// The undo takes its place in the tab's count of picks when the key is pressed: picks made
// after it (while it waits for the model, say) are never what it undoes. Undos go out one
// after another, in the order of the keys, so that the message and the focus are the last
// one's (sent side by side, their replies could come back in another order). An undo that
// waits for the model keeps its turn: the undos pressed after it wait behind it, none is
// dropped.
let undoTurn = Promise.resolve();
function queueUndo() {
  const mine = nextSeq();
  undoTurn = undoTurn.then(() => undo(mine)).catch((e) => showError(e.message));
}

async function undo(mine) {
  await flush();
  let r;
  for (;;) {
    try {
      r = await api("api/undo", { client, seq: mine });
      break;
    } catch (e) {
      if (!e.loading) { showError(e.message); return; }
      say(LOADING_TEXT + "The undo is sent by itself when it is ready.");
      await new Promise((ok) => setTimeout(ok, RESEND_MS));
      await flush();
    }
  }
  const u = r.undone;
  if (!u) { say("Nothing to undo."); return; }
  await loadBatch(true);
  const k = items.findIndex((x) => x.image_id === u.image_id);
  if (k >= 0) focus = k;
  const it = items[k];
  const name = it ? it.file : "image " + u.image_id;
  const what = u.label === null ? "not sure" : u.label;
  if (u.action === "pick") {
    say("Undone your pick “" + what + "” on " + name + ". No refit needed.");
  } else {
    say("Reopened " + name + " from an earlier batch with your answer “" + what +
        "”: change it or keep it; " + (u.refit ? "the model is refitted when you submit."
                                               : "no refit follows (it was a skip)."));
  }
  renderBatch();
}

// ------------------------------------------------------------------ full-size viewer
function openViewer() {
  if (!items.length) return;
  viewer.open = true;
  viewer.scale = 1; viewer.x = 0; viewer.y = 0;
  $("viewer").hidden = false;
  renderViewer();
}

function closeViewer() {
  viewer.open = false;
  $("viewer").hidden = true;
}

function renderViewer() {
  const it = items[focus];
  if (!it) { closeViewer(); return; }
  const img = $("viewer-img");
  const url = fullUrl(it.image_id);
  if (img.dataset.id !== String(it.image_id)) {
    img.dataset.id = it.image_id;
    img.src = url;
    viewer.scale = 1; viewer.x = 0; viewer.y = 0;
  }
  img.style.transform = "translate(" + viewer.x + "px," + viewer.y + "px) scale(" +
    viewer.scale + ")";
  const [text] = stateText(it);
  $("viewer-caption").textContent = (focus + 1) + "/" + items.length + " · " + it.file +
    " · " + modelSays(it) + " · " + text + " · zoom " +
    Math.round(viewer.scale * Number(img.dataset.fit || 1) * 100) +
    "% of full resolution (+/−, wheel; drag or arrows pan; f fits; Esc closes)";
}

function zoom(f) {
  viewer.scale = Math.min(16, Math.max(0.25, viewer.scale * f));
  renderViewer();
}

(function setUpViewer() {
  const box = $("viewer");
  const img = $("viewer-img");
  img.addEventListener("load", () => {  // fit the screen (small images are enlarged)
    const fit = Math.min(0.94 * innerWidth / img.naturalWidth,
                         0.86 * innerHeight / img.naturalHeight);
    img.style.width = Math.round(img.naturalWidth * fit) + "px";
    img.style.height = Math.round(img.naturalHeight * fit) + "px";
    img.dataset.fit = fit.toFixed(3);
    if (viewer.open) renderViewer();
  });
  let drag = null;
  box.addEventListener("wheel", (e) => { e.preventDefault(); zoom(e.deltaY < 0 ? 1.25 : 0.8); },
                       { passive: false });
  box.addEventListener("mousedown", (e) => {
    if (e.target.id !== "viewer-img") return;
    e.preventDefault();
    drag = { x: e.clientX - viewer.x, y: e.clientY - viewer.y };
  });
  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    viewer.x = e.clientX - drag.x; viewer.y = e.clientY - drag.y;
    renderViewer();
  });
  window.addEventListener("mouseup", () => { drag = null; });
  $("viewer-close").addEventListener("click", closeViewer);
})();

// ------------------------------------------------------------------ keys
function move(d) {
  focus = Math.max(0, Math.min(items.length - 1, focus + d));
  renderBatch();
}

function setCardSize(px) {
  localStorage.setItem("skpeal-card", String(Math.max(120, Math.min(480, px))));
  applyCardSize();
  renderBatch();
}

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.target && e.target.id === "card-size") return;
  if (viewer.open) {
    const pan = { ArrowLeft: [60, 0], ArrowRight: [-60, 0], ArrowUp: [0, 60], ArrowDown: [0, -60] };
    if (e.key === "Escape" || e.key === "z") { e.preventDefault(); closeViewer(); return; }
    if (e.key === "+" || e.key === "=") { e.preventDefault(); zoom(1.25); return; }
    if (e.key === "-") { e.preventDefault(); zoom(0.8); return; }
    if (e.key === "f") { e.preventDefault(); viewer.scale = 1; viewer.x = viewer.y = 0;
                         renderViewer(); return; }
    if (pan[e.key]) { e.preventDefault(); viewer.x += pan[e.key][0]; viewer.y += pan[e.key][1];
                      renderViewer(); return; }
  }
  if (e.key === "Enter") { e.preventDefault(); if (!viewer.open) submit(); return; }
  if (e.key === "Escape") { confirmSubmit = false; say(""); return; }
  if (e.key === "u") { e.preventDefault(); queueUndo(); return; }
  if (e.key === "[") { setCardSize(cardSize() - 40); return; }
  if (e.key === "]") { setCardSize(cardSize() + 40); return; }
  if (!items.length) return;
  const it = items[focus];
  if (e.key === "z" || e.key === " ") { e.preventDefault(); openViewer(); return; }
  if (/^[0-9]$/.test(e.key)) {
    const k = e.key === "0" ? 9 : Number(e.key) - 1;
    if (k < classes.length) {
      focus = Math.min(focus + 1, items.length - 1);
      pick(it, classes[k]);
    }
  } else if (e.key === "s") {
    focus = Math.min(focus + 1, items.length - 1);
    pick(it, null);
  } else if (e.key === "ArrowRight") {
    e.preventDefault(); move(1);
  } else if (e.key === "ArrowLeft") {
    e.preventDefault(); move(-1);
  }
});
// not submit(event): a truthy first argument is a resend (no question)
$("submit").addEventListener("click", () => submit());
$("undo").addEventListener("click", () => queueUndo());
$("card-size").addEventListener("input", (e) => setCardSize(Number(e.target.value)));
if (token) for (const a of document.querySelectorAll("a.export")) a.href = withToken(a.getAttribute("href"));
applyCardSize();
renderBatch();
refresh();
