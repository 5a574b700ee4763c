"""Captions: what a scene shows, in the words people type (`caption(content, style, rng)`).

Each table lists phrases, the canonical one first (a caption made without an rng uses only those);
`writer.scene_record` draws the others from a caption rng of its own, seeded from (seed, index, 2), so captions
vary with the scene but never change a pixel (pixels use streams 0 and 1). The *_WORDS tables say which typed
word names which factor (prompt lists, zero-shot evaluation; `vocabulary.json` records them with the data);
every word occurs in the phrases of its factor (tests/test_synth_captions.py checks it).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from bgedit_cli.data.synth.noise import pick

STYLE_PHRASES: dict[str, tuple[tuple[str, str], ...]] = {  # look -> (adjective before the subject, phrase after)
    "day": (("sunny", ""), ("", "on a sunny day"), ("", "in daylight"), ("bright", ""), ("", "on a clear day"),
            ("", "in the daytime")),
    "sunset": (("", "at sunset"), ("", "at dusk"), ("", "in the evening"), ("", "at golden hour"), ("sunset", "")),
    "night": (("", "at night"), ("dark", ""), ("moonlit", ""), ("", "by night"), ("", "under the stars")),
    "snow": (("snowy", "in winter"), ("", "in winter"), ("snowy", ""), ("snow-covered", ""), ("wintry", ""),
             ("", "covered in snow")),
    "fog": (("foggy", ""), ("misty", ""), ("", "in fog"), ("", "in the mist"), ("hazy", "")),
    "autumn": (("autumn", ""), ("", "in autumn"), ("", "in fall"), ("autumnal", ""), ("", "with fall colors")),
}
STYLE_WORDS: dict[str, tuple[str, ...]] = {
    "day": ("sunny", "day", "daylight", "bright", "clear", "daytime"),
    "sunset": ("sunset", "dusk", "evening", "golden hour"),
    "night": ("night", "dark", "moonlit", "stars"),
    "snow": ("snowy", "winter", "snow", "wintry"),
    "fog": ("foggy", "misty", "mist", "fog", "hazy"),
    "autumn": ("autumn", "fall", "autumnal"),
}
_SUBJECTS = {  # water (or, without water, ground) -> the caption's subject
    "sea": ("sea coast", "sea", "ocean", "coast", "seaside"), "lake": ("lake", "lakeside"),
    "pond": ("pond", "small pond"), "river": ("river", "riverside", "stream"),
    "grass": ("meadow", "grassland", "grassy meadow"), "field": ("farmland", "field", "crop field"),
    "earth": ("plain", "dirt plain", "bare plain"), "sand": ("desert", "sandy desert"),
    "beach": ("beach", "sandy beach", "seashore", "ocean beach"),  # sea + sand
}
_EXTRAS = {
    "village": ("a village", "a town", "houses", "a small town"),
    "skyline": ("a city skyline", "a city", "skyscrapers", "tall buildings"),
    "conifer": ("a pine forest", "pine trees", "conifers", "an evergreen forest"),
    "leafy": ("woods", "a deciduous forest", "leafy trees"), "mixed": ("a forest", "woodland", "a mixed forest"),
    "tree": ("a tree", "a lone tree", "a single tree"), "trees": ("trees", "a few trees", "some trees"),
    "road": ("a road", "a country road", "a paved road"), "rocks": ("rocks", "boulders", "stones"),
    "mountain": ("below mountains", "beneath mountain peaks", "in front of mountains", "in the mountains"),
    "hill": ("among hills", "among rolling hills", "in the hills", "in front of hills"),
}
CONTENT_WORDS: dict[str, dict[str, tuple[str, ...]]] = {  # factor -> value -> words
    "water": {"sea": ("sea", "ocean", "coast", "seaside", "seashore"), "lake": ("lake", "lakeside"),
              "pond": ("pond",), "river": ("river", "stream", "riverside")},
    "ground": {"grass": ("meadow", "grassland", "grassy"), "field": ("farmland", "field", "crop"),
               "earth": ("plain", "dirt", "bare"), "sand": ("desert", "sandy", "beach")},
    "buildings": {"village": ("village", "town", "houses"),
                  "skyline": ("city", "skyline", "skyscrapers", "buildings")},
    "forest": {"conifer": ("pine", "conifers", "evergreen"), "leafy": ("woods", "deciduous", "leafy"),
               "mixed": ("forest", "woodland")},
    "trees": {"trees": ("tree", "trees")},
    "road": {"road": ("road",)},
    "rocks": {"rocks": ("rocks", "boulders", "stones")},
    "ridges": {"mountain": ("mountains", "peaks"), "hill": ("hills",)},
}
CAPTION_PREFIXES = ("", "a photo of ", "an image of ", "a picture of ", "a view of ")
_DETAIL = (("full", "scene", "style"), (0.6, 0.25, 0.15))  # what a caption names: all, subject + style, style


def _choose(rng: Optional[np.random.Generator], options: tuple):
    return options[0] if rng is None else options[int(rng.integers(len(options)))]


def article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    return " and ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + " and " + items[-1]


def caption(content: dict, style: dict, rng: Optional[np.random.Generator] = None) -> str:
    """E.g. 'a snowy lake with a pine forest below mountains in winter'. Without `rng` the canonical phrasing;
    with one, a template (everything, subject and look, or the look alone), a prefix and synonyms drawn from it."""
    water, ground = content["water"], content["ground"]
    kinds = {r["kind"] for r in content["ridges"]}
    detail = "full" if rng is None else pick(rng, *_DETAIL)
    prefix = _choose(rng, CAPTION_PREFIXES)
    adj, when = _choose(rng, STYLE_PHRASES[style["name"]])
    if detail == "style":
        subject = _choose(rng, ("landscape", "scene"))
    else:
        key = "beach" if water == "sea" and ground == "sand" else water if water != "none" else ground
        subject = _choose(rng, _SUBJECTS[key])
    words = [article(f"{adj} {subject}".strip())]
    if detail == "full":
        extras = []
        if content["buildings"] != "none":
            extras.append(_choose(rng, _EXTRAS[content["buildings"]]))
        if content["forest"] != "none":
            extras.append(_choose(rng, _EXTRAS[content["forest"]]))
        elif content["trees"]:
            extras.append(_choose(rng, _EXTRAS["trees" if content["trees"] > 1 else "tree"]))
        if content["road"]:
            extras.append(_choose(rng, _EXTRAS["road"]))
        if content["rocks"] and len(extras) < 2:
            extras.append(_choose(rng, _EXTRAS["rocks"]))
        if extras:
            words.append("with " + _join(extras))
    if detail != "style" and kinds:
        words.append(_choose(rng, _EXTRAS["mountain" if "mountain" in kinds else "hill"]))
    if when:
        words.append(when)
    return prefix + " ".join(words)

