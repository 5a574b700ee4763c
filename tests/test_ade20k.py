"""ADE20K-layout dataset: listing, resize/crop, joint deterministic flips, errors, DataLoader workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bgedit_cli.data.ade20k import ADE20KDataset, flip_for, make_loader, set_loader_epoch
from bgedit_cli.errors import InputError
from bgedit_cli.io import load_image, load_seg

R = 16


def make_layout(root: Path, n: int = 6, split: str = "training") -> list[str]:
    """n images 40x30 (one JPEG) with index maps in ROOT/{images,annotations}/split."""
    rng = np.random.default_rng(0)
    (root / "images" / split).mkdir(parents=True)
    (root / "annotations" / split).mkdir(parents=True)
    names = []
    for i in range(n):
        name = f"synth_{i:08d}"
        img = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        img[:, :20, 0] = 255  # left half reddish: flips are visible
        ids = rng.integers(0, 151, (30, 40)).astype(np.uint8)
        ids[:, :20] = 3
        ids[0, 10:15] = 255  # inside the centred crop (columns 5..34)
        ext = ".jpg" if i == 2 else ".png"
        Image.fromarray(img).save(root / "images" / split / f"{name}{ext}")
        Image.fromarray(ids).save(root / "annotations" / split / f"{name}.png")
        names.append(name)
    return names


@pytest.fixture
def root(tmp_path):
    make_layout(tmp_path / "ade")
    return tmp_path / "ade"


def test_items(root):
    ds = ADE20KDataset(root, resolution=R, one_hot=True)
    assert len(ds) == 6 and ds.names == sorted(ds.names) and ds.names[0] == "synth_00000000"
    item = ds[2]
    assert item["name"] == "synth_00000002" and item["index"] == 2
    assert item["img"].shape == (3, R, R) and item["img"].dtype == torch.float32
    assert -1 <= item["img"].min() and item["img"].max() <= 1
    seg = item["seg"]
    assert seg.shape == (R, R) and seg.dtype == torch.int64
    assert set(seg.unique().tolist()) <= set(range(151)) | {255} and 255 in seg
    # Same resize/crop rule as the CLI's readers.
    torch.testing.assert_close(item["img"], load_image(ds.image_paths[2], R))
    np.testing.assert_array_equal(seg.numpy(), load_seg(ds.seg_paths[2], R))
    oh = item["seg_onehot"]
    assert oh.shape == (151, R, R) and oh.dtype == torch.float32
    valid = seg != 255
    assert (oh.argmax(0)[valid] == seg[valid]).all() and (oh.sum(0) == valid.float()).all()


def test_flip_is_joint_and_deterministic(root):
    plain = ADE20KDataset(root, resolution=R)
    flipped = ADE20KDataset(root, resolution=R, flip=True, seed=3)
    decisions = []
    for epoch in range(3):
        flipped.set_epoch(epoch)
        for i in range(len(plain)):
            a, b = plain[i], flipped[i]
            f = flip_for(3, epoch, i)
            decisions.append(f)
            img, seg = (a["img"].flip(-1), a["seg"].flip(-1)) if f else (a["img"], a["seg"])
            assert torch.equal(b["img"], img) and torch.equal(b["seg"], seg)
    assert any(decisions) and not all(decisions)
    # Same (seed, epoch) -> same flips in another dataset object; another epoch -> another pattern.
    again = ADE20KDataset(root, resolution=R, flip=True, seed=3)
    again.set_epoch(1)
    flipped.set_epoch(1)
    assert all(torch.equal(again[i]["img"], flipped[i]["img"]) for i in range(len(again)))
    patterns = {tuple(flip_for(3, e, i) for i in range(6)) for e in range(4)}
    assert len(patterns) > 1


def test_root_may_be_parent_of_adechallenge(tmp_path):
    make_layout(tmp_path / "ADEChallengeData2016", n=2, split="validation")
    assert len(ADE20KDataset(tmp_path, split="validation", resolution=R)) == 2


def test_layout_errors(tmp_path, root):
    with pytest.raises(InputError, match="expected the ADE20K layout"):
        ADE20KDataset(tmp_path / "nowhere")
    with pytest.raises(InputError, match="validation: no such folder; expected the ADE20K layout"):
        ADE20KDataset(root, split="validation")
    with pytest.raises(InputError, match="split 'train'"):
        ADE20KDataset(root, split="train")


def test_missing_annotations(root):
    for i in (1, 4):
        (root / "annotations" / "training" / f"synth_0000000{i}.png").unlink()
    with pytest.raises(InputError, match="2 of 6 images have no annotation <name>.png: synth_00000001, synth_00000004"):
        ADE20KDataset(root, resolution=R)
    ds = ADE20KDataset(root, resolution=R, require_seg=False)
    assert len(ds) == 6 and "seg" not in ds[1] and "seg" in ds[0]
    assert ds[1]["img"].shape == (3, R, R)


def test_images_only_without_annotations_folder(tmp_path):
    make_layout(tmp_path, n=2)
    for p in (tmp_path / "annotations" / "training").iterdir():
        p.unlink()
    (tmp_path / "annotations" / "training").rmdir()
    ds = ADE20KDataset(tmp_path, resolution=R, require_seg=False)
    assert len(ds) == 2 and "seg" not in ds[0]


def test_bad_files_raise_errors_naming_them(root):
    ds = ADE20KDataset(root, resolution=R)
    ds.image_paths[3].write_bytes(b"not an image at all")
    with pytest.raises(InputError, match=str(ds.image_paths[3])):
        ds[3]
    Image.fromarray(np.full((30, 40), 200, np.uint8)).save(ds.seg_paths[4])
    with pytest.raises(InputError, match=r"synth_00000004.png: .*200 x 1200 px"):
        ds[4]
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(ds.seg_paths[5])
    with pytest.raises(InputError, match="must match"):
        ds[5]


def test_loader_with_workers_matches_single_process(root):
    ds = ADE20KDataset(root, resolution=R, flip=True, seed=1)
    batches = {}
    for workers in (0, 2):
        loader = make_loader(ds, batch_size=4, shuffle=True, workers=workers, seed=5)
        set_loader_epoch(loader, 1)
        batches[workers] = list(loader)
    assert [b["img"].shape[0] for b in batches[2]] == [4, 2]
    for b0, b2 in zip(batches[0], batches[2]):
        assert b0["name"] == b2["name"] and b0["index"].tolist() == b2["index"].tolist()
        assert torch.equal(b0["img"], b2["img"]) and torch.equal(b0["seg"], b2["seg"])
        assert b2["seg"].shape[1:] == (R, R) and b2["seg"].dtype == torch.int64
    order = [i for b in batches[0] for i in b["index"].tolist()]
    assert sorted(order) == list(range(6)) and order != list(range(6))
    loader = make_loader(ds, batch_size=4, shuffle=True, seed=5)
    set_loader_epoch(loader, 2)
    assert [i for b in loader for i in b["index"].tolist()] != order
