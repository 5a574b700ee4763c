"""Style: the appearance factors of a scene. Six named looks (`STYLE_NAMES`), each a palette per material plus
sky, sun/moon, clouds, stars, haze, snow cover, lit windows, texture strength and colour grade.

`canonical_style(name)` is a look's un-jittered parameters with `seed = 0` (the text-edit ground truth);
`sample_style(rng)` draws a look and jitters its palette and scalars. Styles are JSON-serialisable dicts (they
go into metadata.jsonl as they are); the `seed` draws the clouds and stars at paint time.
"""

from __future__ import annotations

import functools
import json
from typing import Optional

import numpy as np

from bgedit_cli.data.synth.geometry import MATERIALS
from bgedit_cli.errors import InputError

STYLE_NAMES = ("day", "sunset", "night", "snow", "fog", "autumn")

# A look's canonical parameters; sampling jitters them.
_DAY_PALETTE = {  # material: (tone 0 colour, tone 1 colour), sRGB in [0, 1]
    "sky": ((.5, .5, .5), (.5, .5, .5)), "mountain": ((.40, .41, .46), (.50, .46, .42)),
    "hill": ((.30, .47, .21), (.42, .52, .25)), "sea": ((.08, .27, .42), (.08, .27, .42)),
    "lake": ((.10, .30, .36), (.10, .30, .36)), "river": ((.14, .33, .38), (.14, .33, .38)),
    "grass": ((.27, .50, .17), (.40, .57, .21)), "field": ((.72, .63, .30), (.40, .57, .21)),
    "earth": ((.48, .37, .24), (.58, .46, .32)), "sand": ((.86, .78, .58), (.79, .69, .50)),
    "conifer": ((.09, .25, .13), (.14, .33, .16)), "leafy": ((.17, .38, .11), (.33, .50, .15)),
    "trunk": ((.29, .20, .12), (.38, .28, .18)), "wall": ((.86, .81, .71), (.74, .46, .35)),
    "roof": ((.56, .21, .15), (.30, .30, .35)), "window": ((.20, .27, .35), (.20, .27, .35)),
    "door": ((.36, .22, .14), (.30, .24, .20)), "road": ((.32, .32, .33), (.38, .37, .35)),
    "marking": ((.92, .90, .80), (.92, .90, .80)), "rock": ((.44, .43, .41), (.56, .53, .48)),
}
_DAY = {
    "sky_top": (.20, .42, .84), "sky_horizon": (.68, .81, .95),
    "sun_x": .7, "sun_elevation": .75, "sun_size": .028, "sun_glow": .3, "sun_glow_radius": .14,
    "sun_strength": 1.0, "sun_color": (1.0, .97, .88),
    "cloud_cover": .4, "cloud_color": (1.0, 1.0, 1.0), "cloud_shade": (.70, .74, .83), "stars": 0.0,
    "light": 1.0, "tint": (1.0, 1.0, .97), "relief": .45, "texture": 1.0,
    "haze": .3, "haze_color": (.74, .83, .94), "snow": 0.0, "snowcap": .2, "snow_color": (.94, .95, .98),
    "lit_windows": 0.0, "window_lit": (1.0, .80, .45), "reflect": .55,
    "saturation": 1.0, "exposure": 1.0,
}
_LOOKS = {
    "day": {},
    "sunset": {"sky_top": (.20, .20, .42), "sky_horizon": (1.0, .55, .25), "sun_elevation": .06, "sun_size": .04,
               "sun_glow": .9, "sun_glow_radius": .3, "sun_color": (1.0, .72, .35), "cloud_cover": .35,
               "cloud_color": (1.0, .58, .45), "cloud_shade": (.42, .28, .38), "light": .72, "tint": (1.0, .72, .55),
               "relief": .6, "haze": .35, "haze_color": (.95, .60, .42), "lit_windows": .25, "saturation": 1.1,
               "snowcap": .15},
    "night": {"sky_top": (.015, .02, .07), "sky_horizon": (.07, .11, .22), "sun_elevation": .65, "sun_size": .022,
              "sun_glow": .12, "sun_glow_radius": .1, "sun_color": (.95, .95, .86), "cloud_cover": .2,
              "cloud_color": (.10, .11, .16), "cloud_shade": (.05, .05, .08), "stars": 1.0, "light": .36,
              "exposure": 1.15,
              "tint": (.55, .68, 1.0), "haze": .25, "haze_color": (.05, .07, .14), "lit_windows": .55,
              "saturation": .75, "reflect": .7, "snowcap": .15},
    "snow": {"sky_top": (.42, .56, .78), "sky_horizon": (.82, .86, .92), "sun_elevation": .35, "cloud_cover": .55,
             "cloud_color": (.96, .97, .99), "cloud_shade": (.64, .67, .75), "tint": (.95, .98, 1.05),
             "haze": .45, "haze_color": (.84, .87, .93), "snow": 1.0, "snowcap": 1.0, "saturation": .85,
             "lit_windows": .1,
             "palette": {"sea": ((.10, .20, .28),) * 2, "lake": ((.16, .24, .30),) * 2,
                         "river": ((.14, .22, .28),) * 2}},
    "fog": {"sky_top": (.66, .68, .70), "sky_horizon": (.80, .81, .82), "sun_strength": .15, "sun_glow": .15,
            "sun_elevation": .5, "cloud_cover": 0.0, "light": .8, "tint": (.95, .97, 1.0), "haze": 1.6,
            "haze_color": (.80, .81, .82), "saturation": .7, "lit_windows": .1, "reflect": .4, "relief": .3},
    "autumn": {"sky_top": (.28, .46, .78), "sky_horizon": (.86, .84, .76), "sun_elevation": .35,
               "tint": (1.05, .95, .82), "haze": .3, "haze_color": (.86, .81, .70), "snowcap": .1,
               "palette": {"leafy": ((.78, .30, .07), (.90, .62, .12)), "grass": ((.50, .48, .20), (.58, .45, .18)),
                           "hill": ((.55, .42, .18), (.62, .50, .22)), "field": ((.76, .56, .25), (.56, .40, .20)),
                           "conifer": ((.12, .26, .12), (.20, .30, .14))}},
}


_COLOR_KEYS = ("sky_top", "sky_horizon", "sun_color", "cloud_color", "cloud_shade", "haze_color", "tint",
               "window_lit", "snow_color")


def _round(x):
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return [_round(v) for v in x]
    if isinstance(x, float):
        return round(x, 3)
    return x


@functools.lru_cache(maxsize=None)
def _canonical_json(name: str) -> str:
    look = dict(_LOOKS[name])
    palette = dict(_DAY_PALETTE)
    palette.update(look.pop("palette", {}))
    return json.dumps(_round({"name": name, "seed": 0, **_DAY, **look, "palette": palette}))


def canonical_style(name: str) -> dict:
    """A named look's un-jittered parameters (seed 0): the text-edit ground truth."""
    if name not in _LOOKS:
        raise InputError(f"unknown style {name!r}; expected one of {', '.join(STYLE_NAMES)}.")
    return json.loads(_canonical_json(name))


def _jitter(rng: np.random.Generator, x: float, sd: float, lo: float = 0.0, hi: float = 1e9) -> float:
    return round(min(max(x * float(np.exp(rng.normal(0, sd))), lo), hi), 3)


def sample_style(rng: np.random.Generator, name: Optional[str] = None) -> dict:
    """A named look (random unless given) with jittered palette, light, sun, clouds, haze and texture."""
    name = name or STYLE_NAMES[int(rng.integers(len(STYLE_NAMES)))]
    s = canonical_style(name)
    s["seed"] = int(rng.integers(0, 2**31 - 1))
    colors = np.array([s[k] for k in _COLOR_KEYS])
    neutral = ("tint", "snow_color", "haze_color", "cloud_color")  # near-white: a small tint shift shows
    sd = np.array([0.015 if k in neutral else 0.08 for k in _COLOR_KEYS])[:, None]
    colors = np.clip(colors * np.exp(rng.normal(0, 1, colors.shape) * sd), 0, 1).round(3).tolist()
    s.update(zip(_COLOR_KEYS, colors))
    pal = np.array([s["palette"][m] for m in MATERIALS])  # [materials, 2 tones, 3]
    pal = np.clip(pal * np.exp(rng.normal(0, 0.07, pal.shape) + rng.normal(0, 0.05)), 0, 1).round(3).tolist()
    s["palette"] = dict(zip(MATERIALS, pal))
    s["sun_x"] = round(float(rng.uniform(0.08, 0.92)), 3)
    s["sun_elevation"] = _jitter(rng, s["sun_elevation"], 0.25, 0.02, 0.95)
    s["sun_size"] = _jitter(rng, s["sun_size"], 0.15)
    s["sun_glow"] = _jitter(rng, s["sun_glow"], 0.2)
    if s["cloud_cover"]:
        s["cloud_cover"] = round(min(max(s["cloud_cover"] + float(rng.normal(0, 0.15)), 0.0), 0.9), 3)
    s["light"] = _jitter(rng, s["light"], 0.08, 0.05, 1.3)
    s["relief"] = _jitter(rng, s["relief"], 0.2, 0.0, 1.0)
    s["texture"] = _jitter(rng, s["texture"], 0.2, 0.3, 1.8)
    s["haze"] = _jitter(rng, s["haze"], 0.25)
    s["snowcap"] = _jitter(rng, s["snowcap"], 0.3, 0.0, 1.0)
    s["lit_windows"] = _jitter(rng, s["lit_windows"], 0.3, 0.0, 1.0)
    s["saturation"] = _jitter(rng, s["saturation"], 0.08)
    s["exposure"] = _jitter(rng, s["exposure"], 0.05)
    s["reflect"] = _jitter(rng, s["reflect"], 0.15, 0.0, 0.95)
    return s

