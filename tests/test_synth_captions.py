"""Synthetic captions: deterministic per scene, varied, naming every look and content factor with the words people
type, never naming what is not in the scene, and short enough for a small CLIP's context."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bgedit_cli.data import synth

NUM = 600


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return [synth.scene_record(5, i, "training") for i in range(NUM)]


def _has(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text) is not None


def _content_values(content: dict) -> dict[str, set[str]]:
    """factor -> the values of CONTENT_WORDS present in the scene."""
    trees = content["trees"] > 0 and content["forest"] == "none"
    return {"water": {content["water"]}, "ground": {content["ground"]}, "buildings": {content["buildings"]},
            "forest": {content["forest"]}, "trees": {"trees"} if trees else set(),
            "road": {"road"} if content["road"] else set(), "rocks": {"rocks"} if content["rocks"] else set(),
            "ridges": {r["kind"] for r in content["ridges"]}}


def test_same_scene_same_caption_and_pixels_untouched(records):
    again = synth.scene_record(5, 17, "validation")
    assert again["caption"] == records[17]["caption"]
    # The factors (hence the pixels) come from streams 0 and 1 exactly as before; the caption from its own.
    assert again["content"] == synth.sample_content(np.random.default_rng([5, 17, 0]))
    assert again["style"] == synth.sample_style(np.random.default_rng([5, 17, 1]))
    assert again["caption"] == synth.caption(again["content"], again["style"], np.random.default_rng([5, 17, 2]))


def test_captions_vary(records):
    captions = [r["caption"] for r in records]
    assert len(set(captions)) > 0.8 * NUM
    for prefix in synth.CAPTION_PREFIXES[1:]:
        assert sum(c.startswith(prefix) for c in captions) > NUM // 20, prefix
    assert sum(_has(c, "landscape") or _has(c, "scene") for c in captions) > NUM // 20  # look-only captions
    # The same scene with the canonical phrasing (no rng) is the old caption.
    content = dict(records[0]["content"], water="lake", ground="grass", buildings="none", forest="conifer",
                   road=False, rocks=0, ridges=[{"kind": "mountain", "height": 0.5, "near": False}])
    assert synth.caption(content, synth.canonical_style("snow")) == \
        "a snowy lake with a pine forest below mountains in winter"


def test_every_look_is_named_by_its_words_only(records):
    seen = {name: set() for name in synth.STYLE_NAMES}
    assert set(synth.STYLE_WORDS) == set(synth.STYLE_PHRASES) == set(synth.STYLE_NAMES)
    for r in records:
        name, text = r["style"]["name"], r["caption"]
        own = {w for w in synth.STYLE_WORDS[name] if _has(text, w)}
        assert own, (name, text)
        seen[name] |= own
        for other in synth.STYLE_NAMES:
            if other != name:
                assert not any(_has(text, w) for w in synth.STYLE_WORDS[other]), (name, other, text)
    for name, words in synth.STYLE_WORDS.items():
        assert seen[name] == set(words), (name, set(words) - seen[name])  # every synonym is used


def test_content_words_are_used_and_never_wrong(records):
    seen: dict[str, set[str]] = {f: set() for f in synth.CONTENT_WORDS}
    for r in records:
        text, present = r["caption"], _content_values(r["content"])
        for factor, values in synth.CONTENT_WORDS.items():
            for value, words in values.items():
                hits = {w for w in words if _has(text, w)}
                if value in present[factor]:
                    seen[factor] |= hits
                elif factor in ("water", "buildings", "road", "rocks", "ridges") or \
                        (factor == "forest" and r["content"]["forest"] == "none"):
                    assert not hits, (factor, value, hits, text, r["content"])
    for factor, values in synth.CONTENT_WORDS.items():
        assert seen[factor] == {w for words in values.values() for w in words}, \
            (factor, {w for words in values.values() for w in words} - seen[factor])
    # The synonyms people type map to the renderer's factors.
    assert "ocean" in synth.CONTENT_WORDS["water"]["sea"] and "town" in synth.CONTENT_WORDS["buildings"]["village"]
    assert "city" in synth.CONTENT_WORDS["buildings"]["skyline"]
    for word, look in (("dusk", "sunset"), ("dark", "night"), ("winter", "snow"), ("misty", "fog"),
                       ("fall", "autumn"), ("sunny", "day")):
        assert word in synth.STYLE_WORDS[look]


def test_captions_fit_a_32_token_clip(records):
    from bgedit_cli.nn.clip_model import tokenize

    tokens = tokenize([r["caption"] for r in records], 32)  # InputError if any is too long
    assert tokens.shape == (NUM, 32)
