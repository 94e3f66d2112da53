// Justified rows, as immich and Google Photos lay photos out: every picture keeps its aspect ratio, each full
// row is scaled to the width of the page, the last row of a run keeps the target height. A `.break` element
// (the weak-tail marker) ends a run: the rows before it and after it are justified separately.

const TARGET = { wide: 220, narrow: 120 }; // px: the row height aimed at on a desktop and on a phone
const GAP = 6; // px between tiles, as the CSS grid gap says

export function aspectOf(hit) {
  const ratio = hit.width && hit.height ? hit.width / hit.height : 1;
  return Math.min(5, Math.max(0.2, ratio)); // a panorama or a sliver still gets a usable tile
}

export function rowHeight(width) {
  return width < 700 ? TARGET.narrow : TARGET.wide;
}

// Size the tiles of `grid` (figures with data-aspect, and .break elements between runs) to justified rows.
export function justify(grid) {
  const style = getComputedStyle(grid);
  const width = grid.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  if (width <= 0) return;
  const target = rowHeight(window.innerWidth);
  let row = [];
  let sum = 0;
  const place = (height) => {
    for (const [tile, aspect] of row) {
      tile.style.width = `${(aspect * height).toFixed(2)}px`;
      tile.style.height = `${height.toFixed(2)}px`;
    }
    row = [];
    sum = 0;
  };
  for (const node of grid.children) {
    if (node.classList.contains("break")) { place(target); continue; }
    const aspect = Number(node.dataset.aspect) || 1;
    row.push([node, aspect]);
    sum += aspect;
    const gaps = GAP * (row.length - 1);
    if (sum * target + gaps >= width) place((width - gaps - 1) / sum); // 1 px slack: rounding never wraps
  }
  place(target);
}

// Re-justify whenever the grid's width changes (window resized, phone rotated, scrollbar appeared).
export function keepJustified(grid) {
  let last = 0;
  new ResizeObserver(() => {
    if (grid.clientWidth !== last) { last = grid.clientWidth; justify(grid); }
  }).observe(grid);
}
