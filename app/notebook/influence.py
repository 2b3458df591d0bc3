"""Influence measures on notebook results (issue 15): ``result.contributions()``, ``result.relevance(target)``
and ``result.curves(target)``, the same functions as /influence and ``python -m app export`` (models/influence/run.py).

Text: ``target`` is the second sentence (BERT-family encoders: the pair's cosine) or the decoder row whose
decoded character is explained (the date model). Vision: ``target`` is a patch index (row-major) or None for
the [CLS] feature; the curves follow [CLS].
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from models.influence import run
from models.text.analysis import HFTextModel


class TextInfluence:
    """Mixed into :class:`app.notebook.text.TextResult` (needs ``self.model`` and ``self.analysis``)."""

    model: Any
    analysis: Any

    def _eager(self):
        """TextResult.eager_attention (a Hugging Face model on its eager path, whose probabilities exist)."""
        return self.eager_attention() if isinstance(self.model, HFTextModel) else nullcontext()

    def contributions(self) -> run.Contributions:
        """ALTI per layer (``.layers`` (L, T, T)) and rolled out (``.rollout``), over the encoder's tokens."""
        with self._eager():
            return run.text_contributions(self.model, self.analysis)

    def _split(self, target: str | int | None) -> tuple[str | None, int]:
        return (target, 0) if isinstance(target, str) or target is None else (None, int(target))

    def relevance(self, target: str | int | None = None) -> run.Relevance:
        """Chefer et al. 2021 relevancy: ``.relevance`` beside ``.rollout`` and ``.attention`` (n,)."""
        pair, step = self._split(target)
        with self._eager():
            return run.text_relevance(self.model, self.analysis, pair, step)

    def curves(self, target: str | int | None = None, steps: int = 10) -> run.CurvesResult:
        """Deletion and insertion curves of the three maps of :meth:`relevance` (``.curves``)."""
        pair, step = self._split(target)
        with self._eager():
            rel = run.text_relevance(self.model, self.analysis, pair, step)
            return run.text_curves(self.model, self.analysis, rel, pair, steps)


class VisionInfluence:
    """Mixed into :class:`app.notebook.vision.VisionResult` (needs ``self.vm`` and ``self.analysis``)."""

    vm: Any
    analysis: Any

    def contributions(self) -> run.Contributions:
        """ALTI contributions to [CLS] per layer (``.layers`` (L, P)) and rolled out (``.rollout``)."""
        return run.vision_contributions(self.vm, self.analysis)

    def relevance(self, target: int | None = None) -> run.Relevance:
        """Relevancy of the [CLS] feature (``target`` None) or of patch ``target``'s feature, (P,) maps."""
        return run.vision_relevance(self.vm, self.analysis, target)

    def curves(self, steps: int = 10) -> run.CurvesResult:
        """Deletion and insertion curves of the [CLS] feature for relevancy, rollout and attention."""
        return run.vision_curves(self.vm, self.analysis, run.vision_relevance(self.vm, self.analysis), steps)
