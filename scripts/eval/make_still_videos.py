#!/usr/bin/env python3
"""Still photos turned into videos: the attack a video-only capture flow invites.

An attacker who has a photo of the victim (a social-media portrait, a selfie) and is
asked for a selfie *video* makes one out of the photo. This script does that to the
real bona fide photos of ../shared (the phone selfies, the live photos of
`liveness/labels.csv`, the stills of `videos/index.csv`) and writes, for each:

| kind | what it is |
|---|---|
| `still` | the photo repeated for 3 s (30 fps, H.264): no pixel changes between frames |
| `still_noise` | the same with temporal noise added to every frame (as a sensor would) |
| `still_pan` | the photo slowly zoomed and panned (a rigid move, as a photo held to a camera) |

into OUT/still/ with OUT/still/labels.csv: `file,label,attack_type,source_repo,origin`
(label `attack`, attack_type `still_video`, `still_video_noise`, `still_video_pan`;
`source_repo` is that of the photo, so `faceauth eval --mode liveness` can leave each
source out). The photos are bona fide; the videos are not: a still picture has no
blink, no expression and no parallax, whatever its texture looks like.

Needs ffmpeg and OpenCV (only to apply the JPEG's EXIF orientation, as the host does).
Outputs stay under target/ (the selfies' licence allows evaluation only).

    python3 scripts/eval/make_still_videos.py [--shared ../shared] [--out target/presentation-attacks]
"""

import argparse
import csv
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

SELFIES_SOURCE = "Trainingdata-datamarket/Selfies-and-video-dataset"

FILTERS = {
    "still": "scale='min(960,iw)':-2,format=yuv420p",
    "still_noise": "scale='min(960,iw)':-2,noise=alls=8:allf=t+u,format=yuv420p",
    "still_pan": (
        "scale=720:-2,zoompan=z='1+0.0015*on':x='iw/2-(iw/zoom/2)+on*0.4':y='ih/2-(ih/zoom/2)'"
        ":d=90:s=720x960:fps=30,format=yuv420p"
    ),
}


def photos(shared: Path):
    """(path, source_repo) of every bona fide photo, each file once."""
    out = []
    for p in sorted((shared / "faces/selfies").glob("*/*.jpg")):
        out.append((p, SELFIES_SOURCE))
    with open(shared / "liveness/labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["label"] == "live" and row["attack_type"] == "real":
                out.append((shared / row["file"], row["source_repo"]))
    with open(shared / "videos/index.csv", newline="") as f:
        for row in csv.DictReader(f):
            for still in filter(None, row["stills_same_person"].split(";")):
                out.append((shared / still, row["source_repo"]))
    seen, unique = set(), []
    for path, source in out:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append((path, source))
    return unique


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default="../shared", type=Path)
    ap.add_argument("--out", default="target/presentation-attacks", type=Path)
    args = ap.parse_args()
    out = args.out / "still"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (photo, source) in enumerate(photos(args.shared)):
            image = cv2.imread(str(photo), cv2.IMREAD_COLOR)  # EXIF orientation applied
            if image is None:
                print(f"skipped (unreadable): {photo}", file=sys.stderr)
                continue
            upright = Path(tmp) / f"{i}.png"
            cv2.imwrite(str(upright), image)
            stem = f"{photo.parent.name}__{photo.stem}"
            for kind, vf in FILTERS.items():
                name = f"{stem}__{kind}.mp4"
                if not (out / name).exists():
                    cmd = ["ffmpeg", "-v", "error", "-y", "-loop", "1", "-i", str(upright), "-vf", vf]
                    cmd += ["-t", "3", "-r", "30", "-c:v", "libx264", "-crf", "20", str(out / name)]
                    subprocess.run(cmd, check=True)
                attack_type = "still_video" if kind == "still" else f"still_video_{kind.split('_')[1]}"
                rows.append([f"still/{name}", "attack", attack_type, source, str(photo.relative_to(args.shared))])
            print(f"[{i + 1}] {photo.relative_to(args.shared)}")
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "attack_type", "source_repo", "origin"])
        w.writerows(rows)
    print(f"{len(rows)} clips in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
