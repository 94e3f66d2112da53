// The clipsearch page: plain JavaScript, no framework, no build step, nothing fetched from elsewhere.
// File names and paths are data: they reach the DOM only through textContent and properties (img.alt,
// title, value), never through innerHTML, so a file named <script>… is shown, not run.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_K = 500;
const UPLOAD_LIMIT = 20 * 1024 * 1024;
const TOKEN = new URLSearchParams(location.search).get("token") || "";

const state = {
  q: "", k: 20, step: 20, under: "", ext: "", after: "", before: "", like: "",
  image: null, imageURL: null, results: [], info: null, lb: -1, seq: 0,
};

// --- talking to the server ----------------------------------------------------------------------------
function withToken(url) {
  if (!TOKEN) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);
}

async function api(path, options = {}) {
  let resp;
  try {
    const headers = Object.assign({}, options.headers || {}, TOKEN ? { Authorization: "Bearer " + TOKEN } : {});
    resp = await fetch(path, Object.assign({}, options, { headers }));
  } catch (e) {
    throw { kind: "network", error: "Cannot reach the clipsearch server.",
            hint: "Is it still running? Start it again with: clipsearch serve" };
  }
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const kind = resp.status >= 500 ? "server" : ({ 401: "auth", 404: "notfound", 413: "toolarge" })[resp.status] || "bad";
    throw { kind, status: resp.status, error: (body && body.error) || `The server answered ${resp.status}.`,
            hint: body && body.hint };
  }
  return body;
}

function thumbURL(hit) {
  return withToken(`api/images/${hit.id}/thumbnail?v=${encodeURIComponent(hit.size + "-" + hit.modified)}`);
}

function fileURL(hit) {
  return withToken(`api/images/${hit.id}/file?v=${encodeURIComponent(hit.size + "-" + hit.modified)}`);
}

// --- small helpers ------------------------------------------------------------------------------------
function baseName(path) {
  const parts = String(path).split("/");
  return parts[parts.length - 1] || String(path);
}

function humanSize(n) {
  if (n == null) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let size = n, i = 0;
  while (size >= 1024 && i < units.length - 1) { size /= 1024; i++; }
  return i === 0 ? `${size} B` : `${size.toFixed(1)} ${units[i]}`;
}

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) node[key] = value; // properties only: never markup
  node.append(...children);
  return node;
}

// --- messages and status --------------------------------------------------------------------------------
function showMessage(title, text, isError = false) {
  $("message-title").textContent = title;
  $("message-text").textContent = text || "";
  $("message").classList.toggle("error", isError);
  $("message").hidden = false;
}

function hideMessage() { $("message").hidden = true; }

function showError(e) {
  const titles = {
    bad: "That query did not work:", notfound: "Not found:", toolarge: "Too large:",
    server: "The server hit an error:", network: "No connection:", auth: "Not allowed:",
  };
  const hint = e.hint ? ` (${e.hint})` : "";
  showMessage(titles[e.kind] || "Error:", `${e.error}${hint}`, true);
  setStatus(e.kind === "server" ? "server error" : "");
}

function storeLine() {
  const info = state.info;
  if (!info) return "";
  if (info.empty) return "empty store";
  const model = info.model ? `model ${info.model}` : "";
  return [model, `${Number(info.images).toLocaleString()} images`].filter(Boolean).join(" · ");
}

function setStatus(extra) {
  $("status").textContent = [storeLine(), extra].filter(Boolean).join(" · ");
}

// --- the URL holds the query -------------------------------------------------------------------------
function readURL() {
  const p = new URLSearchParams(location.search);
  state.q = p.get("q") || "";
  state.like = /^\d+$/.test(p.get("like") || "") ? p.get("like") : "";
  state.step = [20, 50, 100].includes(Number(p.get("step"))) ? Number(p.get("step")) : 20;
  state.k = Math.min(MAX_K, Math.max(1, parseInt(p.get("k") || String(state.step), 10) || state.step));
  for (const key of ["under", "ext", "after", "before"]) state[key] = p.get(key) || "";
  $("q").value = state.q;
  $("k").value = String(state.step);
  for (const key of ["after", "before"]) $(key).value = state[key];
  setSelect("under", state.under);
  setSelect("ext", state.ext);
}

function setSelect(id, value) {
  const select = $(id);
  if (value && ![...select.options].some((o) => o.value === value)) {
    select.append(el("option", { value, textContent: value }));
  }
  select.value = value;
}

function writeURL(push) {
  const p = new URLSearchParams();
  if (TOKEN) p.set("token", TOKEN);
  if (state.q) p.set("q", state.q);
  if (state.like) p.set("like", state.like);
  if (state.step !== 20) p.set("step", String(state.step));
  if (state.k !== state.step) p.set("k", String(state.k));
  for (const key of ["under", "ext", "after", "before"]) if (state[key]) p.set(key, state[key]);
  const url = `${location.pathname}${p.toString() ? "?" + p : ""}`;
  if (url === location.pathname + location.search) return;
  if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
}

function filterParams() {
  const p = new URLSearchParams();
  p.set("k", String(state.k));
  for (const key of ["under", "ext", "after", "before"]) if (state[key]) p.set(key, state[key]);
  return p;
}

// --- searching ----------------------------------------------------------------------------------------
async function run({ push = true, keepScroll = false } = {}) {
  if (!state.q.trim() && !state.like && !state.image) {
    state.results = [];
    $("grid").replaceChildren();
    $("more").hidden = true;
    hideMessage();
    setStatus("");
    writeURL(push);
    return;
  }
  writeURL(push);
  const seq = ++state.seq;
  setStatus("searching…");
  const started = performance.now();
  let data;
  try {
    const params = filterParams();
    if (state.image) {
      const form = new FormData();
      form.append("image", state.image, state.image.name || "pasted-image");
      form.append("q", state.q);
      for (const [key, value] of params) form.append(key, value);
      if (state.like) form.append("like", state.like);
      data = await api("api/search", { method: "POST", body: form });
    } else if (state.like && !state.q.trim()) {
      data = await api(`api/images/${state.like}/similar?${params}`);
    } else {
      params.set("q", state.q);
      if (state.like) params.set("like", state.like);
      data = await api(`api/search?${params}`);
    }
  } catch (e) {
    if (seq === state.seq) {
      state.results = [];
      $("grid").replaceChildren();
      $("more").hidden = true;
      showError(e);
    }
    return;
  }
  if (seq !== state.seq) return; // a newer search has started meanwhile
  render(data, performance.now() - started, keepScroll);
}

function render(data, roundTrip, keepScroll) {
  const y = window.scrollY;
  state.results = data.results;
  $("grid").replaceChildren(...data.results.map(hitElement));
  if (!data.results.length) {
    const filtered = state.under || state.ext || state.after || state.before;
    showMessage("No results.", filtered ? "Nothing matches the filters: widen or clear them." :
      (state.info && state.info.empty ? "The store is empty: index a folder into it first." : "Try other words."));
  } else if (data.notes && data.notes.length) {
    // a query in a script the store's model does not read: the note names a model that does, and how to switch
    const switches = (data.languages || []).map(l => `Switch: clipsearch reindex --model ${l.switch_to}`);
    showMessage("Note:", data.notes.concat([...new Set(switches)]).join("; "));
  } else {
    hideMessage();
  }
  $("more").hidden = data.results.length < state.k || state.k >= MAX_K;
  const what = state.image ? "image query" : state.like ? "more like this" : "";
  const plural = data.results.length === 1 ? "result" : "results";
  setStatus([what, `${data.results.length} ${plural} in ${data.query_ms} ms`,
             `${Math.round(roundTrip)} ms with the network`].filter(Boolean).join(" · ")
            + (state.image ? " (image queries are not kept in the link)" : ""));
  if (keepScroll) window.scrollTo(0, y);
}

function hitElement(hit, i) {
  const name = baseName(hit.path);
  const img = el("img", { className: "thumb", alt: name, src: thumbURL(hit), decoding: "async",
                          loading: i < 30 ? "eager" : "lazy", width: 256, height: 256 });
  const similar = el("button", { type: "button", className: "similar", textContent: "More like this",
                                 title: "Find images like this one (m)" });
  similar.addEventListener("click", (e) => { e.stopPropagation(); moreLike(hit.id); });
  const fig = el("figure", { className: "hit", tabIndex: 0, title: `${hit.path}\nscore ${hit.score.toFixed(3)}` }, [
    img,
    el("span", { className: "score", textContent: hit.score.toFixed(3) }),
    similar,
    el("figcaption", { textContent: name }),
  ]);
  fig.dataset.index = String(i);
  fig.dataset.id = String(hit.id);
  fig.addEventListener("click", () => openLightbox(i));
  return fig;
}

function submitText() {
  state.q = $("q").value.trim();
  state.like = "";
  state.k = state.step;
  run();
}

function moreLike(id) {
  closeLightbox();
  state.like = String(id);
  state.q = "";
  $("q").value = "";
  clearImage(false);
  state.k = state.step;
  run();
  window.scrollTo(0, 0);
}

function imageQuery(file) {
  if (!file) return;
  if (file.size > UPLOAD_LIMIT) {
    showMessage("Too large:", "that image is over 20 MB; choose a smaller one.", true);
    return;
  }
  clearImage(false);
  state.image = file;
  state.imageURL = URL.createObjectURL(file);
  $("query-image-preview").src = state.imageURL;
  $("query-image").hidden = false;
  state.like = "";
  state.q = $("q").value.trim();
  state.k = state.step;
  run();
}

function clearImage(rerun = true) {
  if (state.imageURL) URL.revokeObjectURL(state.imageURL);
  state.image = null;
  state.imageURL = null;
  $("query-image").hidden = true;
  $("query-image-preview").removeAttribute("src");
  $("file").value = "";
  if (rerun) run();
}

// --- lightbox -----------------------------------------------------------------------------------------
function openLightbox(i) {
  const hit = state.results[i];
  if (!hit) return;
  state.lb = i;
  const img = $("lb-img");
  $("lb-note").hidden = true;
  img.onerror = () => {
    img.onerror = null;
    img.src = thumbURL(hit);
    $("lb-note").textContent = "The original cannot be shown here (a format the browser does not display, " +
      "or the file changed since it was indexed); this is its thumbnail.";
    $("lb-note").hidden = false;
  };
  img.src = fileURL(hit);
  img.alt = baseName(hit.path);
  $("lb-name").textContent = baseName(hit.path);
  $("lb-path").textContent = hit.path;
  $("lb-score").textContent = hit.score.toFixed(4);
  $("lb-size").textContent = humanSize(hit.size);
  $("lb-dims").textContent = hit.width ? `${hit.width} × ${hit.height}${hit.format ? " " + hit.format : ""}` : "–";
  $("lb-date").textContent = hit.modified.replace("T", " ");
  $("lb-open").href = fileURL(hit);
  $("lb-copy").textContent = "Copy path";
  $("lightbox").hidden = false;
  document.querySelectorAll(".hit.selected").forEach((n) => n.classList.remove("selected"));
  const tile = $("grid").children[i];
  if (tile) tile.classList.add("selected");
  $("lb-close").focus();
}

function closeLightbox() {
  if ($("lightbox").hidden) return;
  $("lightbox").hidden = true;
  $("lb-img").removeAttribute("src");
  const tile = $("grid").children[state.lb];
  if (tile) tile.focus();
  state.lb = -1;
}

function stepLightbox(delta) {
  const n = state.results.length;
  if (!n) return;
  openLightbox((state.lb + delta + n) % n);
}

async function copyPath() {
  const text = $("lb-path").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {
    const area = el("textarea", { value: text });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  $("lb-copy").textContent = "Copied";
}

// --- keyboard -----------------------------------------------------------------------------------------
function columns() {
  const tiles = $("grid").children;
  if (!tiles.length) return 1;
  const top = tiles[0].offsetTop;
  let n = 0;
  while (n < tiles.length && tiles[n].offsetTop === top) n++;
  return Math.max(1, n);
}

function onKey(e) {
  const target = e.target;
  const inField = target instanceof HTMLElement && target.matches("input, select, textarea");
  if (!$("lightbox").hidden) {
    if (e.key === "Escape") { closeLightbox(); e.preventDefault(); }
    else if (e.key === "ArrowRight") { stepLightbox(1); e.preventDefault(); }
    else if (e.key === "ArrowLeft") { stepLightbox(-1); e.preventDefault(); }
    else if (e.key === "m" && state.results[state.lb]) moreLike(state.results[state.lb].id);
    return;
  }
  if (e.key === "/" && !inField) { e.preventDefault(); $("q").focus(); $("q").select(); return; }
  if (inField) {
    if (e.key === "Escape") target.blur();
    if (e.key === "ArrowDown" && target === $("q") && $("grid").children.length) {
      e.preventDefault();
      $("grid").children[0].focus();
    }
    return;
  }
  const tiles = [...$("grid").children];
  const tile = target instanceof HTMLElement ? target.closest(".hit") : null;
  const i = tile ? tiles.indexOf(tile) : -1;
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() };
  if (e.key in moves && tiles.length) {
    e.preventDefault();
    const next = i < 0 ? 0 : Math.min(tiles.length - 1, Math.max(0, i + moves[e.key]));
    tiles[next].focus();
  } else if (e.key === "Enter" && i >= 0 && target === tile) {
    e.preventDefault();
    openLightbox(i);
  } else if (e.key === "m" && i >= 0) {
    moreLike(state.results[i].id);
  }
}

// --- drag and drop, paste ------------------------------------------------------------------------------
function hasFiles(e) {
  return e.dataTransfer && [...e.dataTransfer.types].includes("Files");
}

function setupDrop() {
  let depth = 0;
  document.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth++;
    $("drop-hint").hidden = false;
  });
  document.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) $("drop-hint").hidden = true;
  });
  document.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    $("drop-hint").hidden = true;
    const files = [...e.dataTransfer.files];
    imageQuery(files.find((f) => f.type.startsWith("image/")) || files[0]);
  });
  document.addEventListener("paste", (e) => {
    const items = e.clipboardData ? [...e.clipboardData.items] : [];
    const item = items.find((it) => it.kind === "file" && it.type.startsWith("image/"));
    if (item) { e.preventDefault(); imageQuery(item.getAsFile()); }
  });
}

// --- start ----------------------------------------------------------------------------------------------
function fillFilters(info) {
  const under = $("under");
  for (const root of info.roots || []) under.append(el("option", { value: root, textContent: root }));
  const ext = $("ext");
  for (const [name, count] of Object.entries(info.extensions || {})) {
    ext.append(el("option", { value: name, textContent: `${name} (${count})` }));
  }
  setSelect("under", state.under);
  setSelect("ext", state.ext);
}

async function init() {
  $("docs-link").href = withToken("docs");
  $("home").href = withToken("./");
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); submitText(); });
  $("file").addEventListener("change", () => imageQuery($("file").files[0]));
  $("clear-image").addEventListener("click", () => clearImage(true));
  for (const key of ["under", "ext", "after", "before"]) {
    $(key).addEventListener("change", () => { state[key] = $(key).value; state.k = state.step; run(); });
  }
  $("k").addEventListener("change", () => { state.step = Number($("k").value); state.k = state.step; run(); });
  $("more").addEventListener("click", () => {
    state.k = Math.min(MAX_K, state.k + state.step);
    run({ push: false, keepScroll: true });
  });
  $("lb-close").addEventListener("click", closeLightbox);
  $("lb-prev").addEventListener("click", () => stepLightbox(-1));
  $("lb-next").addEventListener("click", () => stepLightbox(1));
  $("lb-copy").addEventListener("click", copyPath);
  $("lb-similar").addEventListener("click", () => moreLike(state.results[state.lb].id));
  $("lightbox").addEventListener("click", (e) => { if (e.target === $("lightbox")) closeLightbox(); });
  document.addEventListener("keydown", onKey);
  window.addEventListener("popstate", () => { clearImage(false); readURL(); run({ push: false }); });
  setupDrop();
  readURL();
  try {
    state.info = await api("api/info");
  } catch (e) {
    showError(e);
    return;
  }
  fillFilters(state.info);
  setStatus("");
  if (state.info.empty) {
    showMessage("This store is empty.", "Index a folder into it (clipsearch index FOLDER), then search here: " +
      "the server picks new images up without a restart.");
  }
  if (state.q || state.like) run({ push: false });
  else $("q").focus();
}

document.addEventListener("DOMContentLoaded", init);
