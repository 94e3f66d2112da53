// The query as chips: every part of it (text terms with their weights, minus terms, the query image, "similar
// to #id") is shown and can be removed on its own. The text terms are the server's reading of the search box
// (the API's `terms` and `minus`), so the page never re-implements the syntax; queryText() writes the box
// back from what remains.

import { el } from "./dom.js";
import { withToken } from "./api.js";
import { t } from "./i18n.js";

// parts: [{ kind: "term" | "minus", text, weight } | { kind: "like", id } | { kind: "image", url }]
export function renderChips(container, parts, remove) {
  container.replaceChildren(...parts.map((part) => chip(part, () => remove(part))));
  container.hidden = !parts.length;
}

function chip(part, onRemove) {
  const label = labelOf(part);
  const children = [];
  if (part.kind === "like") {
    children.push(el("img", { src: withToken(`api/images/${part.id}/thumbnail`), alt: "" }));
  } else if (part.kind === "image") {
    children.push(el("img", { src: part.url, alt: "" }));
  }
  children.push(el("span", { textContent: label }));
  const close = el("button", { type: "button", textContent: "×", title: t("chip.remove", label),
                               ariaLabel: t("chip.remove", label) });
  close.addEventListener("click", onRemove);
  children.push(close);
  const node = el("span", { className: `chip chip-${part.kind}` }, children);
  node.dataset.kind = part.kind;
  return node;
}

function labelOf(part) {
  const weight = part.weight !== undefined && part.weight !== 1 ? ` ×${part.weight}` : "";
  if (part.kind === "term") return part.text + weight;
  if (part.kind === "minus") return `− ${part.text}${weight}`;
  if (part.kind === "like") return t("chip.like", part.id);
  return t("chip.image");
}

// The search box's text for these terms: "red dress +beach::2 -people".
export function queryText(terms, minus) {
  const one = (term) => term.text + (term.weight !== 1 ? `::${term.weight}` : "");
  const plus = terms.map((term, i) => (i ? "+" : "") + one(term));
  return [...plus, ...minus.map((term) => "-" + one(term))].join(" ");
}
