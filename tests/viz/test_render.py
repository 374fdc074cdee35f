"""Tests of the numpy mesh rasteriser (romp_hydra.viz.render)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from romp_hydra.viz.render import (
    PinholeCamera,
    WeakPerspectiveCamera,
    face_shading,
    rasterize,
    render_meshes,
)

RED = (255.0, 0.0, 0.0)
BLUE = (0.0, 0.0, 255.0)


def _square(x0: float, y0: float, x1: float, y1: float, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """Screen-space quad (two triangles) spanning [x0, x1] x [y0, y1] at a constant depth."""
    verts = np.array([[x0, y0, depth], [x1, y0, depth], [x1, y1, depth], [x0, y1, depth]], float)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    return verts, faces


def _flat(image: np.ndarray, verts: list, faces, colors, **kwargs) -> np.ndarray:
    """Render without shading (ambient = 1), so every covered pixel shows its colour exactly."""
    return render_meshes(image, verts, faces, colors, ambient=1.0, **kwargs)


def test_triangle_covers_exactly_the_pixel_centres_inside_it():
    verts = np.array([[2.0, 2.0, 1.0], [12.0, 2.0, 1.0], [2.0, 12.0, 1.0]])
    face_index, depth = rasterize(verts, np.array([[0, 1, 2]]), 16, 16)
    rows, cols = np.mgrid[0:16, 0:16]
    expected = (cols >= 2) & (rows >= 2) & (cols + rows <= 14)  # edges included
    np.testing.assert_array_equal(face_index >= 0, expected)
    np.testing.assert_allclose(depth[expected], 1.0)
    assert np.all(np.isinf(depth[~expected]))


def test_quad_is_painted_in_its_colour_and_nothing_else():
    image = np.full((20, 30, 3), 7, np.uint8)
    verts, faces = _square(5, 3, 14, 9, depth=2.0)
    out = _flat(image, [verts], faces, [RED])
    inside = np.zeros((20, 30), bool)
    inside[3:10, 5:15] = True
    assert np.all(out[inside] == [255, 0, 0])
    assert np.all(out[~inside] == 7)
    assert np.all(image == 7), "the input image must not be modified"


@pytest.mark.parametrize("near_first", [True, False])
def test_nearer_faces_hide_farther_ones_whatever_the_order(near_first):
    image = np.zeros((20, 20, 3), np.uint8)
    near, faces = _square(2, 2, 11, 11, depth=1.0)
    far, _ = _square(6, 6, 17, 17, depth=5.0)
    meshes, colors = ([near, far], [RED, BLUE]) if near_first else ([far, near], [BLUE, RED])
    out = _flat(image, meshes, faces, colors)
    assert np.all(out[6:12, 6:12] == [255, 0, 0])  # overlap: the near square wins
    assert np.all(out[12:18, 12:18] == [0, 0, 255])  # far square where it is not covered
    assert np.all(out[2:6, 2:6] == [255, 0, 0])


def test_interpolated_depth_resolves_intersecting_faces():
    # Two faces crossing each other: a slanted one (depth 0 at x=0 -> 20 at x=20) and a flat one at 10.
    slanted = np.array([[0, 0, 0.0], [20, 0, 20.0], [20, 20, 20.0], [0, 20, 0.0]])
    flat, faces = _square(0, 0, 20, 20, depth=10.0)
    out = _flat(np.zeros((21, 21, 3), np.uint8), [slanted, flat], faces, [RED, BLUE])
    assert np.all(out[:, :9] == [255, 0, 0]) and np.all(out[:, 12:] == [0, 0, 255])


def test_pinhole_camera_projects_to_the_expected_pixels():
    # A 1 m square at 2 m with f = 20 px spans 10 px around the principal point (16, 16): pixels 11..21.
    verts = np.array([[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.5, 0.5, 2.0], [-0.5, 0.5, 2.0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    out = _flat(
        np.zeros((32, 32, 3), np.uint8), [verts], faces, [RED], camera=PinholeCamera(20.0, (16.0, 16.0))
    )
    covered = np.argwhere(out[..., 0] == 255)
    assert covered.min(axis=0).tolist() == [11, 11] and covered.max(axis=0).tolist() == [21, 21]
    assert len(covered) == 11 * 11


def test_points_behind_a_pinhole_camera_are_not_drawn():
    verts = np.array([[-0.5, -0.5, -2.0], [0.5, -0.5, -2.0], [0.5, 0.5, -2.0], [-0.5, 0.5, -2.0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    out = _flat(
        np.zeros((32, 32, 3), np.uint8), [verts], faces, [RED], camera=PinholeCamera(20.0, (16.0, 16.0))
    )
    assert not out.any()


def test_weak_perspective_uses_the_normalised_image_convention():
    # pj = s * X + t with s = 0.5, t = (0.25, 0): x in [-0.25, 0.75] -> px = (v + 1) * 16 = [12, 28]; y -> [8, 24].
    verts = np.array([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    camera = WeakPerspectiveCamera(scale=0.5, tx=0.25, ty=0.0)
    out = _flat(np.zeros((32, 32, 3), np.uint8), [verts], faces, [RED], camera=camera)
    covered = np.argwhere(out[..., 0] == 255)
    assert covered.min(axis=0).tolist() == [8, 12] and covered.max(axis=0).tolist() == [24, 28]


def test_weak_perspective_orders_people_by_scale():
    # Same square twice: the larger scale is nearer, so it is drawn on top.
    verts = np.array([[-0.3, -0.3, 0.0], [0.3, -0.3, 0.0], [0.3, 0.3, 0.0], [-0.3, 0.3, 0.0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    cameras = [WeakPerspectiveCamera(1.0, 0.0, 0.0), WeakPerspectiveCamera(2.0, 0.0, 0.0)]
    out = _flat(np.zeros((32, 32, 3), np.uint8), [verts, verts], faces, [RED, BLUE], camera=cameras)
    assert np.all(out[16, 16] == [0, 0, 255])


def test_alpha_blends_with_the_image():
    image = np.full((10, 10, 3), 100, np.uint8)
    verts, faces = _square(0, 0, 9, 9, depth=1.0)
    out = _flat(image, [verts], faces, [(200.0, 0.0, 50.0)], alpha=0.25)
    assert out[5, 5].tolist() == [125, 75, 88]  # 0.75 * 100 + 0.25 * colour, rounded


def test_backface_culling_drops_clockwise_faces_only():
    front = np.array([[2.0, 2.0, 1.0], [2.0, 12.0, 1.0], [12.0, 2.0, 1.0]])  # counter-clockwise, y down
    back = front[[0, 2, 1]]
    faces = np.array([[0, 1, 2]])
    assert (rasterize(front, faces, 16, 16, cull_backfaces=True)[0] >= 0).sum() > 0
    assert (rasterize(back, faces, 16, 16, cull_backfaces=True)[0] >= 0).sum() == 0
    assert (rasterize(back, faces, 16, 16)[0] >= 0).sum() > 0


def test_lambert_shading_is_two_sided_and_keeps_the_ambient_share():
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]])
    faces = np.array([[0, 1, 2], [0, 2, 1], [0, 1, 3]])  # normal +-z twice, then a face parallel to z
    shade = face_shading(verts, faces, light_direction=(0, 0, -1), ambient=0.4)
    np.testing.assert_allclose(shade, [1.0, 1.0, 0.4])


def test_mesh_index_and_per_face_colours():
    verts, faces = _square(0, 0, 9, 9, depth=1.0)
    face_colors = np.array([RED, BLUE])
    out, mesh_index = _flat(
        np.zeros((10, 10, 3), np.uint8), [verts], faces, [face_colors], return_mesh_index=True
    )
    assert np.all(mesh_index == 0)
    assert out[0, 9].tolist() == [255, 0, 0] and out[9, 0].tolist() == [0, 0, 255]  # the two triangles


def test_accepts_torch_tensors():
    verts, faces = _square(0, 0, 9, 9, depth=1.0)
    out = _flat(np.zeros((10, 10, 3), np.uint8), [torch.from_numpy(verts)], torch.from_numpy(faces), [RED])
    assert np.all(out == [255, 0, 0])


def test_bad_inputs_name_the_problem():
    verts, faces = _square(0, 0, 9, 9, depth=1.0)
    with pytest.raises(ValueError, match="uint8"):
        render_meshes(np.zeros((10, 10, 3), np.float32), [verts], faces)
    with pytest.raises(ValueError, match="colour of mesh 0"):
        render_meshes(np.zeros((10, 10, 3), np.uint8), [verts], faces, [np.zeros((5, 3))])
    with pytest.raises(ValueError, match="one per mesh"):
        render_meshes(np.zeros((10, 10, 3), np.uint8), [verts, verts], faces, [RED])


def _uv_sphere(rings: int = 84, segments: int = 84) -> tuple[np.ndarray, np.ndarray]:
    theta = np.linspace(0, np.pi, rings)
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    verts = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(rings - 1), np.arange(segments), indexing="ij")
    a, b = i * segments + j, i * segments + (j + 1) % segments
    c, d = a + segments, b + segments
    faces = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    return verts, faces


def test_three_smpl_sized_meshes_render_fast():
    verts, faces = _uv_sphere()
    assert len(faces) > 13776  # at least a SMPL mesh's face count
    people = [verts * [0.25, 0.8, 0.2] + [x, 0.0, 2.5] for x in (-0.5, 0.0, 0.5)]
    image = np.zeros((512, 512, 3), np.uint8)
    camera = PinholeCamera(500.0, (255.5, 255.5))
    render_meshes(image, people, faces, camera=camera)  # warm-up
    started = time.perf_counter()
    out = render_meshes(image, people, faces, camera=camera)
    assert time.perf_counter() - started < 0.5
    assert out.any(axis=2).mean() > 0.1
