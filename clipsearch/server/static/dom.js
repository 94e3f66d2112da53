// Small DOM and formatting helpers. Data (file names, paths) reaches the DOM only through properties and
// textContent, never as markup: el() sets properties, so a file named <script>… is shown, not run.

export const $ = (id) => document.getElementById(id);

export function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) node[key] = value; // properties only: never markup
  node.append(...children);
  return node;
}

export function baseName(path) {
  const parts = String(path).split("/");
  return parts[parts.length - 1] || String(path);
}

export function humanSize(n) {
  if (n == null) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let size = n, i = 0;
  while (size >= 1024 && i < units.length - 1) { size /= 1024; i++; }
  return i === 0 ? `${size} B` : `${size.toFixed(1)} ${units[i]}`;
}

// Seconds into a video as a player shows them: 83.4 → "1:23", 3725 → "1:02:05".
export function clock(seconds) {
  const whole = Math.floor(seconds);
  const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), s = whole % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
}

// A modifier key held (Shift, Ctrl, Alt, ⌘): a dropped image or "more like this" joins the query then.
export function withModifier(e) {
  return e.shiftKey || e.ctrlKey || e.altKey || e.metaKey;
}
