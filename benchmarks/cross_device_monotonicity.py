"""Cross-device latency monotonicity on our own configurations: the same random ChamNet-Mobile networks, several runtimes.

"One Proxy Device Is Enough" asks whether architectures rank alike by latency
on two devices (Spearman's rank correlation, SRCC).  This benchmark makes
such data from configurations of this machine that execute the same ONNX graph
differently, and measures ``--n`` seeded random architectures of
``chamnet-mobile`` (full resolution range 96-224, nothing capped) on each into
one architecture latency table (``harness.networks.tables``: ``arch_id``, the 21
genes, ``latency_ms:<config>``):

- ``xeon``: ONNX Runtime, 1 intra-op thread pinned to one core, all graph
  optimisations (the LUT's configuration).
- ``xeon-no-nchwc``: the same with the NCHWc layout transformer disabled.
  NCHWc reorders activations into channel blocks of 8/16 and runs blocked conv
  kernels, with reorder nodes at its boundaries: what it gains depends on each
  layer's channels and resolution, so architectures can swap places.
- ``xeon-2threads``: ONNX Runtime with 2 intra-op threads on both cores:
  large, high-resolution layers parallelise well and small, narrow ones hardly
  at all (and thread synchronisation costs a fixed amount per operator), so
  deep narrow networks gain less than wide shallow ones.
- ``xeon-int8``: the ``xeon`` runner on the network statically quantized by
  ONNX Runtime's quantization tool (QDQ, int8 per-channel weights, uint8
  activations, calibrated on one random input; latency only, accuracy not
  looked at): ONNX Runtime fuses it into QLinearConv kernels whose speed-up
  over fp32 differs by layer shape (pointwise convs gain most, depthwise
  little), as int8 on a phone's CPU does.
- ``litert``: LiteRT (``ai_edge_litert``) on the same core, 1 thread, its
  default XNNPACK delegate (``harness.runners.litert_local``), on the same
  network written as ``.tflite`` (``harness.models.tflite_models.write_network``:
  the same units and weights as the ONNX file, NHWC).  A different runtime
  with different kernels and fusions (XNNPACK's own GEMM/depthwise
  micro-kernels instead of ONNX Runtime's MLAS with NCHWc), the pair the
  issue expects might rank differently.
- ``executorch``: ExecuTorch (``xeon-executorch``: XNNPACK delegate, 1
  thread, the same core) on the same network as one ``.pte``
  (``SearchSpace.export_pte``: the same units and weights as the ONNX file,
  lowered with the XNNPACK partitioner): the runtime Meta ships for on-device
  PyTorch, whose XNNPACK delegate takes the whole network as one subgraph.
- ``xeon-repeat``: the ``xeon`` configuration measured a second time, a noise
  ceiling: the SRCC two measurements of one configuration reach on this
  (shared, noisy) machine; no cross-configuration SRCC can be read more
  finely than its distance from 1.

The networks are measured in chunks of one interleave group: each chunk is
exported, then measured on every configuration in turn, so a slow period on
the shared machine hits every configuration rather than one.  Each
configuration's share of CPU time over wall time (per thread) is recorded per
chunk; a median below 0.9 is flagged (other tenants were on the cores).
Resumable: the table is read back and only empty cells are measured.

``--macs-band LO-HI`` keeps only architectures of LO to HI million MACs (drawn
from the same seeded stream until ``--n`` of them are in the band): networks of
about one cost, the ones a search near a budget must tell apart.  Over the
whole space, size decides most of the ranking on every configuration (SRCC
0.92-0.99 here); inside a band, only how each configuration runs each layer
does, and pairs rank differently enough to need the proxy adaptation.

Usage:  python benchmarks/cross_device_monotonicity.py [--n 200] [--seed 0] [--macs-band 250-350]
            [--configs xeon,xeon-no-nchwc,xeon-2threads,xeon-int8,xeon-repeat,litert,executorch] [--out-dir benchmarks/results] [--json]
Writes ``cross_device-chamnet-mobile[-macs250-350].parquet`` (the table) and
``cross_device-chamnet-mobile[-macs250-350].json`` (SRCC per pair, Kendall tau, CPU shares, wall time).
A configuration with nothing left to measure keeps the CPU shares of the run
that measured it (read from the previous JSON, listed under
``cpu_share_from_previous_run``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONFIGS = ("xeon", "xeon-no-nchwc", "xeon-2threads", "xeon-int8", "xeon-repeat", "litert", "executorch")
CPU_SHARE_WARNING = 0.9
SPACE = "chamnet-mobile"

TWO_THREADS = """\
name: xeon-2threads
description: local x86 CPU through ONNX Runtime, 2 intra-op threads on the last 2 cores (cross_device_monotonicity benchmark)
transport: {type: local}
runtime: {name: onnxruntime, provider: cpu, threads: 2, cores: auto}
dtypes: [fp32]
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="random architectures (seeded)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--macs-band", default=None, help="LO-HI: only architectures of LO to HI million MACs")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    args = parser.parse_args()
    band = None
    if args.macs_band:
        try:
            band = tuple(float(v) for v in args.macs_band.split("-"))
            assert len(band) == 2 and 0 <= band[0] < band[1]
        except (ValueError, AssertionError):
            parser.error(f"--macs-band: LO-HI in million MACs, LO < HI (got {args.macs_band!r})")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or len(configs) < 2:
        parser.error(f"--configs: at least two of {', '.join(CONFIGS)}")

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table
    from scipy.stats import kendalltau, spearmanr

    from harness.networks.tables import ManifestEntry, latency_column, measure_into_table, read_arch_table
    from harness.profiles import load_profile, pinned_cores
    from harness.runners import make_runner
    from harness.runners.onnxruntime_local import OnnxRuntimeRunner
    from harness.models.tflite_models import write_network
    from optimizer.spaces import get_space

    started = time.monotonic()
    console = Console(stderr=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    band_tag = f"-macs{band[0]:g}-{band[1]:g}" if band else ""  # in the file names and the arch ids
    stem = f"cross_device-{SPACE}{band_tag}"
    table_path = args.out_dir / f"{stem}.parquet"
    space = get_space(SPACE)
    archs = _in_band(space, args.n, args.seed, band) if band else space.random(args.n, args.seed)
    xeon = load_profile("xeon")

    work = Path(tempfile.mkdtemp(prefix="chameleon-cross-device-"))
    (work / "xeon-2threads.yaml").write_text(TWO_THREADS)
    two_threads = load_profile(work / "xeon-2threads.yaml")
    # LiteRT on xeon's core with xeon's measurement settings: only the runtime differs.
    litert = dataclasses.replace(xeon, name="litert", dtypes=("fp32",),
                                 runtime=dataclasses.replace(xeon.runtime, name="litert", delegate="xnnpack"))

    def setup(config: str) -> tuple[Any, Any]:
        """The profile and a fresh runner of one configuration (a runner pins the process while open)."""
        if config == "xeon-no-nchwc":
            return xeon, OnnxRuntimeRunner("cpu", 1, pinned_cores(xeon.runtime), disabled_optimizers=("NchwcTransformer",))
        if config == "executorch":
            executorch = load_profile("xeon-executorch")
            return executorch, make_runner(executorch)
        profile = {"xeon-2threads": two_threads, "litert": litert}.get(config, xeon)
        return profile, make_runner(profile)

    ids = [f"{SPACE}-s{args.seed}{band_tag}-{i:04d}" for i in range(len(archs))]
    encodings = [dict(zip(space.gene_names, (int(v) for v in x))) for x in archs]
    done: dict[str, set[str]] = {c: set() for c in configs}
    if table_path.exists():
        existing = read_arch_table(table_path)
        for config in configs:
            if latency_column(config) in existing.column_names:
                values = existing.column(latency_column(config)).to_pylist()
                done[config] = {a for a, v in zip(existing.column("arch_id").to_pylist(), values)
                                if v is not None and not math.isnan(v)}

    group = xeon.measurement.interleave_group
    cpu_share: dict[str, list[float]] = {c: [] for c in configs}
    failures: dict[str, int] = {c: 0 for c in configs}
    measured_now = 0
    phases = {"export_s": 0.0, "measure_s": 0.0}
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            task = progress.add_task(f"{len(archs)} networks × {len(configs)} configurations", total=len(archs) * len(configs))
            for start in range(0, len(archs), group):
                chunk = range(start, min(start + group, len(archs)))
                pending = {c: [i for i in chunk if ids[i] not in done[c]] for c in configs}
                progress.update(task, advance=sum(len(chunk) - len(p) for p in pending.values()))
                needed = sorted({i for c, p in pending.items() if c not in ("litert", "executorch") for i in p})
                if not needed and not pending.get("litert") and not pending.get("executorch"):
                    continue
                t0 = time.monotonic()
                paths = {i: space.export_onnx(archs[i], work / f"{ids[i]}.onnx") for i in needed}
                tflite = {i: write_network(space.signatures(archs[i]), work / f"{ids[i]}.tflite")
                          for i in pending.get("litert", [])}
                programs = {i: space.export_pte(archs[i], work / f"{ids[i]}.pte") for i in pending.get("executorch", [])}
                phases["export_s"] += time.monotonic() - t0
                if pending.get("xeon-int8"):
                    t0 = time.monotonic()
                    quantized = {i: _quantize(paths[i], work / f"{ids[i]}-int8.onnx") for i in pending["xeon-int8"]}
                    phases["export_s"] += time.monotonic() - t0
                for config in configs:
                    if not pending[config]:
                        continue
                    files = {"xeon-int8": quantized if pending.get("xeon-int8") else {}, "litert": tflite,
                             "executorch": programs}.get(config, paths)
                    entries = [ManifestEntry(ids[i], files[i], encodings[i]) for i in pending[config]]
                    profile, runner = setup(config)
                    try:
                        t0, c0 = time.monotonic(), time.process_time()
                        result = measure_into_table(profile, entries, table_path, device=config, runner=runner)
                        wall = time.monotonic() - t0
                        phases["measure_s"] += wall
                        cpu_share[config].append((time.process_time() - c0) / wall / profile.runtime.threads)
                    finally:
                        runner.close()
                    failures[config] += result.failed
                    measured_now += result.measured
                    progress.update(task, advance=len(entries))
                for path in [*paths.values(), *(quantized.values() if pending.get("xeon-int8") else ()), *tflite.values(), *programs.values()]:
                    path.unlink()
    except KeyboardInterrupt:
        console.print(f"interrupted: {table_path} keeps what was measured; run again to resume")
        return 130

    # ------------------------------------------------------------- analysis
    table = read_arch_table(table_path)
    arch_ids = table.column("arch_id").to_pylist()
    rows = [arch_ids.index(a) for a in ids if a in arch_ids]
    latency = {c: np.asarray(table.column(latency_column(c)).to_pylist(), dtype=np.float64)[rows] for c in configs}
    pairs = []
    for a, b in itertools.combinations(configs, 2):
        ok = np.isfinite(latency[a]) & np.isfinite(latency[b]) & (latency[a] > 0) & (latency[b] > 0)
        pairs.append({
            "a": a, "b": b, "n": int(ok.sum()), "dropped_missing_or_failed": int((~ok).sum()),
            "srcc": float(spearmanr(latency[a][ok], latency[b][ok]).statistic),
            "kendall_tau": float(kendalltau(latency[a][ok], latency[b][ok]).statistic),
            # how the configurations differ in level, not only rank: median of b / a
            "median_ratio_b_over_a": float(np.median(latency[b][ok] / latency[a][ok])),
        })
    optimizer_report = None
    try:  # the optimizer's own analysis (bootstrap intervals), when it exists in this checkout
        from optimizer.latency.architecture_tables import read_latency_table
        from optimizer.crossdevice.monotonicity import monotonicity
    except ImportError:
        pass
    else:
        optimizer_report = monotonicity(read_latency_table(table_path), configs, bootstrap=1000, seed=args.seed).to_json()
    report_path = args.out_dir / f"{stem}.json"
    macs = space.macs_many(archs) / 1e6
    previous = json.loads(report_path.read_text()) if report_path.exists() else {}
    carried = []
    for c in configs:  # a configuration measured by an earlier run keeps that run's CPU shares
        if not cpu_share[c] and (previous.get("cpu_share_median") or {}).get(c) is not None:
            carried.append(c)
    report = {
        "space": SPACE,
        "networks": len(rows),
        "seed": args.seed,
        "resolution": "96-224 (the space's full range, not capped)",
        "macs_band_millions": list(band) if band else None,
        "macs_millions": {"min": float(macs.min()), "max": float(macs.max())},
        "configs": configs,
        "table": str(table_path.relative_to(REPO) if table_path.resolve().is_relative_to(REPO) else table_path),
        "latency_ms": {c: {"median": float(np.nanmedian(v)), "min": float(np.nanmin(v)), "max": float(np.nanmax(v)),
                           "failed_or_missing": int(np.sum(~np.isfinite(v)))} for c, v in latency.items()},
        "pairs": pairs,
        "cpu_share_median": {c: (float(np.median(v)) if v else previous["cpu_share_median"][c] if c in carried else None)
                             for c, v in cpu_share.items()},
        "cpu_share_min": {c: (float(np.min(v)) if v else (previous.get("cpu_share_min") or {}).get(c) if c in carried else None)
                          for c, v in cpu_share.items()},
        "cpu_share_from_previous_run": carried,
        # this run's share per chunk (chunk = interleave group of networks, in order), to find a contended one
        "cpu_share_per_chunk_now": {c: [round(v, 3) for v in cpu_share[c]] for c in configs if cpu_share[c]},
        "failed_now": failures,
        "measured_now": measured_now,
        # optimizer.crossdevice.monotonicity on the same table (all rows, not only this run's seed): SRCC, Kendall, 95% bootstrap CIs
        "optimizer_monotonicity": optimizer_report,
        "wall_s": {**phases, "total_s": time.monotonic() - started},
    }
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0
    out = Console()
    view = Table(title=f"{SPACE}: {len(rows)} networks, SRCC per pair of configurations")
    for column in ("a", "b", "n", "SRCC", "Kendall τ", "median b/a"):
        view.add_column(column)
    for p in pairs:
        view.add_row(p["a"], p["b"], str(p["n"]), f"{p['srcc']:.4f}", f"{p['kendall_tau']:.4f}", f"{p['median_ratio_b_over_a']:.3f}")
    out.print(view)
    if optimizer_report is not None:
        for p in optimizer_report["pairs"]:
            out.print(f"optimizer.crossdevice.monotonicity {p['a']} vs {p['b']}: SRCC {p['srcc']:.4f} "
                      f"[{p['srcc_low']:.4f}, {p['srcc_high']:.4f}]{' (under ' + str(optimizer_report['threshold']) + ')' if p['below_threshold'] else ''}")
    for c in configs:
        share = report["cpu_share_median"][c]
        flag = " [yellow](contended)[/]" if share is not None and share < CPU_SHARE_WARNING else ""
        lat = report["latency_ms"][c]
        out.print(f"{c}: median {lat['median']:.2f} ms ({lat['min']:.2f}-{lat['max']:.2f}), "
                  f"{lat['failed_or_missing']} failed/missing, CPU share {share if share is None else round(share, 3)}{flag}")
    out.print(f"wall {report['wall_s']['total_s']:.0f} s ({measured_now} cells measured now); {table_path}")
    return 0


def _in_band(space: Any, n: int, seed: int, band: tuple[float, float]) -> np.ndarray:
    """The first ``n`` architectures of LO-HI million MACs from one seeded stream of random ones."""
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    for _ in range(1000):
        batch = space.random(1000, rng)
        macs = space.macs_many(batch) / 1e6
        kept.extend(batch[(macs >= band[0]) & (macs <= band[1])])
        if len(kept) >= n:
            return np.asarray(kept[:n])
    raise SystemExit(f"--macs-band {band[0]:g}-{band[1]:g}: only {len(kept)} of a million random architectures fall in it")


def _quantize(fp32: Path, out: Path) -> Path:
    """The fp32 network statically quantized to QDQ int8 by ONNX Runtime's tool (calibration: one seeded random input)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    dims = onnx.load(str(fp32), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value or 1 for d in dims]

    class OneInput(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = [{"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}]

        def get_next(self) -> dict[str, np.ndarray] | None:
            return self.feeds.pop() if self.feeds else None

    quantize_static(str(fp32), str(out), OneInput(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


if __name__ == "__main__":
    sys.exit(main())
