"""Text edits scored against the synthetic ground truth (bundle mode).

Everything is measured on validation scenes, which the text stage never trains on (it edits codes of the
training split). The synthetic renderer (`bgedit data synth`) writes `DATA/textedit/validation/{scene}__{style}.png`,
the scene re-rendered in the canonical look of each style (the data's style names, e.g. `day, sunset, night,
snow, fog, autumn`), and `metadata.jsonl`, each scene's content and style. Ground-truth scenes are inverted (the
text variant: proposed, else baseline) and edited toward the trained prompts that are style names; pairs whose
style is the scene's own are left out (counted). Each edit setting ("mode": the model's alpha, and with a Text
Encoder alpha = 1, the mapper alone, the comparison of the paper's Fig. 8) gets:

- **trained prompts** (`per_style`, `all`): `closer` (share of pairs where the edit's L2 to the ground truth is
  below the unedited reconstruction's), both mean L2s, `improvement` (mean of l2_recon - l2_edit), `clip_gain`
  (mean rise of the CLIP cosine between image and prompt) and `clip_rise` (share of pairs where it rose);
- **layout** (`layout`): the bundle's segmenter reads every trained-prompt edit and its reconstruction; mIoU of
  the edit's map against the reconstruction's over the pixels of all edited pairs. A restyle should keep the
  layout; target >= 0.7 (`TARGETS`). Two references on the same pairs, once (`layout_reference`): the segmenter
  on the ground-truth restyle against its reading of the input scene (`ground_truth`), and on the inversion of
  the ground-truth restyle against the reconstruction (`inverted_ground_truth`: what a perfect restyle scores
  through this inversion and generator);
- **"ocean"** (`ocean`, when "ocean" is a trained prompt): the first `ocean_scenes` validation scenes whose
  metadata says there is no sea are edited with "ocean"; `rise` is the share of images whose water pixel
  fraction (sea + water + river) rises, next to both mean fractions. Target >= 0.8;
- **unseen wordings** (`unseen`): each trained style edited with a wording of it that is not a trained prompt
  but occurs in the captions the CLIP was trained on (`UNSEEN_WORDINGS`), scored against the same ground truth
  on the same pairs; `ratio` = mean improvement of the unseen wordings / of the trained prompts (target >= 0.8;
  null when the trained improvement is not positive). Combined looks ("snowy night") have no ground truth;
- **shuffled control** (`shuffled`): each pair edited with another style's prompt (a fixed derangement of the
  styles), scored against the pair's own style's ground truth: matched prompts should do clearly better.

The edits use the text model's alpha (or 1) and strength, eps from `--seed`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from bgedit_cli.pipelines.evaluation.context import BundleContext
from bgedit_cli.pipelines.evaluation.layout import SegScores
from bgedit_cli.pipelines.evaluation.section import Section, SectionResult, Skipped, Table, fmt
from bgedit_cli.pipelines.evaluation.text_model import COMBINED_NOTE, TARGETS, WATER_CLASSES, WATER_NAMES, \
    model_info
from bgedit_cli.pipelines.evaluation.text_scores import TextPerPair, TextPlan, edit_per_pair, \
    ground_truth_scenes, text_plan, trained_styles

TEXT_COLUMNS = (("pairs", "pairs", "d"), ("closer", "closer to GT than recon ↑", ".2f"),
                ("l2_edit", "L2 edit ↓", ".4f"), ("l2_recon", "L2 recon", ".4f"),
                ("improvement", "L2 recon − edit ↑", "+.4f"), ("clip_gain", "CLIP gain ↑", "+.4f"),
                ("clip_rise", "CLIP rise ↑", ".2f"))
PROMPT_COLUMNS = TEXT_COLUMNS[:5]  # the prompt-wording table: no CLIP columns (the prompts differ per row)
REFERENCES = {"ground_truth": "reference: ground-truth restyle vs input scene",
              "inverted_ground_truth": "reference: inverted ground-truth restyle vs reconstruction"}


# ----------------------------------------------------------------------------------------------------------
# Results.


@dataclasses.dataclass
class EditSummary:
    """Means over pairs of one kind of edit (module doc); everything but `pairs` is None without pairs, the CLIP
    values also where they were not recorded."""

    pairs: int
    closer: float | None = None
    l2_edit: float | None = None
    l2_recon: float | None = None
    improvement: float | None = None
    clip_gain: float | None = None
    clip_rise: float | None = None

    @classmethod
    def of(cls, v: dict[str, torch.Tensor], mask: torch.Tensor | None = None) -> "EditSummary":
        """From per-pair values {d_edit, d_recon[, clip_gain]} ([P] each), those of `mask` if given."""
        if not v:
            return cls(0)
        v = {k: x.double() if mask is None else x.double()[mask] for k, x in v.items()}
        if not v["d_edit"].numel():
            return cls(0)
        d_edit, d_recon = v["d_edit"], v["d_recon"]
        gain = v.get("clip_gain")
        out = cls(int(d_edit.numel()), float((d_edit < d_recon).double().mean()), float(d_edit.mean()),
                  float(d_recon.mean()), float((d_recon - d_edit).mean()))
        if gain is not None:
            out.clip_gain, out.clip_rise = float(gain.mean()), float((gain > 0).double().mean())
        return out

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def cells(self, columns: tuple = TEXT_COLUMNS) -> list[str]:
        return [fmt(getattr(self, k), spec) if getattr(self, k) is not None else "–" for k, _, spec in columns]


@dataclasses.dataclass
class LayoutKept:
    pairs: int
    scores: SegScores
    target: float = TARGETS["layout_miou"]

    def to_json(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "target": self.target, **self.scores.to_json()}


@dataclasses.dataclass
class UnseenWordings:
    per_prompt: dict[str, tuple[str, EditSummary]]  # wording -> (its style, summary)
    all: EditSummary
    trained: EditSummary  # the trained prompts on the same pairs
    ratio: float | None
    ratio_note: str | None = None
    target: float = TARGETS["unseen_ratio"]

    def to_json(self) -> dict[str, Any]:
        return {"per_prompt": {p: {"style": s, **v.to_json()} for p, (s, v) in self.per_prompt.items()},
                "all": self.all.to_json(), "trained": self.trained.to_json(), "ratio": self.ratio,
                "target": self.target} | ({"ratio_note": self.ratio_note} if self.ratio_note else {})


@dataclasses.dataclass
class OceanEdit:
    scenes: int
    rise: float
    water_recon: float
    water_edit: float
    target: float = TARGETS["ocean_rise"]

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "classes": dict(zip(WATER_NAMES, WATER_CLASSES))}


@dataclasses.dataclass
class TextMode:
    """The scores of one edit setting."""

    alpha: float
    per_style: dict[str, EditSummary]
    all: EditSummary
    layout: LayoutKept | Skipped
    unseen: UnseenWordings | Skipped
    shuffled: EditSummary | Skipped
    ocean: OceanEdit | Skipped

    def to_json(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "per_style": {s: v.to_json() for s, v in self.per_style.items()},
                "all": self.all.to_json(), "layout": self.layout.to_json(), "unseen": self.unseen.to_json(),
                "shuffled": self.shuffled.to_json() if isinstance(self.shuffled, Skipped) else
                {"all": self.shuffled.to_json()}, "ocean": self.ocean.to_json()}


@dataclasses.dataclass
class TextResult(SectionResult):
    model: dict[str, Any]  # text_model.model_info
    scenes: int
    styles: list[str]
    seed: int
    strength: float
    same_style_pairs_left_out: int
    unseen_prompts: dict[str, str]
    shuffled_prompts: dict[str, str] | None
    ocean_scenes: int
    layout_reference: dict[str, SegScores] | Skipped
    modes: dict[str, TextMode]
    metadata: str | None
    combined_prompts: str = COMBINED_NOTE

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("model", "scenes", "styles", "seed", "strength", "unseen_prompts",
                                             "same_style_pairs_left_out", "shuffled_prompts", "combined_prompts",
                                             "ocean_scenes", "metadata")}
        ref = self.layout_reference
        return {**out, "targets": dict(TARGETS), "modes": {m: v.to_json() for m, v in self.modes.items()},
                "layout_reference": ref.to_json() if isinstance(ref, Skipped) else {k: v.to_json()
                                                                                     for k, v in ref.items()}}

    def tables(self) -> list[Table]:
        return _score_tables(self) + _wording_tables(self) + _layout_ocean_table(self)


# ----------------------------------------------------------------------------------------------------------
# Statistics over pairs.


def _mode(plan: TextPlan, per_pair: TextPerPair, mode: str, alpha: float | None, default_alpha: float,
          num_classes: int) -> TextMode:
    groups = per_pair.modes[mode]
    matched = {k: v for k, v in groups.get("matched", {}).items() if k != "style"}
    style_of = groups.get("matched", {}).get("style", torch.zeros(0, dtype=torch.long))
    styles, unseen = plan.styles, plan.unseen
    per_style = {s: EditSummary.of(matched, style_of == si) for si, s in enumerate(styles) if (style_of == si).any()}
    summary = EditSummary.of(matched)
    layout: LayoutKept | Skipped
    if plan.segmenter is None:
        layout = Skipped(plan.segmenter_reason or "no segmenter")
    elif not summary.pairs:
        layout = Skipped("no edited pairs")
    else:
        layout = LayoutKept(summary.pairs, SegScores.of(groups["maps"]["edit"], per_pair.pairs["recon"], num_classes))
    unseen_result: UnseenWordings | Skipped
    if not unseen:
        unseen_result = Skipped("every candidate wording of the trained styles is itself a trained prompt")
    else:
        has_unseen = torch.tensor([s in unseen for s in styles])
        u = groups.get("unseen", {})
        u_style = u.get("style", torch.zeros(0, dtype=torch.long))
        u = {k: v for k, v in u.items() if k != "style"}
        trained = EditSummary.of(matched, has_unseen[style_of]) if len(style_of) else EditSummary(0)
        unseen_all = EditSummary.of(u)
        ratio, note = None, None
        if unseen_all.pairs and trained.improvement > 0:
            ratio = unseen_all.improvement / trained.improvement
        elif unseen_all.pairs:
            note = "the trained prompts' mean L2 improvement on these pairs is not positive: no ratio"
        unseen_result = UnseenWordings({unseen[s]: (s, EditSummary.of(u, u_style == si)) for si, s in enumerate(styles)
                                        if s in unseen and (u_style == si).any()}, unseen_all, trained, ratio, note)
    shuffled = (Skipped("one trained style: no other style's prompt to swap in") if plan.perm is None else
                EditSummary.of({k: v for k, v in groups.get("shuffled", {}).items() if k != "style"}))
    ocean: OceanEdit | Skipped
    if not plan.ocean:
        ocean = Skipped(plan.ocean_reason or plan.segmenter_reason or "no scenes")
    else:
        before, after = groups["ocean"]["recon"], groups["ocean"]["edit"]
        ocean = OceanEdit(int(before.numel()), float((after > before).double().mean()), float(before.mean()),
                          float(after.mean()))
    return TextMode(default_alpha if alpha is None else alpha, per_style, summary, layout, unseen_result, shuffled,
                    ocean)


def aggregate(ctx: BundleContext, plan: TextPlan, per_pair: TextPerPair) -> TextResult:
    editor = ctx.text.editor
    num_classes = plan.segmenter.cfg.num_classes if plan.segmenter is not None else 0
    reference: dict[str, SegScores] | Skipped
    if plan.segmenter is None:
        reference = Skipped(plan.segmenter_reason or "no segmenter")
    elif not per_pair.pairs:
        reference = Skipped("no edited pairs")
    else:
        maps = per_pair.pairs
        reference = {"ground_truth": SegScores.of(maps["gt"], maps["input"], num_classes),
                     "inverted_ground_truth": SegScores.of(maps["inverted_gt"], maps["recon"], num_classes)}
    return TextResult(
        model=model_info(ctx.text), scenes=len(plan.scenes), styles=plan.styles, seed=ctx.opts.seed,
        strength=editor.cfg.strength, same_style_pairs_left_out=per_pair.left_out, unseen_prompts=plan.unseen,
        shuffled_prompts=None if plan.perm is None else {s: plan.styles[plan.perm[si]]
                                                         for si, s in enumerate(plan.styles)},
        ocean_scenes=len(plan.ocean), layout_reference=reference,
        modes={mode: _mode(plan, per_pair, mode, alpha, editor.cfg.alpha, num_classes)
               for mode, alpha in plan.modes.items()},
        metadata=plan.metadata)


class TextSection(Section):
    name = "text"
    label = "text edits"

    def requires(self, ctx: BundleContext) -> str | None:
        if ctx.text is None:
            return ctx.text_reason
        folder = ctx.root / "textedit" / "validation"
        if not folder.is_dir():
            return "no DATA/textedit/validation ground truth (synthetic data only)"
        styles = trained_styles(ctx)
        if not styles:
            return (f"no trained prompt is a synthetic style name ({', '.join(ctx.vocabulary.style_names)}); "
                    f"trained: {', '.join(ctx.text.editor.cfg.prompts)}")
        if not ground_truth_scenes(folder, styles):
            return f"{folder}: no {{scene}}__{{style}}.png for the trained styles {', '.join(styles)}"
        return None

    def run(self, ctx: BundleContext) -> TextResult:
        plan = text_plan(ctx)
        return aggregate(ctx, plan, ctx.gather(edit_per_pair(ctx, plan)))


# ----------------------------------------------------------------------------------------------------------
# Tables.


def _score_tables(text: TextResult) -> list[Table]:
    """Per edit setting: the trained style prompts against the ground truth."""
    tables = []
    for mode, scores in text.modes.items():
        rows = [[style] + vals.cells() for style, vals in scores.per_style.items()]
        if scores.all.pairs:
            rows.append(["all"] + scores.all.cells())
        tables.append(Table(f"Text edits vs ground truth: {mode}; {text.scenes} scenes, "
                            f"{text.same_style_pairs_left_out} same-style pairs left out",
                            ["style"] + [label for _, label, _ in TEXT_COLUMNS], rows))
    return tables


def _wording_tables(text: TextResult) -> list[Table]:
    """Per edit setting: unseen wordings and the shuffled-prompt control next to the trained prompts."""
    tables = []
    for mode, scores in text.modes.items():
        rows, notes = [], []
        if scores.all.pairs:
            rows.append(["trained prompts, all styles"] + scores.all.cells(PROMPT_COLUMNS))
        unseen = scores.unseen
        if isinstance(unseen, Skipped):
            notes.append(f"unseen wordings: skipped: {unseen.reason}")
        else:
            if unseen.trained.pairs != scores.all.pairs:  # some styles have no unseen wording
                rows.append(["trained prompts, same pairs as below"] + unseen.trained.cells(PROMPT_COLUMNS))
            rows += [[f'"{prompt}" ({style})'] + vals.cells(PROMPT_COLUMNS)
                     for prompt, (style, vals) in unseen.per_prompt.items()]
            rows.append(["unseen wordings, all"] + unseen.all.cells(PROMPT_COLUMNS))
            if unseen.ratio is not None:
                notes.append(f"unseen / trained mean L2 improvement: {unseen.ratio:.2f} (target ≥ {unseen.target:g})")
            elif unseen.ratio_note:
                notes.append(f"unseen / trained: {unseen.ratio_note}")
        if isinstance(scores.shuffled, Skipped):
            notes.append(f"shuffled prompts: skipped: {scores.shuffled.reason}")
        else:
            rows.append(["shuffled prompts (control)"] + scores.shuffled.cells(PROMPT_COLUMNS))
            pairs = ", ".join(f"{a} → {b}" for a, b in (text.shuffled_prompts or {}).items())
            notes.append(f"shuffled prompts: each pair edited with another style's prompt ({pairs}), scored against "
                         "its own style's ground truth; matched prompts should do clearly better")
        notes.append(f"combined prompts: {text.combined_prompts}")
        tables.append(Table(f"Text edits, prompt wordings vs ground truth: {mode}", ["prompts"] +
                            [label for _, label, _ in PROMPT_COLUMNS], rows, notes))
    return tables


def _layout_ocean_table(text: TextResult) -> list[Table]:
    """One table over the edit settings: the layout kept and the "ocean" edit, with the layout references."""
    rows, notes = [], []
    for mode, scores in text.modes.items():
        cells = [mode]
        layout, ocean = scores.layout, scores.ocean
        if isinstance(layout, Skipped):
            cells += ["n/a"] * 3
            if f"layout: {layout.reason}" not in notes:
                notes.append(f"layout: {layout.reason}")
        else:
            cells += [fmt(layout.scores.miou, ".3f"), fmt(layout.scores.pixel_acc, ".3f"), str(layout.pairs)]
        if isinstance(ocean, Skipped):
            cells += ["n/a"] * 4
            if f'"ocean": {ocean.reason}' not in notes:
                notes.append(f'"ocean": {ocean.reason}')
        else:
            cells += [fmt(ocean.rise, ".2f"), fmt(ocean.water_recon, ".3f"), fmt(ocean.water_edit, ".3f"),
                      str(ocean.scenes)]
        rows.append(cells)
    if not rows:
        return []
    if not isinstance(text.layout_reference, Skipped):
        pairs = rows[0][3] if rows[0][3] != "n/a" else ""
        rows += [[REFERENCES[k], fmt(v.miou, ".3f"), fmt(v.pixel_acc, ".3f"), pairs] + [""] * 4
                 for k, v in text.layout_reference.items()]
        notes.append("references: the segmenter on each pair's ground-truth restyle against its reading of the "
                     "input scene (how style-invariant it is on true renders), and on the inversion of that "
                     "restyle against the reconstruction (what a perfect restyle scores through this inversion "
                     "and generator)")
    notes.insert(0, f"layout: the segmenter's map of each trained-prompt edit vs its map of the reconstruction "
                    f"(mIoU over all edited pairs; target ≥ {TARGETS['layout_miou']:g}); \"ocean\": validation scenes "
                    f"without sea, share whose water pixel fraction (sea + water + river) rises (target ≥ "
                    f"{TARGETS['ocean_rise']:g}), and the mean fractions")
    return [Table("Text edits: layout kept and \"ocean\"",
                  ["setting", "layout mIoU ↑", "layout pixel acc ↑", "pairs", "ocean: water rises ↑", "water recon",
                   "water edit", "scenes"], rows, notes)]
