"""FBNet's search (Wu et al. 2019, §3.3): a supernet's weights w and architecture parameters θ trained alternately.

Each epoch trains w on one split of the training images and then θ on the other (FBNet: 80 % / 20 %),
after ``warmup_epochs`` of w alone.  Every mini-batch samples layer weights ``m`` by Gumbel-softmax
(Eq. 6) at the epoch's temperature, annealed from ``tau_initial`` to ``tau_final`` geometrically
(FBNet: 5.0, times e^-0.045 per epoch for 90 epochs, which ends at 0.087; here the same two ends
over our epochs: :func:`temperature`).  A low final temperature matters for what is sampled after:
the search ends training near-one-hot paths, and the paths are what the final networks are.  On
fbnet-mini and digits (12 epochs, β = 2, a mask per image), ending at τ = 1 left a soft mixture that scored 0.75 on θ's split
while its argmax path alone, with the same weights, scored 0.23; ending at 0.087 the mixture scored
0.47 and the argmax path 0.68.

* w: SGD with Nesterov momentum, cosine learning rate over all w steps, on the cross-entropy.  FBNet
  writes one loss for both; its latency factor ``α·log(LAT)^β`` is a constant in w and would only
  rescale w's learning rate, by a factor that grows with β (×54 at β = 4 for a 58 µs network), so each search of a
  β sweep would train its weights differently.  w sees the cross-entropy alone.
* θ: Adam on FBNet's loss (Eq. 2), ``CE(a, w) · α · log(LAT(a))^β``, LAT the LUT latency of the
  sampled ``m`` in µs (:mod:`optimizer.dnas.latency`); only θ's gradient is computed.

Run folder (``out``): ``checkpoint.pt`` (supernet, θ, both optimizers, the history and the CPU time
so far) and ``state.json`` (the same history, readable), both rewritten atomically after every epoch.
All randomness of epoch e comes from generators seeded by (seed, e), so a search killed at any point
and started again with the same arguments resumes from its last finished epoch and ends with the
very θ and weights of an uninterrupted run (one thread, deterministic kernels).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.atomic import write_atomically, write_text_atomically
from harness.errors import ChameleonError
from optimizer.dnas.latency import (LayerLatencyTable, argmax_architecture, expected_latency_us, fbnet_loss_factor,
                                    one_hot, softmax)

STATE_KIND = "chameleon-dnas-search"
STATE_VERSION = 1
#: Seed of the split of the training images into w's and θ's parts (fixed: one split per data set).
SPLIT_SEED = 20190621
#: FBNet's temperatures: 5.0 at the start, 5.0 · e^(-0.045 · 90) after its 90 epochs.
FBNET_TAU_INITIAL = 5.0
FBNET_TAU_FINAL = 5.0 * math.exp(-0.045 * 90)


class DnasError(ChameleonError):
    """A search setting out of range, or a run folder that holds another search."""


@dataclass(frozen=True)
class DnasSettings:
    """One supernet search: its schedule, optimisers, FBNet's α and β, and its seed."""

    epochs: int = 12
    warmup_epochs: int = 2  # w alone first (FBNet: 10 of 90), so θ does not judge untrained blocks
    batch_size: int = 32  # twice the steps of the trainer's 64: a supernet's blocks need steps more than images
    w_lr: float = 0.05
    w_momentum: float = 0.9
    w_weight_decay: float = 5e-4
    # FBNet: Adam at 0.01 for ~45,000 θ steps; a search here takes ~50, so θ moves faster per step.
    theta_lr: float = 0.1
    theta_weight_decay: float = 5e-4
    tau_initial: float = FBNET_TAU_INITIAL
    tau_final: float = FBNET_TAU_FINAL
    alpha: float = 0.2  # FBNet's α and β (the paper's values); β sets the latency's weight
    beta: float = 0.6
    theta_fraction: float = 0.2  # of the training images, for θ (FBNet: 20 %)
    # One architecture per mini-batch (FBNet), or one per image (the expectation over P_θ of FBNet's Eq. 8 taken over
    # the batch's images; the same cost: every block runs on every image either way).
    per_image: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        for name in ("epochs", "batch_size"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= (2 if name == "batch_size" else 1)):
                problems.append(f"{name} must be an integer >= {2 if name == 'batch_size' else 1}")
        if not (isinstance(self.warmup_epochs, int) and 0 <= self.warmup_epochs < self.epochs):
            problems.append(f"warmup_epochs must be in [0, epochs) (got {self.warmup_epochs!r})")
        for name in ("w_lr", "theta_lr", "tau_initial", "tau_final", "alpha"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                problems.append(f"{name} must be > 0 (got {getattr(self, name)!r})")
        for name in ("w_weight_decay", "theta_weight_decay", "beta"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                problems.append(f"{name} must be >= 0 (got {getattr(self, name)!r})")
        if not 0 <= self.w_momentum < 1:
            problems.append(f"w_momentum must be in [0, 1) (got {self.w_momentum!r})")
        if not 0 < self.theta_fraction < 1:
            problems.append(f"theta_fraction must be in (0, 1) (got {self.theta_fraction!r})")
        if problems:
            raise DnasError("dnas settings: " + "; ".join(problems))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def temperature(epoch: int, settings: DnasSettings) -> float:
    """The Gumbel-softmax temperature of an epoch: ``tau_initial`` at 0, ``tau_final`` at the last, geometric between."""
    if settings.epochs == 1:
        return settings.tau_initial
    return settings.tau_initial * (settings.tau_final / settings.tau_initial) ** (epoch / (settings.epochs - 1))


def search_splits(labels: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into ``labels``) of w's and θ's images: ``fraction`` of every class for θ, seeded by :data:`SPLIT_SEED`."""
    rng = np.random.default_rng(SPLIT_SEED)
    theta = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        theta.append(members[:max(1, int(round(fraction * len(members))))])
    mask = np.zeros(len(labels), dtype=bool)
    mask[np.concatenate(theta)] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


@dataclass
class EpochRecord:
    """What one epoch of a search did."""

    epoch: int
    tau: float
    w_loss: float  # mean cross-entropy of the w steps
    theta_loss: float | None  # mean FBNet loss of the θ steps (None in warm-up)
    theta_ce: float | None
    theta_accuracy: float | None  # of the sampled networks on θ's images, in training mode
    sampled_latency_us: float | None  # mean LAT(m) of the θ steps' samples
    expected_latency_us: float  # under P_θ after the epoch
    argmax_latency_us: float
    argmax: list[int]
    entropy: float  # mean over layers of P_θ's entropy (nats)
    seconds: float
    cpu_seconds: float


@dataclass
class SearchOutcome:
    """A finished (or resumed-and-finished) search: θ, the history, and what it cost."""

    out: str
    space: str
    settings: dict[str, Any]
    theta: list[list[float]]
    history: list[EpochRecord] = field(default_factory=list)
    cpu_seconds: float = 0.0  # this search's own process time, over every run that worked on it
    wall_seconds: float = 0.0
    resumed_at_epoch: int | None = None  # the epoch a run picked it up at (None: it ran from the start)

    @property
    def argmax(self) -> np.ndarray:
        return argmax_architecture(self.theta)

    @property
    def probabilities(self) -> np.ndarray:
        return softmax(self.theta)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["argmax"] = self.argmax.tolist()
        return data


def table_digest(table: LayerLatencyTable) -> str:
    """Names a latency table's content (a search is resumed only on the same LUT figures)."""
    digest = hashlib.sha256()
    for array in (table.candidate_us, table.present, table.elements):
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    digest.update(json.dumps([table.space, table.head_us, table.tail_us, table.head_elements, table.tail_elements,
                              table.overhead_us, None if table.correction is None else table.correction.to_json()],
                             default=str).encode())
    return digest.hexdigest()[:16]


def run_search(space: Any, table: LayerLatencyTable, dataset: Any, settings: DnasSettings, out: str | Path,
               on_epoch: Callable[[EpochRecord, int], None] | None = None) -> SearchOutcome:
    """Run (or resume) one supernet search into ``out``; ``on_epoch(record, epochs)`` after each saved epoch.

    ``on_epoch`` may raise (KeyboardInterrupt): the epoch is saved first, and the same call resumes.
    """
    import torch

    from optimizer.dnas.supernet import Supernet
    from optimizer.training.loop import _LAYOUT, _deterministic
    from optimizer.training.settings import code_version

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    identity = {"space": space.name, "dataset_id": dataset.dataset_id, "settings": settings.to_json(),
                "latency_table": table_digest(table), "code_version": code_version()}
    checkpoint_file = out / "checkpoint.pt"
    started_wall = time.perf_counter()
    with _deterministic(threads=1):
        layout = getattr(torch, _LAYOUT)
        net = Supernet(space, seed=settings.seed).to(memory_format=layout)
        theta = torch.zeros(net.shape, dtype=torch.float32, requires_grad=True)  # FBNet: uniform to start
        w_params = list(net.parameters())
        decay = [p for p in w_params if p.ndim > 1]
        plain = [p for p in w_params if p.ndim <= 1]
        w_opt = torch.optim.SGD([{"params": decay, "weight_decay": settings.w_weight_decay},
                                 {"params": plain, "weight_decay": 0.0}], lr=settings.w_lr,
                                momentum=settings.w_momentum, nesterov=settings.w_momentum > 0)
        theta_opt = torch.optim.Adam([theta], lr=settings.theta_lr, weight_decay=settings.theta_weight_decay)
        history: list[EpochRecord] = []
        cpu_before, start_epoch, resumed = 0.0, 0, None
        if checkpoint_file.exists():
            saved = _load_checkpoint(checkpoint_file, identity, out)
            net.load_state_dict(saved["supernet"])
            with torch.no_grad():
                theta.copy_(saved["theta"])
            w_opt.load_state_dict(saved["w_optimizer"])
            theta_opt.load_state_dict(saved["theta_optimizer"])
            history = [EpochRecord(**r) for r in saved["history"]]
            cpu_before, start_epoch = float(saved["cpu_seconds"]), int(saved["epochs_done"])
            resumed = start_epoch if start_epoch < settings.epochs else None

        images, labels = _search_data(dataset, space, layout)
        w_index, theta_index = search_splits(labels.numpy(), settings.theta_fraction)
        w_batches = _batches(len(w_index), settings.batch_size)
        theta_batches = _batches(len(theta_index), settings.batch_size)
        total_w_steps = settings.epochs * len(w_batches)
        cpu_started = time.process_time()
        for epoch in range(start_epoch, settings.epochs):
            epoch_wall, epoch_cpu = time.perf_counter(), time.process_time()
            tau = temperature(epoch, settings)
            gumbel = torch.Generator().manual_seed(_seed(settings.seed, epoch, 1))
            order = torch.Generator().manual_seed(_seed(settings.seed, epoch, 0))
            net.train()
            w_losses = []
            for b, batch in enumerate(w_batches):  # w on its split, θ fixed
                step = epoch * len(w_batches) + b
                for group in w_opt.param_groups:  # cosine over every w step of the search (no scheduler state)
                    group["lr"] = settings.w_lr * 0.5 * (1 + math.cos(math.pi * step / total_w_steps))
                index = torch.as_tensor(w_index)[torch.randperm(len(w_index), generator=order)[batch]]
                with torch.no_grad():
                    m = _gumbel(_per_image(theta.detach(), len(index), settings), tau, gumbel)
                loss = torch.nn.functional.cross_entropy(net(images[index], m), labels[index])
                w_opt.zero_grad(set_to_none=True)
                loss.backward()
                w_opt.step()
                w_losses.append(loss.item())
            theta_stats = None
            if epoch >= settings.warmup_epochs:
                theta_stats = _theta_epoch(net, theta, theta_opt, table, images, labels, theta_index, theta_batches,
                                           tau, settings, epoch)
            record = _record(epoch, tau, w_losses, theta_stats, theta, table, epoch_wall, epoch_cpu)
            history.append(record)
            cpu_total = cpu_before + time.process_time() - cpu_started
            _save(checkpoint_file, out, identity, net, theta, w_opt, theta_opt, history, cpu_total, epoch + 1, space,
                  settings)
            if on_epoch is not None:
                on_epoch(record, settings.epochs)
        cpu_total = cpu_before + time.process_time() - cpu_started
    return SearchOutcome(out=str(out), space=space.name, settings=asdict(settings),
                         theta=theta.detach().double().tolist(), history=history, cpu_seconds=cpu_total,
                         wall_seconds=time.perf_counter() - started_wall, resumed_at_epoch=resumed)


def _theta_epoch(net: Any, theta: Any, theta_opt: Any, table: LayerLatencyTable, images: Any, labels: Any,
                 theta_index: np.ndarray, batches: list[slice], tau: float, settings: DnasSettings,
                 epoch: int) -> dict[str, float]:
    """One pass of θ steps over its split: FBNet's loss, only θ's gradient computed."""
    import torch

    from optimizer.dnas.latency import expected_latency_torch

    gumbel = torch.Generator().manual_seed(_seed(settings.seed, epoch, 3))
    order = torch.Generator().manual_seed(_seed(settings.seed, epoch, 2))
    sums = {"loss": 0.0, "ce": 0.0, "correct": 0.0, "latency": 0.0, "images": 0, "steps": 0}
    for batch in batches:
        index = torch.as_tensor(theta_index)[torch.randperm(len(theta_index), generator=order)[batch]]
        m = _gumbel(_per_image(theta, len(index), settings), tau, gumbel)
        logits = net(images[index], m)
        ce = torch.nn.functional.cross_entropy(logits, labels[index], reduction="none")
        latency = expected_latency_torch(table, m)  # one LAT per sampled architecture
        loss = (ce * fbnet_loss_factor(latency, settings.alpha, settings.beta).to(ce.dtype)).mean()
        ce, latency = ce.mean(), latency.mean()
        (grad,) = torch.autograd.grad(loss, [theta])
        theta_opt.zero_grad(set_to_none=True)
        theta.grad = grad
        theta_opt.step()
        sums["loss"] += loss.item()
        sums["ce"] += ce.item()
        sums["latency"] += latency.item()
        sums["correct"] += float((logits.argmax(dim=1) == labels[index]).sum())
        sums["images"] += len(index)
        sums["steps"] += 1
    return {"loss": sums["loss"] / sums["steps"], "ce": sums["ce"] / sums["steps"],
            "accuracy": sums["correct"] / sums["images"], "latency": sums["latency"] / sums["steps"]}


def _per_image(theta: Any, batch: int, settings: DnasSettings) -> Any:
    """θ as the Gumbel-softmax samples it: one row set per image, or one for the batch."""
    return theta.expand(batch, *theta.shape) if settings.per_image else theta


def _gumbel(theta: Any, tau: float, generator: Any) -> Any:
    from optimizer.dnas.supernet import gumbel_softmax

    return gumbel_softmax(theta, tau, generator)


def _record(epoch: int, tau: float, w_losses: list[float], stats: dict[str, float] | None, theta: Any,
            table: LayerLatencyTable, wall: float, cpu: float) -> EpochRecord:
    t = theta.detach().double().numpy()
    p = softmax(t)
    genes = argmax_architecture(t)
    entropy = float(np.mean(-(p * np.log(np.clip(p, 1e-300, None))).sum(axis=1)))
    return EpochRecord(epoch=epoch, tau=tau, w_loss=float(np.mean(w_losses)),
                       theta_loss=None if stats is None else stats["loss"], theta_ce=None if stats is None else stats["ce"],
                       theta_accuracy=None if stats is None else stats["accuracy"],
                       sampled_latency_us=None if stats is None else stats["latency"],
                       expected_latency_us=expected_latency_us(table, p),
                       argmax_latency_us=expected_latency_us(table, one_hot(genes, p.shape[1])),
                       argmax=genes.tolist(), entropy=entropy, seconds=time.perf_counter() - wall,
                       cpu_seconds=time.process_time() - cpu)


def _search_data(dataset: Any, space: Any, layout: Any) -> tuple[Any, Any]:
    """The training images (never the held-out ones) at the space's resolution, and their labels."""
    import torch

    from optimizer.training.loop import _resized

    images, labels = dataset.train()
    resolution = space.resolution(space.low)
    return _resized(images, resolution).contiguous(memory_format=layout), torch.from_numpy(np.asarray(labels))


def _batches(n: int, size: int) -> list[slice]:
    batches = [slice(i, i + size) for i in range(0, n, size)]
    if n - batches[-1].start < 2:  # batch norm needs two images where the last layers are 1x1
        batches.pop()
    if not batches:
        raise DnasError(f"a search split needs at least 2 images, got {n}")
    return batches


def _seed(seed: int, epoch: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0])


def _load_checkpoint(path: Path, identity: dict[str, Any], out: Path) -> dict[str, Any]:
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as problem:  # a torn or foreign file: one line
        raise DnasError(f"{path}: cannot read the search's checkpoint ({type(problem).__name__}); "
                        f"remove {out} to start over") from None
    if not isinstance(saved, dict) or saved.get("kind") != STATE_KIND or saved.get("version") != STATE_VERSION:
        raise DnasError(f"{path}: not a version-{STATE_VERSION} DNAS search checkpoint")
    if saved.get("identity") != identity:
        differs = sorted(k for k in identity if (saved.get("identity") or {}).get(k) != identity[k])
        raise DnasError(f"{out} holds another search (its {', '.join(differs)} differ); give another --out, "
                        f"or remove it to start over")
    return saved


def _save(path: Path, out: Path, identity: dict[str, Any], net: Any, theta: Any, w_opt: Any, theta_opt: Any,
          history: list[EpochRecord], cpu_seconds: float, epochs_done: int, space: Any, settings: DnasSettings) -> None:
    import torch

    state = {"kind": STATE_KIND, "version": STATE_VERSION, "identity": identity, "supernet": net.state_dict(),
             "theta": theta.detach().clone(), "w_optimizer": w_opt.state_dict(), "theta_optimizer": theta_opt.state_dict(),
             "history": [asdict(r) for r in history], "cpu_seconds": cpu_seconds, "epochs_done": epochs_done}
    write_atomically(path, lambda tmp: torch.save(state, tmp))
    readable = {"kind": STATE_KIND, "version": STATE_VERSION, "identity": identity, "epochs_done": epochs_done,
                "epochs": settings.epochs, "cpu_seconds": cpu_seconds, "space": space.name,
                "theta": theta.detach().double().tolist(), "history": [asdict(r) for r in history]}
    write_text_atomically(out / "state.json", json.dumps(readable, indent=1, allow_nan=False) + "\n")
