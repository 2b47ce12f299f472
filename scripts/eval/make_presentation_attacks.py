#!/usr/bin/env python3
"""Simulated presentation attacks (ISO/IEC 30107-3 terms) built from real bona fide photos.

Purpose: measure the passive-liveness check (MiniFASNet V2 at 2.7x and V1SE at 4.0x the
face box, 80x80 crops) for APCER (attacks accepted as live) and BPCER (bona fide
presentations rejected) on more faces than the handful of real recaptures we have.
These are *simulations*: they reproduce the artefacts real recaptures show, not a
real attack instrument, so numbers measured on them complement, and never replace,
an evaluation on genuinely re-photographed prints and screens.

Inputs (read only, never copied into the repository):
  SHARED/faces/selfies/tdp-*/*.jpg   phone selfies, 10 people ("evaluation only" licence)
  SHARED/faces/deepface/img*.jpg     deepface test images (MIT)

Outputs (under OUT, default target/presentation-attacks, which git ignores):
  bona_fide/<stem>.jpg  the photo itself, long side capped at 1600 px, JPEG q90
  print/<stem>.jpg      the photo printed on paper and re-photographed
  screen/<stem>.jpg     the photo shown on a phone/monitor and re-photographed
  labels.csv            file,label,attack_type,source (file relative to OUT,
                        source relative to SHARED)
  params.jsonl          the random parameters drawn for every attack image
Every attack is a recapture of the *whole* photo as a camera would see it, at the
bona fide image's size. Each run first deletes OUT/{bona_fide,print,screen}/*.jpg so
stale images from an earlier run cannot linger next to a fresh labels.csv.

Determinism: every image's parameters come from numpy's PCG64 seeded with
(--seed, SHA-256 of the source path, attack kind), so a given seed always produces
the same bytes (same numpy/OpenCV build), independently of --limit or of the order
in which sources are processed.

Why each artefact (what real recaptures show)
---------------------------------------------
print (paper photo held in front of the camera):
  * Reduced dynamic range: paper reflects at most ~85-92 % of the light and the
    darkest ink still reflects ~8-15 %, so recaptured prints never reach the
    sensor's black or white; spoof detectors key on this flat, washed-out tone.
  * Reduced gamut and colour cast: CMYK inks cover less than sRGB (desaturation),
    and paper white plus ink balance tint the whole sheet (warm/cool cast).
  * Halftone / dither and paper fibre: printers render tones as clustered dots at a
    screen angle (laser/offset) or as stochastic dither (inkjet); paper has a fibrous
    surface. Once re-photographed they become a fine, high-frequency texture that a
    live face never has (the cue texture-based PAD relies on most).
    Simulated per ink: the sheet is rendered at >= 2400 px (so dots exist as dots),
    cyan/magenta/yellow screens at 15/75/0 degrees, 350-750 cells across the photo,
    thresholded against ink coverage; the camera then blurs and samples them.
  * Blur: ink spread on paper (dot gain), then a camera refocusing on a flat sheet.
  * Geometry: a hand-held sheet fills only part of the frame, its edge is visible
    against a table/wall background, and it is tilted a few degrees, so the photo is
    a perspective-warped plane (MiniFASNet's 4.0x crop often reaches that edge).
  * Uneven illumination: a flat sheet under room light shows a smooth brightness
    gradient plus lens vignetting, unlike the 3-D shading of a real face.
  * Camera: lens PSF, pixel-area integration, colour filter array (Bayer) mosaic and
    demosaicing, shot and read noise, JPEG (quality 82-88).
screen (photo displayed on a phone or monitor held in front of the camera):
  * Moire: the display's RGB sub-pixel stripes form a regular grid whose pitch on
    the sensor is close to the camera's pixel pitch; sampling one grid with the other
    aliases it into coloured interference fringes. Simulated physically: the panel
    resamples the photo to its own resolution, each panel pixel is rendered as 3x3
    supersamples with an R|G|B stripe mask and a dimmer black-matrix row, blurred by
    the lens PSF, imaged through a slightly rotated, scaled and tilted (perspective)
    camera whose pixels integrate over their area (3x3 samples averaged), then a Bayer
    mosaic/demosaic. Depending on pitch and focus, fringes range from none to strong.
  * Bezel: the dark border of the device around the displayed image.
  * LCD tone: backlight leakage raises the black level; panels run at a cool white
    point (6500-9000 K), giving a blue-ish tint.
  * Glare: the cover glass specularly reflects room lights: a bright blob and a
    broad reflection gradient confined to the glass.
  * Geometry and camera as for print (tilt, in-plane rotation, background, noise).

The displayed/printed photo is never smaller than ~60 % of the frame (linear), and
glare and blur stay moderate, so the face stays clearly visible and detectable: the
point is to test liveness, not detection.

Usage:
  python3 scripts/eval/make_presentation_attacks.py [--shared DIR] [--out DIR]
                                                    [--seed N] [--limit N]
Requires numpy and opencv-python-headless.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_SIDE = 1600
BONA_FIDE_QUALITY = 90
ATTACK_KINDS = ("print", "screen")
SOURCE_GLOBS = ("faces/selfies/tdp-*/*.jpg", "faces/deepface/img*.jpg")


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def rng_for(seed: int, source: str, kind: str) -> np.random.Generator:
    """A generator that depends only on the seed, the source path and the attack kind."""
    digest = hashlib.sha256(f"{source}\0{kind}".encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *words])))


def cap_size(img: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s >= 1.0:
        return img
    return cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def to_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0


def to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def write_jpeg(path: Path, img_u8: np.ndarray, quality: int) -> None:
    ok, buf = cv2.imencode(".jpg", img_u8, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    path.write_bytes(buf.tobytes())


def luminance(img: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of a BGR float image, shape (h, w, 1)."""
    return (0.114 * img[..., 0] + 0.587 * img[..., 1] + 0.299 * img[..., 2])[..., None]


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0.05:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma))


def unit_noise(rng: np.random.Generator, shape: tuple[int, int], sx: float, sy: float) -> np.ndarray:
    """Gaussian noise low-passed with (sx, sy) and renormalised to unit std."""
    n = rng.standard_normal(shape, dtype=np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigmaX=float(sx), sigmaY=float(sy))
    return n / max(float(n.std()), 1e-6)


def linear_ramp(h: int, w: int, angle: float) -> np.ndarray:
    """A ramp from -0.5 to 0.5 across the frame along direction `angle` (radians)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    d = (xs - w / 2) * math.cos(angle) + (ys - h / 2) * math.sin(angle)
    span = abs(w * math.cos(angle)) + abs(h * math.sin(angle))
    return d / max(span, 1.0)


def vignette(h: int, w: int, strength: float) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xs - w / 2) / (w / 2)) ** 2 + ((ys - h / 2) / (h / 2)) ** 2
    return 1.0 - strength * r2 / 2.0


# --------------------------------------------------------------------------------------
# Scene: background, geometry, camera
# --------------------------------------------------------------------------------------


def background(rng: np.random.Generator, h: int, w: int, p: dict) -> np.ndarray:
    """A table- or wall-like surface: a low-saturation colour, a gradient, faint texture."""
    hue = rng.uniform(0, 360)  # OpenCV float HSV: hue in degrees
    sat = rng.uniform(0.05, 0.35)
    val = rng.uniform(0.25, 0.75)
    hsv = np.array([[[hue, sat, val]]], np.float32)
    base = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    ramp = linear_ramp(h, w, rng.uniform(0, 2 * math.pi))
    grad = rng.uniform(0.1, 0.4)
    tex_amp = rng.uniform(0.005, 0.03)
    tex = unit_noise(rng, (h, w), rng.uniform(1, 6), rng.uniform(1, 6))
    bg = base[None, None, :] * (1.0 + grad * ramp)[..., None] * (1.0 + tex_amp * tex)[..., None]
    p.update(bg_hsv=[round(hue, 1), round(sat, 3), round(val, 3)], bg_gradient=round(grad, 3),
             bg_texture=round(tex_amp, 4))
    return bg.astype(np.float32)


def plane_homography(src_w: float, src_h: float, frame_w: int, frame_h: int, size_frac: float,
                     centre: tuple[float, float], rx: float, ry: float, rz: float,
                     focal: float, extent: tuple[float, float, float, float]) -> tuple[np.ndarray, float]:
    """Homography from a planar object's pixel grid to the camera frame.

    The object (src_w x src_h, in its own pixel units) is scaled so that the rectangle
    `extent` = (x0, y0, x1, y1) in object units (e.g. the whole sheet or device) spans
    `size_frac` of the frame at zero tilt; it is then rotated by rx, ry (tilt, radians)
    and rz (in plane), placed at `centre` (fractions of the frame) at distance `focal`
    from a pinhole camera (so zero tilt is a pure scaling) and projected. If the tilted
    outline would leave the frame, the object is shrunk until it fits (never grown).
    Returns (H, scale), scale being frame pixels per object pixel before tilt.
    """
    x0, y0, x1, y1 = extent
    scale = size_frac * min(frame_w / (x1 - x0), frame_h / (y1 - y0))
    cx_obj, cy_obj = (x0 + x1) / 2, (y0 + y1) / 2
    cz, sz = math.cos(rz), math.sin(rz)
    cx, sx = math.cos(rx), math.sin(rx)
    cy, sy = math.cos(ry), math.sin(ry)
    rot = (np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
           @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
           @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]))

    def project(pts: np.ndarray, k: float) -> np.ndarray:
        xyz = np.column_stack([(pts[:, 0] - cx_obj) * k, (pts[:, 1] - cy_obj) * k, np.zeros(len(pts))])
        xyz = xyz @ rot.T
        xyz[:, 2] += focal
        return np.column_stack([focal * xyz[:, 0] / xyz[:, 2] + centre[0] * frame_w,
                                focal * xyz[:, 1] / xyz[:, 2] + centre[1] * frame_h])

    outline = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    margin = 0.01 * min(frame_w, frame_h)
    for _ in range(60):
        q = project(outline, scale)
        if (q[:, 0].min() >= margin and q[:, 1].min() >= margin
                and q[:, 0].max() <= frame_w - margin and q[:, 1].max() <= frame_h - margin):
            break
        scale *= 0.99
    src = np.array([[0, 0], [src_w, 0], [src_w, src_h], [0, src_h]], np.float64)
    h_mat = cv2.getPerspectiveTransform(src.astype(np.float32), project(src, scale).astype(np.float32))
    return h_mat, scale


def draw_pose(rng: np.random.Generator, p: dict, max_tilt: float,
              max_roll: float) -> tuple[float, float, float]:
    """Tilt about both in-plane axes (+-max_tilt degrees) and in-plane roll."""
    rx = math.radians(rng.uniform(-max_tilt, max_tilt))
    ry = math.radians(rng.uniform(-max_tilt, max_tilt))
    rz = math.radians(rng.uniform(-max_roll, max_roll))
    p.update(tilt_x_deg=round(math.degrees(rx), 2), tilt_y_deg=round(math.degrees(ry), 2),
             roll_deg=round(math.degrees(rz), 2))
    return rx, ry, rz


def quad_mask(h_mat: np.ndarray, rect: tuple[float, float, float, float], w: int, h: int) -> np.ndarray:
    """Anti-aliased coverage (h, w, 1) of rectangle `rect` (object units) mapped by h_mat."""
    x0, y0, x1, y1 = rect
    pts = np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    dst = cv2.perspectiveTransform(pts[None], h_mat)[0]
    unit = cv2.getPerspectiveTransform(np.float32([[0, 0], [64, 0], [64, 64], [0, 64]]), dst)
    return cv2.warpPerspective(np.ones((64, 64), np.float32), unit, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]


def sensor_sample(img: np.ndarray, h_mat: np.ndarray, w: int, h: int, sub: int = 3) -> np.ndarray:
    """Image a plane onto the sensor: sample it at sub x sub points per camera pixel and
    average them (each camera pixel integrates the light over its area). `img` must
    already carry the lens PSF. This box integration, not an ideal low-pass, is what
    lets fine periodic patterns (sub-pixels, halftone) alias into moire."""
    up = np.array([[sub, 0, 0], [0, sub, 0], [0, 0, 1]], np.float64)
    # Pixel centres: camera pixel (x, y) spans [x - .5, x + .5]; sub-sample j sits at
    # x - .5 + (j + .5) / sub.
    shift = np.array([[1, 0, (sub - 1) / 2], [0, 1, (sub - 1) / 2], [0, 0, 1]], np.float64)
    fine = cv2.warpPerspective(img, shift @ up @ h_mat, (w * sub, h * sub), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.resize(fine, (w, h), interpolation=cv2.INTER_AREA)


def camera(rng: np.random.Generator, scene: np.ndarray, p: dict, isp_blur: float) -> np.ndarray:
    """Exposure, Bayer colour filter array + demosaicing, sensor noise, ISP softness."""
    h, w = scene.shape[:2]
    gain = rng.uniform(0.95, 1.08)
    # The sensor sees one colour per pixel (RGGB); the ISP interpolates the rest.
    # This adds the colour aliasing real recaptures show on fine periodic patterns.
    u8 = to_u8(scene * gain)
    bayer = np.empty((h, w), np.uint8)
    bayer[0::2, 0::2] = u8[0::2, 0::2, 2]  # R
    bayer[0::2, 1::2] = u8[0::2, 1::2, 1]  # G
    bayer[1::2, 0::2] = u8[1::2, 0::2, 1]  # G
    bayer[1::2, 1::2] = u8[1::2, 1::2, 0]  # B
    img = to_float(cv2.cvtColor(bayer, cv2.COLOR_BayerBG2BGR))  # OpenCV's name for RGGB
    img = blur(img, isp_blur)
    # Signal-dependent (shot) plus constant (read) noise, a little chroma noise.
    shot = rng.uniform(0.0002, 0.0012)
    read = rng.uniform(0.003, 0.008)
    sigma = np.sqrt(shot * np.clip(img, 0, 1) + read**2)
    lum_n = rng.standard_normal((h, w, 1), dtype=np.float32)
    chroma_n = rng.standard_normal((h, w, 3), dtype=np.float32) * 0.4
    img = img + sigma * (lum_n + chroma_n)
    p.update(exposure_gain=round(gain, 3), isp_blur_px=round(isp_blur, 3),
             shot_noise=round(shot, 5), read_noise=round(read, 4))
    return np.clip(img, 0, 1)


# --------------------------------------------------------------------------------------
# Attacks
# --------------------------------------------------------------------------------------


def _spot_lut(bins: int = 4096) -> np.ndarray:
    """Lookup table from the clustered-dot spot function's value (0..1, quantised to
    `bins` steps) to its cumulative distribution over one period, so that thresholding
    against it inks exactly the requested fraction of the area."""
    u, v = np.meshgrid(np.linspace(0, 1, 256, endpoint=False), np.linspace(0, 1, 256, endpoint=False))
    s = np.sort((0.5 + 0.25 * (np.cos(2 * np.pi * u) + np.cos(2 * np.pi * v))).ravel())
    return np.interp(np.linspace(0, 1, bins + 1), s, np.linspace(0, 1, s.size)).astype(np.float32)


SPOT_LUT = _spot_lut()


def halftone(coverage: np.ndarray, rng: np.random.Generator, period: float, mode: str,
             angle0: float) -> np.ndarray:
    """Binary-ish ink map (h, w, 3) from ink coverage per channel (h, w, 3).

    ordered: AM clustered-dot screens, one per ink, at the classic angles (cyan 15,
    magenta 75, yellow 0 degrees, plus a common rotation), as laser/offset prints.
    stochastic: FM dither of fine random grains, as inkjet prints.
    Edges are anti-aliased over about one paper pixel.
    """
    h, w = coverage.shape[:2]
    ink = np.empty_like(coverage)
    if mode == "ordered":
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        # BGR channels are printed by yellow, magenta, cyan respectively.
        for c, offset in ((0, 0.0), (1, 75.0), (2, 15.0)):
            a = math.radians(angle0 + offset)
            xr = (xs * math.cos(a) + ys * math.sin(a)) * (2 * math.pi / period)
            yr = (-xs * math.sin(a) + ys * math.cos(a)) * (2 * math.pi / period)
            spot = 0.5 + 0.25 * (np.cos(xr) + np.cos(yr))
            thr = SPOT_LUT[(spot * (SPOT_LUT.size - 1) + 0.5).astype(np.int32)]
            ink[..., c] = np.clip((coverage[..., c] - thr) * (period / 2) + 0.5, 0, 1)
    else:
        grain = max(0.6, 0.12 * period)
        for c in range(3):
            n = rng.standard_normal((h, w), dtype=np.float32)
            n = cv2.GaussianBlur(n, (0, 0), grain) - cv2.GaussianBlur(n, (0, 0), 3 * grain)
            n /= max(float(n.std()), 1e-6)
            thr = 1.0 / (1.0 + np.exp(-1.702 * n))  # ~ uniform on [0, 1]
            ink[..., c] = np.clip((coverage[..., c] - thr) * 4.0 + 0.5, 0, 1)
    return ink


def make_print(photo: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Photo printed on paper, held in front of the camera and re-photographed."""
    h, w = photo.shape[:2]
    p: dict = {}

    # Print tone: gamut (desaturation), tone curve, range of ink on paper, colour cast.
    sat = rng.uniform(0.70, 0.90)
    gamma = rng.uniform(0.90, 1.15)
    paper_white = rng.uniform(0.85, 0.92)
    ink_black = rng.uniform(0.08, 0.15)
    cast = rng.uniform(-0.04, 0.04, 3).astype(np.float32)  # per BGR channel
    lum = luminance(photo)
    tone = np.power(np.clip(lum + sat * (photo - lum), 0, 1), gamma)  # 1 = bare paper

    # The paper is rendered finer than the photo (>= 2400 px on the long side) so
    # that halftone dots exist as such before the camera images them.
    ss = max(2, math.ceil(2400 / max(h, w)))
    ph, pw = h * ss, w * ss
    tone = cv2.resize(tone, (pw, ph), interpolation=cv2.INTER_LINEAR)
    lines = rng.uniform(350, 750)  # halftone cells across the photo's long side
    period = max(ph, pw) / lines
    mode = "ordered" if rng.random() < 0.5 else "stochastic"
    angle0 = rng.uniform(0, 90)
    ink = halftone(1.0 - tone, rng, period, mode, angle0)
    del tone
    dot_gain = max(0.5, rng.uniform(0.08, 0.2) * period)  # ink spreading into the paper
    ink = blur(ink, dot_gain)
    white = paper_white * (1.0 + cast)
    black = ink_black * (1.0 + 0.5 * cast)

    # The sheet: a paper margin around the photo, paper fibre over all of it.
    margin_frac = rng.uniform(0.02, 0.06)
    m = max(2, round(margin_frac * min(ph, pw)))
    sh, sw = ph + 2 * m, pw + 2 * m
    sheet = np.empty((sh, sw, 3), np.float32)
    sheet[:] = white
    sheet[m : m + ph, m : m + pw] = white - (white - black) * ink
    del ink
    fibre_amp = rng.uniform(0.01, 0.025)
    fib_long, fib_short = max(0.8, rng.uniform(0.5, 1.5) * period), max(0.5, 0.25 * period)
    if rng.random() < 0.5:
        fibre = unit_noise(rng, (sh, sw), fib_long, fib_short)
    else:
        fibre = unit_noise(rng, (sh, sw), fib_short, fib_long)
    sheet *= (1.0 + fibre_amp * fibre)[..., None]
    del fibre

    # Geometry: the sheet covers 70-90 % of the frame, tilted and rolled a few degrees.
    size_frac = rng.uniform(0.70, 0.90)
    jitter = (1 - size_frac) / 4
    centre = (0.5 + rng.uniform(-jitter, jitter), 0.5 + rng.uniform(-jitter, jitter))
    rx, ry, rz = draw_pose(rng, p, max_tilt=8.0, max_roll=5.0)
    focal = max(h, w) * rng.uniform(0.75, 1.1)
    h_mat, scale = plane_homography(sw, sh, w, h, size_frac, centre, rx, ry, rz, focal, (0, 0, sw, sh))

    # Camera: lens blur (refocusing on a flat sheet), then the sensor's pixels. The
    # sheet is extended by replicating its rim so that the lens blurs its edge into
    # the background by the same amount as its content, through a blurred outline.
    psf = rng.uniform(0.5, 1.2)  # camera pixels
    ext = math.ceil(4 * psf / scale) + 2
    sheet = cv2.copyMakeBorder(sheet, ext, ext, ext, ext, cv2.BORDER_REPLICATE)
    sheet = blur(sheet, psf / scale)
    shift = np.array([[1, 0, -ext], [0, 1, -ext], [0, 0, 1]], np.float64)
    seen = sensor_sample(sheet, h_mat @ shift, w, h)
    del sheet
    mask = blur(quad_mask(h_mat, (0, 0, sw, sh), w, h)[..., 0], psf)[..., None]
    bg = blur(background(rng, h, w, p), psf)
    scene = bg * (1 - mask) + seen * mask

    # Room light: a smooth gradient over sheet and table, lens vignetting.
    illum_grad = rng.uniform(0.10, 0.30)
    vig = rng.uniform(0.0, 0.20)
    illum = (1.0 + illum_grad * linear_ramp(h, w, rng.uniform(0, 2 * math.pi))) * vignette(h, w, vig)
    scene = scene * illum[..., None]

    out = camera(rng, scene, p, isp_blur=rng.uniform(0.0, 0.3))
    p.update(saturation=round(sat, 3), gamma=round(gamma, 3), paper_white=round(paper_white, 3),
             ink_black=round(ink_black, 3), cast_bgr=[round(float(c), 3) for c in cast],
             paper_supersampling=ss, halftone=mode, halftone_lines=round(lines, 1),
             halftone_period_frame_px=round(period * scale, 3), halftone_angle_deg=round(angle0, 1),
             dot_gain_paper_px=round(dot_gain, 2), margin_frac=round(margin_frac, 3),
             fibre_amp=round(fibre_amp, 4), sheet_frac=round(size_frac, 3),
             photo_frac=round(scale * ss, 3), focal_px=round(focal, 1), psf_px=round(psf, 3),
             illum_gradient=round(illum_grad, 3), vignette=round(vig, 3))
    return out, p


def make_screen(photo: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Photo shown full screen on a phone/monitor and re-photographed."""
    h, w = photo.shape[:2]
    p: dict = {}

    # How large the display appears and how fine its pixel grid is on the sensor.
    disp_frac = rng.uniform(0.64, 0.82)  # displayed photo, fraction of the frame (linear)
    bezel_frac = rng.uniform(0.025, 0.07)  # bezel width, fraction of the display's short side
    # Panel pixel pitch in camera pixels (log-uniform). The sub-pixel grid aliases into
    # moire when its pitch is near, or a simple multiple of, the camera's pixel pitch;
    # far below it the lens averages the grid away, far above it the grid is resolved
    # (screen-door). With the lens below, about half the images show faint or no
    # fringes, a quarter moderate and a tenth strong coloured ones (see moire_index).
    pitch = float(np.exp(rng.uniform(math.log(0.7), math.log(1.7))))
    rx, ry, rz = draw_pose(rng, p, max_tilt=7.0, max_roll=6.0)
    focal = max(h, w) * rng.uniform(0.75, 1.1)
    centre = (0.5 + rng.uniform(-0.03, 0.03), 0.5 + rng.uniform(-0.03, 0.03))

    # The panel shows the photo at its own resolution.
    pw = max(16, round(disp_frac * w / pitch))
    ph = max(16, round(pw * h / w))
    interp = cv2.INTER_AREA if pw < w else cv2.INTER_LINEAR
    panel = cv2.resize(photo, (pw, ph), interpolation=interp)

    # LCD tone: raised black (backlight leak), cool white point, panel gamma.
    black_level = rng.uniform(0.04, 0.12)
    panel_gamma = rng.uniform(0.9, 1.1)
    brightness = rng.uniform(0.92, 1.05)
    gains = np.array([rng.uniform(1.0, 1.05), rng.uniform(0.95, 1.0), rng.uniform(0.84, 0.94)],
                     np.float32)  # B, G, R: a cool, blue-ish white point
    black = black_level * np.array([1.15, 1.0, 0.85], np.float32)
    panel = black + (brightness * gains - black) * np.power(panel, panel_gamma)

    # Sub-pixel structure: each panel pixel is 3x3 supersamples, R|G|B vertical stripes,
    # the bottom row dimmed by the black matrix; the mask keeps each channel's mean.
    ss = 3
    bm = rng.uniform(0.25, 0.6)
    cell = np.zeros((ss, ss, 3), np.float32)
    for col, chan in enumerate((2, 1, 0)):  # R, G, B from left to right
        cell[:, col, chan] = 1.0
    cell[ss - 1] *= bm
    cell /= cell.mean(axis=(0, 1), keepdims=True)
    hr = np.repeat(np.repeat(panel, ss, axis=0), ss, axis=1)
    del panel
    hr.reshape(ph, ss, pw, ss, 3)[...] *= cell[None, :, None, :, :]
    hr_h, hr_w = hr.shape[:2]

    # Device plane: the display (supersample units) inside the bezel.
    bz = bezel_frac * min(hr_w, hr_h)
    device = (-bz, -bz, hr_w + bz, hr_h + bz)
    h_mat, scale = plane_homography(hr_w, hr_h, w, h, disp_frac * (hr_w + 2 * bz) / hr_w, centre,
                                    rx, ry, rz, focal, device)

    # Camera: a sharp lens PSF (focused on the screen), then the sensor's pixels.
    psf = rng.uniform(0.25, 0.5)  # camera pixels (a sharp, focused phone lens)
    # Predicted contrast of the sub-pixel stripes' fundamental (1.65 x the mean for a
    # one-third-wide stripe) after the lens (Gaussian) and the pixel aperture (box):
    # how strong the moire can be before demosaicing. Kept for analysis only.
    moire_index = 1.65 * abs(float(np.sinc(1 / pitch))) * math.exp(-2 * (math.pi * psf / pitch) ** 2)
    cv2.GaussianBlur(hr, (0, 0), sigmaX=psf / scale, sigmaY=psf / scale, dst=hr)
    emitted = sensor_sample(hr, h_mat, w, h)
    del hr
    disp_mask = quad_mask(h_mat, (0, 0, hr_w, hr_h), w, h)
    dev_mask = quad_mask(h_mat, device, w, h)

    bezel_val = rng.uniform(0.02, 0.07)
    bezel_col = bezel_val + rng.uniform(0, 0.015, 3).astype(np.float32)
    illum_grad = rng.uniform(0.10, 0.30)
    illum = 1.0 + illum_grad * linear_ramp(h, w, rng.uniform(0, 2 * math.pi))
    bg = background(rng, h, w, p) * illum[..., None]
    scene = bg * (1 - dev_mask) + bezel_col * np.clip(dev_mask - disp_mask, 0, 1) + emitted

    # Glare on the cover glass: a soft specular blob and a broad reflection gradient.
    dev_dst = cv2.perspectiveTransform(
        np.float32([[device[0], device[1]], [device[2], device[3]]])[None], h_mat)[0]
    x_lo, y_lo = dev_dst.min(axis=0)
    x_hi, y_hi = dev_dst.max(axis=0)
    gx, gy = rng.uniform(x_lo, x_hi), rng.uniform(y_lo, y_hi)
    dsz = float(min(x_hi - x_lo, y_hi - y_lo))
    gsx, gsy = rng.uniform(0.06, 0.25) * dsz, rng.uniform(0.06, 0.25) * dsz
    ga = rng.uniform(0, math.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xs - gx, ys - gy
    u = (dx * math.cos(ga) + dy * math.sin(ga)) / gsx
    v = (-dx * math.sin(ga) + dy * math.cos(ga)) / gsy
    glare_peak = rng.uniform(0.12, 0.40)
    sheen = rng.uniform(0.0, 0.08)
    glare = glare_peak * np.exp(-0.5 * (u * u + v * v))
    glare += sheen * (0.5 + linear_ramp(h, w, rng.uniform(0, 2 * math.pi)))
    glare_col = np.array([rng.uniform(0.9, 1.0), rng.uniform(0.95, 1.0), 1.0], np.float32)
    scene = scene + glare[..., None] * glare_col * dev_mask
    vig = rng.uniform(0.0, 0.15)
    scene = scene * vignette(h, w, vig)[..., None]

    out = camera(rng, scene, p, isp_blur=rng.uniform(0.0, 0.3))
    p.update(display_frac=round(scale * min(hr_w / w, hr_h / h), 3), bezel_frac=round(bezel_frac, 3),
             pixel_pitch_px=round(pitch, 3), moire_index=round(moire_index, 4), panel_px=[pw, ph],
             black_level=round(black_level, 3),
             panel_gamma=round(panel_gamma, 3), brightness=round(brightness, 3),
             gains_bgr=[round(float(g), 3) for g in gains], black_matrix=round(bm, 3),
             focal_px=round(focal, 1), psf_px=round(psf, 3), bezel_value=round(bezel_val, 3),
             illum_gradient=round(illum_grad, 3), glare_peak=round(glare_peak, 3),
             glare_sigma_px=[round(float(gsx), 1), round(float(gsy), 1)], glare_sheen=round(sheen, 3),
             vignette=round(vig, 3))
    return out, p


ATTACKS = {"print": make_print, "screen": make_screen}


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def find_sources(shared: Path) -> list[Path]:
    found: set[Path] = set()
    for pattern in SOURCE_GLOBS:
        found.update(p for p in shared.glob(pattern) if p.is_file())
    return sorted(found, key=lambda p: p.relative_to(shared).as_posix())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared",
                    help="shared data directory (default: ../shared next to the repository)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "target" / "presentation-attacks",
                    help="output directory (default: target/presentation-attacks in the repository)")
    ap.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N sources (quick run)")
    args = ap.parse_args()

    shared = args.shared.resolve()
    out = args.out.resolve()
    sources = find_sources(shared)
    if not sources:
        print(f"no bona fide photos found under {shared} ({', '.join(SOURCE_GLOBS)})", file=sys.stderr)
        return 1
    if args.limit is not None:
        sources = sources[: max(0, args.limit)]
    stems = [s.stem for s in sources]
    if len(set(stems)) != len(stems):
        print("two sources share a file stem; output names would collide", file=sys.stderr)
        return 1

    for sub in ("bona_fide", *ATTACK_KINDS):
        d = out / sub
        if d.is_dir():
            for old in d.glob("*.jpg"):
                old.unlink()
        d.mkdir(parents=True, exist_ok=True)

    start = time.monotonic()
    rows: list[tuple[str, str, str, str]] = []
    params: list[dict] = []
    for i, src in enumerate(sources, 1):
        rel = src.relative_to(shared).as_posix()
        img = cv2.imread(str(src), cv2.IMREAD_COLOR)  # applies EXIF orientation
        if img is None:
            print(f"cannot decode {rel}, skipped", file=sys.stderr)
            continue
        img = cap_size(img)
        name = f"{src.stem}.jpg"
        write_jpeg(out / "bona_fide" / name, img, BONA_FIDE_QUALITY)
        rows.append((f"bona_fide/{name}", "bona_fide", "none", rel))
        photo = to_float(img)
        for kind in ATTACK_KINDS:
            rng = rng_for(args.seed, rel, kind)
            result, p = ATTACKS[kind](photo, rng)
            quality = int(rng.integers(82, 89))
            write_jpeg(out / kind / name, to_u8(result), quality)
            rows.append((f"{kind}/{name}", "attack", kind, rel))
            params.append({"file": f"{kind}/{name}", "source": rel, "seed": args.seed,
                           "jpeg_quality": quality, **p})
        print(f"[{i}/{len(sources)}] {rel} {img.shape[1]}x{img.shape[0]}", flush=True)

    with open(out / "labels.csv", "w", newline="") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(("file", "label", "attack_type", "source"))
        wr.writerows(rows)
    with open(out / "params.jsonl", "w") as f:
        for p in params:
            f.write(json.dumps(p, sort_keys=True, default=lambda o: o.item()) + "\n")
    counts = {k: sum(1 for r in rows if r[2] == k) for k in ("none", *ATTACK_KINDS)}
    print(f"wrote {len(rows)} images to {out} in {time.monotonic() - start:.1f} s: "
          f"bona_fide {counts['none']}, " + ", ".join(f"{k} {counts[k]}" for k in ATTACK_KINDS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
