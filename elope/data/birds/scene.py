"""One image of the bird family: :func:`sample_scene` draws everything but the species, and
:func:`render_scene` draws the species' bird into it.

The split is what makes the class parts the only evidence: :func:`sample_scene` takes every random draw
(background photograph, clutter, lookalikes, occluders, pose, plumage, size, place, lighting) from the
image's generator without knowing the class, and :func:`render_scene` is a pure function of the scene and
the species. Two species rendered into one scene differ only where their class parts are drawn.

Drawing order: photograph, clutter and decoy berries, lookalikes (each with its perch), the bird's perch,
the bird (shaded by a directional light and a feather-like texture), occluders in front, then the
lighting of the whole frame (white balance, brightness, gamma, a gradient) and sensor noise. The box is
the exact extent of every pixel the bird touched (alpha > 0), before the occluders: an occluder never
shrinks it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from elope.data.birds import props
from elope.data.birds.backgrounds import background
from elope.data.birds.nuisance import sample_placement, sample_plumage, sample_pose
from elope.data.birds.presets import BirdPreset
from elope.data.birds.raster import Layer, Placement, composite, rasterize
from elope.data.birds.shapes import Part, Plumage, Pose, bird_parts, feet
from elope.data.birds.species import LOOKALIKE, Species

__all__ = ["Rendered", "Scene", "render_scene", "sample_scene"]


@dataclass
class Scene:
    """Everything of an image but the species: the backdrop (photograph, clutter, lookalikes, perch:
    H x W x 3 in [0, 1]), the bird's pose, plumage and placement, the occluders (in front), the shading
    of the bird and the frame's lighting and noise."""

    backdrop: np.ndarray
    pose: Pose
    plumage: Plumage
    placement: Placement
    front: list[Layer]
    bird_light: np.ndarray  # H x W factor on the bird's colour (light direction, texture)
    gains: np.ndarray  # 3 channel gains (white balance and brightness)
    gamma: float
    noise: np.ndarray  # H x W x 3 sensor noise, added last
    lookalikes: list[tuple[int, int, int, int]]  # the decoy birds' boxes (drawn into the backdrop)


@dataclass
class Rendered:
    """A rendered image, its box ``(x1, y1, x2, y2)`` in pixel edges, and frame-sized masks: the bird's
    pixels (alpha > 0, occluders ignored) and those any class part touched."""

    image: Image.Image
    box: tuple[int, int, int, int]
    bird: np.ndarray
    evidence: np.ndarray


def _count(rng: np.random.Generator, span: tuple[int, int], chance: float = 1.0) -> int:
    n = int(rng.integers(span[0], span[1] + 1))
    return n if rng.random() < chance else 0


def _with_perch(rng: np.random.Generator, pose: Pose, placement: Placement, parts: list[Part]) -> list[Part]:
    """``parts`` (in the frame) with a perch under the feet first, unless the bird flies."""
    if pose.kind == "flying":
        return parts
    at = placement.apply(feet(pose)[None])[0]
    return [props.perch(rng, at, placement.angle, placement.scale), *parts]


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _lookalikes(
    rng: np.random.Generator, preset: BirdPreset, frame: tuple[int, int], keep_clear: tuple[float, ...]
) -> list[tuple[list[Layer], Layer]]:
    """Plain birds (no class parts), each with its perch, placed clear of the bird's box (skipped when no
    clear place is found): ``(perch layers, bird layer)`` for each."""
    decoys = []
    for _ in range(_count(rng, preset.lookalikes)):
        pose, plumage = sample_pose(rng, preset.poses), sample_plumage(rng)
        for _try in range(12):
            placement, box = sample_placement(rng, pose, preset.scale, frame, rotation=preset.rotation)
            if not _overlaps(box, keep_clear):
                perch = [rasterize([p]) for p in _with_perch(rng, pose, placement, [])]
                decoys.append((perch, rasterize(placement.parts(bird_parts(pose, LOOKALIKE, plumage)))))
                break
    return decoys


def _occluders(
    rng: np.random.Generator,
    preset: BirdPreset,
    frame: tuple[int, int],
    plain: Layer,
    box: tuple[float, ...],
    scale: float,
) -> list[Layer]:
    """Props in front of the bird, each hiding a share of its plain outline within ``preset.cover``."""
    width, height = frame
    outline = plain.in_frame(plain.alpha, width, height)
    total = float(outline.sum())
    layers = []
    for _ in range(_count(rng, preset.occluders, preset.occluder_chance)):
        for _try in range(8):
            at = rng.uniform((box[0], box[1]), (box[2], box[3]))
            layer = rasterize(props.occluder(rng, at, scale))
            hidden = float((layer.in_frame(layer.alpha, width, height) * outline).sum()) / total
            if preset.cover[0] <= hidden <= preset.cover[1]:
                layers.append(layer)
                break
    return layers


def _backdrop(
    rng: np.random.Generator, preset: BirdPreset, frame: tuple[int, int], scale: float
) -> np.ndarray:
    """Photograph, clutter and decoy berries."""
    image = background(rng, *frame)
    clutter = props.clutter(rng, _count(rng, preset.leaves), _count(rng, preset.twigs), frame, scale)
    clutter += props.berries(rng, _count(rng, preset.berries), frame, scale)
    for part in clutter:
        composite(image, rasterize([part]))
    return image


def _light(rng: np.random.Generator, frame: tuple[int, int], box: tuple[float, ...]) -> np.ndarray:
    """The bird's shading: brighter towards a random light direction, times a smooth mottled texture."""
    width, height = frame
    angle, strength = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.35)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy, size = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, max(box[2] - box[0], box[3] - box[1], 1.0)
    ramp = ((xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)) / size
    cells = rng.normal(0.0, 1.0, (max(height // 6, 2), max(width // 6, 2))).astype(np.float32)
    texture = np.asarray(Image.fromarray(cells, mode="F").resize((width, height), Image.Resampling.BILINEAR))
    return np.clip(1.0 + strength * ramp, 0.7, 1.3) * (1.0 + 0.06 * texture)


def sample_scene(rng: np.random.Generator, preset: BirdPreset, frame: tuple[int, int]) -> Scene:
    """Draw every random choice of one image (``frame``: width, height) from ``rng``."""
    pose, plumage = sample_pose(rng, preset.poses), sample_plumage(rng)
    placement, box = sample_placement(
        rng, pose, preset.scale, frame, rotation=preset.rotation, centred=preset.placement == "centred"
    )
    backdrop = _backdrop(rng, preset, frame, placement.scale)
    decoys = _lookalikes(rng, preset, frame, box)
    for layer in [layer for perch, bird in decoys for layer in (*perch, bird)]:
        composite(backdrop, layer)
    plain = rasterize(placement.parts(bird_parts(pose, LOOKALIKE, plumage)))
    perch = _with_perch(rng, pose, placement, [])
    for part in perch:
        composite(backdrop, rasterize([part]))
    front = _occluders(rng, preset, frame, plain, box, placement.scale)
    bird_light = _light(rng, frame, box)
    gains = rng.uniform(0.88, 1.12, 3) * rng.uniform(0.75, 1.15)
    gamma = rng.uniform(0.8, 1.25)
    gradient_angle, gradient = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.25)
    ys, xs = np.mgrid[0 : frame[1], 0 : frame[0]].astype(np.float32)
    ramp = (
        (xs / frame[0] - 0.5) * np.cos(gradient_angle) + (ys / frame[1] - 0.5) * np.sin(gradient_angle)
    ) * 2
    noise = rng.normal(0.0, rng.uniform(0.0, 0.02), (frame[1], frame[0], 3)).astype(np.float32)
    backdrop *= (1.0 + gradient * ramp)[..., None]  # the gradient lights backdrop and bird alike (below)
    lit = bird_light * (1.0 + gradient * ramp)
    boxes = [b for b in (bird.box() for _, bird in decoys) if b is not None]
    return Scene(backdrop, pose, plumage, placement, front, lit, gains, gamma, noise, boxes)


def render_scene(scene: Scene, species: Species, *, bird: bool = True) -> Rendered:
    """Draw ``species`` into ``scene`` (``bird=False``: the scene without the bird, for tests)."""
    height, width = scene.backdrop.shape[:2]
    frame = scene.backdrop.copy()
    layer = rasterize(scene.placement.parts(bird_parts(scene.pose, species, scene.plumage)))
    box = layer.box()
    if box is None or box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:
        raise RuntimeError(
            f"the bird's box {box} leaves the {width}x{height} frame"
        )  # a bug, not a user error
    h, w = layer.alpha.shape
    layer.rgb = layer.rgb * scene.bird_light[layer.y0 : layer.y0 + h, layer.x0 : layer.x0 + w, None]
    if bird:
        composite(frame, layer)
    for occluder in scene.front:
        composite(frame, occluder)
    frame = np.clip(frame * scene.gains, 0.0, 1.0) ** scene.gamma + scene.noise
    pixels = np.clip(np.round(frame * 255.0), 0, 255).astype(np.uint8)
    return Rendered(
        Image.fromarray(pixels),
        box,
        layer.in_frame(layer.alpha > 0, width, height),
        layer.in_frame(layer.evidence, width, height),
    )
