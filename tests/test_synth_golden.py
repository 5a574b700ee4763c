"""Golden hashes of the synthetic renderer: the same arguments must keep producing the same files.

Datasets already rendered (the shipped bundle's 40,000 training scenes, the held-out scenes its numbers come
from) are reproducible only while these hold. A change that moves any hash changes the data: it needs new
datasets and new numbers, not new hashes. The PNG bytes also depend on zlib, so they are compared only under
the zlib the hashes were recorded with; the decoded pixels and the metadata are compared everywhere.
"""

from __future__ import annotations

import hashlib
import io
import json
import zlib

import numpy as np
import pytest
from PIL import Image

from bgedit_cli.data import synth

ZLIB_RECORDED = "1.2.13"
SAME_ZLIB = zlib.ZLIB_RUNTIME_VERSION == ZLIB_RECORDED

# synthesize(num=4, resolution=32, seed=0, val_fraction=0.5, mixing_pairs=2, workers=1):
# file -> (sha256 of the file, sha256 of the decoded pixels), first 16 hex digits.
TINY = {
    "annotations/training/synth_00000000.png": ("35af2706dd87d7de", "3db5fd20da59166b"),
    "annotations/training/synth_00000002.png": ("a1dbfa93eb912e1e", "f8d6d1529ad38aef"),
    "annotations/validation/synth_00000001.png": ("3e53b8b487474671", "ce0545f8bc1e4927"),
    "annotations/validation/synth_00000003.png": ("50213b0321a988c0", "7e4c56839d149931"),
    "images/training/synth_00000000.png": ("88e063ed0631bab0", "f78e0b1626582029"),
    "images/training/synth_00000002.png": ("b7b6b674a7ce628d", "074e27f805794f6e"),
    "images/validation/synth_00000001.png": ("925b57cfa667c0ff", "36bb606546752108"),
    "images/validation/synth_00000003.png": ("c40a70c72627c68d", "fac5bc82ec1d1097"),
    "metadata.jsonl": ("42f2cd2ce1d87fba", None),
    "mixing/validation/synth_00000001__synth_00000001.png": ("925b57cfa667c0ff", "36bb606546752108"),
    "mixing/validation/synth_00000001__synth_00000003.png": ("bfc9310800b687d7", "9b20e864e9a00ef7"),
    "mixing/validation/synth_00000003__synth_00000001.png": ("1bde13241f329bbb", "bcf032b29ac6e565"),
    "mixing/validation/synth_00000003__synth_00000003.png": ("c40a70c72627c68d", "fac5bc82ec1d1097"),
    "textedit/validation/synth_00000001__autumn.png": ("7e85459d5a35daeb", "a27bb6a3684b8b21"),
    "textedit/validation/synth_00000001__day.png": ("07da6a0b4f2d96b7", "fbb9e89c296fb1e4"),
    "textedit/validation/synth_00000001__fog.png": ("7b3214c88f16d58d", "9f1a793bc017cee7"),
    "textedit/validation/synth_00000001__night.png": ("00ec19c123ba306c", "35abaaefa9772c58"),
    "textedit/validation/synth_00000001__snow.png": ("b0d04e4b49611af5", "7173cfd9eb2836ba"),
    "textedit/validation/synth_00000001__sunset.png": ("e10eeab5ab37a435", "f5e427ed36497eb2"),
    "textedit/validation/synth_00000003__autumn.png": ("84ebc7cd48ad721c", "35866934541d1153"),
    "textedit/validation/synth_00000003__day.png": ("e7e046a45a3c3425", "2750512659303200"),
    "textedit/validation/synth_00000003__fog.png": ("763f823e8a796d1b", "2cc40fc5712d8845"),
    "textedit/validation/synth_00000003__night.png": ("0d2dc83d81b56c0c", "caa59696bdecdaa1"),
    "textedit/validation/synth_00000003__snow.png": ("1dc0f1dee4cd5afc", "b0e6d902e8e89d60"),
    "textedit/validation/synth_00000003__sunset.png": ("ccc33a6e2d332c2c", "bb27b26baa45d0bb"),
    "vocabulary.json": ("cd7da57e5b7e80b1", None),
}

# Scenes of the demo training set (`--num 40000 --resolution 64 --seed 0`) at 64 px: index -> sha256 of
# (json.dumps(scene_record(0, i, "training")), rgb array, seg array, encode_png(rgb), encode_png(seg)).
DEMO = {
    0: ("ea2db152f4454282", "cc5b84ee4be1e223", "b0390d8e690befc3", "f109ea95b06f9840", "1dbbac8af1b548f4"),
    1: ("e152bff987acbd79", "645e378088bfd4fe", "f7a9626cbc5a2d64", "203eb07b99fab013", "61ca332a237c82be"),
    20000: ("2d1fa9f0df590ffd", "6425304cb765d042", "340f6a14af8981b8", "33fa9158fac5330a", "eba923ba16ba9272"),
    39999: ("c5c649c2a540472d", "46437a6874316bc6", "ddddd4818badebd1", "72e89e556119765f", "8f8b8bf01f6aaace"),
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def test_tiny_dataset_files(tmp_path):
    out = tmp_path / "g"
    synth.synthesize(out, num=4, resolution=32, seed=0, val_fraction=0.5, mixing_pairs=2, workers=1)
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert sorted(files) == sorted(TINY)
    for name, (file_hash, pixel_hash) in TINY.items():
        if pixel_hash is None:
            assert _sha(files[name]) == file_hash, name  # text: the bytes everywhere
            continue
        assert _sha(np.asarray(Image.open(io.BytesIO(files[name]))).tobytes()) == pixel_hash, name
        if SAME_ZLIB:
            assert _sha(files[name]) == file_hash, name


@pytest.mark.parametrize("index", sorted(DEMO))
def test_demo_training_scenes(index):
    record = synth.scene_record(0, index, "training")
    rgb, seg = synth.render(record["content"], record["style"], 64)
    got = (_sha(json.dumps(record).encode()), _sha(rgb.tobytes()), _sha(seg.tobytes()))
    assert got == DEMO[index][:3]
    if SAME_ZLIB:
        assert (_sha(synth.encode_png(rgb)), _sha(synth.encode_png(seg))) == DEMO[index][3:]
