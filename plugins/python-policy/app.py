"""A faceauth decision policy written in Python.

A port of the default policy's decisions (plugins/policy-sdk/src/standard.rs,
`Thresholds::DEFAULT`) to plain Python, built into a WebAssembly component with
componentize-py against wit/policy.wit (faceauth:policy@0.5.0). See README.md.

The host calls four functions (the `WitWorld` class below); the evidence arrives
as the dataclasses of the generated bindings (wit_world.imports.types): field
names are the WIT names in snake_case, WIT `f32` values are Python floats, and
`option<f32>` is a float or None.

Numbers are compared as the Rust policy compares them, in 32-bit floats (`f32`
below): a similarity of exactly 0.35 (as f32) must match a threshold of 0.35.
"""

import struct

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import Decision, Param, PolicyInfo, MediaKind

NAME = "python-default"
VERSION = "0.1.0"

# Every parameter this policy reads: (name, default, smallest, largest allowed).
# The defaults are those of the Rust default policy (Thresholds::DEFAULT).
PARAMETERS = [
    ("match-threshold", 0.35, -1.0, 1.0),  # cosine similarity for "same person"
    ("min-face-px", 40.0, 0.0, 4096.0),  # smallest face box height, pixels
    ("min-sharpness", 8.0, 0.0, 1e6),  # variance of Laplacian of the aligned face
    ("max-abs-yaw", 75.0, 0.0, 180.0),  # degrees
    ("max-abs-pitch", 75.0, 0.0, 180.0),  # degrees
    ("min-brightness", 0.08, 0.0, 1.0),  # mean luma of the aligned face
    ("ghost-max-relative-size", 0.6, 0.0, 1.0),  # ID card: a smaller other face is a ghost portrait
    ("selfie-max-other-relative-size", 0.45, 0.0, 1.0),  # selfie: a larger other face is refused
    ("min-usable-frames", 2.0, 1.0, 64.0),  # video: identity frames needed
    ("video-identity-max-abs-yaw", 30.0, 0.0, 180.0),  # video: identity frames are this frontal
    ("video-identity-max-abs-pitch", 30.0, 0.0, 180.0),
    ("min-track-similarity", 0.35, -1.0, 1.0),  # video: same person through the clip
    ("track-max-pose-difference", 20.0, 0.0, 180.0),  # video: frames this close in pose are compared
    ("duplicate-threshold", 0.0, 0.0, 1.0),  # enrollment: 0 = chosen by gallery size (below)
    ("duplicate-max-fpir", 0.01, 0.0, 1.0),  # the false-positive identification rate it is chosen for
]

# The embedding's false match rate at each duplicate threshold, over every
# cross-identity pair of LFW View-1 training (1 797 874 pairs): the Rust SDK's
# standard::DUPLICATE_FMR.
DUPLICATE_FMR = [
    (0.35, 1265 / 1797874),
    (0.40, 270 / 1797874),
    (0.45, 55 / 1797874),
    (0.50, 9 / 1797874),
    (0.575, 4 / 1797874),
    (0.70, 2 / 1797874),
]

# Reason codes (upper-case, digits and _, at most 64 characters).
ENROLLED_AS_USER = "ENROLLED_AS_USER"
AUTHENTIFICATION_SUCCESS = "AUTHENTIFICATION_SUCCESS"  # the original service's spelling
NO_FACE_DETECTED = "NO_FACE_DETECTED"
MULTIPLE_FACES_DETECTED = "MULTIPLE_FACES_DETECTED"
FACE_TOO_SMALL = "FACE_TOO_SMALL"
FACE_TOO_DARK = "FACE_TOO_DARK"
FACE_TOO_BLURRY = "FACE_TOO_BLURRY"
FACE_NOT_FRONTAL = "FACE_NOT_FRONTAL"
FACE_MISMATCH = "FACE_MISMATCH"
FACE_ALREADY_ENROLLED = "FACE_ALREADY_ENROLLED"
INVALID_POLICY_PARAMS = "INVALID_POLICY_PARAMS"


def f32(x):
    """`x` rounded to a 32-bit float, as the Rust policy holds its numbers."""
    return struct.unpack("f", struct.pack("f", x))[0]


def approve(reason, score=None):
    return Decision(approved=True, reason=reason, score=score)


def reject(reason):
    return Decision(approved=False, reason=reason, score=None)


def read_params(params):
    """The parameters as a dict {name: value}, or raise ValueError saying why not."""
    given = {p.name: p.value for p in params}
    values = {}
    for name, _default, low, high in PARAMETERS:
        if name not in given:
            raise ValueError(f"parameter {name} is missing")
        value = given[name]
        # `not (low <= value <= high)` also refuses NaN; infinities are out of range.
        if not (low <= value <= high):
            raise ValueError(f"parameter {name} = {value} is outside {low}..={high}")
        values[name] = f32(value)
    return values


def quality_refusal(face, p):
    """Why `face` fails the quality gates (size, brightness, sharpness, pose), or None."""
    box = face.face_box
    if box.height < p["min-face-px"] or box.width < p["min-face-px"] * 0.5:
        return FACE_TOO_SMALL
    # Evidence recorded before brightness was measured has None: not refused for it.
    if face.brightness is not None and face.brightness < p["min-brightness"]:
        return FACE_TOO_DARK
    if face.sharpness < p["min-sharpness"]:
        return FACE_TOO_BLURRY
    if abs(face.pose.yaw) > p["max-abs-yaw"] or abs(face.pose.pitch) > p["max-abs-pitch"]:
        return FACE_NOT_FRONTAL
    return None


def decide_enroll(evidence, p):
    """ID document: one main portrait of good quality; other faces only as ghosts."""
    if not evidence.faces:
        return reject(NO_FACE_DETECTED)
    primary, others = evidence.faces[0], evidence.faces[1:]  # largest first
    for other in others:
        # A large other face is accepted only if it is the same person (a second print).
        if other.relative_size >= p["ghost-max-relative-size"] and other.similarity < p["match-threshold"]:
            return reject(MULTIPLE_FACES_DETECTED)
    refusal = quality_refusal(primary, p)
    if refusal:
        return reject(refusal)
    search = evidence.duplicates
    if search is not None:
        threshold = p["duplicate-threshold"] or duplicate_threshold_for(search.gallery_size, p["duplicate-max-fpir"])
        if any(m.similarity >= threshold for m in search.matches):
            return reject(FACE_ALREADY_ENROLLED)
    return approve(ENROLLED_AS_USER)


def duplicate_threshold_for(gallery_size, max_fpir):
    """The lowest measured threshold whose FPIR = 1 - (1 - FMR)^N is at most max_fpir."""
    for threshold, fmr in DUPLICATE_FMR:
        if 1.0 - (1.0 - fmr) ** gallery_size <= max_fpir:
            return f32(threshold)
    return f32(DUPLICATE_FMR[-1][0])


def decide_authenticate(evidence, p):
    """Selfie (one frame) or video (sampled frames): one person, the enrolled one."""
    if not evidence.frames:
        return reject(NO_FACE_DETECTED)
    video = evidence.media == MediaKind.VIDEO
    refusals = []  # why each unusable frame was refused
    identity = []  # similarities to the enrollment of the identity frames
    tracked = []  # (frame index, primary face) of the frames passing the quality gates
    for index, frame in enumerate(evidence.frames):
        if not frame.faces:
            refusals.append(NO_FACE_DETECTED)
            continue
        primary, others = frame.faces[0], frame.faces[1:]
        # Someone beside you, or a held-up photo: refused whoever it is.
        if any(o.relative_size >= p["selfie-max-other-relative-size"] for o in others):
            return reject(MULTIPLE_FACES_DETECTED)
        refusal = quality_refusal(primary, p)
        if refusal:
            refusals.append(refusal)
            continue
        if video:
            # One person through the clip: this face against every earlier tracked
            # face at a similar pose (the host measured their similarity).
            for earlier_index, earlier in tracked:
                near = (
                    abs(f32(earlier.pose.yaw - primary.pose.yaw)) <= p["track-max-pose-difference"]
                    and abs(f32(earlier.pose.pitch - primary.pose.pitch)) <= p["track-max-pose-difference"]
                )
                similarities = frame.earlier_similarities
                s = similarities[earlier_index] if earlier_index < len(similarities) else None
                if near and s is not None and s < p["min-track-similarity"]:
                    return reject(FACE_MISMATCH)
            tracked.append((index, primary))
        frontal = (
            abs(primary.pose.yaw) <= p["video-identity-max-abs-yaw"]
            and abs(primary.pose.pitch) <= p["video-identity-max-abs-pitch"]
        )
        if video and not frontal:
            refusals.append(FACE_NOT_FRONTAL)
        else:
            identity.append(primary.similarity)
    needed = min(int(max(p["min-usable-frames"], 1.0)), len(evidence.frames))
    if len(identity) < needed:
        # Poor evidence is not evidence of another person: say what to fix.
        return reject(most_common(refusals) or NO_FACE_DETECTED)
    score = median(identity)
    if score >= p["match-threshold"]:
        return approve(AUTHENTIFICATION_SUCCESS, score)
    return reject(FACE_MISMATCH)


def median(values):
    """The median (the mean of the middle two for an even count), in f32."""
    values = sorted(values)
    n = len(values)
    if n % 2 == 1:
        return values[n // 2]
    return f32(f32(values[n // 2 - 1] + values[n // 2]) / 2.0)


def most_common(reasons):
    """The most frequent reason (the first seen among equals), or None."""
    best, best_count = None, 0
    for reason in reasons:
        count = reasons.count(reason)
        if count > best_count:
            best, best_count = reason, count
    return best


class WitWorld(wit_world.WitWorld):
    """The component's exports, called by the host in a fresh instance each time."""

    def info(self) -> PolicyInfo:
        return PolicyInfo(
            name=NAME,
            version=VERSION,
            requires_liveness=False,
            params=[Param(name=name, value=default) for name, default, _, _ in PARAMETERS],
        )

    def check_params(self, params) -> None:
        try:
            read_params(params)
        except ValueError as e:
            raise Err(str(e))

    def decide_enroll(self, params, evidence) -> Decision:
        try:
            p = read_params(params)
        except ValueError:
            return reject(INVALID_POLICY_PARAMS)
        return decide_enroll(evidence, p)

    def decide_authenticate(self, params, evidence) -> Decision:
        try:
            p = read_params(params)
        except ValueError:
            return reject(INVALID_POLICY_PARAMS)
        return decide_authenticate(evidence, p)
