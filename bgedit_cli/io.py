"""Images, seg maps and arrays <-> tensors: reading, resizing rules, palettes, writing (atomically).

Images out: PNG, uint8 = round((clamp(x, -1, 1) + 1) * 127.5) computed in float32 (round half to even).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from bgedit_cli.data.ade20k_classes import IGNORE_COLOR, IGNORE_ID, NUM_CLASSES, PALETTE
from bgedit_cli.errors import InputError
from bgedit_cli.fileio import atomic_output


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] float in [-1, 1] -> [N, H, W, C] uint8."""
    x = ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def image_grid(img: torch.Tensor, cols: int) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> one uint8 HWC grid, `cols` images a row, filled row by row (black padding)."""
    pixels = to_uint8(img)
    n, h, w, c = pixels.shape
    grid = np.zeros((math.ceil(n / cols) * h, cols * w, c), dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[r * h:(r + 1) * h, k * w:(k + 1) * w] = pixels[i]
    return grid


def image_columns(columns: Sequence[torch.Tensor]) -> np.ndarray:
    """Columns side by side, each [N, C, H, W] in [-1, 1] (e.g. inputs | reconstructions) -> one uint8 HWC grid
    of N rows, sample i in row i."""
    rows = torch.stack([c.detach().cpu() for c in columns], dim=1)  # (N, columns, C, H, W)
    return image_grid(rows.flatten(0, 1), cols=len(columns))


def save_png(path: Path, pixels: np.ndarray, force: bool = False) -> None:
    """Write one HWC (or HW) uint8 array as PNG, atomically."""
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    with atomic_output(path, force=force) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def save_npy(path: Path, array: np.ndarray, force: bool = False) -> None:
    with atomic_output(path, force=force) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def load_npy(path: Path, *, what: str = "array") -> np.ndarray:
    """Read a numeric .npy file (no pickles) as float32; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy {what} ({str(exc)[:120]}).") from None
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{path}: the {what} must be numeric, found dtype {getattr(arr, 'dtype', '?')}.")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError(f"{path}: the {what} contains NaN or infinite values.")
    return arr


# ---------------------------------------------------------------------------------------------------------------
# Images in.
#
# Any PNG/JPEG/WebP (RGB, RGBA, LA, grayscale, palette, 16-bit grayscale, CMYK) is read with its EXIF orientation
# applied; transparent pixels are composited on white. Resizing: the largest centred square is cut out and
# resized to R x R in one step (PIL `resize(box=...)`, antialiased bicubic for images, nearest for seg maps) --
# the same as "shorter side to R, then centre crop", without rounding the longer side first. An image and its map
# of the same size get the same crop box, so they stay aligned.

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _read_error(path: Path, what: str, exc: BaseException) -> InputError:
    detail = " ".join(str(exc).split())[:160] or type(exc).__name__
    return InputError(f"{path}: not a readable {what} ({detail}).")


def _open_pil(path: Path, what: str):
    """Open and fully decode an image file; any failure is an InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file." if not path.exists() else f"{path}: is not a file.")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError,
            EOFError) as exc:
        raise _read_error(path, what, exc) from None
    return img


def open_image(path: Path):
    """Read an image file as an RGB PIL image: EXIF orientation applied, transparency composited on white."""
    img = _open_pil(path, "image")
    try:
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):  # 16-bit / float grayscale
            arr = np.asarray(img, dtype=np.float32)
            if arr.max(initial=0) > 255:
                arr = arr * (255.0 / 65535.0)
            img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), mode="L")
        if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        img = img.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise _read_error(Path(path), "image", exc) from None
    return img


def resize_center_crop(image, resolution: int, resample):
    """Cut the largest centred square out of a PIL image and resize it to `resolution` x `resolution`."""
    w, h = image.size
    if (w, h) == (resolution, resolution):
        return image.copy()
    s = min(w, h)
    box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
    return image.resize((resolution, resolution), resample, box=box, reducing_gap=None)


def image_to_tensor(image) -> torch.Tensor:
    """RGB PIL image -> float32 [3, H, W] in [-1, 1]."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous().div_(127.5).sub_(1.0)


def load_image(path: Path, resolution: int) -> torch.Tensor:
    """Image file -> float32 [3, resolution, resolution] in [-1, 1] (see the resize rule above)."""
    return image_to_tensor(resize_center_crop(open_image(path), resolution, Image.BICUBIC))


# ---------------------------------------------------------------------------------------------------------------
# Segmentation maps.
#
# A seg map is an [H, W] uint8 array of ADE20K class ids: 0 = other, 1..150 = objects, 255 = ignore.
# Files in: index PNGs (mode L, P -- the palette indices, not their colours --, I, I;16) or RGB/RGBA PNGs drawn in
# the ADE20K palette (`bgedit_cli.data.ade20k_classes.PALETTE`; white = ignore; fully transparent = ignore).
# Files out: mode-L index PNGs (`save_seg`) or palette RGB (`colorize_seg`).

_MAX_LISTED = 5


def _count_list(values: np.ndarray, counts: np.ndarray, fmt) -> str:
    order = np.lexsort((values, -counts))[:_MAX_LISTED]
    listed = ", ".join(f"{fmt(values[i])} x {int(counts[i])} px" for i in order)
    return listed + (", ..." if len(values) > _MAX_LISTED else "")


def check_seg_ids(ids: np.ndarray, name: str | Path = "segmentation map") -> np.ndarray:
    """Return `ids` as uint8 after checking every value is 0..150 or 255; else an InputError naming them."""
    ids = np.asarray(ids)
    if ids.dtype == np.uint8:
        bad = (ids >= NUM_CLASSES) & (ids != IGNORE_ID)
    else:
        bad = (ids < 0) | ((ids >= NUM_CLASSES) & (ids != IGNORE_ID))
    if bad.any():
        values, counts = np.unique(ids[bad], return_counts=True)
        raise InputError(f"{name}: {len(values)} value(s) that are not ADE20K class ids (0..{NUM_CLASSES - 1}, "
                         f"{IGNORE_ID} = ignore): {_count_list(values, counts, lambda v: str(int(v)))}.")
    return ids.astype(np.uint8, copy=False)


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


@functools.lru_cache(maxsize=1)
def _color_table() -> tuple[np.ndarray, np.ndarray]:
    """Sorted packed colours (R << 16 | G << 8 | B) and their ids: the 151 palette colours and ignore."""
    keys = np.concatenate([_pack_rgb(PALETTE), _pack_rgb(np.array([IGNORE_COLOR]))])
    ids = np.concatenate([np.arange(len(PALETTE)), [IGNORE_ID]]).astype(np.uint8)
    order = np.argsort(keys)
    return keys[order], ids[order]


def decode_seg_colors(rgb: np.ndarray, name: str | Path = "segmentation map") -> np.ndarray:
    """[H, W, 3] uint8 colours in the ADE20K palette -> [H, W] uint8 ids; unknown colours are an InputError."""
    keys, key_ids = _color_table()
    packed = _pack_rgb(rgb)
    pos = np.clip(np.searchsorted(keys, packed), 0, len(keys) - 1)
    known = keys[pos] == packed
    if not known.all():
        values, counts = np.unique(packed[~known], return_counts=True)
        fmt = lambda v: f"({v >> 16 & 255}, {v >> 8 & 255}, {v & 255})"  # noqa: E731
        grey = all((v >> 16 & 255) == (v >> 8 & 255) == (v & 255) for v in values.tolist())
        hint = (" It looks like class ids stored as grey RGB: save the map as a single-channel (mode L) PNG."
                if grey else " Give an index PNG (class ids 0..150) or an RGB map in the ADE20K palette.")
        raise InputError(f"{name}: {len(values)} unknown colour(s) not in the ADE20K palette: "
                         f"{_count_list(values, counts, fmt)}.{hint}")
    return key_ids[pos]


def load_seg(path: Path, resolution: int | None = None) -> np.ndarray:
    """Seg map file -> [H, W] uint8 ids (0..150, 255 = ignore); with `resolution`, resized (nearest) and cropped
    to resolution x resolution by the same rule as images."""
    path = Path(path)
    img = _open_pil(path, "segmentation map")
    mode = img.mode
    if mode in ("L", "P") or mode.startswith("I"):
        ids = check_seg_ids(np.asarray(img), path)
    elif mode in ("RGB", "RGBA"):
        pixels = np.asarray(img)
        rgb = pixels[..., :3]
        if mode == "RGBA":  # fully transparent = ignore, whatever colour is stored under it
            rgb = np.where(pixels[..., 3:] == 0, np.array(IGNORE_COLOR, dtype=np.uint8), rgb)
        ids = decode_seg_colors(rgb, path)
    else:
        raise InputError(f"{path}: segmentation maps must be index PNGs (mode L, P or I) or RGB in the ADE20K "
                         f"palette, not mode {mode}.")
    if resolution is not None:
        ids = np.asarray(resize_center_crop(Image.fromarray(ids, mode="L"), resolution, Image.NEAREST))
    return ids


def check_seg_size(seg: np.ndarray | torch.Tensor, resolution: int | tuple[int, int], path: str | Path) -> None:
    """InputError unless the map's last two dims are `resolution` (an int for square, or (H, W))."""
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    sh, sw = tuple(seg.shape[-2:])
    if (sh, sw) != (h, w):
        raise InputError(f"{path}: segmentation map is {sw}x{sh} (WxH) but {w}x{h} is needed here; "
                         f"give a map of the image's size.")


def colorize_seg(ids: np.ndarray | torch.Tensor) -> np.ndarray:
    """[..., H, W] ids -> [..., H, W, 3] uint8 ADE20K palette colours (255 = ignore -> white)."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    ids = check_seg_ids(ids)
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(PALETTE)] = PALETTE
    lut[IGNORE_ID] = IGNORE_COLOR
    return lut[ids]


def save_seg(path: Path, ids: np.ndarray | torch.Tensor, force: bool = False) -> None:
    """Write [H, W] class ids as a mode-L index PNG, atomically."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    ids = check_seg_ids(ids)
    if ids.ndim != 2:
        raise InputError(f"{path}: a segmentation map must be 2-D [H, W], got shape {list(ids.shape)}.")
    save_png(path, np.ascontiguousarray(ids), force=force)


def one_hot_seg(ids: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Class ids [N, H, W] -> float32 [N, num_classes, H, W] ([H, W] -> [num_classes, H, W]); 255 -> all zeros."""
    if ids.ndim not in (2, 3):
        raise ValueError(f"one_hot_seg: expected ids of shape [N, H, W] or [H, W], got {list(ids.shape)}")
    x = ids.long() if ids.ndim == 3 else ids.long()[None]
    valid = x != IGNORE_ID
    if ((x < 0) | ((x >= num_classes) & valid)).any():
        raise InputError(f"segmentation ids must be 0..{num_classes - 1} or {IGNORE_ID} (ignore).")
    out = torch.zeros(x.shape[0], num_classes, *x.shape[1:], dtype=torch.float32, device=x.device)
    out.scatter_(1, x.masked_fill(~valid, 0)[:, None], valid[:, None].float())
    return out if ids.ndim == 3 else out[0]
