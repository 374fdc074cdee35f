"""2D drawing on images with OpenCV: skeletons, person centres, heatmap overlays and labelled panels.

Images are (H, W, 3) uint8 **RGB** arrays (the project's convention) and colours are RGB tuples; convert with
`to_bgr` just before `cv2.imwrite`. Every function returns a new image and leaves its input untouched.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from romp_hydra.body.joint_sets import SKELETON_54, SKELETON_54_SIDES

RGB = tuple[int, int, int]

# Left / right / centre colours of the annotated 2D skeleton, and of the skeleton reprojected from 3D.
SKELETON_COLORS: dict[str, RGB] = {"left": (40, 120, 255), "right": (255, 60, 40), "centre": (60, 220, 60)}
PROJECTED_COLORS: dict[str, RGB] = {"left": (0, 230, 230), "right": (255, 200, 0), "centre": (240, 240, 240)}
CENTER_COLOR: RGB = (255, 0, 255)
LABEL_COLOR: RGB = (255, 255, 255)
# Normalised coordinates at or below this are the "missing" sentinel (-2).
MISSING_BELOW = -1.99


def normalized_to_pixels(points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised [-1, 1] points (..., 2) of a square input of side `size` -> (pixels, present mask).

    A point is present when neither coordinate is the -2 sentinel. Pixels follow `(v + 1) * size / 2`.
    """
    points = np.asarray(points, dtype=np.float64)
    present = np.all(points > MISSING_BELOW, axis=-1)
    return (points + 1.0) * (size / 2.0), present


def draw_skeleton(
    image: np.ndarray,
    joints: np.ndarray,
    present: np.ndarray | None = None,
    *,
    edges: Sequence[tuple[int, int]] = SKELETON_54,
    sides: Sequence[str] = SKELETON_54_SIDES,
    colors: dict[str, RGB] = SKELETON_COLORS,
    thickness: int = 2,
    radius: int = 3,
) -> np.ndarray:
    """Draw one person's skeleton: joints (J, 2) in pixels, bones coloured by body side.

    Args:
        present: (J,) bool, which joints exist (default: all finite ones). Bones need both ends present.
        edges, sides: the bone list and the side ('left' / 'right' / 'centre') of each bone.
    """
    out = image.copy()
    joints = np.asarray(joints, dtype=np.float64)
    if present is None:
        present = np.all(np.isfinite(joints), axis=-1)
    for (a, b), side in zip(edges, sides):
        if present[a] and present[b]:
            cv2.line(out, _point(joints[a]), _point(joints[b]), colors[side], thickness, cv2.LINE_AA)
    for joint in np.flatnonzero(present):
        cv2.circle(out, _point(joints[joint]), radius, colors["centre"], -1, cv2.LINE_AA)
    return out


def draw_centers(
    image: np.ndarray,
    centers: np.ndarray,
    labels: Sequence[str],
    *,
    color: RGB = CENTER_COLOR,
    size: int = 8,
) -> np.ndarray:
    """Mark each centre (K, 2 pixels) with a square and write its label (e.g. 'id:3') next to it."""
    out = image.copy()
    for center, label in zip(np.asarray(centers, dtype=np.float64), labels):
        x, y = _point(center)
        cv2.rectangle(out, (x - size, y - size), (x + size, y + size), color, 2)
        _text(out, label, (x + size + 2, y - size), color)
    return out


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a (h, w) heatmap in [0, 1] over the image with the JET colour map (resized bilinearly)."""
    height, width = image.shape[:2]
    values = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    values = cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
    colored = cv2.applyColorMap((values * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colored = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(colored, alpha, image, 1.0 - alpha, 0.0)


def label_panel(image: np.ndarray, text: str) -> np.ndarray:
    """Write a caption in the top-left corner."""
    out = image.copy()
    _text(out, text, (6, 18), LABEL_COLOR)
    return out


def concat_panels(panels: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Place panels side by side (resized to the first panel's height), separated by black gaps."""
    height = panels[0].shape[0]
    resized = [p if p.shape[0] == height else
               cv2.resize(p, (max(1, round(p.shape[1] * height / p.shape[0])), height)) for p in panels]
    spacer = np.zeros((height, gap, 3), dtype=np.uint8)
    parts: list[np.ndarray] = []
    for index, panel in enumerate(resized):
        if index:
            parts.append(spacer)
        parts.append(panel)
    return np.concatenate(parts, axis=1)


def to_bgr(image: np.ndarray) -> np.ndarray:
    """RGB -> BGR for cv2.imwrite."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def _point(xy: np.ndarray) -> tuple[int, int]:
    return round(float(xy[0])), round(float(xy[1]))


def _text(image: np.ndarray, text: str, origin: tuple[int, int], color: RGB) -> None:
    # A dark outline keeps the text readable on any background.
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)
