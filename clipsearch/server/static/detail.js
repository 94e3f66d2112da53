// The detail view of one result: the picture (or the video, started at the hit's moment), its facts, and what
// can be done with it. Opening and stepping are driven by app.js, which knows the results.

import { $, el, baseName, clock, humanSize } from "./dom.js";
import { api, thumbURL, fileURL, isVideo } from "./api.js";
import { t } from "./i18n.js";

const STRIP = 12; // similar pictures under the facts

// Facts other parts of the store add to an image (capture time, camera, lens, place; the text read in it once
// the store has it): each is shown when the API's image or hit carries the field, under the label's word. Add
// a field here to show it.
const PHOTO_FACTS = [
  ["taken", "lb.taken"], ["camera", "lb.camera"], ["lens", "lb.lens"], ["gps", "lb.place"], ["text", "lb.text"],
];

// `actions.similar(hit)` opens a picture of the strip.
export function showDetail(hit, actions) {
  $("lb-note").hidden = true;
  if (isVideo(hit)) showVideo(hit); else showImage(hit);
  $("lb-name").textContent = baseName(hit.path);
  $("lb-path").textContent = hit.path;
  $("lb-score").textContent = hit.score == null ? "–" : hit.score.toFixed(4);
  $("lb-moment").textContent = isVideo(hit) ? clock(hit.timestamp) : "";
  $("lb-moment").hidden = $("lb-moment-label").hidden = !isVideo(hit);
  $("lb-size").textContent = humanSize(hit.size);
  $("lb-dims").textContent = hit.width ? `${hit.width} × ${hit.height}${hit.format ? " " + hit.format : ""}` : "–";
  $("lb-date").textContent = hit.modified.replace("T", " ");
  $("lb-open").href = fileURL(hit);
  $("lb-download").href = fileURL(hit, true);
  $("lb-copy").textContent = t("lb.copy");
  showPhotoFacts(hit);
  $("lightbox").hidden = false;
  showStrip(hit, actions);
}

function showPhotoFacts(hit) {
  const rows = [];
  for (const [field, word] of PHOTO_FACTS) {
    const value = hit[field];
    if (value == null || value === "") continue;
    const text = typeof value === "object" ? Object.values(value).join(", ") : String(value);
    rows.push(el("dt", { textContent: t(word) }), el("dd", { textContent: text }));
  }
  $("lb-photo-facts").replaceChildren(...rows);
  $("lb-photo-facts").hidden = !rows.length;
}

let stripFor = null;

// A strip of the nearest pictures to this one (the API's "more like this"), each opening in this view.
async function showStrip(hit, actions) {
  const strip = $("lb-strip");
  if (stripFor === hit.id) return;
  stripFor = hit.id;
  strip.replaceChildren();
  let data;
  try {
    data = await api(`api/images/${hit.id}/similar?k=${STRIP}`);
  } catch (e) {
    return; // the strip is extra: the view works without it
  }
  if (stripFor !== hit.id) return; // another picture was opened meanwhile
  // the server leaves out the picture itself and, for a video's moment, the same video's other moments
  strip.replaceChildren(...data.results.map((other) => {
    const img = el("img", { src: thumbURL(other), alt: baseName(other.path), title: baseName(other.path),
                            loading: "lazy", tabIndex: 0 });
    img.dataset.id = String(other.id);
    const open = () => actions.similar(other);
    img.addEventListener("click", open);
    img.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    return img;
  }));
}

function showImage(hit) {
  stopVideo();
  const img = $("lb-img");
  img.hidden = false;
  img.onerror = () => {
    img.onerror = null;
    img.src = thumbURL(hit);
    $("lb-note").textContent = t("lb.cannotShow");
    $("lb-note").hidden = false;
  };
  img.src = fileURL(hit);
  img.alt = baseName(hit.path);
}

// The video from the file endpoint (which answers Range requests, so the browser seeks without downloading it
// all), started at the hit's moment; the moment's thumbnail is its poster until the frame arrives.
function showVideo(hit) {
  const img = $("lb-img");
  img.hidden = true;
  img.removeAttribute("src");
  const video = $("lb-video");
  video.hidden = false;
  video.poster = thumbURL(hit);
  video.onloadedmetadata = () => { video.currentTime = Math.min(hit.timestamp, video.duration || hit.timestamp); };
  video.onerror = () => {
    $("lb-note").textContent = t("lb.cannotShow");
    $("lb-note").hidden = false;
  };
  video.src = fileURL(hit);
}

function stopVideo() {
  const video = $("lb-video");
  video.pause();
  video.onloadedmetadata = video.onerror = null;
  video.removeAttribute("src");
  video.removeAttribute("poster");
  video.load(); // lets go of the connection
  video.hidden = true;
}

export function hideDetail() {
  $("lightbox").hidden = true;
  stripFor = null;
  $("lb-img").removeAttribute("src");
  stopVideo();
}

export async function copyPath() {
  const text = $("lb-path").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  $("lb-copy").textContent = t("lb.copied");
}

// A horizontal swipe on a touch screen steps to the next (left) or previous (right) picture.
export function swipes(node, step) {
  let start = null;
  node.addEventListener("touchstart", (e) => {
    start = e.touches.length === 1 ? { x: e.touches[0].clientX, y: e.touches[0].clientY } : null;
  }, { passive: true });
  node.addEventListener("touchend", (e) => {
    if (!start || !e.changedTouches.length) return;
    const dx = e.changedTouches[0].clientX - start.x, dy = e.changedTouches[0].clientY - start.y;
    start = null;
    if (Math.abs(dx) > 50 && Math.abs(dx) > 2 * Math.abs(dy)) step(dx < 0 ? 1 : -1);
  }, { passive: true });
}
