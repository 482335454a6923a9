"""Parsers of benchmark_model / onnxruntime_perf_test output: real and made-up whole outputs, edge cases, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import ChameleonError
from harness.parsers import NodeTypeRow, OpRow, RunStats, ToolOutputError, parse_ort_perf_test, parse_ort_result_csv, parse_run_stats, parse_tflite_benchmark, parse_tool_output, tflite_benchmark

DATA = Path(__file__).parent / "data" / "tool-outputs"
approx = pytest.approx


def read(name: str) -> str:
    # newline="" keeps CRLF files as they are on disk.
    with open(DATA / name, encoding="utf-8", newline="") as fh:
        return fh.read()


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    assert isinstance(error.value, ChameleonError) and error.value.exit_code == 2
    return message


# ================================================================== data files


def test_data_files_and_sources_listed():
    files = {p.name for p in DATA.iterdir()} - {"SOURCES.md"}
    assert files == {
        "tflite-benchmark_model-tf2.0-optable.txt",
        "onnxruntime_perf_test-old.txt",
        "tflite-benchmark_model-tf1.x.txt",
        "tflite-benchmark_model-tf2.2.txt",
        "tflite-benchmark_model-current-android-median.txt",
        "tflite-benchmark_model-current-xnnpack-optable.txt",
        "tflite-benchmark_model-count1.txt",
        "onnxruntime_perf_test-1.x.txt",
        "onnxruntime_perf_test-current.txt",
        "onnxruntime_perf_test-result.csv",
    }
    sources = (DATA / "SOURCES.md").read_text()
    for name in files:
        assert f"`{name}`" in sources
    assert "\r\n" in read("tflite-benchmark_model-tf2.2.txt")


# ================================================================== benchmark_model files


def test_tf20_optable_real_sample():
    r = parse_tflite_benchmark(read("tflite-benchmark_model-tf2.0-optable.txt"))
    assert r.format == "tf2.0"
    assert (r.warmup_avg_us, r.init_us, r.inference_avg_us) == (83235, 38467, approx(79760.9))
    assert r.first_inference_us is None
    # The only statistics line is the op profiler's, not a benchmark phase.
    assert r.inference is None and r.warmup is None and r.init is None
    assert r.op_profile == RunStats(count=50, first_us=79449, curr_us=81350, min_us=77385, max_us=88213,
                                    avg_us=79732, std_us=1929)
    assert r.runs == 50
    assert r.run_order == [
        OpRow("CONV_2D", 0.0, 4.269, 4.269, 0.107, 0.107, 0.0, 0, "[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]"),
        OpRow("DEPTHWISE_CONV_2D", 4.270, 2.150, 2.150, 0.054, 0.161, 0.0, 0,
              "[MobilenetV1/MobilenetV1/Conv2d_1_depthwise/Relu6]"),
        OpRow("CONV_2D", 6.421, 6.107, 6.107, 0.153, 0.314, 0.0, 0, "[MobilenetV1/MobilenetV1/Conv2d_1_pointwise/Relu6]"),
    ]
    assert [row.node_type for row in r.by_node_type] == ["CONV_2D", "DEPTHWISE_CONV_2D", "SOFTMAX", "RESHAPE",
                                                        "AVERAGE_POOL_2D"]
    assert r.by_node_type[0] == NodeTypeRow("CONV_2D", 15, 1.406, 89.270, 89.270, 0.0, 0)
    assert r.by_node_type[1].cdf_percent == 100.0
    assert r.top_by_time == []


def test_tf1x():
    r = parse_tflite_benchmark(read("tflite-benchmark_model-tf1.x.txt"))
    assert r.format == "tf1"
    assert (r.warmup_avg_us, r.init_us, r.inference_avg_us, r.first_inference_us) == (121458, 3782,
                                                                                      approx(96055.6), None)
    assert r.warmup == RunStats(count=1, curr_us=121458, all_same=True)
    assert r.inference == RunStats(count=50, first_us=96212, curr_us=95087, min_us=93874, max_us=104512,
                                   avg_us=approx(96055.6), std_us=1843)
    assert r.runs == 50 and r.run_order == [] and r.by_node_type == []


def test_tf22_crlf_start_column_and_delegate_node():
    text = read("tflite-benchmark_model-tf2.2.txt")
    r = parse_tflite_benchmark(text)
    assert r.format == "tf2.0"
    assert (r.warmup_avg_us, r.init_us, r.inference_avg_us) == (approx(14381.5), 41207, approx(14102.6))
    assert r.warmup == RunStats(count=35, first_us=17764, curr_us=14143, min_us=13802, max_us=17764,
                                avg_us=approx(14381.5), std_us=693)
    assert r.inference.count == 71 and r.inference.avg_us == approx(14102.6) and r.inference.max_us == 15321
    assert r.op_profile.count == 71 and r.op_profile.avg_us == approx(13932.8)
    assert len(r.run_order) == 3 and len(r.top_by_time) == 3 and len(r.by_node_type) == 3
    assert r.run_order[0] == OpRow("TfLiteXNNPackDelegate", 0.004, 14.812, 13.907, 99.828, 99.828, 0.0, 1,
                                   "[MobilenetV2/Logits/AvgPool, MobilenetV2/Logits/Conv2d_1c_1x1/BiasAdd]:65")
    assert r.run_order[2].name == "[MobilenetV2/Predictions/Reshape_1]:63" and r.run_order[2].cdf_percent == 100.0
    assert [row.node_type for row in r.top_by_time] == ["TfLiteXNNPackDelegate", "SOFTMAX", "RESHAPE"]
    assert r.by_node_type[0] == NodeTypeRow("TfLiteXNNPackDelegate", 1, 13.907, 99.828, 99.828, 0.0, 1)
    # CRLF or LF: the same result.
    assert parse_tflite_benchmark(text.replace("\r\n", "\n")) == r


def test_current_android_median_with_outlier():
    r = parse_tflite_benchmark(read("tflite-benchmark_model-current-android-median.txt"))
    assert r.format == "current"
    assert (r.init_us, r.first_inference_us, r.warmup_avg_us, r.inference_avg_us) == (
        18734, 2961, approx(1852.3), approx(2541.7))
    assert r.warmup == RunStats(count=27, first_us=2961, curr_us=1794, min_us=1752, max_us=2961, avg_us=approx(1852.3),
                                std_us=228, p5_us=1756, median_us=1801, p95_us=2210)
    assert r.inference == RunStats(count=1000, first_us=1812, curr_us=1779, min_us=1741, max_us=742913,
                                   avg_us=approx(2541.7), std_us=23422, p5_us=1753, median_us=1796, p95_us=1911)
    # The outlier pulls the mean 40% above the median; the median is what to keep.
    assert r.inference.avg_us > 1.4 * r.inference.median_us
    j = r.to_json()
    assert (j["median_us"], j["p5_us"], j["p95_us"], j["runs"], j["warmup_runs"]) == (1796, 1753, 1911, 1000, 27)
    assert "run_order" not in j and "by_node_type" not in j


def test_current_xnnpack_optable():
    r = parse_tflite_benchmark(read("tflite-benchmark_model-current-xnnpack-optable.txt"))
    assert r.format == "current"
    assert (r.init_us, r.first_inference_us, r.warmup_avg_us, r.inference_avg_us) == (
        5871, 1187, approx(1003.6), approx(942.1))
    assert r.warmup.count == 498 and r.inference.count == 704 and r.inference.std_us == 48
    assert r.init == RunStats(count=1, curr_us=5299, all_same=True)        # the initialisation profile
    assert r.op_profile.count == 704 and r.op_profile.avg_us == approx(937.4)
    # The tables are the regular runs' (not the initialisation's ModifyGraphWithDelegate / AllocateTensors).
    assert [row.node_type for row in r.run_order] == [
        "QUANTIZE", "Convolution (NHWC, QC8) IGEMM", "Convolution (NHWC, QC8) DWConv", "Convolution (NHWC, QC8) GEMM",
        "Add (ND, QS8)", "Global Average Pooling (NWC, QS8)", "Fully Connected (NC, QS8)", "DEQUANTIZE"]
    assert r.run_order[1] == OpRow("Convolution (NHWC, QC8) IGEMM", None, 0.412, 0.383, 41.183, 44.086, 0.0, 1,
                                   "Delegate/Convolution (NHWC, QC8) IGEMM:0")
    assert r.run_order[2].times_called == 2
    assert r.run_order[-1].name == "[StatefulPartitionedCall:0]:9"
    assert all(row.start_ms is None for row in r.run_order)
    assert sum(row.percent for row in r.run_order) == approx(100, abs=0.01)
    assert len(r.top_by_time) == 5 and r.top_by_time[0].node_type == "Convolution (NHWC, QC8) IGEMM"
    assert len(r.by_node_type) == 8
    assert r.by_node_type[-1] == NodeTypeRow("DEQUANTIZE", 1, 0.003, 0.323, 100.0, 0.0, 1)


def test_count1_degenerate_phases():
    r = parse_tflite_benchmark(read("tflite-benchmark_model-count1.txt"))
    assert r.format == "current"
    assert (r.init_us, r.first_inference_us, r.warmup_avg_us, r.inference_avg_us) == (2211, 412, 412, 57)
    assert r.warmup == RunStats(count=1, curr_us=412, all_same=True)
    assert r.inference == RunStats(count=1, curr_us=57, all_same=True)
    j = r.to_json()
    assert j["runs"] == 1 and j["inference"]["avg_us"] is None and "median_us" not in j


# ================================================================== benchmark_model JSON


def test_tflite_to_json_keys_units_and_serialisable():
    r = parse_tflite_benchmark(read("tflite-benchmark_model-current-xnnpack-optable.txt"))
    j = r.to_json()
    assert json.loads(json.dumps(j)) == j
    assert {"tool", "format", "init_us", "first_inference_us", "warmup_avg_us", "inference_avg_us", "runs",
            "warmup_runs", "inference", "warmup", "init", "op_profile", "run_order", "top_by_time",
            "by_node_type"} <= set(j)
    assert j["tool"] == "benchmark_model" and j["format"] == "current"
    assert j["inference_avg_us"] == approx(942.1) and j["init_us"] == 5871 and j["runs"] == 704
    assert set(j["inference"]) == {"count", "first_us", "curr_us", "min_us", "max_us", "avg_us", "std_us", "p5_us",
                                   "median_us", "p95_us", "all_same"}
    assert j["run_order"][1] == {"node_type": "Convolution (NHWC, QC8) IGEMM", "start_ms": None, "first_ms": 0.412,
                                 "avg_ms": 0.383, "percent": 41.183, "cdf_percent": 44.086, "mem_kb": 0.0,
                                 "times_called": 1, "name": "Delegate/Convolution (NHWC, QC8) IGEMM:0"}
    assert set(j["by_node_type"][0]) == {"node_type", "count", "avg_ms", "percent", "cdf_percent", "mem_kb",
                                         "times_called"}
    assert parse_tool_output("tflite", read("tflite-benchmark_model-current-xnnpack-optable.txt")) == j


# ================================================================== statistics lines


@pytest.mark.parametrize("line, expected", [
    ("count=0", RunStats(count=0)),
    ("count=1 curr=57", RunStats(count=1, curr_us=57, all_same=True)),
    ("count=5 curr=812(all same)", RunStats(count=5, curr_us=812, all_same=True)),
    ("INFO: count=3 first=10 curr=12 min=10 max=14 avg=12 std=1",
     RunStats(count=3, first_us=10, curr_us=12, min_us=10, max_us=14, avg_us=12, std_us=1)),
    ("Timings (microseconds): count=2 first=1500000 curr=1700000 min=1500000 max=1700000 avg=1.6e+06 std=100000",
     RunStats(count=2, first_us=1500000, curr_us=1700000, min_us=1500000, max_us=1700000, avg_us=1.6e6,
              std_us=100000)),
    ("count=9 first=8 curr=5 min=5 max=8 avg=5.8 std=1 p5=5 median=6 p95=8",
     RunStats(count=9, first_us=8, curr_us=5, min_us=5, max_us=8, avg_us=5.8, std_us=1, p5_us=5, median_us=6,
              p95_us=8)),
    ("count=2 first=3 curr=4 min=3 max=4 avg=-nan std=0", RunStats(count=2, first_us=3, curr_us=4, min_us=3,
                                                                    max_us=4, avg_us=None, std_us=0)),
])
def test_stats_line_forms(line, expected):
    assert parse_run_stats(line) == expected


def test_stats_line_reads_one_line_only():
    assert parse_run_stats("count=0\nfirst=5 curr=6\n") == RunStats(count=0)
    assert parse_run_stats("Memory: n/a\r\ncount=2 curr=7(all same)\r\navg=9") == RunStats(count=2, curr_us=7,
                                                                                         all_same=True)


def test_stats_line_garbage_is_one_line_error():
    with pytest.raises(ToolOutputError) as error:
        parse_run_stats("accounting=3 curr=4\nmore")
    assert "count=" in one_line(error)


# ================================================================== benchmark_model robustness


def _tabs_to_spaces(text: str) -> str:
    return text.expandtabs(8)


@pytest.mark.parametrize("name", ["tflite-benchmark_model-tf2.0-optable.txt",
                                  "tflite-benchmark_model-current-xnnpack-optable.txt",
                                  "tflite-benchmark_model-tf2.2.txt"])
def test_tables_whose_tabs_became_spaces(name):
    text = read(name)
    assert _tabs_to_spaces(text) != text
    assert parse_tflite_benchmark(_tabs_to_spaces(text)) == parse_tflite_benchmark(text)


LOGCAT_PREFIXES = [
    "01-02 03:04:05.678  4321  4321 I tflite  : ",
    "I tflite  : ",
    "I/tflite  ( 4321): ",
    "I0102 03:04:05.678901  4321 benchmark_model.cc:123] ",
    "I tflite/tools/benchmark/benchmark_model.cc:123] ",
]


@pytest.mark.parametrize("prefix", LOGCAT_PREFIXES)
@pytest.mark.parametrize("name", ["tflite-benchmark_model-current-android-median.txt",
                                  "tflite-benchmark_model-tf1.x.txt",
                                  "tflite-benchmark_model-current-xnnpack-optable.txt"])
def test_log_prefixes_on_every_line(prefix, name):
    text = read(name)
    # logcat drops the tool's own "INFO: " (the Android log has a priority instead), other loggers keep it.
    prefixed = "\n".join(prefix + (line[len("INFO: "):] if "tflite" in prefix and line.startswith("INFO: ")
                                   else line) for line in text.split("\n"))
    assert parse_tflite_benchmark(prefixed) == parse_tflite_benchmark(text)


@pytest.mark.parametrize("name", ["tflite-benchmark_model-current-android-median.txt",
                                  "tflite-benchmark_model-tf1.x.txt",
                                  "tflite-benchmark_model-current-xnnpack-optable.txt",
                                  "tflite-benchmark_model-count1.txt"])
def test_crlf_and_extra_blank_lines(name):
    text = read(name)
    expected = parse_tflite_benchmark(text)
    assert parse_tflite_benchmark(text.replace("\n", "\r\n")) == expected
    assert parse_tflite_benchmark("\n\n" + text.replace("INFO: Running", "\n\nINFO: Running") + "\n\n\n") == expected


def test_android_app_summary_with_memory_run_on():
    text = ("Average inference timings in us: Warmup: 91471, Init: 4108, Inference: 80660.1"
            "Overall max resident set size = 43.5 MB, total malloc-ed size = 0 MB")
    r = parse_tflite_benchmark("01-02 03:04:05.678  4321  4321 E tflite  : " + text)
    assert (r.format, r.warmup_avg_us, r.init_us, r.inference_avg_us) == ("tf2.0", 91471, 4108, approx(80660.1))


def test_summary_with_nan_and_scientific_values():
    text = ("INFO: Running benchmark for at least 0 iterations and at least 0 seconds but terminate if exceeding "
            "150 seconds.\nINFO: count=0\n\nINFO: Running benchmark for at least 2 iterations and at least 0 seconds "
            "but terminate if exceeding 150 seconds.\nINFO: count=2 first=1210000 curr=1230000 min=1210000 "
            "max=1230000 avg=1.22e+06 std=10000\n\nINFO: Inference timings in us: Init: 3120, First inference: 0, "
            "Warmup (avg): -nan, Inference (avg): 1.22e+06\n")
    r = parse_tflite_benchmark(text)
    assert r.warmup == RunStats(count=0)
    assert r.warmup_avg_us is None and r.first_inference_us == 0
    assert r.inference_avg_us == 1.22e6 and r.inference.avg_us == 1.22e6 and r.runs == 2


def test_truncated_after_summary_and_mid_table():
    text = read("tflite-benchmark_model-current-xnnpack-optable.txt")
    full = parse_tflite_benchmark(text)
    # Cut in the middle of the third Run Order row of the regular runs.
    cut_at = text.index("Delegate/Convolution (NHWC, QC8) IGEMM:0") + len("Delegate/Convolution (NHWC, QC8) IGEMM:0")
    cut = text[:cut_at] + "\n\t          Convolution (NHWC, QC8) DWConv\t    0.2"
    # A row cut among its numbers is incomplete, and so left out.
    assert [row.node_type for row in parse_tflite_benchmark(text[:text.index("41.183%")]).run_order] == ["QUANTIZE"]
    r = parse_tflite_benchmark(cut)
    assert r.inference == full.inference and r.init == full.init and r.inference_avg_us == full.inference_avg_us
    assert [row.node_type for row in r.run_order] == ["QUANTIZE", "Convolution (NHWC, QC8) IGEMM"]
    assert r.by_node_type == [] and r.op_profile is None
    # Cut right after the summary line (the memory lines lost).
    at = text.index("INFO: Note:")
    r = parse_tflite_benchmark(text[:at + 20])
    assert r.inference == full.inference and r.run_order == []


def test_truncated_before_summary_is_an_error():
    text = read("tflite-benchmark_model-current-android-median.txt")
    with pytest.raises(ToolOutputError) as error:
        parse_tflite_benchmark(text[:text.index("INFO: Inference timings")])
    assert "Inference timings in us" in one_line(error)


def test_several_runs_in_one_log_gives_the_last():
    first = read("tflite-benchmark_model-current-xnnpack-optable.txt")
    second = read("tflite-benchmark_model-current-android-median.txt")
    failed = "INFO: STARTING!\nERROR: Failed to allocate tensors!\nERROR: Benchmarking failed.\n"
    r = parse_tflite_benchmark(first + failed + second)
    assert r == parse_tflite_benchmark(second)
    r = parse_tflite_benchmark(second + first)
    assert r == parse_tflite_benchmark(first)


def test_single_phase_line_attributed_by_average():
    summary = "Inference timings in us: Init: 10, First inference: 30, Warmup (avg): 25.5, Inference (avg): 20\n"
    r = parse_tflite_benchmark("count=4 first=30 curr=22 min=22 max=30 avg=25.5 std=3\n" + summary)
    assert r.warmup.avg_us == 25.5 and r.inference is None
    r = parse_tflite_benchmark("count=4 first=21 curr=19 min=19 max=21 avg=20 std=1\n" + summary)
    assert r.inference.avg_us == 20 and r.warmup is None


def test_docstring_states_how_to_get_exactly_n_runs():
    doc = " ".join(tflite_benchmark.__doc__.split())
    assert "--num_runs" in doc and "minimum" in doc
    assert "--min_secs=0" in doc and "--warmup_min_secs=0" in doc


# ================================================================== onnxruntime_perf_test


def test_ort_old_real_sample_cut_short():
    r = parse_ort_perf_test(read("onnxruntime_perf_test-old.txt"))
    assert r.format == "old"
    assert r.average_ms == approx(58.8053) and r.runs == 1000 and r.total_time_s == approx(58.8053)
    assert r.run_time_s == approx(58.8102)
    assert (r.min_s, r.max_s, r.p50_s, r.p90_s, r.p95_s, r.p99_s) == (
        approx(0.0559777), approx(0.0623472), approx(0.0587108), approx(0.0599845), approx(0.0605676),
        approx(0.0619517))
    assert r.p999_s is None                     # "P999 Latency is 0.0623472se": cut short
    assert r.avg_cpu_usage is None and r.per_run_ms == []


def test_ort_1x_with_verbose_runs():
    r = parse_ort_perf_test(read("onnxruntime_perf_test-1.x.txt"))
    assert r.format == "1.x"
    assert r.average_ms == approx(0.4104) and r.runs == 20
    assert r.total_time_s == approx(0.008208) and r.run_time_s == approx(0.008289)
    assert r.session_creation_s == approx(0.0214386) and r.first_inference_ms == 1
    assert r.avg_cpu_usage == 96 and r.peak_working_set_bytes == 27406336
    assert (r.min_s, r.max_s, r.p50_s, r.p90_s, r.p95_s, r.p99_s, r.p999_s) == (
        approx(0.000389), approx(0.000457), approx(0.000412), approx(0.000423), approx(0.000457), approx(0.000457),
        approx(0.000457))
    assert len(r.per_run_ms) == 20 and r.per_run_ms[0] == approx(0.407) and r.per_run_ms[7] == approx(0.457)
    assert sum(r.per_run_ms) / 20 == approx(r.average_ms)
    assert sorted(r.per_run_ms)[10] == approx(r.p50_s * 1e3)


def test_ort_current():
    r = parse_ort_perf_test(read("onnxruntime_perf_test-current.txt"))
    assert r.format == "current"
    assert r.average_ms == approx(0.051652) and r.runs == 1000 and r.total_time_s == approx(0.0516522)
    assert r.p50_s == approx(5.11117e-05) and r.p95_s == approx(5.66469e-05) and r.min_s == approx(4.21737e-05)
    assert r.p999_s == approx(0.000312) and r.max_s == approx(0.000312)
    assert r.avg_cpu_usage == 99 and r.peak_working_set_bytes == 31870976
    assert r.first_inference_ms == 0 and r.average_submission_ms is None


def test_ort_to_json_microseconds():
    j = parse_tool_output("ort", read("onnxruntime_perf_test-current.txt"))
    assert json.loads(json.dumps(j)) == j
    assert j["tool"] == "onnxruntime_perf_test" and j["format"] == "current" and j["runs"] == 1000
    assert j["inference_avg_us"] == approx(51.652)
    assert j["median_us"] == j["p50_us"] == approx(51.1117)
    assert j["p95_us"] == approx(56.6469) and j["min_us"] == approx(42.1737) and j["p999_us"] == approx(312)
    assert j["init_us"] == approx(18735.6) and j["total_time_us"] == approx(51652.2)
    assert "per_run_us" not in j
    j = parse_ort_perf_test(read("onnxruntime_perf_test-1.x.txt")).to_json()
    assert j["per_run_us"][0] == approx(407) and len(j["per_run_us"]) == 20
    j = parse_ort_perf_test(read("onnxruntime_perf_test-old.txt")).to_json()
    assert j["p999_us"] is None and j["median_us"] == approx(58710.8)


def test_ort_submission_and_per_shape_blocks_are_not_the_run():
    text = read("onnxruntime_perf_test-current.txt").replace(
        "Total inference run time", "Average inference time cost submission: 0.012 ms\nTotal inference run time")
    text += ("\nShape group 1 (500 iterations):\n  Min Latency: 0.9 s\n  P50 Latency: 1.5 s\n"
             "\nLatency per shape group:\n  1. x : [1,3]\n      P50 Latency: 0.05 ms\n")
    r = parse_ort_perf_test(text)
    assert r.average_ms == approx(0.051652) and r.average_submission_ms == approx(0.012)
    assert r.p50_s == approx(5.11117e-05) and r.min_s == approx(4.21737e-05)


def test_ort_crlf_and_two_runs():
    old = read("onnxruntime_perf_test-old.txt")
    current = read("onnxruntime_perf_test-current.txt")
    assert parse_ort_perf_test(current.replace("\n", "\r\n")) == parse_ort_perf_test(current)
    assert parse_ort_perf_test(current + "\n" + read("onnxruntime_perf_test-1.x.txt")) == parse_ort_perf_test(
        read("onnxruntime_perf_test-1.x.txt"))
    assert parse_ort_perf_test(current + old).format == "old"


def test_ort_without_summary_is_an_error():
    text = read("onnxruntime_perf_test-current.txt")
    with pytest.raises(ToolOutputError) as error:
        parse_ort_perf_test(text[:text.index("Average inference")])
    assert "Average inference time cost" in one_line(error)


# ================================================================== result file


def test_ort_result_csv():
    times = parse_ort_result_csv(read("onnxruntime_perf_test-result.csv"))
    assert len(times) == 10
    assert times[0] == approx(0.0565964) and times[3] == approx(0.104) and times[-1] == approx(0.0529287)


def test_ort_result_csv_appended_runs_stats_block_and_commas_in_name():
    first = read("onnxruntime_perf_test-result.csv")
    second = ("my,model,0.002,100,50,0\nmy,model,0.003,100,50,1\n\n"
              "Min Latency: 0.002 s\nMax Latency: 0.003 s\nP50 Latency: 0.003 s\n")
    assert parse_ort_result_csv(first + second) == [approx(2.0), approx(3.0)]
    old_stats = "\nP50 Latency is 0.0587108sec\nP999 Latency is 0.0623472sec\n"
    assert parse_ort_result_csv(first.replace("\n", "\r\n") + old_stats) == parse_ort_result_csv(first)


@pytest.mark.parametrize("header, scale", [("run,time_s", 1e3), ("run,latency_ms", 1.0), ("run,time (us)", 1e-3),
                                           ("iteration,time_cost", 1e3)])
def test_ort_result_csv_with_header(header, scale):
    assert parse_ort_result_csv(f"{header}\n0,2\n1,4\n") == [approx(2 * scale), approx(4 * scale)]


@pytest.mark.parametrize("text", ["", "\n\n", "hello,world\nfoo,bar\n", "m,abc,1,2,0\n"])
def test_ort_result_csv_garbage(text):
    with pytest.raises(ToolOutputError) as error:
        parse_ort_result_csv(text)
    one_line(error)


# ================================================================== garbage and the CLI entry point


GARBAGE = [
    "",
    "\n\n\r\n",
    "Segmentation fault (core dumped)\n",
    "ERROR: Could not open '/data/local/tmp/missing.tflite'.\nERROR: Failed to load model.\nERROR: Benchmarking failed.\n",
    "\x00\x01\x02 binary junk \xff\n" * 3,
    "count=50 first=1 curr=2 min=1 max=2 avg=1.5 std=0\n",            # statistics but no summary
    read("onnxruntime_perf_test-current.txt"),                           # the other tool
]


@pytest.mark.parametrize("text", GARBAGE)
def test_tflite_garbage_is_one_line_error(text):
    with pytest.raises(ToolOutputError) as error:
        parse_tflite_benchmark(text)
    assert "benchmark_model" in one_line(error)


@pytest.mark.parametrize("text", GARBAGE[:-1] + [read("tflite-benchmark_model-current-android-median.txt")])
def test_ort_garbage_is_one_line_error(text):
    with pytest.raises(ToolOutputError) as error:
        parse_ort_perf_test(text)
    assert "onnxruntime_perf_test" in one_line(error)


def test_parse_tool_output_formats():
    assert parse_tool_output("tflite", read("tflite-benchmark_model-tf1.x.txt"))["inference_avg_us"] == approx(96055.6)
    assert parse_tool_output("ort", read("onnxruntime_perf_test-old.txt"))["inference_avg_us"] == approx(58805.3)
    with pytest.raises(ToolOutputError) as error:
        parse_tool_output("tensorrt", "x")
    assert "tflite" in one_line(error) and "ort" in one_line(error)
    with pytest.raises(ToolOutputError):
        parse_tool_output("tflite", "garbage\n")


# ================================================================== round trips (hypothesis)

us_int = st.integers(min_value=0, max_value=10**10)
us_float = st.floats(min_value=0, max_value=1e10, allow_nan=False, allow_infinity=False)


def cpp(value: float, style: str) -> str:
    """``value`` as C++ prints a double: default stream (6 significant digits), fixed, or full precision."""
    if style == "default":
        return f"{value:.6g}"
    if style == "fixed":
        return f"{value:.3f}"
    return repr(float(value))


styles = st.sampled_from(["default", "fixed", "repr"])
line_prefixes = st.sampled_from(["", "INFO: ", "Timings (microseconds): ", "I tflite  : ",
                                 "01-02 03:04:05.678  4321  4321 I tflite  : "])


@settings(max_examples=300)
@given(count=st.integers(min_value=2, max_value=10**7), ints=st.lists(us_int, min_size=5, max_size=5),
       avg=us_float, style=styles, percentiles=st.none() | st.lists(us_int, min_size=3, max_size=3),
       prefix=line_prefixes, crlf=st.booleans())
def test_full_stats_line_round_trip(count, ints, avg, style, percentiles, prefix, crlf):
    first, curr, low, high, std = ints
    avg_text = cpp(avg, style)
    line = f"count={count} first={first} curr={curr} min={low} max={high} avg={avg_text} std={std}"
    if percentiles is not None:
        line += " p5={} median={} p95={}".format(*percentiles)
    stats = parse_run_stats(prefix + line + ("\r\n" if crlf else "\n"))
    p5, median, p95 = percentiles if percentiles is not None else (None, None, None)
    assert stats == RunStats(count=count, first_us=first, curr_us=curr, min_us=low, max_us=high,
                             avg_us=float(avg_text), std_us=std, p5_us=p5, median_us=median, p95_us=p95)


@given(count=st.integers(min_value=0, max_value=10**7), curr=us_int, prefix=line_prefixes)
def test_degenerate_stats_line_round_trip(count, curr, prefix):
    # As Stat::OutputToStream prints it: empty, or all values the same.
    if count == 0:
        line, expected = "count=0", RunStats(count=0)
    else:
        line = f"count={count} curr={curr}" + ("(all same)" if count > 1 else "")
        expected = RunStats(count=count, curr_us=curr, all_same=True)
    assert parse_run_stats(prefix + line) == expected


@settings(max_examples=200)
@given(init=us_int, first=us_int, warmup=us_float, inference=us_float, style=styles,
       form=st.sampled_from(["tf1", "tf2.0", "current"]), prefix=st.sampled_from(["", "INFO: ", "I tflite  : "]))
def test_summary_line_round_trip(init, first, warmup, inference, style, form, prefix):
    w, x = cpp(warmup, style), cpp(inference, style)
    line = {
        "tf1": f"Average inference timings in us: Warmup: {w}, Init: {init}, no stats: {x}",
        "tf2.0": f"Average inference timings in us: Warmup: {w}, Init: {init}, Inference: {x}",
        "current": f"Inference timings in us: Init: {init}, First inference: {first}, Warmup (avg): {w}, "
                   f"Inference (avg): {x}",
    }[form]
    r = parse_tflite_benchmark(prefix + line + "\n")
    assert r.format == form
    assert (r.init_us, r.warmup_avg_us, r.inference_avg_us) == (init, float(w), float(x))
    assert r.first_inference_us == (first if form == "current" else None)


@settings(max_examples=200)
@given(avg_ms=st.floats(min_value=1e-6, max_value=1e6), runs=st.integers(min_value=1, max_value=10**7),
       latencies=st.lists(st.floats(min_value=1e-9, max_value=1e4), min_size=7, max_size=7),
       form=st.sampled_from(["old", "1.x", "current"]), crlf=st.booleans())
def test_ort_summary_round_trip(avg_ms, runs, latencies, form, crlf):
    names = ["Min", "Max", "P50", "P90", "P95", "P99", "P999"]
    texts = [cpp(v, "default") for v in latencies]
    avg = cpp(avg_ms, "default")
    if form == "old":
        lines = [f"Total iterations:{runs}", f"Average time cost:{avg} ms", "Total run time:1 s"]
        lines += [f"{n} Latency is {t}sec" for n, t in zip(names, texts, strict=True)]
    else:
        average = "Average inference time cost total" if form == "current" else "Average inference time cost"
        avg = f"{avg_ms:.6f}" if form == "current" else avg
        lines = [f"Total inference requests: {runs}", f"{average}: {avg} ms", "Avg CPU usage: 97 %",
                 "Avg CPU usage:97", f"Runs:{runs}"]
        lines += [f"{n} Latency: {t} s" for n, t in zip(names, texts, strict=True)]
    r = parse_ort_perf_test(("\r\n" if crlf else "\n").join(lines))
    assert r.format == form and r.runs == runs and r.average_ms == float(avg)
    assert (r.min_s, r.max_s, r.p50_s, r.p90_s, r.p95_s, r.p99_s, r.p999_s) == tuple(float(t) for t in texts)


@given(times=st.lists(st.floats(min_value=1e-9, max_value=1e3), min_size=1, max_size=50),
       name=st.from_regex(r"[A-Za-z0-9_.,-]{1,20}", fullmatch=True))
def test_ort_result_csv_round_trip(times, name):
    texts = [cpp(t, "default") for t in times]
    csv_text = "".join(f"{name},{t},31870976,99,{i}\n" for i, t in enumerate(texts))
    assert parse_ort_result_csv(csv_text) == [approx(float(t) * 1e3) for t in texts]
