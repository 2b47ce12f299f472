#!/usr/bin/env python3
"""Stage 1: score every presentation, frame by frame, under every crop variant.

For each presentation (list below) the frames are read as the host reads them (images:
EXIF-upright; videos: up to 24 frames spread over the clip, host rules, see common.py),
the primary (largest) face is detected with the host's pyramid, its landmarks, pose and
aligned-face sharpness are measured, and both MiniFASNet models are run on the crop of
each of the 30 variants `common.CONFIGS` (box raw / square on the larger side,
x0.8 .. x1.2 the nominal 2.7 / 4.0 scale, filter triangle (host) /
cv2.INTER_LINEAR (original Silent-Face) / cv2.INTER_AREA; the tight apfolcrop crops only
the 6 variants at x1.0, `common.CONFIGS_CROPS`). Everything goes to one pickle
(default /tmp/liveness_study/frames.pkl) that `analyze.py` reads; no image is written
except the temporary video frames and the simulated "held to the camera" clips
(default /tmp/liveness_study/clips, made as host/examples/measure_liveness.rs makes them).

Presentations
  bona fide: ../shared/faces/selfies (34 phone selfies, originals), faces/deepface (the
    bona fide side of the simulation), ../shared/videos (9 selfie videos; the 32 s one is
    flagged too_long: the host refuses it), the live items of liveness/labels.csv (the
    Silent-Face live photo, 2 webcam videos, 214 `apfolcrop__real__*` face crops);
  attacks: the simulated print / screen recaptures of make_presentation_attacks.py
    (--pa, run it first with --out to a scratch dir), 3 s zoom/pan clips of the first 20
    print and 20 screen pictures (as measure_liveness.rs), the spoof items of
    liveness/labels.csv (Silent-Face print + screen photo, 2 phone-replay videos,
    617 `apfolcrop__fake__*` crops).
  The apfolcrop crops are tight face crops; the host's tools skip them (no context for
  a 2.7x / 4.0x crop: the crop is clamped to the whole picture). They are scored here as
  a separate group, reported apart, never used to choose anything.

Usage: python3 scripts/eval/liveness_study/extract.py --pa /tmp/liveness_study/presentation-attacks
       [--out /tmp/liveness_study/frames.pkl] [--jobs 2] [--limit N]
"""
from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

VIDEO_EXT = {".mov", ".mp4", ".webm", ".3gp", ".mkv", ".avi"}


def still_clip(image: Path, out: Path) -> bool:
    """measure_liveness.rs `still_clip`: a 3 s clip of a picture slowly zoomed and panned."""
    vf = ("scale=720:-2,zoompan=z='1+0.0015*on':x='iw/2-(iw/zoom/2)+on*0.4':y='ih/2-(ih/zoom/2)'"
          ":d=90:s=720x960:fps=30")
    r = subprocess.run(["ffmpeg", "-v", "error", "-y", "-loop", "1", "-i", str(image), "-vf", vf,
                        "-frames:v", "90", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out)])
    return r.returncode == 0


def presentations(shared: Path, pa: Path, clips_dir: Path, n_clips: int) -> list[dict]:
    P = []

    def add(path, group, bona_fide, cluster, **kw):
        kind = "video" if Path(path).suffix.lower() in VIDEO_EXT else "image"
        P.append({"path": str(path), "group": group, "bona_fide": bona_fide, "cluster": cluster,
                  "kind": kind, **kw})

    for p in sorted((shared / "faces" / "selfies").glob("tdp-*/*.jpg")):
        add(p, "bf_selfie", True, p.parent.name)
    for p in sorted((shared / "faces" / "deepface").glob("img*.jpg")):
        add(p, "bf_deepface", True, "deepface/" + p.name)
    with open(shared / "videos" / "index.csv", newline="") as f:
        for r in csv.DictReader(f):
            p = shared / r["video"]
            d = common.probe_duration(p)
            add(p, "bf_selfie_video", True, r["identity"], too_long=bool(d and d > 30.0))
    with open(shared / "liveness" / "labels.csv", newline="") as f:
        for r in csv.DictReader(f):
            p = shared / r["file"]
            live = r["label"] == "live"
            crop = p.name.startswith("apfolcrop__")
            if crop:
                group = "bf_apfolcrop" if live else "att_apfolcrop"
            elif live:
                group = "bf_webcam_video" if r["attack_type"] == "real_video" else "bf_silentface"
            else:
                group = {"print_photo": "att_real_print", "screen_replay": "att_real_screen"}.get(
                    r["attack_type"], "att_real_replay_video")
            add(p, group, live, r["identity"])
    pa_csv = pa / "labels.csv"
    if not pa_csv.is_file():
        sys.exit(f"{pa_csv} missing: run scripts/eval/make_presentation_attacks.py --out {pa}")
    clips_dir.mkdir(parents=True, exist_ok=True)
    count = {"print": 0, "screen": 0}
    with open(pa_csv, newline="") as f:
        for r in csv.DictReader(f):
            src = r["source"]
            origin = "deepface" if "deepface" in src else "selfie"
            cluster = ("deepface/" + Path(src).name) if origin == "deepface" else Path(src).parent.name
            p = pa / r["file"]
            if r["label"] == "bona_fide":
                add(p, f"bf_reenc_{origin}", True, cluster, source=src)
                continue
            add(p, f"att_sim_{r['attack_type']}_{origin}", False, cluster, source=src)
            t = r["attack_type"]
            if count[t] < n_clips:
                out = clips_dir / (r["file"].replace("/", "__") + ".mp4")
                if out.exists() or still_clip(p, out):
                    count[t] += 1
                    add(out, f"att_sim_clip_{t}", False, cluster, source=src)
    return P


_PIPE = None


def _init():
    global _PIPE
    import cv2
    cv2.setNumThreads(1)
    _PIPE = common.Pipeline()


def score_frame(rgb, configs) -> dict:
    faces = _PIPE.detect(rgb)
    rec = {"shape": rgb.shape[:2], "n_faces": len(faces)}
    if not faces:
        return rec
    box, score = faces[0]
    lm = _PIPE.landmarks(rgb, box)
    yaw, pitch, roll = _PIPE.pose(lm)
    rec.update({
        "box": [float(v) for v in box], "det_score": score, "yaw": yaw, "pitch": pitch, "roll": roll,
        "sharpness": _PIPE.aligned_sharpness(rgb, lm),
        # landmark extent for the box-geometry comparison
        "lm_extent": [float(lm[:, 0].min()), float(lm[:, 1].min()), float(lm[:, 0].max()), float(lm[:, 1].max())],
        "eye_dist": float(abs(lm[42:48].mean(0)[0] - lm[36:42].mean(0)[0])),
        "probs": _PIPE.liveness_all(rgb, box, configs),
    })
    return rec


def score_presentation(p: dict) -> dict:
    t0 = time.time()
    if p["kind"] == "image":
        img = common.read_image(Path(p["path"]))
        frames, info = ([] if img is None else [img]), {}
    else:
        frames, info = common.sample_video(Path(p["path"]))
    configs = common.CONFIGS_CROPS if "apfolcrop" in p["group"] else common.CONFIGS
    out = dict(p)
    out["video_info"] = info
    out["configs"] = configs
    out["frames"] = [score_frame(f, configs) for f in frames]
    out["seconds"] = time.time() - t0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=common.SHARED)
    ap.add_argument("--pa", type=Path, default=Path("/tmp/liveness_study/presentation-attacks"))
    ap.add_argument("--clips", type=Path, default=Path("/tmp/liveness_study/clips"))
    ap.add_argument("--n-clips", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("/tmp/liveness_study/frames.pkl"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N presentations of each group (quick run)")
    args = ap.parse_args()
    t0 = time.time()
    P = presentations(args.shared, args.pa, args.clips, args.n_clips)
    if args.limit:
        seen: dict[str, int] = {}
        keep = []
        for p in P:
            seen[p["group"]] = seen.get(p["group"], 0) + 1
            if seen[p["group"]] <= args.limit:
                keep.append(p)
        P = keep
    groups = sorted({p["group"] for p in P})
    print(f"{len(P)} presentations: " + ", ".join(f"{g} {sum(p['group'] == g for p in P)}" for g in groups))
    # videos first so the long jobs spread over the workers
    order = sorted(range(len(P)), key=lambda i: P[i]["kind"] != "video")
    results = [None] * len(P)
    with mp.Pool(args.jobs, initializer=_init) as pool:
        for n, (i, r) in enumerate(zip(order, pool.imap(score_presentation, [P[i] for i in order], chunksize=1)), 1):
            results[i] = r
            if n % 100 == 0 or n == len(P):
                print(f"  {n}/{len(P)} ({time.time() - t0:.0f} s)", file=sys.stderr)
    meta = {"configs": common.CONFIGS, "models": ["minifasnet_v2_2.7", "minifasnet_v1se_4.0"],
            "seconds": time.time() - t0}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as f:
        pickle.dump({"meta": meta, "presentations": results}, f)
    print(f"wrote {args.out} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
