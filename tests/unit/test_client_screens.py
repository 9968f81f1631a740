"""Reading what terminal clients recorded: Poezio's log format, tmux's coloured captures."""

from __future__ import annotations

from pathlib import Path

from clients.poezio import info_text, parse_log, tab_text
from clients.screenshot import BASIC, palette, parse, render
from clients.tmux import compact
from PIL import Image

POEZIO_LOG = (
    "MR 20261204T19:28:01Z 000 <tess> \u00a0subscribe http://127.0.0.1:1/a.xml\n"
    "MR 20261204T19:28:02Z 002 <Harbour News> \u00a0Lighthouse keeper retires\n"
    " http://127.0.0.1:1/a/0.html\n"
    " The whole story.\n"
    "MI 20261204T19:28:03Z 000 tess@localhost got online\n"
)


def test_poezio_log_messages_with_their_continuation_lines() -> None:
    assert parse_log(POEZIO_LOG) == [
        ("tess", "subscribe http://127.0.0.1:1/a.xml"),
        ("Harbour News", "Lighthouse keeper retires\nhttp://127.0.0.1:1/a/0.html\n"
                         "The whole story."),
        ("", "tess@localhost got online"),
    ]


def test_wrapped_poezio_text_is_found_whole() -> None:
    screen = (" 0.Roster │roster │19:27:55 Info> Auto-reconnec\n"
              "          │       │               ting.\n")
    assert "Auto-reconnecting." in info_text(screen)
    conversation = (" 1.feeds │19:28 feeds> Subscribed to\n"
                    "         │             http://x/a.xml\n")
    assert "Subscribedtohttp://x/a.xml" in tab_text(conversation)


def test_compact_screens_keep_one_blank_line_per_run() -> None:
    assert compact("a\n\n\n\nb   \n\n\n") == "a\n\nb"


def test_colours_bold_and_reverse_from_a_tmux_capture() -> None:
    rows = parse("\x1b[1;31mA\x1b[0mb\n\x1b[38;5;196;48;2;1;2;3mC\x1b[7mD\x1b[27;39;49m\n\n")
    assert len(rows) == 2
    (a, a_style), (b, b_style) = rows[0]
    assert (a, a_style.fg, a_style.bold) == ("A", BASIC[1], True)
    assert (b, b_style.fg, b_style.bold) == ("b", None, False)
    (c, c_style), (d, d_style) = rows[1]
    assert c_style.fg == palette(196) == (255, 0, 0) and c_style.bg == (1, 2, 3)
    assert d_style.reverse and d == "D"


def test_render_draws_the_cells(tmp_path: Path) -> None:
    png = render("\x1b[44m  \x1b[0m hello", tmp_path / "s.png", 10)
    with Image.open(png) as image:
        assert image.width > 10 * 6
        assert (0, 0, 238) in {image.getpixel((x, 12)) for x in range(8, 20)}
