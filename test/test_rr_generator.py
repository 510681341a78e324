"""The Rotate-and-Render generator: checkpoint key scheme, strict loading, folding, the refiner, flat texture.

The full-size generator (225M parameters) is only built on the meta device; numerics use ngf=4 at 64 x 64
through the same code.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from seed_helpers import shared_root

from opendr_face_synth.core.fit.tddfa import CheckpointError
from opendr_face_synth.core.refine import landmark_maps as lmaps
from opendr_face_synth.core.refine import seed_render
from opendr_face_synth.core.refine.base import RefineInput
from opendr_face_synth.core.refine.rotate_and_render import (
    RotateAndRenderRefiner,
    RotateSPADEGenerator,
    generator_key_shapes,
    load_generator,
)

ALIASES = ("conv_block1", "conv_block4")


def _random_generator(ngf: int = 4, seed: int = 0) -> RotateSPADEGenerator:
    """A small generator in the seed's key format with non-trivial weights, BN statistics and u, v."""
    torch.manual_seed(seed)
    gen = RotateSPADEGenerator(ngf=ngf)
    gen.train()
    with torch.no_grad():
        for _ in range(3):  # power iterations make u, v consistent with the weights, as in a trained file
            gen(torch.randn(2, 3, 64, 64), (torch.rand(2, 5, 64, 64) > 0.7).float())
        for m in gen.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                if m.affine:  # positive shifts keep the ReLUs of the tiny network alive
                    m.weight.normal_(1, 0.2)
                    m.bias.uniform_(0.1, 0.4)
        gen.final_layer[1].weight.mul_(8)  # spread the output over tanh's range
    return gen.eval()


@pytest.fixture(scope="module")
def small() -> tuple[RotateSPADEGenerator, dict[str, torch.Tensor]]:
    gen = _random_generator()
    return gen, {k: v.clone() for k, v in gen.state_dict().items()}


def _inputs(batch: int = 2, size: int = 64, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g) * 2 - 1, (
        torch.rand(batch, 5, size, size, generator=g) > 0.8
    ).float()


# ------------------------------------------------------------------------------------------ key scheme
def test_full_size_key_set_and_shapes_equal_the_original():
    reference = json.loads((shared_root() / "reference" / "rr_generator_state_dict_shapes.json").read_text())
    shapes = generator_key_shapes()
    assert set(shapes) == set(reference)
    assert {k: list(v) for k, v in shapes.items()} == reference
    assert list(shapes) == list(reference)  # same order, too


def test_full_size_counts_match_the_seed_spec():
    shapes = generator_key_shapes()
    assert len(shapes) == 380
    params = sum(
        math.prod(s)
        for k, s in shapes.items()
        if not any(a in k for a in ALIASES)
        and not k.endswith(("running_mean", "running_var", "num_batches_tracked", "weight_u", "weight_v"))
    )
    assert params == 225_056_387
    assert shapes["upsample_layers.0.0.weight_u"] == (512,) and shapes["upsample_layers.0.0.weight_v"] == (9216,)
    assert "first_layer.1.0.bias" not in shapes and "resnet_layers3.conv_block4.bias" in shapes


# ------------------------------------------------------------------------------------------ numerics
def test_folded_module_equals_the_spectral_norm_eval_forward(small):
    gen, state = small
    render, seg = _inputs()
    with torch.no_grad():
        expected = gen(render, seg)
    fast = load_generator(state)
    with torch.no_grad():
        got = fast(render, seg)
    assert got.shape == (2, 3, 64, 64)
    assert expected.std() > 0.05  # a meaningful comparison
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)
    assert got.abs().max() <= 1.0


def test_checkpoint_file_with_prefix_and_without_num_batches_tracked_loads(small, tmp_path):
    gen, state = small
    trimmed = {f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(trimmed, tmp_path / "latest_net_G.pth")
    fast = load_generator(tmp_path / "latest_net_G.pth")
    render, seg = _inputs(1)
    with torch.no_grad():
        torch.testing.assert_close(fast(render, seg), gen(render, seg), atol=2e-5, rtol=1e-4)
    again = RotateSPADEGenerator(ngf=4).load_checkpoint(tmp_path / "latest_net_G.pth").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(render, seg), gen(render, seg))


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda s: s.pop("resnet_layers4.norm_1.mlp_beta.bias"), "resnet_layers4.norm_1.mlp_beta.bias"),
        (lambda s: s.update({"downsample_layers.2.1.weight": torch.zeros(7)}), "downsample_layers.2.1.weight"),
        (lambda s: s.update({"extra_layer.weight": torch.zeros(1)}), "extra_layer.weight"),
        (lambda s: s.pop("resnet_layers8.conv_block4.weight_v"), "resnet_layers8.conv_block4.weight_v"),
    ],
)
def test_bad_checkpoint_fails_with_a_report_naming_the_key(small, edit, named):
    state = dict(small[1])
    edit(state)
    with pytest.raises(CheckpointError) as err:
        load_generator(state)
    assert named in str(err.value)
    with pytest.raises(CheckpointError, match=named.replace(".", r"\.")):
        RotateSPADEGenerator(ngf=4).load_checkpoint(state)


def test_aliases_that_differ_are_rejected(small):
    state = dict(small[1])
    state["resnet_layers2.conv_block1.bias"] = state["resnet_layers2.conv_block1.bias"] + 1
    with pytest.raises(CheckpointError, match="aliased"):
        load_generator(state)


def test_missing_checkpoint_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="latest_net_G.pth"):
        load_generator(tmp_path / "latest_net_G.pth")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_half_channels_last_matches_float32(small):
    gen, state = small
    fast = load_generator(state, device="cuda")
    assert fast.first.weight.dtype == torch.float16 and fast.channels_last
    render, seg = _inputs()
    with torch.no_grad():
        got = (
            fast(
                render.cuda().half().contiguous(memory_format=torch.channels_last),
                seg.cuda().half().contiguous(memory_format=torch.channels_last),
            )
            .float()
            .cpu()
        )
        expected = gen(render, seg)
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=0)


# -------------------------------------------------------------------------------------------- refiner
def _face_landmarks(size: int, batch: int) -> torch.Tensor:
    """Landmarks spread like a face over the image (iBUG order does not matter for these checks)."""
    rng = np.random.default_rng(5)
    base = rng.uniform(0.25, 0.75, size=(68, 2))
    return torch.tensor(
        np.stack([base + rng.normal(0, 0.01, base.shape) for _ in range(batch)]) * size, dtype=torch.float32
    )


def test_refiner_runs_maps_mask_and_generator(small):
    gen, state = small
    refiner = RotateAndRenderRefiner(state, size=64)
    images = torch.rand(2, 3, 64, 64)
    lm = _face_landmarks(64, 2)
    yaw = torch.tensor([5.0, 30.0])
    out = refiner.refine(RefineInput(images=images, alpha=torch.ones(2, 1, 64, 64), landmarks68=lm, source_yaw_deg=yaw))
    assert out.shape == (2, 3, 64, 64) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    # The same by hand: [0, 1] -> [-1, 1], maps, mask, generator, back to [0, 1].
    heat = lmaps.curve_heatmaps(lm, 64, lmaps.DEFAULT_SIGMA)
    render = lmaps.apply_label_mask(images * 2 - 1, heat, yaw)
    with torch.no_grad():
        expected = (gen(render, lmaps.combine_curves(heat)) + 1) / 2
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=1e-4)


def test_refiner_prefers_the_flat_render_and_resizes_other_sizes(small):
    _, state = small
    refiner = RotateAndRenderRefiner(state, size=64)
    flat = torch.rand(1, 3, 96, 96)
    batch = RefineInput(
        images=torch.zeros(1, 3, 96, 96),
        alpha=torch.ones(1, 1, 96, 96),
        landmarks68=_face_landmarks(96, 1),
        source_yaw_deg=torch.tensor([0.0]),
        flat_images=flat,
    )
    out = refiner.refine(batch)
    assert out.shape == (1, 3, 96, 96)
    without_flat = refiner.refine(RefineInput(batch.images, batch.alpha, batch.landmarks68, batch.source_yaw_deg))
    assert not torch.allclose(out, without_flat)


def test_refiner_without_landmarks_says_which_fitter_to_use(small):
    refiner = RotateAndRenderRefiner(small[1], size=64)
    batch = RefineInput(
        images=torch.rand(1, 3, 64, 64),
        alpha=torch.ones(1, 1, 64, 64),
        landmarks68=None,
        source_yaw_deg=torch.tensor([0.0]),
    )
    with pytest.raises(ValueError, match="3ddfa"):
        refiner.refine(batch)


# ------------------------------------------------------------------------------ seed-style flat texture
def test_vertex_and_triangle_colours_follow_the_seed_rule():
    image = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    verts = torch.tensor([[[0.2, 0.9, 0], [4.99, 3.5, 0], [-3.0, 10.0, 0]]]).expand(2, -1, -1)
    colors = seed_render.vertex_colors(verts, image)
    assert colors.shape == (2, 3, 3)
    torch.testing.assert_close(colors[1, 0], image[1, :, 0, 0])
    torch.testing.assert_close(colors[1, 1], image[1, :, 3, 4])
    torch.testing.assert_close(colors[1, 2], image[1, :, 3, 0])  # clamped into the image
    faces = seed_render.triangle_colors(colors, torch.tensor([[0, 1, 2]]))
    torch.testing.assert_close(faces[:, 0], colors.mean(dim=1))


def test_erode_mask_blurs_only_its_rows_and_fill_uses_the_masked_mean():
    alpha = torch.zeros(1, 1, 256, 256)
    alpha[..., 20:253, 40:200] = 1
    mask = seed_render.erode_mask(alpha)
    assert mask[0, 0, 30, 40] and mask[0, 0, 30, 199]  # rows above r0 = 75 keep the raw coverage
    assert not mask[0, 0, 150, 40] and not mask[0, 0, 150, 45] and mask[0, 0, 150, 48]  # blurred rows: eroded
    assert not mask[0, 0, 245, 40] and mask[0, 0, 246, 40]  # rows after S - 11 keep the raw coverage too
    render = torch.rand(1, 3, 256, 256)
    filled = seed_render.fill_outside(render, mask)
    mean = render[:, :, mask[0, 0]].mean(dim=2)
    torch.testing.assert_close(filled[0, :, 0, 0], mean[0])
    torch.testing.assert_close(filled[:, :, mask[0, 0]], render[:, :, mask[0, 0]])
    empty = seed_render.fill_outside(render, torch.zeros_like(mask))
    assert torch.all(empty == seed_render.EMPTY_FILL)


def test_flat_colours_with_erosion_replace_background_at_the_silhouette():
    pytest.importorskip("opendr_face_synth.core.render.rasterize")
    size, lo, hi = 64, 24, 52  # inside the eroded rows (19 .. 61 at this size)
    color = torch.tensor([0.2, 0.4, 0.6])
    image = torch.zeros(1, 3, size, size)
    image[:, :, lo:hi, lo:hi] = color[:, None, None]
    g = torch.linspace(lo, hi, 9)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    verts = torch.stack([xx.ravel(), yy.ravel(), torch.zeros(81)], dim=1)[None]
    idx = torch.arange(81).view(9, 9)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    tris = torch.cat([torch.stack([a, c, b], 1), torch.stack([b, c, d], 1)])
    plain = seed_render.seed_flat_colors(verts, tris, image, erode=False)
    eroded = seed_render.seed_flat_colors(verts, tris, image)
    assert plain.shape == eroded.shape == (1, len(tris), 3)
    # Vertices on the right and bottom edges fall on black pixels: plain colours are darkened there ...
    assert plain[0, :, 2].min() < 0.8 * color[2]
    # ... the eroded texture gives them the mean face colour instead.
    assert eroded[0, :, 2].min() > 0.9 * color[2]
    torch.testing.assert_close(eroded.amax(dim=1)[0], color, atol=1e-5, rtol=0)
