// A faceauth decision policy written in JavaScript.
//
// The same decisions as the Python policy (plugins/python-policy/app.py), themselves
// a port of the Rust default policy (plugins/policy-sdk/src/standard.rs,
// Thresholds::DEFAULT), built into a WebAssembly component with componentize-js
// against wit/policy.wit (faceauth:policy@0.4.0). See README.md.
//
// The host calls the four exported functions below. The evidence arrives as plain
// objects with the WIT field names in camelCase (faceBox, relativeSize,
// earlierSimilarities...); `f32` values are numbers, `option<f32>` a number or
// undefined, the `media-kind` enum the string "image" or "video".
//
// Numbers are compared as the Rust policy compares them, in 32-bit floats
// (Math.fround): a similarity of exactly 0.35 (as f32) must match a threshold of 0.35.

const NAME = "js-default";
const VERSION = "0.1.0";

// Every parameter this policy reads: [name, default, smallest, largest allowed].
// The defaults are those of the Rust default policy (Thresholds::DEFAULT).
const PARAMETERS = [
  ["match-threshold", 0.35, -1, 1], // cosine similarity for "same person"
  ["min-face-px", 40, 0, 4096], // smallest face box height, pixels
  ["min-sharpness", 8, 0, 1e6], // variance of Laplacian of the aligned face
  ["max-abs-yaw", 75, 0, 180], // degrees
  ["max-abs-pitch", 75, 0, 180], // degrees
  ["min-brightness", 0.08, 0, 1], // mean luma of the aligned face
  ["ghost-max-relative-size", 0.6, 0, 1], // ID card: a smaller other face is a ghost portrait
  ["selfie-max-other-relative-size", 0.45, 0, 1], // selfie: a larger other face is refused
  ["min-usable-frames", 2, 1, 64], // video: identity frames needed
  ["video-identity-max-abs-yaw", 30, 0, 180], // video: identity frames are this frontal
  ["video-identity-max-abs-pitch", 30, 0, 180],
  ["min-track-similarity", 0.35, -1, 1], // video: same person through the clip
  ["track-max-pose-difference", 20, 0, 180], // video: frames this close in pose are compared
  ["duplicate-threshold", 0, 0, 1], // enrollment: 0 = chosen by gallery size (below)
  ["duplicate-max-fpir", 0.01, 0, 1], // the false-positive identification rate it is chosen for
];

// The embedding's false match rate at each duplicate threshold, over every
// cross-identity pair of LFW View-1 training (1 797 874 pairs): the Rust SDK's
// standard::DUPLICATE_FMR.
const DUPLICATE_FMR = [
  [0.35, 1265 / 1797874],
  [0.4, 270 / 1797874],
  [0.45, 55 / 1797874],
  [0.5, 9 / 1797874],
  [0.575, 4 / 1797874],
  [0.7, 2 / 1797874],
];

/** The lowest measured threshold whose FPIR = 1 - (1 - FMR)^N is at most maxFpir. */
export function duplicateThresholdFor(gallerySize, maxFpir) {
  const n = Number(gallerySize); // a WIT u64 arrives as a BigInt
  const found = DUPLICATE_FMR.find(([, fmr]) => 1 - Math.pow(1 - fmr, n) <= maxFpir);
  return f32((found ?? DUPLICATE_FMR[DUPLICATE_FMR.length - 1])[0]);
}

const f32 = Math.fround;
const approve = (reason, score) => ({ approved: true, reason, score });
const reject = (reason) => ({ approved: false, reason, score: undefined });

/** The parameters as an object {name: value}, or throws a string saying why not. */
function readParams(params) {
  const given = new Map(params.map((p) => [p.name, p.value]));
  const values = {};
  for (const [name, , low, high] of PARAMETERS) {
    if (!given.has(name)) throw `parameter ${name} is missing`;
    const value = given.get(name);
    // Also refuses NaN; infinities are out of range.
    if (!(low <= value && value <= high)) throw `parameter ${name} = ${value} is outside ${low}..=${high}`;
    values[name] = f32(value);
  }
  return values;
}

/** Why `face` fails the quality gates (size, brightness, sharpness, pose), or null. */
function qualityRefusal(face, p) {
  const box = face.faceBox;
  if (box.height < p["min-face-px"] || box.width < p["min-face-px"] * 0.5) return "FACE_TOO_SMALL";
  // Evidence recorded before brightness was measured has none: not refused for it.
  if (face.brightness != null && face.brightness < p["min-brightness"]) return "FACE_TOO_DARK";
  if (face.sharpness < p["min-sharpness"]) return "FACE_TOO_BLURRY";
  if (Math.abs(face.pose.yaw) > p["max-abs-yaw"] || Math.abs(face.pose.pitch) > p["max-abs-pitch"]) {
    return "FACE_NOT_FRONTAL";
  }
  return null;
}

/** ID document: one main portrait of good quality; other faces only as ghosts. */
function enroll(evidence, p) {
  const [primary, ...others] = evidence.faces; // largest first
  if (!primary) return reject("NO_FACE_DETECTED");
  // A large other face is accepted only if it is the same person (a second print).
  if (others.some((o) => o.relativeSize >= p["ghost-max-relative-size"] && o.similarity < p["match-threshold"])) {
    return reject("MULTIPLE_FACES_DETECTED");
  }
  const refusal = qualityRefusal(primary, p);
  if (refusal) return reject(refusal);
  const search = evidence.duplicates;
  if (search != null) {
    const threshold = p["duplicate-threshold"] || duplicateThresholdFor(search.gallerySize, p["duplicate-max-fpir"]);
    if (search.matches.some((m) => m.similarity >= threshold)) return reject("FACE_ALREADY_ENROLLED");
  }
  return approve("ENROLLED_AS_USER", undefined);
}

/** Selfie (one frame) or video (sampled frames): one person, the enrolled one. */
function authenticate(evidence, p) {
  if (evidence.frames.length === 0) return reject("NO_FACE_DETECTED");
  const video = evidence.media === "video";
  const refusals = []; // why each unusable frame was refused
  const identity = []; // similarities to the enrollment of the identity frames
  const tracked = []; // [frame index, primary face] of the frames passing the quality gates
  for (const [index, frame] of evidence.frames.entries()) {
    const [primary, ...others] = frame.faces;
    if (!primary) {
      refusals.push("NO_FACE_DETECTED");
      continue;
    }
    // Someone beside you, or a held-up photo: refused whoever it is.
    if (others.some((o) => o.relativeSize >= p["selfie-max-other-relative-size"])) {
      return reject("MULTIPLE_FACES_DETECTED");
    }
    const refusal = qualityRefusal(primary, p);
    if (refusal) {
      refusals.push(refusal);
      continue;
    }
    if (video) {
      // One person through the clip: this face against every earlier tracked face at
      // a similar pose (the host measured their similarity).
      for (const [earlierIndex, earlier] of tracked) {
        const near =
          Math.abs(f32(earlier.pose.yaw - primary.pose.yaw)) <= p["track-max-pose-difference"] &&
          Math.abs(f32(earlier.pose.pitch - primary.pose.pitch)) <= p["track-max-pose-difference"];
        const s = frame.earlierSimilarities[earlierIndex];
        if (near && s != null && s < p["min-track-similarity"]) return reject("FACE_MISMATCH");
      }
      tracked.push([index, primary]);
    }
    const frontal =
      Math.abs(primary.pose.yaw) <= p["video-identity-max-abs-yaw"] &&
      Math.abs(primary.pose.pitch) <= p["video-identity-max-abs-pitch"];
    if (video && !frontal) refusals.push("FACE_NOT_FRONTAL");
    else identity.push(primary.similarity);
  }
  const needed = Math.min(Math.trunc(Math.max(p["min-usable-frames"], 1)), evidence.frames.length);
  if (identity.length < needed) {
    // Poor evidence is not evidence of another person: say what to fix.
    return reject(mostCommon(refusals) ?? "NO_FACE_DETECTED");
  }
  const score = median(identity);
  return score >= p["match-threshold"] ? approve("AUTHENTIFICATION_SUCCESS", score) : reject("FACE_MISMATCH");
}

/** The median (the mean of the middle two for an even count), in f32. */
function median(values) {
  const v = [...values].sort((a, b) => a - b);
  const n = v.length;
  return n % 2 === 1 ? v[(n - 1) / 2] : f32(f32(v[n / 2 - 1] + v[n / 2]) / 2);
}

/** The most frequent reason (the first seen among equals), or null. */
function mostCommon(reasons) {
  let best = null;
  let bestCount = 0;
  for (const r of reasons) {
    const count = reasons.filter((o) => o === r).length;
    if (count > bestCount) [best, bestCount] = [r, count];
  }
  return best;
}

// The component's exports (kebab-case WIT names in camelCase).

export function info() {
  return {
    name: NAME,
    version: VERSION,
    requiresLiveness: false,
    params: PARAMETERS.map(([name, value]) => ({ name, value })),
  };
}

/** result<_, string>: returning is ok, throwing a string is err(string). */
export function checkParams(params) {
  readParams(params);
}

export function decideEnroll(params, evidence) {
  let p;
  try {
    p = readParams(params);
  } catch {
    return reject("INVALID_POLICY_PARAMS");
  }
  return enroll(evidence, p);
}

export function decideAuthenticate(params, evidence) {
  let p;
  try {
    p = readParams(params);
  } catch {
    return reject("INVALID_POLICY_PARAMS");
  }
  return authenticate(evidence, p);
}
