"""Native unit tests of app.py (plain CPython, unittest), run by build.sh before the
component is built. The evidence is built with the generated bindings' dataclasses,
as the component receives it. By hand:

    PYTHONPATH=target/python-policy/bindings:plugins/python-policy \
        target/python-policy/venv/bin/python -m unittest -v test_app

These are the Rust default policy's unit tests (plugins/default-policy/src/lib.rs),
ported, plus the host's recorded self-check evidence.
"""

import json
import pathlib
import unittest

import app
from wit_world.imports.types import (
    AuthenticateEvidence,
    DuplicateSearch,
    GalleryMatch,
    EnrollEvidence,
    Face,
    FaceBox,
    Frame,
    FrameSummary,
    HeadPose,
    ImageSize,
    MediaKind,
    MotionSummary,
    Param,
)

POLICY = app.WitWorld()
DEFAULTS = POLICY.info().params
SELFCHECK = pathlib.Path(__file__).resolve().parents[2] / "crates/faceauth-core/src/policy/selfcheck"


def face(height, similarity, yaw=0.0, pitch=0.0, brightness=0.45):
    """A sharp face of `height` pixels, as in faceauth_policy_sdk::testing::face."""
    return Face(
        detector_score=0.99,
        face_box=FaceBox(x=10.0, y=10.0, width=height * 0.8, height=height),
        relative_area=0.1,
        relative_size=1.0,
        sharpness=500.0,
        pose=HeadPose(yaw=yaw, pitch=pitch, roll=0.0),
        similarity=similarity,
        liveness=None,
        eyes_open=None,
        brightness=brightness,
    )


def sorted_faces(faces):
    """Largest first, with relative_size set, as the host sends them."""
    faces = sorted(faces, key=lambda f: -f.face_box.height)
    for f in faces:
        f.relative_size = f.face_box.height / faces[0].face_box.height
    return faces


def enroll(faces, gallery_size=None, similarities=()):
    """ID document evidence; with `gallery_size`, a duplicate search whose best
    matches scored `similarities`."""
    duplicates = None
    if gallery_size is not None:
        duplicates = DuplicateSearch(gallery_size=gallery_size, matches=[GalleryMatch(s) for s in similarities])
    return EnrollEvidence(image=ImageSize(width=1000, height=700), faces=sorted_faces(faces), duplicates=duplicates)


def authenticate(media, frames, track=None):
    """Evidence of `frames` (lists of faces); `track(i, j)` is the similarity of the
    primary faces of frames i < j (the host's earlier-similarities). The summary is
    not read by this policy and is left empty."""
    frames = [
        Frame(timestamp_ms=i * 250, faces=sorted_faces(faces), earlier_similarities=[])
        for i, faces in enumerate(frames)
    ]
    if track:
        for j, frame in enumerate(frames):
            frame.earlier_similarities = [
                track(i, j) if frames[i].faces and frame.faces else None for i in range(j)
            ]
    motion = MotionSummary(0, 0, 0.0, 0.0, 0.0, 0.0)
    summary = FrameSummary(len(frames), 0, 0, None, None, None, motion)
    return AuthenticateEvidence(media=media, image=ImageSize(1000, 700), frames=frames, summary=summary)


def image(faces):
    return authenticate(MediaKind.IMAGE, [faces])


def one_person(frames):
    """A video of one person: their faces 0.8 similar to each other."""
    return authenticate(MediaKind.VIDEO, frames, lambda i, j: 0.8)


def front(similarity):
    return [face(200.0, similarity)]


def decide_enroll(evidence, params=DEFAULTS):
    return POLICY.decide_enroll(params, evidence)


def decide_authenticate(evidence, params=DEFAULTS):
    return POLICY.decide_authenticate(params, evidence)


class Params(unittest.TestCase):
    def test_defaults_are_valid_and_a_variant_with_a_higher_threshold_is_stricter(self):
        POLICY.check_params(DEFAULTS)
        strict = [Param(p.name, 0.75 if p.name == "match-threshold" else p.value) for p in DEFAULTS]
        POLICY.check_params(strict)
        self.assertTrue(decide_authenticate(image(front(0.7))).approved)
        self.assertEqual(decide_authenticate(image(front(0.7)), strict).reason, "FACE_MISMATCH")

    def test_missing_out_of_range_and_nan_parameters_are_refused(self):
        with self.assertRaises(app.Err) as e:
            POLICY.check_params([p for p in DEFAULTS if p.name != "min-face-px"])
        self.assertIn("min-face-px is missing", e.exception.value)
        for bad in (2.0, float("nan"), float("inf")):
            params = [Param(p.name, bad if p.name == "match-threshold" else p.value) for p in DEFAULTS]
            with self.assertRaises(app.Err):
                POLICY.check_params(params)
            self.assertEqual(decide_enroll(enroll([face(120.0, 1.0)]), params).reason, "INVALID_POLICY_PARAMS")

    def test_a_similarity_equal_to_the_threshold_matches_as_in_f32(self):
        # 0.35 as an f32 is 0.3499999940...: the Rust policy approves it.
        d = decide_authenticate(image(front(app.f32(0.35))))
        self.assertTrue(d.approved, d)


class Enroll(unittest.TestCase):
    def test_one_good_face_and_a_small_or_same_person_ghost_portrait(self):
        self.assertTrue(decide_enroll(enroll([face(120.0, 1.0), face(40.0, 0.1)])).approved)
        self.assertTrue(decide_enroll(enroll([face(120.0, 1.0), face(110.0, 0.8)])).approved)
        self.assertEqual(decide_enroll(enroll([face(120.0, 1.0)])).reason, "ENROLLED_AS_USER")

    def test_a_second_large_stranger_no_face_and_poor_faces(self):
        reason = lambda faces: decide_enroll(enroll(faces)).reason
        self.assertEqual(reason([face(120.0, 1.0), face(100.0, 0.05)]), "MULTIPLE_FACES_DETECTED")
        self.assertEqual(reason([]), "NO_FACE_DETECTED")
        self.assertEqual(reason([face(30.0, 1.0)]), "FACE_TOO_SMALL")
        blurry = face(120.0, 1.0)
        blurry.sharpness = 3.0
        self.assertEqual(reason([blurry]), "FACE_TOO_BLURRY")
        self.assertEqual(reason([face(120.0, 1.0, yaw=85.0)]), "FACE_NOT_FRONTAL")
        self.assertEqual(reason([face(120.0, 1.0, brightness=0.05)]), "FACE_TOO_DARK")


    def test_a_face_already_enrolled_at_a_threshold_by_gallery_size(self):
        reason = lambda n, sims: decide_enroll(enroll([face(120.0, 1.0)], n, sims)).reason
        self.assertEqual(reason(0, []), "ENROLLED_AS_USER")
        self.assertEqual(reason(100, [0.42, 0.2]), "ENROLLED_AS_USER")
        self.assertEqual(reason(100, [0.55, 0.2]), "FACE_ALREADY_ENROLLED")
        self.assertEqual(reason(5000, [0.55]), "ENROLLED_AS_USER")
        self.assertEqual(reason(5000, [0.93]), "FACE_ALREADY_ENROLLED")
        self.assertEqual(app.duplicate_threshold_for(1000, app.f32(0.01)), app.f32(0.50))
        self.assertEqual(app.duplicate_threshold_for(10**6, app.f32(0.01)), app.f32(0.70))


class AuthenticateImage(unittest.TestCase):
    def test_matches_on_the_primary_face_only(self):
        d = decide_authenticate(image(front(0.7)))
        self.assertTrue(d.approved)
        self.assertEqual((d.reason, d.score), ("AUTHENTIFICATION_SUCCESS", 0.7))
        d = decide_authenticate(image(front(0.2)))
        self.assertEqual((d.reason, d.score), ("FACE_MISMATCH", None))
        # The matching face is the second one: never the best match of several.
        d = decide_authenticate(image([face(200.0, 0.1), face(180.0, 0.9)]))
        self.assertEqual(d.reason, "MULTIPLE_FACES_DETECTED")
        self.assertTrue(decide_authenticate(image([face(200.0, 0.7), face(40.0, 0.0)])).approved)
        self.assertEqual(decide_authenticate(image([])).reason, "NO_FACE_DETECTED")

    def test_a_dark_face_is_told_to_find_light(self):
        self.assertEqual(decide_authenticate(image([face(200.0, 0.2, brightness=0.05)])).reason, "FACE_TOO_DARK")
        # Evidence recorded before brightness was measured is not refused for it.
        self.assertTrue(decide_authenticate(image([face(200.0, 0.7, brightness=None)])).approved)


class AuthenticateVideo(unittest.TestCase):
    def test_judged_on_its_frontal_frames_and_its_own_track(self):
        d = decide_authenticate(one_person([front(0.7), front(0.72), front(0.68)]))
        self.assertTrue(d.approved, d)
        self.assertEqual(d.score, 0.7)
        # Looking up (pitch 33) and turned 54 deg: not frontal enough to say who it is.
        frames = [front(0.75), [face(200.0, 0.16, 5.0, 33.0)], [face(200.0, 0.31, 54.0, 0.0)], front(0.7)]
        self.assertTrue(decide_authenticate(one_person(frames)).approved)
        # Two people's clips spliced.
        spliced = lambda i, j: 0.8 if (i < 2) == (j < 2) else 0.1
        frames = [front(0.75), front(0.7), [face(200.0, 0.1, 5.0)], [face(200.0, 0.12, 40.0)]]
        d = decide_authenticate(authenticate(MediaKind.VIDEO, frames, spliced))
        self.assertEqual(d.reason, "FACE_MISMATCH")
        # Views 45 degrees apart are not compared.
        turned = lambda i, j: 0.1 if (i, j) == (0, 1) else 0.8
        frames = [front(0.75), [face(200.0, 0.2, 45.0)], front(0.7)]
        self.assertTrue(decide_authenticate(authenticate(MediaKind.VIDEO, frames, turned)).approved)
        # The identity frames are another person's.
        d = decide_authenticate(one_person([front(0.1), front(0.2), front(0.15)]))
        self.assertEqual(d.reason, "FACE_MISMATCH")
        # Out of view, or in profile, in some frames.
        frames = [front(0.7), [], [face(200.0, 0.2, 85.0)], front(0.7)]
        self.assertTrue(decide_authenticate(one_person(frames)).approved)
        # Too few identity frames: the reason most frames were refused for.
        frames = [front(0.7), [face(200.0, 0.2, 50.0)], [face(200.0, 0.2, 50.0)]]
        self.assertEqual(decide_authenticate(one_person(frames)).reason, "FACE_NOT_FRONTAL")
        self.assertEqual(decide_authenticate(one_person([[], [], front(0.7)])).reason, "NO_FACE_DETECTED")
        # A second large face in any frame.
        frames = [front(0.7), front(0.7), [face(200.0, 0.7), face(150.0, 0.0)]]
        self.assertEqual(decide_authenticate(one_person(frames)).reason, "MULTIPLE_FACES_DETECTED")
        dark = lambda s: [face(200.0, s, brightness=0.05)]
        d = decide_authenticate(one_person([dark(0.2), dark(0.25), dark(0.1)]))
        self.assertEqual(d.reason, "FACE_TOO_DARK")

    def test_an_even_count_scores_the_mean_of_the_middle_two_in_f32(self):
        d = decide_authenticate(one_person([front(0.6), front(0.8), front(0.4), front(0.5)]))
        self.assertEqual(d.score, app.f32(app.f32(0.5 + 0.6) / 2))


def from_json(cls, value):
    """The host's recorded evidence (serde JSON) as the bindings' dataclasses."""
    if cls is MediaKind:
        return MediaKind[value.upper()]
    if hasattr(cls, "__dataclass_fields__"):
        kinds = {f.name: f.type for f in cls.__dataclass_fields__.values()}
        # A field the recording predates (an option, e.g. `duplicates`) is None.
        return cls(**{k: from_json(t, value[k]) if k in value else None for k, t in kinds.items()})
    if getattr(cls, "__origin__", None) is list:
        return [from_json(cls.__args__[0], v) for v in value]
    return value


@unittest.skipUnless(SELFCHECK.is_dir(), f"no {SELFCHECK}")
class HostSelfCheck(unittest.TestCase):
    """The evidence the host decides before a variant takes traffic."""

    def load(self, cls, name):
        return from_json(cls, json.loads((SELFCHECK / name).read_text()))

    def test_refuses_what_the_host_requires_refused(self):
        self.assertEqual(decide_enroll(self.load(EnrollEvidence, "enroll_no_face.json")).reason, "NO_FACE_DETECTED")
        stranger = self.load(AuthenticateEvidence, "authenticate_stranger.json")
        self.assertEqual(decide_authenticate(stranger).reason, "FACE_MISMATCH")
        two = self.load(AuthenticateEvidence, "authenticate_two_people.json")
        self.assertEqual(decide_authenticate(two).reason, "MULTIPLE_FACES_DETECTED")
        self.assertTrue(decide_authenticate(self.load(AuthenticateEvidence, "authenticate_video.json")).approved)


if __name__ == "__main__":
    unittest.main()
