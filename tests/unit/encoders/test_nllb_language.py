"""NLLB-CLIP's text tower is told each query's language: detected from the script, or set by the caller; texts
of one batch run in groups of one language code."""

from __future__ import annotations

import pytest

from clipsearch.encoders.languages import check_language_code, nllb_language, takes_language_code
from clipsearch.encoders.spec import parse_spec
from clipsearch.errors import ClipsearchError


@pytest.mark.parametrize("text, code", [("红色的圆形", "zho_Hans"), ("a red circle", "eng_Latn"),
                                        ("красный круг", "rus_Cyrl"), ("赤い丸です", "jpn_Jpan"),
                                        ("빨간 원", "kor_Hang"), ("iPhone 手机 红色", "zho_Hans"),
                                        ("2024", "eng_Latn")])
def test_language_detected_from_the_script(text: str, code: str) -> None:
    assert nllb_language(text) == code


def test_which_models_take_a_code_and_what_a_code_looks_like() -> None:
    assert takes_language_code(parse_spec("nllb-clip-base-siglip:v1"))
    assert not takes_language_code(parse_spec("xlm-roberta-base-ViT-B-32:laion5b_s13b_b90k"))
    check_language_code("fra_Latn")
    with pytest.raises(ClipsearchError, match="FLORES-200"):
        check_language_code("french")


def test_encoder_groups_texts_by_language_code() -> None:
    import torch

    from clipsearch.encoders.torch_encoder import Encoder

    class Tokenizer:
        def __init__(self) -> None:
            self.language = "eng_Latn"
            self.calls: list[tuple[str, list[str]]] = []

        def set_lang_fn(self, code: str) -> None:  # open_clip's HFTokenizer has one for NLLB's tokenizer
            self.language = code

        def set_language(self, code: str) -> None:
            self.set_lang_fn(code)

        def __call__(self, texts: list[str]) -> torch.Tensor:
            self.calls.append((self.language, list(texts)))
            code = float(sum(map(ord, self.language)))
            return torch.tensor([[code, float(len(t))] for t in texts])

    class Model(torch.nn.Module):
        embed_dim = 2

        def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
            return tokens

    tok = Tokenizer()
    enc = Encoder(parse_spec("nllb-clip-base-siglip:v1"), Model(), tok, {}, torch.device("cpu"))
    out = enc.encode_texts(["红色", "red", "Москва", "蓝色的"])
    assert tok.calls == [("zho_Hans", ["红色", "蓝色的"]), ("eng_Latn", ["red"]), ("rus_Cyrl", ["Москва"])]
    lengths = out[:, 1] / out[:, 0]  # rows come back in the caller's order
    assert [round(float(x) * sum(map(ord, c))) for x, c in
            zip(lengths, ["zho_Hans", "eng_Latn", "rus_Cyrl", "zho_Hans"], strict=True)] == [2, 3, 6, 3]
    tok.calls.clear()
    enc.encode_texts(["red", "rouge"], language="fra_Latn")
    assert tok.calls == [("fra_Latn", ["red", "rouge"])]
