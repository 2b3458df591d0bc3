"""Attention Atlas in a notebook: the web app's views, inline, for models you already hold in Python.

Usage::

    from app.notebook import show_vision, show_text

    r = show_vision(my_timm_vit, "cat.jpg")        # any timm ViT-family model object, or "dinov2_vits14"
    r                                               # model view grid, overlay, patch probing, rollout
    r.maps.shape, r.distance.shape                  # (L, H, N, N) attention, (L, H) mean attention distance

    t = show_text(hf_model, tokenizer, "The animal didn't cross the street because it was too tired.")
    t                                               # head view, model view, matrix, per-head statistics
    t.maps, t.stats, t.distance

``model`` is a model object (timm ViT-family for vision; a Hugging Face encoder, decoder-only or
encoder-decoder model for text; our paper Transformer with its character tokenizer) or one of the app's
model ids, loaded through the same registry as the server (``app.settings``: offline defaults plus the
operator's ``ATLAS_EXTRA_*`` entries). In a notebook the user is the operator: objects passed in are never
checked against the allowlist.

What the attention is: the post-softmax probabilities of every head ("Attention Is All You Need",
Section 3.2.1), recorded with :func:`models.vision.capture.capture_attention` (timm) or Hugging Face's
``output_attentions`` on the eager attention path (text); see those modules.

Layout: ``vision.py`` (:func:`show_vision`), ``text.py`` (:func:`show_text`), ``html.py`` (the self-contained
output), ``models.py`` (the one loader of model ids). The numbers are those of ``models/vision/views.py`` and
``models/text/views.py``, the functions the web services and the export command call, and the payloads are
the web routes' response schemas, so the page modules under ``static/js`` read one shape.

The returned objects render as self-contained HTML (``app/notebook/html.py``: the web pages' own ES modules
inlined, data as compact typed arrays), so a saved notebook still draws without a server. Only what the views
draw goes in:

- vision: every [CLS] map (L, H, P) float32, the rollout for 3 head fusions x 3 discard ratios, the photo
  as PNG, and for patch probing each query patch's row over the patches as uint8 scaled to the row maximum
  (L x H x P^2 bytes: 4.7 MB for DINOv2 ViT-S/14 at 224 px), for as many layers as ``max_mb`` allows;
- text: thumbnails and statistics of every layer and head, and the maps at float32 when small, uint8
  (1/255 steps) while they fit ``max_mb``, otherwise each query's ``top_k`` strongest keys per head and
  layer (as the server's head view of a long input). The numbers at full precision are on the result
  (``.maps``), never lost.
"""

from __future__ import annotations

from app.notebook.features import features_pca_set
from app.notebook.text import TextResult, show_text
from app.notebook.vision import VisionResult, load_image, show_vision
from models.vision.views import head_stats as vision_stats

__all__ = [
    "TextResult",
    "VisionResult",
    "features_pca_set",
    "load_image",
    "show_text",
    "show_vision",
    "vision_stats",
]
