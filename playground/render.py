"""Model output as HTML that cannot run: escape everything, then format a small markdown subset.

Model output is untrusted. `render_markdown` never passes any of its input's
markup through: every character of the text ends up HTML-escaped, and the
only elements in the result are the ones this module writes itself:

    p br h3 h4 h5 h6 strong em del code pre ul ol li blockquote hr
    table thead tbody tr th td a div span button

with these attributes only: `class` (a fixed vocabulary, plus
`language-<lang>` where <lang> matches [A-Za-z0-9_+#.-]{1,30}), `start` (an
integer) on `ol`, `href` (an http or https URL, quoted and escaped) with
fixed `rel` and `target` on `a`, and `type` / `aria-label` on the copy
button of a code block.

Supported: paragraphs (a single newline is a line break), ATX headings,
fenced code blocks with a language, inline code, bold, italic,
strikethrough, lists (nested by indentation), block quotes, horizontal
rules, pipe tables and [text](http(s) url) links.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from django.utils.safestring import SafeString, mark_safe

# Nesting (quotes within lists within quotes…) deeper than this is shown as text.
MAX_DEPTH = 8
# Inline spans longer than this are not formatted: keeps every regex linear.
_SPAN = 250

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})[ \t]*([^`]*?)[ \t]*$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_QUOTE = re.compile(r"^ {0,3}> ?(.*)$")
_LIST_ITEM = re.compile(r"^( *)([-*+]|\d{1,9}[.)])( {1,4}|$)(.*)$")
_TABLE_SEPARATOR = re.compile(r"^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_LANGUAGE = re.compile(r"^[A-Za-z0-9_+#.-]{1,30}$")

_CODE_SPAN = re.compile(r"(`+)([^`\n](?:.{0,%d}?[^`\n])?)\1(?!`)" % _SPAN, re.DOTALL)
_LINK = re.compile(r"\[([^\[\]\n]{1,500})\]\((https?://[^\s()<>\"'`\\\ue000\ue001]{1,2000})\)")
_BOLD_STAR = re.compile(r"\*\*(?=[^\s<>])([^\n<>]{0,%d}?[^\s<>])\*\*" % _SPAN)
_BOLD_UNDERSCORE = re.compile(r"(?<!\w)__(?=[^\s<>])([^\n<>]{0,%d}?[^\s<>])__(?!\w)" % _SPAN)
_ITALIC_STAR = re.compile(r"(?<![*\w])\*(?=[^\s*<>])([^\n*<>]{0,%d}?[^\s*<>])\*(?![*\w])" % _SPAN)
_ITALIC_UNDERSCORE = re.compile(r"(?<![_\w])_(?=[^\s_<>])([^\n_<>]{0,%d}?[^\s_<>])_(?![_\w])" % _SPAN)
_STRIKE = re.compile(r"~~(?=[^\s~<>])([^\n~<>]{0,%d}?[^\s~<>])~~" % _SPAN)
# Inline code and links are swapped for these markers while the rest of the
# text is escaped and formatted; the input's own private-use characters are
# replaced first, so a marker can only come from here.
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"
_MARKER = re.compile(f"{_MARK_OPEN}(\\d+){_MARK_CLOSE}")
_PRIVATE = re.compile("[\ue000\ue001]")


def render_markdown(text: str) -> SafeString:
    """The answer as safe HTML (see the module docstring for exactly what may appear)."""
    lines = _normalize(text).split("\n")
    return mark_safe("\n".join(_Blocks(lines, depth=0).render()))


def _normalize(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")
    return _PRIVATE.sub("\ufffd", text).expandtabs(4)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _blank(line: str) -> bool:
    return not line.strip()


@dataclass
class _Inline:
    """Formats one run of text: code spans and links first, then emphasis on the escaped rest."""

    pieces: list[str] = field(default_factory=list)

    def render(self, raw: str) -> str:
        raw = _CODE_SPAN.sub(self._code, raw)
        raw = _LINK.sub(self._link, raw)
        escaped = html.escape(raw, quote=True)
        escaped = _BOLD_STAR.sub(r"<strong>\1</strong>", escaped)
        escaped = _BOLD_UNDERSCORE.sub(r"<strong>\1</strong>", escaped)
        escaped = _ITALIC_STAR.sub(r"<em>\1</em>", escaped)
        escaped = _ITALIC_UNDERSCORE.sub(r"<em>\1</em>", escaped)
        escaped = _STRIKE.sub(r"<del>\1</del>", escaped)
        return _MARKER.sub(lambda m: self.pieces[int(m.group(1))], escaped)

    def _keep(self, fragment: str) -> str:
        self.pieces.append(fragment)
        return f"{_MARK_OPEN}{len(self.pieces) - 1}{_MARK_CLOSE}"

    def _code(self, match: re.Match[str]) -> str:
        body = match.group(2)
        if body.startswith(" ") and body.endswith(" ") and body.strip():
            body = body[1:-1]
        return self._keep(f"<code>{html.escape(body, quote=True)}</code>")

    def _link(self, match: re.Match[str]) -> str:
        label = _Inline(self.pieces).render(match.group(1))
        href = html.escape(match.group(2), quote=True)
        return self._keep(f'<a href="{href}" rel="nofollow noopener noreferrer" target="_blank">{label}</a>')


def _inline(raw: str) -> str:
    return _Inline().render(raw)


class _Blocks:
    """A block-level pass over lines; lists and quotes recurse with depth + 1."""

    def __init__(self, lines: list[str], depth: int) -> None:
        self.lines = lines
        self.depth = depth
        self.i = 0
        self.out: list[str] = []
        # next_text[j]: the first non-blank line at or after j (len(lines) if none).
        self.next_text = [len(lines)] * (len(lines) + 1)
        for j in range(len(lines) - 1, -1, -1):
            self.next_text[j] = self.next_text[j + 1] if _blank(lines[j]) else j

    def render(self) -> list[str]:
        if self.depth > MAX_DEPTH:
            text = "\n".join(self.lines).strip("\n")
            return [f"<p>{html.escape(text, quote=True)}</p>"] if text else []
        parsers: list[Callable[[], bool]] = [
            self._fence,
            self._heading,
            self._rule,
            self._quote,
            self._table,
            self._list,
        ]
        while self.i < len(self.lines):
            if _blank(self.lines[self.i]):
                self.i += 1
                continue
            if not any(parse() for parse in parsers):
                self._paragraph()
        return self.out

    def _starts_block(self, index: int) -> bool:
        line = self.lines[index]
        return bool(
            _FENCE.match(line)
            or _HEADING.match(line)
            or _RULE.match(line)
            or _QUOTE.match(line)
            or _LIST_ITEM.match(line)
            or self._table_at(index)
        )

    def _fence(self) -> bool:
        match = _FENCE.match(self.lines[self.i])
        if not match:
            return False
        indent, fence, info = len(match.group(1)), match.group(2), match.group(3)
        closing = re.compile(r"^ {0,3}%s{%d,}[ \t]*$" % (re.escape(fence[0]), len(fence)))
        body: list[str] = []
        self.i += 1
        while self.i < len(self.lines) and not closing.match(self.lines[self.i]):
            line = self.lines[self.i]
            body.append(line[min(indent, _indent(line)) :])
            self.i += 1
        self.i += 1
        self.out.append(code_block("\n".join(body), info))
        return True

    def _heading(self) -> bool:
        match = _HEADING.match(self.lines[self.i])
        if not match:
            return False
        level = min(len(match.group(1)) + 2, 6)
        self.out.append(f"<h{level}>{_inline(match.group(2) or '')}</h{level}>")
        self.i += 1
        return True

    def _rule(self) -> bool:
        if not _RULE.match(self.lines[self.i]):
            return False
        self.out.append("<hr>")
        self.i += 1
        return True

    def _quote(self) -> bool:
        if not _QUOTE.match(self.lines[self.i]):
            return False
        inner: list[str] = []
        while self.i < len(self.lines):
            match = _QUOTE.match(self.lines[self.i])
            if match:
                inner.append(match.group(1))
            elif inner and not _blank(inner[-1]) and not _blank(self.lines[self.i]) and not self._starts_block(self.i):
                inner.append(self.lines[self.i])
            else:
                break
            self.i += 1
        body = "\n".join(_Blocks(inner, self.depth + 1).render())
        self.out.append(f"<blockquote>{body}</blockquote>")
        return True

    def _table_at(self, index: int) -> bool:
        return (
            "|" in self.lines[index]
            and index + 1 < len(self.lines)
            and bool(_TABLE_SEPARATOR.match(self.lines[index + 1]))
            and "-" in self.lines[index + 1]
        )

    def _table(self) -> bool:
        if not self._table_at(self.i):
            return False
        header = _cells(self.lines[self.i])
        aligns = [_alignment(cell) for cell in _cells(self.lines[self.i + 1])]
        self.i += 2
        rows: list[list[str]] = []
        while self.i < len(self.lines) and "|" in self.lines[self.i] and not _blank(self.lines[self.i]):
            rows.append(_cells(self.lines[self.i]))
            self.i += 1
        width = len(header)
        aligns = (aligns + [""] * width)[:width]

        def row(cells: list[str], tag: str) -> str:
            cells = (cells + [""] * width)[:width]
            rendered = "".join(
                f"<{tag}{_align_class(align)}>{_inline(cell)}</{tag}>"
                for cell, align in zip(cells, aligns, strict=True)
            )
            return f"<tr>{rendered}</tr>"

        body = "".join(row(cells, "td") for cells in rows)
        self.out.append(
            f'<div class="table-scroll"><table><thead>{row(header, "th")}</thead><tbody>{body}</tbody></table></div>'
        )
        return True

    def _list(self) -> bool:
        first = _LIST_ITEM.match(self.lines[self.i])
        if not first:
            return False
        indent = len(first.group(1))
        ordered = first.group(2)[0].isdigit()
        items: list[str] = []
        loose = False
        while self.i < len(self.lines):
            match = _LIST_ITEM.match(self.lines[self.i])
            if not match or len(match.group(1)) > indent + 1 or match.group(2)[0].isdigit() != ordered:
                break
            content, had_blank = self._item_lines(match)
            loose = loose or had_blank
            items.append(_content_html(content, self.depth))
        tag = "ol" if ordered else "ul"
        start = ""
        if ordered:
            number = int(first.group(2)[:-1])
            start = f' start="{number}"' if number != 1 else ""
        rendered = "".join(f"<li>{_tighten(item, loose)}</li>" for item in items)
        self.out.append(f"<{tag}{start}>{rendered}</{tag}>")
        return True

    def _item_lines(self, match: re.Match[str]) -> tuple[list[str], bool]:
        """The lines of the item starting at self.i, dedented; and whether a blank line separated them."""
        indent = len(match.group(1))
        content_indent = indent + len(match.group(2)) + max(len(match.group(3)), 1)
        lines = [match.group(4)]
        had_blank = False
        self.i += 1
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if _blank(line):
                following = self.next_text[self.i]
                if following == len(self.lines) or _indent(self.lines[following]) < indent + 2:
                    break
                lines.append("")
                had_blank = True
            elif _indent(line) >= indent + 2:
                lines.append(line[min(_indent(line), content_indent) :])
            elif not _blank(lines[-1]) and not self._starts_block(self.i):
                # A lazy continuation of the item's paragraph.
                lines.append(line.strip())
            else:
                break
            self.i += 1
        return lines, had_blank

    def _paragraph(self) -> None:
        lines = [self.lines[self.i].strip()]
        self.i += 1
        while self.i < len(self.lines) and not _blank(self.lines[self.i]) and not self._starts_block(self.i):
            lines.append(self.lines[self.i].strip())
            self.i += 1
        self.out.append("<p>" + _inline("\n".join(lines)).replace("\n", "<br>\n") + "</p>")


def _content_html(lines: list[str], depth: int) -> str:
    return "\n".join(_Blocks(lines, depth + 1).render())


def _tighten(item: str, loose: bool) -> str:
    """A tight list item's single paragraph loses its <p>, as in CommonMark."""
    if loose or not item.startswith("<p>"):
        return item
    end = item.find("</p>")
    return item[3:end] + item[end + 4 :]


def code_block(code: str, info: str) -> str:
    """A fenced block with its language label (the info string, escaped) and a copy button."""
    words = info.split()
    language = words[0] if words and _LANGUAGE.match(words[0]) else ""
    css = f' class="language-{language}"' if language else ""
    label = f'<span class="code-lang">{html.escape(info[:40] or "code", quote=True)}</span>'
    return (
        f'<div class="code-block"><div class="code-head">{label}'
        '<button type="button" class="copy-code" aria-label="Copy code">Copy</button></div>'
        f"<pre><code{css}>{html.escape(code, quote=True)}</code></pre></div>"
    )


def _cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)]


def _alignment(cell: str) -> str:
    cell = cell.strip()
    if cell.startswith(":") and cell.endswith(":"):
        return "center"
    if cell.endswith(":"):
        return "right"
    return ""


def _align_class(align: str) -> str:
    return f' class="align-{align}"' if align else ""
