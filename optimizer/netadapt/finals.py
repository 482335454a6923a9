"""NetAdapt's long trainings (:class:`LongTermTrainings`, a part of :class:`~optimizer.netadapt.loop.NetAdaptRun`):
the long-term fine-tune of each budget's network, the width-multiplier baselines (:func:`width_multiplier`)
trained from scratch alike, and both recorded as :class:`~optimizer.netadapt.records.Final` as each finishes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.errors import ChameleonError
from harness.signature import OpSignature, parse_signature
from optimizer.netadapt.finetune import TrainJob, run_jobs
from optimizer.netadapt.inputs import RunInputs
from optimizer.netadapt.network_files import load_network, save_network
from optimizer.netadapt.records import Final, Iteration, meets_budget, save_final
from optimizer.netadapt.settings import NetAdaptError, grid_below


class LongTermTrainings(RunInputs):
    """The finals (each budget's first iteration that meets it, long-term fine-tuned) and the baselines."""

    def _finals(self, iterations: Sequence[Iteration], budgets: Sequence[float], state: dict[str, Any]) -> list[Final]:
        chosen: dict[int, list[float]] = {}
        for budget in budgets:
            first = next((it for it in iterations if meets_budget(it, budget)), None)
            if first is None:
                self._say(f"[yellow]budget {budget:.4g} {self.unit}: no iteration reached it[/]")
                continue
            chosen.setdefault(first.index, []).append(budget)
        finals: list[Final] = []
        jobs = []
        for index, for_budgets in chosen.items():
            known = state["finals"].get(str(index))
            record = iterations[index]
            if known and Path(known["checkpoint"]).exists():
                final = Final(**known)
                final.budget = min(for_budgets)
                finals.append(final)
                continue
            jobs.append((index, min(for_budgets), self.long_term_job(f"final-iter-{index:03d}", record)))
        if jobs:
            self._say(f"long-term fine-tune of {len(jobs)} network(s) ({self.settings.long_term_epochs} epochs each)")
            own = {job.name: {"iteration": index, "budget": budget} for index, budget, job in jobs}
            finals += self._train_records([job for _, _, job in jobs], "finals", "long-term fine-tunes", own)
        return sorted(finals, key=lambda f: f.iteration or 0)

    def long_term_job(self, name: str, record: Iteration, seed: int | None = None) -> TrainJob:
        """The long-term fine-tune of an iteration's network: all training images, scored on the test split."""
        net, _ = load_network(record.checkpoint)
        settings = self.settings.long_term()
        return TrainJob(name=name, units=tuple(record.units),
                        state={k: v.detach().clone() for k, v in net.state_dict().items()},
                        settings=settings if seed is None else replace(settings, seed=seed), train_on="train",
                        evaluate_on=("test",), selection_per_class=self.settings.selection_per_class)

    def baseline_settings(self, meta: dict[str, Any]) -> Any:
        """The baselines' training: the start network's (from its checkpoint), for its epochs plus the long-term
        fine-tune's, so that a baseline trains as long as an adapted network did in all."""
        from optimizer.training.settings import TrainingSettings

        try:
            original = TrainingSettings(**json.loads(meta["settings"])) if meta.get("settings") else TrainingSettings()
        except (TypeError, ValueError, ChameleonError):
            original = TrainingSettings()
        return replace(original, epochs=original.epochs + self.settings.long_term_epochs)

    def baseline_job(self, name: str, units: Sequence[str], settings: Any) -> TrainJob:
        """A width-multiplier baseline trained from scratch: all training images, scored on the test split."""
        return TrainJob(name=name, units=tuple(units), state=None, settings=settings, train_on="train",
                        evaluate_on=("test",), selection_per_class=self.settings.selection_per_class)

    def _train_records(self, jobs: Sequence[TrainJob], folder: str, label: str,
                       own: dict[str, dict[str, Any]]) -> list[Final]:
        """Train ``jobs`` in the workers; save each network (checkpoint and ONNX export) in ``folder``, estimate it,
        and record it as a Final, kept in the run's state as soon as it is trained.  ``own``: each job's own fields
        (a final's iteration and budget, a baseline's multiplier)."""
        from optimizer.training.torch_networks import Network

        by_name = {job.name: job for job in jobs}
        records: list[Final] = []
        with self._progress(label) as on_progress:
            on_progress(0, len(jobs))
            for result in run_jobs(jobs, self.data, self.workers, self.cluster):
                job, fields = by_name[result.name], own[result.name]
                units = [parse_signature(k) for k in job.units]
                net = Network(units)
                net.load_state_dict(result.state)
                checkpoint = save_network(Path(self.out) / folder / f"{result.name}.pt", net,
                                          dataset_id=self.data.dataset_id,
                                          **({"multiplier": fields["multiplier"]} if "multiplier" in fields else {}),
                                          **result.accuracy)
                onnx = net.export_onnx(Path(self.out) / folder / f"{result.name}.onnx")
                estimate = self._estimate(units)
                record = Final(name=result.name, budget=fields.get("budget"), iteration=fields.get("iteration"),
                               units=list(job.units), estimate=estimate.value, interpolated=list(estimate.interpolated),
                               test_accuracy=result.accuracy["test"], macs=int(sum(s.macs for s in units)),
                               checkpoint=str(checkpoint), onnx=str(onnx), multiplier=fields.get("multiplier"),
                               seconds=result.seconds)
                records.append(record)
                save_final(Path(self.out), record)
                on_progress(len(records), len(jobs))
        return records

    def _baselines(self, net0: Any, structure: Any, meta: dict[str, Any], state: dict[str, Any]) -> list[Final]:
        if not self.baselines:
            return []
        settings = self.baseline_settings(meta)
        baselines, jobs = [], []
        for alpha in sorted(set(float(a) for a in self.baselines)):
            known = state["baselines"].get(f"{alpha:g}")
            if known and Path(known["checkpoint"]).exists():
                baselines.append(Final(**known))
                continue
            units = width_multiplier(structure, alpha, self.settings.channel_step)
            jobs.append((alpha, self.baseline_job(f"multiplier-{alpha:g}", [s.key for s in units], settings)))
        if jobs:
            self.table.ensure([[parse_signature(k) for k in job.units] for _, job in jobs])
            self._say(f"width-multiplier baselines {', '.join(f'{a:g}' for a, _ in jobs)}: trained from scratch, "
                      f"{settings.epochs} epochs (the original's {settings.epochs - self.settings.long_term_epochs} + the long-term fine-tune's "
                      f"{self.settings.long_term_epochs})")
            own = {job.name: {"multiplier": alpha} for alpha, job in jobs}
            baselines += self._train_records([job for _, job in jobs], "baselines", "baselines", own)
        return sorted(baselines, key=lambda b: b.multiplier or 0)


def width_multiplier(structure: Any, alpha: float, step: int) -> list[OpSignature]:
    """The start network with every channel group scaled by ``alpha`` (rounded to the step, at least one step).

    A group whose scaled count would change a block's structure takes the
    nearest allowed count on the grid.
    """
    if not 0 < alpha <= 1:
        raise NetAdaptError(f"width multiplier {alpha!r} must be in (0, 1]")
    sizes: dict[int, int] = {}
    for g in structure.groups:
        if alpha == 1:
            sizes[g.index] = g.channels
            continue
        target = max(step, int(round(alpha * g.channels / step)) * step)
        target = min(target, g.channels)
        options = sorted(grid_below(g.channels, step, include_current=True), key=lambda c: (abs(c - target), c))
        sizes[g.index] = next((c for c in options if structure.allowed(g.index, c)), g.channels)
    # The groups were checked one at a time; together they must also keep every block's structure.
    for _ in range(len(structure.groups)):
        try:
            return structure.resized(sizes)
        except ChameleonError:
            for g in structure.groups:  # nudge groups up one step until the combination is valid
                if sizes[g.index] < g.channels:
                    sizes[g.index] = min(g.channels, sizes[g.index] + step)
                    break
    return structure.resized(sizes)
