"""Model output rendered as markdown never lets its own HTML through."""

from __future__ import annotations

import random
import re
import time
from html.parser import HTMLParser

import pytest

from playground.render import render_markdown

ALLOWED = {
    "p": set(),
    "br": set(),
    "h3": set(),
    "h4": set(),
    "h5": set(),
    "h6": set(),
    "strong": set(),
    "em": set(),
    "del": set(),
    "code": {"class"},
    "pre": set(),
    "ul": set(),
    "ol": {"start"},
    "li": set(),
    "blockquote": set(),
    "hr": set(),
    "table": set(),
    "thead": set(),
    "tbody": set(),
    "tr": set(),
    "th": {"class"},
    "td": {"class"},
    "a": {"href", "rel", "target"},
    "div": {"class"},
    "span": {"class"},
    "button": {"type", "class", "aria-label"},
}
CLASSES = {"code-block", "code-head", "code-lang", "copy-code", "table-scroll", "align-right", "align-center"}
LANGUAGE = re.compile(r"^language-[A-Za-z0-9_+#.-]{1,30}$")


class Checker(HTMLParser):
    """Collects every tag and attribute, and the text a reader would see."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED:
            self.problems.append(f"tag <{tag}>")
            return
        for name, value in attrs:
            value = value or ""
            if name not in ALLOWED[tag]:
                self.problems.append(f"attribute {name} on <{tag}>")
            elif name == "class" and value not in CLASSES and not LANGUAGE.match(value):
                self.problems.append(f"class {value!r}")
            elif name == "href" and not re.match(r"^https?://[^\s\"'<>`]+$", value):
                self.problems.append(f"href {value!r}")
            elif name == "start" and not value.isdigit():
                self.problems.append(f"start {value!r}")
            elif name in ("rel", "target", "type", "aria-label") and value not in (
                "nofollow noopener noreferrer",
                "_blank",
                "button",
                "Copy code",
            ):
                self.problems.append(f"{name} {value!r}")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.problems.append("comment")

    def handle_decl(self, decl: str) -> None:
        self.problems.append("declaration")

    def handle_pi(self, data: str) -> None:
        self.problems.append("processing instruction")

    def unknown_decl(self, data: str) -> None:
        self.problems.append("CDATA")


def check(text: str) -> Checker:
    checker = Checker()
    checker.feed(str(render_markdown(text)))
    checker.close()
    assert checker.problems == [], (text, checker.problems)
    return checker


NASTY = [
    "<script>window.__xss=1</script>",
    "<img src=x onerror=window.__xss=1>",
    "<svg onload=alert(1)>",
    "<iframe src=javascript:alert(1)></iframe>",
    '<a href="javascript:alert(1)">click</a>',
    "<!-- comment --><![CDATA[x]]><?php echo 1 ?><!DOCTYPE html>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    '```"><script>alert(1)</script>\nbody\n```',
    "``` onmouseover=alert(1)\ncode\n```",
    "```python\n</code></pre><script>alert(1)</script>\n```",
    "`</code><script>alert(1)</script>`",
    "[click](javascript:alert(1))",
    '[click](https://example.com/" onmouseover="alert(1))',
    "[click](https://example.com/`<script>`)",
    "[<img src=x onerror=alert(1)>](https://example.com/)",
    "[`x`](https://a.example/`y`)",
    "**<b onclick=alert(1)>bold</b>**",
    "*<i>it</i>* _<u>u</u>_ ~~<s>s</s>~~",
    "# <script>alert(1)</script>",
    "- <img src=x onerror=alert(1)>\n  - <script>x</script>",
    "1. <style>body{}</style>",
    "> <script>alert(1)</script>\n> > <img src=x onerror=1>",
    "| <b>a</b> | b |\n|---|:-:|\n| <img src=x onerror=1> | \\| |",
    "\x00<scr\x00ipt>alert(1)</script>",
    "\ue000 0\ue001 <script>\ue0000\ue001",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "\"'><img src=x onerror=alert(1)>",
    "<math><mi xlink:href=javascript:alert(1)>x</mi></math>",
    ">" * 50 + " <script>deep</script>",
    "  " * 30 + "- <script>deep</script>",
]


@pytest.mark.parametrize("text", NASTY)
def test_it_shows_markup_in_an_answer_as_text_and_never_as_markup(text: str) -> None:
    checker = check(text)
    visible = "".join(checker.text)
    for dangerous in ("<script>", "<img src=x onerror", "<svg onload=alert(1)>", "<iframe"):
        if dangerous in text and "\x00" not in text:
            assert dangerous in visible


def test_random_mixes_of_markdown_and_markup_stay_safe() -> None:
    pieces = [
        "<script>",
        "</script>",
        "<img src=x onerror=alert(1)>",
        "**",
        "*",
        "_",
        "__",
        "~~",
        "`",
        "```",
        "```js\n",
        "\n",
        "\n\n",
        "# ",
        "- ",
        "1. ",
        "> ",
        "|",
        "|---|",
        "[a](https://x.example/)",
        "[",
        "](",
        ")",
        "javascript:",
        '"',
        "'",
        "&amp;",
        "&",
        "<",
        ">",
        "    ",
        "text",
        "\ue000",
        "\x00",
        "\r",
    ]
    rng = random.Random(20240601)
    for _ in range(400):
        check("".join(rng.choice(pieces) for _ in range(rng.randint(1, 40))))


def test_it_renders_the_markdown_an_answer_usually_has() -> None:
    text = (
        "## Tides\n\nThe **Moon** pulls the *sea*; see `tide()` and ~~old~~ [NOAA](https://tidesandcurrents.noaa.gov/).\n"
        "A new line.\n\n- one\n- two\n  1. nested\n\n3. three\n4. four\n\n> quoted\n\n---\n\n"
        "```python\nprint('<hi>')\n```\n\n| a | b |\n|---|--:|\n| 1 | 2 |"
    )
    rendered = str(render_markdown(text))
    assert "<h4>Tides</h4>" in rendered
    assert (
        "<p>The <strong>Moon</strong> pulls the <em>sea</em>; see <code>tide()</code> and <del>old</del> "
        '<a href="https://tidesandcurrents.noaa.gov/" rel="nofollow noopener noreferrer" target="_blank">'
        "NOAA</a>.<br>\n"
        "A new line.</p>"
    ) in rendered
    assert "<ul><li>one</li><li>two\n<ol><li>nested</li></ol></li></ul>" in rendered
    assert '<ol start="3"><li>three</li><li>four</li></ol>' in rendered
    assert "<blockquote><p>quoted</p></blockquote>" in rendered and "<hr>" in rendered
    assert '<span class="code-lang">python</span>' in rendered
    assert '<button type="button" class="copy-code" aria-label="Copy code">Copy</button>' in rendered
    assert '<pre><code class="language-python">print(&#x27;&lt;hi&gt;&#x27;)</code></pre>' in rendered
    assert '<th>a</th><th class="align-right">b</th>' in rendered and '<td class="align-right">2</td>' in rendered
    check(text)


def test_an_unfinished_code_block_runs_to_the_end_of_the_answer() -> None:
    rendered = str(render_markdown("Here:\n\n```bash\necho <hi>"))
    assert '<pre><code class="language-bash">echo &lt;hi&gt;</code></pre>' in rendered


def test_snake_case_and_lone_stars_are_left_alone() -> None:
    assert str(render_markdown("call my_func_name with 2 * 3 * 4")) == "<p>call my_func_name with 2 * 3 * 4</p>"


@pytest.mark.parametrize("text", ["**a ", "- \n\n", "`", "[a](http://", "1. x\n", "_a ", "> "])
def test_it_stays_fast_on_pathological_input(text: str) -> None:
    started = time.perf_counter()
    check(text * 10_000)
    # Quadratic behaviour would take minutes here.
    assert time.perf_counter() - started < 5
