"""Static-shape TFLite exports under LiteRT's own tools, for docs/serving.md.

    python benchmarks/bench_static_export.py [--nets mtwdn lmfn ...] [--size 256x256]
                                             [--runs 10] [--threads 2] [--out DIR]

For each network (default: one preset per network class, full size,
untrained weights: latency does not depend on the values) a static
`--input-size` TFLite export is written, then:

- `litert-benchmark` (the benchmark entry point ai-edge-litert installs,
  `ai_edge_litert.tools.benchmark_litert_model`, LiteRT's `CompiledModel`
  API on CPU) runs its `deblur_float` signature; its JSON result is kept;
- LiteRT's `CompiledModel` runs one real input through the same signature
  and is checked against the `Interpreter`'s output;
- the graph is checked for padding and shape ops (there must be none).

Prints a markdown table; nothing here is a test.
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

import tfdeblur.models as models  # noqa: E402
from tests.helpers import representative_presets  # noqa: E402
from tfdeblur import export  # noqa: E402

DYNAMIC_OPS = {"MIRROR_PAD", "PAD", "PADV2", "SHAPE"}


def compiled_model_output(path, image, threads):
    """`deblur_float` of a .tflite file run through LiteRT's CompiledModel API."""
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator

    model = CompiledModel.from_file(str(path), hardware_accel=HardwareAccelerator.CPU)
    sig = export.SIGNATURE_FLOAT
    inputs = {export.INPUT_KEY: model.create_input_buffer_by_name(sig, export.INPUT_KEY)}
    outputs = {export.OUTPUT_KEY: model.create_output_buffer_by_name(sig, export.OUTPUT_KEY)}
    inputs[export.INPUT_KEY].write(image)
    model.run_by_name(sig, inputs, outputs)
    return outputs[export.OUTPUT_KEY].read(image.size, np.float32).reshape(image.shape)


def litert_benchmark(path, runs, threads, workdir):
    result = pathlib.Path(workdir) / (pathlib.Path(path).stem + ".json")
    # The console script, or the module it runs when the venv's bin is not on PATH.
    tool = [shutil.which("litert-benchmark")] if shutil.which("litert-benchmark") else [
        sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model"]
    command = tool + ["--model", str(path),
               "--signature", export.SIGNATURE_FLOAT, "--num_runs", str(runs), "--warmup_runs", "2",
               "--num_threads", str(threads), "--result_json", str(result)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not result.exists():
        return {"error": (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1]}
    return json.loads(result.read_text())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", nargs="+", default=None)
    p.add_argument("--size", default="256x256")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="keep the .tflite files here (default: a temporary folder)")
    args = p.parse_args()
    nets = args.nets or representative_presets()
    workdir = args.out or tempfile.mkdtemp(prefix="tfdeblur-static-")
    os.makedirs(workdir, exist_ok=True)
    rows = []
    for name in nets:
        model = models.build(name)
        size = export.parse_input_size(args.size, model)
        path = pathlib.Path(workdir) / f"{name}_{size[0]}x{size[1]}.tflite"
        start = time.perf_counter()
        export.export_tflite(model, path, input_size=size, overwrite=True)
        convert_s = time.perf_counter() - start
        interpreter = export.load_tflite(path, num_threads=args.threads)
        ops = {op["op_name"] for op in interpreter._get_ops_details()}
        image = np.random.default_rng(0).random((1, *size, 3), dtype=np.float32)
        reference = export.run_tflite(interpreter, image)
        try:
            compiled = float(np.abs(compiled_model_output(path, image, args.threads) - reference).max())
        except Exception as e:  # noqa: BLE001  (reported in the table)
            compiled = f"fails: {str(e).splitlines()[0][:80]}"
        bench = litert_benchmark(path, args.runs, args.threads, workdir)
        latency = bench.get("latency", {})
        rows.append({
            "net": name, "size": f"{size[0]}x{size[1]}", "mb": path.stat().st_size / 1e6, "convert_s": convert_s,
            "dynamic_ops": sorted(ops & DYNAMIC_OPS), "compiled_vs_interpreter": compiled,
            "benchmark": bench.get("error") or f"{latency.get('median_ms', float('nan')):.0f} ms median "
                                               f"(p95 {latency.get('p95_ms', float('nan')):.0f}, {latency.get('num_runs')} runs)",
        })
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n| network | input | .tflite MB | padding/shape ops | litert-benchmark (CompiledModel, CPU, {args.threads} threads) | CompiledModel vs Interpreter max abs diff |")
    print("| --- | --- | ---: | --- | --- | --- |")
    for r in rows:
        diff = r["compiled_vs_interpreter"]
        diff = f"{diff:.1e}" if isinstance(diff, float) else diff
        print(f"| {r['net']} | {r['size']} | {r['mb']:.1f} | {', '.join(r['dynamic_ops']) or 'none'} | {r['benchmark']} | {diff} |")


if __name__ == "__main__":
    main()
