"""Host-faithful Python copy of the face pipeline stages that passive liveness depends on.

Mirrors crates/faceauth-core/src/vision/models.rs and crates/faceauth-core/src/media/video.rs (read, not imported):

* images: decoded with EXIF orientation applied (PIL `ImageOps.exif_transpose`), RGB;
* videos: ffprobe duration, then `ffmpeg -t 30 -vf fps=N/d,scale<=1280` (2 fps when the
  duration is unknown), at most N frames, black frames (mean luma < 16) dropped, then
  motion-blurred frames (whole-frame Laplacian variance of a 160 px wide copy under 1/4 of
  the clip's upper median) dropped, at most half of the clip;
* detector (`fr_detect.onnx`): aspect-preserving pyramid exactly as `FaceAnalyzer::detect`
  (letterboxed coarse level at the top-left, padding 127, finer x2 levels down to a 40 px
  face spanning 24 detector pixels, 320x240 tiles overlapping by 64 px, the host's
  tile-edge and size rules), score >= 0.6, NMS IoU 0.4 per window then IoU 0.4 /
  containment 0.7 over all; the primary face is the LARGEST box;
* landmarks (68 points) on the box crop resized to 64x64 (triangle filter), BT.601 grey / 256;
* pose = `geometry::estimate_pose`; sharpness = variance of the Laplacian of the
  112x112 aligned grey face (least-squares similarity onto the 5-point template);
* liveness crop = `FaceAnalyzer::liveness`: box scaled by the model's crop scale around
  its centre, scale clamped to min(scale, (H-1)/bh, (W-1)/bw), shifted inside the image,
  integer origin / size truncated, resized to 80x80, BGR raw 0-255 NCHW, softmax out.

The host's `image::imageops::resize(.., FilterType::Triangle)` is reproduced with PIL's
BILINEAR resize, which is the same separable triangle filter with its support widened by
the down-scaling factor (anti-aliased). Variants studied here add other box shapes,
scale factors and OpenCV filters (see `CONFIGS`).
"""
from __future__ import annotations

import json
import math
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[3]
MODELS = REPO / "models"
SHARED = REPO.parent / "shared"

DET_W, DET_H = 320, 240
SCORE_MIN = 0.6
NMS_IOU = 0.4
NMS_CONTAINMENT = 0.7
TILE_OVERLAP = 64
DETECTOR_MIN_FACE = 24.0
MIN_FACE_PX = 40.0
LIVE_SIDE = 80
LIVENESS_SCALES = (2.7, 4.0)  # V2, V1SE
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)

# ------------------------------------------------------------------ crop variants
BOX_MODES = ("raw", "sqmax")  # raw = the host today; sqmax = square on the larger side
FACTORS = (0.8, 0.9, 1.0, 1.1, 1.2)       # times the nominal 2.7 / 4.0
FILTERS = ("tri", "linear", "area")       # tri = PIL bilinear = host FilterType::Triangle
CONFIGS = [(b, f, r) for b in BOX_MODES for f in FACTORS for r in FILTERS]
# Tight face crops (apfolcrop__*): the scale is clamped to the whole picture at any factor.
CONFIGS_CROPS = [(b, 1.0, r) for b in BOX_MODES for r in FILTERS]


def config_name(c) -> str:
    return f"{c[0]}/x{c[1]:.1f}/{c[2]}"


def session(path: Path) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=o, providers=["CPUExecutionProvider"])


def pil_resize(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    """Anti-aliased triangle filter, as image::imageops::resize(FilterType::Triangle)."""
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))


def luma(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float32)
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def laplacian_variance(grey: np.ndarray) -> float:
    g = grey.astype(np.float64)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


# ------------------------------------------------------------------ media

def read_image(path: Path) -> np.ndarray | None:
    try:
        im = Image.open(path)
        im = ImageOps.exif_transpose(im).convert("RGB")
    except Exception:
        return None
    return np.asarray(im)


def probe_duration(path: Path) -> float | None:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "format=duration", "-of", "json", str(path)], capture_output=True, text=True)
    try:
        d = float(json.loads(out.stdout)["format"]["duration"])
        return d if math.isfinite(d) else None
    except Exception:
        return None


def sample_video(path: Path, max_frames: int = 24, max_secs: float = 30.0) -> tuple[list[np.ndarray], dict]:
    """Frames as the host samples them (RGB), plus what was dropped."""
    d = probe_duration(path)
    fps = min(max(max_frames / d, 0.05), 30.0) if d and d > 0 else 2.0
    vf = f"fps={fps:.6f},scale='min(1280,iw)':'min(1280,ih)':force_original_aspect_ratio=decrease"
    with tempfile.TemporaryDirectory(prefix="ls-frames-") as tmp:
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-t", f"{max_secs}", "-i", str(path), "-an",
                        "-vf", vf, "-frames:v", str(max_frames), str(Path(tmp) / "f%03d.png")], check=True)
        frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(Path(tmp).glob("f*.png"))]
    info = {"duration": d, "decoded": len(frames)}
    frames = [f for f in frames if luma(f).mean() >= 16]
    info["black_dropped"] = info["decoded"] - len(frames)
    if frames:
        sharp = []
        for f in frames:
            w = min(max(f.shape[1], 1), 160)
            h = max(1, f.shape[0] * w // max(f.shape[1], 1))
            sharp.append(laplacian_variance(luma(cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR))))
        cut = sorted(sharp)[len(sharp) // 2] * 0.25
        blurred = sorted([i for i in range(len(frames)) if sharp[i] < cut], key=lambda i: sharp[i])
        blurred = set(blurred[: len(frames) // 2])
        info["blur_dropped"] = len(blurred)
        frames = [f for i, f in enumerate(frames) if i not in blurred]
    return frames, info


# ------------------------------------------------------------------ geometry

def _iou_cont(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    aa = max(a[2] - a[0], 0) * max(a[3] - a[1], 0)
    ab = max(b[2] - b[0], 0) * max(b[3] - b[1], 0)
    union = aa + ab - inter
    sm = min(aa, ab)
    return (inter / union if union > 0 else 0.0), (inter / sm if sm > 0 else 0.0)


def nms(dets, iou_thr, cont_thr):
    dets = sorted(dets, key=lambda d: -d[1])
    kept = []
    for box, s in dets:
        if not any((lambda ic: ic[0] > iou_thr or ic[1] > cont_thr)(_iou_cont(k[0], box)) for k in kept):
            kept.append((box, s))
    return kept


def tile_origins(w, h):
    def axis(n, win):
        if n <= win:
            return [0]
        step = win - TILE_OVERLAP
        starts, s = [], 0
        while s + win < n:
            starts.append(s)
            s += step
        starts.append(n - win)
        return starts
    return [(x, y) for y in axis(h, DET_H) for x in axis(w, DET_W)]


class Pipeline:
    def __init__(self, models: Path = MODELS):
        self.det = session(models / "fr_detect.onnx")
        self.lmk = session(models / "fr_landmark.onnx")
        self.live = [session(models / "minifasnet_v2_2.7.onnx"), session(models / "minifasnet_v1se_4.0.onnx")]

    # detector ---------------------------------------------------------
    def _run_det(self, img, ox, oy):
        win = np.full((DET_H, DET_W, 3), 127, np.uint8)
        part = img[oy:oy + DET_H, ox:ox + DET_W]
        win[:part.shape[0], :part.shape[1]] = part
        x = ((win.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
        scores, boxes = self.det.run(["scores", "boxes"], {"input": np.ascontiguousarray(x)})
        s = scores[0, :, 1]
        out = []
        for i in np.nonzero(s >= SCORE_MIN)[0]:
            b = boxes[0, i].astype(np.float64)
            out.append(([b[0] * DET_W + ox, b[1] * DET_H + oy, b[2] * DET_W + ox, b[3] * DET_H + oy], float(s[i])))
        return nms(out, NMS_IOU, 1.0)

    def detect(self, rgb, min_face_px=MIN_FACE_PX):
        h, w = rgb.shape[:2]
        coarse = min(DET_W / w, DET_H / h)
        finest = min(DETECTOR_MIN_FACE / max(min_face_px, 1.0), 1.0)
        scales, s = [coarse], coarse
        while s < finest / 1.3:
            s = min(s * 2, finest)
            scales.append(s)
        found = []
        for level, sc in enumerate(scales):
            lw, lh = max(1, round(w * sc)), max(1, round(h * sc))
            li = rgb if (lw == w and lh == h) else pil_resize(rgb, lw, lh)
            sx, sy = w / lw, h / lh
            for ox, oy in tile_origins(lw, lh):
                for b, score in self._run_det(li, ox, oy):
                    bw, bh = b[2] - b[0], b[3] - b[1]
                    if level > 0 and max(bw, bh) > TILE_OVERLAP:
                        continue
                    cut = level > 0 and ((ox > 0 and b[0] <= ox + 1) or (oy > 0 and b[1] <= oy + 1)
                                         or (ox + DET_W < lw and b[2] >= ox + DET_W - 1)
                                         or (oy + DET_H < lh and b[3] >= oy + DET_H - 1))
                    if cut:
                        continue
                    found.append(([min(max(b[0] * sx, 0), w), min(max(b[1] * sy, 0), h),
                                   min(max(b[2] * sx, 0), w), min(max(b[3] * sy, 0), h)], score))
        found = [d for d in found if d[0][2] - d[0][0] >= 2 and d[0][3] - d[0][1] >= 2]
        faces = nms(found, NMS_IOU, NMS_CONTAINMENT)
        faces.sort(key=lambda d: -(d[0][2] - d[0][0]) * (d[0][3] - d[0][1]))
        return faces

    # landmarks, pose, sharpness ----------------------------------------
    def landmarks(self, rgb, box):
        h, w = rgb.shape[:2]
        x0 = min(int(max(box[0], 0)), w - 1)
        y0 = min(int(max(box[1], 0)), h - 1)
        cw = max(min(int(box[2]), w) - x0, 1)
        ch = max(min(int(box[3]), h) - y0, 1)
        crop = pil_resize(np.ascontiguousarray(rgb[y0:y0 + ch, x0:x0 + cw]), 64, 64)
        x = (luma(crop) / 256.0).astype(np.float32)[None, None]
        out = self.lmk.run(["output"], {"input": x})[0][0].astype(np.float64).reshape(68, 2)
        return np.stack([out[:, 0] * cw + x0, out[:, 1] * ch + y0], axis=1)

    @staticmethod
    def pose(lm):
        le, re = lm[36:42].mean(0), lm[42:48].mean(0)
        roll = math.atan2(re[1] - le[1], re[0] - le[0])
        c = (le + re) / 2
        sn, cs = math.sin(-roll), math.cos(-roll)
        up = lambda p: np.array([(p[0] - c[0]) * cs - (p[1] - c[1]) * sn, (p[0] - c[0]) * sn + (p[1] - c[1]) * cs])
        nose, jl, jr = up(lm[30]), up(lm[0]), up(lm[16])
        mouth = up((lm[48] + lm[54]) / 2)
        half = max(abs((jr[0] - jl[0]) / 2), 1e-3)
        yaw = math.asin(min(max((nose[0] - (jl[0] + jr[0]) / 2) / half, -1), 1))
        e2m = max(abs(mouth[1]), 1e-3)
        pitch = math.asin(min(max((nose[1] / e2m - 0.55) * 2, -1), 1))
        return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)

    @staticmethod
    def aligned_sharpness(rgb, lm):
        p5 = np.array([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])
        mu_s, mu_d = p5.mean(0), TEMPLATE.mean(0)
        sc, dc = p5 - mu_s, TEMPLATE - mu_d
        cov = dc.T @ sc / 5
        u, sv, vt = np.linalg.svd(cov)
        d = np.array([1.0, -1.0 if np.linalg.det(cov) < 0 else 1.0])
        r = u @ np.diag(d) @ vt
        var = (sc ** 2).sum() / 5
        if var <= 0:
            return 0.0
        s = (sv * d).sum() / var
        m = np.zeros((2, 3))
        m[:, :2] = s * r
        m[:, 2] = mu_d - s * (r @ mu_s)
        face = cv2.warpAffine(rgb, m, (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return laplacian_variance(luma(face))

    # liveness ------------------------------------------------------------
    @staticmethod
    def crop(rgb, box, scale, box_mode="raw", filt="tri"):
        """FaceAnalyzer::liveness crop (box_mode raw, filt tri = the host today), BGR 80x80."""
        h, w = rgb.shape[:2]
        bw, bh = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
        cx, cy = box[0] + bw / 2, box[1] + bh / 2
        if box_mode == "sqmax":
            bw = bh = max(bw, bh)
        elif box_mode == "sqmean":
            bw = bh = (bw + bh) / 2
        s = max(0.0, min(scale, (h - 1) / bh, (w - 1) / bw))
        nw, nh = bw * s, bh * s
        x0 = min(max(cx - nw / 2, 0.0), max(w - nw, 0.0))
        y0 = min(max(cy - nh / 2, 0.0), max(h - nh, 0.0))
        xi, yi = int(x0), int(y0)
        cw = min(max(int(nw), 1), w - xi)
        ch = min(max(int(nh), 1), h - yi)
        c = np.ascontiguousarray(rgb[yi:yi + ch, xi:xi + cw])
        if filt == "tri":
            out = pil_resize(c, LIVE_SIDE, LIVE_SIDE)
        else:
            interp = cv2.INTER_LINEAR if filt == "linear" else cv2.INTER_AREA
            out = cv2.resize(c, (LIVE_SIDE, LIVE_SIDE), interpolation=interp)
        return out[:, :, ::-1]  # BGR

    def liveness_all(self, rgb, box, configs=CONFIGS):
        """[len(configs), 2 models, 3 classes] softmax outputs."""
        res = np.zeros((len(configs), 2, 3), np.float32)
        for m, (sess, nominal) in enumerate(zip(self.live, LIVENESS_SCALES)):
            batch = np.stack([self.crop(rgb, box, nominal * f, b, r) for (b, f, r) in configs]).astype(np.float32)
            x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
            res[:, m, :] = sess.run(None, {"input": x})[0]
        return res
