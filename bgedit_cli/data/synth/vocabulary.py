"""The words and labels a dataset uses, declared by the data itself in `ROOT/vocabulary.json`.

`bgedit data synth` writes the file beside `metadata.jsonl`. Evaluation and training read it with
`read_vocabulary(ROOT)` instead of importing the renderer's tables, so a later change to the renderer cannot
change what an existing dataset is scored against. A folder without the file (written before the file existed,
or not by `bgedit data synth`, e.g. ADE20K) gets the renderer's current tables: that fallback is made here, in
`read_vocabulary`, and nowhere else.

vocabulary.json (a JSON object; `format_version` 1):

    style_names      the named looks: metadata `style.name` values, `textedit/` ground-truth suffixes
    style_phrases    look -> [[adjective, phrase after the subject], ...], its caption wordings, canonical first
    style_words      look -> the words that name it in captions
    content_values   categorical content factor -> the values scenes are drawn from (`ridges`: their kinds)
    content_words    content factor -> value -> the words that name it in captions
    class_ids        label name -> ADE20K class id in `annotations/` (data/ade20k_classes.py)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bgedit_cli.data.synth.captions import CONTENT_WORDS, STYLE_PHRASES, STYLE_WORDS
from bgedit_cli.data.synth.content import CONTENT_VALUES
from bgedit_cli.data.synth.geometry import CLASS_IDS
from bgedit_cli.data.synth.style import STYLE_NAMES
from bgedit_cli.errors import InputError
from bgedit_cli.fileio import atomic_output

VOCABULARY_FILE = "vocabulary.json"
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """A dataset's words and labels (fields as in the module docstring); `source` says where they were read
    (the file, or the renderer's tables for a folder without one) and takes no part in comparisons."""

    style_names: tuple[str, ...]
    style_phrases: dict[str, tuple[tuple[str, str], ...]]
    style_words: dict[str, tuple[str, ...]]
    content_values: dict[str, tuple[Any, ...]]
    content_words: dict[str, dict[str, tuple[str, ...]]]
    class_ids: dict[str, int]
    source: str = dataclasses.field(default="renderer", compare=False)

    def to_json(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "source"}
        return {"format_version": FORMAT_VERSION, **fields}

    @classmethod
    def from_json(cls, data: Any, source: str) -> Vocabulary:
        """The inverse of `to_json` (lists back to tuples); a malformed object is an InputError naming `source`."""
        version = data.get("format_version") if isinstance(data, dict) else None
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise InputError(f"{source}: vocabulary format_version {version}; this bgedit reads {FORMAT_VERSION} "
                             "and older (update bgedit).")
        try:
            if not isinstance(version, int):
                raise KeyError("format_version")
            return cls(
                style_names=tuple(_strings(data["style_names"])),
                style_phrases={k: tuple((str(a), str(b)) for a, b in v) for k, v in data["style_phrases"].items()},
                style_words={k: tuple(_strings(v)) for k, v in data["style_words"].items()},
                content_values={k: tuple(v) for k, v in data["content_values"].items()},
                content_words={f: {k: tuple(_strings(w)) for k, w in v.items()}
                               for f, v in data["content_words"].items()},
                class_ids={k: int(v) for k, v in data["class_ids"].items()},
                source=source)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{source}: not a dataset vocabulary ({type(exc).__name__}: {exc}); expected the "
                             f"JSON object that `bgedit data synth` writes, or delete it to use the renderer's "
                             "vocabulary.") from None


def _strings(items: Any) -> list[str]:
    if isinstance(items, str) or not all(isinstance(x, str) for x in items):
        raise TypeError(f"expected a list of strings, got {items!r}")
    return list(items)


def renderer_vocabulary() -> Vocabulary:
    """The renderer's own tables (what `bgedit data synth` writes now), as fresh containers."""
    return Vocabulary(style_names=STYLE_NAMES, style_phrases=dict(STYLE_PHRASES), style_words=dict(STYLE_WORDS),
                      content_values=dict(CONTENT_VALUES),
                      content_words={f: dict(v) for f, v in CONTENT_WORDS.items()}, class_ids=dict(CLASS_IDS))


def read_vocabulary(data_dir: str | Path) -> Vocabulary:
    """`DATA/vocabulary.json`, or, for a folder without one, the renderer's vocabulary (`source` says which)."""
    root = Path(data_dir)
    path = root / VOCABULARY_FILE
    if not path.is_file():
        if not root.is_dir():
            raise InputError(f"{root}: no such data folder.")
        return dataclasses.replace(renderer_vocabulary(), source=f"renderer (no {VOCABULARY_FILE} in {root})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the dataset vocabulary ({exc}).") from None
    return Vocabulary.from_json(data, source=str(path))


def write_vocabulary(data_dir: Path, vocabulary: Vocabulary) -> Path:
    """Write `DATA/vocabulary.json` atomically (replacing an older one); returns its path."""
    path = Path(data_dir) / VOCABULARY_FILE
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(vocabulary.to_json(), indent=1) + "\n", encoding="utf-8")
    return path
