"""Measurements that look past the attention weights (issue 15): contributions (ALTI), gradient-weighted
relevancy (Chefer et al. 2021) and deletion/insertion curves. Framework-free: torch and numpy only.

- :mod:`models.influence.trace`: one forward pass that records, per attention layer, what the measures need
  (the block's input, each head's value-output vectors, the probabilities, the block's real output), for
  BERT-family encoders (Hugging Face), the paper Transformer's encoder (the date model) and timm ViTs;
- :mod:`models.influence.alti`: contributions per layer and their rollout;
- :mod:`models.influence.relevancy`: Chefer's update rule and the targets of the shipped models;
- :mod:`models.influence.curves`: deletion and insertion curves of any ranking.
"""
