"""Measurements that look past the attention weights (issue 15): does a head matter, what does it write?

One pure function per capability, torch/numpy only (never the web layer):

- :mod:`~models.influence.ablation`: zero- or mean-ablate any set of heads (Michel et al. 2019) on a timm
  ViT, a Hugging Face BERT-like encoder or the paper Transformer, and the outputs each model is judged by;
- :mod:`~models.influence.importance`: the head-importance map (layers x heads) over a bundled evaluation set;
- :mod:`~models.influence.logit_lens`: the logit lens of the date decoder, per layer and per head.
"""
