#!/usr/bin/env python3
"""Time each shipped ONNX model at ONNX Runtime's graph optimisation levels, one thread.

Why: the host picks a level per model (crates/faceauth-core/src/vision/models.rs). On the 2-core
AVX-512 machine of 2026-12-01 the top level (NCHWc layout) made fr_feature 3x slower
(57 vs 18.8 ms) and the other models faster. Run it again on new hardware or a new
onnxruntime before trusting those constants.

  python3 scripts/bench/ort_levels.py [--runs 30]
"""
import argparse
import os
import time

import numpy as np
import onnxruntime as ort

MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models")
SHAPES = {
    "fr_feature": (1, 3, 112, 112),
    "fr_detect": (1, 3, 240, 320),
    "fr_landmark": (1, 1, 64, 64),
    "minifasnet_v2_2.7": (1, 3, 80, 80),
    "minifasnet_v1se_4.0": (1, 3, 80, 80),
    "fr_eye": (1, 1, 24, 24),
}
LEVELS = [("basic", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
          ("extended", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
          ("all", ort.GraphOptimizationLevel.ORT_ENABLE_ALL)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    print("onnxruntime %s; ms per run, one intra-op thread, median of %d" % (ort.__version__, args.runs))
    print("%-22s" % "model" + "".join("%10s" % name for name, _ in LEVELS))
    rng = np.random.default_rng(0)
    for model, shape in SHAPES.items():
        x = rng.random(shape, dtype=np.float32)
        row = []
        for _, level in LEVELS:
            o = ort.SessionOptions()
            o.intra_op_num_threads = 1
            o.inter_op_num_threads = 1
            o.graph_optimization_level = level
            s = ort.InferenceSession(os.path.join(MODELS, model + ".onnx"), o)
            name = s.get_inputs()[0].name
            for _ in range(3):
                s.run(None, {name: x})
            times = []
            for _ in range(args.runs):
                t = time.perf_counter()
                s.run(None, {name: x})
                times.append(time.perf_counter() - t)
            row.append(1000 * float(np.median(times)))
        print("%-22s" % model + "".join("%10.2f" % v for v in row))


if __name__ == "__main__":
    main()
