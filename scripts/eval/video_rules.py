#!/usr/bin/env python3
"""The video decision rule of the standard policy, replayed on recorded evidence, with
leave-one-person-out choice of its video parameters.

Input: the `--attempts-out` JSON lines of `faceauth eval --mode video` (each video
attempt carries the evidence the policy saw: every frame's faces with similarity to
the enrollment, pose, brightness, sharpness and the face track). Spliced clips
(`make_spliced_videos.py`) can be added with `--spliced F`: every approval there, as
the first or the second person, is an attack that passed.

    python3 scripts/eval/video_rules.py ATTEMPTS.jsonl [--spliced SPLICED.jsonl]

Prints, for the shipped defaults and for the rule of the previous release (every
usable frame must match), genuine and impostor approvals with counts; then for each
person left out, the parameters chosen on the other people by the declared criterion
(no impostor or splice approved; then most genuine approved; then the setting
nearest the defaults) and what they give on the person left out.
"""

import argparse
import itertools
import json
import os
import re

DEFAULTS = dict(match=0.35, min_face_px=40.0, min_sharpness=8.0, max_yaw=75.0, max_pitch=75.0,
                min_brightness=0.08, min_usable=2, id_yaw=30.0, id_pitch=30.0, min_track=0.35, track_pose=20.0)
# The video parameters; min-brightness is a quality gate of stills too, measured apart.
GRID = dict(id_yaw=[20, 30, 45, 75], id_pitch=[20, 30, 45, 75],
            min_track=[-1.0, 0.2, 0.3, 0.35, 0.4, 0.5], track_pose=[10.0, 20.0, 30.0, 45.0])
SAME_PERSON = {"tdp-fc942c0c9e0fb57ea4b97630c6226c08": "tdp-02d4bd7187fb9867c280213a94303c76"}


def person(path):
    """The person of a file: its folder under videos/, the first half of a spliced
    clip, or the source of a ../shared/liveness clip (`<source>__<kind>`); the first
    11 characters, so that `tranvanluyt-author` (videos/) is `tranvanluyt__real.mp4`."""
    parts = path.split(os.sep)
    for i, p in enumerate(parts):
        if p == "videos" and i + 1 < len(parts):
            return short(parts[i + 1])
    base = os.path.basename(path)
    if "__then__" in base:
        return short(base.split("__then__")[0])
    return short(base.split("__")[0])


def short(name):
    for alias, same in SAME_PERSON.items():
        if alias.startswith(name[:11]):
            return same[:11]
    return name[:11]


def quality(face, p):
    box = face["face_box"]
    if box["height"] < p["min_face_px"] or box["width"] < p["min_face_px"] * 0.5:
        return "FACE_TOO_SMALL"
    b = face.get("brightness")
    if b is not None and b < p["min_brightness"]:
        return "FACE_TOO_DARK"
    if face["sharpness"] < p["min_sharpness"]:
        return "FACE_TOO_BLURRY"
    if abs(face["pose"]["yaw"]) > p["max_yaw"] or abs(face["pose"]["pitch"]) > p["max_pitch"]:
        return "FACE_NOT_FRONTAL"
    return None


def decide(evidence, p, legacy=False):
    """(approved, reason), as plugins/policy-sdk/src/standard.rs decides a video."""
    frames = evidence["frames"]
    if not frames:
        return False, "NO_FACE_DETECTED"
    refusals, identity, tracked = [], [], []
    for index, frame in enumerate(frames):
        faces = frame["faces"]
        if not faces:
            refusals.append("NO_FACE_DETECTED")
            continue
        primary = faces[0]
        if any(f["relative_size"] >= 0.45 for f in faces[1:]):
            return False, "MULTIPLE_FACES_DETECTED"
        reason = quality(primary, dict(p, min_brightness=0.0) if legacy else p)
        if reason:
            refusals.append(reason)
            continue
        if not legacy:
            earlier = frame.get("earlier_similarities") or []
            pose = primary["pose"]
            for i, other in tracked:
                near = (abs(other["yaw"] - pose["yaw"]) <= p["track_pose"]
                        and abs(other["pitch"] - pose["pitch"]) <= p["track_pose"])
                if near and i < len(earlier) and earlier[i] is not None and earlier[i] < p["min_track"]:
                    return False, "FACE_MISMATCH"
            tracked.append((index, pose))
        frontal = abs(primary["pose"]["yaw"]) <= p["id_yaw"] and abs(primary["pose"]["pitch"]) <= p["id_pitch"]
        if not legacy and not frontal:
            refusals.append("FACE_NOT_FRONTAL")
        else:
            identity.append(primary["similarity"])
    needed = min(int(p["min_usable"]), len(frames))
    if len(identity) < needed:
        return False, max(refusals, key=refusals.count) if refusals else "NO_FACE_DETECTED"
    identity.sort()
    n = len(identity)
    score = min(identity) if legacy else (identity[n // 2] if n % 2 else (identity[n // 2 - 1] + identity[n // 2]) / 2)
    return (True, "AUTHENTIFICATION_SUCCESS") if score >= p["match"] else (False, "FACE_MISMATCH")


def load(path, spliced=False):
    out = []
    with open(path) as f:
        for line in f:
            a = json.loads(line)
            if a.get("evidence") is None or a.get("enroll_reason") != "ENROLLED_AS_USER":
                continue
            video = person(a["authenticate"])
            enrolled = person(a["enroll"])
            if spliced:
                base = os.path.basename(a["authenticate"])
                first, second = (short(x) for x in base[:-4].split("__then__"))
                if first == second:
                    continue  # two clips of one person
                video = first
                kind = "splice" if enrolled in (first, second) else "impostor"
            elif "/spoof/" in a["authenticate"]:
                continue  # a replay: liveness's question, not identity's
            else:
                kind = "genuine" if video == enrolled else "impostor"
            out.append(dict(kind=kind, video=video, enrolled=enrolled, evidence=a["evidence"], file=a["authenticate"]))
    return out


def tally(attempts, p, legacy=False):
    counts = {"genuine": [0, 0], "impostor": [0, 0], "splice": [0, 0]}
    reasons = {}
    for a in attempts:
        ok, reason = decide(a["evidence"], p, legacy)
        counts[a["kind"]][0] += ok
        counts[a["kind"]][1] += 1
        if a["kind"] == "genuine" and not ok:
            reasons[reason] = reasons.get(reason, 0) + 1
    return counts, reasons


def show(counts):
    return ", ".join(f"{k} approved {v[0]}/{v[1]}" for k, v in counts.items() if v[1])


def distance(p):
    return sum(abs(p[k] - DEFAULTS[k]) / (max(GRID[k]) - min(GRID[k])) for k in GRID)


def choose(attempts):
    best = None
    for values in itertools.product(*GRID.values()):
        p = dict(DEFAULTS, **dict(zip(GRID, values)))
        c, _ = tally(attempts, p)
        if c["impostor"][0] or c["splice"][0]:
            continue
        key = (-c["genuine"][0], distance(p))
        if best is None or key < best[0]:
            best = (key, p)
    return best[1] if best else DEFAULTS


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("attempts")
    ap.add_argument("--spliced")
    ap.add_argument("--more", action="append", default=[], help="more attempts (e.g. the live clips of ../shared/liveness)")
    args = ap.parse_args()
    attempts = load(args.attempts) + (load(args.spliced, spliced=True) if args.spliced else [])
    for more in args.more:
        attempts += load(more)
    c, reasons = tally(attempts, DEFAULTS)
    print(f"defaults {json.dumps({k: DEFAULTS[k] for k in GRID})}: {show(c)}; genuine refused: {reasons}")
    c, reasons = tally(attempts, DEFAULTS, legacy=True)
    print(f"previous rule (every usable frame matches, no track): {show(c)}; genuine refused: {reasons}")
    for a in attempts:
        ok, reason = decide(a["evidence"], DEFAULTS)
        if (a["kind"] == "genuine") != ok:
            print(f"  {a['kind']} {'approved' if ok else 'refused'}: {a['file']} enrolled as {a['enrolled']} {reason}")
    people = sorted({a["video"] for a in attempts})
    total = {"genuine": [0, 0], "impostor": [0, 0], "splice": [0, 0]}
    print(f"leave one person out ({len(people)} people with a clip):")
    for who in people:
        # Each attempt is held out once, with its video's person; the choice never
        # sees the person's clips nor their enrollment.
        held = [a for a in attempts if a["video"] == who]
        train = [a for a in attempts if a["video"] != who and a["enrolled"] != who]
        p = choose(train)
        c, _ = tally(held, p)
        for k in total:
            total[k][0] += c[k][0]
            total[k][1] += c[k][1]
        chosen = {k: p[k] for k in GRID}
        print(f"  {who[:40]}: chosen {json.dumps(chosen)} -> {show(c)}")
    print(f"leave one person out, all held-out attempts: {show(total)}")


if __name__ == "__main__":
    main()
