"""What a scene's layout is made of: the ADE20K classes it is labelled with, the materials its pixels are made
of, and `Layout`, the style-independent geometry that `content.layout` rasterises and `painting.paint` colours."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bgedit_cli.data.ade20k_classes import CLASS_NAMES

# The ADE20K SceneParsing classes the annotations use: name -> id (data/ade20k_classes.py, 0 = other).
LABELS = ("building", "sky", "tree", "road", "grass", "earth", "mountain", "water", "house", "sea", "field", "rock",
          "sand", "river", "hill")
CLASS_IDS = {name: CLASS_NAMES.index(name) for name in LABELS}

# Materials: what a pixel is made of (its colour rule). Several materials share an ADE20K class.
(SKY, MOUNTAIN, HILL, SEA, LAKE, RIVER, GRASS, FIELD, EARTH, SAND, CONIFER, LEAFY, TRUNK, WALL, ROOF, WINDOW,
 DOOR, ROAD, MARKING, ROCK) = range(20)
MATERIALS = ("sky", "mountain", "hill", "sea", "lake", "river", "grass", "field", "earth", "sand", "conifer",
             "leafy", "trunk", "wall", "roof", "window", "door", "road", "marking", "rock")
UPRIGHT = (CONIFER, LEAFY, TRUNK, WALL, ROOF, WINDOW, DOOR, ROCK)  # objects that stand (textured by `fine`)


def is_water(mat: np.ndarray) -> np.ndarray:
    return (mat >= SEA) & (mat <= RIVER)  # SEA, LAKE, RIVER are consecutive (np.isin is slow)


@dataclass
class Layout:
    """Geometry of one scene at resolution R (all arrays [R, R]); style-independent."""

    R: int
    horizon: int
    vanish_x: float
    mat: np.ndarray    # uint8 material id
    seg: np.ndarray    # uint8 ADE20K class id
    depth: np.ndarray  # float32, 0 near .. 1 far (fog, reflections)
    nx: np.ndarray     # float32 surface orientation left (-1) .. right (+1)
    tex: np.ndarray    # float32 texture of ground, ridges and water (ripples), about [-1, 1]
    obj: np.ndarray    # float32 per-object tone in [0, 1]
    elev: np.ndarray   # float32 relative height within an upright object (snow caps, forest shade)
    aux: np.ndarray    # float32 window "lit rank" in [0, 1]
    fine: np.ndarray   # float32 texture of upright objects (foliage, rock, walls): materials in UPRIGHT

