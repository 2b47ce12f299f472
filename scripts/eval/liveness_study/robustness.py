#!/usr/bin/env python3
"""Stage 3 (checks of the recommended crop), on the MAIN still photos (bona fide photos and
their simulated / real print and screen recaptures), reusing the boxes of extract.py:

1. Rust-equivalence: the crop resized by a numpy copy of the host's own
   `geometry::resize_bilinear` (crates/faceauth-core/src/vision/geometry.rs: centre-aligned bilinear, no
   anti-aliasing, f32, round) instead of cv2.INTER_LINEAR (fixed-point): pixel differences
   and live-score differences, and the rates of both.
2. Resolution: a filter without anti-aliasing aliases differently at every down-scaling
   factor, so the score could depend on the upload's resolution. Every picture is first
   resized (cv2.INTER_AREA) by 0.5 and 0.35 (the box with it), and also to a fixed face
   height of 240 px, then scored with the host's crop and the recommended one.

Usage: python3 scripts/eval/liveness_study/robustness.py [--frames /tmp/liveness_study/frames.pkl]
       [--threshold 0.4]
"""
from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from analyze import ATT_MAIN, BF_MAIN, auc, fmt_rate, t_at_apcer  # noqa: E402


def resize_bilinear_host(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    """numpy copy of host geometry::resize_bilinear (+ sample_bilinear), f32."""
    H, W = rgb.shape[:2]
    sx, sy = np.float32(W / w), np.float32(H / h)
    x = np.clip((np.arange(w, dtype=np.float32) + 0.5) * sx - 0.5, 0, W - 1).astype(np.float32)
    y = np.clip((np.arange(h, dtype=np.float32) + 0.5) * sy - 0.5, 0, H - 1).astype(np.float32)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0).astype(np.float32)[None, :, None], (y - y0).astype(np.float32)[:, None, None]
    pad = np.zeros((H + 1, W + 1, 3), np.float32)  # fetch outside the image = 0
    pad[:H, :W] = rgb
    p00 = pad[y0][:, x0]
    p10 = pad[y0][:, x0 + 1]
    p01 = pad[y0 + 1][:, x0]
    p11 = pad[y0 + 1][:, x0 + 1]
    top = p00 * (1 - fx) + p10 * fx
    bot = p01 * (1 - fx) + p11 * fx
    v = top * (1 - fy) + bot * fy
    return np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint8)  # f32.round() for v >= 0


def crop_box(rgb, box, scale):
    """Integer crop rectangle of FaceAnalyzer::liveness (raw box)."""
    h, w = rgb.shape[:2]
    bw, bh = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
    cx, cy = box[0] + bw / 2, box[1] + bh / 2
    s = max(0.0, min(scale, (h - 1) / bh, (w - 1) / bw))
    nw, nh = bw * s, bh * s
    x0 = min(max(cx - nw / 2, 0.0), max(w - nw, 0.0))
    y0 = min(max(cy - nh / 2, 0.0), max(h - nh, 0.0))
    xi, yi = int(x0), int(y0)
    return np.ascontiguousarray(rgb[yi:yi + min(max(int(nh), 1), h - yi), xi:xi + min(max(int(nw), 1), w - xi)])


def live_scores(sessions, rgb, box, filt):
    ps = []
    for sess, nominal in zip(sessions, common.LIVENESS_SCALES):
        c = crop_box(rgb, box, nominal)
        if filt.startswith("norm"):
            # two steps: anti-aliased (triangle) resize of the crop so that the face box
            # would be `H` px tall (down-scaling only), then plain bilinear to 80x80
            k = min(1.0, float(filt[4:]) / max(box[3] - box[1], 1.0))
            if k < 1.0:
                c = common.pil_resize(c, max(1, round(c.shape[1] * k)), max(1, round(c.shape[0] * k)))
            r = resize_bilinear_host(c, 80, 80)
        elif filt == "tri":
            r = common.pil_resize(c, 80, 80)
        elif filt == "linear":
            r = cv2.resize(c, (80, 80), interpolation=cv2.INTER_LINEAR)
        else:
            r = resize_bilinear_host(c, 80, 80)
        x = np.ascontiguousarray(r[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None])
        ps.append((sess.run(None, {"input": x})[0][0], r))
    return ps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=Path, default=Path("/tmp/liveness_study/frames.pkl"))
    ap.add_argument("--threshold", type=float, default=0.4, help="recommended threshold (linear crop)")
    ap.add_argument("--norm", type=int, nargs="*", default=[],
                    help="face heights of the two-step (normalised) resize variants")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    d = pickle.load(open(args.frames, "rb"))
    stills = [p for p in d["presentations"] if p["kind"] == "image" and p["group"] in BF_MAIN + ATT_MAIN
              and p["frames"] and "box" in p["frames"][0]]
    sessions = [common.session(common.MODELS / "minifasnet_v2_2.7.onnx"),
                common.session(common.MODELS / "minifasnet_v1se_4.0.onnx")]
    # 1. Rust equivalence
    maxdiff, meandiff, sdiff = [], [], []
    res = {"linear": ([], []), "host_bilinear": ([], [])}
    res_l, res_h = [], []
    # 2. resolution
    prescales = ("x1", "x0.5", "x0.35", "face240")
    filts = ("tri", "linear", "host_bilinear") + tuple(f"norm{h}" for h in args.norm)
    resol = {(f, s): ([], []) for f in filts for s in prescales}
    for p in stills:
        rgb = common.read_image(Path(p["path"]))
        box = p["frames"][0]["box"]
        a = live_scores(sessions, rgb, box, "linear")
        b = live_scores(sessions, rgb, box, "host_bilinear")
        for (pa, ra), (pb, rb) in zip(a, b):
            dd = np.abs(ra.astype(int) - rb.astype(int))
            maxdiff.append(dd.max())
            meandiff.append(dd.mean())
        sa = (a[0][0][1] + a[1][0][1]) / 2
        sb = (b[0][0][1] + b[1][0][1]) / 2
        sdiff.append(abs(sa - sb))
        k = 0 if p["bona_fide"] else 1
        res["linear"][k].append(sa)
        res["host_bilinear"][k].append(sb)
        res_l.append(sa)
        res_h.append(sb)
        bh = box[3] - box[1]
        for s in prescales:
            f = {"x1": 1.0, "x0.5": 0.5, "x0.35": 0.35, "face240": 240.0 / bh}[s]
            if s == "x1":
                img, bx = rgb, box
            else:
                nw, nh = max(1, round(rgb.shape[1] * f)), max(1, round(rgb.shape[0] * f))
                interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
                img = cv2.resize(rgb, (nw, nh), interpolation=interp)
                bx = [v * nw / rgb.shape[1] if i % 2 == 0 else v * nh / rgb.shape[0] for i, v in enumerate(box)]
            for filt in filts:
                q = live_scores(sessions, img, bx, filt)
                resol[(filt, s)][k].append((q[0][0][1], q[1][0][1]))
    print(f"{len(stills)} still presentations (bona fide {len(res['linear'][0])}, attacks {len(res['linear'][1])})\n")
    print("1. cv2.INTER_LINEAR vs numpy copy of host geometry::resize_bilinear, on the 80x80 crops:")
    print(f"   pixel |diff|: max {max(maxdiff)}, mean of per-crop means {np.mean(meandiff):.4f}; "
          f"fused live score |diff|: median {np.median(sdiff):.5f}, max {max(sdiff):.4f}")
    t = args.threshold
    near = [(Path(p["path"]).name, p["group"], x, y) for p, x, y in zip(stills, res_l, res_h) if abs(x - t) < 0.05 or abs(y - t) < 0.05]
    print(f"   presentations within 0.05 of {t}: " + "; ".join(f"{g} {n[:30]} {x:.3f}/{y:.3f}" for n, g, x, y in near))
    for name, (bf, att) in res.items():
        bf, att = np.array(bf), np.array(att)
        print(f"   {name:<14} AUC {auc(bf, att):.4f}  @{t}: BPCER {fmt_rate(int((bf < t).sum()), len(bf))}, "
              f"APCER {fmt_rate(int((att >= t).sum()), len(att))}")
    print("\n2. resolution (the whole picture resized first); stills only")
    ths = (0.3, 0.35, 0.4, 0.45, 0.5)
    print(f"   {'pre-scale':<9} {'filter':<8} {'fusion':<6} {'AUC':>6}  t10 (BPCER@t10)        "
          + "  ".join(f"BPCER/APCER@{x:.2f}" for x in ths))
    for (filt, s), (bf, att) in resol.items():
        for fusion in ("mean", "geo"):
            fz = (lambda a: (a[:, 0] + a[:, 1]) / 2) if fusion == "mean" else (lambda a: np.sqrt(a[:, 0] * a[:, 1]))
            b, a = fz(np.array(bf)), fz(np.array(att))
            t10 = t_at_apcer(a)
            cells = "  ".join(f"{int((b < x).sum()):>3}/{int((a >= x).sum()):<3}          " for x in ths)
            print(f"   {s:<9} {filt:<8} {fusion:<6} {auc(b, a):6.3f}  {t10:.3f} ({fmt_rate(int((b < t10).sum()), len(b))})  {cells}")
    print(f"   (counts: bona fide refused of {len(resol[('tri', 'x1')][0])} / attacks accepted of {len(resol[('tri', 'x1')][1])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
