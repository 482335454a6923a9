"""NetAdapt (Yang et al., ECCV 2018, Algorithm 1): progressive, measurement-guided filter pruning.

Starting from a trained network and a resource budget, each iteration i

1. tightens the constraint: ``Con = Res_i − ΔR_i`` with ``ΔR_i = ΔR_0 · decay^i``
   (the paper: 0.5 ms decaying by 0.96 for the small MobileNetV1, the initial
   reduction scaled with the initial network's latency otherwise; we default
   to 4% of the initial network's resource, about the paper's ratio, decay 0.96);
2. for every channel group (:mod:`optimizer.netadapt.pruning`: one layer's filters, a
   block's expansion, or a residual stage in lockstep) proposes the **largest**
   channel count on the device's channel step that meets ``Con``, the network
   resource estimated from the layer-wise table (:mod:`optimizer.netadapt.layer_tables`;
   the entries a count needs are measured on the device first, when one is
   given), with the next layers' inputs shrunk alike;
3. keeps each proposal's largest-L2-norm filters, short-term fine-tunes it
   (a fixed number of mini-batches) on the training images minus a per-class
   hold-out, and measures it on that hold-out;
4. carries the most accurate proposal over.

When the estimate meets the budget the network is long-term fine-tuned on the
whole training set (ours: for each requested budget, the first iteration that
meets it).  Every iteration's network is saved (checkpoint + ONNX export with
its weights), its accuracy on the data set's held-out split recorded, and —
for latency on a device — measured end to end, so the run is a frontier and
each estimate is checked against the device.

The run lives in one folder (``netadapt.json`` + ``iterations/`` +
``finals/``): every finished iteration, every finished proposal inside an
unfinished iteration and every long-term fine-tune is on disk, and the same
command resumes after a kill.

This module holds :class:`NetAdaptRun`: the loop itself (steps 1-4, the budgets,
the run's identity and state); its end-to-end measurement is
:mod:`optimizer.netadapt.measure`, its long-term trainings and baselines
:mod:`optimizer.netadapt.finals`.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness.atomic import write_text_atomically
from harness.errors import ChameleonError
from harness.signature import parse_signature
from optimizer.netadapt.finals import LongTermTrainings
from optimizer.netadapt.finetune import TrainJob, data_splits, run_jobs
from optimizer.netadapt.measure import EndToEndMeasurement
from optimizer.netadapt.network_files import file_digest, load_network, save_network
from optimizer.netadapt.records import (MEASURED_MARGIN, Iteration, NetAdaptResult, meets_budget, new_state,
                                        read_state, save_state)
from optimizer.netadapt.report import compare_with_baselines, plot_netadapt
from optimizer.netadapt.settings import NetAdaptError, grid_below, parse_budget


@dataclass
class NetAdaptRun(EndToEndMeasurement, LongTermTrainings):
    """Everything one NetAdapt run needs (the fields of :class:`~optimizer.netadapt.inputs.RunInputs`);
    :meth:`run` runs or resumes it in ``out``."""

    def run(self) -> NetAdaptResult:
        from optimizer.netadapt.pruning import ChannelStructure

        started = time.monotonic()
        out = Path(self.out)
        net0, meta = load_network(self.model)
        if net0.signatures[-1].c_out < self.data.n_classes:
            raise NetAdaptError(f"{self.model}: {net0.signatures[-1].c_out} outputs, but {self.data.name} has "
                                f"{self.data.n_classes} classes")
        if meta.get("dataset_id") and meta["dataset_id"] != self.data.dataset_id:
            raise NetAdaptError(f"{self.model} was trained on another data set ({meta['dataset_id']}) than "
                                f"{self.data.name} ({self.data.dataset_id})")
        structure0 = ChannelStructure(net0.signatures)
        # Budgets are checked against the table's estimate before anything is written or measured (the
        # network correction fitted below moves it by a few percent at most; checked again after it).
        from optimizer.netadapt.layer_tables import MissingEntries

        try:
            self._check_budgets(self._estimate(net0.signatures).value)
        except MissingEntries:
            pass  # the start network's entries are measured below, then the budgets checked
        out.mkdir(parents=True, exist_ok=True)
        state = self._state(meta)
        self._say(f"[bold]NetAdapt[/] {self.model} → {out} ({self.settings.resource}, table {getattr(self.table, 'source', '')})")

        self.table.ensure([net0.signatures])
        correction = self._calibrate(net0, state)  # latency on a device, without a given correction
        start_estimate = self._estimate(net0.signatures)
        budgets = self._check_budgets(start_estimate.value)
        target = min(budgets)

        iterations = [Iteration(**i) for i in state["iterations"]]
        if not iterations:
            iterations.append(self._record_start(net0, structure0, start_estimate))
            save_state(out, state, iterations)

        # Algorithm 1's loop runs on the table's estimates; then every network is measured end to end in one
        # interleaved batch (a slow period of this shared machine then hits all alike).  Where the last network
        # is not MEASURED_MARGIN under the budget as measured, the loop goes on: the final network (measured again
        # after its fine-tune) must meet the budget on the device.
        net = self._load_iteration(iterations[-1])
        stopped = "budget met"
        while True:
            while not meets_budget(iterations[-1], target):
                i = len(iterations) - 1
                if i >= self.settings.max_iterations:
                    stopped = f"stopped after {i} iterations (max_iterations)"
                    break
                record = self._iteration(net, iterations[-1], start_estimate.value)
                if record is None:
                    stopped = f"no group can meet the constraint at iteration {i + 1}"
                    self._say(f"[yellow]{stopped}[/]")
                    break
                iterations.append(record)
                save_state(out, state, iterations)
                net = self._load_iteration(record)
            if not self._measure_iterations(iterations, state) or stopped != "budget met":
                break
            save_state(out, state, iterations)
            if meets_budget(iterations[-1], target):
                break
            self._say(f"    the last network measures {iterations[-1].measured_ms:.4g} ms, not "
                      f"{MEASURED_MARGIN:.0%} under the {target:.4g} ms budget: going on")

        finals = self._finals(iterations, budgets, state)
        baselines = self._baselines(net0, structure0, meta, state)
        self._measure_finals(finals + baselines, state)
        save_state(out, state, iterations, finals, baselines)
        comparisons = compare_with_baselines(finals, baselines)
        result = NetAdaptResult(
            out=str(out), resource=self.settings.resource, unit=self.unit, start=start_estimate.value, budgets=budgets,
            iterations=iterations, finals=finals, baselines=baselines, comparisons=comparisons,
            correction={} if correction is None else correction.to_json(), table=str(getattr(self.table, "source", "")),
            device=None if self.profile is None else self.profile.name,
            entries_measured=int(getattr(self.table, "measured", 0)), stopped=stopped)
        result.frontier_png = str(plot_netadapt(result, out / "frontier.png"))
        result.seconds = time.monotonic() - started
        write_text_atomically(out / "result.json", json.dumps(result.to_json(), indent=2, default=float) + "\n")
        return result

    # ---- identity and state
    def _identity(self, meta: dict[str, Any]) -> dict[str, Any]:
        settings = asdict(self.settings)
        settings.pop("max_iterations")  # a stopping rule: a run may be resumed with a higher one
        return {"model": file_digest(Path(self.model)), "dataset_id": self.data.dataset_id, "settings": settings,
                "table": str(getattr(self.table, "source", "")),
                "device": None if self.profile is None else self.profile.name}

    def _state(self, meta: dict[str, Any]) -> dict[str, Any]:
        identity = self._identity(meta)
        state = read_state(Path(self.out), identity)
        if state is None:
            return new_state(identity, meta)
        self._say(f"resuming: {len(state.get('iterations', []))} networks on record")
        return state

    # ---- budgets
    def _budgets(self, start: float) -> list[float]:
        values = []
        for budget in self.budgets:
            if isinstance(budget, (int, float)):
                values.append(float(budget))
                continue
            value, relative = parse_budget(str(budget), self.settings.resource)
            values.append(value * start if relative else value)
        if not values:
            raise NetAdaptError("give at least one budget")
        return sorted(set(values), reverse=True)

    def _check_budgets(self, start: float) -> list[float]:
        budgets = self._budgets(start)
        if min(budgets) >= start:
            raise NetAdaptError(f"every budget ({', '.join(f'{b:.4g}' for b in budgets)} {self.unit}) is at or above "
                                f"the initial network's {start:.4g} {self.unit}: nothing to adapt")
        first = self.settings.reduction(0, start)
        reachable = math.inf if self.settings.decay == 1 else first / (1 - self.settings.decay)
        if start - min(budgets) >= reachable:
            raise NetAdaptError(f"the reduction schedule (ΔR_0 {first:.4g} {self.unit}, decay {self.settings.decay:g}) "
                                f"removes less than {reachable:.4g} {self.unit} in all, the tightest budget needs "
                                f"{start - min(budgets):.4g}: raise the initial reduction or the decay")
        return budgets

    # ---- one iteration
    def _record_start(self, net0: Any, structure: Any, estimate: Any) -> Iteration:
        from optimizer.training.loop import _deterministic, network_accuracy

        folder = Path(self.out) / "iterations"
        checkpoint = save_network(folder / "iter-000.pt", net0, iteration=0, dataset_id=self.data.dataset_id)
        onnx = net0.export_onnx(folder / "iter-000.onnx")
        splits = data_splits(self.data, net0.signatures[0].h, self.settings.selection_per_class)
        with _deterministic():
            selection = network_accuracy(net0, *splits["selection"])
            test = network_accuracy(net0, *splits["test"])
        return Iteration(index=0, units=[s.key for s in net0.signatures], channels=list(structure.sizes()),
                         estimate=estimate.value, interpolated=list(estimate.interpolated), constraint=None,
                         reduction=None, group=None, from_channels=None, to_channels=None, proposals=0,
                         selection_accuracy=selection, test_accuracy=test,
                         macs=int(sum(s.macs for s in net0.signatures)), checkpoint=str(checkpoint), onnx=str(onnx))

    def _load_iteration(self, record: Iteration) -> Any:
        net, _ = load_network(record.checkpoint)
        return net

    def _iteration(self, net: Any, previous: Iteration, start: float) -> Iteration | None:
        """Lines 4-9 of Algorithm 1: propose per group, fine-tune, keep the most accurate."""
        from optimizer.netadapt.pruning import ChannelStructure

        began = time.monotonic()
        i = previous.index
        structure = ChannelStructure(net.signatures)
        reduction = self.settings.reduction(i, start)
        constraint = previous.estimate - reduction
        proposals = self._choose_counts(structure, constraint)
        self._say(f"iteration {i + 1}: {previous.estimate:.4g} → ≤ {constraint:.4g} {self.unit} "
                  f"(ΔR {reduction:.3g}); {len(proposals)} proposals")
        if not proposals:
            return None
        folder = Path(self.out) / "iterations" / f"iter-{i + 1:03d}-proposals"
        short = self.settings.short_term()
        jobs, done = [], {}
        for group, channels, estimate in proposals:
            name = f"g{group:02d}-{channels}"
            path = folder / f"{name}.pt"
            if path.exists():
                try:
                    done[name] = load_network(path)
                    continue
                except ChameleonError:
                    path.unlink()
            pruned = structure.prune(net, {group: channels})
            jobs.append(TrainJob(
                name=name, units=tuple(s.key for s in pruned.signatures),
                state={k: v.detach().clone() for k, v in pruned.state_dict().items()},
                settings=replace(short, seed=_seed(self.settings.seed, i + 1, group)),
                train_on="fine_tune", evaluate_on=("selection", "test"),
                selection_per_class=self.settings.selection_per_class,
                steps=self.settings.short_term_steps, schedule="constant"))
        with self._progress(f"iteration {i + 1}: short-term fine-tunes") as on_progress:
            on_progress(len(done), len(proposals))
            for result in run_jobs(jobs, self.data, self.workers, self.cluster):
                from optimizer.training.torch_networks import Network

                units = [parse_signature(k) for k in next(j for j in jobs if j.name == result.name).units]
                pruned = Network(units)
                pruned.load_state_dict(result.state)
                save_network(folder / f"{result.name}.pt", pruned, **result.accuracy)
                done[result.name] = (pruned.eval(), dict(result.accuracy))
                on_progress(len(done), len(proposals))
        # Pick highest accuracy on the selection hold-out; ties go to the smaller resource, then the group order.
        scored = []
        for group, channels, estimate in proposals:
            net_k, accuracy = done[f"g{group:02d}-{channels}"]
            scored.append((-accuracy["selection"], estimate.value, group, channels, estimate, net_k, accuracy))
        scored.sort(key=lambda s: s[:4])
        _, _, group, channels, estimate, chosen, accuracy = scored[0]
        chosen_structure = ChannelStructure(chosen.signatures)
        folder_out = Path(self.out) / "iterations"
        checkpoint = save_network(folder_out / f"iter-{i + 1:03d}.pt", chosen, iteration=i + 1,
                                  dataset_id=self.data.dataset_id, **accuracy)
        onnx = chosen.export_onnx(folder_out / f"iter-{i + 1:03d}.onnx")
        record = Iteration(
            index=i + 1, units=[s.key for s in chosen.signatures], channels=list(chosen_structure.sizes()),
            estimate=estimate.value, interpolated=list(estimate.interpolated), constraint=constraint, reduction=reduction,
            group=structure.groups[group].name, from_channels=structure.groups[group].channels, to_channels=channels,
            proposals=len(proposals), selection_accuracy=accuracy["selection"], test_accuracy=accuracy["test"],
            macs=int(sum(s.macs for s in chosen.signatures)), checkpoint=str(checkpoint), onnx=str(onnx),
            seconds=time.monotonic() - began)
        shutil.rmtree(folder, ignore_errors=True)
        self._say(f"    kept {record.group}: {record.from_channels} → {record.to_channels} channels, "
                  f"{record.estimate:.4g} {self.unit}, hold-out accuracy {record.selection_accuracy:.3f}")
        return record

    def _choose_counts(self, structure: Any, constraint: float) -> list[tuple[int, int, Any]]:
        """ChooseNumFilters for every group: the largest count on the step grid whose network meets ``constraint``.

        Counts are tried level by level (every group one step further down at
        a time) so the table measures each level's missing entries in one
        sweep.
        """
        step = self.settings.channel_step
        candidates = {g.index: [c for c in grid_below(g.channels, step) if structure.allowed(g.index, c)]
                      for g in structure.groups}
        pending = {g: 0 for g, counts in candidates.items() if counts}
        chosen: list[tuple[int, int, Any]] = []
        while pending:
            level = {g: candidates[g][k] for g, k in pending.items()}
            networks = {g: structure.resized({g: c}) for g, c in level.items()}
            with self._progress("layer entries") as on_progress:
                self.table.on_progress = on_progress if hasattr(self.table, "on_progress") else None
                self.table.ensure(networks.values())
                if hasattr(self.table, "on_progress"):
                    self.table.on_progress = None
            for g, units in networks.items():
                estimate = self._estimate(units)
                if estimate.value <= constraint:
                    chosen.append((g, level[g], estimate))
                    del pending[g]
                elif pending[g] + 1 < len(candidates[g]):
                    pending[g] += 1
                else:
                    del pending[g]  # even its smallest count does not meet the constraint
        return sorted(chosen)


def _seed(*parts: int) -> int:
    return int.from_bytes(hashlib.sha256(json.dumps(parts).encode()).digest()[:4], "little")
