"""Network files: NetAdapt's checkpoints (unit signatures + weights, no search space needed), reading them and
the trainer's back as networks (:func:`load_network`), and a file's content digest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from harness.atomic import write_atomically
from harness.errors import ChameleonError
from harness.signature import parse_signature

NETWORK_FORMAT = "chameleon-network"


def save_network(path: Path, net: Any, **meta: Any) -> Path:
    """A network checkpoint that needs no search space: its unit signatures, weights and metadata."""
    import torch

    document = {"format": NETWORK_FORMAT, "version": 1, "units": [s.key for s in net.signatures],
                "state_dict": net.state_dict(), "meta": json.dumps(meta, default=float)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: torch.save(document, tmp))
    return path


def load_network(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """A trained network from a checkpoint of the trainer (space + genes) or of NetAdapt (units); (net, meta).

    ``meta`` holds at least ``settings`` (the training settings as JSON,
    when known) and ``dataset_id``.
    """
    import torch

    from optimizer.training.torch_networks import Network, build_torch_network
    from optimizer.training.settings import CHECKPOINT_FORMAT, InvalidCheckpoint

    path = Path(path)
    if not path.is_file():
        raise InvalidCheckpoint(f"{path}: no such checkpoint file")
    try:
        document = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as problem:  # torch raises pickle, zip and runtime errors alike for a bad file
        raise InvalidCheckpoint(f"{path}: cannot read a network checkpoint ({type(problem).__name__})") from None
    if not isinstance(document, dict) or "state_dict" not in document:
        raise InvalidCheckpoint(f"{path}: not a chameleon network checkpoint")
    try:
        if document.get("format") == CHECKPOINT_FORMAT:
            from optimizer.spaces import get_space

            space = get_space(document["space"])
            net = build_torch_network(space, document["genes"])
            meta = {"space": space.name, "genes": list(document["genes"]), "settings": document.get("settings"),
                    "dataset_id": document.get("dataset_id"), "accuracy": document.get("accuracy")}
        elif document.get("format") == NETWORK_FORMAT:
            net = Network([parse_signature(k) for k in document["units"]])
            meta = json.loads(document.get("meta") or "{}")
        else:
            raise InvalidCheckpoint(f"{path}: not a chameleon network checkpoint (format {document.get('format')!r})")
        net.load_state_dict(document["state_dict"])
    except InvalidCheckpoint:
        raise
    except ChameleonError as problem:
        raise InvalidCheckpoint(f"{path}: {problem}") from None
    except (KeyError, TypeError, ValueError, RuntimeError) as problem:
        raise InvalidCheckpoint(f"{path}: the checkpoint does not describe a network ({str(problem).splitlines()[0]})") from None
    return net.eval(), meta


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
