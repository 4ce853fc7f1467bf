"""The lines mail clients write above quoted history, in many languages: attribution lines
("On ... wrote:"), original-message separators, Outlook header blocks and mobile signatures.

Every check looks at one line (or two or three lines joined) of bounded length, so no pattern
here can backtrack over a whole body: reply extraction stays linear in the size of the mail.
"""

from __future__ import annotations

import re

# No client writes an attribution or a header line longer than this; longer lines are prose.
MAX_MARKER_CHARS = 400

# Classes and ids mail clients give the element holding the quoted message. The sanitiser keeps
# exactly these, so that stored (sanitised) HTML still shows where its quote starts.
QUOTE_CLASSES = frozenset({"gmail_quote", "gmail_quote_container", "gmail_attr", "yahoo_quoted",
                           "moz-cite-prefix", "moz-forward-container", "OutlookMessageHeader",
                           "protonmail_quote", "zmail_extra", "tutanota_quote", "ecxgmail_quote"})
QUOTE_IDS = frozenset({"divRplyFwdMsg", "appendonsend", "mail-editor-reference-message-container",
                       "AppleOriginalContents", "OrigBody"})

# How an attribution starts: "On", "Am", "Le", "El", "Em", "Il giorno", "Op", "Den", "W dniu", ...
_OPENER = re.compile(
    r"^[\s*>]*(?:on|am|le|el|em|il(?: giorno)?|op|den|på|w dniu|dne|dňa|στις|pada|vào)\s",
    re.IGNORECASE,
)
# The verb that ends it, right before the colon: "wrote:", "a écrit :", "написал(а):", "写道：".
# Compared with str.endswith: one C call instead of a regex alternation tried at every offset.
_WROTE_ENDINGS = (
    "wrote", "writes", "schrieb", "schreef", "skrev", "a écrit", "a ecrit", "escribió", "escribio",
    "escreveu", "ha scritto", "scrisse", "napisał", "napisal", "napisała", "napisał(a)", "pisze",
    "написал", "написала", "написал(а)", "пишет", "写道", "寫道", "작성", "yazdı", "napsal", "napsala",
    "napsal(a)", "kirjoitti", "έγραψε", "írta", "a scris",
)
# Languages that name the sender after the verb: "Am ... schrieb Max <max@example.de>:".
_WROTE_INSIDE = re.compile(r"\b(?:schrieb|schreef|skrev|wrote|писал)\b", re.IGNORECASE)
# Japanese clients: Gmail "2020年2月3日(月) 10:00 山田 <taro@example.jp>:", Apple Mail "...のメール:".
_JAPANESE_DATE = re.compile(r"^\d{4}年\d{1,2}月\d{1,2}日")

_SEPARATOR_WORDS = (
    r"original message|forwarded message|message d'origine|message original|message transf[ée]r[ée]"
    r"|ursprüngliche nachricht|originalnachricht|weitergeleitete nachricht|mensaje original"
    r"|mensaje reenviado|mensagem original|mensagem encaminhada|messaggio originale|messaggio inoltrato"
    r"|oorspronkelijk bericht|doorgestuurd bericht|ursprungligt meddelande|vidarebefordrat meddelande"
    r"|oprindelig meddelelse|videresendt meddelelse|opprinnelig melding|wiadomość oryginalna"
    r"|oryginalna wiadomość|przekazana wiadomość|исходное сообщение|пересылаемое сообщение"
    r"|пересланное сообщение|původní zpráva|orijinal mesaj|alkuperäinen viesti|原始邮件|原始郵件"
    r"|转发邮件|转发的邮件|元のメッセージ|転送されたメッセージ|원본 메시지|전달된 메시지"
)
# "-----Original Message-----", "---------- Forwarded message ---------", "----- 原始邮件 -----".
_SEPARATOR = re.compile(rf"^[\s>]*[-_=—]{{2,}}\s*(?:{_SEPARATOR_WORDS})\s*[-_=—]*\s*$", re.IGNORECASE)
# Apple Mail's forward line, which has no dashes.
_FORWARD_LINE = re.compile(
    r"^[\s>]*(?:begin forwarded message|anfang der weitergeleiteten nachricht"
    r"|d[ée]but du message r[ée]exp[ée]di[ée]|inicio del mensaje reenviado"
    r"|in[íi]cio da mensagem reencaminhada|inizio messaggio inoltrato"
    r"|begin doorgestuurd bericht|vidarebefordrat brev|начало пересылаемого сообщения|転送されたメッセージ)"
    r"\s*[:：]\s*$",
    re.IGNORECASE,
)

_FROM_LABELS = (
    r"from|von|de|van|från|fra|od|от|da|lähettäjä|feladó|kimden|afsender|avsändare|remetente"
    r"|expéditeur|发件人|發件人|寄件者|差出人|보낸 사람"
)
_OTHER_LABELS = (
    r"sent|date|to|cc|bcc|subject|reply-to|gesendet|datum|an|betreff|envoyé|à|a|objet|enviado(?: el)?"
    r"|enviada em|fecha|para|asunto|assunto|inviato|data|oggetto|verzonden|aan|onderwerp|skickat|till"
    r"|ämne|sendt|til|emne|wysłano|do|temat|отправлено|дата|кому|тема|копия|発送時間|发送时间|發送時間"
    r"|日期|收件人|收件者|主题|主題|抄送|副本|寄件日期|主旨|送信日時|宛先|件名|日付|보낸 날짜|받는 사람"
    r"|제목|gönderildi|kime|konu|tarih|lähetetty|vastaanottaja|aihe"
)
# A header line as Outlook writes it, also Gmail's "*From:*" and a quoted "> From:".
_FROM_LINE = re.compile(rf"^[\s>*]*(?:{_FROM_LABELS})\s*\*?\s*[:：]", re.IGNORECASE)
_LABEL = re.compile(rf"^[\s>*]*({_FROM_LABELS}|{_OTHER_LABELS})\s*\*?\s*[:：]", re.IGNORECASE)
# How many lines a wrapped attribution may span ("On ..., Corey Donohoe\n<a@b.c>\nwrote:").
MAX_ATTRIBUTION_LINES = 3
# A header block needs the From line and this many other kinds of header (Sent, To, Subject...).
HEADER_BLOCK_MIN_OTHERS = 2
HEADER_BLOCK_MAX_LINES = 12

# "Sent from my iPhone", "Von meinem iPhone gesendet", "Envoyé de mon iPhone", "iPhoneから送信".
_MOBILE_SIGNATURE = re.compile(
    r"^(?:sent from my (?:[\w-]+ ){0,4}(?:iphone|ipad|blackberry|android|phone|mobile(?: device)?|device"
    r"|smartphone|galaxy|tablet|huawei|xiaomi|samsung[\w ]*)"
    r"|sent from (?:mail|outlook|yahoo mail|gmail) for (?:ios|android|windows(?: 10)?|iphone)"
    r"|get outlook for (?:ios|android)"
    r"|von meinem (?:\w+ ){0,2}gesendet|envoy[ée] de mon \w+|enviado desde mi \w+|enviado do meu \w+"
    r"|inviato da(?:l mio)? \w+|verzonden (?:met|vanaf) mijn \w+|skickat från min \w+|wysłane z mojego \w+"
    r"|отправлено с (?:моего )?\w+|\w+から送信|发自我的\s?\w+|從我的 ?\w+傳送)[.!]?$",
    re.IGNORECASE,
)

_RULE = re.compile(r"^[\s\-_=*—–]{5,}$")  # a line of dashes or underscores above a header block
_DIGIT = re.compile(r"\d")


def is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def is_separator(line: str) -> bool:
    """A line that starts an original or forwarded message: everything after it is earlier mail."""
    if len(line) > MAX_MARKER_CHARS or not line.strip():
        return False
    return bool(_SEPARATOR.match(line) or _FORWARD_LINE.match(line))


def is_rule(line: str) -> bool:
    return len(line) <= MAX_MARKER_CHARS and bool(_RULE.match(line))


def is_mobile_signature(line: str) -> bool:
    text = line.strip()
    return 0 < len(text) <= 80 and bool(_MOBILE_SIGNATURE.match(text))


def header_label(line: str) -> str | None:
    """The label of an email header line ("from", "gesendet", "件名"), None if it is not one."""
    if len(line) > MAX_MARKER_CHARS:
        return None
    match = _LABEL.match(line)
    return match.group(1).lower() if match else None


def is_from_line(line: str) -> bool:
    return len(line) <= MAX_MARKER_CHARS and bool(_FROM_LINE.match(line))


def header_block_at(lines: list[str], start: int) -> bool:
    """Does an Outlook-style header block (From, Sent, To, Subject, ...) start at `start`?

    The From line must come first and at least HEADER_BLOCK_MIN_OTHERS other kinds of header
    follow it before a blank line: one "From: someone" sentence is not a header block.
    """
    if not is_from_line(lines[start]):
        return False
    seen: set[str] = set()
    for line in lines[start + 1:start + HEADER_BLOCK_MAX_LINES]:
        if not line.strip():
            break
        if is_from_line(line):
            return False  # a second From: the block, if any, starts there
        label = header_label(line)
        if label:
            seen.add(label)
            if len(seen) >= HEADER_BLOCK_MIN_OTHERS:
                return True
    return False


def _clean(text: str) -> str:
    return " ".join(text.replace("*", " ").split())


def is_attribution(text: str) -> bool:
    """Text (one line, or a wrapped one joined with spaces) naming who wrote the quote below.

    Strict enough to stand alone: with no "> " quote after it, everything below is cut.
    """
    text = _clean(text)
    if not text or len(text) > MAX_MARKER_CHARS or text[-1] not in ":：":
        return False
    wrote_end = ends_with_verb(text)
    if _OPENER.match(text) and (wrote_end or _WROTE_INSIDE.search(text)):
        return True
    if wrote_end and ("@" in text or _DIGIT.search(text)):
        return True
    return text[:-1].endswith("のメール") or bool(_JAPANESE_DATE.match(text) and "@" in text)


def is_loose_attribution(text: str) -> bool:
    """An attribution as clients without a verb write it, trusted only right above a quote.

    Mail.ru "Thu, 26 Jun 2014 14:00 +0400 от Alex <a@example.com>:", Yandex
    "26.06.2014, 14:41, "Alex" <a@example.com>:", Gmail in Russian and Japanese.
    """
    text = _clean(text)
    if not text or len(text) > MAX_MARKER_CHARS or text[-1] not in ":：":
        return False
    return is_attribution(text) or ("@" in text and bool(_DIGIT.search(text)))


def ends_like_attribution(line: str) -> bool:
    """Cheap first test: only lines ending with a colon can end an attribution."""
    text = line.rstrip()
    return bool(text) and len(text) <= MAX_MARKER_CHARS and text[-1] in ":："


def opens_attribution(line: str) -> bool:
    """Does the line begin the way attributions do ("On ", "Am ", "Le ", ...)?"""
    return bool(_OPENER.match(line))


def starts_like_attribution(line: str) -> bool:
    """Could a wrapped attribution start here: an opener word, a date or an address."""
    return opens_attribution(line) or "@" in line or bool(_DIGIT.search(line))


def ends_with_verb(text: str) -> bool:
    """Does the text end with "wrote:" or its equivalent in another language?"""
    return text.rstrip().rstrip(":：").rstrip().lower().endswith(_WROTE_ENDINGS)


def attribution_start(lines: list[str], end: int, *, loose: bool) -> int | None:
    """First line of the attribution that ends at line `end`, or None if it is not one.

    The longest span wins, so an attribution wrapped over lines ("On ..., Name" then
    "<address> wrote:") is taken whole rather than its last line alone; a span may not start
    with a finished sentence of the reply. `loose` when a "> " quote follows right below.
    """
    last = lines[end]
    if not ends_like_attribution(last):
        return None
    earliest = end
    while (earliest > 0 and end - earliest + 1 < MAX_ATTRIBUTION_LINES and lines[earliest - 1].strip()
           and not is_quoted(lines[earliest - 1])):
        earliest -= 1
    window = " ".join(lines[earliest:end + 1])
    # What every rule needs somewhere in the window: most lines ending with a colon have none.
    if not (loose or ends_with_verb(last) or _WROTE_INSIDE.search(window) or "のメール" in last
            or "年" in window):
        return None
    check = is_loose_attribution if loose else is_attribution
    for start in range(earliest, end + 1):
        if start < end:
            first = lines[start].strip()
            if first.endswith((".", "!", "?")) or not starts_like_attribution(first):
                continue
            if any(opens_attribution(line) for line in lines[start + 1:end + 1]):
                continue  # a later line opens the attribution itself
        if check(" ".join(lines[start:end + 1])):
            return start
    return None
