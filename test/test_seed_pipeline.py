"""The seed-faithful path through the whole engine: 3ddfa fitter + the Rotate-and-Render generator.

Uses the real 3DDFA_V2 network (mb05) and the v1 68-keypoint bases from ../shared, and a small generator
checkpoint in the original key format with random weights (the published one is not available here).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from core_helpers import load_rgb

from opendr_face_synth.core.config import ConfigError, SynthConfig
from opendr_face_synth.core.refine.rotate_and_render import RotateSPADEGenerator
from opendr_face_synth.core.synthesizer import FaceSynthesizer


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory):
    torch.manual_seed(0)
    gen = RotateSPADEGenerator(ngf=4)
    gen.train()
    with torch.no_grad():  # power iterations make u, v consistent with the weights, as in a trained file
        for _ in range(3):
            gen(torch.randn(2, 3, 64, 64), (torch.rand(2, 5, 64, 64) > 0.7).float())
    root = tmp_path_factory.mktemp("bundle")
    (root / "checkpoints/rs_model").mkdir(parents=True)
    torch.save(gen.eval().state_dict(), root / "checkpoints/rs_model/latest_net_G.pth")
    return root


def _weights(shared_dir, *extra) -> str:
    folders = [shared_dir / "weights/3ddfa_v2", shared_dir / "weights/3ddfa_v1", *extra]
    return os.pathsep.join(str(f) for f in folders)


def test_3ddfa_fitter_drives_the_engine(shared_dir, astronaut_rgb):
    lfw = load_rgb(shared_dir / "data/rr_lfw/Robin_Wright_Penn_0001.jpg")  # seed fit: yaw +31
    synth = FaceSynthesizer(SynthConfig(yaws=(-30.0, 30.0), fitter="3ddfa", weights_dir=_weights(shared_dir),
                                        device="cpu"))
    results = synth.process([astronaut_rgb, lfw])
    synth.close()
    for result in results:
        assert result.error is None and result.faces
    face = results[1].faces[0]
    assert face.fit.landmarks68.shape == (68, 3)
    assert 15 < face.fit.pose.yaw < 45  # the seed's sign: nose toward image-right
    for view in face.views:
        assert view.image.shape == (256, 256, 3) and view.image.std() > 10
    assert abs(face.views[0].achieved.yaw + 30) < 1e-3 or abs(face.views[0].target.yaw + 30) < 1e-6


def test_generator_refines_the_views(shared_dir, astronaut_rgb, generator_dir):
    config = dict(yaws=(-20.0, 20.0), fitter="3ddfa", device="cpu", background="black")
    plain = FaceSynthesizer(SynthConfig(**config, weights_dir=_weights(shared_dir)))
    refined = FaceSynthesizer(SynthConfig(**config, refiner="rotate_and_render",
                                          weights_dir=_weights(shared_dir, generator_dir)))
    a = plain.process([astronaut_rgb])[0].faces[0].views
    b = refined.process([astronaut_rgb])[0].faces[0].views
    for before, after in zip(a, b, strict=True):
        assert after.image.shape == before.image.shape
        assert np.abs(after.image.astype(int) - before.image.astype(int)).mean() > 5  # the generator ran


def test_refiner_without_weights_dir_is_a_config_error():
    with pytest.raises(ConfigError, match="weights"):
        FaceSynthesizer(SynthConfig(refiner="rotate_and_render", device="cpu"), detector=object(), fitter=object())


def test_refiner_with_a_folder_missing_the_checkpoint_lists_where_it_looked(tmp_path):
    with pytest.raises(Exception, match="latest_net_G.pth"):
        FaceSynthesizer(SynthConfig(refiner="rotate_and_render", weights_dir=str(tmp_path), device="cpu"),
                        detector=object(), fitter=object())
