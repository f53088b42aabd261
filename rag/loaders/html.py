"""HTML: the page's main content (trafilatura), tables kept as readable rows ("Croissant | 2.50 EUR"),
and title/author/date metadata. Navigation, page headers, footers and asides are removed before
extraction, so they are never stored (nor cited) whatever the extractor decides."""
from __future__ import annotations

import re
from typing import Any

from lxml import etree, html as lxml_html

from .base import Budget, Loaded, check_size, clean_text, decode_text, json_metadata
from .errors import BrokenDocumentError, EmptyDocumentError

_FURNITURE = "//nav | //aside | //footer | //header[not(ancestor::article) and not(ancestor::main)]" \
             " | //*[@role='navigation' or @role='banner' or @role='contentinfo' or @role='complementary']"
_INVISIBLE = "//script | //style | //noscript | //template | //svg | //form | //iframe"
_BLOCKS = {"head", "p", "item", "quote", "code", "list", "table", "lb", "graphic"}
_SPACES = re.compile(r"[ \t\u00a0\r\n]+")
# trafilatura takes ~0.3 ms per element (15 s for a 2 MB table of 50k rows); larger pages keep their
# visible text, furniture removed, one line per block and table row, which costs ~15 us per element.
MAX_EXTRACTION_ELEMENTS = 20_000


def _strip_furniture(root: Any) -> None:
    for el in root.xpath(f"{_FURNITURE} | {_INVISIBLE}"):
        parent = el.getparent()
        if parent is not None:
            el.drop_tree() if hasattr(el, "drop_tree") else parent.remove(el)


def _inline_text(el: Any) -> str:
    return _SPACES.sub(" ", "".join(el.itertext())).strip()


def _render(body: Any) -> list[str]:
    """trafilatura's XML body as lines of text: one per heading, paragraph, list item, table row."""
    lines: list[str] = []

    def walk(el: Any) -> None:
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag == "table":
            for row in el.iter("row"):
                cells = [_inline_text(c) for c in row if c.tag == "cell"]
                if any(cells):
                    lines.append(" | ".join(cells))
            return
        if tag == "list":
            for item in el:
                walk(item)
            return
        if tag in ("head", "p", "item", "quote", "code") and not any(
                isinstance(c.tag, str) and c.tag in ("list", "table", "p") for c in el):
            text = _inline_text(el)
            if text:
                lines.append(text)
            return
        if el.text and el.text.strip() and tag not in ("main", "doc", "body"):
            lines.append(_SPACES.sub(" ", el.text).strip())
        for child in el:
            walk(child)
            if child.tail and child.tail.strip() and tag not in ("main", "doc", "body"):
                lines.append(_SPACES.sub(" ", child.tail).strip())

    walk(body)
    return lines


_BLOCK_TAGS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "dt", "dd", "section", "article", "main",
               "blockquote", "pre", "ul", "ol", "dl", "figure", "figcaption", "br", "hr", "body", "caption",
               "details", "summary", "address"}


def _fallback_text(root: Any) -> list[str]:
    """Visible text, one line per block and per table row, for pages where the extractor finds no
    main content (short pages): it then falls back to a flat dump that would lose the structure."""
    lines: list[str] = []
    buf: list[str] = []

    def flush() -> None:
        text = _SPACES.sub(" ", "".join(buf)).strip()
        buf.clear()
        if text:
            lines.append(text)

    def walk(el: Any) -> None:
        tag = el.tag.lower() if isinstance(el.tag, str) else ""
        if tag == "table":
            flush()
            for row in el.iter("tr"):
                cells = [_inline_text(c) for c in row if isinstance(c.tag, str) and c.tag.lower() in ("td", "th")]
                if any(cells):
                    lines.append(" | ".join(cells))
        else:
            block = tag in _BLOCK_TAGS
            if block:
                flush()
            if el.text and tag:
                buf.append(el.text)
            for child in el:
                walk(child)
            if block:
                flush()
        if el.tail:
            buf.append(el.tail)

    walk(root)
    flush()
    return lines


def _degenerate(body: Any) -> bool:
    """trafilatura's last-resort output: the whole page as one paragraph of lines."""
    children = [c for c in body if isinstance(c.tag, str)]
    return len(children) == 1 and children[0].tag == "p" and "\n" in (children[0].text or "")


_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?([A-Za-z0-9_.:-]{1,40})""", re.I)


def _declared_charset(data: bytes) -> str | None:
    """The page's own `<meta charset>` (in its first 4 KB), when no HTTP header said one."""
    import codecs

    m = _META_CHARSET.search(data[:4096])
    if not m:
        return None
    try:
        return codecs.lookup(m.group(1).decode("ascii")).name
    except LookupError:
        return None


def load(data: bytes, name: str, budget: Budget, *, charset: str | None = None) -> Loaded:
    import trafilatura

    check_size(data, budget.limits.max_html_bytes, name)
    markup, encoding = decode_text(data, name, charset or _declared_charset(data))
    if not markup.strip():
        raise EmptyDocumentError(f"{name}: file is empty")
    try:
        root = lxml_html.document_fromstring(markup.encode("utf-8"),
                                            parser=lxml_html.HTMLParser(encoding="utf-8", no_network=True))
    except (etree.ParserError, ValueError) as exc:
        raise BrokenDocumentError(f"{name}: not readable HTML ({exc})") from None
    title_el = root.find(".//title")
    page_title = _inline_text(title_el) if title_el is not None else ""
    _strip_furniture(root)
    budget.check_time()
    extracted = None
    if sum(1 for _ in root.iter()) <= MAX_EXTRACTION_ELEMENTS:
        extracted = trafilatura.bare_extraction(root, include_tables=True, include_comments=False,
                                                include_images=False, include_links=False, with_metadata=True,
                                                deduplicate=False, favor_recall=True)
        budget.check_time()
    usable = extracted is not None and extracted.body is not None and not _degenerate(extracted.body)
    lines = _render(extracted.body) if usable else []
    if not lines:
        body = root.find("body")
        lines = _fallback_text(body if body is not None else root)
    metadata: dict[str, Any] = {"format": "html", "encoding": encoding}
    title = page_title or None
    if extracted is not None:
        title = title or extracted.title or None
        for key in ("author", "date", "description", "sitename", "language"):
            value = getattr(extracted, key, None)
            if isinstance(value, str) and value.strip():
                metadata[key] = json_metadata(value)
    return Loaded(text=clean_text("\n".join(lines)), title=title, metadata=metadata)


def html_to_text(markup: str) -> tuple[str, str]:
    """(text, title) of an HTML string; kept for callers of the old `rag.documents.html_to_text`."""
    from .base import Limits

    loaded = load(markup.encode("utf-8"), "page.html", Budget(Limits(), "page.html"), charset="utf-8")
    return loaded.text, loaded.title or ""
