"""A small HTML tree built with Python's html.parser, for finding and cutting quoted history.

Lenient like a browser about unclosed tags, bounded in depth, and walked without recursion, so
hostile nesting cannot exhaust the stack. Only what reply extraction needs: nh3 re-parses and
sanitises whatever is serialised from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from html import escape
from html.parser import HTMLParser

# Deeper nesting is flattened into the element at this depth: no real mail comes near it.
MAX_DEPTH = 200

VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
                  "source", "track", "wbr", "keygen"})
# Content never shown as mail text; dropped while parsing (nh3 would drop it anyway).
IGNORED = frozenset({"script", "style", "title", "xml", "template", "svg", "math", "object", "iframe",
                     "select", "textarea", "noscript"})
BLOCK = frozenset({"address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
                   "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
                   "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
                   "tbody", "thead", "tfoot", "tr", "ul", "body", "html", "caption"})
PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "table", "pre"})
_PAGE = ("body", "html")
# Elements whose end changes the rendered text: walk() reports leaving only these.
_ENDS_MATTER = BLOCK | {"td", "th", "pre"}
# An open <p> ends where one of these starts, as in a browser.
_CLOSES_P = BLOCK - {"body", "html", "tbody", "thead", "tfoot", "tr", "li", "dd", "dt", "caption"}
# An open element of the key ends when one of its values starts (a sibling, not a child).
_CLOSES_SIBLING = {"li": {"li"}, "dt": {"dt", "dd"}, "dd": {"dt", "dd"}, "tr": {"tr"},
                   "td": {"td", "th", "tr"}, "th": {"td", "th", "tr"}, "option": {"option"}}


class Text:
    __slots__ = ("data", "parent", "position")

    def __init__(self, data: str, parent: Element | None = None) -> None:
        self.data = data
        self.parent = parent
        self.position = 0  # in document order, as of the last walk by lines()


class Element:
    __slots__ = ("tag", "attrs", "children", "parent", "position")

    def __init__(self, tag: str, attrs: list[tuple[str, str]] | None = None) -> None:
        self.tag = tag
        self.attrs = attrs or []
        self.children: list[Element | Text] = []
        self.parent: Element | None = None
        self.position = 0

    def attr(self, name: str) -> str:
        for key, value in self.attrs:
            if key == name:
                return value
        return ""

    def append(self, node: Element | Text) -> None:
        node.parent = self
        self.children.append(node)


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root")
        self.stack = [self.root]
        self.open_count: dict[str, int] = {}  # open elements by tag: a stray end tag costs no scan
        self.ignoring: list[str] = []  # open ignored elements, to find where their content ends

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.ignoring:
            if tag == self.ignoring[0] and tag not in VOID:
                self.ignoring.append(tag)
            return
        if tag in IGNORED:
            self.ignoring.append(tag)
            return
        self._close_implied(tag)
        element = Element(tag, [(key, value or "") for key, value in attrs])
        self.stack[-1].append(element)
        if tag not in VOID and len(self.stack) < MAX_DEPTH:
            self._push(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.ignoring or tag in IGNORED:
            return
        self._close_implied(tag)
        self.stack[-1].append(Element(tag, [(key, value or "") for key, value in attrs]))

    def handle_endtag(self, tag: str) -> None:
        if self.ignoring:
            if tag == self.ignoring[0]:
                self.ignoring.pop()
            return
        # Close up to the nearest open element of that name; a stray end tag closes nothing.
        if self.open_count.get(tag):
            while self._pop().tag != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self.ignoring or not data:
            return
        self.stack[-1].append(Text(data))

    def _close_implied(self, tag: str) -> None:
        top = self.stack[-1].tag
        if (top == "p" and tag in _CLOSES_P) or tag in _CLOSES_SIBLING.get(top, ()):
            self._pop()

    def _push(self, element: Element) -> None:
        self.stack.append(element)
        self.open_count[element.tag] = self.open_count.get(element.tag, 0) + 1

    def _pop(self) -> Element:
        element = self.stack.pop()
        self.open_count[element.tag] -= 1
        return element


def parse(html: str) -> Element:
    """The tree of `html` under a "#root" element; never raises on malformed markup."""
    builder = _Builder()
    try:
        builder.feed(html)
        builder.close()
    except Exception:  # a malformed declaration html.parser cannot take: keep what was read
        pass
    return builder.root


def walk(root: Element | Text) -> Iterator[tuple[bool, Element | Text]]:
    """(True, node) for every node in document order, and (False, element) after the elements
    whose end matters to rendering (blocks, cells, <pre>)."""
    stack: list[Element | Text | tuple[Element]] = [root]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        node = pop()
        if type(node) is tuple:
            yield False, node[0]
            continue
        yield True, node
        if type(node) is Element:
            if node.tag in _ENDS_MATTER:
                push((node,))
            if node.children:
                extend(reversed(node.children))


@dataclass
class Line:
    """One rendered line of text and the text nodes it came from (to cut at its first one)."""
    text: str
    nodes: list[Text]
    position: int  # of its first node, in document order


def lines(root: Element) -> list[Line]:
    """The rendered lines of the tree; sets every node's position in document order.

    Block elements and <br> end lines; whitespace collapses as a browser shows it (not in <pre>).
    """
    rendered: list[Line] = []
    parts: list[str] = []
    nodes: list[Text] = []
    pre_depth = 0
    position = 0

    def flush() -> None:
        joined = "".join(parts)
        text = joined if pre_depth else " ".join(joined.split())
        if text or nodes:
            rendered.append(Line(text, nodes[:], nodes[0].position if nodes else position))
        parts.clear()
        nodes.clear()

    for entering, node in walk(root):
        if entering:
            position += 1
            node.position = position
        if type(node) is Text:
            data = node.data
            if pre_depth or not data.isspace():
                parts.append(data)
                nodes.append(node)
            elif parts:
                parts.append(" ")
            continue
        tag = node.tag
        if tag == "br" or tag in BLOCK:
            if parts:
                flush()
            if not entering and tag in PARAGRAPH and rendered and rendered[-1].text:
                rendered.append(Line("", [], position))  # paragraphs stand apart
        elif not entering and tag in ("td", "th"):
            parts.append(" ")
        if tag == "pre":
            pre_depth += 1 if entering else -1
    if parts:
        flush()
    return rendered


def text_of(root: Element, rendered: list[Line] | None = None) -> str:
    """The tree as plain text: one line per rendered line, paragraphs apart, no blank runs.

    `rendered` saves walking the tree again when its lines() are at hand.
    """
    out: list[str] = []
    for line in lines(root) if rendered is None else rendered:
        if line.text.strip() or (out and out[-1]):
            out.append(line.text.rstrip())
    return "\n".join(out).strip()


def has_content(node: Element | Text) -> bool:
    """Does the node show anything: text, or an image?"""
    if type(node) is Text:
        return not node.data.isspace() and bool(node.data)
    for _, inner in walk(node):
        if type(inner) is Text:
            if inner.data and not inner.data.isspace():
                return True
        elif inner.tag == "img":
            return True
    return False


def _index(parent: Element, node: Element | Text) -> int:
    return next(i for i, child in enumerate(parent.children) if child is node)


def cut(node: Element | Text) -> None:
    """Remove `node` and everything after it in document order.

    The cut climbs to the outermost ancestor that `node` begins, so the wrappers of a quote
    (Outlook's <div><span><hr>, <p><b>From:</b>) go with it instead of staying empty.
    """
    while node.parent is not None and node.parent.parent is not None and node.parent.tag not in _PAGE:
        parent = node.parent
        if any(has_content(child) for child in parent.children[:_index(parent, node)]):
            break
        node = parent
    parent = node.parent
    if parent is None:
        return
    del parent.children[_index(parent, node):]
    while parent.parent is not None:  # what follows each ancestor goes too; the ancestor stays
        outer = parent.parent
        del outer.children[_index(outer, parent) + 1:]
        parent = outer


def remove(node: Element | Text) -> None:
    """Remove `node`, then any inline ancestors it leaves empty (an <a> around a removed address)."""
    while node.parent is not None:
        parent = node.parent
        parent.children = [child for child in parent.children if child is not node]
        if parent.children or parent.tag in BLOCK or parent.parent is None:
            return
        node = parent


def trim_end(root: Element) -> None:
    """Drop trailing whitespace, <br>, <hr> and empty elements, left behind by a cut."""
    while True:
        node: Element | Text = root
        while type(node) is Element and node.children:
            node = node.children[-1]
        if node is root or node.parent is None:
            return
        if type(node) is Text:
            if node.data.strip():
                return
        elif node.tag in ("img", "td", "th"):
            return
        node.parent.children.pop()


def serialize(root: Element) -> str:
    """The tree as HTML, every element closed: well-formed input for the sanitiser."""
    out: list[str] = []
    stack: list[Element | Text | str] = list(reversed(root.children))
    while stack:
        node = stack.pop()
        if type(node) is str:
            out.append(node)
        elif type(node) is Text:
            out.append(escape(node.data, quote=False))
        else:
            attrs = "".join(f' {key}="{escape(value)}"' for key, value in node.attrs)
            out.append(f"<{node.tag}{attrs}>")
            if node.tag not in VOID:
                stack.append(f"</{node.tag}>")
                stack.extend(reversed(node.children))
    return "".join(out)
