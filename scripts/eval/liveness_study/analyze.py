#!/usr/bin/env python3
"""Stage 2: BPCER / APCER of every liveness variant, from extract.py's per-frame scores.

A variant = crop (box shape x scale factor x resize filter, per model) + fusion of the two
models + aggregation over the frames of a video + per-frame quality filter + threshold.
Accepted as live when score >= t. For each variant:
  * BPCER / APCER at the host's 0.5 (the fused probability's natural boundary);
  * t10 = the lowest threshold with APCER <= 10 % on the pooled attacks (at most
    floor(0.10 n_attack) attacks accepted), and BPCER there; ROC AUC.
Counts are always given (k/n). Presentations without a face in any frame are "no face"
(another rejection in the host), excluded from both rates and counted apart.

Sets (groups of extract.py)
  bona fide  MAIN = bf_selfie (34 phone selfies) + bf_deepface (62) + bf_selfie_video
             (the 8 clips <= 30 s) + bf_silentface (1): the host README's 105.
             Reported apart: the 2 webcam videos with large head turns (the standard
             policy refuses them FACE_NOT_FRONTAL before liveness), the 32 s video (the
             host refuses it VIDEO_TOO_LONG), the re-encoded copies of the photos
             (make_presentation_attacks bona_fide/), the 214 apfolcrop live crops.
  attacks    MAIN = simulated print + screen recaptures of the selfies and deepface photos
             (192), their 40 held-to-camera clips, the Silent-Face print and screen photo
             and the 2 phone-replay videos (4 real attacks). Apart: 617 apfolcrop replay crops.

Honesty: choosing among many variants on ~100 bona fide / ~230 attacks flatters the
winner. `--cv` runs a 5-fold cross-validation grouped by person / source photo (a
selfie, its recaptures and clips, and that person's videos stay in one fold): the
variant and its t10 are chosen on 4 folds and applied to the fifth; the held-out counts
are summed. That estimates what the *selection procedure* delivers on unseen people.

Usage: python3 scripts/eval/liveness_study/analyze.py [--frames /tmp/liveness_study/frames.pkl]
       [--out /tmp/liveness_study/report.md] [--cv]
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import pickle
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

HOST = ("raw", 1.0, "tri")
APCER_MAX = 0.10
BF_MAIN = ("bf_selfie", "bf_deepface", "bf_selfie_video", "bf_silentface")
ATT_MAIN = ("att_sim_print_selfie", "att_sim_screen_selfie", "att_sim_print_deepface", "att_sim_screen_deepface",
            "att_sim_clip_print", "att_sim_clip_screen", "att_real_print", "att_real_screen",
            "att_real_replay_video")
EPS = 1e-6


def cname(c) -> str:
    return f"{c[0]}/x{c[1]:.1f}/{c[2]}"


# ------------------------------------------------------------------ fusion / aggregation

def logit(p):
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


FUSIONS = {
    # per frame: (v2 softmax [n,3], v1se softmax [n,3]) -> live score in [0, 1]
    "mean": lambda a, b: (a[:, 1] + b[:, 1]) / 2,            # the host today
    "v2": lambda a, b: a[:, 1],
    "v1se": lambda a, b: b[:, 1],
    "geo": lambda a, b: np.sqrt(a[:, 1] * b[:, 1]),
    "logit_mean": lambda a, b: sigmoid((logit(a[:, 1]) + logit(b[:, 1])) / 2),
    "min": lambda a, b: np.minimum(a[:, 1], b[:, 1]),
    # Silent-Face's own rule: sum the softmax vectors, live iff class 1 is the argmax;
    # as a score: 0.5 + (mean p1 - max(mean p0, mean p2)) / 2 (0.5 = its boundary)
    "argmax": lambda a, b: 0.5 + ((a[:, 1] + b[:, 1]) / 2 - np.maximum((a[:, 0] + b[:, 0]) / 2,
                                                                       (a[:, 2] + b[:, 2]) / 2)) / 2,
}


def _trim(x, q=0.25):
    s = np.sort(x)
    k = int(math.floor(q * len(s)))
    return float(s[k:len(s) - k].mean()) if len(s) - 2 * k > 0 else float(s.mean())


AGGS = {
    "median_upper": lambda s: float(np.sort(s)[len(s) // 2]),  # the policy: live[len/2] of the sorted list
    "median": lambda s: float(np.median(s)),
    "mean": lambda s: float(np.mean(s)),
    "trim25": _trim,
    "logit_mean": lambda s: float(sigmoid(np.mean(logit(s)))),
    "share50": lambda s: float(np.mean(s >= 0.5)),
    "q25": lambda s: float(np.quantile(s, 0.25)),
    "max": lambda s: float(np.max(s)),
}


def quality_mask(fr: dict, kind: str) -> np.ndarray:
    yaw, pitch, sharp, size = fr["yaw"], fr["pitch"], fr["sharp"], fr["size"]
    n = len(yaw)
    if kind == "none" or n == 0:
        return np.ones(n, bool)
    rel_sharp = sharp >= 0.5 * np.median(sharp)
    if kind == "pose20":
        return (np.abs(yaw) <= 20) & (np.abs(pitch) <= 20)
    if kind == "pose30":
        return (np.abs(yaw) <= 30) & (np.abs(pitch) <= 30)
    if kind == "sharp":  # aligned-face sharpness at least half the clip's median
        return rel_sharp
    if kind == "size":  # face box at least 3/4 of the clip's median height
        return size >= 0.75 * np.median(size)
    if kind == "pose30_sharp":
        return (np.abs(yaw) <= 30) & (np.abs(pitch) <= 30) & rel_sharp
    raise ValueError(kind)


QUALITY = ("none", "pose20", "pose30", "sharp", "size", "pose30_sharp")


# ------------------------------------------------------------------ data

def load(path: Path):
    d = pickle.load(open(path, "rb"))
    out = []
    for p in d["presentations"]:
        configs = [tuple(c) for c in p.get("configs", d["meta"]["configs"])]
        faced = [f for f in p["frames"] if "probs" in f]
        rec = {k: p[k] for k in ("path", "group", "bona_fide", "cluster", "kind")}
        rec["too_long"] = p.get("too_long", False)
        rec["n_frames"] = len(p["frames"])
        rec["n_faced"] = len(faced)
        if faced:
            probs = np.stack([f["probs"] for f in faced])  # [n, C, 2, 3]
            rec["probs"] = {c: probs[:, i] for i, c in enumerate(configs)}
            rec["yaw"] = np.array([f["yaw"] for f in faced])
            rec["pitch"] = np.array([f["pitch"] for f in faced])
            rec["sharp"] = np.array([f["sharpness"] for f in faced])
            rec["size"] = np.array([f["box"][3] - f["box"][1] for f in faced])
            rec["boxes"] = [(f["box"], f["lm_extent"], f["eye_dist"], f["shape"]) for f in faced]
        out.append(rec)
    return out, d["meta"]


def score(rec, cfg2, cfg1, fusion="mean", agg="median_upper", quality="none"):
    """Presentation score, or None (no face)."""
    if not rec["n_faced"] or cfg2 not in rec["probs"] or cfg1 not in rec["probs"]:
        return None
    s = FUSIONS[fusion](rec["probs"][cfg2][:, 0], rec["probs"][cfg1][:, 1])
    m = quality_mask(rec, quality)
    if m.any():
        s = s[m]
    return AGGS[agg](s)


# ------------------------------------------------------------------ metrics

def auc(pos, neg):
    pos, neg = np.asarray(pos), np.asarray(neg)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv))
    sv = allv[order]
    i = 0
    while i < len(sv):
        j = i
        while j + 1 < len(sv) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def t_at_apcer(att, apcer_max=APCER_MAX):
    """Lowest threshold (accept >= t) with at most floor(apcer_max * n) attacks accepted:
    just above the (k+1)-th highest attack score."""
    a = np.sort(np.asarray(att))[::-1]
    k = int(math.floor(apcer_max * len(a) + 1e-9))
    if k >= len(a):
        return 0.0
    return float(np.nextafter(a[k], np.inf))


def rates(bf, att, t):
    bf, att = np.asarray(bf), np.asarray(att)
    return {"t": t, "bpcer_k": int((bf < t).sum()), "n_bf": len(bf),
            "apcer_k": int((att >= t).sum()), "n_att": len(att)}


def fmt_rate(k, n):
    return f"{k}/{n} = {100 * k / n:.1f} %" if n else "n/a"


def wilson(k, n, z=1.96):
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


class Evaluator:
    def __init__(self, recs):
        self.recs = recs
        self.bf = [r for r in recs if r["group"] in BF_MAIN and not r["too_long"]]
        self.att = [r for r in recs if r["group"] in ATT_MAIN]

    def scores(self, recs, variant):
        out, noface = [], 0
        for r in recs:
            s = score(r, *variant)
            if s is None:
                noface += 1
            else:
                out.append(s)
        return np.array(out), noface

    def evaluate(self, variant, bf=None, att=None, t_fixed=None):
        bf = self.bf if bf is None else bf
        att = self.att if att is None else att
        sb, nb = self.scores(bf, variant)
        sa, na = self.scores(att, variant)
        t10 = t_at_apcer(sa)
        res = {"variant": variant, "auc": auc(sb, sa), "noface_bf": nb, "noface_att": na,
               "at_0.5": rates(sb, sa, 0.5), "at_t10": rates(sb, sa, t10)}
        if t_fixed is not None:
            res["at_fixed"] = rates(sb, sa, t_fixed)
        return res


def vname(v):
    c2, c1, fusion, agg, q = v
    crop = cname(c2) if c2 == c1 else f"V2 {cname(c2)} + V1SE {cname(c1)}"
    return f"{crop} ; {fusion} ; {agg} ; {q}"


def row(res, extra=""):
    a, b = res["at_0.5"], res["at_t10"]
    return (f"| {vname(res['variant'])} | {res['auc']:.3f} | {fmt_rate(a['bpcer_k'], a['n_bf'])} | "
            f"{fmt_rate(a['apcer_k'], a['n_att'])} | {b['t']:.3f} | {fmt_rate(b['bpcer_k'], b['n_bf'])} | "
            f"{fmt_rate(b['apcer_k'], b['n_att'])} |{extra}")


HDR = ("| variant (crop / fusion / aggregation / quality filter) | AUC | BPCER @0.5 | APCER @0.5 | t10 | "
       "BPCER @t10 | APCER @t10 |\n|---|---|---|---|---|---|---|")


def sort_key(res):
    b = res["at_t10"]
    return (b["bpcer_k"] / max(b["n_bf"], 1), -res["auc"])


# ------------------------------------------------------------------ report sections

def section_geometry(recs, L):
    """Our box vs the 68 landmarks: how big / what shape the detector box is."""
    rows = []
    for r in recs:
        if r["group"] in ("bf_selfie", "bf_deepface", "bf_silentface") and r["n_faced"]:
            box, ext, eye, shape = r["boxes"][0]
            bw, bh = box[2] - box[0], box[3] - box[1]
            lw, lh = ext[2] - ext[0], ext[3] - ext[1]
            clamp27 = min(2.7, (shape[0] - 1) / bh, (shape[1] - 1) / bw) < 2.7
            clamp40 = min(4.0, (shape[0] - 1) / bh, (shape[1] - 1) / bw) < 4.0
            rows.append((bh / bw, bw / lw, bh / lh, bw / max(eye, 1), clamp27, clamp40))
    a = np.array(rows, dtype=float)
    if not len(a):
        return
    L.append("\n## Detector box geometry (bona fide photos, n = %d)\n" % len(a))
    q = lambda v: f"{np.median(v):.2f} [{np.quantile(v, 0.1):.2f}, {np.quantile(v, 0.9):.2f}]"
    L.append(f"- box height / width: {q(a[:, 0])} (median [p10, p90])")
    L.append(f"- box width / landmark (jaw) width: {q(a[:, 1])}; box height / landmark height "
             f"(brow to chin): {q(a[:, 2])}; box width / inter-ocular distance: {q(a[:, 3])}")
    L.append(f"- crop scale clamped by the picture: V2 (2.7) {int(a[:, 4].sum())}/{len(a)}, "
             f"V1SE (4.0) {int(a[:, 5].sum())}/{len(a)}")


def per_group_table(ev, variants, groups, L, t_of=None):
    L.append("| variant | " + " | ".join(groups) + " |")
    L.append("|---" * (len(groups) + 1) + "|")
    for v, t, label in variants:
        cells = []
        for g in groups:
            recs = [r for r in ev.recs if r["group"] == g and not r["too_long"]]
            s, nf = ev.scores(recs, v)
            if not len(s):
                cells.append("-")
                continue
            bfg = g.startswith("bf_")
            k = int((s < t).sum()) if bfg else int((s >= t).sum())
            cells.append(f"{'refused' if bfg else 'accepted'} {k}/{len(s)}" + (f" (+{nf} no face)" if nf else ""))
        L.append(f"| {label} (t={t:.3f}) | " + " | ".join(cells) + " |")


def cv_select(ev, candidates, n_folds=5, seed=0):
    """Grouped K-fold: choose the variant (min BPCER@t10 on train, then max AUC) and its t10 on
    the training folds, count the held-out errors."""
    clusters = sorted({r["cluster"] for r in ev.bf + ev.att})
    fold = {c: int(hashlib.sha256(f"{seed}:{c}".encode()).hexdigest(), 16) % n_folds for c in clusters}
    tot = {"bpcer_k": 0, "n_bf": 0, "apcer_k": 0, "n_att": 0}
    picks = []
    for k in range(n_folds):
        tr_b = [r for r in ev.bf if fold[r["cluster"]] != k]
        tr_a = [r for r in ev.att if fold[r["cluster"]] != k]
        te_b = [r for r in ev.bf if fold[r["cluster"]] == k]
        te_a = [r for r in ev.att if fold[r["cluster"]] == k]
        best = min((ev.evaluate(v, tr_b, tr_a) for v in candidates), key=sort_key)
        t = best["at_t10"]["t"]
        sb, _ = ev.scores(te_b, best["variant"])
        sa, _ = ev.scores(te_a, best["variant"])
        tot["bpcer_k"] += int((sb < t).sum())
        tot["n_bf"] += len(sb)
        tot["apcer_k"] += int((sa >= t).sum())
        tot["n_att"] += len(sa)
        picks.append((vname(best["variant"]), t))
    return tot, picks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=Path, default=Path("/tmp/liveness_study/frames.pkl"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/liveness_study/report.md"))
    ap.add_argument("--cv", action="store_true", help="grouped 5-fold cross-validation of the selection")
    args = ap.parse_args()
    recs, meta = load(args.frames)
    configs = [tuple(c) for c in meta["configs"]]
    ev = Evaluator(recs)
    L = ["# Passive liveness study (MiniFASNet V2 2.7 + V1SE 4.0)\n",
         f"Bona fide MAIN: {len(ev.bf)} presentations ({', '.join(BF_MAIN)}; videos <= 30 s). "
         f"Attacks MAIN: {len(ev.att)} ({', '.join(ATT_MAIN)}). Accept when score >= t. "
         f"t10 = lowest threshold with APCER <= 10 % on MAIN attacks (chosen on them: optimistic).\n"]
    host = (HOST, HOST, "mean", "median_upper", "none")
    base = ev.evaluate(host)
    L.append(f"No face: {base['noface_bf']} bona fide, {base['noface_att']} attacks (excluded from the rates).\n")
    L.append("## The host today\n")
    L.append(HDR)
    L.append(row(base))
    section_geometry(recs, L)

    # 1. crop: one crop for both models (fusion mean, host aggregation)
    L.append("\n## 1. Crop (same box shape / factor / filter for both models; fusion mean, median)\n")
    L.append(HDR)
    res_crop = [ev.evaluate((c, c, "mean", "median_upper", "none")) for c in configs]
    for r in sorted(res_crop, key=sort_key):
        L.append(row(r))

    # 1b. per model: each model alone, all crops (AUC and BPCER@t10 of that model alone)
    L.append("\n## 1b. Each model alone, per crop (AUC; BPCER @t10)\n")
    L.append("| crop | V2 AUC | V2 BPCER@t10 (t) | V1SE AUC | V1SE BPCER@t10 (t) |\n|---|---|---|---|---|")
    single = {}
    for c in configs:
        r2 = ev.evaluate((c, c, "v2", "median_upper", "none"))
        r1 = ev.evaluate((c, c, "v1se", "median_upper", "none"))
        single[c] = (r2, r1)
        L.append(f"| {cname(c)} | {r2['auc']:.3f} | {fmt_rate(r2['at_t10']['bpcer_k'], r2['at_t10']['n_bf'])} "
                 f"({r2['at_t10']['t']:.3f}) | {r1['auc']:.3f} | "
                 f"{fmt_rate(r1['at_t10']['bpcer_k'], r1['at_t10']['n_bf'])} ({r1['at_t10']['t']:.3f}) |")

    # 2. fusion x crop (top crops)
    top_crops = [r["variant"][0] for r in sorted(res_crop, key=sort_key)[:6]]
    for c in (HOST, ("raw", 1.0, "linear")):
        if c not in top_crops and c in configs:
            top_crops.append(c)
    L.append("\n## 2. Fusion (best crops of section 1 + the host's + plain bilinear; median)\n")
    L.append(HDR)
    res_fus = [ev.evaluate((c, c, f, "median_upper", "none")) for c in top_crops for f in FUSIONS]
    for r in sorted(res_fus, key=sort_key)[:25]:
        L.append(row(r))

    # 2b. mixed crops: the best crop of each model
    best2 = sorted(configs, key=lambda c: sort_key(single[c][0]))[:3]
    best1 = sorted(configs, key=lambda c: sort_key(single[c][1]))[:3]
    L.append("\n## 2b. A different crop per model (3 best of each alone), fusions mean / geo / logit_mean\n")
    L.append(HDR)
    res_mix = [ev.evaluate((c2, c1, f, "median_upper", "none")) for c2 in best2 for c1 in best1
               for f in ("mean", "geo", "logit_mean")]
    for r in sorted(res_mix, key=sort_key)[:12]:
        L.append(row(r))

    # 3. aggregation x quality over frames (videos only differ)
    cand = sorted(res_fus + res_mix, key=sort_key)[:4]
    L.append("\n## 3. Aggregation over video frames x per-frame quality filter\n")
    L.append("Only the videos change (8 bona fide selfie clips, 40 simulated clips, 2 real replays). "
             "Per-video scores for a few variants follow the table.\n")
    L.append(HDR)
    res_agg = []
    for r0 in [base] + cand:
        c2, c1, f, _, _ = r0["variant"]
        for a in AGGS:
            for q in QUALITY:
                res_agg.append(ev.evaluate((c2, c1, f, a, q)))
    for r in sorted(res_agg, key=sort_key)[:25]:
        L.append(row(r))
    vids = [r for r in recs if r["kind"] == "video"]
    L.append("\nPer video: frames with a face / decoded; fused frame scores min / median / max and the "
             "share >= 0.5, host crop vs best crop; |yaw| median.\n")
    L.append("| video | group | frames | host crop: min / med / max (share) | best crop | |yaw| med |\n|---|---|---|---|---|---|")
    bc = cand[0]["variant"]
    for r in vids:
        if not r["n_faced"]:
            L.append(f"| {Path(r['path']).name[:42]} | {r['group']} | 0/{r['n_frames']} | - | - | - |")
            continue
        cells = []
        for (c2, c1, f) in ((HOST, HOST, "mean"), bc[:3]):
            s = FUSIONS[f](r["probs"][c2][:, 0], r["probs"][c1][:, 1])
            cells.append(f"{s.min():.2f} / {np.median(s):.2f} / {s.max():.2f} ({np.mean(s >= 0.5):.2f})")
        L.append(f"| {Path(r['path']).name[:42]}{' (32 s)' if r['too_long'] else ''} | {r['group']} | "
                 f"{r['n_faced']}/{r['n_frames']} | {cells[0]} | {cells[1]} | {np.median(np.abs(r['yaw'])):.0f} |")

    # 4. curve of the best and of the host
    best = sorted(res_agg + res_fus + res_mix, key=sort_key)[0]
    L.append("\n## 4. BPCER / APCER against the threshold\n")
    for label, r0 in (("host", base), ("best", best)):
        v = r0["variant"]
        sb, _ = ev.scores(ev.bf, v)
        sa, _ = ev.scores(ev.att, v)
        L.append(f"\n{label}: {vname(v)}\n")
        L.append("| t | BPCER | APCER |\n|---|---|---|")
        for t in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9):
            L.append(f"| {t:.2f} | {fmt_rate(int((sb < t).sum()), len(sb))} | {fmt_rate(int((sa >= t).sum()), len(sa))} |")

    # per-group breakdown of host vs the best few
    L.append("\n## Per group (host vs the best variants, at their t10 and at 0.5)\n")
    groups = ["bf_selfie", "bf_deepface", "bf_selfie_video", "bf_silentface", "bf_webcam_video",
              "bf_reenc_selfie", "bf_reenc_deepface",
              "att_sim_print_selfie", "att_sim_screen_selfie", "att_sim_print_deepface", "att_sim_screen_deepface",
              "att_sim_clip_print", "att_sim_clip_screen", "att_real_print", "att_real_screen", "att_real_replay_video"]
    show = [(base["variant"], 0.5, "host @0.5"), (base["variant"], base["at_t10"]["t"], "host @t10")]
    for i, r in enumerate(sorted(res_agg + res_fus + res_mix, key=sort_key)[:3]):
        show.append((r["variant"], r["at_t10"]["t"], f"#{i + 1} {vname(r['variant'])}"))
    per_group_table(ev, show, groups, L)

    # apfolcrop (out of distribution)
    L.append("\n## apfolcrop tight face crops (reported apart; host tools skip them)\n")
    crop_cfgs = [c for c in (HOST, ("raw", 1.0, "linear"), ("sqmax", 1.0, "tri"), ("sqmax", 1.0, "linear"))]
    bfc = [r for r in recs if r["group"] == "bf_apfolcrop"]
    atc = [r for r in recs if r["group"] == "att_apfolcrop"]
    L.append("| crop (fusion mean) | AUC | no face bf / att | BPCER @0.5 | APCER @0.5 |\n|---|---|---|---|---|")
    for c in crop_cfgs:
        v = (c, c, "mean", "median_upper", "none")
        sb, nb = ev.scores(bfc, v)
        sa, na = ev.scores(atc, v)
        if len(sb) and len(sa):
            L.append(f"| {cname(c)} | {auc(sb, sa):.3f} | {nb} / {na} | {fmt_rate(int((sb < 0.5).sum()), len(sb))} | "
                     f"{fmt_rate(int((sa >= 0.5).sum()), len(sa))} |")

    # 5. named candidates at fixed (rounded) thresholds, with Wilson 95 % intervals
    LIN, LIN12 = ("raw", 1.0, "linear"), ("raw", 1.2, "linear")
    named = [
        ("host today", host, 0.5),
        ("host crop, threshold only", host, 0.45),
        ("INTER_LINEAR crop, mean, 0.5", (LIN, LIN, "mean", "median_upper", "none"), 0.5),
        ("INTER_LINEAR crop, mean, 0.40", (LIN, LIN, "mean", "median_upper", "none"), 0.40),
        ("INTER_LINEAR crop, geo, 0.30 (recommended)", (LIN, LIN, "geo", "median_upper", "none"), 0.30),
        ("INTER_LINEAR crop, geo, 0.35", (LIN, LIN, "geo", "median_upper", "none"), 0.35),
        ("INTER_LINEAR crop x1.2, V2 alone, 0.30", (LIN12, LIN12, "v2", "median_upper", "none"), 0.30),
        ("V2 sqmax x1.2 + V1SE x1.2, linear, logit_mean, 0.20", (("sqmax", 1.2, "linear"), LIN12, "logit_mean",
                                                                 "median_upper", "none"), 0.20),
    ]
    L.append("\n## 5. Candidates at fixed thresholds (MAIN sets; Wilson 95 % intervals)\n")
    L.append("| candidate | t | AUC | BPCER | APCER | BPCER selfies+videos only |\n|---|---|---|---|---|---|")
    selfie_like = [r for r in ev.bf if r["group"] in ("bf_selfie", "bf_selfie_video", "bf_silentface")]
    for label, v, t in named:
        r = ev.evaluate(v, t_fixed=t)
        a = r["at_fixed"]
        lo_b, hi_b = wilson(a["bpcer_k"], a["n_bf"])
        lo_a, hi_a = wilson(a["apcer_k"], a["n_att"])
        ss, _ = ev.scores(selfie_like, v)
        L.append(f"| {label} | {t:.2f} | {r['auc']:.3f} | {fmt_rate(a['bpcer_k'], a['n_bf'])} [{100 * lo_b:.1f}, {100 * hi_b:.1f}] | "
                 f"{fmt_rate(a['apcer_k'], a['n_att'])} [{100 * lo_a:.1f}, {100 * hi_a:.1f}] | "
                 f"{fmt_rate(int((ss < t).sum()), len(ss))} |")
    L.append("\nPer group at those thresholds:\n")
    per_group_table(ev, [(v, t, label) for label, v, t in named], groups, L)
    rec_v = named[4][1]
    sb, _ = ev.scores(ev.bf, rec_v)
    sa, _ = ev.scores(ev.att, rec_v)
    L.append(f"\nRecommended, curve: {vname(rec_v)}\n")
    L.append("| t | BPCER | APCER |\n|---|---|---|")
    for t in (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6):
        L.append(f"| {t:.2f} | {fmt_rate(int((sb < t).sum()), len(sb))} | {fmt_rate(int((sa >= t).sum()), len(sa))} |")
    for label, v, t in (named[0], named[4]):
        sb, nb = ev.scores(bfc, v)
        sa2, na = ev.scores(atc, v)
        L.append(f"\napfolcrop, {label} (t={t}): BPCER {fmt_rate(int((sb < t).sum()), len(sb))}, "
                 f"APCER {fmt_rate(int((sa2 >= t).sum()), len(sa2))}, AUC {auc(sb, sa2):.3f} "
                 f"(no face {nb} / {na})")

    if args.cv:
        L.append("\n## Cross-validated selection (5 folds grouped by person / source photo)\n")
        L.append("| selection space | held-out BPCER | held-out APCER | picks per fold |\n|---|---|---|---|")
        spaces = {
            "host variant, 0.5 fixed (nothing learnt)": None,
            "host variant, t10 learnt": [host],
            "recommended variant (linear, geo), t10 learnt": [(("raw", 1.0, "linear"), ("raw", 1.0, "linear"), "geo",
                                                               "median_upper", "none")],
            "crop only (30 crops, mean, median), t10 learnt": [(c, c, "mean", "median_upper", "none") for c in configs],
            "crop x fusion (30 x 7), t10 learnt": [(c, c, f, "median_upper", "none") for c in configs for f in FUSIONS],
        }
        for label, space in spaces.items():
            if space is None:
                sb, _ = ev.scores(ev.bf, host)
                sa, _ = ev.scores(ev.att, host)
                tot = rates(sb, sa, 0.5)
                picks = []
            else:
                tot, picks = cv_select(ev, space)
            pk = "; ".join(f"{p} t={t:.3f}" for p, t in picks) if len(picks) and len(space) > 1 else \
                (", ".join(f"{t:.3f}" for _, t in picks) if picks else "")
            L.append(f"| {label} | {fmt_rate(tot['bpcer_k'], tot['n_bf'])} | {fmt_rate(tot['apcer_k'], tot['n_att'])} | {pk} |")

    text = "\n".join(L) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
