"""Where the scores fall off, per query: each hit's lead over the query's median score in the store's sample,
in spreads (what the web page's weak-tail marker is judged by: `server/static/relevance.js`).

    python bench/weak_tail.py STORE "a cat" "a rocket" "xyzzy qwerty" ...

Prints, per query, the best hit's lead, the leads of the next hits, where the page would put its marker, and
the top names. No baseline to compare against: the numbers are the measurement the README quotes.
"""

from __future__ import annotations

import sys
from pathlib import Path

STRONG = 3.5  # as relevance.js
TAIL = 0.5


def main(store_path: str, queries: list[str]) -> None:
    import clipsearch

    with clipsearch.open(store_path, create=False) as store:
        for query in queries:
            hits = store.search(query, k=50)
            typical = hits.typical
            if not hits or typical is None or typical["spread"] <= 0:
                print(f"{query!r}: no hits or no spread")
                continue
            leads = [(h.score - typical["median"]) / typical["spread"] for h in hits]
            weak = 0 if leads[0] < STRONG else next((i for i, v in enumerate(leads) if v < TAIL * leads[0]), -1)
            names = ", ".join(Path(h.path).name for h in hits[:4])
            print(f"{query!r:28} best {leads[0]:5.1f}  next {' '.join(f'{v:.1f}' for v in leads[1:6]):28} "
                  f"marker at {weak:>2}  [{names}]")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
