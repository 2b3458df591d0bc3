"""Screenshot every page the way a user sees it (headless Debian Chromium), for a look before shipping.

    python scripts/screenshots.py [--base http://127.0.0.1:8000] [--out tests/artifacts/pages]

Needs a running server (``make run``). Each page is loaded, given its first interaction, and saved as PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PAGES = [
    ("home", "/", None),
    ("vision", "/vision?sample=astronaut&layer=12&head=1", "canvas"),
    ("vision-rollout", "/vision?sample=chelsea&view=rollout", "canvas"),
    (
        "text",
        "/text?text=The%20animal%20didn%27t%20cross%20the%20street%20because%20it%20was%20too%20tired.",
        None,
    ),
    (
        "text-cross",
        "/text?model=dates-seq2seq&text=Friday%2C%20March%2018th%2C%202022&kind=cross&view=matrix",
        None,
    ),
    ("positional", "/positional", ".js-plotly-plot"),
    ("scaling", "/scaling", ".js-plotly-plot"),
    ("vit-embeddings", "/vit-embeddings", ".js-plotly-plot"),
    ("distance", "/distance", ".js-plotly-plot"),
    ("tour", "/tour", None),
]


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
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        for name, path, selector in PAGES:
            if args.only and name not in args.only.split(","):
                continue
            page.goto(args.base + path)
            if selector:
                page.wait_for_selector(selector, timeout=30_000)
            page.wait_for_timeout(args.wait * 1000)
            page.screenshot(path=str(out / f"{name}.png"))
            page.screenshot(path=str(out / f"{name}-full.png"), full_page=True)
            print(name, "ok", "errors:", errors)
            errors.clear()
        browser.close()


if __name__ == "__main__":
    main()
