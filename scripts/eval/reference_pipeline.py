#!/usr/bin/env python3
r"""Plain Python reference of the faceauth face pipeline, for pair-by-pair comparison
with the Rust host.

Same three ONNX models as the host (models/fr_detect.onnx, fr_landmark.onnx,
fr_feature.onnx), used the plain way of their npm package
(faceplugin-face-recognition-js@0.0.1):

1. Detector: the whole image (RGB) resized -- squashed, aspect not kept -- to 320x240
   with cv2.INTER_LINEAR, pixels (v - 127) / 128, planar. Keep scores[:, 1] >= 0.6,
   greedy NMS at IoU 0.4, boxes (relative corners) scaled back to the image. The
   LARGEST remaining box (by area) is the face.
2. Landmarks: crop x0 = int(max(x1, 0)), y0 = int(max(y1, 0)), x_end = min(int(x2), W),
   y_end = min(int(y2), H); resize to 64x64 (INTER_LINEAR, on RGB), grey
   0.299 R + 0.587 G + 0.114 B in float, / 256. Landmark i =
   (out[2i] * crop_w + x0, out[2i+1] * crop_h + y0).
3. Five points: mean of 36-41, mean of 42-47, 30, 48, 54.
4. Alignment onto the 112x112 template: `lsq` = least-squares similarity (Umeyama,
   no reflection); `robust` = cv2.estimateAffinePartial2D (RANSAC, OpenCV defaults),
   for comparison only. cv2.warpAffine to 112x112, INTER_LINEAR, BORDER_CONSTANT 0.
5. Embedding: RGB, (v - 127) / 128, planar; L2-normalised; similarity = cosine.

Usage:
  python3 scripts/eval/reference_pipeline.py --pairs ../shared/faces/lfw-train/pairs.csv \
      [--root DIR] [--align lsq|robust] [--detect squash|letterbox] [--out scores.csv] \
      [--reference-json tests/reference/lfw_pairs_reference.json --reference-count 50]
  python3 scripts/eval/reference_pipeline.py --check-stages ../shared/reference/pipeline_reference.json \
      [--align robust --grey opencv]

--detect letterbox feeds the detector the image scaled to fit 320x240 with its aspect
kept (grey padding), as the host's coarsest level does, instead of squashed. On the
LFW View-1 training pairs (square 250x250 photos, squashed 1.28x wider than high) it
gives ROC AUC 0.9977, best accuracy 99.14 %, TAR 98.36 % (1082/1100) at FAR 0.09 %,
against 0.9970, 99.27 %, 98.64 % squashed: the host's figures are the letterboxed
reference's. The letterboxed boxes are 1.4 % narrower and 1.4 % taller (median, 398
faces) with a 5 % spread: jitter, not a bias a fixed correction could remove.

--grey opencv takes the landmark input from cv2.cvtColor (uint8-rounded) instead of the
float formula the host uses. ../shared/reference/pipeline_reference.json was made with
--align robust --grey opencv (its matrices and embeddings match that to 4e-5 and cosine
0.999999), although its "about" says Umeyama; with lsq its matrices differ by up to 8.

pairs.csv: header file_a,file_b,same; paths relative to --root (default: the csv's
folder). Metrics use the pairs with a face on both sides (the others are counted
apart). "Accept" means cosine > threshold.
"""

import argparse
import csv
import json
import math
import os
import re
import sys
import time

import cv2
import numpy as np
import onnxruntime as ort

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODELS = os.path.join(REPO, "models")

DET_W, DET_H = 320, 240
SCORE_MIN = 0.6
NMS_IOU = 0.4
TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


# ----------------------------------------------------------------------------- models


class Models:
    def __init__(self, models_dir=MODELS, threads=0):
        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
        prov = ["CPUExecutionProvider"]
        self.det = ort.InferenceSession(os.path.join(models_dir, "fr_detect.onnx"), opts, providers=prov)
        self.lmk = ort.InferenceSession(os.path.join(models_dir, "fr_landmark.onnx"), opts, providers=prov)
        self.feat = ort.InferenceSession(os.path.join(models_dir, "fr_feature.onnx"), opts, providers=prov)


def read_rgb(path):
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise IOError("cannot read image: %s" % path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def planar(rgb_u8):
    """HxWx3 uint8 RGB -> [1,3,H,W] float32, (v - 127) / 128."""
    x = (rgb_u8.astype(np.float32) - 127.0) / 128.0
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def iou(a, b):
    """IoU of box a [4] against boxes b [K,4] (corner form)."""
    ix1 = np.maximum(a[0], b[:, 0])
    iy1 = np.maximum(a[1], b[:, 1])
    ix2 = np.minimum(a[2], b[:, 2])
    iy2 = np.minimum(a[3], b[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = max(a[2] - a[0], 0) * max(a[3] - a[1], 0)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    return inter / np.maximum(area_a + area_b - inter, 1e-12)


def nms(boxes, scores, thr):
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[iou(boxes[i], boxes[rest]) <= thr]
    return keep


def detect(models, rgb, mode="squash"):
    """All faces: list of (box_xyxy in image pixels, score), best score first.
    mode "squash": the whole image resized to 320x240 (the package's way);
    "letterbox": scaled to fit, aspect kept, padded with grey 127 (normalises to 0),
    as the host's coarsest level does."""
    h, w = rgb.shape[:2]
    if mode == "letterbox":
        s_fit = min(DET_W / w, DET_H / h)
        lw, lh = max(1, round(w * s_fit)), max(1, round(h * s_fit))
        small = np.full((DET_H, DET_W, 3), 127, dtype=np.uint8)
        small[:lh, :lw] = cv2.resize(rgb, (lw, lh), interpolation=cv2.INTER_AREA if s_fit < 1 else cv2.INTER_LINEAR)
        sx, sy = DET_W * w / lw, DET_H * h / lh
    else:
        small = cv2.resize(rgb, (DET_W, DET_H), interpolation=cv2.INTER_LINEAR)
        sx, sy = w, h
    scores, boxes = models.det.run(["scores", "boxes"], {"input": planar(small)})
    s = scores[0, :, 1].astype(np.float64)
    b = boxes[0].astype(np.float64)
    m = s >= SCORE_MIN
    s, b = s[m], b[m]
    if s.size == 0:
        return []
    keep = nms(b, s, NMS_IOU)
    scale = np.array([sx, sy, sx, sy], dtype=np.float64)
    return [(b[i] * scale, float(s[i])) for i in keep]


def largest(faces):
    return max(faces, key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))


def landmarks68(models, rgb, box, grey_mode="float"):
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = box
    x0 = int(max(x1, 0))
    y0 = int(max(y1, 0))
    xe = min(int(x2), w)
    ye = min(int(y2), h)
    cw, ch = xe - x0, ye - y0
    if cw < 2 or ch < 2:
        return None
    crop = cv2.resize(rgb[y0:ye, x0:xe], (64, 64), interpolation=cv2.INTER_LINEAR)
    if grey_mode == "opencv":  # cv2.cvtColor: same weights, rounded to uint8
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    else:
        crop = crop.astype(np.float32)
        grey = 0.299 * crop[:, :, 0] + 0.587 * crop[:, :, 1] + 0.114 * crop[:, :, 2]
    x = (grey / 256.0).astype(np.float32)[None, None]
    out = models.lmk.run(["output"], {"input": np.ascontiguousarray(x)})[0][0].astype(np.float64)
    pts = out.reshape(68, 2)
    return np.stack([pts[:, 0] * cw + x0, pts[:, 1] * ch + y0], axis=1)


def five_points(lm):
    return np.array(
        [lm[36:42].mean(axis=0), lm[42:48].mean(axis=0), lm[30], lm[48], lm[54]],
        dtype=np.float64,
    )


def umeyama(src, dst):
    """Least-squares similarity (rotation, uniform scale, translation; no reflection)
    mapping src [N,2] onto dst [N,2]. Returns the 2x3 matrix."""
    n = src.shape[0]
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    sc, dc = src - mu_s, dst - mu_d
    cov = dc.T @ sc / n
    u, sv, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1.0
    r = u @ np.diag(d) @ vt
    var_s = (sc ** 2).sum() / n
    scale = float((sv * d).sum() / var_s)
    t = mu_d - scale * (r @ mu_s)
    m = np.zeros((2, 3))
    m[:, :2] = scale * r
    m[:, 2] = t
    return m


def similarity(pts5, align):
    if align == "lsq":
        return umeyama(pts5, TEMPLATE)
    m, _inliers = cv2.estimateAffinePartial2D(pts5.astype(np.float64), TEMPLATE)
    if m is None:  # never seen on LFW; fall back so the pair still gets a score
        return umeyama(pts5, TEMPLATE)
    return m.astype(np.float64)


def embed(models, rgb, m, flip=False):
    face = cv2.warpAffine(
        rgb, m, (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    e = models.feat.run(["output"], {"input": planar(face)})[0][0].astype(np.float64)
    if flip:  # mean of the face's and its mirror image's embeddings
        m_e = models.feat.run(["output"], {"input": planar(np.ascontiguousarray(face[:, ::-1]))})[0][0]
        e = e / max(np.linalg.norm(e), 1e-12) + m_e.astype(np.float64) / max(np.linalg.norm(m_e), 1e-12)
    return e / max(np.linalg.norm(e), 1e-12)


def analyse(models, path, align, grey_mode="float", flip=False, detect_mode="squash"):
    """Largest face of the image: dict with box, score, landmarks, five points,
    matrix, embedding; None when no face is found."""
    rgb = read_rgb(path)
    faces = detect(models, rgb, detect_mode)
    if not faces:
        return None
    box, score = largest(faces)
    # LFW photos are centred on their subject: a largest box that is not the most
    # central one is usually a bystander or a false detection (reported, not used)
    h, w = rgb.shape[:2]
    off = lambda b: math.hypot((b[0] + b[2]) / 2 - w / 2, (b[1] + b[3]) / 2 - h / 2)
    central = min(faces, key=lambda f: off(f[0]))[0] is box
    lm = landmarks68(models, rgb, box, grey_mode)
    if lm is None:
        return None
    p5 = five_points(lm)
    m = similarity(p5, align)
    return {
        "width": rgb.shape[1],
        "height": rgb.shape[0],
        "n_faces": len(faces),
        "largest_is_most_central": bool(central),
        "box": box,
        "score": score,
        "landmarks68": lm,
        "five_points": p5,
        "matrix": m,
        "embedding": embed(models, rgb, m, flip),
    }


# ----------------------------------------------------------------------------- metrics


def roc_auc(gen, imp):
    """Mann-Whitney AUC (ties count one half)."""
    allv = np.concatenate([gen, imp])
    ranks = np.empty(allv.size)
    order = np.argsort(allv, kind="mergesort")
    sv = allv[order]
    i = 0
    while i < sv.size:
        j = i
        while j + 1 < sv.size and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    rg = ranks[: gen.size].sum()
    return (rg - gen.size * (gen.size + 1) / 2.0) / (gen.size * imp.size)


def candidate_thresholds(gen, imp):
    s = np.unique(np.concatenate([gen, imp]))
    mids = (s[:-1] + s[1:]) / 2.0
    return np.concatenate([[s[0] - 1e-6], mids, [s[-1] + 1e-6]])


def metrics(gen, imp):
    gen = np.asarray(gen, dtype=np.float64)
    imp = np.asarray(imp, dtype=np.float64)
    ng, ni = gen.size, imp.size
    gs, is_ = np.sort(gen), np.sort(imp)
    th = candidate_thresholds(gen, imp)
    # accept: cosine > t
    ta = ng - np.searchsorted(gs, th, side="right")  # genuine accepted
    fa = ni - np.searchsorted(is_, th, side="right")  # impostors accepted
    far, frr = fa / ni, (ng - ta) / ng
    out = {"n_genuine": ng, "n_impostor": ni, "auc": roc_auc(gen, imp)}
    k = int(np.argmin(np.abs(far - frr)))
    out["eer"] = {"eer": (far[k] + frr[k]) / 2.0, "threshold": th[k], "fa": int(fa[k]), "fr": int(ng - ta[k])}
    correct = ta + (ni - fa)
    k = int(np.argmax(correct))
    out["best_acc"] = {"acc": correct[k] / (ng + ni), "threshold": th[k], "correct": int(correct[k]),
                       "fa": int(fa[k]), "fr": int(ng - ta[k])}
    out["tar"] = []
    for target in (1e-2, 1e-3):
        ok = np.where(far <= target)[0]
        k = ok[np.argmax(ta[ok])]  # most genuine accepted with FAR <= target
        out["tar"].append({"far_target": target, "tar": ta[k] / ng, "threshold": th[k], "ta": int(ta[k]),
                           "fa": int(fa[k]), "far": far[k]})
    return out


def print_metrics(mt, n_pairs, n_noface, noface_detail):
    ng, ni = mt["n_genuine"], mt["n_impostor"]
    print("pairs: %d (scored %d: %d genuine, %d impostor)" % (n_pairs, ng + ni, ng, ni))
    print("pairs with no face on either side: %d%s" % (n_noface, (" (" + noface_detail + ")") if noface_detail else ""))
    print("ROC AUC: %.4f" % mt["auc"])
    e = mt["eer"]
    print("EER: %.2f %% at threshold %.4f (false accepts %d/%d, false rejects %d/%d)"
          % (100 * e["eer"], e["threshold"], e["fa"], ni, e["fr"], ng))
    b = mt["best_acc"]
    print("best accuracy: %.2f %% (%d/%d) at threshold %.4f (false accepts %d, false rejects %d)"
          % (100 * b["acc"], b["correct"], ng + ni, b["threshold"], b["fa"], b["fr"]))
    for t in mt["tar"]:
        print("TAR at FAR %g: %.2f %% (%d/%d) at threshold %.4f (false accepts %d/%d = %.4f %%)"
              % (t["far_target"], 100 * t["tar"], t["ta"], ng, t["threshold"], t["fa"], ni, 100 * t["far"]))


# ----------------------------------------------------------------------------- reference json


def evenly(items, k):
    if k <= 0 or not items:
        return []
    if k >= len(items):
        return list(items)
    if k == 1:
        return [items[len(items) // 2]]
    idx = [round(i * (len(items) - 1) / (k - 1)) for i in range(k)]
    return [items[i] for i in idx]


def r(x, nd=6):
    return [round(float(v), nd) for v in x]


def write_reference(path, scored, cache, count, about):
    """scored: list of (file_a, file_b, same, cosine) with both faces found."""
    n_hard = round(0.4 * count)
    n_gen = round(0.3 * count)
    n_imp = count - n_hard - n_gen
    key = lambda p: (p[3], p[0], p[1])
    gen = sorted([p for p in scored if p[2] == 1], key=key)
    imp = sorted([p for p in scored if p[2] == 0], key=key)
    hard = gen[:n_hard]
    ordinary = evenly(gen[n_hard:], n_gen)
    impostor = evenly(imp, n_imp)
    def side(x):
        return {
            "width": x["width"],
            "height": x["height"],
            "n_faces": x["n_faces"],
            "largest_is_most_central": x["largest_is_most_central"],
            "box_xyxy": r(x["box"], 3),
            "score": round(x["score"], 6),
        }

    entries = []
    for kind, group in (("hard_genuine", hard), ("genuine", ordinary), ("impostor", impostor)):
        for fa, fb, same, cos in group:
            a = cache[fa]
            entries.append({
                "kind": kind,
                "file_a": fa,
                "file_b": fb,
                "same": same,
                "cosine": round(float(cos), 6),
                "a": dict(side(a), **{
                    "five_points": [r(p, 4) for p in a["five_points"]],
                    "similarity_transform_2x3": [r(row, 6) for row in a["matrix"]],
                }),
                "b": side(cache[fb]),
            })
    doc = {"about": about, "pairs": entries}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    text = json.dumps(doc, indent=1)
    # one line per list of numbers (points, rows, boxes)
    text = re.sub(r"\[\s+(-?[0-9.e+-]+(?:,\s+-?[0-9.e+-]+)*)\s+\]",
                  lambda mo: "[" + re.sub(r",\s+", ", ", mo.group(1)) + "]", text)
    with open(path, "w") as f:
        f.write(text + "\n")
    print("reference json: %s (%d hard genuine, %d genuine, %d impostor)"
          % (path, len(hard), len(ordinary), len(impostor)))


# ----------------------------------------------------------------------------- stage check


def check_stages(models, ref_path, shared_root, align, grey_mode):
    """Compare with ../shared/reference/pipeline_reference.json (largest face only)."""
    doc = json.load(open(ref_path))
    worst = 0.0
    for im in doc["images"]:
        a = analyse(models, os.path.join(shared_root, im["file"]), align, grey_mode)
        ref = max(im["faces"], key=lambda f: (f["box_xyxy"][2] - f["box_xyxy"][0]) * (f["box_xyxy"][3] - f["box_xyxy"][1]))
        if a is None:
            print("%s: no face (reference has %d)" % (im["file"], len(im["faces"])))
            continue
        db = np.abs(a["box"] - np.array(ref["box_xyxy"])).max()
        dl = np.abs(a["landmarks68"] - np.array(ref["landmarks68"])).max()
        dp = np.abs(a["five_points"] - np.array(ref["five_points"])).max()
        dm = np.abs(a["matrix"] - np.array(ref["similarity_transform_2x3"])).max()
        cos = float(a["embedding"] @ np.array(ref["embedding"]))
        worst = max(worst, 1 - cos)
        print("%s: %dx%d faces %d/%d  max|d| box %.3f  lmk68 %.3f  5pts %.3f  matrix %.2e  cosine %.6f"
              % (im["file"], a["width"], a["height"], a["n_faces"], len(im["faces"]), db, dl, dp, dm, cos))
    print("lowest embedding cosine vs reference: %.6f" % (1 - worst))


# ----------------------------------------------------------------------------- main


def pkg_version(name, fallback):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return fallback


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", help="pairs.csv (file_a,file_b,same)")
    ap.add_argument("--root", help="folder the pair paths are relative to (default: the csv's folder)")
    ap.add_argument("--align", choices=["lsq", "robust"], default="lsq")
    ap.add_argument("--out", help="write file_a,file_b,same,cosine per pair")
    ap.add_argument("--reference-json", help="write a stage-test reference (use with --align lsq)")
    ap.add_argument("--reference-count", type=int, default=50)
    ap.add_argument("--grey", choices=["float", "opencv"], default="float",
                    help="landmark input: float BT.601 (as the host) or cv2.cvtColor (uint8-rounded)")
    ap.add_argument("--flip", action="store_true",
                    help="embed the aligned face and its mirror image, use the normalised mean")
    ap.add_argument("--detect", choices=["squash", "letterbox"], default="squash",
                    help="detector input: the image squashed to 320x240 (the package's way) or letterboxed")
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = default)")
    ap.add_argument("--check-stages", metavar="JSON",
                    help="compare each stage with ../shared/reference/pipeline_reference.json and exit")
    args = ap.parse_args()

    models = Models(args.models, args.threads)
    if args.check_stages:
        shared = os.path.dirname(os.path.dirname(os.path.abspath(args.check_stages)))
        check_stages(models, args.check_stages, shared, args.align, args.grey)
        return 0
    if not args.pairs:
        ap.error("--pairs is required")
    root = args.root or os.path.dirname(os.path.abspath(args.pairs))

    with open(args.pairs, newline="") as f:
        pairs = [(row["file_a"], row["file_b"], int(row["same"])) for row in csv.DictReader(f)]
    images = sorted({p for fa, fb, _ in pairs for p in (fa, fb)})
    print("images: %d, align: %s, root: %s" % (len(images), args.align, root), flush=True)

    cache = {}
    t0 = time.time()
    for i, rel in enumerate(images):
        cache[rel] = analyse(models, os.path.join(root, rel), args.align, args.grey, args.flip, args.detect)
        if (i + 1) % 500 == 0:
            print("  %d/%d images, %.0f s" % (i + 1, len(images), time.time() - t0), file=sys.stderr, flush=True)
    noface_images = [k for k, v in cache.items() if v is None]
    print("images with no face: %d%s (%.0f s)" % (len(noface_images),
          (" " + ", ".join(noface_images)) if noface_images else "", time.time() - t0))
    multi = sum(1 for v in cache.values() if v is not None and v["n_faces"] > 1)
    offc = sorted(k for k, v in cache.items() if v is not None and not v["largest_is_most_central"])
    print("images with more than one face (largest used): %d; largest box not the most central: %d"
          % (multi, len(offc)))

    rows, scored = [], []
    noface = {0: 0, 1: 0}
    for fa, fb, same in pairs:
        a, b = cache[fa], cache[fb]
        if a is None or b is None:
            noface[same] += 1
            rows.append((fa, fb, same, None))
            continue
        cos = float(a["embedding"] @ b["embedding"])
        rows.append((fa, fb, same, cos))
        scored.append((fa, fb, same, cos))

    gen = [c for _, _, s, c in scored if s == 1]
    imp = [c for _, _, s, c in scored if s == 0]
    mt = metrics(gen, imp)
    detail = "%d genuine, %d impostor" % (noface[1], noface[0]) if noface[0] + noface[1] else ""
    print_metrics(mt, len(pairs), noface[0] + noface[1], detail)
    t_best = mt["best_acc"]["threshold"]
    offp = [p for p in scored if not (cache[p[0]]["largest_is_most_central"] and cache[p[1]]["largest_is_most_central"])]
    print("pairs with a largest box that is not the most central on a side: %d (%d genuine, %d of them rejected "
          "at the best-accuracy threshold; %d impostor)"
          % (len(offp), sum(p[2] for p in offp), sum(1 for p in offp if p[2] == 1 and p[3] <= t_best),
             sum(1 for p in offp if p[2] == 0)))

    if args.out:
        with open(args.out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file_a", "file_b", "same", "cosine"])
            for fa, fb, same, cos in rows:
                w.writerow([fa, fb, same, "" if cos is None else "%.6f" % cos])
        print("scores: %s" % args.out)

    if args.reference_json:
        cmd = "python3 scripts/eval/reference_pipeline.py " + " ".join(sys.argv[1:])
        about = (
            "Python reference of the face pipeline (scripts/eval/reference_pipeline.py) on %d deterministic pairs of "
            "LFW View-1 training pairs.csv (%d pairs, %d scored; paths relative to the lfw-train folder): the %d "
            "lowest-cosine genuine pairs, then genuine and impostor pairs evenly spaced in cosine order "
            "(ties by file names). Made with: %s. Models: models/fr_detect.onnx, fr_landmark.onnx, fr_feature.onnx "
            "(faceplugin-face-recognition-js@0.0.1). Detector: whole image squashed to 320x240 (cv2.INTER_LINEAR), "
            "(v-127)/128 RGB, score >= 0.6, NMS IoU 0.4, largest box. Landmarks: box crop resized to 64x64 "
            "(INTER_LINEAR), grey BT.601 in float, /256. Five points: mean 36-41, mean 42-47, 30, 48, 54. "
            "Alignment: %s similarity onto the 112x112 template, cv2.warpAffine INTER_LINEAR, border 0. "
            "Embedding L2-normalised, cosine. Per pair: kind, cosine; for file_a (a): image size, number of faces "
            "kept, box, score, five points (image pixels) and the 2x3 similarity matrix (image -> 112x112); for "
            "file_b (b): size, number of faces, box, score. largest_is_most_central = false: the largest box is not "
            "the detection nearest the image centre; on LFW that is a bystander or a false detection, and such pairs "
            "are among the lowest genuine cosines (a selection effect, not an embedding one). "
            "onnxruntime %s, opencv-python-headless %s, numpy %s, Python %s. Metrics on the whole file: "
            "ROC AUC %.4f, best accuracy %.2f %%, TAR %.2f %% at FAR 1e-3."
            % (args.reference_count, len(pairs), len(scored), round(0.4 * args.reference_count), cmd,
               "least-squares (Umeyama, no reflection)" if args.align == "lsq" else "cv2.estimateAffinePartial2D",
               ort.__version__, pkg_version("opencv-python-headless", cv2.__version__), np.__version__,
               sys.version.split()[0],
               mt["auc"], 100 * mt["best_acc"]["acc"], 100 * mt["tar"][1]["tar"])
        )
        write_reference(args.reference_json, scored, cache, args.reference_count, about)
    return 0


if __name__ == "__main__":
    sys.exit(main())
