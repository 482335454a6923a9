"""Farm efficiency: how busy a farm sweep keeps its devices, what Ray's dispatch costs, and a full sweep's projected time.

    python benchmarks/farm_efficiency.py [--plan smoke] [--devices 1 2 4] [--profile pixel] [--json]

On a two-host Ray cluster on this machine (two ``ray start`` nodes, as in the
tests), with loopback ADB phones split between the hosts, one farm sweep of
the plan per device count, each into fresh LUTs, side by side in one run:

- efficiency = Σ device-busy time / (devices × wall time), busy time being
  each job's time on its device (health check included) as the actor measured it;
- Ray's dispatch cost: the round trip of an empty call to a device actor on
  the other host, ms (median of 200), and per job the wall time the devices
  were not busy, ms;
- the projected wall time of a full ChamNet-Mobile sweep (82,954 signatures
  at the device seconds per signature of the run with the fewest phones) on
  N devices at the measured efficiency (at 8 and 16, the efficiency measured
  at the largest N).

The loopback phones run their stand-in ``benchmark_model`` on this machine's
two cores, so the devices' seconds per signature are this CPU's, and four
phones share two cores: the busy time of each grows with the others', which
this ratio does not see; it measures how much of the farm's time the driver
and Ray leave idle.  The profile's own measurement method is used unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FULL_CHAMNET_MOBILE_SIGNATURES = 82_954


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="smoke")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--profile", default="pixel", help="the phone profile the loopback phones are measured with")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "farm_efficiency.json")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.devices or min(args.devices) < 1 or max(args.devices) > 8:
        parser.error("--devices: counts from 1 to 8")

    import ray
    from rich.console import Console
    from rich.table import Table

    from harness.fake_device import LoopbackAdbDevice, standin_benchmark_model_path
    from harness.farm.actor import device_actor
    from harness.farm.cluster import AttachedDevice
    from harness.farm.loopback import LoopbackRayCluster
    from harness.farm.sweep import farm_sweep, farm_targets
    from harness.plans import load_plan
    from harness.profiles import load_profile

    console = Console(stderr=True)
    plan = load_plan(args.plan)
    base = load_profile(args.profile)
    profile = dataclasses.replace(base, runtime=dataclasses.replace(base.runtime, benchmark_binary=str(standin_benchmark_model_path())))
    most = max(args.devices)
    results = []
    with tempfile.TemporaryDirectory(prefix="chameleon-farm-bench-") as folder:
        root = Path(folder)
        os.environ["CHAMELEON_CONFIG"] = str(root / "config")
        phones = []
        for i in range(most):
            phone = LoopbackAdbDevice(sandbox=root / f"phone{i}", serial=f"BENCHPHONE{i}")
            phone.authorize(root / "config" / "adbkey.pub")
            phones.append(phone.start())
        attached = [AttachedDevice(profile.name, phone.address) for phone in phones]
        # Alternate hosts, so that 2 devices already span both.
        on_head, on_host2 = attached[0::2], attached[1::2]
        cluster = LoopbackRayCluster(root / "ray")
        try:
            cluster.start_head(on_head)
            if on_host2:
                cluster.add_node("host2", on_host2)
            cluster.connect()
            cluster.wait_for_nodes(2 if on_host2 else 1)
            far = on_host2[0] if on_host2 else on_head[0]
            pinger = device_actor(profile, far)
            ray.get(pinger.ping.remote())
            trips = []
            for _ in range(200):
                t0 = time.perf_counter()
                ray.get(pinger.ping.remote())
                trips.append((time.perf_counter() - t0) * 1e3)
            ray.kill(pinger)
            dispatch_ms = statistics.median(trips)
            for count in args.devices:
                units = attached[:count]
                targets = farm_targets(units, [profile], root / f"luts-{count}")
                console.print(f"{count} device(s): {plan.name} plan, {len(targets)} LUT(s)")
                result = farm_sweep(targets, plan, publish=False)
                rows = sum(t.measured for t in result.targets)
                busy = sum(u.busy_s for u in result.units)
                jobs = sum(u.jobs for u in result.units)
                results.append({
                    "devices": count, "wall_s": result.wall_s, "rows": rows, "jobs": jobs, "busy_s": busy,
                    "efficiency": result.efficiency(), "complete": result.complete,
                    "device_s_per_signature": busy / rows if rows else None,
                    "idle_ms_per_job": 1e3 * (count * result.wall_s - busy) / jobs if jobs else None,
                })
        finally:
            cluster.shutdown()
            for phone in phones:
                phone.stop()
    # A phone's own seconds per signature: the run with the fewest loopback phones, which share this machine's
    # cores with each other (a lab's phones do not).
    per_signature = min(results, key=lambda r: r["devices"])["device_s_per_signature"]
    largest = max(results, key=lambda r: r["devices"])
    projections = []
    for n in sorted({*args.devices, 8, 16}):
        measured = next((r for r in results if r["devices"] == n), None)
        efficiency = (measured or largest)["efficiency"]
        projections.append({"devices": n, "efficiency": efficiency, "efficiency_measured_at": (measured or largest)["devices"],
                            "hours": FULL_CHAMNET_MOBILE_SIGNATURES * per_signature / (n * efficiency) / 3600})
    report = {"plan": plan.name, "profile": profile.name, "hosts": 2 if most > 1 else 1, "dispatch_round_trip_ms": dispatch_ms,
              "runs": results, "device_s_per_signature": per_signature,
              "full_chamnet_mobile_signatures": FULL_CHAMNET_MOBILE_SIGNATURES, "projected_full_sweep": projections,
              "note": "loopback phones share this machine's 2 cores; device seconds per signature are this CPU's stand-in"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        print(json.dumps(report, allow_nan=False))
        return 0
    table = Table(title=f"farm sweep of the {plan.name} plan ({profile.name} profile, loopback phones on 2 hosts)")
    for column in ("devices", "wall s", "rows", "efficiency", "idle ms / job"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(str(r["devices"]), f"{r['wall_s']:.1f}", str(r["rows"]), f"{r['efficiency']:.3f}", f"{r['idle_ms_per_job']:.0f}")
    Console().print(table)
    Console().print(f"Ray dispatch round trip to an actor on the other host: {dispatch_ms:.2f} ms (median of 200)")
    for p in projections:
        Console().print(f"full ChamNet-Mobile sweep on {p['devices']:>2} device(s): {p['hours']:.1f} h "
                        f"(efficiency {p['efficiency']:.2f}, measured at {p['efficiency_measured_at']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
