// Talking to the server: JSON calls, and the URLs of thumbnails and originals (catalog ids, never paths).
// A token in the page's own URL travels on every request.

export const TOKEN = new URLSearchParams(location.search).get("token") || "";
export const MAX_K = 500;
export const UPLOAD_LIMIT = 20 * 1024 * 1024;

export function withToken(url) {
  if (!TOKEN) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);
}

export async function api(path, options = {}) {
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

function version(hit) {
  return encodeURIComponent(hit.digest); // the content digest: only such a URL is cached for good
}

export function thumbURL(hit) {
  return withToken(`api/images/${hit.id}/thumbnail?v=${version(hit)}`);
}

export function fileURL(hit, download = false) {
  return withToken(`api/images/${hit.id}/file?v=${version(hit)}${download ? "&download=1" : ""}`);
}

export const isVideo = (hit) => hit.timestamp != null;
