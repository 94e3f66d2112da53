// The page's own words in English and Chinese. The language comes from ?lang=, then the choice kept in this
// browser, then the browser's language; the switch in the header changes it without a reload. Elements name
// their words with data-i18n (textContent), data-i18n-title, data-i18n-placeholder and data-i18n-label.

const WORDS = {
  en: {
    "search.placeholder": "Describe a picture: red dress, beach::2 -people",
    "search.label": "Search text (press / to focus)",
    "search.go": "Search",
    "search.image": "Image…",
    "search.image.title": "Search by an image: choose one, drop one on the page, or paste one",
    "filters.folder": "Folder", "filters.allFolders": "all folders", "filters.type": "Type",
    "filters.anyType": "any type", "filters.after": "Modified from", "filters.before": "before",
    "filters.show": "Show", "filters": "Filters", "filters.text": "Text in the picture",
    "filters.qlang": "Query language", "filters.qlang.placeholder": "auto",
    "filters.qlang.title": "The query's language code for this model (e.g. fra_Latn, zho_Hans); empty: detected from its script",
    "filters.takenAfter": "Taken from", "filters.takenBefore": "before", "filters.camera": "Camera",
    "filters.camera.placeholder": "canon, iphone…", "filters.near": "Near",
    "filters.near.placeholder": "lat,lon,km",
    "filters.near.title": "Photos taken within KM (default 10) of a place, in decimal degrees: 48.8584,2.2945,5",
    "status.empty": "empty store", "status.searching": "searching…",
    "count.photos": (n) => `${n.toLocaleString()} ${n === 1 ? "photo" : "photos"}`, "count.join": ", ",
    "count.videos": (n, m) => `${n.toLocaleString()} ${n === 1 ? "video" : "videos"} (${m.toLocaleString()} ${m === 1 ? "moment" : "moments"})`,
    "status.results": (n, ms, rt) => `${n} ${n === 1 ? "result" : "results"} in ${ms} ms · ${rt} ms with the network`,
    "status.newest": "newest first", "status.imageQuery": "image query", "status.similar": "more like this",
    "status.notKept": " (image queries are not kept in the link)",
    "tile.similar": "More like this", "tile.similar.title": "Find images like this one (m); with Shift, add it to the query (Shift+m)",
    "tile.video": (t) => `video, at ${t}`,
    "lb.close": "Close (Esc)", "lb.prev": "Previous (←)", "lb.next": "Next (→)", "lb.copy": "Copy path",
    "lb.copied": "Copied", "lb.score": "Score", "lb.size": "Size", "lb.dims": "Dimensions", "lb.date": "Modified",
    "lb.moment": "Moment", "lb.similar": "More like this", "lb.add": "Add to the query",
    "lb.add.title": "Search for pictures like this one and the query's other parts together (Shift+m)", "lb.open": "Open original", "lb.download": "Download",
    "lb.strip": "Similar pictures", "lb.taken": "Taken", "lb.camera": "Camera", "lb.lens": "Lens", "lb.place": "Place",
    "lb.text": "Text in the picture",
    "lb.cannotShow": "The original cannot be shown here (a format the browser does not display, or the file " +
      "changed since it was indexed); this is its thumbnail.",
    "more": "Load more", "drop": "Drop an image to search with it",
    "msg.noResults": "No results.", "msg.widen": "Nothing matches the filters: widen or clear them.",
    "msg.emptyStore": "The store is empty: index a folder into it first.", "msg.tryOther": "Try other words.",
    "msg.note": "Note:", "msg.switchModel": (model) => `Switch: clipsearch reindex --model ${model}`,
    "msg.tooLarge": "Too large:", "msg.over20": "that image is over 20 MB; choose a smaller one.",
    "msg.storeEmpty": "This store is empty.",
    "msg.storeEmptyText": "Index a folder into it (clipsearch index FOLDER), then search here: the server " +
      "picks new images up without a restart.",
    "err.bad": "That query did not work:", "err.notfound": "Not found:", "err.toolarge": "Too large:",
    "err.server": "The server hit an error:", "err.network": "No connection:", "err.auth": "Not allowed:",
    "err.other": "Error:", "status.serverError": "server error",
    "keys": "Keys: / search · arrows move · Enter open · Esc close · m more like this (Shift+m: add it) · s scores", "docs": "API",
    "lang.switch": "中文", "lang.title": "切换到中文",
    "chip.remove": (label) => `Remove ${label} from the query`, "chip.like": (id) => `similar to #${id}`,
    "chip.image": "this image",
    "scores": "Scores", "scores.title": "Show every result's score (s)",
    "tail.weak": "Weaker matches below: the scores fall off here",
    "tail.none": "No strong matches: these are only the nearest pictures",
  },
  zh: {
    "search.placeholder": "描述一张图片：红色连衣裙、beach::2 -people",
    "search.label": "搜索文字（按 / 聚焦）",
    "search.go": "搜索",
    "search.image": "图片…",
    "search.image.title": "以图搜图：选择、拖放或粘贴一张图片",
    "filters.folder": "文件夹", "filters.allFolders": "全部文件夹", "filters.type": "类型",
    "filters.anyType": "任意类型", "filters.after": "修改日期自", "filters.before": "至",
    "filters.show": "每次显示", "filters": "筛选", "filters.text": "图中文字",
    "filters.qlang": "查询语言", "filters.qlang.placeholder": "自动",
    "filters.qlang.title": "此模型的查询语言代码（如 zho_Hans、eng_Latn）；留空则按文字自动识别",
    "filters.takenAfter": "拍摄日期自", "filters.takenBefore": "至", "filters.camera": "相机",
    "filters.camera.placeholder": "canon、iphone…", "filters.near": "附近",
    "filters.near.placeholder": "纬度,经度,公里",
    "filters.near.title": "在某地点若干公里内（默认 10）拍摄的照片，十进制度数：48.8584,2.2945,5",
    "status.empty": "空的索引库", "status.searching": "搜索中…",
    "count.photos": (n) => `${n.toLocaleString()} 张照片`, "count.join": "，",
    "count.videos": (n, m) => `${n.toLocaleString()} 个视频（${m.toLocaleString()} 个片段）`,
    "status.results": (n, ms, rt) => `${n} 个结果，用时 ${ms} 毫秒 · 含网络 ${rt} 毫秒`,
    "status.newest": "最新的在前", "status.imageQuery": "以图搜图", "status.similar": "相似图片",
    "status.notKept": "（图片查询不会保存在链接中）",
    "tile.similar": "相似图片", "tile.similar.title": "查找与此相似的图片 (m)；按住 Shift 则加入当前查询 (Shift+m)",
    "tile.video": (t) => `视频，位于 ${t}`,
    "lb.close": "关闭 (Esc)", "lb.prev": "上一张 (←)", "lb.next": "下一张 (→)", "lb.copy": "复制路径",
    "lb.copied": "已复制", "lb.score": "得分", "lb.size": "大小", "lb.dims": "尺寸", "lb.date": "修改时间",
    "lb.moment": "时间点", "lb.similar": "相似图片", "lb.add": "加入查询",
    "lb.add.title": "与查询的其他部分一起，查找与此相似的图片 (Shift+m)", "lb.open": "打开原文件", "lb.download": "下载",
    "lb.strip": "相似图片", "lb.taken": "拍摄时间", "lb.camera": "相机", "lb.lens": "镜头", "lb.place": "地点",
    "lb.text": "图中文字",
    "lb.cannotShow": "浏览器无法显示原文件（格式不受支持，或文件在索引后已更改）；这是它的缩略图。",
    "more": "加载更多", "drop": "拖放图片以搜索",
    "msg.noResults": "没有结果。", "msg.widen": "没有符合筛选条件的结果：请放宽或清除筛选。",
    "msg.emptyStore": "索引库是空的：请先索引一个文件夹。", "msg.tryOther": "换个说法试试。",
    "msg.note": "提示：", "msg.switchModel": (model) => `切换模型：clipsearch reindex --model ${model}`,
    "msg.tooLarge": "太大：", "msg.over20": "图片超过 20 MB，请选择更小的图片。",
    "msg.storeEmpty": "此索引库是空的。",
    "msg.storeEmptyText": "先索引一个文件夹（clipsearch index 文件夹），再在这里搜索：服务器无需重启即可读到新图片。",
    "err.bad": "查询无效：", "err.notfound": "未找到：", "err.toolarge": "太大：", "err.server": "服务器出错：",
    "err.network": "无法连接：", "err.auth": "无权访问：", "err.other": "错误：", "status.serverError": "服务器错误",
    "keys": "快捷键：/ 搜索 · 方向键移动 · Enter 打开 · Esc 关闭 · m 相似图片（Shift+m 加入查询）· s 得分", "docs": "API",
    "lang.switch": "English", "lang.title": "Switch to English",
    "chip.remove": (label) => `从查询中移除 ${label}`, "chip.like": (id) => `与 #${id} 相似`,
    "chip.image": "这张图片",
    "scores": "得分", "scores.title": "显示每个结果的得分 (s)",
    "tail.weak": "以下匹配较弱：得分从这里明显下降",
    "tail.none": "没有很好的匹配：以下只是最接近的图片",
  },
};

const STORED = "clipsearch.lang";
let current = "en";

export function pickLanguage() {
  const asked = new URLSearchParams(location.search).get("lang");
  let kept = null;
  try { kept = localStorage.getItem(STORED); } catch (e) { kept = null; }
  const browser = (navigator.languages && navigator.languages[0]) || navigator.language || "en";
  const choice = [asked, kept, browser.toLowerCase().startsWith("zh") ? "zh" : "en"].find((l) => l in WORDS);
  setLanguage(choice || "en", false);
}

export function language() { return current; }

export function setLanguage(lang, keep = true) {
  current = lang in WORDS ? lang : "en";
  if (keep) { try { localStorage.setItem(STORED, current); } catch (e) { /* private mode: not kept */ } }
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
  translatePage();
}

export function t(key, ...args) {
  const word = (WORDS[current] && WORDS[current][key]) ?? WORDS.en[key] ?? key;
  return typeof word === "function" ? word(...args) : word;
}

function translatePage() {
  const attrs = { i18n: "textContent", i18nTitle: "title", i18nPlaceholder: "placeholder", i18nLabel: "ariaLabel" };
  for (const [data, prop] of Object.entries(attrs)) {
    const selector = "[data-" + data.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()) + "]";
    for (const node of document.querySelectorAll(selector)) node[prop] = t(node.dataset[data]);
  }
}
