"""Drawing the procedural set (:mod:`elope.data.synthetic`): the part palette, the classes (part
combinations), and one image: background with clutter, decoys and distractors, then the critter."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from elope.data.synthetic_knobs import _ORIGINAL, Difficulty, frame_size

__all__ = [
    "BODY_COLOUR",
    "HEAD_COLOURS",
    "MAX_CLASSES",
    "TAIL_PATTERNS",
    "WING_COLOURS",
    "SyntheticClass",
    "background",
    "critter",
    "decoys",
    "lookalikes",
    "render",
    "scene",
    "synthetic_classes",
]


HEAD_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "blue": (30, 60, 220),
    "yellow": (235, 215, 20),
    "green": (30, 170, 50),
    "magenta": (210, 40, 200),
    "cyan": (20, 200, 210),
}


WING_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (240, 240, 235),
    "black": (25, 25, 25),
    "orange": (245, 130, 20),
    "purple": (110, 40, 160),
}


TAIL_PATTERNS = ("plain", "banded", "dark")


MAX_CLASSES = len(HEAD_COLOURS) * len(WING_COLOURS) * len(TAIL_PATTERNS)


BODY_COLOUR = (150, 120, 90)


DARK = (40, 30, 20)


@dataclass(frozen=True)
class SyntheticClass:
    """The part combination that defines one class."""

    head: str
    wing: str
    tail: str

    @property
    def name(self) -> str:
        return f"{self.head}_{self.wing}_{self.tail}"


def synthetic_classes(classes: int, seed: int = 0) -> list[SyntheticClass]:
    """``classes`` distinct part combinations, drawn by seed from the ``MAX_CLASSES`` possible ones."""
    if not 2 <= classes <= MAX_CLASSES:
        raise ValueError(f"classes must be between 2 and {MAX_CLASSES}, got {classes}")
    combos = list(itertools.product(HEAD_COLOURS, WING_COLOURS, TAIL_PATTERNS))
    order = np.random.default_rng([seed, 7919]).permutation(len(combos))[:classes]
    return [SyntheticClass(*combos[i]) for i in order]


def _jitter(colour: tuple[int, int, int], rng: np.random.Generator, amount: int) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _shade(colour: tuple[int, int, int], contrast: float) -> tuple[int, int, int]:
    """``colour`` moved toward the body colour: ``body + contrast * (colour - body)``."""
    if contrast == 1.0:
        return colour
    return tuple(round(b + contrast * (c - b)) for c, b in zip(colour, BODY_COLOUR, strict=True))


def _frame(size: int | tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` of a side or a pair."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def background(size: int | tuple[int, int], rng: np.random.Generator, clutter: float = 1.0) -> Image.Image:
    """Colour gradient, noise and random shapes; ``size`` is a side or ``(width, height)``."""
    width, height = _frame(size)
    a, b = rng.integers(40, 216, size=(2, 3))
    middle = (a + b) / 2
    if rng.random() < 0.5:  # the gradient runs down the rows, else along the columns
        t = np.linspace(0.0, 1.0, height)[:, None, None]
    else:
        t = np.linspace(0.0, 1.0, width)[None, :, None]
    gradient = a * (1 - t) + b * t
    pixels = np.broadcast_to(gradient, (height, width, 3)) + rng.normal(0.0, 12.0, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    side = min(width, height)
    for _ in range(int(rng.integers(6, 14))):
        x, y = rng.uniform(-0.1, 1.0, 2) * (width, height)
        w, h = rng.uniform(0.05, 0.35, 2) * side
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if clutter != 1.0:  # fade the shape toward the background's mean colour
            colour = tuple(round(m + clutter * (c - m)) for c, m in zip(colour, middle, strict=True))
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.rectangle((x, y, x + w, y + h), fill=colour)
        elif kind == 1:
            draw.ellipse((x, y, x + w, y + h), fill=colour)
        else:
            draw.line((x, y, x + w * rng.choice([-1, 1]), y + h), fill=colour, width=int(rng.integers(1, 4)))
    return image


def _blob(draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, fill: tuple) -> None:
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)


def _part_colours(difficulty: Difficulty) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    contrast = difficulty.part_contrast
    return (
        [_shade(c, contrast) for c in HEAD_COLOURS.values()],
        [_shade(c, contrast) for c in WING_COLOURS.values()],
    )


def decoys(
    image: Image.Image, rng: np.random.Generator, radius: float, difficulty: Difficulty = _ORIGINAL
) -> None:
    """Loose blobs in the part colours, about the size of a head."""
    draw = ImageDraw.Draw(image)
    heads, wings = _part_colours(difficulty)
    colours = [*heads, *wings]
    low, high = difficulty.decoys
    for _ in range(int(rng.integers(low, high + 1))):
        cx, cy = rng.uniform(0.05, 0.95, 2) * image.size
        rx, ry = radius * rng.uniform(0.7, 1.3, 2)
        _blob(draw, cx, cy, rx, ry, colours[int(rng.integers(len(colours)))])


def _distractors(image: Image.Image, rng: np.random.Generator, difficulty: Difficulty) -> None:
    """Partial critters cut by the frame edge: body, wing patch and head in random part colours."""
    draw = ImageDraw.Draw(image)
    heads, wings = _part_colours(difficulty)
    frame_w, frame_h = image.size
    for _ in range(difficulty.distractors):
        width = rng.uniform(*difficulty.object_scale) * min(frame_w, frame_h)
        height = width * rng.uniform(0.4, 0.55)
        along, off = rng.uniform(0.0, 1.0), rng.uniform(-0.3, 0.1) * width
        side = int(rng.integers(4))
        cx, cy = [
            (along * frame_w, off),
            (along * frame_w, frame_h - off),
            (off, along * frame_h),
            (frame_w - off, along * frame_h),
        ][side]
        sign = 1.0 if rng.random() < 0.5 else -1.0  # facing
        body = _jitter(BODY_COLOUR, rng, 15)
        _blob(draw, cx, cy, width / 2, height / 2, body)
        wing = _jitter(wings[int(rng.integers(len(wings)))], rng, 15)
        scale = difficulty.part_scale
        _blob(draw, cx - sign * 0.03 * width, cy, 0.15 * width * scale, 0.1 * width * scale, wing)
        radius = 0.12 * width
        head_x, head_y = cx + sign * 0.45 * width, cy - 0.3 * height
        _blob(draw, head_x, head_y, radius, radius, body)
        head = _jitter(heads[int(rng.integers(len(heads)))], rng, 20)
        _blob(draw, head_x, head_y, radius * scale, radius * scale, head)


def _place(
    rng: np.random.Generator, frame: tuple[int, int], width: float, height: float, placement: str
) -> tuple[float, float]:
    """Top-left corner of a ``width`` × ``height`` critter in the frame: uniform (``anywhere``) or its
    centre within 5 % of the shorter side from the frame's centre (``centred``), from the same two draws."""
    frame_w, frame_h = frame
    u, v = rng.uniform(0.0, 1.0), rng.uniform(0.0, 1.0)
    if placement == "centred":
        reach = 0.05 * min(frame_w, frame_h)
        x0 = (frame_w - width) / 2 + (2 * u - 1) * reach
        y0 = (frame_h - height) / 2 + (2 * v - 1) * reach
        return min(max(x0, 0.0), frame_w - width), min(max(y0, 0.0), frame_h - height)
    return u * (frame_w - width), v * (frame_h - height)


def critter(
    size: int | tuple[int, int],
    spec: SyntheticClass,
    rng: np.random.Generator,
    difficulty: Difficulty = _ORIGINAL,
    *,
    plain: bool = False,
) -> tuple[Image.Image, float]:
    """Draw the critter on a transparent layer; returns the layer and the radius of its head's colour.

    ``size`` is the frame's side or ``(width, height)``; ``plain`` draws a lookalike: the same shape with
    the head, wing patch and tail in the body colour (no class evidence).
    """
    frame = _frame(size)
    layer = Image.new("RGBA", frame, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    width = rng.uniform(*difficulty.object_scale) * min(frame)
    height = width * rng.uniform(0.55, 0.75)
    x0, y0 = _place(rng, frame, width, height, "anywhere" if plain else difficulty.placement)
    facing_right = bool(rng.random() < 0.5)
    scale, contrast = difficulty.part_scale, difficulty.part_contrast

    def x(u: float) -> float:  # along the critter (0 = tail end, 1 = beak tip) -> pixels
        return x0 + (u if facing_right else 1.0 - u) * width

    def y(v: float) -> float:  # 0 = top, 1 = feet
        return y0 + v * height

    body = (*_jitter(BODY_COLOUR, rng, 15), 255)
    dark = (*DARK, 255)
    for u in (0.45, 0.6):  # legs
        draw.line((x(u), y(0.65), x(u), y(1.0)), fill=dark, width=max(1, round(width / 30)))
    tail = [(x(0.0), y(0.12)), (x(0.0), y(0.58)), (x(0.32), y(0.42))]
    draw.polygon(tail, fill=dark if spec.tail == "dark" and not plain else body)
    if spec.tail == "banded" and not plain:
        band = max(1, round(width / 25 * scale))
        for u in (0.05, 0.15):
            draw.line((x(u), y(0.18), x(u), y(0.52)), fill=dark, width=band)
    draw.ellipse((min(x(0.2), x(0.8)), y(0.2), max(x(0.2), x(0.8)), y(0.75)), fill=body)
    wing = (*_jitter(_shade(WING_COLOURS[spec.wing], contrast), rng, 15), 255)
    wing_x, wing_y = x(rng.uniform(0.45, 0.52)), y(rng.uniform(0.42, 0.5))
    if not plain:
        _blob(draw, wing_x, wing_y, 0.15 * width * scale, 0.1 * width * scale, wing)
    radius = 0.12 * width
    head_x, head_y = x(0.82), y(0.2) + 0.3 * radius
    head = body if plain else (*_jitter(_shade(HEAD_COLOURS[spec.head], contrast), rng, 20), 255)
    beak = [(x(0.92), head_y - 0.35 * radius), (x(1.0), head_y), (x(0.92), head_y + 0.35 * radius)]
    draw.polygon(beak, fill=dark)
    if scale < 1.0:  # the head keeps its size; a smaller coloured crown carries the class
        _blob(draw, head_x, head_y, radius, radius, body)
    _blob(draw, head_x, head_y, radius * scale, radius * scale, head)
    return layer, radius * scale


def lookalikes(
    image: Image.Image, spec: SyntheticClass, rng: np.random.Generator, difficulty: Difficulty
) -> None:
    """``difficulty.lookalikes`` plain critters (:func:`critter` with ``plain=True``) on the background."""
    for _ in range(difficulty.lookalikes):
        layer, _ = critter(image.size, spec, rng, difficulty, plain=True)
        image.paste(layer, (0, 0), layer)


def scene(
    size: int, spec: SyntheticClass, rng: np.random.Generator, difficulty: Difficulty = _ORIGINAL
) -> tuple[Image.Image, Image.Image]:
    """The background (with decoys, distractors and lookalikes) and the critter's transparent layer, not
    yet pasted. ``size`` is the frame's longer side (its shape: ``difficulty.aspect``)."""
    frame = frame_size(size, difficulty.aspect)
    image = background(frame, rng, difficulty.clutter)
    layer, radius = critter(frame, spec, rng, difficulty)
    decoys(image, rng, radius, difficulty)
    if difficulty.distractors:
        _distractors(image, rng, difficulty)
    lookalikes(image, spec, rng, difficulty)
    return image, layer


def render(
    size: int, spec: SyntheticClass, rng: np.random.Generator, difficulty: Difficulty = _ORIGINAL
) -> tuple[Image.Image, tuple[int, ...]]:
    """One image (the frame's longer side ``size``) and the critter's exact box (x1, y1, x2, y2)."""
    image, layer = scene(size, spec, rng, difficulty)
    box = layer.getchannel("A").getbbox()  # exact pixel extent, right/bottom exclusive
    image.paste(layer, (0, 0), layer)
    return image, box
