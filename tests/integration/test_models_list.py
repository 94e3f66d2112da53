"""`clipsearch models` lists every open_clip pretrained spec without importing open_clip or torch (it took ~8 s,
nearly all of it that import), marks the default and what works offline, and its rows are open_clip's own."""

from __future__ import annotations

import json
import subprocess
import sys


def test_models_reads_open_clips_table_without_torch_and_marks_the_default() -> None:
    code = ("import json, sys; from clipsearch.encoders.torch_encoder import list_models; rows = list_models(); "
            "print(json.dumps({'rows': rows, 'torch': 'torch' in sys.modules, "
            "'open_clip': 'open_clip' in sys.modules}))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert out["torch"] is False and out["open_clip"] is False
    rows = out["rows"]
    assert [r["spec"] for r in rows if r["default"]] == ["ViT-B-32:laion2b_s34b_b79k"]
    assert all(isinstance(r["cached"], bool) for r in rows)  # works offline: weights on disk (or no weights needed)

    import open_clip

    from clipsearch.encoders.torch_encoder import list_models
    from clipsearch.encoders.weights import weights_cached

    expected = [f"{a}:{t}" for a, t in open_clip.list_pretrained()]
    assert [r["spec"] for r in rows if r["kind"] == "open_clip pretrained"] == expected
    cached = {f"{a}:{t}": weights_cached(open_clip.get_pretrained_cfg(a, t) or {})
              for a, t in open_clip.list_pretrained()}
    assert {r["spec"]: r["cached"] for r in rows if r["kind"] == "open_clip pretrained"} == cached
    assert list_models() == rows  # with open_clip imported, the same table
