// The duplicates view: groups side by side with size, pixels, format, date, the suggested keeper and why.
// It never deletes anything; it can export the non-keepers' paths as a text file. Paths and file names are
// data: they reach the DOM only through textContent and properties, never through innerHTML.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN = new URLSearchParams(location.search).get("token") || "";
let lastGroups = [];

function withToken(url) {
  if (!TOKEN) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);
}

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) node[key] = value; // properties only: never markup
  node.append(...children);
  return node;
}

function humanSize(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let size = n;
  while (size >= 1024 && i < units.length - 1) { size /= 1024; i += 1; }
  return i === 0 ? `${size} B` : `${size.toFixed(1)} ${units[i]}`;
}

function showMessage(title, text) {
  $("message-title").textContent = title;
  $("message-text").textContent = text || "";
  $("message").hidden = false;
}

async function api(path) {
  const headers = TOKEN ? { Authorization: "Bearer " + TOKEN } : {};
  const resp = await fetch(path, { headers });
  let body = null;
  try { body = await resp.json(); } catch (_e) { body = null; }
  if (!resp.ok) {
    const err = new Error((body && body.error) || `the server answered ${resp.status}`);
    err.hint = body && body.hint;
    throw err;
  }
  return body;
}

function baseName(path) {
  const i = path.lastIndexOf("/");
  return i >= 0 ? path.slice(i + 1) : path;
}

function member(im, level) {
  const alike = im.keeper ? "" : level === "same"
    ? `${im.distance} bits apart` + (im.similarity === null ? "" : ` · cosine ${im.similarity.toFixed(3)}`)
    : (im.similarity === null ? "" : `cosine ${im.similarity.toFixed(4)}`);
  const facts = [
    ["size", humanSize(im.size)],
    ["pixels", im.width ? `${im.width}×${im.height}` : "-"],
    ["format", im.format || "-"],
    ["modified", im.modified.replace("T", " ")],
  ];
  if (alike) facts.push(["to keeper", alike]);
  const list = el("dl");
  for (const [k, v] of facts) list.append(el("dt", { textContent: k }), el("dd", { textContent: v }));
  const img = el("img", { src: withToken(`api/images/${im.id}/thumbnail`), alt: baseName(im.path), loading: "lazy" });
  const caption = el("figcaption", { title: im.path }, [
    ...(im.keeper ? [el("span", { className: "badge", textContent: "keep" }), " "] : []),
    el("span", { className: "path", textContent: im.path }),
  ]);
  return el("figure", { className: im.keeper ? "member keeper" : "member" }, [img, caption, list]);
}

function render(data) {
  const main = $("groups");
  main.replaceChildren();
  lastGroups = data.groups;
  $("export").disabled = !data.groups.length;
  const extra = data.groups.reduce((n, g) => n + g.images.length - 1, 0);
  $("status").textContent = data.groups.length
    ? `${data.groups.length} ${data.groups.length === 1 ? "group" : "groups"}: ${extra} ${extra === 1 ? "file" : "files"} beside the keepers, ${humanSize(data.reclaimable)}`
    : "no duplicates found";
  for (const note of data.notes || []) showMessage("Note:", note);
  data.groups.forEach((g, i) => {
    const title = el("h2", {}, [
      `Group ${i + 1} · ${g.images.length} images · `,
      el("span", { className: "why", textContent: `kept: ${g.reason}` }),
    ]);
    main.append(el("section", { className: "group" }, [title, el("div", { className: "members" },
      g.images.map((im) => member(im, data.level)))]));
  });
}

async function find(event) {
  if (event) event.preventDefault();
  $("message").hidden = true;
  const level = $("level").value;
  const params = new URLSearchParams({ level });
  if (level === "similar") params.set("threshold", $("threshold").value);
  $("status").textContent = "looking for duplicates…";
  try {
    render(await api(`api/dupes?${params}`));
  } catch (err) {
    $("status").textContent = "";
    showMessage(err.message, err.hint);
  }
}

function exportPaths() {
  const paths = lastGroups.flatMap((g) => g.images.filter((im) => !im.keeper).map((im) => im.path));
  const blob = new Blob([paths.join("\n") + "\n"], { type: "text/plain" });
  const link = el("a", { href: URL.createObjectURL(blob), download: "clipsearch-non-keepers.txt" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

$("dupes-form").addEventListener("submit", find);
$("level").addEventListener("change", () => { $("threshold-label").hidden = $("level").value !== "similar"; find(); });
$("export").addEventListener("click", exportPaths);
$("back").href = withToken("./");
find();
