"""reply_extract: the newest reply of every message in the shared corpora (talon's real client
mails, the text fixtures of two reply parsers), multilingual headers, HTML quote containers,
and bodies large enough to show extraction stays linear."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from apps.merchants.mail import html_sanitize, message_parse, reply_extract
from tests.utils.corpus import CORPUS

REPLIES = CORPUS / "email-replies"
TEXT_REPLIES_DIR = CORPUS / "email-replies-text"
TEXT_PROJECTS = ("github-email_reply_parser", "zapier-email-reply-parser")
# The README lets a reply keep a short trailing signature ("-- rick", "Sent from my iPhone", a
# mailing-list footer) that another project strips: at most this many lines of it.
MAX_SIGNATURE_LINES = 5
# A timing bound that only a quadratic algorithm can miss, even on a busy shared machine.
SLOW_MACHINE_FACTOR = 5


def collapsed(text: str) -> str:
    return " ".join(text.split())


def normalised(text: str) -> str:
    """As the corpus README compares: LF line ends, no trailing blanks, stripped."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip()


def corpus_files(folder: Path, pattern: str = "*") -> list[Path]:
    files = sorted(path for path in folder.glob(pattern) if path.is_file())
    if not files:
        pytest.fail(f"corpus missing: nothing in {folder}", pytrace=False)
    return files


def expectations(folder: Path) -> dict:
    path = folder / "expected.json"
    if not path.exists():
        pytest.fail(f"corpus missing: {path}", pytrace=False)
    return json.loads(path.read_text(encoding="utf-8"))


def test_corpus_is_present():
    for folder in (REPLIES / "eml", REPLIES / "html", *(TEXT_REPLIES_DIR / name for name in TEXT_PROJECTS)):
        assert folder.is_dir(), f"corpus missing: {folder}"


# --- talon's real messages ----------------------------------------------------------------------

@pytest.mark.parametrize("path", corpus_files(REPLIES / "eml"), ids=lambda path: path.name)
def test_eml_corpus_latest_reply(path):
    expected = expectations(REPLIES)["eml"]
    if path.suffix != ".eml":
        # "<name>_reply_text" is talon's expected reply of "<name>.eml": it must agree.
        source = path.with_name(path.name.removesuffix("_reply_text") + ".eml")
        assert source.exists(), f"{path.name} is no message and names none"
        assert collapsed(path.read_text(encoding="utf-8")) == collapsed(expected[source.name])
        parsed = message_parse(source.read_bytes())
    else:
        parsed = message_parse(path.read_bytes())
    reply = reply_extract(parsed.text, parsed.html)
    want = expected[path.name] if path.suffix == ".eml" else path.read_text(encoding="utf-8")
    assert collapsed(reply.text) == collapsed(want)
    assert reply.has_quoted_history


@pytest.mark.parametrize("path", corpus_files(REPLIES / "html"), ids=lambda path: path.name)
def test_html_corpus_latest_reply(path):
    expected = expectations(REPLIES)["html"][path.name]
    reply = reply_extract("", path.read_text(encoding="utf-8"))
    assert collapsed(reply.text) == collapsed(expected)
    assert reply.has_quoted_history
    # The HTML shown is the same reply, sanitised.
    assert "<blockquote" not in reply.html and "<script" not in reply.html
    assert collapsed(expected).split()[0] in reply.html
    # Stored HTML is sanitised HTML: the quote is still found in it.
    stored = html_sanitize(path.read_text(encoding="utf-8"))
    assert collapsed(reply_extract("", stored).text) == collapsed(expected)


# --- the reply parsers' text fixtures -----------------------------------------------------------

def text_cases() -> list:
    cases = []
    for project in TEXT_PROJECTS:
        folder = TEXT_REPLIES_DIR / project
        expected = expectations(folder)
        for path in corpus_files(folder, "*.txt"):
            assert path.name in expected, f"{project}/{path.name} has no expectation"
            cases.append(pytest.param(path, expected[path.name], id=f"{project.split('-')[0]}/{path.name}"))
    return cases


def quoted_history_in(text: str) -> list[str]:
    markers = ("wrote:", "-----Original Message-----", "From:", "Sent:")
    return [line for line in text.splitlines()
            if line.lstrip().startswith(">") or any(marker in line for marker in markers)]


def assert_reply(reply: str, expected: str) -> None:
    """Equal, or equal plus a short trailing signature (which the README allows either way)."""
    if reply == expected:
        return
    assert reply.startswith(expected), f"{reply!r} does not start with {expected!r}"
    rest = [line for line in reply[len(expected):].splitlines() if line.strip()]
    assert len(rest) <= MAX_SIGNATURE_LINES, f"more than a signature follows: {rest}"
    assert not quoted_history_in("\n".join(rest)), rest


@pytest.mark.parametrize(("path", "expected"), text_cases())
def test_text_corpus_latest_reply(path, expected):
    body = path.read_text(encoding="utf-8")
    started = time.perf_counter()
    reply = reply_extract(body)
    elapsed = time.perf_counter() - started
    got = normalised(reply.text)
    if isinstance(expected, str):
        assert_reply(got, normalised(expected))
        return
    for part in [expected.get("contains", ""), *expected.get("contains_also", [])]:
        assert part in got
    for history in expected.get("not_contains", []):
        assert history not in got
    for signature in expected.get("signature_removed", []):
        if signature in got:  # kept: then only as the short tail of the reply
            tail = got[got.index(signature):]
            assert len([line for line in tail.splitlines() if line.strip()]) <= MAX_SIGNATURE_LINES
            assert not quoted_history_in(tail)
    assert not [line for line in got.splitlines() if line.lstrip().startswith(">")]
    if "max_seconds" in expected:
        assert elapsed < expected["max_seconds"] * SLOW_MACHINE_FACTOR


# --- multilingual replies, written here (the corpus is mostly English) --------------------------

TEXT_REPLIES = {
    'de-gmail': ("""\
Danke, das hat geholfen.

Am Mo., 3. Feb. 2020 um 10:15 Uhr schrieb Max Mustermann <
max@example.de>:

> Hallo,
> wo ist meine Bestellung?
""", 'Danke, das hat geholfen.'),
    'de-thunderbird': ("""\
Passt.

Am 03.02.2020 um 10:15 schrieb Max Mustermann:
> Hallo
""", 'Passt.'),
    'de-outlook': ("""\
Vielen Dank!

Von: Support <support@casehub.example>
Gesendet: Montag, 3. Februar 2020 10:15
An: Max Mustermann <max@example.de>
Betreff: AW: Bestellung 42

Hallo Max,
Ihre Bestellung ist unterwegs.
""", 'Vielen Dank!'),
    'de-separator': ("""\
Siehe unten.

-----Ursprüngliche Nachricht-----
Von: Max
alter Text
""", 'Siehe unten.'),
    'fr-gmail': ("""\
Merci beaucoup.

Le lun. 3 févr. 2020 à 10:15, Jean Dupont <jean@example.fr> a écrit :

> Bonjour,
> ma commande ?
""", 'Merci beaucoup.'),
    'fr-outlook': ("""\
C'est réglé.

De : Support <support@casehub.example>
Envoyé : lundi 3 février 2020 10:15
À : Jean Dupont <jean@example.fr>
Objet : RE: Commande 42

Bonjour Jean,
""", "C'est réglé."),
    'fr-separator': ("""\
Voir ci-dessous.

-------- Message d'origine --------
De : Jean
ancien texte
""", 'Voir ci-dessous.'),
    'es-gmail': ("""\
Gracias por la ayuda.

El lun., 3 feb. 2020 a las 10:15, Juan Pérez (<juan@example.es>)
escribió:

> Hola,
> ¿dónde está mi pedido?
""", 'Gracias por la ayuda.'),
    'es-outlook': ("""\
Listo.

De: Soporte <support@casehub.example>
Enviado el: lunes, 3 de febrero de 2020 10:15
Para: Juan Pérez <juan@example.es>
Asunto: RE: Pedido 42

Hola Juan,
""", 'Listo.'),
    'pt-gmail': ("""\
Obrigado!

Em seg., 3 de fev. de 2020 às 10:15, João Silva <joao@example.com.br> escreveu:

> Olá,
> cadê meu pedido?
""", 'Obrigado!'),
    'pt-outlook': ("""\
Resolvido.

De: Suporte <support@casehub.example>
Enviada em: segunda-feira, 3 de fevereiro de 2020 10:15
Para: João Silva <joao@example.com.br>
Assunto: RES: Pedido 42

Olá João,
""", 'Resolvido.'),
    'it-gmail': ("""\
Grazie mille.

Il giorno lun 3 feb 2020 alle ore 10:15 Mario Rossi <mario@example.it> ha
scritto:

> Ciao,
> dov'è il mio ordine?
""", 'Grazie mille.'),
    'nl-gmail': ("""\
Bedankt!

Op ma 3 feb. 2020 om 10:15 schreef Jan Jansen <jan@example.nl>:

> Hallo,
""", 'Bedankt!'),
    'sv-gmail': ("""\
Tack!

Den mån 3 feb. 2020 kl 10:15 skrev Sven Svensson <sven@example.se>:

> Hej,
""", 'Tack!'),
    'pl-gmail': ("""\
Dziękuję.

pon., 3 lut 2020 o 10:15 Jan Kowalski <jan@example.pl> napisał(a):

> Dzień dobry,
""", 'Dziękuję.'),
    'pl-thunderbird': ("""\
Dziękuję.

W dniu 3.02.2020 o 10:15, Jan Kowalski pisze:
> Dzień dobry,
""", 'Dziękuję.'),
    'ru-gmail': ("""\
Спасибо, всё работает.

пн, 3 февр. 2020 г. в 10:15, Иван Петров <ivan@example.ru>:

> Здравствуйте,
> где мой заказ?
""", 'Спасибо, всё работает.'),
    'ru-wrote': ("""\
Спасибо.

03.02.2020 10:15, Иван Петров написал(а):
> Здравствуйте
""", 'Спасибо.'),
    'ru-outlook': ("""\
Готово.

От: Поддержка <support@casehub.example>
Отправлено: 3 февраля 2020 г. 10:15
Кому: Иван Петров <ivan@example.ru>
Тема: RE: заказ 42

Здравствуйте, Иван,
""", 'Готово.'),
    'ru-separator': ("""\
Смотрите ниже.

-------- Исходное сообщение --------
От: Иван
старый текст
""", 'Смотрите ниже.'),
    'ja-gmail': ("""\
ありがとうございます。

2020年2月3日(月) 10:15 山田太郎 <taro@example.jp>:

> こんにちは、
> 注文はどこですか？
""", 'ありがとうございます。'),
    'ja-apple': ("""\
了解しました。

2020/02/03 10:15、山田太郎 <taro@example.jp>のメール:

> こんにちは
""", '了解しました。'),
    'ja-outlook': ("""\
対応しました。

差出人: サポート <support@casehub.example>
送信日時: 2020年2月3日 10:15
宛先: 山田太郎 <taro@example.jp>
件名: RE: 注文 42

山田様
""", '対応しました。'),
    'zh-gmail': ("""\
谢谢，问题解决了。

张三 <zhangsan@example.cn> 于2020年2月3日周一 上午10:15写道：

> 你好，
> 我的订单在哪里？
""", '谢谢，问题解决了。'),
    'zh-outlook': ("""\
已处理。

发件人: 支持 <support@casehub.example>
发送时间: 2020年2月3日 10:15
收件人: 张三 <zhangsan@example.cn>
主题: 回复: 订单 42

张三你好，
""", '已处理。'),
    'zh-foxmail': ("""\
好的

------------------ 原始邮件 ------------------
发件人: "张三"<zhangsan@example.cn>;
发送时间: 2020年2月3日(星期一) 上午10:15
收件人: "支持"<support@casehub.example>;
主题: 订单

旧内容
""", '好的'),
    'zh-tw-outlook': ("""\
已處理。

寄件者: 支援 <support@casehub.example>
寄件日期: 2020年2月3日 10:15
收件者: 王小明 <wang@example.tw>
主旨: 回覆: 訂單 42

舊內容
""", '已處理。'),
    'ko-gmail': ("""\
감사합니다.

2020년 2월 3일 (월) 오전 10:15, 홍길동 <hong@example.kr>님이 작성:

> 안녕하세요
""", '감사합니다.'),
    'en-forward-gmail': ("""\
FYI, see below.

---------- Forwarded message ---------
From: Max <max@example.de>
Date: Mon, Feb 3, 2020 at 10:15 AM
Subject: Order
To: <us@example.com>

old
""", 'FYI, see below.'),
    'en-forward-apple': ("""\
See below.

Begin forwarded message:

From: Max <max@example.de>
Subject: Order

old
""", 'See below.'),
    'de-mobile': ("""\
Ok, danke!

Von meinem iPhone gesendet

Am 03.02.2020 um 10:15 schrieb Max <max@example.de>:

unquoted old text
""", 'Ok, danke!\n\nVon meinem iPhone gesendet'),
    'en-mobile-unmarked': ("""\
Yes please.

Sent from my Samsung Galaxy smartphone.
-------- Message --------
old text without quote marks
""", 'Yes please.\n\nSent from my Samsung Galaxy smartphone.'),
    'en-outlook-bold': ("""\
Done.

________________________________
*From:* Max <max@example.de>
*Sent:* Monday, February 3, 2020 10:15 AM
*To:* Support
*Subject:* Order

old
""", 'Done.'),
}

NOT_QUOTES = {
    'on-not-attribution': """\
On Monday I will ship these:
- a lamp
- a chair

Thanks
""",
    'from-sentence': """\
From: my side everything is fine.
To: be honest, I expected it.

Bye
""",
    'wrote-midline': """\
As Tom wrote: it works.
Le problème est résolu.
""",
    'colon-lines': """\
Items:
Order 42 for max@example.com on 3.2.2020:
- lamp
""",
}

HTML_REPLIES = {
    'de-gmail': (
        '<div dir="ltr">Danke, das hat geholfen.</div><br><div class="gmail_quote">'
        '<div dir="ltr" class="gmail_attr">Am Mo., 3. Feb. 2020 um 10:15 Uhr schrieb Max Mustermann &lt;'
        '<a href="mailto:max@example.de">max@example.de</a>&gt;:<br></div>'
        '<blockquote class="gmail_quote" '
        'style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex">'
        '<div dir="ltr">Hallo, wo ist meine Bestellung?</div></blockquote></div>',
        'Danke, das hat geholfen.',
    ),
    'fr-outlook-web': (
        '<div style="font-family:Calibri">Merci !</div><div id="appendonsend"></div>'
        '<hr style="display:inline-block;width:98%" tabindex="-1"><div id="divRplyFwdMsg" dir="ltr">'
        '<font face="Calibri" style="font-size:11pt"><b>De :</b> Jean Dupont &lt;jean@example.fr&gt;'
        '<br><b>Envoyé :</b> lundi 3 février 2020 10:15<br><b>À :</b> Support<br><b>Objet :'
        '</b> Commande 42</font><div>&nbsp;</div></div><div>Bonjour, ma commande ?</div>',
        'Merci !',
    ),
    'zh-outlook-desktop': (
        '<div class="WordSection1"><p class="MsoNormal">好的，谢谢<o:p></o:p></p><div>'
        '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm">'
        '<p class="MsoNormal"><b>发件人<span lang="EN-US">:</span></b> 张三 &lt;zhangsan@example.cn&gt;'
        '<br><b>发送时间<span lang="EN-US">:</span></b> 2020年2月3日 10:15<br><b>收件人<span lang="EN-US">:'
        '</span></b> 支持<br><b>主题<span lang="EN-US">:</span></b> 订单</p></div></div>'
        '<p class="MsoNormal">原来的内容</p></div>',
        '好的，谢谢',
    ),
    'ja-outlook-desktop': (
        '<div class="WordSection1"><p class="MsoNormal">対応しました。</p>'
        '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0mm 0mm 0mm">'
        '<p class="MsoNormal"><b>差出人:</b> 山田太郎 &lt;taro@example.jp&gt;<br><b>送信日時:'
        '</b> 2020年2月3日 10:15<br><b>宛先:</b> サポート<br><b>件名:</b> 注文</p></div>'
        '<p>古い内容</p></div>',
        '対応しました。',
    ),
    'en-yahoo': (
        '<div style="font-family:Helvetica">Thanks, that worked.</div>'
        '<div id="yahoo_quoted_8402" class="yahoo_quoted">'
        '<div style="font-family:Helvetica">'
        'On Monday, February 3, 2020, 10:15:00 AM GMT+1, Max &lt;max@example.de&gt; wrote:'
        '</div><div><br></div><div>old text</div></div>',
        'Thanks, that worked.',
    ),
    'es-apple-mail': (
        '<html><body style="word-wrap:break-word">Gracias por todo.<br><div><br>'
        '<blockquote type="cite">'
        '<div>El 3 feb 2020, a las 10:15, Juan Pérez &lt;juan@example.es&gt; escribió:</div><br>'
        '<div>texto viejo</div></blockquote></div><br></body></html>',
        'Gracias por todo.',
    ),
    'es-apple-mail-old': (
        '<html><body>Gracias por todo.<br><div><br>'
        '<div>El 3 feb 2020, a las 10:15, Juan Pérez escribió:</div>'
        '<br class="Apple-interchange-newline"><blockquote type="cite">texto viejo</blockquote></div>'
        '</body></html>',
        'Gracias por todo.',
    ),
    'ja-thunderbird': (
        '<html><body><p>了解しました。</p><div class="moz-cite-prefix">2020/02/03 10:15, 山田太郎 wrote:<br>'
        '</div><blockquote type="cite" cite="mid:1@example.jp">古い内容</blockquote></body></html>',
        '了解しました。',
    ),
    'ru-mail-ru': (
        '<HTML><BODY><p>Спасибо!</p>'
        '<br>Понедельник, 3 февраля 2020, 10:15 +03:00 от Иван Петров &lt;ivan@example.ru&gt;:<br>'
        '<blockquote style="border-left:1px solid #0857A6; margin:10px; padding:0 0 0 10px;">'
        '<div>старый текст</div></blockquote></BODY></HTML>',
        'Спасибо!',
    ),
    'pt-aol-separator': (
        '<font face="arial">Obrigado!<br><br>'
        '<div style="font-family:arial">-----Mensagem original-----'
        '<br>De: João &lt;joao@example.com.br&gt;<br>Para: suporte'
        '<br>Enviada em: seg, 3 fev 2020 10:15<br>Assunto: Pedido<br><br>texto antigo</div></font>',
        'Obrigado!',
    ),
    'de-plain-quotes': (
        '<div>Passt so.<br><br>&gt; Hallo<br>&gt; wo ist die Bestellung?<br></div>',
        'Passt so.',
    ),
    'it-gmail-indent-kept': (
        '<div>Ecco i passi:<blockquote style="margin:0 0 0 40px;border:none;padding:0px">'
        '<div>1. riavvia</div></blockquote><div>Grazie</div></div>'
        '<div class="gmail_quote">'
        'Il giorno lun 3 feb 2020 alle ore 10:15 Mario &lt;mario@example.it&gt; ha scritto:'
        '<blockquote class="gmail_quote">vecchio</blockquote></div>',
        'Ecco i passi:\n1. riavvia\nGrazie',
    ),
}


@pytest.mark.parametrize(("body", "expected"), TEXT_REPLIES.values(), ids=TEXT_REPLIES.keys())
def test_multilingual_text_replies(body, expected):
    reply = reply_extract(body)
    assert reply.text == expected
    assert reply.has_quoted_history
    assert reply.html == ""


@pytest.mark.parametrize("body", NOT_QUOTES.values(), ids=NOT_QUOTES.keys())
def test_lines_that_only_look_like_markers_are_kept(body):
    reply = reply_extract(body)
    assert reply.text == body.strip()
    assert not reply.has_quoted_history


@pytest.mark.parametrize(("html", "expected"), HTML_REPLIES.values(), ids=HTML_REPLIES.keys())
def test_multilingual_html_replies(html, expected):
    reply = reply_extract("", html)
    assert collapsed(reply.text) == collapsed(expected)
    assert reply.has_quoted_history
    assert collapsed(expected).split()[-1] in collapsed(reply.html)
    assert collapsed(reply_extract("", html_sanitize(html)).text) == collapsed(expected)


def test_interleaved_answers_below_quotes_are_kept():
    body = """\
On Tue, Apr 29, 2014 at 4:22 PM, Agent <agent@casehub.example> wrote:

> Which order is it?

Order 42.

> And the address?

Main Street 1.
"""
    reply = reply_extract(body)
    assert reply.text == "Order 42.\n\nMain Street 1."
    assert reply.has_quoted_history


def test_text_body_is_preferred_for_text_and_html_for_html():
    text = "Plain reply.\n\nOn Mon, Feb 3, 2020 at 10:15 AM Max <max@example.de> wrote:\n> old\n"
    html = ('<div>HTML reply <b>bold</b><script>alert(1)</script></div>'
            '<div class="gmail_quote">On Mon ... wrote:<blockquote>old</blockquote></div>')
    reply = reply_extract(text, html)
    assert reply.text == "Plain reply."
    assert reply.html == "<div>HTML reply <b>bold</b></div>"
    assert reply.has_quoted_history


def test_reply_html_is_sanitised_even_without_quotes():
    reply = reply_extract("", '<p onclick="x()">Hi <img src="http://tracker.example/p.gif"></p>')
    assert reply.html == "<p>Hi <img></p>"
    assert (reply.text, reply.has_quoted_history) == ("Hi", False)


@pytest.mark.parametrize(("text", "html"), [
    ("> only a quote\n> nothing new\n", ""),
    ("---------- Forwarded message ---------\nFrom: a@example.com\nSubject: x\n\nforwarded text\n", ""),
    ("", '<blockquote type="cite">only the quote</blockquote>'),
])
def test_a_message_that_is_all_quote_is_shown_whole(text, html):
    reply = reply_extract(text, html)
    assert (reply.text or collapsed(reply.html)) != ""
    assert not reply.has_quoted_history
    assert "quote" in reply.text or "forwarded" in reply.text


def test_empty_message():
    assert reply_extract("", "") == reply_extract("  \n ") == reply_extract("", "  ")
    assert reply_extract("").text == ""


def test_unstorable_characters_do_not_come_back():
    reply = reply_extract("a\x00b \ud800\n\n> old", "<p>c\x00d</p>")
    assert reply.text == "ab \ufffd" and "\x00" not in reply.html


# --- linear time on large bodies ----------------------------------------------------------------

def timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def test_megabyte_of_quote_lines_extracts_quickly():
    block = "On Mon, Jan 6, 2020 at 10:00 AM, Max <max@example.de> wrote:\n" + "> " + "q" * 70 + "\n"
    body = "The newest answer.\n\n" + block * (1_000_000 // len(block))
    started = time.perf_counter()
    reply = reply_extract(body)
    elapsed = time.perf_counter() - started
    assert reply.text == "The newest answer."
    assert elapsed < 1 * SLOW_MACHINE_FACTOR


def test_megabyte_of_html_quote_extracts_quickly():
    line = "&gt; quoted line {} of the earlier message, long enough to matter<br>"
    lines = "".join(line.format(n) for n in range(15_000))
    html = f"<div>The newest answer.<br><br>{lines}</div>"
    assert len(html) > 1_000_000
    started = time.perf_counter()
    reply = reply_extract("", html)
    elapsed = time.perf_counter() - started
    assert reply.text == "The newest answer."
    assert elapsed < 1 * SLOW_MACHINE_FACTOR


@pytest.mark.parametrize("body", [
    "a 1 @:\n" * 100_000,  # every line ends like an attribution, none is one
    "From: x\n" * 100_000,  # every line starts like a header block, none is one
    "On " + "x, " * 300_000 + "wrote:",  # one huge attribution-shaped line
], ids=["colon-lines", "from-lines", "huge-line"])
def test_hostile_text_stays_linear(body):
    """Bodies built to defeat the line checks: quadratic work on them would take minutes."""
    assert timed(reply_extract, body) < 2 * SLOW_MACHINE_FACTOR
