"""Mesh rendering over an image, on the CPU, with numpy only (no OpenGL).

Meshes are projected by a camera to *screen space* ``(x_px, y_px, depth)``, rasterised with a vectorised
depth buffer (every pixel shows the nearest face covering its centre, i.e. the painter's order "far first,
near last" resolved per pixel instead of per face) and shaded with flat two-sided Lambert lighting.

Why not ``cv2.fillConvexPoly`` per face in painter's order: a SMPL mesh has 13776 faces, so a crowd of
eight people means ~110k Python-level calls (~0.2 s) per image; enumerating each face's pixel centres
with numpy and keeping the nearest per pixel is several times faster, needs no depth sort, and also
handles faces that intersect each other.

Conventions (shared with ``romp_hydra.geometry.camera``):

* pixel coordinates follow OpenCV and the data layer (``romp_hydra.data.sample``): the centre of pixel
  ``(row, col)`` is the point ``(x, y) = (col, row)``, and the pixel is painted when that point lies inside
  a face, so a keypoint projected to ``(x, y)`` lands on the pixel ``(round(y), round(x))``;
* normalised coordinates map to pixels as ``px = (v + 1) * size / 2`` (``geometry.camera``);
* camera axes are x right, y down, z forward (depth grows away from the camera).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = [
    "DEFAULT_MESH_COLORS",
    "Camera",
    "PinholeCamera",
    "WeakPerspectiveCamera",
    "face_shading",
    "rasterize",
    "render_meshes",
]

# Light pointing from the scene towards the camera, slightly from the upper left (camera axes, y down).
DEFAULT_LIGHT_DIRECTION = (-0.3, -0.5, -1.0)

# Distinct, saturated RGB colours for successive people.
DEFAULT_MESH_COLORS = np.array(
    [
        [230, 159, 0],
        [86, 180, 233],
        [0, 158, 115],
        [240, 228, 66],
        [0, 114, 178],
        [213, 94, 0],
        [204, 121, 167],
        [150, 150, 150],
    ],
    dtype=np.float64,
)

# Upper bound on the number of candidate (face, pixel) pairs processed at once; bounds peak memory
# (~100 bytes per candidate) when a few faces cover a large image.
_MAX_CANDIDATES_PER_CHUNK = 2_000_000


def _to_numpy(array: Any, dtype: Any = np.float64) -> np.ndarray:
    """Array-like or (CPU/GPU) torch tensor -> numpy array of ``dtype``."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=dtype)


class Camera(Protocol):
    """Anything that maps camera-frame points ``(V, 3)`` to screen space ``(V, 3)``."""

    def to_screen(self, points: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """Return ``(x_px, y_px, depth)`` per point; non-finite rows mark points that cannot be drawn."""
        ...


@dataclass(frozen=True)
class PinholeCamera:
    """Perspective camera ``x_px = fx * X / Z + cx``, ``y_px = fy * Y / Z + cy``.

    Points at ``Z <= near`` (behind or on the camera plane) are not drawable: faces touching them are
    dropped rather than wrapped around.
    """

    focal: float | tuple[float, float]
    principal_point: tuple[float, float]
    near: float = 1e-3

    def to_screen(self, points: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        fx, fy = (self.focal, self.focal) if np.isscalar(self.focal) else self.focal
        cx, cy = self.principal_point
        depth = points[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            screen = np.stack((fx * points[:, 0] / depth + cx, fy * points[:, 1] / depth + cy, depth), axis=1)
        screen[depth <= self.near] = np.nan
        return screen


@dataclass(frozen=True)
class WeakPerspectiveCamera:
    """ROMP's weak-perspective camera ``pj = scale * X_xy + (tx, ty)`` in normalised coordinates.

    Normalised x maps onto the image width and y onto its height, so the projection is isotropic only on
    square images (the network input). ``focal`` (normalised units, 2 ~ 53 degrees field of view, as in
    ``geometry.camera.cam_to_translation``) only places the person at depth ``focal / scale`` so that
    several people are ordered correctly: a larger scale means nearer.

    Points that are already normalised image coordinates (plus a depth) are drawn with
    ``WeakPerspectiveCamera(1.0, 0.0, 0.0)``.
    """

    scale: float
    tx: float
    ty: float
    focal: float = 2.0

    def to_screen(self, points: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        if self.scale <= 0:
            raise ValueError(f"WeakPerspectiveCamera.scale must be positive, got {self.scale}")
        height, width = image_hw
        half_w, half_h = width / 2.0, height / 2.0
        x = (self.scale * points[:, 0] + self.tx + 1.0) * half_w
        y = (self.scale * points[:, 1] + self.ty + 1.0) * half_h
        # Depth in pixel units (same factor as x) keeps screen space similar to camera space.
        depth = (points[:, 2] + self.focal / self.scale) * self.scale * half_w
        return np.stack((x, y, depth), axis=1)


def rasterize(
    screen_verts: np.ndarray,
    faces: np.ndarray,
    height: int,
    width: int,
    *,
    cull_backfaces: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Depth-buffer rasterisation of a triangle mesh given in screen space.

    Args:
        screen_verts: (V, 3) ``(x_px, y_px, depth)``; rows with non-finite values drop their faces.
        faces: (F, 3) vertex indices.
        height, width: output size in pixels.
        cull_backfaces: drop faces whose projection is clockwise on screen (y down), i.e. faces turned
            away from the camera for meshes whose outward faces are counter-clockwise in a right-handed
            frame, as SMPL's are.

    Returns:
        face_index: (H, W) int64, index of the nearest face covering each pixel centre ``(col, row)``,
            -1 where none.
        depth: (H, W) float64 depth of that face at the pixel centre (interpolated), +inf where none.
    """
    screen_verts = _to_numpy(screen_verts)
    faces = _to_numpy(faces, np.int64)
    if screen_verts.ndim != 2 or screen_verts.shape[1] != 3:
        raise ValueError(f"screen_verts must have shape (V, 3), got {screen_verts.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {faces.shape}")
    face_index = np.full(height * width, -1, dtype=np.int64)
    depth_buffer = np.full(height * width, np.inf)
    if len(faces) == 0:
        return face_index.reshape(height, width), depth_buffer.reshape(height, width)

    # Per-corner columns (F,) rather than (F, 3) arrays: numpy is slow at reducing and gathering tiny rows.
    xs, ys, zs = (np.ascontiguousarray(column) for column in screen_verts.T)
    corner_ids = np.ascontiguousarray(faces.T)
    x0, x1, x2 = xs[corner_ids]
    y0, y1, y2 = ys[corner_ids]
    # Twice the signed area; < 0 means counter-clockwise as seen on a y-down screen.
    with np.errstate(invalid="ignore"):
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    finite = np.isfinite(xs) & np.isfinite(ys) & np.isfinite(zs)
    finite_0, finite_1, finite_2 = finite[corner_ids]
    keep = finite_0 & finite_1 & finite_2 & (np.abs(area) > 1e-12)
    if cull_backfaces:
        keep &= area < 0
    # From here on only the kept faces (about half of a closed mesh when culling).
    kept = np.flatnonzero(keep)
    x0, x1, x2, y0, y1, y2, area = (values[kept] for values in (x0, x1, x2, y0, y1, y2, area))

    # Pixel columns/rows whose centres fall inside each face's bounding box.
    col_lo = np.ceil(np.minimum(np.minimum(x0, x1), x2)).clip(0, width)
    col_hi = np.floor(np.maximum(np.maximum(x0, x1), x2)).clip(-1, width - 1)
    row_lo = np.ceil(np.minimum(np.minimum(y0, y1), y2)).clip(0, height)
    row_hi = np.floor(np.maximum(np.maximum(y0, y1), y2)).clip(-1, height - 1)
    box_w = np.maximum(col_hi - col_lo + 1, 0).astype(np.int64)
    box_h = np.maximum(row_hi - row_lo + 1, 0).astype(np.int64)
    counts = box_w * box_h
    nonempty = np.flatnonzero(counts)
    if len(nonempty) == 0:
        return face_index.reshape(height, width), depth_buffer.reshape(height, width)
    drawn = kept[nonempty]  # faces that cover at least one pixel centre
    counts, box_w = counts[nonempty], box_w[nonempty]
    col_lo, row_lo = col_lo[nonempty].astype(np.int64), row_lo[nonempty].astype(np.int64)

    # Barycentric coordinates and depth are affine in (px, py): b_k = a_k * px + c_k * py + d_k.
    inv_area = 1.0 / area[nonempty]
    corners = faces[drawn]
    xd, yd, zd = xs[corners], ys[corners], zs[corners]
    bary_coef = np.empty((len(drawn), 3, 3))
    for k in range(3):
        i, j = (k + 1) % 3, (k + 2) % 3  # b_k is the edge function of the opposite edge (i -> j)
        bary_coef[:, k, 0] = -(yd[:, j] - yd[:, i]) * inv_area
        bary_coef[:, k, 1] = (xd[:, j] - xd[:, i]) * inv_area
        bary_coef[:, k, 2] = ((xd[:, i] * yd[:, j]) - (xd[:, j] * yd[:, i])) * inv_area
    depth_coef = np.einsum("fk,fkc->fc", zd, bary_coef)  # z = sum_k b_k z_k, also affine

    chunk_ends = np.cumsum(counts)
    start = 0
    while start < len(drawn):
        # Largest run of faces whose candidate pixels fit the chunk budget (at least one face).
        budget_end = (chunk_ends[start - 1] if start else 0) + _MAX_CANDIDATES_PER_CHUNK
        stop = max(int(np.searchsorted(chunk_ends, budget_end, side="right")), start + 1)
        run = slice(start, stop)
        _rasterize_chunk(
            drawn[run], counts[run], col_lo[run], row_lo[run], box_w[run], bary_coef[run], depth_coef[run],
            width, face_index, depth_buffer,
        )  # fmt: skip
        start = stop
    return face_index.reshape(height, width), depth_buffer.reshape(height, width)


def _rasterize_chunk(
    face_ids: np.ndarray,
    counts: np.ndarray,
    col_lo: np.ndarray,
    row_lo: np.ndarray,
    box_w: np.ndarray,
    bary_coef: np.ndarray,
    depth_coef: np.ndarray,
    width: int,
    face_index: np.ndarray,
    depth_buffer: np.ndarray,
) -> None:
    """Enumerate the candidate pixels of a run of faces and merge them into the flat buffers."""
    owner = np.repeat(np.arange(len(face_ids)), counts)  # run-local face of each candidate
    first = np.cumsum(counts) - counts
    offset = np.arange(len(owner)) - first[owner]
    owner_w = box_w[owner]
    rows = row_lo[owner] + offset // owner_w
    cols = col_lo[owner] + offset % owner_w
    px, py = cols.astype(np.float64), rows.astype(np.float64)

    coef = bary_coef[owner]
    # A small tolerance makes edges shared by two faces covered by both: no cracks between them.
    inside = np.ones(len(owner), dtype=bool)
    for k in range(3):
        inside &= coef[:, k, 0] * px + coef[:, k, 1] * py + coef[:, k, 2] >= -1e-9
    owner, cols, rows, px, py = owner[inside], cols[inside], rows[inside], px[inside], py[inside]
    dcoef = depth_coef[owner]
    depth = dcoef[:, 0] * px + dcoef[:, 1] * py + dcoef[:, 2]

    pixel = rows * width + cols
    np.minimum.at(depth_buffer, pixel, depth)
    # Winners equal the running minimum; ties write any of the tied faces (all equally near).
    wins = depth <= depth_buffer[pixel]
    face_index[pixel[wins]] = face_ids[owner[wins]]


def face_shading(
    verts: np.ndarray,
    faces: np.ndarray,
    light_direction: Sequence[float] = DEFAULT_LIGHT_DIRECTION,
    ambient: float = 0.4,
) -> np.ndarray:
    """Flat two-sided Lambert intensity per face, ``ambient + (1 - ambient) * |n . l|`` in [0, 1].

    Two-sided so the result does not depend on the face winding of the mesh.
    """
    verts = _to_numpy(verts)
    faces = _to_numpy(faces, np.int64)
    corner0, corner1, corner2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    normals = np.cross(corner1 - corner0, corner2 - corner0)
    norms = np.sqrt(np.einsum("fc,fc->f", normals, normals))[:, None]
    normals = normals / np.maximum(norms, 1e-20)
    light = np.asarray(light_direction, dtype=np.float64)
    light = light / np.linalg.norm(light)
    return ambient + (1.0 - ambient) * np.abs(normals @ light)


def _check_color(color: Any, num_verts: int, num_faces: int, mesh_number: int) -> np.ndarray:
    """A mesh colour given per mesh (3,), per vertex (V, 3) or per face (F, 3), as a float array."""
    if color is None:
        color = DEFAULT_MESH_COLORS[mesh_number % len(DEFAULT_MESH_COLORS)]
    color = _to_numpy(color)
    if color.shape not in ((3,), (num_verts, 3), (num_faces, 3)):
        raise ValueError(
            f"colour of mesh {mesh_number} has shape {color.shape}; expected (3,), per-vertex ({num_verts}, 3) "
            f"or per-face ({num_faces}, 3) RGB values in 0..255"
        )
    return color


def _face_colors(color: np.ndarray, faces: np.ndarray, face_ids: np.ndarray) -> np.ndarray:
    """(len(face_ids), 3) colours of the given faces from a colour checked by ``_check_color``."""
    if color.shape == (3,):
        return np.broadcast_to(color, (len(face_ids), 3))
    if color.shape[0] == len(faces):  # per face (when V == F, per-face wins; SMPL has V != F)
        return color[face_ids]
    return color[faces[face_ids]].mean(axis=1)


def render_meshes(
    image: np.ndarray,
    verts_list: Sequence[Any],
    faces: Any,
    colors: Sequence[Any] | None = None,
    *,
    camera: Camera | Sequence[Camera] | None = None,
    alpha: float = 1.0,
    cull_backfaces: bool = False,
    light_direction: Sequence[float] = DEFAULT_LIGHT_DIRECTION,
    ambient: float = 0.4,
    return_mesh_index: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Draw shaded meshes over an RGB image; nearer surfaces hide farther ones across all meshes.

    Args:
        image: (H, W, 3) uint8 RGB image (not modified).
        verts_list: one (V, 3) array or tensor per mesh: camera-frame points (metres, x right, y down,
            z forward) when ``camera`` is given, otherwise screen points ``(x_px, y_px, depth)``.
        faces: (F, 3) faces shared by all meshes, or a sequence with one (F_i, 3) array per mesh.
        colors: one colour per mesh, each RGB 0..255 given per mesh (3,), per vertex (V, 3) or per face
            (F, 3); None picks ``DEFAULT_MESH_COLORS`` in turn.
        camera: one camera for all meshes (e.g. ``PinholeCamera``) or one per mesh (e.g. a
            ``WeakPerspectiveCamera`` per predicted person); None if the vertices are in screen space.
        alpha: opacity of the meshes, 1 = opaque.
        cull_backfaces: skip faces turned away from the camera (see :func:`rasterize`); only a speed-up
            for closed meshes, whose back faces are hidden anyway.
        light_direction: direction towards the light in camera axes (in screen axes if camera is None).
        ambient: share of the colour that is not shaded.
        return_mesh_index: also return an (H, W) int64 map of the mesh drawn at each pixel (-1 none).

    Returns:
        The rendered (H, W, 3) uint8 image, and the mesh-index map if requested.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got {image.shape} {image.dtype}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    height, width = image.shape[:2]
    num_meshes = len(verts_list)
    faces_list = [faces] * num_meshes if not isinstance(faces, (list, tuple)) else list(faces)
    cameras = list(camera) if isinstance(camera, (list, tuple)) else [camera] * num_meshes
    colors = [None] * num_meshes if colors is None else list(colors)
    for name, values in (("faces", faces_list), ("camera", cameras), ("colors", colors)):
        if len(values) != num_meshes:
            raise ValueError(
                f"got {len(values)} entries in {name} for {num_meshes} meshes; pass one per mesh"
            )

    meshes, screen_parts, face_parts = [], [], []
    vert_offset = 0
    for number, (verts, mesh_faces, mesh_camera, color) in enumerate(
        zip(verts_list, faces_list, cameras, colors)
    ):
        verts = _to_numpy(verts)
        mesh_faces = _to_numpy(mesh_faces, np.int64)
        if verts.ndim != 2 or verts.shape[1] != 3:
            raise ValueError(f"mesh {number}: vertices must have shape (V, 3), got {verts.shape}")
        if mesh_faces.ndim != 2 or mesh_faces.shape[1] != 3:
            raise ValueError(f"mesh {number}: faces must have shape (F, 3), got {mesh_faces.shape}")
        meshes.append((verts, mesh_faces, _check_color(color, len(verts), len(mesh_faces), number)))
        screen_parts.append(verts if mesh_camera is None else mesh_camera.to_screen(verts, (height, width)))
        face_parts.append(mesh_faces + vert_offset)
        vert_offset += len(verts)

    output = image.copy()
    mesh_index = np.full((height, width), -1, dtype=np.int64)
    if num_meshes == 0:
        return (output, mesh_index) if return_mesh_index else output
    face_index, _ = rasterize(
        np.concatenate(screen_parts), np.concatenate(face_parts), height, width, cull_backfaces=cull_backfaces
    )
    covered = face_index >= 0
    # Shade and colour only the faces that ended up visible (a few thousand of the ~14k per person).
    visible, pixel_to_visible = np.unique(face_index[covered], return_inverse=True)
    face_offsets = np.cumsum([0] + [len(mesh_faces) for _, mesh_faces, _ in meshes])
    visible_mesh = np.searchsorted(face_offsets, visible, side="right") - 1
    visible_rgb = np.empty((len(visible), 3))
    for number, (verts, mesh_faces, color) in enumerate(meshes):
        selected = visible_mesh == number
        local = visible[selected] - face_offsets[number]
        shade = face_shading(verts, mesh_faces[local], light_direction, ambient)
        visible_rgb[selected] = _face_colors(color, mesh_faces, local) * shade[:, None]
    blended = (1.0 - alpha) * output[covered] + alpha * visible_rgb[pixel_to_visible]
    output[covered] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    mesh_index[covered] = visible_mesh[pixel_to_visible]
    return (output, mesh_index) if return_mesh_index else output
