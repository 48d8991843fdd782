"""Where the fallback family trains (``train.device``): the trainer follows the model's device, and
a checkpoint's resume check does not depend on it. The CUDA side runs in ``scripts/gpu_check.sh``."""

from __future__ import annotations

import pytest
import torch

from genrec.errors import ConfigError
from genrec.esr.trainer import TrainConfig, _train_settings, model_device, resolve_device


def test_auto_is_cuda_exactly_when_torch_sees_a_gpu():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_cuda_without_a_gpu_and_unknown_names_are_refused_naming_the_setting():
    with pytest.raises(ConfigError, match="train.device 'cuda'.*no CUDA"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="train.device must be auto, cpu or cuda"):
        resolve_device("gpu")


def test_the_device_is_not_a_setting_a_resumed_run_must_share():
    assert _train_settings(TrainConfig(device="cpu")) == _train_settings(TrainConfig(device="auto"))
    assert _train_settings(TrainConfig(lr=1e-2)) != _train_settings(TrainConfig())


def test_the_model_device_is_where_its_weights_are():
    model = torch.nn.Linear(2, 2)
    assert model_device(model) == torch.device("cpu")
    if torch.cuda.is_available():
        assert model_device(model.to("cuda")).type == "cuda"
