"""Measurements that look past the attention weights (issue 15). Framework-free: torch and numpy only.

- :mod:`models.influence.trace`: one forward pass that records, per attention layer, what the measures need
  (the block's input, each head's value-output vectors, the probabilities, the block's real output), for
  BERT-family encoders (Hugging Face), the paper Transformer's encoder (the date model) and timm ViTs;
- :mod:`models.influence.alti`: contributions per layer and their rollout;
- :mod:`models.influence.relevancy`: Chefer's update rule and the targets of the shipped models;
- :mod:`models.influence.curves`: deletion and insertion curves of any ranking;
- :mod:`models.influence.ablation`: zero- or mean-ablate any set of heads (Michel et al. 2019) on a timm ViT,
  a Hugging Face BERT-like encoder or the paper Transformer; :mod:`~models.influence.outcomes`: the outputs
  each model is judged by; :mod:`~models.influence.ablation_run`: one ablated run beside the intact one;
- :mod:`models.influence.importance`: the head-importance map (layers x heads) over a bundled evaluation set;
- :mod:`models.influence.logit_lens`: the logit lens of the date decoder, per layer and per head.
"""
