"""Images and seg maps in/out (bgedit_cli.io), the ADE20K palette, and `bgedit seg colorize|stats`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bgedit_cli.data.ade20k_classes import CLASS_NAMES, IGNORE_COLOR, PALETTE
from bgedit_cli.errors import InputError, OutputExistsError
from bgedit_cli.io import (check_seg_size, colorize_seg, image_columns, image_grid, load_image, load_seg, one_hot_seg,
                           save_png, save_seg, to_uint8)

ALL_IDS = np.array([list(range(151)) + [255]], dtype=np.uint8)  # [1, 152]: every class and ignore


# ---- ADE20K classes and palette


def test_classes_and_palette_table():
    assert len(CLASS_NAMES) == 151 and CLASS_NAMES[0] == "other"
    assert (CLASS_NAMES[1], CLASS_NAMES[3], CLASS_NAMES[13], CLASS_NAMES[150]) == ("wall", "sky", "person", "flag")
    assert PALETTE.shape == (151, 3) and PALETTE.dtype == np.uint8
    assert PALETTE[0].tolist() == [0, 0, 0]
    assert PALETTE[1].tolist() == [120, 120, 120] and PALETTE[5].tolist() == [4, 200, 3]
    assert PALETTE[150].tolist() == [92, 0, 255]
    colours = {tuple(c) for c in PALETTE.tolist()} | {IGNORE_COLOR}
    assert len(colours) == 152  # all distinct, ignore included


# ---- seg maps


def test_palette_round_trip_all_ids(tmp_path):
    rgb = colorize_seg(ALL_IDS)
    assert rgb.shape == (1, 152, 3) and rgb.dtype == np.uint8
    save_png(tmp_path / "rgb.png", rgb)
    np.testing.assert_array_equal(load_seg(tmp_path / "rgb.png"), ALL_IDS)


def test_published_road_grey_decodes_as_road(tmp_path):
    save_png(tmp_path / "g.png", np.full((2, 2, 3), 140, np.uint8))
    assert (load_seg(tmp_path / "g.png") == CLASS_NAMES.index("road")).all()


def test_rgba_transparent_is_ignore(tmp_path):
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, :, :3] = PALETTE[[3, 5, 0]]
    rgba[0, :2, 3] = 255
    rgba[0, 2, :3] = (1, 2, 3)  # unknown colour, but transparent
    save_png(tmp_path / "a.png", rgba)
    assert load_seg(tmp_path / "a.png").tolist() == [[3, 5, 255]]


@pytest.mark.parametrize("fmt", ["L", "P", "I;16", "I"])
def test_index_modes_round_trip(tmp_path, fmt):
    ids = np.tile(ALL_IDS, (3, 1))
    path = tmp_path / ("m.tif" if fmt == "I" else "m.png")
    if fmt == "L":
        img = Image.fromarray(ids)
    elif fmt == "P":  # a scrambled palette: the indices count, not the colours
        img = Image.frombytes("P", (ids.shape[1], ids.shape[0]), ids.tobytes())
        img.putpalette(np.random.default_rng(0).integers(0, 256, 768, dtype=np.uint8).tobytes())
    else:
        img = Image.fromarray(ids.astype(np.uint16 if fmt == "I;16" else np.int32))
    img.save(path)
    assert Image.open(path).mode == fmt
    out = load_seg(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, ids)


def test_bad_ids_name_values_and_counts(tmp_path):
    ids = np.zeros((6, 7), np.uint8)
    ids.flat[:40] = 200
    ids.flat[40:42] = 151
    Image.fromarray(ids).save(tmp_path / "seg.png")
    with pytest.raises(InputError) as info:
        load_seg(tmp_path / "seg.png")
    msg = str(info.value)
    assert "seg.png" in msg and "200 x 40 px" in msg and "151 x 2 px" in msg
    assert msg.index("200 x 40") < msg.index("151 x 2")  # most frequent first


def test_unknown_colours_name_values_and_counts(tmp_path):
    rgb = np.tile(PALETTE[3], (6, 7, 1))
    rgb.reshape(-1, 3)[:40] = (1, 2, 3)
    rgb.reshape(-1, 3)[40:42] = (9, 9, 9)
    save_png(tmp_path / "seg.png", rgb)
    with pytest.raises(InputError) as info:
        load_seg(tmp_path / "seg.png")
    msg = str(info.value)
    assert "seg.png: 2 unknown colour(s)" in msg
    assert "(1, 2, 3) x 40 px, (9, 9, 9) x 2 px" in msg


def test_grey_ids_as_rgb_get_a_hint(tmp_path):
    save_png(tmp_path / "s.png", np.full((2, 2, 3), 17, np.uint8))
    with pytest.raises(InputError, match="mode L"):
        load_seg(tmp_path / "s.png")


def test_seg_resize_crop_and_size_check(tmp_path):
    ids = np.zeros((30, 40), np.uint8)
    ids[:, 5:20] = 3  # left half of the centred 30x30 square (columns 5..34)
    ids[:, 20:35] = 5
    ids[:, 35:] = 7  # outside the crop
    Image.fromarray(ids).save(tmp_path / "m.png")
    out = load_seg(tmp_path / "m.png", resolution=10)
    assert out.shape == (10, 10)
    assert (out[:, :5] == 3).all() and (out[:, 5:] == 5).all()
    check_seg_size(out, 10, "m.png")
    with pytest.raises(InputError, match="m.png: segmentation map is 40x30"):
        check_seg_size(load_seg(tmp_path / "m.png"), 10, "m.png")


def test_image_and_map_stay_aligned(tmp_path):
    rng = np.random.default_rng(1)
    blocks = rng.integers(1, 151, (5, 8)).astype(np.uint8)
    ids = np.kron(blocks, np.ones((16, 16), np.uint8))  # [80, 128]: the centred square starts mid-block
    save_png(tmp_path / "img.png", colorize_seg(ids))
    Image.fromarray(ids).save(tmp_path / "map.png")
    img = to_uint8(load_image(tmp_path / "img.png", 40)[None])[0]
    seg = load_seg(tmp_path / "map.png", 40)
    # Away from block edges the bicubic image must show exactly the colour of the nearest-resized map.
    pad = np.pad(seg.astype(int), 2, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(pad, (5, 5))
    flat = (windows == seg[..., None, None]).all(axis=(-1, -2))
    assert flat.sum() > 300
    assert np.abs(img[flat].astype(int) - colorize_seg(seg)[flat].astype(int)).max() <= 1

    # No scaling (R = shorter side): both are the exact centre crop.
    ids = rng.integers(0, 151, (30, 40)).astype(np.uint8)
    save_png(tmp_path / "img1.png", colorize_seg(ids))
    Image.fromarray(ids).save(tmp_path / "map1.png")
    np.testing.assert_array_equal(load_seg(tmp_path / "map1.png", 30), ids[:, 5:35])
    np.testing.assert_array_equal(to_uint8(load_image(tmp_path / "img1.png", 30)[None])[0], colorize_seg(ids)[:, 5:35])


def test_save_seg_and_colorize(tmp_path):
    ids = np.tile(ALL_IDS, (2, 1))
    save_seg(tmp_path / "s.png", torch.from_numpy(ids.astype(np.int64)))
    assert Image.open(tmp_path / "s.png").mode == "L"
    np.testing.assert_array_equal(load_seg(tmp_path / "s.png"), ids)
    with pytest.raises(OutputExistsError):
        save_seg(tmp_path / "s.png", ids)
    assert colorize_seg(np.array([[255]])).tolist() == [[list(IGNORE_COLOR)]]
    with pytest.raises(InputError, match="151 x 1 px"):
        colorize_seg(np.array([[151]]))


def test_one_hot_seg():
    ids = torch.tensor([[[0, 5, 255], [150, 255, 1]]])  # [1, 2, 3]
    oh = one_hot_seg(ids)
    assert oh.shape == (1, 151, 2, 3) and oh.dtype == torch.float32
    assert oh.sum(1).tolist() == [[[1, 1, 0], [1, 0, 1]]]
    assert oh[0, 5, 0, 1] == 1 and oh[0, 150, 1, 0] == 1 and oh[0, 0, 0, 0] == 1
    assert one_hot_seg(ids[0]).shape == (151, 2, 3)
    torch.testing.assert_close(one_hot_seg(ids[0]), oh[0])
    with pytest.raises(InputError):
        one_hot_seg(torch.tensor([[151]]))


# ---- images


def _check_range(x, r):
    assert x.shape == (3, r, r) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1


def test_image_grid_and_columns():
    # Five 2x3 images of one grey level each: -1, -0.5, 0, 0.5, 1 -> 0, 64, 128, 191, 255.
    levels = torch.linspace(-1, 1, 5)
    img = levels[:, None, None, None].expand(5, 3, 2, 3)
    grid = image_grid(img, cols=2)
    assert grid.shape == (3 * 2, 2 * 3, 3) and grid.dtype == np.uint8
    assert grid[::2, ::3, 0].tolist() == [[0, 64], [128, 191], [255, 0]]  # row by row; the empty cell is black
    # Columns side by side: row i holds sample i of every column.
    a, b = img[:2], -img[:2]
    cols = image_columns([a, b])
    assert cols.shape == (2 * 2, 2 * 3, 3)
    assert cols[::2, ::3, 0].tolist() == [[0, 255], [64, 191]]
    assert np.array_equal(cols[:2, :3], to_uint8(a)[0]) and np.array_equal(cols[2:, 3:], to_uint8(b)[1])


def test_load_image_modes(tmp_path):
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:, :10] = (255, 0, 0, 255)  # opaque red | transparent (composited on white)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    x = load_image(tmp_path / "rgba.png", 20)
    _check_range(x, 20)
    assert x[:, :, 0].tolist() == [[1.0] * 20, [-1.0] * 20, [-1.0] * 20]
    assert (x[:, :, -1] == 1).all()

    Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).save(tmp_path / "grey.png")
    x = load_image(tmp_path / "grey.png", 2)
    _check_range(x, 2)
    assert x[:, 0, 0].tolist() == [-1.0] * 3 and x[:, 0, 1].tolist() == [1.0] * 3

    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "g16.png")
    assert (load_image(tmp_path / "g16.png", 4) == 1).all()

    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "x.webp", lossless=True)
    _check_range(load_image(tmp_path / "x.webp", 16), 16)


def test_palette_image_colours(tmp_path):
    pal = Image.frombytes("P", (2, 2), bytes([0, 1, 1, 0]))
    pal.putpalette([0, 255, 0, 0, 0, 255])
    pal.save(tmp_path / "pal.png")
    x = load_image(tmp_path / "pal.png", 2)
    assert x[:, 0, 0].tolist() == [-1.0, 1.0, -1.0] and x[:, 0, 1].tolist() == [-1.0, -1.0, 1.0]


def test_exif_orientation_applied(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)  # left red, right blue as stored
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise: left -> top
    Image.fromarray(stored).save(tmp_path / "r.jpg", quality=95, exif=exif.tobytes())
    x = load_image(tmp_path / "r.jpg", 20)
    _check_range(x, 20)
    top, bottom = x[:, 1, :].mean(1), x[:, -2, :].mean(1)
    assert top[0] > 0.8 and top[2] < -0.8  # red on top
    assert bottom[2] > 0.8 and bottom[0] < -0.8  # blue at the bottom


def test_bad_images_are_input_errors(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"this is not an image")
    with pytest.raises(InputError, match="junk.png: not a readable image"):
        load_image(tmp_path / "junk.png", 8)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:2000])
    with pytest.raises(InputError, match="cut.png"):
        load_image(tmp_path / "cut.png", 8)
    with pytest.raises(InputError, match="nope.png: no such file"):
        load_image(tmp_path / "nope.png", 8)
    with pytest.raises(InputError, match="junk.png: not a readable segmentation map"):
        load_seg(tmp_path / "junk.png")


# ---- bgedit seg colorize | stats


def test_cli_seg_colorize(cli, tmp_path):
    ids = np.tile(ALL_IDS, (2, 1))
    Image.fromarray(ids).save(tmp_path / "in.png")
    res = cli(["seg", "colorize", tmp_path / "in.png", tmp_path / "out.png"])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), colorize_seg(ids))
    np.testing.assert_array_equal(load_seg(tmp_path / "out.png"), ids)

    from conftest import assert_clean_error

    assert_clean_error(cli(["seg", "colorize", tmp_path / "in.png", tmp_path / "out.png"]), "already exists")
    assert cli(["seg", "colorize", tmp_path / "in.png", tmp_path / "out.png", "--force"]).exit_code == 0


def test_cli_seg_stats(cli, tmp_path):
    ids = np.full((4, 5), 3, np.uint8)
    ids[0, :4] = 255
    ids[1:, 0] = 17
    Image.fromarray(ids).save(tmp_path / "m.png")
    res = cli(["seg", "stats", tmp_path / "m.png", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["pixels"] == 20 and data["ignore_pixels"] == 4 and data["width"] == 5
    assert [(c["id"], c["name"], c["pixels"]) for c in data["classes"]] == [(3, "sky", 13), (17, "mountain", 3)]
    assert data["classes"][0]["fraction"] == pytest.approx(13 / 20)

    res = cli(["seg", "stats", tmp_path / "m.png"])
    assert res.exit_code == 0 and "sky" in res.stdout and "mountain" in res.stdout


def test_cli_seg_errors(cli, tmp_path):
    from conftest import assert_clean_error

    Image.fromarray(np.full((3, 3), 200, np.uint8)).save(tmp_path / "bad.png")
    assert_clean_error(cli(["seg", "stats", tmp_path / "bad.png"]), "bad.png", "200 x 9 px")
    assert_clean_error(cli(["seg", "colorize", tmp_path / "bad.png", tmp_path / "o.png"]), "200 x 9 px")
    assert not (tmp_path / "o.png").exists()
    assert_clean_error(cli(["seg", "stats", tmp_path / "missing.png"]), "no such file")
