// The result tiles: a thumbnail at the picture's own shape (a video's at its moment, with ▶ and the time),
// the score, the name, and a "more like this" button; the weak-tail marker between them. What a tile does
// when used is handed in (`actions`), so this module only draws. layout.js sizes the tiles.

import { el, baseName, clock, withModifier } from "./dom.js";
import { thumbURL, isVideo } from "./api.js";
import { t } from "./i18n.js";
import { aspectOf, justify } from "./layout.js";

export function tile(hit, i, actions) {
  const name = baseName(hit.path);
  const img = el("img", { className: "thumb", alt: name, src: thumbURL(hit), decoding: "async",
                          loading: i < 30 ? "eager" : "lazy" });
  const similar = el("button", { type: "button", className: "similar", textContent: t("tile.similar"),
                                 title: t("tile.similar.title") });
  similar.addEventListener("click", (e) => { e.stopPropagation(); actions.similar(hit.id, withModifier(e)); });
  const score = hit.score == null ? "" : hit.score.toFixed(3);
  // the marks over the top of the picture flow in one wrapping row, so on a narrow tile they never cover
  // each other: the video's time first, the matched text, the score last (shown on demand)
  const marks = [];
  if (isVideo(hit)) marks.push(videoBadge(hit));
  if (hit.text_matches && hit.text_matches.length) marks.push(textLine(hit));
  if (score) marks.push(el("span", { className: "score", textContent: score }));
  const parts = [img, similar];
  if (marks.length) parts.push(el("div", { className: "marks" }, marks));
  parts.push(el("figcaption", { textContent: name }));
  const fig = el("figure", { className: "hit", tabIndex: 0, title: score ? `${hit.path}\nscore ${score}` : hit.path },
                 parts);
  fig.dataset.index = String(i);
  fig.dataset.id = String(hit.id);
  fig.dataset.aspect = String(aspectOf(hit));
  fig.addEventListener("click", () => actions.open(i));
  return fig;
}

// ▶ and the moment's time, over the thumbnail's corner (what a player's timeline would say).
function videoBadge(hit) {
  const time = clock(hit.timestamp);
  return el("span", { className: "badge", textContent: `▶ ${time}`, title: t("tile.video", time) });
}

// The lines of the picture's text where the query's words matched (a store that reads text), over its top.
function textLine(hit) {
  const text = hit.text_matches.map((m) => m.text).join(" · ");
  return el("span", { className: "hit-text", textContent: text, title: hit.text || text });
}

function tailMarker(weakFrom) {
  const text = weakFrom === 0 ? t("tail.none") : t("tail.weak");
  return el("div", { className: "break", role: "separator", textContent: text });
}

// Draw `hits` into `grid`, keeping the tiles already there when the new list only extends the old one (the
// next page of an infinite scroll): their pictures do not reload and the scroll position holds.
export function renderTiles(grid, hits, actions, weakFrom = -1) {
  const shown = tiles(grid);
  const marker = grid.querySelector(".break");
  const markerAt = marker ? Number(marker.dataset.at) : -1;
  const extends_ = shown.length && shown.length <= hits.length
    && shown.every((node, i) => node.dataset.id === String(hits[i].id))
    && (markerAt === weakFrom || (markerAt < 0 && weakFrom >= shown.length)); // the marker stays where it was
  const keep = extends_ ? shown.length : 0;
  if (!keep) grid.replaceChildren();
  const added = [];
  for (let i = keep; i < hits.length; i++) {
    if (i === weakFrom) {
      const node = tailMarker(weakFrom);
      node.dataset.at = String(weakFrom);
      added.push(node);
    }
    added.push(tile(hits[i], i, actions));
  }
  grid.append(...added);
  justify(grid);
}

export function tiles(grid) {
  return [...grid.querySelectorAll(".hit")];
}
