"""A dataset's vocabulary: `bgedit data synth` writes vocabulary.json, `read_vocabulary` reads it back, falls
back to the renderer's tables for folders written without one, and refuses broken files with a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from bgedit_cli.data import synth
from bgedit_cli.data.ade20k_classes import CLASS_NAMES
from bgedit_cli.data.captions import CaptionDataset, style_prompts, task_prompts, zero_shot_labels
from bgedit_cli.errors import InputError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("vocab") / "data"
    synth.synthesize(out, num=4, resolution=16, seed=1, val_fraction=0.5, mixing_pairs=0, workers=1)
    return out


def test_synth_writes_the_renderer_vocabulary(data):
    vocab = synth.read_vocabulary(data)
    assert vocab.source == str(data / "vocabulary.json")
    assert vocab == synth.renderer_vocabulary()
    assert vocab.style_names == synth.STYLE_NAMES and vocab.class_ids == synth.CLASS_IDS
    assert vocab.content_words == synth.CONTENT_WORDS and vocab.style_phrases == synth.STYLE_PHRASES
    assert vocab.content_values["water"] == ("none", "lake", "pond", "sea", "river")
    assert {name: CLASS_NAMES[i] for name, i in vocab.class_ids.items()} == {n: n for n in vocab.class_ids}
    # What the files hold is what the vocabulary declares.
    records = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    for r in records:
        assert r["style"]["name"] in vocab.style_names
        assert r["content"]["water"] in vocab.content_values["water"]
        seg = np.asarray(Image.open(data / "annotations" / r["split"] / f"{r['file']}.png"))
        assert set(np.unique(seg).tolist()) <= set(vocab.class_ids.values())


def test_a_folder_without_vocabulary_falls_back_to_the_renderer(data, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "metadata.jsonl").write_bytes((data / "metadata.jsonl").read_bytes())
    vocab = synth.read_vocabulary(old)
    assert vocab == synth.renderer_vocabulary()
    assert vocab.source.startswith("renderer") and "vocabulary.json" in vocab.source
    with pytest.raises(InputError, match="no such data folder"):
        synth.read_vocabulary(tmp_path / "missing")


def test_the_data_declares_its_own_words(data, tmp_path):
    folder = tmp_path / "narrow"
    folder.mkdir()
    doc = json.loads((data / "vocabulary.json").read_text())
    doc["style_names"] = ["day", "night"]
    doc["style_phrases"] = {"day": [["sunny", ""]], "night": [["", "at night"]]}
    (folder / "vocabulary.json").write_text(json.dumps(doc))
    vocab = synth.read_vocabulary(folder)
    assert vocab.style_names == ("day", "night") and vocab != synth.renderer_vocabulary()
    assert style_prompts(vocab) == {"day": ["a sunny landscape", "a sunny scene"],
                                    "night": ["a landscape at night", "a scene at night"]}
    assert task_prompts("style", vocab) == style_prompts(vocab)
    labels = zero_shot_labels([{"style": {"name": "night"}}, {"style": {"name": "fog"}}], vocab)
    assert labels["style"] == (["day", "night"], [1, None])  # a look the data does not declare is not scored
    # The JSON round trip is exact.
    again = synth.Vocabulary.from_json(json.loads(json.dumps(vocab.to_json())), "x")
    assert again == vocab and again.style_phrases["day"] == (("sunny", ""),)


def test_caption_dataset_reads_the_vocabulary(data):
    dataset = CaptionDataset(data, "training", 16)
    assert dataset.vocabulary == synth.renderer_vocabulary()
    assert dataset.vocabulary.source == str(data / "vocabulary.json")


@pytest.mark.parametrize("text, message", [
    ("{not json", "cannot read the dataset vocabulary"),
    ("[1, 2]", "not a dataset vocabulary"),
    ('{"format_version": 1, "style_names": ["day"]}', "not a dataset vocabulary"),
    ('{"format_version": 99}', "format_version 99"),
])
def test_broken_vocabulary_is_a_clear_error(data, tmp_path, text, message):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "vocabulary.json").write_text(text)
    with pytest.raises(InputError, match=message) as info:
        synth.read_vocabulary(folder)
    assert str(folder / "vocabulary.json") in str(info.value)
