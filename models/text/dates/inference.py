"""Inference with the date model: free-form date strings -> predicted ISO strings, by greedy decoding."""

from __future__ import annotations

from models.text.dates.forms import TARGET_LEN
from models.text.dates.tokenizer import CharTokenizer, encode_batch
from models.transformer import Transformer, greedy_decode


def normalise_dates(
    model: Transformer, tok: CharTokenizer, texts: list[str], batch_size: int = 512
) -> list[str]:
    """Greedy-decode each text to its predicted ISO string."""
    device = next(model.parameters()).device
    preds: list[str] = []
    for i in range(0, len(texts), batch_size):
        src = encode_batch(tok, texts[i : i + batch_size]).to(device)  # (B, Ts)
        ys, _ = greedy_decode(model, src, tok.bos_id, tok.eos_id, TARGET_LEN + 1, return_attention=False)
        preds.extend(tok.decode(row[1:]) for row in ys)
    return preds
