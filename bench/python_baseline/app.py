"""The straightforward Python server of issue 9: the same three ONNX models as faceauth,
used the plain way (scripts/eval/reference_pipeline.py): OpenCV decode, the whole image
squashed into the detector's 320x240 input, the largest face embedded. Wire-compatible
with faceauth's enroll / authentificate / reset / health endpoints (still images only).

    gunicorn -w 2 -b 127.0.0.1:5001 --no-control-socket --chdir bench/python_baseline app:app

Embeddings live in a dict in each worker; gunicorn's workers are separate processes,
so each enrollment is also written to BASELINE_DATA_DIR (one .npy per user) and a
worker that does not have a user (or has an older copy) reads it from there.
"""

import os
import sys
import tempfile

import cv2
import numpy as np
from flask import Flask, jsonify, request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "scripts", "eval"))
import reference_pipeline as rp  # noqa: E402  (detect, landmarks68, umeyama, embed)

# the default policy's match threshold (plugins/default-policy: similarity >= 0.35)
THRESHOLD = float(os.environ.get("BASELINE_MATCH_THRESHOLD", "0.35"))
DATA = os.environ.get("BASELINE_DATA_DIR") or tempfile.mkdtemp(prefix="baseline-")
os.makedirs(DATA, exist_ok=True)
# one model set per gunicorn worker; one ONNX Runtime thread each, as faceauth's workers
# (ONNX Runtime's default, one per core, makes 2 workers x 2 spinning threads on 2 cores)
models = rp.Models(os.path.join(REPO, "models"), threads=int(os.environ.get("BASELINE_ORT_THREADS", "1")))
users = {}  # username -> (mtime_ns of its file, embedding)

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 20 * 1024 * 1024  # faceauth's --max-upload-bytes
app.json.sort_keys = False  # keys in faceauth's order


def embedding_of(data):
    """Largest face's embedding, None when there is no face; raises ValueError when
    the bytes are not an image OpenCV can decode."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("not a decodable image")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    faces = rp.detect(models, rgb)
    if not faces:
        return None
    box, _score = rp.largest(faces)
    lm = rp.landmarks68(models, rgb, box)
    if lm is None:
        return None
    return rp.embed(models, rgb, rp.umeyama(rp.five_points(lm), rp.TEMPLATE))


def user_path(name):
    return os.path.join(DATA, name.encode().hex() + ".npy")


def lookup(name):
    try:
        mtime = os.stat(user_path(name)).st_mtime_ns
    except FileNotFoundError:
        users.pop(name, None)
        return None
    if name not in users or users[name][0] != mtime:
        users[name] = (mtime, np.load(user_path(name)))
    return users[name][1]


def upload(field):
    name = (request.args.get("username") or request.form.get("username") or "").strip()
    f = request.files.get(field)
    data = f.read() if f else b""
    if not name:
        return name, None, "MISSING_USERNAME", 400
    if not data:
        return name, None, "MISSING_FILE" if f is None else "EMPTY_FILE", 400
    try:
        return name, embedding_of(data), None, 200
    except ValueError:
        return name, None, "UNSUPPORTED_MEDIA_TYPE", 415


@app.post("/api/enroll")
def enroll():
    name, emb, err, status = upload("cin_file")
    if err is None and lookup(name) is not None:
        err, status = "USERNAME_ALREADY_EXISTS", 409
    if err is None and emb is None:
        err = "NO_FACE_DETECTED"
    if err is None:
        tmp = os.path.join(DATA, ".%d.tmp.npy" % os.getpid())
        np.save(tmp, emb)
        os.replace(tmp, user_path(name))
        return jsonify(trained="success", EnrollStatus="APPROVED", DecisionReason="ENROLLED_AS_USER")
    return jsonify(trained="failed", EnrollStatus="REJECTED", DecisionReason=err), status


@app.post("/api/authentificate")
def authentificate():
    name, emb, err, status = upload("auth_video")
    ref = lookup(name) if err is None else None
    if err is None and ref is None:
        err, status = "UNKNOWN_USER", 404
    if err is None and emb is None:
        err = "NO_FACE_DETECTED"
    if err is None:
        score = float(np.dot(emb, ref))
        if score >= THRESHOLD:
            return jsonify(score=round(score, 6), Decision="APPROVED", DecisionReason="AUTHENTIFICATION_SUCCESS")
        err = "FACE_MISMATCH"
    return jsonify(score=None, Decision="REJECTED", DecisionReason=err), status


@app.post("/api/reset")
def reset():
    for f in os.listdir(DATA):
        if f.endswith(".npy"):
            os.remove(os.path.join(DATA, f))
    users.clear()
    return jsonify(code=200, msg="DONE")


@app.get("/health")
def health():
    return jsonify(status="ok")
