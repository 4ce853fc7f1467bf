"""The newest reply of an HTML body: find where the quoted history starts (the container a mail
client wraps it in, or a marker line in the text) and cut it and everything after it."""

from __future__ import annotations

from bisect import bisect_right

from apps.merchants.mail import htmltree, markers
from apps.merchants.mail.htmltree import Element, Text
from apps.merchants.mail.sanitize import html_sanitize

QUOTE_CLASSES = frozenset(name.lower() for name in markers.QUOTE_CLASSES)
QUOTE_IDS = frozenset(name.lower() for name in markers.QUOTE_IDS)
# A sign-off this short in the block of the separator <hr> ("Bob<hr><b>From:</b>") is the
# sender's name over the quote, and goes with it.
MAX_SIGNOFF_CHARS = 60
# How far below a separator (<hr>, a bordered div) its From/Date/Subject lines are looked for.
HEADER_LOOKAHEAD_LINES = 6


def html_reply(html: str) -> tuple[str, str, bool]:
    """(reply as text, reply as sanitised HTML, whether quoted history was cut) of an HTML body."""
    root = htmltree.parse(html)
    rendered = htmltree.lines(root)  # also numbers the nodes in document order
    start, container = _quote_start(root, rendered)
    if start is None:
        return htmltree.text_of(root, rendered), html_sanitize(html), False
    htmltree.cut(start)
    if container:
        _drop_attribution_above(root)
    htmltree.trim_end(root)
    if not htmltree.has_content(root):  # nothing but quote: show it all rather than nothing
        return htmltree.text_of(htmltree.parse(html)), html_sanitize(html), False
    return htmltree.text_of(root), html_sanitize(htmltree.serialize(root)), True


def _classes(element: Element) -> set[str]:
    return set(element.attr("class").lower().split())


def _style(element: Element) -> dict[str, str]:
    declarations: dict[str, str] = {}
    for declaration in element.attr("style").lower().split(";"):
        name, _, value = declaration.partition(":")
        declarations[name.strip()] = " ".join(value.split())
    return declarations


def _is_indent(blockquote: Element) -> bool:
    """Gmail's indent button writes a borderless blockquote: formatting, not a quote."""
    style = _style(blockquote)
    return style.get("border") == "none" or style.get("margin") == "0 0 0 40px"


def _has_top_border(element: Element) -> bool:
    style = _style(element)
    top = style.get("border-top", "")
    return ("solid" in top and "none" not in top) or style.get("border-top-style") == "solid"


def _quote_start(root: Element, rendered: list[htmltree.Line]) -> tuple[Element | Text | None, bool]:
    """Where the quoted history starts, and whether a quote container (not a line) marks it."""
    filled = [line for line in rendered if line.text.strip()]
    texts = [line.text for line in filled]
    starts = [line.position for line in filled]

    def header_below(position: int, *, from_first: bool) -> bool:
        """Do From/Sent/Subject lines follow `position`, as under Outlook's separators?"""
        first = bisect_right(starts, position)
        if first >= len(filled):
            return False
        window = texts[first:first + HEADER_LOOKAHEAD_LINES]
        if from_first:
            return markers.is_from_line(window[0])
        labels = [line for line in window if markers.header_label(line)]
        return len(labels) >= 2 and any(markers.is_from_line(line) for line in labels)

    candidates: list[tuple[int, Element | Text, bool]] = []
    last_blockquote: Element | None = None
    blockquote_depth = 0
    for entering, node in htmltree.walk(root):
        if not isinstance(node, Element):
            continue
        if node.tag == "blockquote":
            if entering and blockquote_depth == 0 and not _is_indent(node):
                last_blockquote = node
            blockquote_depth += 1 if entering else -1
        if not entering or candidates:
            continue
        position = node.position
        if (_classes(node) & QUOTE_CLASSES or node.attr("id").lower() in QUOTE_IDS
                or node.attr("id").lower().startswith("yahoo_quoted")
                or (node.tag == "blockquote" and node.attr("type").lower() == "cite")):
            candidates.append((position, node, True))
        elif node.tag == "hr" and header_below(position, from_first=False):
            candidates.append((position, _signoff_block(node) or node, True))
        elif node.tag in ("div", "p") and _has_top_border(node) and header_below(position, from_first=True):
            candidates.append((position, node, True))
    if last_blockquote is not None:
        candidates.append((last_blockquote.position, last_blockquote, True))

    line_index = _quote_line(texts)
    if line_index is not None and filled[line_index].nodes:
        first_node = filled[line_index].nodes[0]
        candidates.append((first_node.position, first_node, False))
    if not candidates:
        return None, False
    _, node, container = min(candidates, key=lambda candidate: candidate[0])
    return node, container


def _quote_line(texts: list[str]) -> int | None:
    """The first rendered line that starts quoted history: a separator, an Outlook header block,
    an attribution, or a run of "> " lines (clients that quote HTML as text)."""
    count = len(texts)
    for index, text in enumerate(texts):
        if markers.is_separator(text) or markers.header_block_at(texts, index):
            return index
        if markers.is_quoted(text) and (index + 1 == count or markers.is_quoted(texts[index + 1])):
            return index
        if markers.ends_like_attribution(text):
            above_quote = index + 1 < count and markers.is_quoted(texts[index + 1])
            start = markers.attribution_start(texts, index, loose=above_quote)
            if start is not None:
                return start
    return None


def _signoff_block(hr: Element) -> Element | None:
    """The <div> around a separator <hr> when all it holds before it is a one-line sign-off."""
    block = hr.parent
    if block is None or block.tag != "div" or block.parent is None:
        return None
    before = block.children[:next(i for i, child in enumerate(block.children) if child is hr)]
    if any(isinstance(child, Element) and child.tag in htmltree.BLOCK | {"br"} for child in before):
        return None
    text = " ".join("".join(node.data for child in before for _, node in htmltree.walk(child)
                            if isinstance(node, Text)).split())
    if not text or len(text) > MAX_SIGNOFF_CHARS:
        return None
    siblings = block.parent.children
    earlier = siblings[:next(i for i, child in enumerate(siblings) if child is block)]
    # Only when the reply goes on without it: a lone line may be the whole reply.
    return block if any(htmltree.has_content(child) for child in earlier) else None


def _drop_attribution_above(root: Element) -> None:
    """Remove the "On ... wrote:" line some clients leave just above their quote container."""
    filled = [line for line in htmltree.lines(root) if line.text.strip()]
    if not filled:
        return
    texts = [line.text for line in filled]
    end = len(texts) - 1
    if not markers.ends_like_attribution(texts[end]):
        return
    start = markers.attribution_start(texts, end, loose=True)
    if start is None:
        return
    for line in filled[start:]:
        for node in line.nodes:
            htmltree.remove(node)
