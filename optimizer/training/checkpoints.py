"""Trained weights on disk: where a training's checkpoint goes (keyed by space, genes, settings, data set and
code version), written atomically, and loaded back as a network in eval mode."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.training.settings import (
    CHECKPOINT_FORMAT,
    InvalidCheckpoint,
    TrainingSettings,
    TrainResult,
    _space,
    code_version,
)


def checkpoint_path(folder: Path, space: Any, genes: Any, settings: TrainingSettings, dataset_id: str) -> Path:
    """Where a trained network's weights go: keyed by space, genes, settings, data set and code version."""
    space = _space(space)
    genes = [int(v) for v in np.asarray(genes).reshape(-1)]
    key = json.dumps([space.name, genes, settings.settings_id, dataset_id, code_version()])
    return Path(folder) / f"{space.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def _save_checkpoint(path: Path, net: Any, result: TrainResult) -> None:
    import torch

    from harness.atomic import write_atomically

    document = {"format": CHECKPOINT_FORMAT, "version": 1, "space": result.space, "genes": list(result.genes),
                "settings_id": result.settings_id, "settings": result.settings, "dataset_id": result.dataset_id,
                "code_version": result.code_version, "accuracy": result.accuracy, "state_dict": net.state_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: torch.save(document, tmp))


def load_trained_network(space: Any, genes: Any, checkpoints: Path, settings: TrainingSettings,
                         dataset_id: str) -> Any | None:
    """The trained network (eval mode) saved by a training with these inputs, or None if there is none.

    ``dataset_id`` is the data set's (``load_dataset(spec).dataset_id``, or the
    observations file's column).  Export the winner with ``.export_onnx(path)``.
    """
    import torch

    from optimizer.training.torch_networks import build_torch_network

    space = _space(space)
    path = checkpoint_path(checkpoints, space, genes, settings, dataset_id)
    if not path.exists():
        return None
    try:
        document = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as problem:  # torch raises pickle, zip and runtime errors alike for a bad file
        raise InvalidCheckpoint(f"{path}: cannot read the trained network ({type(problem).__name__})") from None
    wanted = [int(v) for v in np.asarray(genes).reshape(-1)]
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
        raise InvalidCheckpoint(f"{path}: not a {CHECKPOINT_FORMAT} file")
    if document.get("space") != space.name or document.get("genes") != wanted:
        raise InvalidCheckpoint(f"{path}: holds another architecture ({document.get('space')}, {document.get('genes')})")
    net = build_torch_network(space, wanted, seed=settings.seed)
    try:
        net.load_state_dict(document["state_dict"])
    except (KeyError, RuntimeError) as problem:
        raise InvalidCheckpoint(f"{path}: weights do not fit the network ({str(problem).splitlines()[0]})") from None
    return net.eval()
