"""ADE20K SceneParsing (150 classes + "other"): class names and the colour palette.

Ids follow the SceneParsing annotations: 0 = "other" (unlabelled), 1..150 = objectInfo150, 255 = ignore.
Colours are the benchmark's `color150` table (CSAIL semantic-segmentation-pytorch `color150.mat`, the same
list as mmsegmentation's `ADE20KDataset` palette), with row 0 = black for "other".

The published table gives road (7) and skyscraper (49) the same colour (140, 140, 140). So that every id has
its own colour (and colorize -> decode is an exact round trip), skyscraper is drawn here one step lighter,
(141, 141, 141); when decoding, (140, 140, 140) means road, as it does for maps from other tools.
The ignore id 255 is drawn white (IGNORE_COLOR), which no class uses.
"""

from __future__ import annotations

import numpy as np

NUM_CLASSES = 151  # "other" + 150 objects
IGNORE_ID = 255
IGNORE_COLOR = (255, 255, 255)
SKYSCRAPER_COLOR = (141, 141, 141)  # published: (140, 140, 140), a duplicate of road

# (name, published colour), ids 1..150 in order.
_OBJECTS150 = (
    ('wall', (120, 120, 120)),  # 1
    ('building', (180, 120, 120)),  # 2
    ('sky', (6, 230, 230)),  # 3
    ('floor', (80, 50, 50)),  # 4
    ('tree', (4, 200, 3)),  # 5
    ('ceiling', (120, 120, 80)),  # 6
    ('road', (140, 140, 140)),  # 7
    ('bed', (204, 5, 255)),  # 8
    ('windowpane', (230, 230, 230)),  # 9
    ('grass', (4, 250, 7)),  # 10
    ('cabinet', (224, 5, 255)),  # 11
    ('sidewalk', (235, 255, 7)),  # 12
    ('person', (150, 5, 61)),  # 13
    ('earth', (120, 120, 70)),  # 14
    ('door', (8, 255, 51)),  # 15
    ('table', (255, 6, 82)),  # 16
    ('mountain', (143, 255, 140)),  # 17
    ('plant', (204, 255, 4)),  # 18
    ('curtain', (255, 51, 7)),  # 19
    ('chair', (204, 70, 3)),  # 20
    ('car', (0, 102, 200)),  # 21
    ('water', (61, 230, 250)),  # 22
    ('painting', (255, 6, 51)),  # 23
    ('sofa', (11, 102, 255)),  # 24
    ('shelf', (255, 7, 71)),  # 25
    ('house', (255, 9, 224)),  # 26
    ('sea', (9, 7, 230)),  # 27
    ('mirror', (220, 220, 220)),  # 28
    ('rug', (255, 9, 92)),  # 29
    ('field', (112, 9, 255)),  # 30
    ('armchair', (8, 255, 214)),  # 31
    ('seat', (7, 255, 224)),  # 32
    ('fence', (255, 184, 6)),  # 33
    ('desk', (10, 255, 71)),  # 34
    ('rock', (255, 41, 10)),  # 35
    ('wardrobe', (7, 255, 255)),  # 36
    ('lamp', (224, 255, 8)),  # 37
    ('bathtub', (102, 8, 255)),  # 38
    ('railing', (255, 61, 6)),  # 39
    ('cushion', (255, 194, 7)),  # 40
    ('base', (255, 122, 8)),  # 41
    ('box', (0, 255, 20)),  # 42
    ('column', (255, 8, 41)),  # 43
    ('signboard', (255, 5, 153)),  # 44
    ('chest of drawers', (6, 51, 255)),  # 45
    ('counter', (235, 12, 255)),  # 46
    ('sand', (160, 150, 20)),  # 47
    ('sink', (0, 163, 255)),  # 48
    ('skyscraper', (140, 140, 140)),  # 49
    ('fireplace', (250, 10, 15)),  # 50
    ('refrigerator', (20, 255, 0)),  # 51
    ('grandstand', (31, 255, 0)),  # 52
    ('path', (255, 31, 0)),  # 53
    ('stairs', (255, 224, 0)),  # 54
    ('runway', (153, 255, 0)),  # 55
    ('case', (0, 0, 255)),  # 56
    ('pool table', (255, 71, 0)),  # 57
    ('pillow', (0, 235, 255)),  # 58
    ('screen door', (0, 173, 255)),  # 59
    ('stairway', (31, 0, 255)),  # 60
    ('river', (11, 200, 200)),  # 61
    ('bridge', (255, 82, 0)),  # 62
    ('bookcase', (0, 255, 245)),  # 63
    ('blind', (0, 61, 255)),  # 64
    ('coffee table', (0, 255, 112)),  # 65
    ('toilet', (0, 255, 133)),  # 66
    ('flower', (255, 0, 0)),  # 67
    ('book', (255, 163, 0)),  # 68
    ('hill', (255, 102, 0)),  # 69
    ('bench', (194, 255, 0)),  # 70
    ('countertop', (0, 143, 255)),  # 71
    ('stove', (51, 255, 0)),  # 72
    ('palm', (0, 82, 255)),  # 73
    ('kitchen island', (0, 255, 41)),  # 74
    ('computer', (0, 255, 173)),  # 75
    ('swivel chair', (10, 0, 255)),  # 76
    ('boat', (173, 255, 0)),  # 77
    ('bar', (0, 255, 153)),  # 78
    ('arcade machine', (255, 92, 0)),  # 79
    ('hovel', (255, 0, 255)),  # 80
    ('bus', (255, 0, 245)),  # 81
    ('towel', (255, 0, 102)),  # 82
    ('light', (255, 173, 0)),  # 83
    ('truck', (255, 0, 20)),  # 84
    ('tower', (255, 184, 184)),  # 85
    ('chandelier', (0, 31, 255)),  # 86
    ('awning', (0, 255, 61)),  # 87
    ('streetlight', (0, 71, 255)),  # 88
    ('booth', (255, 0, 204)),  # 89
    ('television receiver', (0, 255, 194)),  # 90
    ('airplane', (0, 255, 82)),  # 91
    ('dirt track', (0, 10, 255)),  # 92
    ('apparel', (0, 112, 255)),  # 93
    ('pole', (51, 0, 255)),  # 94
    ('land', (0, 194, 255)),  # 95
    ('bannister', (0, 122, 255)),  # 96
    ('escalator', (0, 255, 163)),  # 97
    ('ottoman', (255, 153, 0)),  # 98
    ('bottle', (0, 255, 10)),  # 99
    ('buffet', (255, 112, 0)),  # 100
    ('poster', (143, 255, 0)),  # 101
    ('stage', (82, 0, 255)),  # 102
    ('van', (163, 255, 0)),  # 103
    ('ship', (255, 235, 0)),  # 104
    ('fountain', (8, 184, 170)),  # 105
    ('conveyer belt', (133, 0, 255)),  # 106
    ('canopy', (0, 255, 92)),  # 107
    ('washer', (184, 0, 255)),  # 108
    ('plaything', (255, 0, 31)),  # 109
    ('swimming pool', (0, 184, 255)),  # 110
    ('stool', (0, 214, 255)),  # 111
    ('barrel', (255, 0, 112)),  # 112
    ('basket', (92, 255, 0)),  # 113
    ('waterfall', (0, 224, 255)),  # 114
    ('tent', (112, 224, 255)),  # 115
    ('bag', (70, 184, 160)),  # 116
    ('minibike', (163, 0, 255)),  # 117
    ('cradle', (153, 0, 255)),  # 118
    ('oven', (71, 255, 0)),  # 119
    ('ball', (255, 0, 163)),  # 120
    ('food', (255, 204, 0)),  # 121
    ('step', (255, 0, 143)),  # 122
    ('tank', (0, 255, 235)),  # 123
    ('trade name', (133, 255, 0)),  # 124
    ('microwave', (255, 0, 235)),  # 125
    ('pot', (245, 0, 255)),  # 126
    ('animal', (255, 0, 122)),  # 127
    ('bicycle', (255, 245, 0)),  # 128
    ('lake', (10, 190, 212)),  # 129
    ('dishwasher', (214, 255, 0)),  # 130
    ('screen', (0, 204, 255)),  # 131
    ('blanket', (20, 0, 255)),  # 132
    ('sculpture', (255, 255, 0)),  # 133
    ('hood', (0, 153, 255)),  # 134
    ('sconce', (0, 41, 255)),  # 135
    ('vase', (0, 255, 204)),  # 136
    ('traffic light', (41, 0, 255)),  # 137
    ('tray', (41, 255, 0)),  # 138
    ('ashcan', (173, 0, 255)),  # 139
    ('fan', (0, 245, 255)),  # 140
    ('pier', (71, 0, 255)),  # 141
    ('crt screen', (122, 0, 255)),  # 142
    ('plate', (0, 255, 184)),  # 143
    ('monitor', (0, 92, 255)),  # 144
    ('bulletin board', (184, 255, 0)),  # 145
    ('shower', (0, 133, 255)),  # 146
    ('radiator', (255, 214, 0)),  # 147
    ('glass', (25, 194, 194)),  # 148
    ('clock', (102, 255, 0)),  # 149
    ('flag', (92, 0, 255)),  # 150
)

CLASS_NAMES: tuple[str, ...] = ("other",) + tuple(name for name, _ in _OBJECTS150)


def _palette() -> np.ndarray:
    palette = np.array([(0, 0, 0)] + [color for _, color in _OBJECTS150], dtype=np.uint8)
    palette[CLASS_NAMES.index("skyscraper")] = SKYSCRAPER_COLOR
    palette.setflags(write=False)
    return palette


PALETTE: np.ndarray = _palette()  # [151, 3] uint8, row i = colour of class id i

assert len(CLASS_NAMES) == NUM_CLASSES and PALETTE.shape == (NUM_CLASSES, 3)
assert len({tuple(c) for c in PALETTE.tolist()} | {IGNORE_COLOR}) == NUM_CLASSES + 1, "palette colours must differ"
