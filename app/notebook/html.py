"""Self-contained HTML for notebook outputs: the web pages' own ES modules, inlined, plus the data.

Why self-contained and not a server on 127.0.0.1: an output cell must still draw when the notebook is saved,
reopened after the kernel is gone, or sent to someone else; a local server would also be one more process
per kernel to keep alive and to secure. The cost is the data: it goes in once, as compact typed arrays
(``app.serialization``), and only what the views draw (see ``app/notebook/vision.py`` and ``text.py`` for the budgets).

How the modules run without a server: every module under ``static/js`` that the entry module imports
(transitively) is read here, its relative import specifiers replaced by placeholders, and the list shipped in
dependency order inside a ``<script type="application/json">`` block. A small classic script
(``static/js/notebook/loader.js``) turns each module into a ``blob:`` URL, substituting the placeholders with
the URLs of the modules already made, and ``import()``s the entry. The JS files are the same ones the web
pages load, unchanged: no bundler and no transform beyond the specifiers. Classic script + dynamic
``import()`` because notebook front ends re-create ``<script>`` elements of an output and not all of them
keep ``type="module"``.
"""

from __future__ import annotations

import html
import json
import math
import posixpath
import re
import uuid
from functools import lru_cache
from pathlib import Path

import plotly

STATIC_JS = Path(__file__).resolve().parents[2] / "static" / "js"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
# `from "./x.js"`, `import "./x.js"`, `import("./x.js")`: relative specifiers only (bare ones do not occur).
SPECIFIER = re.compile(r"""(\bfrom\s*|\bimport\s*\(?\s*)(["'])(\.{1,2}/[^"'\s]+)\2""")
PLACEHOLDER = "__ATLAS_MODULE_{}__"


def css() -> str:
    """The notebook outputs' stylesheet (static/js/notebook/notebook.css)."""
    return (STATIC_JS / "notebook" / "notebook.css").read_text(encoding="utf-8")


def b64_size(n_bytes: int) -> int:
    """Bytes of n raw bytes once base64-encoded (what an array costs in the output)."""
    return 4 * math.ceil(n_bytes / 3)


class BundleError(RuntimeError):
    """A module cannot be inlined (missing file, import cycle)."""


@lru_cache(maxsize=8)
def module_list(entry: str) -> tuple[tuple[str, str], ...]:
    """(path relative to static/js, source with placeholders) for ``entry`` and everything it imports,
    dependencies first (the entry is last). Cached per process: the files do not change under a kernel."""
    order: list[str] = []
    sources: dict[str, str] = {}
    visiting: set[str] = set()

    def visit(rel: str) -> None:
        if rel in sources:
            return
        if rel in visiting:
            raise BundleError(f"import cycle through static/js/{rel}")
        path = STATIC_JS / rel
        if not path.is_file():
            raise BundleError(f"static/js/{rel} does not exist")
        visiting.add(rel)
        text = path.read_text(encoding="utf-8")
        deps = []
        for m in SPECIFIER.finditer(text):
            dep = posixpath.normpath(posixpath.join(posixpath.dirname(rel), m.group(3)))
            if dep.startswith("../"):
                raise BundleError(f"static/js/{rel} imports {m.group(3)!r} outside static/js")
            deps.append((m.span(3), dep))
        for _, dep in deps:
            visit(dep)
        visiting.discard(rel)
        # Replace specifiers from the end so earlier spans stay valid.
        for (start, end), dep in reversed(deps):
            text = text[:start] + PLACEHOLDER.format(order.index(dep)) + text[end:]
        sources[rel] = text
        order.append(rel)

    visit(entry)
    return tuple((rel, sources[rel]) for rel in order)


def _json_for_script(obj: object) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', '>' or '&' characters at all, and
    ASCII only, so tokens read the same whatever encoding the page around the output declares."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@lru_cache(maxsize=1)
def plotly_source() -> str:
    return PLOTLY_JS.read_text(encoding="utf-8")


def render_output(entry: str, data: dict, css: str, *, include_plotly: bool, fallback: str) -> str:
    """One output cell's HTML: a root element, the payload (modules + data) and the loader.

    ``fallback`` is the text shown until (and unless) the script runs, e.g. in an untrusted notebook."""
    root_id = f"atlas-nb-{uuid.uuid4().hex[:12]}"
    payload = {
        "modules": [{"path": p, "source": s} for p, s in module_list(entry)],
        "data": data,
        "plotly": plotly_source() if include_plotly else None,
    }
    loader = (STATIC_JS / "notebook" / "loader.js").read_text(encoding="utf-8")
    return (
        f'<div class="atlas-nb" id="{root_id}" data-state="loading">'
        f"<style>{css}</style>"
        f'<p class="atlas-nb-status">{html.escape(fallback)}</p></div>'
        f'<script type="application/json" id="{root_id}-data">{_json_for_script(payload)}</script>'
        f'<script>(function () {{\n{loader}\natlasNotebookLoad("{root_id}");\n}})();</script>'
    )


def standalone_page(body: str, title: str) -> str:
    """A complete HTML document around one output (``result.save("x.html")``)."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>"
        f'<body style="font-family: system-ui, sans-serif; margin: 16px">{body}</body></html>\n'
    )


class Output:
    """A notebook result that displays as one output: subclasses give the entry module, the payload, and the
    text shown until the script runs (``ENTRY``, ``payload()``, ``fallback()``, ``label``)."""

    ENTRY = ""
    PLOTLY = False

    def _repr_html_(self) -> str:
        plotly = bool(getattr(self, "include_plotly", self.PLOTLY))
        return render_output(
            self.ENTRY, self.payload(), css(), include_plotly=plotly, fallback=self.fallback()
        )

    def save(self, path: str | Path) -> Path:
        """Write the views as a standalone HTML page."""
        path = Path(path)
        path.write_text(standalone_page(self._repr_html_(), f"{self.label} attention"), encoding="utf-8")
        return path
