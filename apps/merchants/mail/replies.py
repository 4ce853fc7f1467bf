"""The newest reply of an email, with quoted history folded away: from its text/plain body line
by line, and from its HTML body by cutting the quote container its mail client wrote."""

from __future__ import annotations

from dataclasses import dataclass

from apps.merchants.mail import markers
from apps.merchants.mail.headers import text_storable
from apps.merchants.mail.html_quotes import html_reply


@dataclass(frozen=True)
class Reply:
    text: str
    html: str  # sanitised; "" when the message has no HTML body
    has_quoted_history: bool


def reply_extract(text: str, html: str = "") -> Reply:
    """The newest reply of a message whose bodies are `text` and `html`.

    Reply.text comes from the text body when there is one, else from the HTML; Reply.html is
    the sanitised HTML up to its quote. A message that is nothing but quote (a bare forward)
    is returned whole: showing an empty reply would hide all of it.
    """
    text = text_storable(text or "")
    html = text_storable(html or "")
    html_text, reply_html, html_quoted = html_reply(html) if html.strip() else ("", "", False)
    if text.strip():
        reply_text, text_quoted = text_reply(text)
    else:
        reply_text, text_quoted = html_text, False
    return Reply(text=reply_text, html=reply_html, has_quoted_history=text_quoted or html_quoted)


def text_reply(text: str) -> tuple[str, bool]:
    """(newest reply, whether quoted history was removed) of a text/plain body."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    count = len(lines)
    # next_filled[i]: the first non-blank line at or after i, so each lookahead is one step.
    next_filled = [count] * (count + 1)
    for index in range(count - 1, -1, -1):
        next_filled[index] = index if lines[index].strip() else next_filled[index + 1]

    kept: list[int | None] = []  # line numbers; None marks where a quote was taken out
    removed = False
    cut = False
    index = 0
    while index < count:
        line = lines[index]
        if markers.is_quoted(line):
            removed = True
            _mark_gap(kept)
            index += 1
            continue
        if markers.is_separator(line) or markers.header_block_at(lines, index):
            cut = True
            break
        if markers.ends_like_attribution(line):
            following = next_filled[index + 1]
            above_quote = following < count and markers.is_quoted(lines[following])
            start = markers.attribution_start(lines, index, loose=above_quote)
            if start is not None:
                while kept and (kept[-1] is None or kept[-1] >= start):
                    kept.pop()
                removed = True
                if not above_quote:
                    cut = True
                    break
                _mark_gap(kept)
                index = following
                continue
        kept.append(index)
        index += 1
        if markers.is_mobile_signature(line):
            # The phone puts its line last: whatever follows is the message replied to.
            break
    if next_filled[index] < count:  # cut short: what was left below is history
        removed = True
    if cut:  # the rule Outlook draws above its header block goes with it
        while kept and (kept[-1] is None or not lines[kept[-1]].strip() or markers.is_rule(lines[kept[-1]])):
            kept.pop()
    reply = _join(lines, kept)
    if not reply:  # nothing but quote: show it all rather than nothing
        return text.strip(), False
    return reply, removed


def _mark_gap(kept: list[int | None]) -> None:
    if kept and kept[-1] is not None:
        kept.append(None)


def _join(lines: list[str], kept: list[int | None]) -> str:
    """The kept lines; where a quote was taken out, the blank lines around it become one."""
    out: list[str] = []
    gap = False
    for index in kept:
        if index is None:
            gap = True
            continue
        line = lines[index]
        if gap:
            while out and not out[-1].strip():
                out.pop()
            if not line.strip():
                continue
            if out:
                out.append("")
            gap = False
        out.append(line)
    return "\n".join(out).strip()
