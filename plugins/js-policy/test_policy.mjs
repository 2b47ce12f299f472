// Native unit tests of policy.mjs (plain Node.js, node:test), run by build.sh before
// the component is built: `node --test plugins/js-policy/test_policy.mjs`.
// The Rust default policy's unit tests (plugins/default-policy/src/lib.rs), ported,
// plus the host's recorded self-check evidence.

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";

import { checkParams, decideAuthenticate, decideEnroll, info } from "./policy.mjs";

const DEFAULTS = info().params;
const SELFCHECK = new URL("../../crates/faceauth-core/src/policy/selfcheck/", import.meta.url);

/** A sharp face of `height` pixels, as in faceauth_policy_sdk::testing::face. */
function face(height, similarity, { yaw = 0, pitch = 0, brightness = 0.45, sharpness = 500 } = {}) {
  return {
    detectorScore: 0.99,
    faceBox: { x: 10, y: 10, width: height * 0.8, height },
    relativeArea: 0.1,
    relativeSize: 1,
    sharpness,
    pose: { yaw, pitch, roll: 0 },
    similarity,
    liveness: undefined,
    eyesOpen: undefined,
    brightness,
  };
}

/** Largest first, with relativeSize set, as the host sends them. */
function sorted(faces) {
  faces = [...faces].sort((a, b) => b.faceBox.height - a.faceBox.height);
  for (const f of faces) f.relativeSize = f.faceBox.height / faces[0].faceBox.height;
  return faces;
}

const enroll = (faces, search) => ({ image: { width: 1000, height: 700 }, faces: sorted(faces), duplicates: search });
const searched = (gallerySize, similarities) => ({
  gallerySize: BigInt(gallerySize),
  matches: similarities.map((similarity) => ({ similarity })),
});

/** `track(i, j)`: similarity of the primary faces of frames i < j (earlier-similarities). */
function authenticate(media, frames, track) {
  frames = frames.map((faces, i) => ({ timestampMs: i * 250, faces: sorted(faces), earlierSimilarities: [] }));
  if (track) {
    frames.forEach((frame, j) => {
      frame.earlierSimilarities = frames
        .slice(0, j)
        .map((earlier, i) => (earlier.faces.length && frame.faces.length ? track(i, j) : undefined));
    });
  }
  // The summary is not read by this policy.
  return { media, image: { width: 1000, height: 700 }, frames, summary: {} };
}

const image = (faces) => authenticate("image", [faces]);
const onePerson = (frames) => authenticate("video", frames, () => 0.8);
const front = (s) => [face(200, s)];
const auth = (evidence, params = DEFAULTS) => decideAuthenticate(params, evidence);
const enrol = (evidence, params = DEFAULTS) => decideEnroll(params, evidence);
const withParam = (name, value) => DEFAULTS.map((p) => (p.name === name ? { name, value } : p));

test("parameters: defaults valid, out of range refused, a stricter variant", () => {
  checkParams(DEFAULTS);
  assert.throws(() => checkParams(DEFAULTS.filter((p) => p.name !== "min-face-px")), /min-face-px is missing/);
  for (const bad of [2, NaN, Infinity]) {
    assert.throws(() => checkParams(withParam("match-threshold", bad)));
    assert.equal(enrol(enroll([face(120, 1)]), withParam("match-threshold", bad)).reason, "INVALID_POLICY_PARAMS");
  }
  assert.ok(auth(image(front(0.7))).approved);
  assert.equal(auth(image(front(0.7)), withParam("match-threshold", 0.75)).reason, "FACE_MISMATCH");
  // 0.35 as an f32 is 0.3499999940...: the Rust policy approves it.
  assert.ok(auth(image(front(Math.fround(0.35)))).approved);
});

test("enroll: one good face, ghost portraits, strangers and poor faces", () => {
  assert.equal(enrol(enroll([face(120, 1), face(40, 0.1)])).reason, "ENROLLED_AS_USER");
  assert.ok(enrol(enroll([face(120, 1), face(110, 0.8)])).approved);
  const reason = (faces) => enrol(enroll(faces)).reason;
  assert.equal(reason([face(120, 1), face(100, 0.05)]), "MULTIPLE_FACES_DETECTED");
  assert.equal(reason([]), "NO_FACE_DETECTED");
  assert.equal(reason([face(30, 1)]), "FACE_TOO_SMALL");
  assert.equal(reason([face(120, 1, { sharpness: 3 })]), "FACE_TOO_BLURRY");
  assert.equal(reason([face(120, 1, { yaw: 85 })]), "FACE_NOT_FRONTAL");
  assert.equal(reason([face(120, 1, { brightness: 0.05 })]), "FACE_TOO_DARK");
});

test("enroll: a face already enrolled, at a threshold by gallery size", () => {
  const reason = (n, sims) => enrol(enroll([face(120, 1)], searched(n, sims))).reason;
  assert.equal(reason(0, []), "ENROLLED_AS_USER");
  assert.equal(reason(100, [0.42, 0.2]), "ENROLLED_AS_USER");
  assert.equal(reason(100, [0.55, 0.2]), "FACE_ALREADY_ENROLLED");
  assert.equal(reason(5000, [0.55]), "ENROLLED_AS_USER");
  assert.equal(reason(5000, [0.93]), "FACE_ALREADY_ENROLLED");
});

test("authenticate an image: the primary face only", () => {
  assert.deepEqual(auth(image(front(0.7))), { approved: true, reason: "AUTHENTIFICATION_SUCCESS", score: 0.7 });
  assert.deepEqual(auth(image(front(0.2))), { approved: false, reason: "FACE_MISMATCH", score: undefined });
  assert.equal(auth(image([face(200, 0.1), face(180, 0.9)])).reason, "MULTIPLE_FACES_DETECTED");
  assert.ok(auth(image([face(200, 0.7), face(40, 0)])).approved);
  assert.equal(auth(image([])).reason, "NO_FACE_DETECTED");
  assert.equal(auth(image([face(200, 0.2, { brightness: 0.05 })])).reason, "FACE_TOO_DARK");
  assert.ok(auth(image([face(200, 0.7, { brightness: undefined })])).approved);
});

test("authenticate a video: frontal frames decide, its own track must hold", () => {
  assert.equal(auth(onePerson([front(0.7), front(0.72), front(0.68)])).score, 0.7);
  const up = [face(200, 0.16, { yaw: 5, pitch: 33 })];
  const turned = [face(200, 0.31, { yaw: 54 })];
  assert.ok(auth(onePerson([front(0.75), up, turned, front(0.7)])).approved);
  const spliced = (i, j) => ((i < 2) === (j < 2) ? 0.8 : 0.1);
  const frames = [front(0.75), front(0.7), [face(200, 0.1, { yaw: 5 })], [face(200, 0.12, { yaw: 40 })]];
  assert.equal(auth(authenticate("video", frames, spliced)).reason, "FACE_MISMATCH");
  const apart = (i, j) => (i === 0 && j === 1 ? 0.1 : 0.8);
  assert.ok(auth(authenticate("video", [front(0.75), [face(200, 0.2, { yaw: 45 })], front(0.7)], apart)).approved);
  assert.equal(auth(onePerson([front(0.1), front(0.2), front(0.15)])).reason, "FACE_MISMATCH");
  assert.ok(auth(onePerson([front(0.7), [], [face(200, 0.2, { yaw: 85 })], front(0.7)])).approved);
  const side = [face(200, 0.2, { yaw: 50 })];
  assert.equal(auth(onePerson([front(0.7), side, side])).reason, "FACE_NOT_FRONTAL");
  assert.equal(auth(onePerson([[], [], front(0.7)])).reason, "NO_FACE_DETECTED");
  const two = [face(200, 0.7), face(150, 0)];
  assert.equal(auth(onePerson([front(0.7), front(0.7), two])).reason, "MULTIPLE_FACES_DETECTED");
  const even = auth(onePerson([front(0.6), front(0.8), front(0.4), front(0.5)])).score;
  assert.equal(even, Math.fround(Math.fround(0.5 + 0.6) / 2));
});

/** The host's recorded evidence (serde JSON, snake_case) as the component receives it. */
function fromJson(value) {
  if (Array.isArray(value)) return value.map(fromJson);
  if (value === null) return undefined;
  if (value === "Image" || value === "Video") return value.toLowerCase();
  if (typeof value !== "object") return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [k.replace(/_([a-z])/g, (_, c) => c.toUpperCase()), fromJson(v)]),
  );
}

test("the host's self-check evidence", { skip: !existsSync(SELFCHECK) }, () => {
  const load = (name) => fromJson(JSON.parse(readFileSync(new URL(name, SELFCHECK), "utf8")));
  assert.equal(enrol(load("enroll_no_face.json")).reason, "NO_FACE_DETECTED");
  assert.equal(auth(load("authenticate_stranger.json")).reason, "FACE_MISMATCH");
  assert.equal(auth(load("authenticate_two_people.json")).reason, "MULTIPLE_FACES_DETECTED");
  assert.ok(auth(load("authenticate_video.json")).approved);
});
