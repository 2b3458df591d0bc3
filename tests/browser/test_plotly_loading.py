"""plotly.js (4.8 MB) loads on exactly the pages whose modules draw with it (templates/base.html, ``plots``).

Independent of the flag: each page's module graph is followed through its relative imports (a dynamic
``import(`./${name}.js`)`` counts every module of that folder), and a page plots
when any module in it calls ``Plotly.`` (lib/export.js aside: its plotlyExports only runs on a plotly chart that
a page drew). The vision page and the home page draw on canvas only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
JS = ROOT / "static" / "js"
SCRIPT = re.compile(r'<script type="module" src="/static/js/([^"]+)"')
IMPORT = re.compile(r"""\bfrom\s*["'](\.{1,2}/[^"']+)["']""")
# a dynamic import by name from the module's own folder (/influence's sections): any module there may load
FOLDER_IMPORT = re.compile(r"""\bimport\(`\./\$\{""")


def module_graph(entry: str) -> set[Path]:
    seen: set[Path] = set()
    todo = [JS / entry]
    while todo:
        path = todo.pop().resolve()
        if path in seen:
            continue
        seen.add(path)
        source = path.read_text(encoding="utf-8")
        todo.extend(path.parent / dep for dep in IMPORT.findall(source))
        if FOLDER_IMPORT.search(source):
            todo.extend(path.parent.glob("*.js"))
    return seen


def page_plots(source: str) -> bool:
    entries = [e for e in SCRIPT.findall(source) if e != "lib/boot.js"]
    modules = {m for e in entries for m in module_graph(e)} - {(JS / "lib" / "export.js").resolve()}
    return any("Plotly." in m.read_text(encoding="utf-8") for m in modules)


@pytest.mark.parametrize("name", sorted(p.name for p in TEMPLATES.glob("*.html") if p.name != "base.html"))
def test_plotly_only_where_a_module_plots(name):
    html = (
        Environment(loader=FileSystemLoader(TEMPLATES))
        .get_template(name)
        .render(page_data={}, nav=[], title="t", active="")
    )
    assert ("/vendor/plotly.min.js" in html) == page_plots(html), name


def test_the_canvas_pages_skip_plotly():
    env = Environment(loader=FileSystemLoader(TEMPLATES))
    for name in ("home.html", "vision.html"):
        assert "plotly" not in env.get_template(name).render(page_data={}, nav=[], title="t", active="")
