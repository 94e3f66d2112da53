// The clipsearch page: plain JavaScript modules, no framework, no build step, nothing fetched from elsewhere.
// File names and paths are data: they reach the DOM only through textContent and properties (img.alt,
// title, value), never through innerHTML, so a file named <script>… is shown, not run.
// This module holds the state, the URL and the wiring; api.js talks to the server, grid.js draws the tiles,
// detail.js the detail view, i18n.js holds the page's words.

import { $, el, withModifier } from "./dom.js";
import { api, withToken, MAX_K, UPLOAD_LIMIT, TOKEN } from "./api.js";
import { renderTiles, tiles } from "./grid.js";
import { keepJustified } from "./layout.js";
import { weakFrom } from "./relevance.js";
import { showDetail, hideDetail, copyPath, swipes } from "./detail.js";
import { renderChips, queryText } from "./chips.js";
import { t, pickLanguage, language, setLanguage } from "./i18n.js";

// The filters, each a control of the same id and a parameter of the same name in the URL and the API: folder,
// type, file date, the photo metadata ones (capture time, camera, place), and the text read in the picture (shown
// only on a store that reads it: index --ocr), and the query's language code (shown only where the model is told
// it: NLLB-CLIP; `qlang` in the page's URL, where `lang` is the page's own language, and `lang` in the API).
const FILTERS = ["under", "ext", "after", "before", "taken_after", "taken_before", "camera", "near", "text_in_image",
                 "qlang"];
const TYPED_FILTERS = ["after", "before", "taken_after", "taken_before", "camera", "near", "text_in_image",
                       "qlang"]; // inputs
const API_NAME = { qlang: "lang" }; // a filter whose API parameter has another name

const state = {
  q: "", k: 20, step: 20, under: "", ext: "", after: "", before: "", likes: [],
  taken_after: "", taken_before: "", camera: "", near: "", text_in_image: "", qlang: "",
  image: null, imageURL: null, results: [], info: null, lb: -1, seq: 0, lastStatus: "", loading: false,
  terms: [], minus: [], open: "", detail: null, openPushed: false,
};

const SCROLL_AHEAD = 800; // px below the screen at which the next page of results is asked for
const tileActions = { open: (i) => openLightbox(i), similar: (id, add) => moreLike(id, add) };
const MAX_LIKES = 16; // "similar to" ids in one query (the server bounds all its parts together)

// --- messages and status --------------------------------------------------------------------------------
function showMessage(title, text, isError = false) {
  $("message-title").textContent = title;
  $("message-text").textContent = text || "";
  $("message").classList.toggle("error", isError);
  $("message").hidden = false;
}

function hideMessage() { $("message").hidden = true; }

function showError(e) {
  const known = ["bad", "notfound", "toolarge", "server", "network", "auth"];
  const hint = e.hint ? ` (${e.hint})` : "";
  showMessage(t(known.includes(e.kind) ? `err.${e.kind}` : "err.other"), `${e.error}${hint}`, true);
  setStatus(e.kind === "server" ? t("status.serverError") : "");
}

// "model X · 6 photos, 1 video (3 moments)": files, not the moments a video is searched by.
function storeLine() {
  const info = state.info;
  if (!info) return "";
  if (info.empty) return t("status.empty");
  const model = info.model ? `model ${info.model}` : "";
  const counts = [t("count.photos", Number(info.images))];
  if (info.videos) counts.push(t("count.videos", Number(info.videos), Number(info.moments)));
  return [model, counts.join(t("count.join"))].filter(Boolean).join(" · ");
}

function setStatus(extra) {
  state.lastStatus = extra;
  $("status").textContent = [storeLine(), extra].filter(Boolean).join(" · ");
}

// --- the URL holds the query -------------------------------------------------------------------------
function readURL() {
  const p = new URLSearchParams(location.search);
  state.q = p.get("q") || "";
  state.likes = [...new Set(p.getAll("like").filter((id) => /^\d+$/.test(id)))].slice(0, MAX_LIKES);
  state.step = [20, 50, 100].includes(Number(p.get("step"))) ? Number(p.get("step")) : 20;
  state.k = Math.min(MAX_K, Math.max(1, parseInt(p.get("k") || String(state.step), 10) || state.step));
  for (const key of FILTERS) state[key] = p.get(key) || "";
  state.open = /^\d+$/.test(p.get("open") || "") ? p.get("open") : "";
  $("q").value = state.q;
  $("k").value = String(state.step);
  for (const key of TYPED_FILTERS) $(key).value = state[key];
  setSelect("under", state.under);
  setSelect("ext", state.ext);
  showFilterCount();
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
  for (const id of state.likes) p.append("like", id);
  if (state.step !== 20) p.set("step", String(state.step));
  if (state.k !== state.step) p.set("k", String(state.k));
  for (const key of FILTERS) if (state[key]) p.set(key, state[key]);
  if (state.open) p.set("open", state.open);
  const url = `${location.pathname}${p.toString() ? "?" + p : ""}`;
  if (url === location.pathname + location.search) return;
  if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
}

function filterParams() {
  const p = new URLSearchParams();
  p.set("k", String(state.k));
  for (const key of FILTERS) if (state[key]) p.set(API_NAME[key] || key, state[key]);
  return p;
}

// --- searching ----------------------------------------------------------------------------------------
async function run({ push = true, keepScroll = false } = {}) {
  const browsing = !state.q.trim() && !state.likes.length && !state.image && !state.text_in_image;
  if (browsing && state.info && state.info.empty) {
    state.results = [];
    state.terms = state.minus = [];
    showChips();
    $("grid").replaceChildren();
    $("more").hidden = true;
    setStatus("");
    writeURL(push);
    return;
  }
  writeURL(push);
  const seq = ++state.seq;
  state.loading = true;
  setStatus(t("status.searching"));
  const started = performance.now();
  let data;
  try {
    const params = filterParams();
    if (browsing) {
      data = await api(`api/browse?${params}`);
    } else if (state.image) {
      const form = new FormData();
      form.append("image", state.image, state.image.name || "pasted-image");
      form.append("q", state.q);
      for (const [key, value] of params) form.append(key, value);
      for (const id of state.likes) form.append("like", id);
      data = await api("api/search", { method: "POST", body: form });
    } else if (state.likes.length === 1 && !state.q.trim()) {
      data = await api(`api/images/${state.likes[0]}/similar?${params}`);
    } else {
      params.set("q", state.q);
      for (const id of state.likes) params.append("like", id);
      data = await api(`api/search?${params}`);
    }
  } catch (e) {
    if (seq === state.seq) {
      state.loading = false;
      state.results = [];
      $("grid").replaceChildren();
      $("more").hidden = true;
      showError(e);
    }
    return;
  }
  if (seq !== state.seq) return; // a newer search has started meanwhile
  state.loading = false;
  render(data, performance.now() - started, keepScroll);
  syncDetail();
}

function render(data, roundTrip, keepScroll) {
  const y = window.scrollY;
  const browsing = data.query_ms === undefined; // the newest files, before any query
  state.results = data.results;
  state.terms = data.terms || [];
  state.minus = data.minus || [];
  showChips();
  renderTiles($("grid"), data.results, tileActions, weakFrom(data.results, data.typical));
  if (!data.results.length) {
    const filtered = FILTERS.some((key) => state[key]);
    showMessage(t("msg.noResults"), filtered ? t("msg.widen") :
      (state.info && state.info.empty ? t("msg.emptyStore") : t("msg.tryOther")));
  } else if (data.notes && data.notes.length) {
    // a query in a script the store's model does not read: the note names a model that does, and how to switch
    const switches = (data.languages || []).map(l => t("msg.switchModel", l.switch_to));
    showMessage(t("msg.note"), data.notes.concat([...new Set(switches)]).join(" "));  // each note ends its sentence
  } else {
    hideMessage();
  }
  $("more").hidden = data.results.length < state.k || state.k >= MAX_K;
  const what = state.image ? t("status.imageQuery") : state.likes.length ? t("status.similar") : "";
  if (browsing) setStatus(t("status.newest"));
  else setStatus([what, t("status.results", data.results.length, data.query_ms, Math.round(roundTrip))]
                 .filter(Boolean).join(" · ") + (state.image ? t("status.notKept") : ""));
  if (keepScroll) window.scrollTo(0, y);
  requestAnimationFrame(fillScreen);
}

// The observer fires when the end of the list comes near; if it is still near after a page arrived (a tall
// screen, small tiles), the next page is asked for at once.
function fillScreen() {
  if ($("more-area").getBoundingClientRect().top < window.innerHeight + SCROLL_AHEAD) loadMore();
}

// --- the query's parts as chips ----------------------------------------------------------------------------
function showChips() {
  const parts = [...state.terms.map((term) => ({ kind: "term", ...term })),
                 ...state.minus.map((term) => ({ kind: "minus", ...term }))];
  for (const id of state.likes) parts.push({ kind: "like", id });
  if (state.image) parts.push({ kind: "image", url: state.imageURL });
  renderChips($("chips"), parts, removePart);
}

function removePart(part) {
  if (part.kind === "like") state.likes = state.likes.filter((id) => id !== part.id);
  else if (part.kind === "image") { clearImage(false); }
  else {
    const keep = (list) => list.filter((term) => term.text !== part.text || term.weight !== part.weight);
    state.q = queryText(part.kind === "term" ? keep(state.terms) : state.terms,
                        part.kind === "minus" ? keep(state.minus) : state.minus);
    $("q").value = state.q;
  }
  state.k = state.step;
  run();
}

// Typed text replaces the query (a query image and "similar to" included); the chips show what is searched.
function submitText() {
  state.q = $("q").value.trim();
  state.likes = [];
  clearImage(false);
  state.k = state.step;
  run();
}

// "More like this" replaces the query with "similar to #id"; with `add` (a modifier key held, Shift+m, or the
// detail view's "Add to the query") it joins the query's other parts: "similar to #3 and #7", a chip each.
function moreLike(id, add = false) {
  state.open = "";
  state.openPushed = false;
  hideLightbox();
  if (add) {
    if (!state.likes.includes(String(id))) state.likes = [...state.likes, String(id)].slice(-MAX_LIKES);
  } else {
    state.likes = [String(id)];
    state.q = "";
    $("q").value = "";
    clearImage(false);
  }
  state.k = state.step;
  run();
  window.scrollTo(0, 0);
}

// A dropped, pasted or chosen image replaces the query; with a modifier key held (Shift, Ctrl, Alt, ⌘) it is
// added to the text and "similar to" parts instead.
function imageQuery(file, add = false) {
  if (!file) return;
  if (file.size > UPLOAD_LIMIT) {
    showMessage(t("msg.tooLarge"), t("msg.over20"), true);
    return;
  }
  clearImage(false);
  state.image = file;
  state.imageURL = URL.createObjectURL(file);
  if (add) {
    state.q = $("q").value.trim();
  } else {
    state.likes = [];
    state.q = "";
    $("q").value = "";
  }
  state.k = state.step;
  run();
}

function clearImage(rerun = true) {
  if (state.imageURL) URL.revokeObjectURL(state.imageURL);
  state.image = null;
  state.imageURL = null;
  $("file").value = "";
  if (rerun) run();
}

// --- the detail view: its own URL (?…&open=ID), so Back closes it and a link opens it ---------------------
function openLightbox(i) {
  const hit = state.results[i];
  if (hit) openDetail(hit);
}

function openDetail(hit) {
  const push = state.open !== String(hit.id);
  state.open = String(hit.id);
  if (push) {
    writeURL(true);
    state.openPushed = true;
  }
  showHit(hit);
}

function showHit(hit) {
  state.detail = hit;
  state.lb = state.results.findIndex((h) => h.id === hit.id);
  showDetail(hit, { similar: openDetail });
  $("lb-add").hidden = !hasQuery() || state.likes.includes(String(hit.id));
  document.querySelectorAll(".hit.selected").forEach((n) => n.classList.remove("selected"));
  const tile = tiles($("grid"))[state.lb];
  if (tile) tile.classList.add("selected");
  if ($("lightbox").contains(document.activeElement) === false) $("lb-close").focus();
}

function hasQuery() {
  return Boolean(state.q.trim() || state.likes.length || state.image);
}

// Show what the URL says: the detail of ?open=ID (from the results, or fetched when not among them), or none.
async function syncDetail() {
  if (!state.open) { hideLightbox(); return; }
  if (state.detail && String(state.detail.id) === state.open && !$("lightbox").hidden) return;
  const hit = state.results.find((h) => String(h.id) === state.open);
  if (hit) { showHit(hit); return; }
  try {
    const facts = await api(`api/images/${state.open}`);
    showHit(Object.assign({ score: null }, facts));
  } catch (e) {
    state.open = "";
    writeURL(false);
    showError(e);
  }
}

function closeLightbox() {
  if ($("lightbox").hidden) return;
  if (state.openPushed) {
    history.back(); // the entry the detail view pushed: popstate hides it
    return;
  }
  state.open = "";
  writeURL(false);
  hideLightbox();
}

function hideLightbox() {
  if ($("lightbox").hidden) return;
  hideDetail();
  const tile = tiles($("grid"))[state.lb];
  if (tile) tile.focus();
  state.lb = -1;
  state.detail = null;
}

function stepLightbox(delta) {
  const n = state.results.length;
  if (!n) return;
  const hit = state.results[((state.lb < 0 ? 0 : state.lb + delta) + n) % n];
  state.open = String(hit.id);
  writeURL(false); // stepping replaces the entry: Back still closes the view
  showHit(hit);
}

// --- the header on a phone: filters behind one button (with the number in use), smaller once scrolled --------
function showFilterCount() {
  const active = FILTERS.filter((key) => state[key]).length;
  $("filters-count").textContent = String(active);
  $("filters-count").hidden = !active;
}

function setupHeader() {
  $("filters-toggle").addEventListener("click", () => {
    const open = $("top").classList.toggle("filters-open");
    $("filters-toggle").setAttribute("aria-expanded", String(open));
  });
  let ticking = false;
  window.addEventListener("scroll", () => {
    if (ticking) return;
    ticking = true;
    requestAnimationFrame(() => {
      ticking = false;
      const compact = window.scrollY > 60 && !$("top").classList.contains("filters-open");
      $("top").classList.toggle("compact", compact);
    });
  }, { passive: true });
}

// --- infinite scroll, scores -----------------------------------------------------------------------------
// The next page of results when the end of the list comes near (or "Load more" is used): the same query with
// a larger k; the tiles already shown stay (grid.js keeps them), so nothing reloads or jumps.
function loadMore() {
  if (state.loading || $("more").hidden || state.k >= MAX_K) return;
  state.k = Math.min(MAX_K, state.k + state.step);
  run({ push: false, keepScroll: true });
}

const SCORES = "clipsearch.scores";

function readScoresChoice() {
  try { return localStorage.getItem(SCORES) === "1"; } catch (e) { return false; }
}

// Scores on every tile, or only on the one hovered or focused: a button (and the key s) on any screen.
function toggleScores(on) {
  const show = typeof on === "boolean" ? on : !document.body.classList.contains("show-scores");
  document.body.classList.toggle("show-scores", show);
  $("scores").setAttribute("aria-pressed", String(show));
  try { localStorage.setItem(SCORES, show ? "1" : "0"); } catch (e) { /* not kept */ }
}

// --- keyboard -----------------------------------------------------------------------------------------
const ARROWS = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: 2, ArrowUp: -2 }; // ±2: a row down or up

// The tile above or below tile i in justified rows: the nearest by horizontal centre in the next row.
function vertical(all, i, dir) {
  const here = all[i].getBoundingClientRect();
  const centre = here.left + here.width / 2;
  let best = -1, bestRow = null, bestDx = Infinity;
  for (let j = i + dir; j >= 0 && j < all.length; j += dir) {
    const box = all[j].getBoundingClientRect();
    if (Math.abs(box.top - here.top) < 2) continue; // same row
    if (bestRow !== null && Math.abs(box.top - bestRow) >= 2) break; // past the next row
    bestRow = box.top;
    const dx = Math.abs(box.left + box.width / 2 - centre);
    if (dx < bestDx) { best = j; bestDx = dx; }
  }
  return best < 0 ? i : best;
}

function onKey(e) {
  const target = e.target;
  const inField = target instanceof HTMLElement && target.matches("input, select, textarea");
  if (!$("lightbox").hidden) {
    if (e.key === "Escape") { closeLightbox(); e.preventDefault(); }
    else if (e.key === "ArrowRight") { stepLightbox(1); e.preventDefault(); }
    else if (e.key === "ArrowLeft") { stepLightbox(-1); e.preventDefault(); }
    else if ((e.key === "m" || e.key === "M") && state.detail) moreLike(state.detail.id, e.key === "M");
    return;
  }
  if (e.key === "/" && !inField) { e.preventDefault(); $("q").focus(); $("q").select(); return; }
  if (inField) {
    if (e.key === "Escape") target.blur();
    if (e.key === "ArrowDown" && target === $("q") && tiles($("grid")).length) {
      e.preventDefault();
      tiles($("grid"))[0].focus();
    }
    return;
  }
  const all = tiles($("grid"));
  const tile = target instanceof HTMLElement ? target.closest(".hit") : null;
  const i = tile ? all.indexOf(tile) : -1;
  if (e.key in ARROWS && all.length) {
    e.preventDefault();
    const step = ARROWS[e.key];
    const next = i < 0 ? 0 : Math.abs(step) === 1 ? Math.min(all.length - 1, Math.max(0, i + step))
      : vertical(all, i, Math.sign(step));
    all[next].focus();
  } else if (e.key === "Enter" && i >= 0 && target === tile) {
    e.preventDefault();
    openLightbox(i);
  } else if ((e.key === "m" || e.key === "M") && i >= 0) {
    moreLike(state.results[i].id, e.key === "M");
  } else if (e.key === "s") {
    toggleScores();
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
    const add = withModifier(e);
    imageQuery(files.find((f) => f.type.startsWith("image/")) || files[0], add);
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
  $("text-filter").hidden = !info.text && !state.text_in_image;
  $("qlang-filter").hidden = !info.language_code && !state.qlang;
}

async function init() {
  pickLanguage();
  $("lang").addEventListener("click", () => {
    setLanguage(language() === "zh" ? "en" : "zh");
    setStatus(state.lastStatus);
  });
  $("docs-link").href = withToken("docs");
  $("home").href = withToken("./");
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); submitText(); });
  $("file").addEventListener("change", () => imageQuery($("file").files[0]));
  for (const key of FILTERS) {
    $(key).addEventListener("change", () => {
      state[key] = $(key).value.trim();
      state.k = state.step;
      showFilterCount();
      run();
    });
  }
  $("k").addEventListener("change", () => { state.step = Number($("k").value); state.k = state.step; run(); });
  $("more").addEventListener("click", loadMore);
  new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) loadMore(); },
                           { rootMargin: `${SCROLL_AHEAD}px 0px` }).observe($("more-area"));
  keepJustified($("grid"));
  setupHeader();
  $("scores").addEventListener("click", toggleScores);
  toggleScores(readScoresChoice());
  $("lb-close").addEventListener("click", closeLightbox);
  $("lb-prev").addEventListener("click", () => stepLightbox(-1));
  $("lb-next").addEventListener("click", () => stepLightbox(1));
  $("lb-copy").addEventListener("click", copyPath);
  $("lb-similar").addEventListener("click", (e) => moreLike(state.detail.id, withModifier(e)));
  $("lb-add").addEventListener("click", () => moreLike(state.detail.id, true));
  $("lightbox").addEventListener("click", (e) => { if (e.target === $("lightbox")) closeLightbox(); });
  swipes($("lightbox"), stepLightbox);
  document.addEventListener("keydown", onKey);
  window.addEventListener("popstate", onHistory);
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
    showMessage(t("msg.storeEmpty"), t("msg.storeEmptyText"));
  }
  if (!state.q && !state.likes.length) $("q").focus();
  if (!state.info.empty) run({ push: false });
  else syncDetail();
}

// Back and Forward: a change of the query searches again; a change of ?open= only opens or closes the view.
function onHistory() {
  const key = () => JSON.stringify([state.q, state.likes, state.k, state.step, ...FILTERS.map((f) => state[f])]);
  const before = key();
  readURL();
  state.openPushed = false;
  if (key() !== before) {
    clearImage(false);
    run({ push: false });
  } else {
    syncDetail();
  }
}

init();
