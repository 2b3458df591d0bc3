"""Screenshot every page the way a user sees it (headless Debian Chromium), for a look before shipping.

    python scripts/screenshots.py [--base http://127.0.0.1:8000] [--out tests/artifacts/pages]

Needs a running server (``make run``). Each page is loaded under the server's real Content-Security-Policy,
given its first interaction, and saved as PNG. ``vision-queued`` shows the "queued / retrying" banner: its
first analyze call is answered 503 + Retry-After by the browser itself, as a saturated server would.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository's packages
from tests.factories import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (launched as the page tests launch it)

PAGES = [
    ("home", "/", None),
    ("vision", "/vision?sample=astronaut&layer=12&head=1", "canvas"),
    ("vision-rollout", "/vision?sample=chelsea&view=rollout", "canvas"),
    (
        "text",
        "/text?text=The%20animal%20didn%27t%20cross%20the%20street%20because%20it%20was%20too%20tired.",
        ".tx-hv-canvas",
    ),
    (
        "text-cross",
        "/text?model=dates-seq2seq&text=Friday%2C%20March%2018th%2C%202022&kind=cross&view=matrix",
        "#tx-matrix-plot .main-svg",
    ),
    ("positional", "/positional", ".js-plotly-plot"),
    ("scaling", "/scaling", ".js-plotly-plot"),
    ("vit-embeddings", "/vit-embeddings", ".js-plotly-plot"),
    ("distance", "/distance", ".js-plotly-plot"),
    ("tour", "/tour", "#tour-pe .main-svg"),
    ("vision-queued", "/vision?sample=astronaut", '#api-queue[data-state="retrying"]'),
    ("vision-compare", "/vision?compare=1&sample=astronaut", "canvas"),
    ("text-compare", "/text?compare=1&text=The%20animal%20didn%27t%20cross%20the%20street.", None),
    (
        "text-neuron",
        "/text?text=The%20animal%20didn%27t%20cross%20the%20street%20because%20it%20was%20too%20tired.&view=neuron&layer=4&head=2&q=10",
        None,
    ),
    ("offsets", "/offsets", ".js-plotly-plot"),
    ("distance-rf", "/distance?rf=1", ".js-plotly-plot"),
]
BUSY = {"detail": "The compute queue is full; try again in a few seconds.", "retry_after_s": 5}


def busy_once(route) -> None:
    """Answer the first analyze call 503 + Retry-After: 5, then let the calls through."""
    route.fulfill(
        status=503, headers={"Retry-After": "5", "Content-Type": "application/json"}, body=json.dumps(BUSY)
    )
    route.request.frame.page.unroute("**/api/vision/analyze")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="http://127.0.0.1:8000")
    ap.add_argument("--out", default="tests/artifacts/pages")
    ap.add_argument("--only", default="")
    ap.add_argument("--wait", type=float, default=4.0, help="seconds to let charts settle")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.add_init_script(
            'document.addEventListener("securitypolicyviolation", e => console.error("CSP: " + e.violatedDirective))'
        )
        for name, path, selector in PAGES:
            if args.only and name not in args.only.split(","):
                continue
            if name == "vision-queued":
                page.route("**/api/vision/analyze", busy_once)
            page.goto(args.base + path)
            if selector:
                page.wait_for_selector(selector, timeout=120_000)
            if name != "vision-queued":
                page.wait_for_timeout(args.wait * 1000)
            page.screenshot(path=str(out / f"{name}.png"))
            page.screenshot(path=str(out / f"{name}-full.png"), full_page=True)
            print(name, "ok", "errors:", errors)
            errors.clear()
        browser.close()


if __name__ == "__main__":
    main()
