"""How to combine CLIP with the text read inside images: recall@k of CLIP alone, the text alone, plain reciprocal
rank fusion and RRF weighted by how much of the query the text holds (what `query` does), on one generated set.

The set (all generated here, nothing downloaded): coloured shapes, which the tiny model learns to find by look
in seconds (3 of each of 12 classes; queries "a red circle", ...: findable only by their look, they hold no
text); 12 photos each carrying a distinct label ("BOARDING PASS", "发票", ...; queries are a word of it: findable
only by their words, the model cannot read); and 6 confusers, photos whose label names a shape ("RED CIRCLE
SALE"), which a text match wrongly lifts for look queries. recall@k: the share of a query's targets in its
first k, averaged over the queries of each kind.

    python bench/text_fusion.py                        # trains clipsearch-tiny for ~30 s first
    python bench/text_fusion.py --model PATH           # a model folder made by `clipsearch finetune`
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import clipsearch  # noqa: E402
from clipsearch.media import synthetic  # noqa: E402
from clipsearch.query.engine import Query, QueryEngine  # noqa: E402
from clipsearch.query.text_match import fuse, fusion_words  # noqa: E402
from clipsearch.query.text_side import TextSide  # noqa: E402
from tests.text_images import render  # noqa: E402

LABELS = {  # file stem: (label drawn on the photo, the query)
    "boarding": ("BOARDING PASS 登机牌", "boarding pass"),
    "invoice": ("INVOICE2024", "invoice"),
    "fapiao": ("发票 NO.8841", "发票"),
    "wifi": ("WIFI PASSWORD", "wifi password"),
    "menu": ("LUNCH MENU", "lunch menu"),
    "parking": ("PARKING TICKET", "parking ticket"),
    "meeting": ("会议记录 Q3", "会议记录"),
    "taxi": ("TAXI RECEIPT", "taxi receipt"),
    "library": ("LIBRARY CARD", "library card"),
    "prescription": ("PRESCRIPTION", "prescription"),
    "ticket": ("CONCERT TICKET", "concert"),
    "exit": ("EMERGENCY EXIT", "emergency exit"),
}
CONFUSERS = ["RED CIRCLE SALE", "BLUE SQUARE CAFE", "GREEN TRIANGLE", "YELLOW CIRCLE LINE", "RED SQUARE",
             "BLUE TRIANGLE"]
PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")
KS = (1, 3, 10)
TEXT_WEIGHTS = (1.0, 0.75, 0.25)  # the query weighs text ranks 0.5 (text_match.TEXT_WEIGHT)


def train(root: Path) -> Path:
    from clipsearch.tune.config import TrainConfig
    from clipsearch.tune.finetune import finetune

    synthetic.make_dataset(root / "train", per_class=24, seed=1, class_folders=True)
    finetune(root / "train", root / "model", base_model="clipsearch-tiny", templates=["a {}"],
             config=TrainConfig(epochs=8, batch_size=16, lr=2e-3, warmup_steps=5, seed=0), alpha=1.0, device="cpu",
             val_fraction=0.2, test_fraction=0.0)
    return root / "model"


def make_set(folder: Path) -> tuple[list[tuple[str, set[str]]], list[tuple[str, set[str]]]]:
    """(look queries, word queries), each with the file stems it should find."""
    samples = synthetic.make_dataset(folder, per_class=3, seed=7)
    look: dict[str, set[str]] = {}
    for s in samples:
        look.setdefault(s.caption, set()).add(s.path.stem)
    words = []
    for i, (stem, (label, query)) in enumerate(LABELS.items()):
        render(folder / f"{stem}.png", [label], PHOTOS[i % len(PHOTOS)], size=(400, 260))
        words.append((query, {stem}))
    for i, label in enumerate(CONFUSERS):
        render(folder / f"confuser{i}.png", [label], PHOTOS[(i + 1) % len(PHOTOS)], size=(400, 260))
    return sorted(look.items()), words


def rankings(store: clipsearch.Store, query: str, depth: int) -> dict[str, list[int]]:
    engine = QueryEngine(store.reads, store.vectors, store.text_encoder, lambda: store.encoder)
    qvec, _ = engine.query_vector(Query.parse([query], []))
    _scores, ids = store.vectors.search(qvec, depth, None)
    clip = [int(i) for i in ids[0] if i >= 0]
    side = TextSide(store.reads, [], fusion_words([query]))
    text = side.text_ranking(None, set())
    out = {"CLIP only": clip, "text only": text.ids, "plain RRF": fuse(clip, text, weighted=False),
           "weighted RRF (query)": fuse(clip, text)}
    for w in TEXT_WEIGHTS:
        out[f"weighted RRF, text x{w}"] = fuse(clip, text, text_weight=w)
    return out


def recall(ranked: list[int], targets: set[int], k: int) -> float:
    return len(set(ranked[:k]) & targets) / len(targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model folder (default: train clipsearch-tiny on shapes here, ~30 s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = args.model or str(train(root))
        look, words = make_set(root / "photos")
        with clipsearch.open(root / "index", model=model) as store:
            summary = store.add([root / "photos"], ocr=True)
            by_stem = {p.stem: next(iter(store.reads.ids_of([str(p)], []))) for p in (root / "photos").iterdir()}
            table: dict[str, dict[str, dict[int, float]]] = {}
            for kind, queries in (("look", look), ("words", words)):
                for query, stems in queries:
                    targets = {by_stem[s] for s in stems}
                    ranked = rankings(store, query, depth=100)
                    assert [h.id for h in store.search(query, k=10)] == ranked["weighted RRF (query)"][:10]
                    for method, ids in ranked.items():
                        cell = table.setdefault(method, {}).setdefault(kind, dict.fromkeys(KS, 0.0))
                        for k in KS:
                            cell[k] += recall(ids, targets, k) / len(queries)
    print(f"set: {len(look)} look queries (3 targets each), {len(words)} word queries (1 target each), "
          f"{summary.scanned} images, {summary.text_found} with text read")
    header = " ".join(f"{kind} R@{k}" for kind in ("look", "words") for k in KS)
    print(f"{'method':<26} {header}")
    for method, kinds in table.items():
        print(f"{method:<26} " + " ".join(f"{kinds[kind][k]:>{len(kind) + 4}.2f}" for kind in ("look", "words")
                                          for k in KS))
    print(json.dumps({m: {kind: {str(k): round(v, 3) for k, v in c.items()} for kind, c in kinds.items()}
                      for m, kinds in table.items()}))


if __name__ == "__main__":
    main()
