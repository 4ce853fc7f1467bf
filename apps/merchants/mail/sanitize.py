"""Email HTML made safe to show: nh3 keeps formatting and drops everything that runs, submits,
embeds or loads from the network; html_for_iframe wraps the result for a sandboxed srcdoc."""

from __future__ import annotations

import re
from html import escape
from html.parser import HTMLParser
from urllib.parse import unquote

import nh3

from apps.merchants.mail import htmltree, markers

# Raster images inline as data: URLs (signature logos) are shown when at most this long; larger
# ones belong in attachments. No SVG: it is a document with its own scripts and links.
MAX_DATA_IMAGE_CHARS = 128 * 1024
_DATA_IMAGE = re.compile(r"^data:image/(?:png|gif|jpe?g|webp|bmp);base64,[a-z0-9+/=\s]*$", re.IGNORECASE)
_LINK_SCHEMES = ("http:", "https:", "mailto:", "tel:")
_SAFE_CONTROL = re.compile(r"[\x00-\x20\x7f]+")
# Declarations that could load or run something in some browser, even under an allowed
# property name: url(), IE's expression() and behavior, and CSS escapes that could hide them.
_UNSAFE_CSS = re.compile(r"url\s*\(|expression|javascript:|behavior|binding|@import|\\", re.IGNORECASE)
# nh3's HTML5 tree builder scans its stack of open elements for each new block, so its time
# grows with the square of the nesting depth (20,000 nested <div>s take seconds). Markup that
# may nest deeper than this is first rebuilt, with its depth capped, by our own parser.
MAX_NH3_DEPTH = 500
_TAG = re.compile(r"<(/?)([a-zA-Z][^\s/>]*)")

TAGS = frozenset({
    "a", "abbr", "address", "article", "aside", "b", "bdi", "bdo", "big", "blockquote", "br", "caption",
    "center", "cite", "code", "col", "colgroup", "dd", "del", "details", "dfn", "div", "dl", "dt", "em",
    "figcaption", "figure", "font", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "i",
    "img", "ins", "kbd", "li", "main", "mark", "nav", "ol", "p", "pre", "q", "s", "samp", "section",
    "small", "span", "strike", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th",
    "thead", "time", "tr", "tt", "u", "ul", "var", "wbr",
})
# Removed with their content: code, styling that could load or hide things, and interactive
# parts whose text means nothing outside the page that sent them.
CLEAN_CONTENT_TAGS = frozenset({"script", "style", "title", "template", "noscript", "select", "textarea",
                                "button", "iframe", "object", "embed", "applet", "frameset", "frame",
                                "svg", "math", "audio", "video", "canvas", "head", "xml"})
_LAYOUT = {"align", "valign", "width", "height", "bgcolor", "border"}
ATTRIBUTES = {
    "*": {"style", "dir", "lang", "title"},
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height", "border", "align"},
    "font": {"color", "face", "size"},
    "table": _LAYOUT | {"cellpadding", "cellspacing"},
    "td": _LAYOUT | {"colspan", "rowspan", "nowrap"},
    "th": _LAYOUT | {"colspan", "rowspan", "nowrap", "scope"},
    "tr": _LAYOUT, "tbody": _LAYOUT, "thead": _LAYOUT, "tfoot": _LAYOUT,
    "col": _LAYOUT | {"span"}, "colgroup": _LAYOUT | {"span"},
    "div": {"align"}, "p": {"align"}, "hr": {"align", "width", "size", "noshade"},
    "h1": {"align"}, "h2": {"align"}, "h3": {"align"}, "h4": {"align"}, "h5": {"align"}, "h6": {"align"},
    "ol": {"start", "type"}, "ul": {"type"}, "li": {"value"},
    "blockquote": set(), "q": set(), "del": set(), "ins": set(),
}
# Properties that can only lay out and colour text. None of them takes a url(): background,
# background-image, list-style-image, border-image, content and cursor stay out, so CSS cannot
# fetch a tracking pixel; position stays out so mail cannot overlay the page around it.
STYLE_PROPERTIES = frozenset({
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "font-variant", "text-align", "text-decoration", "text-indent", "text-transform", "line-height",
    "letter-spacing", "word-spacing", "white-space", "word-wrap", "overflow-wrap", "word-break",
    "vertical-align", "direction", "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "padding", "padding-top", "padding-right", "padding-bottom", "padding-left", "border",
    "border-top", "border-right", "border-bottom", "border-left", "border-color", "border-style",
    "border-width", "border-top-color", "border-top-style", "border-top-width", "border-bottom-color",
    "border-bottom-style", "border-bottom-width", "border-left-color", "border-left-style",
    "border-left-width", "border-right-color", "border-right-style", "border-right-width",
    "border-collapse", "border-spacing", "border-radius", "width", "height", "max-width", "min-width",
    "max-height", "min-height", "list-style-type", "table-layout", "text-align-last", "display",
    "float", "clear",
})

CSP = ("default-src 'none'; img-src data: cid: 'self'; style-src 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'")
# One look for every mail, whatever width or fonts its sender chose.
IFRAME_CSS = """
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; padding: 12px 16px; max-width: 760px; color: #1f2328; background: #fff;
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  overflow-wrap: anywhere; word-wrap: break-word; }
img { max-width: 100%; height: auto; }
table { max-width: 100%; }
pre { white-space: pre-wrap; }
blockquote { margin: 0 0 0 8px; padding-left: 8px; border-left: 2px solid #d0d7de; color: #57606a; }
"""


def _url_scheme(value: str) -> str:
    # Browsers ignore tabs, newlines and leading controls in a URL ("jav&#x09;ascript:").
    return _SAFE_CONTROL.sub("", value).lower()


def _image_source(value: str, *, relative: bool) -> str | None:
    compact = _url_scheme(value)
    if compact.startswith("cid:"):
        return value.strip()
    if compact.startswith("data:"):
        small = len(value) <= MAX_DATA_IMAGE_CHARS
        return value.strip() if small and _DATA_IMAGE.match(value.strip()) else None
    # Only the caller's own rewritten attachment paths ("/...", never "//host"): a sender's
    # remote image is a tracking pixel, and a sender's relative one a request to our site.
    if relative and compact.startswith("/") and not compact.startswith("//"):
        return value.strip()
    return None


def _attribute_filter(relative_images: bool):
    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        if tag == "img" and attribute == "src":
            return _image_source(value, relative=relative_images)
        if attribute == "style":
            kept = [part for part in value.split(";") if part.strip() and not _UNSAFE_CSS.search(part)]
            return ";".join(kept) or None
        if tag == "a" and attribute == "href":
            compact = _url_scheme(value)
            if compact.startswith(_LINK_SCHEMES) or compact.startswith("#"):
                return value.strip()
            return None
        return value
    return attribute_filter


def _cleaner(*, relative_images: bool) -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=set(TAGS),
        clean_content_tags=set(CLEAN_CONTENT_TAGS),
        attributes={tag: set(names) for tag, names in ATTRIBUTES.items()},
        attribute_filter=_attribute_filter(relative_images),
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        # The marks of a quote container, so that reply extraction works on stored HTML too.
        allowed_classes={tag: set(markers.QUOTE_CLASSES) for tag in ("div", "blockquote")},
        tag_attribute_values={"div": {"id": set(markers.QUOTE_IDS)}, "blockquote": {"type": {"cite"}}},
        url_schemes={"http", "https", "mailto", "tel", "cid", "data"},
        filter_style_properties=set(STYLE_PROPERTIES),
    )


_SANITIZER = _cleaner(relative_images=False)
_IFRAME_SANITIZER = _cleaner(relative_images=True)


def html_sanitize(html: str) -> str:
    """`html` with only inert formatting left: no scripts, handlers, forms, frames or remote loads.

    Links open in a new tab with rel="noopener noreferrer nofollow"; images keep a src only for
    cid: (the caller rewrites those to attachment URLs) and small raster data: URLs.
    """
    return _SANITIZER.clean(_depth_capped(html))


def _depth_capped(html: str) -> str:
    """`html`, rebuilt with bounded nesting when its tags might open deeper than MAX_NH3_DEPTH.

    Tags are counted as a browser nests them, minus implied end tags (an open <p> that a <div>
    closes), so the count can only overestimate; real mail is passed on untouched.
    """
    stack: list[str] = []
    open_count: dict[str, int] = {}
    for match in _TAG.finditer(html):
        name = match.group(2).lower()
        if match.group(1):
            if open_count.get(name):  # an end tag closes up to its element; a stray one nothing
                while stack:
                    top = stack.pop()
                    open_count[top] -= 1
                    if top == name:
                        break
        elif name not in htmltree.VOID:
            stack.append(name)
            open_count[name] = open_count.get(name, 0) + 1
            if len(stack) > MAX_NH3_DEPTH:
                return htmltree.serialize(htmltree.parse(html))
    return html


def cid_references(html: str) -> list[str]:
    """Content-IDs the HTML's images point at (cid:...), in order, once each, URL-decoded."""
    collector = _CidCollector()
    try:
        collector.feed(html)
        collector.close()
    except Exception:  # html.parser gives up on a few malformed declarations: keep what was read
        pass
    return list(dict.fromkeys(collector.found))


class _CidCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "img":
            return
        for key, value in attrs:
            if key == "src" and value and _url_scheme(value).startswith("cid:"):
                content_id = unquote(value.strip()[4:]).strip().strip("<>")
                if content_id:
                    self.found.append(content_id)

    handle_startendtag = handle_starttag


def html_for_iframe(body_html: str) -> str:
    """A whole document for `<iframe sandbox srcdoc=...>`: charset, a strict CSP, one stylesheet.

    The body is sanitised again (defence in depth), keeping site-relative image paths, which is
    what cid: references look like after the caller rewrote them to attachment URLs.
    """
    body = _IFRAME_SANITIZER.clean(_depth_capped(body_html))
    return (
        "<!DOCTYPE html><html><head>"
        '<meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(CSP)}">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{IFRAME_CSS}</style>"
        f"</head><body>{body}</body></html>"
    )
