#!/usr/bin/env python3
"""Two people's selfie videos spliced into one clip, to measure the face-track check.

For every ordered pair of videos of different people in ../shared/videos/index.csv
(A, B), writes A's first half followed by B's second half (both fitted, padded, into
720x720 at 25 fps, H.264) to OUT/<a>__then__<b>.mp4, and OUT/index.csv naming each
clip with A's identity and stills. Then

    target/release/faceauth eval --mode video --list OUT/index.csv --attempts-out F

judges every clip enrolled as A (labelled genuine) and as everyone else: an approval
enrolled as A or as B is a splice that passed. Needs ffmpeg and ffprobe.

    python3 scripts/eval/make_spliced_videos.py [--shared ../shared] [--out target/spliced-videos]
"""

import argparse
import csv
import os
import subprocess
import sys


def duration(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    try:
        return float(out)
    except ValueError:
        return None


def fitted(label):
    return (f"[{label}:v]scale=720:720:force_original_aspect_ratio=decrease,"
            f"pad=720:720:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=25,format=yuv420p[v{label}]")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap.add_argument("--shared", default=os.environ.get("FACEAUTH_SHARED_DIR", os.path.join(root, "..", "shared")))
    ap.add_argument("--out", default=os.path.join(root, "target", "spliced-videos"))
    args = ap.parse_args()
    index = os.path.join(args.shared, "videos", "index.csv")
    with open(index, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("video")]
    os.makedirs(args.out, exist_ok=True)
    videos = []
    for r in rows:
        path = os.path.join(args.shared, r["video"])
        d = duration(path)
        if d is None or d <= 1.0:
            # A browser WebM without a duration in its header: measure by decoding.
            out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                                  "-show_entries", "stream=nb_read_frames,r_frame_rate", "-of", "csv=p=0", path],
                                 capture_output=True, text=True).stdout.strip().split(",")
            try:
                num, den = out[0].split("/")
                d = int(out[1]) / (int(num) / int(den))
            except (ValueError, IndexError, ZeroDivisionError):
                print(f"skipped {path}: no duration", file=sys.stderr)
                continue
        videos.append((path, r["identity"], r["stills_same_person"], d))
    written = []
    for a, id_a, stills_a, d_a in videos:
        for b, id_b, _, d_b in videos:
            if id_a == id_b:
                continue
            name = (f"{id_a[:12]}-{os.path.splitext(os.path.basename(a))[0][-2:]}__then__"
                    f"{id_b[:12]}-{os.path.splitext(os.path.basename(b))[0][-2:]}.mp4")
            out = os.path.join(args.out, name)
            if not os.path.exists(out):
                cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                       "-t", f"{d_a / 2:.3f}", "-i", a, "-ss", f"{d_b / 2:.3f}", "-i", b,
                       "-filter_complex", f"{fitted(0)};{fitted(1)};[v0][v1]concat=n=2:v=1[v]",
                       "-map", "[v]", "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", out]
                subprocess.run(cmd, check=True)
            # Stills relative to the index's folder: absolute paths.
            stills = ";".join(os.path.abspath(os.path.join(args.shared, s)) for s in stills_a.split(";") if s)
            written.append((out, stills, id_a))
    with open(os.path.join(args.out, "index.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "stills_same_person", "identity", "liveness", "source_repo"])
        for out, stills, identity in written:
            w.writerow([os.path.abspath(out), stills, identity, "spliced", "make_spliced_videos.py"])
    print(f"{len(written)} spliced clips in {args.out} (index.csv)")


if __name__ == "__main__":
    main()
