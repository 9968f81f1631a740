"""A terminal screen, as tmux captured it with colours (``capture-pane -e``), drawn as a PNG.

The picture is the real screen of a real run: every cell's character, colours, bold and reverse
video come from the capture; only the font is ours (DejaVu Sans Mono when installed).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu")
FONT_SIZE = 15
# The xterm palette for the 16 basic colours.
BASIC = [
    (0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0), (0, 0, 238), (205, 0, 205),
    (0, 205, 205), (229, 229, 229), (127, 127, 127), (255, 0, 0), (0, 255, 0), (255, 255, 0),
    (92, 92, 255), (255, 0, 255), (0, 255, 255), (255, 255, 255),
]
FOREGROUND, BACKGROUND = (229, 229, 229), (24, 24, 24)
SGR = re.compile(r"\x1b\[([0-9;:]*)m")
OTHER_ESCAPE = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07|[()][0-9A-Za-z])")

Colour = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Style:
    fg: Colour | None = None
    bg: Colour | None = None
    bold: bool = False
    reverse: bool = False


def palette(index: int) -> Colour:
    """The xterm 256-colour palette."""
    if index < 16:
        return BASIC[index]
    if index < 232:
        index -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return steps[index // 36], steps[(index // 6) % 6], steps[index % 6]
    level = 8 + 10 * (index - 232)
    return level, level, level


def _apply(style: Style, params: list[int]) -> Style:
    i = 0
    while i < len(params):
        p = params[i]
        if p == 0:
            style = Style()
        elif p == 1:
            style = replace(style, bold=True)
        elif p == 22:
            style = replace(style, bold=False)
        elif p == 7:
            style = replace(style, reverse=True)
        elif p == 27:
            style = replace(style, reverse=False)
        elif 30 <= p <= 37:
            style = replace(style, fg=BASIC[p - 30])
        elif 90 <= p <= 97:
            style = replace(style, fg=BASIC[p - 90 + 8])
        elif 40 <= p <= 47:
            style = replace(style, bg=BASIC[p - 40])
        elif 100 <= p <= 107:
            style = replace(style, bg=BASIC[p - 100 + 8])
        elif p == 39:
            style = replace(style, fg=None)
        elif p == 49:
            style = replace(style, bg=None)
        elif p in (38, 48) and i + 1 < len(params):
            if params[i + 1] == 5 and i + 2 < len(params):
                colour = palette(params[i + 2])
                i += 2
            elif params[i + 1] == 2 and i + 4 < len(params):
                colour = (params[i + 2], params[i + 3], params[i + 4])
                i += 4
            else:
                break
            style = replace(style, fg=colour) if p == 38 else replace(style, bg=colour)
        i += 1
    return style


def parse(ansi: str) -> list[list[tuple[str, Style]]]:
    """Rows of (character, style) cells."""
    rows: list[list[tuple[str, Style]]] = []
    style = Style()
    for line in ansi.split("\n"):
        cells: list[tuple[str, Style]] = []
        position = 0
        for match in SGR.finditer(line):
            text = OTHER_ESCAPE.sub("", line[position:match.start()])
            cells.extend((ch, style) for ch in text)
            params = [int(p) if p else 0 for p in re.split("[;:]", match.group(1))]
            style = _apply(style, params)
            position = match.end()
        cells.extend((ch, style) for ch in OTHER_ESCAPE.sub("", line[position:]))
        rows.append(cells)
    while rows and not rows[-1]:
        rows.pop()
    return rows


def _font(bold: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:

    name = "DejaVuSansMono-Bold.ttf" if bold else "DejaVuSansMono.ttf"
    for directory in FONT_DIRS:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return ImageFont.truetype(path, FONT_SIZE)
    return ImageFont.load_default(FONT_SIZE)


def render(ansi: str, png: Path, columns: int) -> Path:
    """Draw the captured screen ``ansi`` (``columns`` wide) into ``png``."""
    rows = parse(ansi)
    regular, bold = _font(False), _font(True)
    cell_w = int(regular.getlength("M"))
    cell_h = FONT_SIZE + 5
    pad = 8
    image = Image.new("RGB", (columns * cell_w + 2 * pad, max(len(rows), 1) * cell_h + 2 * pad),
                      BACKGROUND)
    draw = ImageDraw.Draw(image)
    for y, cells in enumerate(rows):
        for x, (ch, style) in enumerate(cells):
            fg, bg = style.fg or FOREGROUND, style.bg
            if style.reverse:
                fg, bg = bg or BACKGROUND, fg
            box = (pad + x * cell_w, pad + y * cell_h)
            if bg is not None:
                draw.rectangle([box, (box[0] + cell_w - 1, box[1] + cell_h - 1)], fill=bg)
            if not ch.isspace():
                draw.text((box[0], box[1] + 2), ch, fill=fg, font=bold if style.bold else regular)
    png.parent.mkdir(parents=True, exist_ok=True)
    image.save(png)
    return png


def keep(ansi: str, directory: Path, name: str, columns: int, *, publish: bool = False) -> Path:
    """Render into ``directory/name``; if ``publish``, also into ``$PUBSUBD_SCREENSHOT_DIR``
    when set (the pictures in ``docs/`` are made that way)."""
    png = render(ansi, directory / name, columns)
    shots = os.environ.get("PUBSUBD_SCREENSHOT_DIR")
    if publish and shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(shots) / name)
    return png
