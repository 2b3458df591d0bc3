"""Text explorer benchmark, measured in one run:

1. capture vs plain forward, as a ratio, for all-MiniLM-L6-v2 and for our date Transformer at 16 / 128 / 512
   source tokens. Capture = eager attention with ``output_attentions=True`` (HF) or ``need_weights=True`` (the
   paper Transformer, explicit softmax); plain = the fused SDPA kernel, no probabilities. The date model's
   decoder side is 11 tokens ("<s>YYYY-MM-DD"); its sinusoidal table is extended to 512 (Section 3.5).
2. response bytes: our first response (``POST /api/text/analyze``) and the bytes needed to reach every
   head (that response + every other layer fetched once), vs the HTML that bertviz 1.4.1 writes for the
   same model and sentence (``head_view`` / ``model_view`` with ``html_action="return"``). bertviz is a
   benchmark-only dependency: ``.venv/bin/pip install --no-deps bertviz==1.4.1 ipython``.

3. long text (issue 8 section 3, in ``bench/text_long.py``), ~500 MiniLM tokens: first response bytes before (the whole first layer as
   uint8) and after (top-k head-view lines), server time split into forward and views, uncached and cached,
   the CPU time behind it (process CPU-seconds of the uncached POST, and the views' own CPU time in one
   thread: on a shared, loaded machine wall time stretches with the load and CPU time much less), and first
   paint in headless Chromium (Playwright, ``/usr/bin/chromium``) from Enter to the head view, both by
   Playwright's clock and by the page's own performance marks (``static/js/text/main.js``: "tx-run" on
   Enter, "tx-view" when the view is in the DOM, "tx-painted" after the next frame).

Targets: capture <= 1.5x plain; >= 20x fewer bytes than bertviz at 128 tokens with every head reachable;
long text: first response <= 1 MB, <= 0.5 s server time, first paint <= 1.5 s.

    .venv/bin/python bench/text.py --device cpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import interleaved  # noqa: E402
from bench.text_long import long_report, minilm_settings, text_with_tokens  # noqa: E402
from models.text.analysis import DATES, MINILM, TextModelSpec, TokenSeq, load_text_model  # noqa: E402
from models.text.dates import DEFAULT_CHECKPOINT  # noqa: E402


def seq_of(n: int, first: int, fill: int, last: int) -> TokenSeq:
    ids = [first] + [fill] * (n - 2) + [last]
    return TokenSeq(ids=ids, tokens=[""] * n, special=[False] * n, word_ids=[None] * n)


@torch.inference_mode()
def ratio_minilm(device: torch.device, lengths: list[int], repeats: int) -> list[tuple]:
    eager = load_text_model(MINILM, device, "eager")
    sdpa = load_text_model(MINILM, device, "sdpa")
    out = []
    for n in lengths:
        src = eager.tokenize(text_with_tokens(eager, n))
        assert len(src) == n, (len(src), n)
        t = interleaved(
            {
                "plain": lambda s=src: sdpa.forward(s, capture=False),
                "capture": lambda s=src: eager.forward(s, capture=True),
                "capture+copy": lambda s=src: [
                    a.cpu().numpy() for a in eager.forward(s, capture=True).attentions
                ],
            },
            repeats,
            device,
        )
        out.append(("all-MiniLM-L6-v2", n, t))
    return out


@torch.inference_mode()
def ratio_dates(device: torch.device, lengths: list[int], repeats: int) -> list[tuple]:
    if DEFAULT_CHECKPOINT.exists():
        spec, name = TextModelSpec(**{**DATES.__dict__, "max_tokens": max(lengths)}), "dates (checkpoint)"
    else:  # same shape as models/text/train_dates.py's TrainConfig, random weights: timing does not depend on them
        cfg = dict(d_model=128, n_heads=8, d_ff=512, n_enc_layers=3, n_dec_layers=3, max_len=64, dropout=0.0)
        spec = TextModelSpec(
            "dates-random", "seq2seq", "random", "dates", max_tokens=max(lengths), config=cfg
        )
        name = "dates (random, checkpoint missing)"
    m = load_text_model(spec, device)
    tok = m.tokenizer
    tgt = [tok.bos_id, *tok.encode("2022-03-18")]
    digit = tok.stoi["1"]
    out = []
    for n in lengths:
        src = seq_of(n, digit, digit, digit)
        t = interleaved(
            {
                "plain": lambda s=src: m.forward(s, tgt, capture=False),
                "capture": lambda s=src: m.forward(s, tgt, capture=True),
                "capture+copy": lambda s=src: [
                    b.cpu().numpy() for b in vars(m.forward(s, tgt, capture=True)[1]).values()
                ],
            },
            repeats,
            device,
        )
        out.append((name, n, t))
    return out


def bytes_vs_bertviz(n: int) -> dict:
    from bertviz import head_view, model_view
    from fastapi.testclient import TestClient

    from app.main import create_app

    model = load_text_model(MINILM)
    text = text_with_tokens(model, n)
    analysis = model.analyze(text)
    attn = analysis.blocks["encoder_self"]  # (L, H, T, T)
    tokens = analysis.source.tokens
    attention = tuple(torch.from_numpy(a[None]) for a in attn)  # bertviz wants L x (1, H, T, T)
    bv_head = len(head_view(attention, tokens, html_action="return").data.encode())
    bv_model = len(model_view(attention, tokens, html_action="return").data.encode())
    with TestClient(create_app(minilm_settings()), base_url="http://localhost") as c:
        r = c.post("/api/text/analyze", json={"text": text})
        r.raise_for_status()
        first = len(r.content)
        j = r.json()
        aid, layers = j["analysis_id"], j["blocks"][0]["layers"]
        rest = (
            0
            if j["inline"]
            else sum(  # long inputs: the first response has lines, every layer on demand
                len(
                    c.get(
                        f"/api/text/analysis/{aid}/layer", params={"kind": "encoder_self", "layer": layer}
                    ).content
                )
                for layer in range(layers)
            )
        )
        head = len(
            c.get(
                f"/api/text/analysis/{aid}/head", params={"kind": "encoder_self", "layer": 0, "head": 0}
            ).content
        )
    return dict(tokens=len(tokens), bertviz_head=bv_head, bertviz_model=bv_model, first=first, all_heads=first + rest,
                one_head_f32=head, inline=j["inline"])  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--lengths", default="16,128,512")
    ap.add_argument("--bytes-tokens", type=int, default=128)
    ap.add_argument("--skip-bytes", action="store_true")
    ap.add_argument("--skip-ratio", action="store_true", help="skip the capture / plain forward ratios")
    ap.add_argument("--long-tokens", type=int, default=500, help="issue 8 section 3: the long-text size")
    ap.add_argument("--long-repeats", type=int, default=3)
    ap.add_argument("--skip-long", action="store_true")
    ap.add_argument("--skip-paint", action="store_true", help="skip the headless Chromium first paint")
    ap.add_argument(
        "--screenshot", default=None, help="PNG path: the long text's head view after first paint"
    )
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    lengths = [int(x) for x in args.lengths.split(",")]
    dev = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"# bench/text.py on {dev}, torch {torch.__version__}; median of {args.repeats} interleaved repeats\n"
    )
    if not args.skip_long:
        long_report(args)
    if args.skip_ratio:
        lengths = []
    else:
        print(
            f"{'model':36s} {'tokens':>6s} {'plain ms':>9s} {'capture ms':>11s} {'ratio':>6s} {'+copy ratio':>11s}"
        )
    for name, n, t in (ratio_minilm(device, lengths, args.repeats) if lengths else []) + (
        ratio_dates(device, lengths, args.repeats) if lengths else []
    ):
        r, rc = t["capture"] / t["plain"], t["capture+copy"] / t["plain"]
        flag = "ok" if r <= 1.5 else "OVER 1.5x"
        print(
            f"{name:36s} {n:6d} {t['plain'] * 1e3:9.2f} {t['capture'] * 1e3:11.2f} {r:6.2f} {rc:11.2f}  {flag}"
        )
    if args.skip_bytes:
        return
    b = bytes_vs_bertviz(args.bytes_tokens)
    print(f"\nresponse bytes, all-MiniLM-L6-v2 (6 layers x 12 heads), {b['tokens']} tokens:")
    print(f"  bertviz head_view HTML       {b['bertviz_head']:>12,d}")
    print(f"  bertviz model_view HTML      {b['bertviz_model']:>12,d}")
    print(f"  ours, first response         {b['first']:>12,d}  (inline={b['inline']}; thumbnails of every head, "
          "stats, first layer or its top-k lines)")  # fmt: skip
    print(
        f"  ours, every head reachable   {b['all_heads']:>12,d}  (+ every layer fetched once as uint8 when not inline)"
    )
    print(f"  ours, one head at float32    {b['one_head_f32']:>12,d}  (matrix view, on demand)")
    for label, ours in (("first response", b["first"]), ("every head", b["all_heads"])):
        ratio = b["bertviz_head"] / ours
        print(f"  bertviz head_view / ours ({label}): {ratio:.1f}x  {'ok' if ratio >= 20 else 'UNDER 20x'}")


if __name__ == "__main__":
    main()
