// Where the scores fall off. Cosine scores mean different things under different models, so each is read
// against the query's typical score over the store (`typical`, from the API: the median and the spread of
// the query's scores over a fixed sample of the store). A best hit less than STRONG spreads above the median
// is no strong match (the marker then comes first); otherwise the weak tail starts at the first hit that has
// lost more than TAIL of the best hit's lead over the median. Measured in the README ("Weak tail") on the
// offline model and the test model. Nothing is hidden: the page only draws a marker where the tail begins.

export const STRONG = 3.5;
export const TAIL = 0.5;

// The index of the first weak hit (0: none is strong), or -1 when every hit shown is strong.
export function weakFrom(hits, typical) {
  if (!hits.length || !typical || !(typical.spread > 0)) return -1;
  const lead = (score) => score - typical.median;
  const top = lead(hits[0].score);
  if (top / typical.spread < STRONG) return 0;
  return hits.findIndex((hit) => lead(hit.score) < TAIL * top);
}
