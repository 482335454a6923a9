"""Issue 19 point 4: OFA-style YAML and generic CSV LUT importers, squeeze-excite and h-swish, the ofa-mbv3 space."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from conftest import one_line_error, run_bench, run_optimize
from harness.errors import ChameleonError, InvalidSignature
from harness.lut import store as lut_store
from harness.lut.csv_import import CsvLutError, import_latency_csv
from harness.lut.ofa_import import PROXYLESS, OfaLutError, import_ofa_luts, signature_of_key
from harness.models import onnx_models, tflite_models
from harness.signature import (INVERTED_RESIDUAL, INVERTED_RESIDUAL_SE, SIGNATURE_COLUMNS, SQUEEZE_EXCITE,
                               make_signature, parse_signature, se_reduced_channels)
from optimizer.latency.lut_model import LatencyPredictor, LutLatencyModel
from optimizer.spaces import get_space, ofa_mbv3_genes

# An OFA subnet as OFA writes it (r, d, ks, e): every kernel and ratio, depths 2 to 4.
R, D = 176, [2, 3, 4, 2, 4]
KS = [3, 5, 7, 3, 5, 7, 3, 5, 7, 3, 5, 7, 3, 5, 7, 3, 5, 7, 3, 5]
E = [3, 4, 6, 6, 4, 3, 6, 4, 3, 3, 4, 6, 6, 6, 4, 3, 4, 3, 6, 6]


def ofa_keys(r: int, d: list[int], ks: list[int], e: list[int]) -> list[str]:
    """The keys OFA's LatencyEstimator sums for a width-1.2 MobileNetV3 subnet (ofa/tutorial/latency_table.py),
    written out here independently of the importer and the space."""
    def shape(*dims: int) -> str:
        return "x".join(map(str, dims))

    size = (r + 1) // 2
    keys = [f"Conv-input:{shape(r, r, 3)}-output:{shape(size, size, 24)}",
            f"expanded_conv-input:{shape(size, size, 24)}-output:{shape(size, size, 24)}"
            "-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0"]
    c_in = 24
    for i in range(20):
        stage, depth = i // 4, i % 4 + 1
        if depth > d[stage]:
            continue
        stride, idskip = ([2, 2, 2, 1, 2][stage], 0) if i % 4 == 0 else (1, 1)
        c_out = [32, 48, 96, 136, 192][stage]
        out = (size - 1) // stride + 1
        keys.append(f"expanded_conv-input:{shape(size, size, c_in)}-output:{shape(out, out, c_out)}"
                    f"-expand:{round(c_in * e[i])}-kernel:{ks[i]}-stride:{stride}-idskip:{idskip}"
                    f"-se:{int(stage in (1, 3, 4))}-hs:{int(stage >= 2)}")
        size, c_in = out, c_out
    keys += [f"Conv_1-input:{shape(size, size, 192)}-output:{shape(size, size, 1152)}",
             f"AvgPool2D-input:{shape(size, size, 1152)}-output:{shape(1, 1, 1152)}",
             f"Conv_2-input:{shape(1, 1, 1152)}-output:{shape(1, 1, 1536)}",
             "Logits-input:1x1x1536-output:1000"]
    return keys


def write_ofa_yaml(path: Path, keys: list[str], seed: int = 0) -> dict[str, float]:
    """An OFA lookup table of ``keys`` (ms, count/mean/std) with odd means; returns key -> mean ms."""
    rng = np.random.default_rng(seed)
    table = {key: {"count": int(rng.integers(10, 100)), "mean": float(rng.uniform(0.01, 5.0)),
                   "std": float(rng.uniform(0.0, 0.05))} for key in dict.fromkeys(keys)}
    path.write_text(yaml.safe_dump(table, sort_keys=False))
    return {key: entry["mean"] for key, entry in table.items()}


@pytest.fixture(scope="module")
def space():
    return get_space("ofa-mbv3")


# ------------------------------------------------------------------ the acceptance check
def test_ofa_lut_sum_equals_hand_summed_means(space, tmp_path):
    keys = ofa_keys(R, D, KS, E)
    means = write_ofa_yaml(tmp_path / f"{R}_lookup_table.yaml", keys)
    result = import_ofa_luts([tmp_path / f"{R}_lookup_table.yaml"], "note10")
    assert result.records == len(means) and not result.skipped
    lut = tmp_path / "note10.parquet"
    lut_store.write_lut_atomic(lut_store.rows_to_table(result.rows), lut)

    x = ofa_mbv3_genes(R, D, KS, E)
    units = space.signatures(x)
    assert len(units) == len(keys)
    kinds = {u.kind for u in units}
    assert {INVERTED_RESIDUAL, INVERTED_RESIDUAL_SE} <= kinds
    assert any(u.kind == INVERTED_RESIDUAL_SE and u.activation == "hardswish" for u in units)
    assert any(u.kind == INVERTED_RESIDUAL_SE and u.activation == "relu" for u in units)

    hand_us = sum(means[key] for key in keys) * 1000.0
    model = LutLatencyModel.from_file(lut)
    estimate = model.estimate(units)
    assert model.overhead_us == 0.0  # an OFA table has no identity row: nothing subtracted
    assert abs(estimate.latency_us - hand_us) <= 1e-6
    predicted = LatencyPredictor(model, space).predict(np.array([x]))
    assert abs(predicted.latency_ms[0] * 1000.0 - hand_us) <= 1e-6
    assert not predicted.interpolated[0]

    # and through the command line, the units listed one per line
    (tmp_path / "net.txt").write_text("\n".join(u.key for u in units) + "\n")
    run = run_optimize("estimate", "--lut", str(lut), str(tmp_path / "net.txt"), "--json")
    assert run.returncode == 0, run.stderr
    assert abs(json.loads(run.stdout)["latency_us"] - hand_us) <= 1e-6


def test_import_rows_say_what_ofa_keeps(tmp_path):
    path = tmp_path / "224_lookup_table.yaml"
    key = "expanded_conv-input:28x28x48-output:28x28x48-expand:192-kernel:5-stride:1-idskip:1-se:1-hs:1"
    path.write_text(f"{key}:\n  count: 40\n  mean: 0.5\n  std: 0.02\n")
    (row,) = import_ofa_luts([path], "note10").rows
    assert row["signature"] == make_signature(INVERTED_RESIDUAL_SE, c_in=48, h=28, w=28, c_out=48, kernel=5,
                                              mid_channels=192, activation="hardswish").key
    assert row["median_us"] == row["mean_us"] == 500.0 and row["std_us"] == pytest.approx(20.0)
    assert row["cv"] == pytest.approx(0.04) and row["runs"] == 40 and row["p10_us"] is None
    assert "OFA mean as median" in row["harness_version"] and row["runtime_version"] == "unknown (imported)"
    lut_store.rows_to_table([row])  # fits the schema


def test_files_of_several_resolutions_pool_shared_keys(tmp_path):
    shared = "Logits-input:1x1x1536-output:1000"
    (tmp_path / "160.yaml").write_text(f"{shared}: {{count: 10, mean: 0.3, std: 0.0}}\n"
                                       "Conv-input:160x160x3-output:80x80x24: {count: 10, mean: 1.0, std: 0.1}\n")
    (tmp_path / "224.yaml").write_text(f"{shared}: {{count: 30, mean: 0.4, std: 0.0}}\n"
                                       "Conv-input:224x224x3-output:112x112x24: {count: 10, mean: 2.0, std: 0.1}\n")
    result = import_ofa_luts([tmp_path / "160.yaml", tmp_path / "224.yaml"], "note10")
    rows = {r["signature"]: r for r in result.rows}
    assert len(rows) == 3 and result.pooled == 1
    pooled = rows[make_signature("fc", c_in=1536, c_out=1000).key]
    assert pooled["median_us"] == pytest.approx(375.0) and pooled["runs"] == 40
    assert pooled["std_us"] == pytest.approx(1000 * np.sqrt(0.75 * 0.25) * 0.1)  # the spread between the files


@pytest.mark.parametrize("key, grammar, expected", [
    ("Conv-input:224x224x3-output:112x112x24", "mbv3",
     make_signature("conv2d", c_in=3, h=224, w=224, c_out=24, kernel=3, stride=2, activation="hardswish")),
    ("Conv_1-input:7x7x192-output:7x7x1152", "mbv3",
     make_signature("conv2d", c_in=192, h=7, w=7, c_out=1152, kernel=1, activation="hardswish")),
    ("AvgPool2D-input:7x7x1152-output:1x1x1152", "mbv3", make_signature("global_avgpool", c_in=1152, h=7, w=7)),
    ("expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:3-stride:2-idskip:0-se:0-hs:0", "mbv3",
     make_signature(INVERTED_RESIDUAL, c_in=24, h=112, w=112, c_out=32, kernel=3, stride=2, mid_channels=144,
                    activation="relu")),
    # ProxylessNAS grammar: expand is the ratio, relu6
    ("expanded_conv-input:56x56x32-output:56x56x32-expand:3-kernel:3-stride:1-idskip:1", PROXYLESS,
     make_signature(INVERTED_RESIDUAL, c_in=32, h=56, w=56, c_out=32, kernel=3, mid_channels=96, activation="relu6")),
])
def test_ofa_keys_map_to_signatures(key, grammar, expected):
    assert signature_of_key(key, grammar) == expected


def test_unmappable_keys_are_skipped_and_counted(tmp_path):
    path = tmp_path / "mobile_trim.yaml"
    path.write_text("Conv-input:224x224x3-output:112x112x32: {count: 5, mean: 1.0, std: 0.1}\n"
                    "expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0:"
                    " {count: 5, mean: 1.0, std: 0.1}\n"
                    "Logits-input:7x7x1280-output:1000: {count: 5, mean: 1.0, std: 0.1}\n"
                    "MaxPool-input:8x8x4-output:4x4x4: {count: 5, mean: 1.0, std: 0.1}\n")
    result = import_ofa_luts([path], "pixel1")
    assert result.grammars[str(path)] == PROXYLESS and len(result.rows) == 2 and result.records == 4
    assert sum(result.skipped.values()) == 2
    assert any("MaxPool" in reason for reason in result.skipped)
    assert result.examples[next(r for r in result.skipped if "Logits" in r)].startswith("Logits-input:7x7")


@pytest.mark.parametrize("text, fragment", [
    ("Conv-input:8x8x3: [1, 2\n", "not valid YAML"),
    ("- a\n- b\n", "not an OFA lookup table"),
    ("Conv-input:8x8x3-output:4x4x8: {count: 5, std: 0.1}\n", "expected a mapping with mean"),
    ("Conv-input:8x8x3-output:4x4x8: {count: 5, mean: -1.0}\n", "is not a latency in ms"),
    ("Conv-input:8x8x3-output:4x4x8: {count: 5, mean: .nan}\n", "is not a latency in ms"),
    ("Conv-input-output:4x4x8: {mean: 1.0}\n", "is not an OFA op key"),
    ("MaxPool-input:8x8x4-output:4x4x4: {mean: 1.0}\n", "no key maps to a signature"),
])
def test_bad_ofa_tables_are_one_line(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(OfaLutError) as info:
        import_ofa_luts([path], "note10")
    message = str(info.value)
    assert fragment in message and "\n" not in message and str(path) in message


def test_import_cli_formats_and_errors(tmp_path):
    table = tmp_path / "224_lookup_table.yaml"
    write_ofa_yaml(table, ofa_keys(224, [2] * 5, [3] * 20, [3] * 20) + ["MaxPool-input:8x8x4-output:4x4x4"])
    out = tmp_path / "note10.parquet"
    run = run_bench("lut", "import", str(table), "--format", "ofa-yaml", "--device", "note10", "--out", str(out),
                    "--device-model", "Samsung Note10", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["format"] == "ofa-yaml" and report["skipped"] == 1 and report["rows_in_lut"] == report["imported"]
    assert "MaxPool" in next(iter(report["skipped_examples"].values()))
    assert set(lut_store.read_lut(out).column("device_model").to_pylist()) == {"Samsung Note10"}
    assert "--format" in one_line_error(run_bench("lut", "import", str(table), "--format", "tflite", "-d", "x",
                                                  "-o", str(out)))
    (tmp_path / "bad.yaml").write_text("- not a table\n")
    assert "not an OFA lookup table" in one_line_error(
        run_bench("lut", "import", str(tmp_path / "bad.yaml"), "--format", "ofa-yaml", "-d", "x", "-o", str(out)))


# ------------------------------------------------------------------ the CSV importer
def test_csv_round_trip(tmp_path):
    sigs = [make_signature(SQUEEZE_EXCITE, c_in=72, h=28, w=28),
            make_signature(INVERTED_RESIDUAL_SE, c_in=40, h=14, w=14, c_out=40, kernel=5, mid_channels=120,
                           activation="hardswish", dtype="int8"),
            make_signature("conv2d", c_in=3, h=224, w=224, c_out=16, kernel=3, stride=2, activation="hardswish"),
            make_signature("fc", c_in=1280, c_out=1000)]
    latencies_ms = [0.0123, 1.5, 2.75, 0.3333]
    path = tmp_path / "table.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*SIGNATURE_COLUMNS, "latency_ms", "std_ms", "runs"])
        for sig, latency in zip(sigs, latencies_ms):
            writer.writerow([*sig.to_record().values(), latency, latency / 10, 20])
    result = import_latency_csv(path, "pixel4", runtime="tflite")
    table = lut_store.rows_to_table(result.rows)
    for sig, latency in zip(sigs, latencies_ms):
        row = lut_store.find_row(table, sig)
        assert row is not None and lut_store.row_signature(row) == sig
        assert row["median_us"] == pytest.approx(latency * 1000, rel=1e-12) and row["cv"] == pytest.approx(0.1)
        assert row["runs"] == 20 and row["runtime"] == "tflite" and row["mean_us"] is None
    # the short form: the signature string and the latency in µs; empty field cells take the defaults
    short = tmp_path / "short.csv"
    short.write_text("signature,latency_us\n" + "".join(f'"{s.key}",{1000 * t}\n' for s, t in zip(sigs, latencies_ms)))
    again = lut_store.rows_to_table(import_latency_csv(short, "pixel4").rows)
    assert again.column("median_us").to_pylist() == table.column("median_us").to_pylist()
    fields = tmp_path / "fields.csv"
    fields.write_text("kind,c_in,h,w,c_out,kernel,stride,mid_channels,activation,latency_us\n"
                      "inverted_residual_se,24,56,56,40,5,2,72,relu,812.5\nsqueeze_excite,72,28,28,,,,,,9.5\n")
    rows = import_latency_csv(fields, "pixel4").rows
    assert parse_signature(rows[0]["signature"]) == make_signature(
        INVERTED_RESIDUAL_SE, c_in=24, h=56, w=56, c_out=40, kernel=5, stride=2, mid_channels=72, activation="relu")
    assert parse_signature(rows[1]["signature"]).mid_channels == se_reduced_channels(72) == 24  # the default


@pytest.mark.parametrize("text, fragment", [
    ("kind,c_in,h,w,kernal,latency_us\nconv2d,3,8,8,3,1.0\n", "unknown column(s) kernal"),
    ("kind,c_in,h,w,latency_us,latency_ms\nadd,3,8,8,1.0,0.001\n", "exactly one latency column"),
    ("kind,c_in,h,w\nadd,3,8,8\n", "exactly one latency column"),
    ("kind,c_in,h,w,latency_us\nadd,3,8,8,fast\n", "line 2: latency_us 'fast' is not a number"),
    ("kind,c_in,h,w,latency_us\nadd,3,8,8,-1\n", "is not a time a device can take"),
    ("kind,c_in,h,w,latency_us\nconv3d,3,8,8,1\n", "line 2: unknown op kind"),
    ("kind,c_in,h,w,latency_us\nadd,3,8,8,1\nadd,3,8,8,2\n", "line 3: add(n=1,c_in=3"),
    ("signature,kind,latency_us\nx,add,1\n", "not both"),
    ("kind,c_in,h,w,latency_us\n", "a header but no rows"),
])
def test_bad_csv_tables_are_one_line(tmp_path, text, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(CsvLutError) as info:
        import_latency_csv(path, "pixel4")
    message = str(info.value)
    assert fragment in message and "\n" not in message and isinstance(info.value, ChameleonError)


# ------------------------------------------------------------------ the new kinds
SE_SIGNATURES = [
    make_signature(SQUEEZE_EXCITE, c_in=16, h=7, w=7),
    make_signature(INVERTED_RESIDUAL_SE, c_in=8, h=8, w=8, c_out=8, kernel=3, mid_channels=24, activation="hardswish"),
    make_signature(INVERTED_RESIDUAL_SE, c_in=8, h=9, w=9, c_out=16, kernel=5, stride=2, mid_channels=8,
                   activation="relu"),
]


def test_signature_vocabulary_is_additive():
    # Existing keys are unchanged; the new kinds round-trip and validate.
    ir = make_signature(INVERTED_RESIDUAL, c_in=8, h=8, w=8, c_out=8, kernel=3, mid_channels=48)
    assert ir.key == ("inverted_residual(n=1,c_in=8,h=8,w=8,c_out=8,kernel=3,stride=1,padding=1,groups=1,"
                      "mid_channels=48,activation=relu6,dtype=fp32)") and ir.se_channels == 0
    assert [se_reduced_channels(c) for c in (72, 120, 480, 672, 960)] == [24, 32, 120, 168, 240]  # MobileNetV3-Large
    for sig in SE_SIGNATURES:
        assert parse_signature(sig.key) == sig and sig.macs > 0
    se_block = SE_SIGNATURES[1]
    assert se_block.has_residual and se_block.se_channels == 8
    plain = se_block.replace(kind=INVERTED_RESIDUAL)
    assert se_block.macs == plain.macs + 2 * 8 * 8 * 24 + 2 * 24 * 8
    for kind, values, fragment in [
        (SQUEEZE_EXCITE, dict(c_in=8, h=4, w=4, activation="relu"), "activation does not apply"),
        (SQUEEZE_EXCITE, dict(c_in=8, h=4, w=4, c_out=16), "c_out must equal c_in"),
        (INVERTED_RESIDUAL_SE, dict(c_in=8, h=8, w=8, c_out=8, kernel=3, mid_channels=4), "mid_channels"),
        (INVERTED_RESIDUAL_SE, dict(c_in=8, h=8, w=8, c_out=8, kernel=3, mid_channels=8, activation="none"),
         "activation must not be none"),
    ]:
        with pytest.raises(InvalidSignature, match=fragment):
            make_signature(kind, **values)


def _run_onnx(sig):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_models.build_model(sig).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, onnx_models.make_inputs(sig))[0]


def test_squeeze_excite_model_computes_squeeze_and_excite():
    sig = SE_SIGNATURES[0]
    model = onnx_models.build_model(sig)
    assert [n.op_type for n in model.graph.node] == ["GlobalAveragePool", "Conv", "Relu", "Conv", "HardSigmoid", "Mul"]
    weights = {t.name: onnx_models.numpy_helper.to_array(t) for t in model.graph.initializer}
    (w1, b1), (w2, b2) = [(weights[n.input[1]], weights[n.input[2]]) for n in model.graph.node if n.op_type == "Conv"]
    x = onnx_models.make_inputs(sig)["x"].astype(np.float64)
    pooled = x.mean(axis=(2, 3))
    hidden = np.maximum(pooled @ w1[:, :, 0, 0].T + b1, 0)
    gate = np.clip((hidden @ w2[:, :, 0, 0].T + b2) / 6 + 0.5, 0, 1)
    np.testing.assert_allclose(_run_onnx(sig), x * gate[:, :, None, None], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sig", SE_SIGNATURES, ids=lambda s: f"{s.kind}-{s.activation}-s{s.stride}")
def test_new_kinds_build_and_run_in_both_formats(sig):
    from ai_edge_litert.interpreter import Interpreter

    fp32 = _run_onnx(sig)
    assert fp32.shape == sig.output_shape and np.isfinite(fp32).all() and fp32.std() > 0
    int8 = _run_onnx(sig.replace(dtype="int8"))
    assert np.abs(int8 - fp32).max() <= 0.05 * np.abs(fp32).max()
    for dtype, tolerance in (("fp32", 1e-5), ("int8", 0.05)):
        variant = sig.replace(dtype=dtype)
        interpreter = Interpreter(model_content=tflite_models.build_tflite(variant), num_threads=1)
        interpreter.allocate_tensors()
        (detail,) = interpreter.get_input_details()
        interpreter.set_tensor(detail["index"], tflite_models.make_tflite_inputs(variant)["x"])
        interpreter.invoke()
        out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        assert np.abs(out - fp32.transpose(0, 2, 3, 1)).max() <= tolerance * max(1.0, np.abs(fp32).max())


def test_ofa_subnet_exports_and_runs_as_one_network(space):
    x = space.baselines()["ofa-smallest-160"]
    model = onnx_models.build_network(space.signatures(x))
    assert sum(int(np.prod(t.dims)) for t in model.graph.initializer) == space.params(x) == space.params_many(x[None])[0]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.zeros((1, 3, 160, 160), np.float32)})
    assert y.shape == (1, 1000)
    assert {"HardSigmoid", "HardSwish", "Mul"} <= {n.op_type for n in model.graph.node}


def test_sweep_measures_the_new_kinds(profiles_dir, tmp_path):
    plan = tmp_path / "se.yaml"
    plan.write_text("name: se\nsignatures:\n" + "".join(f'  - "{s.key}"\n  - "{s.replace(dtype="int8").key}"\n'
                                                        for s in SE_SIGNATURES[:2]))
    out = tmp_path / "fastcpu.parquet"
    run = run_bench("sweep", "--device", "fastcpu", "--plan", str(plan), "--out", str(out))
    assert run.returncode == 0, run.stderr
    table = lut_store.read_lut(out)
    measured = set(table.column("signature").to_pylist())
    for sig in SE_SIGNATURES[:2]:
        assert {sig.key, sig.replace(dtype="int8").key} <= measured


def test_space_units_and_plan(space):
    assert "ofa-mbv3" in space.name and space.dim == 46
    units = space.all_signatures()
    assert {u.kind for u in units} >= {INVERTED_RESIDUAL, INVERTED_RESIDUAL_SE, "conv2d", "fc", "global_avgpool"}
    assert {u.activation for u in units if u.kind == INVERTED_RESIDUAL_SE} == {"relu", "hardswish"}
    assert {u.kernel for u in units if u.kind == INVERTED_RESIDUAL_SE} == {3, 5, 7}
    described = space.describe(ofa_mbv3_genes(R, D, KS, E))
    assert [s["n"] for s in described["stages"]] == D
    assert [b["e"] for s in described["stages"] for b in s["blocks"]] == \
        [E[4 * s + j] for s in range(5) for j in range(D[s])]
