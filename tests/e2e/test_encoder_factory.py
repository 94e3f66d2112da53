"""One encoder factory for the store and the Ray actors: the same request loads the same encoder, or fails the
same way (int8 only on ONNX Runtime; a worker never exports a model)."""

from __future__ import annotations

from pathlib import Path

import pytest

import clipsearch
from clipsearch.encoders.factory import check_backend, load_image_encoder
from clipsearch.encoders.spec import parse_spec
from clipsearch.errors import ClipsearchError
from clipsearch.indexing.ray_pool import EncoderRecipe

MODEL = "clipsearch-tiny"  # the shipped tiny config, seeded random weights: loads in a second


def test_int8_on_torch_is_the_same_clear_error_for_the_store_and_a_ray_actor() -> None:
    spec = parse_spec(MODEL)
    with pytest.raises(ClipsearchError) as exc:
        load_image_encoder(spec, backend="torch", precision="int8")
    assert exc.value.param == "int8" and "onnx" in exc.value.message
    with pytest.raises(ClipsearchError) as on_ray:  # it used to quantise with torch here
        EncoderRecipe(spec.text, spec.cache_key, "torch", "int8", None, None).load("cpu", 1)
    assert on_ray.value.message == exc.value.message and on_ray.value.param == "int8"


def test_a_query_vector_for_an_int8_store_may_come_from_fp32_torch() -> None:
    encoder = load_image_encoder(parse_spec(MODEL), backend="torch", precision="int8", device="cpu", stored=False)
    assert encoder.backend == "torch" and encoder.precision == "fp32"


def test_an_unknown_backend_names_the_option() -> None:
    with pytest.raises(ClipsearchError) as exc:
        check_backend("tensorflow")
    assert exc.value.param == "backend" and "onnx, torch" in exc.value.message


def test_a_ray_worker_without_the_export_says_so_and_exports_nothing(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(cache))  # an empty export cache on this "worker"
    spec = parse_spec(MODEL)
    recipe = EncoderRecipe(spec.text, spec.cache_key, "onnx", "fp32", None, str(tmp_path / "driver-exports"))
    with pytest.raises(ClipsearchError) as exc:
        recipe.load("cpu", 1)
    assert "has no ONNX export" in exc.value.message and "driver-exports" in (exc.value.hint or "")
    assert not any(cache.rglob("*.onnx"))


def test_the_store_keeps_no_per_call_state_and_answers_extensions(indexed: Path) -> None:
    with clipsearch.open(indexed, create=False) as store:
        assert not hasattr(store, "progress") and not hasattr(store, "_int8") and not hasattr(store, "_writing")
        extensions = store.extensions()
        assert extensions and set(extensions) <= {"png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"}
        assert sum(extensions.values()) == store.info(disk=False)["images"]
