"""A two-process torchrun run (gloo on CPU) matches the single-process embeddings' downstream quality."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CONFIG = """
name = "ddp-test"
resolution = 9
output = "{out}"
[mobility]
records = "records.parquet"
[poi]
path = "pois.gpkg"
encoder = "counts"
[demographics]
raster = "demographics.tif"
[line]
samples_per_edge = 20
[train]
batch_size = 64
epochs = 15
patience = 0
"""


@pytest.mark.slow
def test_torchrun_two_processes_match_single_process(small_city, tmp_path):
    from mobclip_core.evaluation.probe import probe_accuracy
    from mobclip_core.export import read_embeddings

    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    assert torchrun, "torchrun (part of torch) is missing"
    data = Path(small_city.directory)
    scores = {}
    for name, cmd in {
        "single": [sys.executable, "-m", "mobclip_core.cli", "train"],
        "ddp": [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "mobclip_core.cli", "train"],
    }.items():
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(CONFIG.format(out=tmp_path / name))
        shutil.copy(cfg, data / cfg.name)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(
            [*cmd, str(data / cfg.name), "--quiet"], capture_output=True, text=True, env=env, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        emb = read_embeddings(tmp_path / name / "embeddings.parquet")
        zones = small_city.zone_labels.reindex(emb.index).to_numpy()
        scores[name] = probe_accuracy(emb.to_numpy(), zones)["linear_probe"]
    chance = max(np.mean(zones == z) for z in set(zones))
    assert scores["ddp"] > chance + 0.1, scores
    assert scores["ddp"] >= scores["single"] - 0.05, scores


def test_process_group_backend_follows_the_training_device():
    """gloo when the ranks train on the CPU (even where a GPU is visible: LINE's CPU tensors cannot go through
    NCCL), NCCL on GPUs; one numbered GPU for every rank is refused with the fix."""
    import torch

    from mobclip_core.exceptions import ConfigError
    from mobclip_core.training.distributed import process_group_backend

    assert process_group_backend("cpu", 2) == "gloo"
    assert process_group_backend("auto", 2) == ("nccl" if torch.cuda.is_available() else "gloo")
    assert process_group_backend("cuda", 2) == "nccl"
    with pytest.raises(ConfigError, match=r'all 2 torchrun processes on one GPU: set device = "cuda"'):
        process_group_backend("cuda:1", 2)
