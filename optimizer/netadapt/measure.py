"""NetAdapt's end-to-end measurement on a device (:class:`EndToEndMeasurement`, a part of
:class:`~optimizer.netadapt.loop.NetAdaptRun`): the LUT sum's network correction fitted on random prunings of the
start network, the iterations and finals measured in interleaved batches, each batch checked against reference
networks and measured again when this machine was in a slow period."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.atomic import write_atomically, write_text_atomically
from harness.errors import ChameleonError
from optimizer.netadapt.inputs import RunInputs
from optimizer.netadapt.network_files import file_digest
from optimizer.netadapt.records import Final, Iteration, save_timings
from optimizer.netadapt.settings import grid_below

# A batch of end-to-end measurements is repeated when its reference network is further than this from its first figure.
REFERENCE_TOLERANCE = 0.04
REFERENCE_ATTEMPTS = 3
REFERENCES = 3
REFERENCE_PAUSE_S = 20.0


class EndToEndMeasurement(RunInputs):
    """The run's networks measured end to end on ``profile`` (latency only); timings cached in the run's state."""

    def _calibrate(self, net0: Any, state: dict[str, Any]) -> Any:
        """Fit the LUT sum's network correction on random prunings of the start network, measured end to end."""
        from optimizer.latency.lut_model import LutLatencyModel, NetworkCorrection
        from optimizer.netadapt.pruning import ChannelStructure

        table = self.table
        if self.settings.resource != "latency" or self.profile is None or not self.calibration:
            return getattr(table, "correction", None)
        if getattr(table, "correction", None) is not None:
            return table.correction
        path = Path(self.out) / "network_correction.json"
        if path.exists():
            table.correction = NetworkCorrection.load(path)
            return table.correction
        from harness.models.onnx_models import build_network

        structure = ChannelStructure(net0.signatures)
        rng = np.random.default_rng([self.settings.seed, 4099])
        networks = [list(net0.signatures)]
        while len(networks) < self.calibration:
            sizes = {}
            for g in structure.groups:
                options = [c for c in grid_below(g.channels, self.settings.channel_step, include_current=True)
                           if structure.allowed(g.index, c)]
                sizes[g.index] = int(rng.choice(options)) if options else g.channels
            try:
                networks.append(structure.resized(sizes))
            except ChameleonError:
                continue
        self._say(f"calibrating the LUT sum on {len(networks)} prunings of the start network (measured end to end)")
        with self._progress("layer entries") as on_progress:
            table.on_progress = on_progress
            table.ensure(networks)
            table.on_progress = None
        folder = Path(self.out) / "calibration"
        paths = []
        for k, units in enumerate(networks):
            p = folder / f"calibration-{k:02d}.onnx"
            if not p.exists():
                folder.mkdir(parents=True, exist_ok=True)
                data = build_network(units, seed=k).SerializeToString()
                write_atomically(p, lambda tmp, data=data: tmp.write_bytes(data))
            paths.append(p)
        timings = self._measure_files(paths, state)
        plain = LutLatencyModel(table.values, table.overhead_us, table.source)
        estimates = [plain.estimate(units) for units in networks]
        correction = NetworkCorrection.fit(estimates, [timings[str(p)]["median_us"] for p in paths],
                                           device=table.device, lut=str(table.source))
        write_text_atomically(path, json.dumps(correction.to_json(), indent=2) + "\n")
        plain_error = float(np.mean([abs(e.plain_us / timings[str(p)]["median_us"] - 1) for e, p in zip(estimates, paths)]))
        self._say(f"    LUT sum: mean error {plain_error:.1%} plain → {correction.calibration_mape:.1%} corrected")
        table.correction = correction
        return correction

    def _measure_iterations(self, iterations: Sequence[Iteration], state: dict[str, Any]) -> bool:
        """Measure the iterations not measured yet, end to end, in one batch; False when there is no device."""
        if self.profile is None or self.settings.resource != "latency":
            return False
        todo = [it for it in iterations if it.measured_ms is None]
        if not todo:
            return True
        self._say(f"measuring {len(todo)} network(s) end to end on {self.profile.name}")
        timings = self._measure_files([Path(it.onnx) for it in todo], state)
        for it in todo:
            it.take(timings[it.onnx])
            self._say(f"    iteration {it.index}: measured {it.measured_ms:.4g} ms against {it.estimate:.4g} ms "
                      f"estimated ({it.latency_error:+.1%})")
        return True

    def _measure_finals(self, records: Sequence[Final], state: dict[str, Any]) -> None:
        """Measure the networks not measured yet (one batch), then judge each final against its budget:
        as measured on a device, else as estimated."""
        on_device = self.profile is not None and self.settings.resource == "latency"
        todo = [r for r in records if r.measured_ms is None] if on_device else []
        if todo:
            timings = self._measure_files([Path(r.onnx) for r in todo], state)
            for r in todo:
                r.take(timings[r.onnx])
        for record in records:
            if record.budget is not None:
                record.within_budget = (record.measured_ms if on_device else record.estimate) <= record.budget

    def _measure_files(self, paths: Sequence[Path], state: dict[str, Any]) -> dict[str, dict[str, float]]:
        """End-to-end timings of ONNX files on the profile's device, cached in the state by file content.

        This machine's speed comes and goes in bursts (other tenants; see
        the README): a batch measured in a slow period reads 20-40% slow
        against a LUT measured in a quiet one.  So every batch also measures
        references (the first calibration networks, the start network's
        architecture among them), and a batch
        whose references are more than ``REFERENCE_TOLERANCE`` off their first
        figures (median ratio) is measured again after a pause (up to
        ``REFERENCE_ATTEMPTS`` times), keeping the batch closest to them; the
        drift of the batch kept is recorded with every figure.
        """
        known = state.setdefault("timings", {})
        digests = {str(p): file_digest(p) for p in paths}
        todo = list(dict.fromkeys(Path(p) for p in paths if digests[str(p)] not in known))
        if todo:
            timings, drift = self.measure_side_by_side(todo, state)
            for path, timing in zip(todo, timings):
                known[digests[str(path)]] = {"median_us": timing.median_us, "p10_us": timing.p10_us,
                                             "p90_us": timing.p90_us, "runs": timing.runs, "reference_drift": drift}
            save_timings(Path(self.out), known, state.get("references"))  # with what is already recorded
        return {str(p): known[digests[str(p)]] for p in paths}

    def measure_side_by_side(self, paths: Sequence[Path], state: dict[str, Any]) -> tuple[list[Any], float]:
        """Measure ONNX files in one interleaved batch with the run's reference networks; (timings, drift).

        The drift is the median ratio of the references' medians now to their
        first figures, minus one.  The first batch of a run (the calibration
        networks) sets the references: its first ``REFERENCES`` files.
        """
        from harness.networks.timing import measure_networks

        references = [r for r in state.get("references") or [] if Path(r["path"]).exists()]
        if not references:  # a run folder from before references were kept: its calibration networks' first figures
            known = state.get("timings", {})
            for path in sorted((Path(self.out) / "calibration").glob("calibration-*.onnx"))[:REFERENCES]:
                timing = known.get(file_digest(path))
                if timing:
                    references.append({"path": str(path), "median_us": timing["median_us"]})
            state["references"] = references or None
        extra = [Path(r["path"]) for r in references]
        best: tuple[float, list[Any]] | None = None
        for attempt in range(REFERENCE_ATTEMPTS):
            with self._progress("measure networks") as on_progress:
                timings = measure_networks(self.profile, list(paths) + extra, progress=on_progress)
            ratios = [t.median_us / r["median_us"] for t, r in zip(timings[len(paths):], references)]
            drift = float(np.median(ratios)) - 1 if ratios else 0.0
            if best is None or abs(drift) < abs(best[0]):
                best = (drift, timings[:len(paths)])
            if abs(drift) <= REFERENCE_TOLERANCE:
                break
            if attempt + 1 < REFERENCE_ATTEMPTS:
                self._say(f"    [yellow]the reference networks measure {drift:+.0%} off their first figures "
                          f"(a slow period of this machine?): measuring again in {REFERENCE_PAUSE_S:.0f} s[/]")
                time.sleep(REFERENCE_PAUSE_S)
        drift, timings = best
        if abs(drift) > REFERENCE_TOLERANCE:
            self._say(f"    [yellow]kept the batch whose references are {drift:+.0%} off: these figures are suspect[/]")
        if not references:
            state["references"] = [{"path": str(p), "median_us": t.median_us}
                                   for p, t in zip(paths[:REFERENCES], timings[:REFERENCES])]
        return timings, drift
