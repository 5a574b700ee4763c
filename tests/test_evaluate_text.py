"""The text section of `bgedit evaluate` (`pipelines/evaluation/text*.py`): the held-out wordings table, the shuffled
control's derangement, the water share, and every measure on a tiny random bundle (CPU, seconds): layout kept,
"ocean" on scenes without sea, unseen wordings, shuffled prompts, a text model given explicitly."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import test_text_edit
from bgedit_cli.data.synth import STYLE_NAMES, STYLE_PHRASES, synthesize
from bgedit_cli.pipelines.evaluation import text_model as et, text_scores

base_bundle = test_text_edit.base_bundle
PROMPTS = ("day", "snow", "night", "ocean", "winter", "a village")  # "winter" trained: snow's wording is the next


@pytest.fixture(autouse=True)
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("BGEDIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """60 scenes of 16 px: 6 validation scenes (4 without sea), the first 3 with text-edit ground truth."""
    out = tmp_path_factory.mktemp("synth16")
    synthesize(out, num=60, resolution=16, seed=0, mixing_pairs=3, workers=1, force=True)
    return out


def _save_editor(root: Path, path: Path, prompts, **kwargs) -> Path:
    from bgedit_cli.checkpoint import file_sha256, load_network, save_network
    from bgedit_cli.nn.clip_model import load_clip_encoder
    from bgedit_cli.nn.text_encoder import build_text_editor

    G = load_network(root / "generator.safetensors", "generator")
    encoder = load_clip_encoder(root / "clip.safetensors")
    editor = build_text_editor(G.cfg, encoder.embed_dim, "tiny", prompts=prompts, clip_name=encoder.name,
                               clip_sha256=encoder.sha256, generator_sha256=file_sha256(root / "generator.safetensors"),
                               **kwargs)
    with torch.no_grad():
        editor.set_prompts(encoder.encode_text(list(prompts)), encoder.encode_text([editor.cfg.neutral_prompt])[0])
    save_network(path, editor.eval(), kind="text")
    return path


@pytest.fixture(scope="module")
def bundle(base_bundle, tmp_path_factory) -> Path:
    """The tiny random bundle (generator, proposed inversion, CLIP, segmenter) with an untrained text model with a
    Text Encoder trained on PROMPTS."""
    root = tmp_path_factory.mktemp("bundle")
    for path in base_bundle.glob("*.safetensors"):
        shutil.copy(path, root)
    torch.manual_seed(2)
    _save_editor(root, root / "text.safetensors", PROMPTS)
    return root


def _own_water(scenes: Path) -> dict[str, dict]:
    recs = [json.loads(line) for line in (scenes / "metadata.jsonl").read_text().splitlines()]
    return {r["file"]: r for r in recs if r["split"] == "validation"}


def _evaluation(scenes: Path, bundle: Path, **kwargs):
    from bgedit_cli.pipelines.evaluation import EvalOptions, evaluate_bundle

    opts = EvalOptions(data=scenes, model=bundle, metrics=("l2",), steps=1, device="cpu", variants=("proposed",),
                       mixing_scenes=0, batch_size=4, **kwargs)
    return evaluate_bundle(opts)


def _evaluate(scenes: Path, bundle: Path, **kwargs):
    return _evaluation(scenes, bundle, **kwargs).to_json()


# ----------------------------------------------------------------------------------------------------------
# The pieces.


def test_unseen_wordings_are_caption_words_of_their_own_style_only():
    from bgedit_cli.training.configs import TextTrainConfig

    phrases = {s: " | ".join(f"{a} {b}" for a, b in STYLE_PHRASES[s]) for s in STYLE_NAMES}
    assert set(et.UNSEEN_WORDINGS) == set(STYLE_NAMES)
    for style, words in et.UNSEEN_WORDINGS.items():
        for w in words:
            assert w not in STYLE_NAMES
            pattern = re.compile(rf"(^|[\s|]){re.escape(w)}($|[\s|])")
            assert pattern.search(phrases[style]), (style, w)  # the CLIP saw it in this style's captions
            assert not any(pattern.search(phrases[o]) for o in STYLE_NAMES if o != style), (style, w)
    default = {f.name: f.default for f in dataclasses.fields(TextTrainConfig)}["prompts"]
    chosen = et.unseen_wordings(STYLE_NAMES, default)
    assert set(chosen) == set(STYLE_NAMES) and not set(chosen.values()) & set(default)
    assert chosen == {s: words[0] for s, words in et.UNSEEN_WORDINGS.items()}
    # A trained wording is skipped for the next; a style whose every wording is trained has none.
    assert et.unseen_wordings(["sunset", "fog"], ["sunset", "fog", "Dusk ", "misty", "hazy", "mist"]) == {
        "sunset": "evening"}


def test_derangement_never_pairs_a_style_with_itself():
    for n in range(2, 9):
        for seed in range(40):
            perm = et.derangement(n, seed)
            assert sorted(perm) == list(range(n)) and all(p != i for i, p in enumerate(perm))
            assert perm == et.derangement(n, seed)
    assert len({tuple(et.derangement(6, s)) for s in range(20)}) > 1  # the seed matters
    with pytest.raises(ValueError):
        et.derangement(1, 0)


def test_water_fraction_counts_sea_water_and_river_pixels():
    maps = torch.zeros(4, 4, 4, dtype=torch.long)  # 0: all "other"
    maps[1, :2] = 27  # half sea
    maps[2, 0, :] = 22  # 4 lake/pond pixels ("water")
    maps[2, 1, :2] = 61  # 2 river pixels
    maps[2, 3, :] = 3  # sky: not water
    maps[3] = 27
    assert et.WATER_CLASSES == (22, 27, 61)
    frac = et.water_fraction(maps)
    assert frac.dtype == torch.float64 and frac.tolist() == [0.0, 0.5, 6 / 16, 1.0]
    assert et.water_fraction(maps, classes=(27,)).tolist() == [0.0, 0.5, 0.0, 1.0]
    assert et.water_fraction(maps[:0]).shape == (0,)


# ----------------------------------------------------------------------------------------------------------
# On a tiny bundle.


def test_every_text_measure_appears_with_sane_values(scenes, bundle):
    ev = _evaluation(scenes, bundle)
    out = ev.to_json()
    text = out["text"]
    records = _own_water(scenes)
    no_sea = [n for n, r in records.items() if r["content"]["water"] in et.NO_SEA]
    assert len(no_sea) >= 2 and text["ocean_scenes"] == len(no_sea)
    assert text["styles"] == ["day", "snow", "night"] and text["scenes"] == 3
    assert text["unseen_prompts"] == {"day": "sunny", "snow": "wintry", "night": "moonlit"}
    assert not set(text["unseen_prompts"].values()) & set(PROMPTS)
    assert all(a != b for a, b in text["shuffled_prompts"].items())
    assert sorted(text["shuffled_prompts"].values()) == sorted(text["styles"])
    assert "not measured" in text["combined_prompts"] and "snowy night" in text["combined_prompts"]
    assert text["model"]["text_encoder"] is True and text["model"]["condition"] == "film"
    assert text["model"]["file"] == str(bundle / "text.safetensors") and text["model"]["prompts"] == list(PROMPTS)
    assert text["targets"] == {"layout_miou": 0.7, "ocean_rise": 0.8, "unseen_ratio": 0.8}
    assert len(text["modes"]) == 2
    for mode in text["modes"].values():
        n = mode["all"]["pairs"]
        assert n == 3 * 3 - text["same_style_pairs_left_out"] and n > 0
        assert mode["all"]["improvement"] == pytest.approx(mode["all"]["l2_recon"] - mode["all"]["l2_edit"])
        layout = mode["layout"]
        assert layout["pairs"] == n and 0 <= layout["miou"] <= 1 and layout["num_pixels"] == n * 16 * 16
        ocean = mode["ocean"]
        assert ocean["scenes"] == len(no_sea) and 0 <= ocean["rise"] <= 1
        assert 0 <= ocean["water_recon"] <= 1 and 0 <= ocean["water_edit"] <= 1 and ocean["target"] == 0.8
        unseen = mode["unseen"]
        assert set(unseen["per_prompt"]) <= set(text["unseen_prompts"].values())
        for prompt, vals in unseen["per_prompt"].items():
            assert text["unseen_prompts"][vals["style"]] == prompt
            assert vals["pairs"] == mode["per_style"][vals["style"]]["pairs"] and 0 <= vals["closer"] <= 1
            assert vals["l2_recon"] == pytest.approx(mode["per_style"][vals["style"]]["l2_recon"])
        assert unseen["all"]["pairs"] == unseen["trained"]["pairs"] == n  # every style has a wording here
        assert (unseen["ratio"] is None) == (unseen["trained"]["improvement"] <= 0)
        if unseen["ratio"] is not None:
            assert unseen["ratio"] == pytest.approx(unseen["all"]["improvement"] / unseen["trained"]["improvement"])
        assert mode["shuffled"]["all"]["pairs"] == n and 0 <= mode["shuffled"]["all"]["closer"] <= 1
    titles = [t.title for t in ev.tables()]
    assert any("prompt wordings" in t for t in titles) and any("layout kept" in t for t in titles)
    wording = next(t for t in ev.tables() if "prompt wordings" in t.title)
    assert any(row[0] == '"moonlit" (night)' for row in wording.rows)
    assert any(row[0].startswith("shuffled") for row in wording.rows) and "L2 recon − edit ↑" in wording.headers
    n = next(iter(text["modes"].values()))["all"]["pairs"]
    reference = text["layout_reference"]
    assert set(reference) == {"ground_truth", "inverted_ground_truth"}
    assert all(0 <= v["miou"] <= 1 and v["num_pixels"] == n * 16 * 16 for v in reference.values())
    kept = next(t for t in ev.tables() if "layout kept" in t.title)
    assert len(kept.rows) == 4 and all("n/a" not in row for row in kept.rows)
    assert [row[0].split(":")[0] for row in kept.rows[2:]] == ["reference"] * 2


def test_ocean_scenes_are_the_first_without_sea_and_the_share_rises_when_the_edit_is_sea(scenes, bundle,
                                                                                         monkeypatch):
    """A segmenter stub reads white pixels as sea; every edit is white: the water share rises on every scene whose
    reconstruction is not all white, the layout is lost, and `ocean_scenes` caps the scenes."""
    from bgedit_cli.pipelines.models import Models

    class Stub:
        cfg = type("C", (), {"num_classes": 151})

        def predict(self, img):
            return torch.where((img > 0.999).all(dim=1), 27, 0).long()

    monkeypatch.setattr(Models, "segmenter", lambda self: Stub())
    monkeypatch.setattr(text_scores, "text_edit", lambda G, inv, *a, **k: torch.ones_like(inv.images.float()))
    out = _evaluate(scenes, bundle, ocean_scenes=2)["text"]
    for mode in out["modes"].values():
        ocean = mode["ocean"]
        assert ocean["scenes"] == 2 and ocean["rise"] == 1.0 and ocean["water_edit"] == 1.0
        assert ocean["water_recon"] < 1
        assert mode["layout"]["miou"] < 0.6  # all "sea" against mostly "other"


def test_text_model_given_explicitly_and_skips(scenes, bundle, tmp_path):
    """`text` scores another file (here without a Text Encoder, film-delta mapper): one mode; prompts without
    "ocean" skip it; a missing file is an InputError naming --text."""
    from bgedit_cli.errors import InputError

    other = _save_editor(bundle, tmp_path / "no-te.safetensors", ("snow", "fog"), text_encoder=False,
                         condition="film-delta")
    out = _evaluate(scenes, bundle, text=other)
    text = out["text"]
    assert out["settings"]["weights"]["text"]["file"] == str(other)
    assert text["model"]["file"] == str(other) and text["model"]["text_encoder"] is False
    assert text["model"]["condition"] == "film-delta" and list(text["modes"]) == ["mapper (no Text Encoder)"]
    mode = text["modes"]["mapper (no Text Encoder)"]
    assert "not a trained prompt" in mode["ocean"]["skipped"] and text["ocean_scenes"] == 0
    assert mode["shuffled"]["all"]["pairs"] == mode["all"]["pairs"] and text["shuffled_prompts"] == {
        "snow": "fog", "fog": "snow"}
    with pytest.raises(InputError, match="--text"):
        _evaluate(scenes, bundle, text=tmp_path / "missing.safetensors")


def test_one_style_has_no_shuffled_control(scenes, bundle, tmp_path):
    one = _save_editor(bundle, tmp_path / "one.safetensors", ("night",))
    text = _evaluate(scenes, bundle, text=one)["text"]
    assert text["shuffled_prompts"] is None
    for mode in text["modes"].values():
        assert "one trained style" in mode["shuffled"]["skipped"] and mode["unseen"]["per_prompt"]


def test_style_names_are_the_data_s_own_vocabulary(scenes, bundle, tmp_path):
    """The text section scores the styles the data declares (DATA/vocabulary.json via `read_vocabulary`), not the
    renderer's current table: a dataset whose only look is "dusk" has no trained style to score."""
    data = tmp_path / "data"
    shutil.copytree(scenes, data)
    doc = json.loads((data / "vocabulary.json").read_text())
    assert set(PROMPTS) & set(doc["style_names"])
    doc["style_names"] = ["dusk"]
    (data / "vocabulary.json").write_text(json.dumps(doc))
    skipped = _evaluate(data, bundle)["text"]["skipped"]
    assert skipped.startswith("no trained prompt is a synthetic style name (dusk)")
