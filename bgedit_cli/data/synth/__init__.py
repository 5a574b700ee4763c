"""Synthetic landscape scenes in the ADE20K SceneParsing layout (`bgedit data synth`).

A scene is two independent, JSON-serialisable factor dicts: **content** (layout only: horizon, ridges, water,
ground, forest, trees, buildings, road, rocks and a `seed` for every geometric detail) and **style** (appearance
only: one of the named looks `STYLE_NAMES`, jittered, and a `seed` for clouds and stars).
`render(content, style, R)` is a pure function of its inputs and the annotation depends on `content` only, so
`render(content_a, style_b)` is the ground truth for "content of A in the style of B".

One module per stage, each importing only the ones above it:

    noise.py       fBm noise banks, hash, weighted choice
    geometry.py    ADE20K class ids (from data/ade20k_classes.py), materials, the `Layout` record
    objects.py     upright things drawn into a layout: forest, trees, rocks, houses, skyline
    content.py     `sample_content(rng)`, `layout(content, R)` (ridges, ground, water, road, object placement)
    style.py       `STYLE_NAMES`, `canonical_style(name)`, `sample_style(rng)`
    painting.py    `paint(layout, style)`, `render(content, style, R)`
    captions.py    `caption(content, style, rng)` and its word tables
    vocabulary.py  `Vocabulary`, `read_vocabulary(DATA)`: the words and labels a dataset declares
    writer.py      `synthesize(out, ...)`, `scene_record(seed, i, split)`, `encode_png`

`synthesize` writes `images/{training,validation}/synth_XXXXXXXX.png` (RGB), `annotations/{split}/...png`
(mode L, ADE20K class ids, 0 = other), `metadata.jsonl` (one line per scene, index order: file, split,
caption, content, style), `vocabulary.json` (style names, content factors and class ids the data uses), and for
the first `mixing_pairs` validation scenes `mixing/validation/{a}__{b}.png` = render(content a, style b) for
every ordered pair and `textedit/validation/{a}__{name}.png` = scene a in each canonical named look.
Noise fields are windows of a few large periodic fBm textures sized for R <= 512 (larger images magnify them).
"""

from bgedit_cli.data.synth.captions import CAPTION_PREFIXES, CONTENT_WORDS, STYLE_PHRASES, STYLE_WORDS, caption
from bgedit_cli.data.synth.content import CONTENT_VALUES, layout, sample_content
from bgedit_cli.data.synth.geometry import CLASS_IDS, MATERIALS, Layout
from bgedit_cli.data.synth.noise import warm_up
from bgedit_cli.data.synth.painting import paint, render
from bgedit_cli.data.synth.style import STYLE_NAMES, canonical_style, sample_style
from bgedit_cli.data.synth.vocabulary import (VOCABULARY_FILE, Vocabulary, read_vocabulary, renderer_vocabulary,
                                              write_vocabulary)
from bgedit_cli.data.synth.writer import (METADATA, SPLITS, encode_png, scene_name, scene_record, synthesize,
                                          validation_indices)

__all__ = [
    "CAPTION_PREFIXES", "CLASS_IDS", "CONTENT_VALUES", "CONTENT_WORDS", "Layout", "MATERIALS", "METADATA", "SPLITS",
    "STYLE_NAMES", "STYLE_PHRASES", "STYLE_WORDS", "VOCABULARY_FILE", "Vocabulary", "canonical_style", "caption",
    "encode_png", "layout", "paint", "read_vocabulary", "render", "renderer_vocabulary", "sample_content",
    "sample_style", "scene_name", "scene_record", "synthesize", "validation_indices", "warm_up", "write_vocabulary",
]
