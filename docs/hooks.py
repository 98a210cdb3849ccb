"""MkDocs hooks: MathJax from the docs extra, docstrings' Sphinx roles shown as code, no page loading remote assets."""

from __future__ import annotations

import html.parser
import importlib.util
import pathlib
import re

from mkdocs.plugins import get_plugin_logger
from mkdocs.structure.files import File

log = get_plugin_logger(__name__)

# Where the MathJax build lands in the site; mkdocs.yml's extra_javascript names a component under it.
MATHJAX_DEST = "assets/mathjax"

# Tags whose source attribute the browser fetches while it loads the page (links to other sites are fine).
_FETCHED = {"script": "src", "link": "href", "img": "src", "iframe": "src", "source": "src", "embed": "src",
            "video": "src", "audio": "src", "object": "data"}
# The <link> relations that make the browser fetch (a canonical or alternate link does not).
_LINK_FETCHES = {"stylesheet", "icon", "preload", "modulepreload", "preconnect", "prefetch", "dns-prefetch",
                 "manifest"}


def _mathjax_root() -> pathlib.Path:
    """MathJax 3's folder (its ``es5`` build and licence) in the docs extra's django-static-mathjax package."""
    spec = importlib.util.find_spec("mathjax")
    root = None
    if spec is not None and spec.submodule_search_locations:
        root = pathlib.Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax"
    if root is None or not (root / "es5" / "startup.js").is_file():
        raise RuntimeError('MathJax 3 not found: install the docs extra, pip install ".[docs]" '
                           "(it brings django-static-mathjax, which ships MathJax's es5 build)")
    return root


def on_files(files, config):
    """Add MathJax's es5 build and its licence to the site's files, under ``MATHJAX_DEST``."""
    root = _mathjax_root()
    files.append(File.generated(config, f"{MATHJAX_DEST}/LICENSE", abs_src_path=str(root / "LICENSE")))
    for path in sorted((root / "es5").rglob("*")):
        if path.is_file():
            uri = f"{MATHJAX_DEST}/{path.relative_to(root / 'es5').as_posix()}"
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


class _RemoteAssets(html.parser.HTMLParser):
    """Collects the absolute http(s) or protocol-relative URLs a page makes the browser fetch."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link" and not _LINK_FETCHES & set((attrs.get("rel") or "").lower().split()):
            return
        url = (attrs.get(_FETCHED.get(tag, "")) or "").strip()
        if url.lower().startswith(("http:", "https:", "//")):
            self.urls.append(f"<{tag}> {url}")


# A Sphinx cross-reference role in a numpydoc docstring, as mkdocstrings renders it: ":class:<code>~a.b.C</code>".
_SPHINX_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|const|mod|obj|exc):<code>(~?)\.?([^<]*)</code>")


def on_page_content(html_text, page, config, files):
    """Show the docstrings' Sphinx roles as code: ``:func:`~a.b.c``` as ``c``, ``:func:`a.b.c``` as ``a.b.c``."""
    return _SPHINX_ROLE.sub(lambda m: f"<code>{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}</code>", html_text)


def on_post_page(output, page, config):
    """Warn (an error under ``--strict``) about any script, style, font or image the page loads from the network."""
    parser = _RemoteAssets()
    parser.feed(output)
    for url in parser.urls:
        log.warning("%s loads a remote asset, which an offline reader cannot fetch: %s", page.file.src_uri, url)
    return output
