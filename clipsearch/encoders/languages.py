"""Which languages a model reads, which script a query is written in, and the note when the two disagree.

A CLIP model reads the languages its text tower was trained on; text in another script goes through its
tokenizer as byte pieces and comes out as a vector that ranks at random (Chinese to an English CLIP: XM3600
text→image R@1 2.4 % against 53.7 % for a multilingual one). Nothing fails, so without a check the user sees
confident noise. Here, torch-free and by name only (a query must stay cheap):

* `model_languages(spec)`: the languages of a model spec (open_clip architectures by name, Chinese-CLIP,
  offline-mini, a model folder by what it records or by its base model);
* `scripts_of(text)`: the scripts of a text's letters (Han, Latin, Cyrillic, ...), from Unicode ranges;
* `language_notes(texts, spec)`: one `LanguageNote` per script the model does not read, naming a model that
  does. Latin mixed into a query the model otherwise reads (brand names, units: "iPhone 手机") is left alone;
* `nllb_language(text)`: the language code NLLB-CLIP's text tower is given for a query (detected by script).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.encoders.model_spec import ModelSpec

MULTILINGUAL = "multilingual"  # a model whose tokenizer and training cover ~100+ languages in their own scripts

# Unicode blocks → script. Only letters are classified; digits, punctuation and symbols are script-neutral.
_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x024F, "Latin"), (0x1E00, 0x1EFF, "Latin"), (0xFF21, 0xFF5A, "Latin"),
    (0x0370, 0x03FF, "Greek"), (0x1F00, 0x1FFF, "Greek"),
    (0x0400, 0x052F, "Cyrillic"),
    (0x0530, 0x058F, "Armenian"),
    (0x0590, 0x05FF, "Hebrew"),
    (0x0600, 0x06FF, "Arabic"), (0x0750, 0x077F, "Arabic"), (0xFB50, 0xFDFF, "Arabic"), (0xFE70, 0xFEFF, "Arabic"),
    (0x0900, 0x097F, "Devanagari"),
    (0x0980, 0x09FF, "Bengali"),
    (0x0B80, 0x0BFF, "Tamil"),
    (0x0E00, 0x0E7F, "Thai"),
    (0x10A0, 0x10FF, "Georgian"),
    (0x1100, 0x11FF, "Hangul"), (0x3130, 0x318F, "Hangul"), (0xAC00, 0xD7AF, "Hangul"),
    (0x3040, 0x309F, "Hiragana"),
    (0x30A0, 0x30FF, "Katakana"), (0x31F0, 0x31FF, "Katakana"), (0xFF66, 0xFF9F, "Katakana"),
    (0x3400, 0x4DBF, "Han"), (0x4E00, 0x9FFF, "Han"), (0xF900, 0xFAFF, "Han"), (0x20000, 0x2FA1F, "Han"),
)

# A script → the language the note names for it (a script many languages share is named by the script).
SCRIPT_LANGUAGE = {"Han": "Chinese", "Hiragana": "Japanese", "Katakana": "Japanese", "Hangul": "Korean",
                   "Cyrillic": "Cyrillic-script languages (Russian, Ukrainian, ...)", "Arabic": "Arabic",
                   "Hebrew": "Hebrew", "Greek": "Greek", "Thai": "Thai", "Devanagari": "Hindi", "Bengali": "Bengali",
                   "Tamil": "Tamil", "Georgian": "Georgian", "Armenian": "Armenian", "Latin": "English"}

# A language code → the scripts it is written in.
LANGUAGE_SCRIPTS = {"en": {"Latin"}, "zh": {"Han"}, "ja": {"Han", "Hiragana", "Katakana"}, "ko": {"Hangul", "Han"}}
LANGUAGE_NAMES = {"en": "English", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", MULTILINGUAL: "multilingual"}

# The model to name for a script the store's model does not read: Chinese-CLIP for Chinese (COCO-CN R@1 62.2),
# XLM-R ViT-B/32 for everything else (Chinese and English from one store, ViT-B/32's image tower).
CHINESE_MODEL = "chinese-clip:ViT-B-16"
MULTILINGUAL_MODEL = "xlm-roberta-base-ViT-B-32:laion5b_s13b_b90k"
ENGLISH_MODEL = "ViT-B-32:laion2b_s34b_b79k"

# open_clip architectures whose text tower is multilingual, by name (the rest read English: CLIP's BPE was
# learnt on English captions).
_MULTILINGUAL_ARCH_MARKS = ("xlm-roberta", "nllb-clip", "mt5-", "i18n", "SigLIP2", "LABSE")
_PUBLISHERS = ("immich", "rclip")  # published exports (`published`): immich:NAME, rclip:NAME, by NAME


def script_of(ch: str) -> str | None:
    """The script of one character, or None for a non-letter or a script not in the table."""
    if not ch.isalpha():
        return None
    code = ord(ch)
    for lo, hi, script in _RANGES:
        if lo <= code <= hi:
            return script
    return None


def scripts_of(text: str) -> set[str]:
    """The scripts of a text's letters (ASCII text answers at once: it is Latin or has no letters)."""
    if text.isascii():
        return {"Latin"} if any(c.isalpha() for c in text) else set()
    return {s for s in map(script_of, text) if s is not None}


def languages_of_name(name: str) -> tuple[str, ...]:
    """The languages of a model by its spec text or architecture (no file is read)."""
    from clipsearch.encoders import offline_model

    if name == offline_model.NAME:
        return ("en",)
    family, _sep, rest = name.partition(":")
    if family in _PUBLISHERS and rest:
        family = rest.partition("@")[0]
    if family == "chinese-clip" or "chinese-clip" in name.lower():
        return ("zh",)
    if any(mark.lower() in family.lower() for mark in _MULTILINGUAL_ARCH_MARKS):
        return (MULTILINGUAL,)
    return ("en",)


def model_languages(spec: ModelSpec) -> tuple[str, ...]:
    """The languages `spec`'s text tower reads: a model folder's recorded `languages`, else its base model's."""
    if spec.kind == "folder":
        recorded = spec.extra.get("languages")
        if isinstance(recorded, list) and recorded and all(isinstance(x, str) for x in recorded):
            return tuple(recorded)
        return languages_of_name(str(spec.extra.get("base") or spec.arch))
    if spec.kind == "chinese_clip":
        return ("zh",)
    return languages_of_name(spec.arch if spec.kind in ("open_clip", "published") else spec.text)


def describe_languages(languages: Iterable[str]) -> str:
    """('zh',) → 'Chinese'; ('multilingual',) → 'multilingual'."""
    return ", ".join(LANGUAGE_NAMES.get(code, code) for code in languages)


def readable_scripts(languages: Iterable[str]) -> set[str] | None:
    """The scripts a model with these languages reads; None: every script (a multilingual model)."""
    scripts: set[str] = set()
    for code in languages:
        if code == MULTILINGUAL:
            return None
        scripts |= LANGUAGE_SCRIPTS.get(code, {"Latin"})
    return scripts


class LanguageNote(str):
    """A note on a result: the query's `script` is one the store's model (`model`, reading `languages`) was not
    trained on, so its ranking is noise; `switch_to` reads it. A `str` (the note's text) so it sits among a
    result's other notes; front ends add how to switch (the CLI's command, the page's hint)."""

    script: str
    model: str
    switch_to: str

    def __new__(cls, script: str, model: str, languages: tuple[str, ...], switch_to: str, example: str) -> LanguageNote:
        wanted = SCRIPT_LANGUAGE.get(script, f"{script} script")
        text = (f"{example!r} is {wanted} ({script} script), which model {model} does not read (it reads "
                f"{describe_languages(languages)}): these results are noise. A model that reads it: {switch_to} "
                f"(re-embed the store with it).")
        note = super().__new__(cls, text)
        note.script, note.model, note.switch_to = script, model, switch_to
        return note

    def to_dict(self) -> dict[str, str]:
        return {"note": str(self), "script": self.script, "model": self.model, "switch_to": self.switch_to}


def suggest_model(script: str) -> str:
    """A model that reads `script`: Chinese-CLIP for Han, XLM-R ViT-B/32 (multilingual, English included)
    for any other script."""
    if script == "Han":
        return CHINESE_MODEL
    return MULTILINGUAL_MODEL


# NLLB-CLIP's text tower is NLLB's encoder, which is told the language of its input (a FLORES-200 code, e.g.
# zho_Hans). A query's code is detected from its script; Latin (shared by many languages) defaults to English, and
# a caller may set the code instead (`language=` / --lang).
NLLB_CODES = {"Han": "zho_Hans", "Hiragana": "jpn_Jpan", "Katakana": "jpn_Jpan", "Hangul": "kor_Hang",
              "Cyrillic": "rus_Cyrl", "Arabic": "arb_Arab", "Hebrew": "heb_Hebr", "Greek": "ell_Grek",
              "Thai": "tha_Thai", "Devanagari": "hin_Deva", "Bengali": "ben_Beng", "Tamil": "tam_Taml",
              "Georgian": "kat_Geor", "Armenian": "hye_Armn", "Latin": "eng_Latn"}
_SCRIPT_PRIORITY = ("Hiragana", "Katakana", "Hangul")  # kana or hangul beside Han: Japanese or Korean


def takes_language_code(spec: ModelSpec) -> bool:
    """Whether the model's text tower is told each query's language (NLLB-CLIP, or a fine-tune of one)."""
    name = str(spec.extra.get("base") or spec.arch) if spec.kind == "folder" else spec.arch
    return name.startswith("nllb-clip")


def check_language_code(code: str) -> None:
    """A FLORES-200 code: three lowercase letters, '_', a four-letter script (zho_Hans, fra_Latn)."""
    import re

    from clipsearch.errors import ClipsearchError

    if not re.fullmatch(r"[a-z]{3}_[A-Z][a-z]{3}", code):
        raise ClipsearchError(f"language code {code[:40]!r} is not a FLORES-200 code",
                              "use e.g. zho_Hans, eng_Latn, fra_Latn, rus_Cyrl", param="language")


def nllb_language(text: str) -> str:
    """The FLORES-200 code of `text` by its script: kana or hangul first (Japanese and Korean mix in Han), then
    the most frequent script other than Latin (Latin words in such a query are names: "iPhone 手机"), then
    English (Latin, or no letters)."""
    counts: dict[str, int] = {}
    for script in map(script_of, text):
        if script is not None:
            counts[script] = counts.get(script, 0) + 1
    for script in _SCRIPT_PRIORITY:
        if script in counts:
            return NLLB_CODES[script]
    counts.pop("Latin", None)
    if not counts:
        return NLLB_CODES["Latin"]
    return NLLB_CODES.get(max(counts, key=lambda s: counts[s]), NLLB_CODES["Latin"])


def language_notes(texts: Iterable[str], spec: ModelSpec) -> list[LanguageNote]:
    """One note per script in `texts` that `spec`'s model does not read (none for a multilingual model)."""
    languages = model_languages(spec)
    readable = readable_scripts(languages)
    if readable is None:
        return []
    notes: dict[str, LanguageNote] = {}
    for text in texts:
        scripts = scripts_of(text)
        unread = scripts - readable
        reads_some = bool(scripts & readable)
        for script in sorted(unread):
            if script == "Latin" and reads_some:  # "iPhone 手机": Latin names inside a readable query
                continue
            if script not in notes:
                notes[script] = LanguageNote(script, spec.text, languages, suggest_model(script), text[:40])
    return list(notes.values())
