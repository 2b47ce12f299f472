#!/usr/bin/env python3
"""Compare the two passive-liveness candidates on the same samples (ISO/IEC 30107-3 terms).

Candidates
  * fr_liveness: `model/fr_liveness.onnx` of the npm package
    `faceplugin-face-recognition-js@0.0.1` (MIT), not shipped, passed with --fr-liveness:
        cd /tmp && npm pack faceplugin-face-recognition-js@0.0.1 \
                && tar xzf faceplugin-face-recognition-js-0.0.1.tgz
        # -> /tmp/package/model/fr_liveness.onnx (sha256 afa783b7...)
    Input [1,3,128,128], output 3 logits (no softmax in the graph). The package's
    `lib/fr_liveness.js` crops the detector box (not squared) scaled by 2.7 with the
    MiniFASNet crop rule, resizes it to 128x128 (cv.resize, bilinear), feeds the planes
    in the order cv.imread gives them in the browser (R, G, B), raw 0-255, applies a
    softmax and returns p(class 0) without saying what class 0 means.
    `../shared/README.md` reports that BGR order and a square box work better, and that
    class 1 behaves as "spoof". The script scores all 2 x 2 x 3 variants
    (channel order rgb/bgr, box raw/square, read-out p0 / 1-p1 / p1) and reports
    their ROC AUC; the headline figures use --fr-variant (default bgr,square,1-p1:
    the best of them on these very samples, so they are optimistic for fr_liveness).
  * MiniFASNet (shipped): `models/minifasnet_v2_2.7.onnx` and
    `models/minifasnet_v1se_4.0.onnx`, input [N,3,80,80] BGR raw 0-255, output softmax
    of 3, class 1 = live. Crop = face box scaled by 2.7 (resp. 4.0) around its centre,
    the scale shrunk so the crop fits the image (min(scale, (h-1)/bh, (w-1)/bw)),
    shifted to stay inside, resized to 80x80. Live score = mean of the two p(class 1)
    (what crates/faceauth-core/src/vision/models.rs `FaceAnalyzer::liveness` computes).

Face box (shared by both candidates, so they see exactly the same faces): the project's
detector `models/fr_detect.onnx` on the whole image letterboxed into 320x240 (aspect
kept, top-left, padding 127, RGB, (px-127)/128), the anchor with the highest face score
(scores[:, 1]); boxes are corners relative to 320x240, mapped back to the image. Below
the host's detection threshold 0.6 the frame counts as "no face" and is not scored.
(The host's finer tiled pyramid levels only matter for faces much smaller than these.)
Resizing (letterbox and crops) uses cv2.INTER_AREA, the closest OpenCV filter to the
host's antialiased `FilterType::Triangle`; --resize linear gives the plain bilinear
cv2.resize of the original Python/JS code.

Samples (read in place, never copied)
  * target/presentation-attacks/labels.csv (make_presentation_attacks.py): each source
    photo as bona fide + simulated print + simulated screen recapture, reported as two
    groups: `sim-deepface` (source under faces/deepface) and `sim-selfies` (phone
    selfies, faces/selfies).
  * SHARED/liveness/labels.csv, group `real-shared`: the Silent-Face still photos (live,
    printed photo, screen photo) and the four webcam videos (2 live, 2 phone-screen
    replays). Videos: `ffmpeg -i V -vf fps=2 -frames:v 6` into a temporary directory
    (ffmpeg applies rotation metadata), every frame scored, per-video score = median
    over the frames with a face. The `apfolcrop__*` face crops are skipped (tight crops
    without the context both candidates' 2.7x/4.0x crops need).

Metrics per candidate and group (bona fide = positive class, live score >= t accepted)
  * n bona fide / n attack actually scored (samples without a face are counted apart);
  * ROC AUC (Mann-Whitney, ties = 1/2), with a 95 % bootstrap interval resampling source
    photos (a bona fide photo and its two recaptures stay together; only for groups with
    >= 10 of each), and the paired interval of AUC(MiniFASNet) - AUC(fr_liveness);
  * APCER (attacks accepted, pooled over print and screen; per species in the JSON) and
    BPCER (bona fide refused) at the natural threshold 0.5, and at the threshold where
    BPCER = 5 % on that group: t = the (floor(0.05 n_bf) + 1)-th lowest bona fide score,
    so that at most 5 % of bona fide samples fall below it. That threshold is chosen on
    the very samples it is evaluated on (an oracle, optimistic for every candidate).

Output: a table on stdout and target/liveness-model-comparison.json (per-sample scores,
boxes and per-frame values included; no image is written anywhere but the temporary
video-frame directory, which is deleted).

Determinism: fixed file order, single-threaded ONNX Runtime sessions, fixed bootstrap
seed (--seed). --limit N keeps the first N source photos of each simulated group and
the first N samples of real-shared (a quick check, not a measurement).

Usage
  python3 scripts/eval/compare_liveness_models.py --fr-liveness /tmp/package/model/fr_liveness.onnx
  python3 scripts/eval/compare_liveness_models.py --fr-liveness ... --limit 3
Needs numpy, opencv-python-headless, onnxruntime and the ffmpeg binary.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

REPO_ROOT = Path(__file__).resolve().parents[2]

DET_W, DET_H = 320, 240
DET_THRESHOLD = 0.6  # host SCORE_THRESHOLD
FR_SIDE, FR_SCALE = 128, 2.7
FR_SHA256 = "afa783b7e902fdfcf323a7240cac2a1c580c25314ea4161129dc1b0d100dc32d"
MFN_SIDE = 80
MFN_MODELS = (("minifasnet_v2_2.7.onnx", 2.7), ("minifasnet_v1se_4.0.onnx", 4.0))
VIDEO_FPS, VIDEO_FRAMES = 2, 6
BPCER_TARGET = 0.05

FR_CHANNELS = ("bgr", "rgb")
FR_BOXES = ("square", "raw")
FR_READOUTS = ("1-p1", "p0", "p1")
DEFAULT_FR_VARIANT = "bgr,square,1-p1"

GROUPS = ("sim-deepface", "sim-selfies", "real-shared")
CAND_FR = "fr_liveness"
CAND_MFN = "minifasnet"
CANDIDATES = (CAND_FR, CAND_MFN)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


# ---------------------------------------------------------------- samples

def load_samples(pa_dir: Path, shared: Path, limit: int | None) -> tuple[list[dict], list[str]]:
    """Returns the samples and notes on what was skipped."""
    samples, notes = [], []
    pa_csv = pa_dir / "labels.csv"
    if pa_csv.is_file():
        with open(pa_csv, newline="") as f:
            rows = list(csv.DictReader(f))
        kept_sources: dict[str, list[str]] = {"sim-deepface": [], "sim-selfies": []}
        for r in rows:
            src = r["source"]
            if "deepface" in src:
                group = "sim-deepface"
            elif "selfies" in src:
                group = "sim-selfies"
            else:
                notes.append(f"skipped {r['file']}: source {src} is neither deepface nor selfies")
                continue
            ks = kept_sources[group]
            if src not in ks:
                if limit is not None and len(ks) >= limit:
                    continue
                ks.append(src)
            samples.append({
                "group": group, "file": r["file"], "path": pa_dir / r["file"], "kind": "image",
                "bona_fide": r["label"] == "bona_fide", "attack_type": r["attack_type"],
                "cluster": src,
            })
    else:
        notes.append(f"{pa_csv} missing: run scripts/eval/make_presentation_attacks.py first")

    sh_csv = shared / "liveness" / "labels.csv"
    if sh_csv.is_file():
        with open(sh_csv, newline="") as f:
            rows = list(csv.DictReader(f))
        crops = [r for r in rows if Path(r["file"]).name.startswith("apfolcrop__")]
        if crops:
            n_live = sum(r["label"] == "live" for r in crops)
            notes.append(f"skipped {len(crops)} apfolcrop__* tight face crops "
                         f"({n_live} live, {len(crops) - n_live} spoof): no context for 2.7x/4.0x crops")
        kept = [r for r in rows if not Path(r["file"]).name.startswith("apfolcrop__")]
        if limit is not None:
            kept = kept[:limit]
        for r in kept:
            p = shared / r["file"]
            is_video = p.suffix.lower() in (".mov", ".mp4", ".webm", ".3gp", ".mkv", ".avi")
            samples.append({
                "group": "real-shared", "file": r["file"], "path": p,
                "kind": "video" if is_video else "image",
                "bona_fide": r["label"] == "live", "attack_type": r["attack_type"],
                "cluster": r["file"],
            })
    else:
        notes.append(f"{sh_csv} missing: real-shared group empty")
    return samples, notes


def read_frames(sample: dict) -> list[np.ndarray]:
    """BGR uint8 frames of a sample (1 for a still, up to 6 at 2 fps for a video)."""
    if sample["kind"] == "image":
        img = cv2.imread(str(sample["path"]), cv2.IMREAD_COLOR)  # applies EXIF orientation
        return [] if img is None else [img]
    with tempfile.TemporaryDirectory(prefix="liveness-frames-") as tmp:
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(sample["path"]),
               "-vf", f"fps={VIDEO_FPS}", "-frames:v", str(VIDEO_FRAMES),
               str(Path(tmp) / "out%02d.png")]
        subprocess.run(cmd, check=True)
        frames = []
        for p in sorted(Path(tmp).glob("out*.png")):
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is not None:
                frames.append(img)
        return frames


# ---------------------------------------------------------------- models

class Models:
    def __init__(self, models_dir: Path, fr_path: Path, interp: int):
        self.interp = interp
        self.det = session(models_dir / "fr_detect.onnx")
        self.fr = session(fr_path)
        self.mfn = [(session(models_dir / name), scale) for name, scale in MFN_MODELS]

    def resize(self, img: np.ndarray, w: int, h: int) -> np.ndarray:
        return cv2.resize(img, (w, h), interpolation=self.interp)

    def detect(self, bgr: np.ndarray) -> tuple[list[float], float]:
        """Best face box (x1, y1, x2, y2 in image pixels) and its score."""
        h, w = bgr.shape[:2]
        s = min(DET_W / w, DET_H / h)
        lw, lh = max(1, min(DET_W, round(w * s))), max(1, min(DET_H, round(h * s)))
        canvas = np.full((DET_H, DET_W, 3), 127, np.uint8)
        canvas[:lh, :lw] = self.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), lw, lh)
        x = ((canvas.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
        scores, boxes = self.det.run(["scores", "boxes"], {"input": np.ascontiguousarray(x)})
        i = int(np.argmax(scores[0, :, 1]))
        b = boxes[0, i].astype(np.float64) * [DET_W, DET_H, DET_W, DET_H]
        sx, sy = w / lw, h / lh
        box = [float(np.clip(b[0] * sx, 0, w)), float(np.clip(b[1] * sy, 0, h)),
               float(np.clip(b[2] * sx, 0, w)), float(np.clip(b[3] * sy, 0, h))]
        return box, float(scores[0, i, 1])

    def crop(self, bgr: np.ndarray, box: list[float], scale: float, side: int, square: bool) -> np.ndarray:
        """The box scaled around its centre (shrunk to fit, shifted inside), side x side."""
        h, w = bgr.shape[:2]
        x1, y1, x2, y2 = box
        bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
        cx, cy = x1 + bw / 2, y1 + bh / 2
        if square:
            bw = bh = max(bw, bh)
        s = max(0.0, min(scale, (h - 1) / bh, (w - 1) / bw))
        nw, nh = bw * s, bh * s
        x0 = min(max(cx - nw / 2, 0.0), max(w - nw, 0.0))
        y0 = min(max(cy - nh / 2, 0.0), max(h - nh, 0.0))
        xi, yi = int(x0), int(y0)
        cw, ch = int(np.clip(int(nw), 1, w - xi)), int(np.clip(int(nh), 1, h - yi))
        return self.resize(bgr[yi:yi + ch, xi:xi + cw], side, side)

    def fr_probs(self, bgr: np.ndarray, box: list[float]) -> dict[str, list[float]]:
        """Softmax of fr_liveness for each channel order x box variant."""
        out = {}
        for box_kind in FR_BOXES:
            c = self.crop(bgr, box, FR_SCALE, FR_SIDE, square=box_kind == "square")
            for ch in FR_CHANNELS:
                px = c if ch == "bgr" else c[:, :, ::-1]
                x = np.ascontiguousarray(px.astype(np.float32).transpose(2, 0, 1)[None])
                logits = self.fr.run(None, {"input": x})[0][0]
                out[f"{ch},{box_kind}"] = [float(v) for v in softmax(logits)]
        return out

    def mfn_probs(self, bgr: np.ndarray, box: list[float]) -> list[list[float]]:
        """Softmax outputs of MiniFASNet V2 (2.7x) and V1SE (4.0x)."""
        out = []
        for sess, scale in self.mfn:
            c = self.crop(bgr, box, scale, MFN_SIDE, square=False)
            x = np.ascontiguousarray(c.astype(np.float32).transpose(2, 0, 1)[None])
            out.append([float(v) for v in sess.run(None, {"input": x})[0][0]])
        return out


def fr_readout(probs: list[float], readout: str) -> float:
    return {"1-p1": 1.0 - probs[1], "p0": probs[0], "p1": probs[1]}[readout]


def score_sample(models: Models, sample: dict) -> dict:
    frames_out = []
    for img in read_frames(sample):
        box, det = models.detect(img)
        rec = {"det_score": round(det, 4), "box": [round(v, 1) for v in box]}
        if det >= DET_THRESHOLD:
            rec["fr"] = models.fr_probs(img, box)
            rec["mfn"] = models.mfn_probs(img, box)
        frames_out.append(rec)
    return {"frames": frames_out}


def sample_scores(frames: list[dict], fr_variant: str) -> dict[str, float] | None:
    """Per-sample live scores (median over the frames with a face) of every score kind."""
    faced = [f for f in frames if "mfn" in f]
    if not faced:
        return None
    ch, box, readout = fr_variant.split(",")
    kinds = {
        CAND_FR: [fr_readout(f["fr"][f"{ch},{box}"], readout) for f in faced],
        CAND_MFN: [(f["mfn"][0][1] + f["mfn"][1][1]) / 2 for f in faced],
        "minifasnet_v2_2.7": [f["mfn"][0][1] for f in faced],
        "minifasnet_v1se_4.0": [f["mfn"][1][1] for f in faced],
    }
    for c in FR_CHANNELS:
        for b in FR_BOXES:
            for r in FR_READOUTS:
                kinds[f"fr:{c},{b},{r}"] = [fr_readout(f["fr"][f"{c},{b}"], r) for f in faced]
    return {k: float(np.median(v)) for k, v in kinds.items()}


# ---------------------------------------------------------------- metrics

def auc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    if len(pos) == 0 or len(neg) == 0:
        return None
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv))
    sv = allv[order]
    i = 0
    while i < len(sv):  # average ranks over ties
        j = i
        while j + 1 < len(sv) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    rpos = ranks[:len(pos)].sum()
    return float((rpos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def rates(bf: np.ndarray, att: np.ndarray, t: float) -> dict:
    return {
        "threshold": t,
        "apcer": float(np.mean(att >= t)) if len(att) else None,
        "attacks_accepted": int(np.sum(att >= t)),
        "bpcer": float(np.mean(bf < t)) if len(bf) else None,
        "bona_fide_refused": int(np.sum(bf < t)),
    }


def bpcer_threshold(bf: np.ndarray) -> float | None:
    if len(bf) == 0:
        return None
    m = int(np.floor(BPCER_TARGET * len(bf)))
    return float(np.sort(bf)[m])


def bootstrap_auc(rows: list[dict], kinds: list[str], n_boot: int, seed: int) -> dict:
    """95 % intervals of each kind's AUC and of AUC(minifasnet) - AUC(fr_liveness),
    resampling clusters (source photos) with replacement."""
    clusters = sorted({r["cluster"] for r in rows})
    idx = {c: [i for i, r in enumerate(rows) if r["cluster"] == c] for c in clusters}
    lab = np.array([r["bona_fide"] for r in rows])
    sc = {k: np.array([r["scores"][k] for r in rows]) for k in kinds}
    rng = np.random.Generator(np.random.PCG64(seed))
    draws = {k: [] for k in kinds}
    diffs = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(clusters), len(clusters))
        ii = np.concatenate([idx[clusters[p]] for p in pick])
        l = lab[ii]
        if l.all() or not l.any():
            continue
        a = {k: auc(sc[k][ii][l], sc[k][ii][~l]) for k in kinds}
        for k in kinds:
            draws[k].append(a[k])
        diffs.append(a[CAND_MFN] - a[CAND_FR])
    ci = lambda v: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v else None
    return {"auc_ci95": {k: ci(draws[k]) for k in kinds},
            "auc_diff_minifasnet_minus_fr_ci95": ci(diffs), "resamples": len(diffs)}


def evaluate(rows: list[dict], n_boot: int, seed: int) -> dict:
    scored = [r for r in rows if r["scores"] is not None]
    res = {
        "n_samples": len(rows),
        "no_face": {"bona_fide": sum(r["bona_fide"] for r in rows if r["scores"] is None),
                    "attack": sum(not r["bona_fide"] for r in rows if r["scores"] is None)},
        "n_bona_fide": sum(r["bona_fide"] for r in scored),
        "n_attack": sum(not r["bona_fide"] for r in scored),
        "candidates": {}, "fr_variants_auc": {}, "single_models_auc": {},
    }
    if not scored:
        return res
    lab = np.array([r["bona_fide"] for r in scored])
    types = np.array([r["attack_type"] for r in scored])
    kinds = list(scored[0]["scores"].keys())
    for k in kinds:
        s = np.array([r["scores"][k] for r in scored])
        bf, att = s[lab], s[~lab]
        a = auc(bf, att)
        if k in CANDIDATES:
            t5 = bpcer_threshold(bf)
            per_species = {}
            for at in sorted(set(types[~lab])):
                sa = s[(~lab) & (types == at)]
                per_species[at] = {"n": int(len(sa)), "apcer_at_0.5": float(np.mean(sa >= 0.5)),
                                   "apcer_at_bpcer5": float(np.mean(sa >= t5)) if t5 is not None else None}
            res["candidates"][k] = {
                "auc": a,
                "at_0.5": rates(bf, att, 0.5),
                "at_bpcer5": rates(bf, att, t5) if t5 is not None else None,
                "apcer_per_species": per_species,
                "bona_fide_scores": {"min": float(bf.min()) if len(bf) else None,
                                     "median": float(np.median(bf)) if len(bf) else None},
                "attack_scores": {"median": float(np.median(att)) if len(att) else None,
                                  "max": float(att.max()) if len(att) else None},
            }
        elif k.startswith("fr:"):
            res["fr_variants_auc"][k[3:]] = a
        else:
            res["single_models_auc"][k] = a
    if res["n_bona_fide"] >= 10 and res["n_attack"] >= 10 and n_boot > 0:
        b = bootstrap_auc(scored, [CAND_FR, CAND_MFN], n_boot, seed)
        for k in CANDIDATES:
            res["candidates"][k]["auc_ci95"] = b["auc_ci95"][k]
        res["auc_diff_minifasnet_minus_fr"] = res["candidates"][CAND_MFN]["auc"] - res["candidates"][CAND_FR]["auc"]
        res["auc_diff_ci95"] = b["auc_diff_minifasnet_minus_fr_ci95"]
        res["bootstrap_resamples"] = b["resamples"]
    return res


# ---------------------------------------------------------------- report

def pct(v: float | None) -> str:
    return "  n/a" if v is None else f"{100 * v:5.1f}"


def fmt_auc(v: float | None) -> str:
    return f"{'n/a':>14}" if v is None else f"{v:>14.3f}"


def print_report(results: dict, fr_variant: str) -> None:
    print()
    print(f"Live score: fr_liveness = {fr_variant} (channels, box, read-out; median over video frames); "
          f"minifasnet = mean p(live) of V2@2.7 and V1SE@4.0. Bona fide = positive; accepted if score >= t.")
    hdr = (f"{'group':<13} {'candidate':<12} {'n bf':>5} {'n att':>5}  {'ROC AUC [95% CI]':<22}"
           f" {'APCER@0.5':>9} {'BPCER@0.5':>9}  {'t(BPCER5)':>9} {'APCER':>6} {'BPCER':>6}")
    print(hdr)
    print("-" * len(hdr))
    for g in GROUPS:
        r = results.get(g)
        if not r or not r["candidates"]:
            continue
        for k in CANDIDATES:
            c = r["candidates"][k]
            ci = c.get("auc_ci95")
            a = f"{c['auc']:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") if c["auc"] is not None else "n/a"
            t5 = c["at_bpcer5"] or {"threshold": None, "apcer": None, "bpcer": None}
            t5s = "n/a" if t5["threshold"] is None else f"{t5['threshold']:.4f}"
            print(f"{g:<13} {k:<12} {r['n_bona_fide']:>5} {r['n_attack']:>5}  {a:<22}"
                  f" {pct(c['at_0.5']['apcer']):>9} {pct(c['at_0.5']['bpcer']):>9}"
                  f"  {t5s:>9} {pct(t5['apcer']):>6} {pct(t5['bpcer']):>6}")
        nf = r["no_face"]
        extra = []
        if nf["bona_fide"] or nf["attack"]:
            extra.append(f"no face: {nf['bona_fide']} bona fide, {nf['attack']} attacks (not scored)")
        if "auc_diff_ci95" in r:
            d, ci = r["auc_diff_minifasnet_minus_fr"], r["auc_diff_ci95"]
            extra.append(f"AUC minifasnet - fr_liveness = {d:+.3f} [{ci[0]:+.2f}, {ci[1]:+.2f}]")
        if extra:
            print(f"{'':<13} " + "; ".join(extra))
    print("Rates in %. t(BPCER5): threshold chosen on the group itself so that BPCER <= 5 % (oracle).")
    print()
    print("APCER per species at 0.5 / at t(BPCER5):")
    for g in GROUPS:
        r = results.get(g)
        if not r or not r["candidates"]:
            continue
        parts = []
        for k in CANDIDATES:
            sp = r["candidates"][k]["apcer_per_species"]
            parts.append(k + " " + ", ".join(f"{at} (n={v['n']}) {pct(v['apcer_at_0.5']).strip()}/"
                                             f"{pct(v['apcer_at_bpcer5']).strip()}" for at, v in sp.items()))
        print(f"  {g:<13} " + " | ".join(parts))
    print()
    print("fr_liveness pre-processing variants, ROC AUC (channels,box,read-out):")
    variants = [f"{c},{b},{r}" for c in FR_CHANNELS for b in FR_BOXES for r in FR_READOUTS]
    shown = [g for g in GROUPS if results.get(g) and results[g]["fr_variants_auc"]]
    print(f"  {'variant':<18}" + "".join(f"{g:>14}" for g in shown))
    for v in variants:
        mark = " *" if v == fr_variant else ""
        print(f"  {v + mark:<18}" + "".join(fmt_auc(results[g]["fr_variants_auc"][v]) for g in shown))
    print("  single MiniFASNet models:")
    for m in ("minifasnet_v2_2.7", "minifasnet_v1se_4.0"):
        print(f"  {m:<18}" + "".join(fmt_auc(results[g]["single_models_auc"][m]) for g in shown))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fr-liveness", type=Path, required=True,
                    help="path to fr_liveness.onnx from npm faceplugin-face-recognition-js@0.0.1")
    ap.add_argument("--fr-variant", default=DEFAULT_FR_VARIANT,
                    help=f"channels,box,read-out of the headline fr_liveness score (default {DEFAULT_FR_VARIANT})")
    ap.add_argument("--models", type=Path, default=REPO_ROOT / "models", help="project models dir")
    ap.add_argument("--pa", type=Path, default=REPO_ROOT / "target" / "presentation-attacks",
                    help="simulated presentation attacks (default target/presentation-attacks)")
    ap.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared",
                    help="shared data dir (default ../shared)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "target" / "liveness-model-comparison.json")
    ap.add_argument("--resize", choices=("area", "linear"), default="area",
                    help="OpenCV filter for the letterbox and the crops (default area)")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (0 = none)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    ap.add_argument("--limit", type=int, default=None, help="quick mode: first N sources per group")
    args = ap.parse_args()

    ch, box, readout = (args.fr_variant.split(",") + ["", "", ""])[:3]
    if ch not in FR_CHANNELS or box not in FR_BOXES or readout not in FR_READOUTS:
        ap.error(f"--fr-variant must be one of {FR_CHANNELS} x {FR_BOXES} x {FR_READOUTS}")
    if not args.fr_liveness.is_file():
        ap.error(f"{args.fr_liveness} not found (see the docstring: npm pack ...)")
    fr_sha = sha256(args.fr_liveness)
    if fr_sha != FR_SHA256:
        print(f"warning: {args.fr_liveness} sha256 {fr_sha} is not the 0.0.1 package's {FR_SHA256}",
              file=sys.stderr)

    t0 = time.time()
    cv2.setNumThreads(1)
    interp = cv2.INTER_AREA if args.resize == "area" else cv2.INTER_LINEAR
    models = Models(args.models, args.fr_liveness, interp)
    samples, notes = load_samples(args.pa, args.shared, args.limit)
    for n in notes:
        print("note:", n)
    print(f"{len(samples)} samples: " + ", ".join(
        f"{g} {sum(s['group'] == g for s in samples)}" for g in GROUPS))

    rows = []
    for i, s in enumerate(samples, 1):
        out = score_sample(models, s)
        rows.append({
            "group": s["group"], "file": s["file"], "kind": s["kind"], "bona_fide": s["bona_fide"],
            "attack_type": s["attack_type"], "cluster": s["cluster"], "frames": out["frames"],
            "scores": sample_scores(out["frames"], args.fr_variant),
        })
        if i % 25 == 0 or i == len(samples):
            print(f"  scored {i}/{len(samples)} ({time.time() - t0:.0f} s)", file=sys.stderr)

    results = {g: evaluate([r for r in rows if r["group"] == g], args.bootstrap, args.seed)
               for g in GROUPS if any(r["group"] == g for r in rows)}
    print_report(results, args.fr_variant)

    # Samples in the real-shared group, one by one (too few for rates to mean much).
    real = [r for r in rows if r["group"] == "real-shared"]
    if real:
        print("\nreal-shared per sample (live score fr_liveness / minifasnet; per-frame ranges for videos):")
        for r in real:
            lab = "bona fide" if r["bona_fide"] else f"attack ({r['attack_type']})"
            if r["scores"] is None:
                print(f"  {r['file']:<45} {lab:<38} no face")
                continue
            faced = [f for f in r["frames"] if "mfn" in f]
            rng = ""
            if r["kind"] == "video":
                fr = [fr_readout(f["fr"][",".join(args.fr_variant.split(",")[:2])], readout) for f in faced]
                mf = [(f["mfn"][0][1] + f["mfn"][1][1]) / 2 for f in faced]
                rng = (f"  frames {len(faced)}/{len(r['frames'])}: fr {min(fr):.2f}-{max(fr):.2f},"
                       f" mfn {min(mf):.2f}-{max(mf):.2f}")
            print(f"  {r['file']:<45} {lab:<38} {r['scores'][CAND_FR]:.3f} / {r['scores'][CAND_MFN]:.3f}{rng}")

    elapsed = time.time() - t0
    report = {
        "script": "scripts/eval/compare_liveness_models.py",
        "args": {k: str(v) for k, v in vars(args).items()},
        "models": {
            "fr_liveness": {"path": str(args.fr_liveness), "sha256": fr_sha, "variant": args.fr_variant},
            **{name: {"sha256": sha256(args.models / name), "crop_scale": sc} for name, sc in MFN_MODELS},
            "fr_detect.onnx": {"sha256": sha256(args.models / "fr_detect.onnx")},
        },
        "versions": {"numpy": np.__version__, "opencv": cv2.__version__, "onnxruntime": ort.__version__},
        "notes": notes,
        "results": results,
        "samples": [{k: v for k, v in r.items() if k != "cluster"} for r in rows],
        "runtime_s": round(elapsed, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
