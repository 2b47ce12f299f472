//! Synthetic ID-1 cards made from a face photo, as `scripts/fixtures/make_fixtures.py`
//! makes the committed card fixtures: a tinted, line-patterned background, a header
//! band, text lines, the main portrait (head and shoulders, 0.58 of the card's
//! height) and a small faded grey "ghost" portrait of the same person, saved as JPEG.

use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

use faceauth_core::vision::BoundingBox;

const CARD_W: u32 = 640;
const CARD_H: u32 = 404;
const BACKGROUND: Rgb<u8> = Rgb([214, 226, 236]);

/// A card front of the face in `photo` (`face`: its detected box, if any; otherwise
/// the photo's centre, as LFW's deep-funnelled images are), as JPEG bytes.
pub fn card_jpeg(photo: &RgbImage, face: Option<BoundingBox>, seed: u64) -> Result<Vec<u8>, image::ImageError> {
    let portrait = portrait(photo, face, 180, 234);
    let card = card_front(&portrait, seed);
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 80).encode_image(&card)?;
    Ok(bytes)
}

/// Passport-style crop around the face box: 1.7 face widths wide, the card
/// portrait's aspect, the face a little above centre; outside the photo is grey.
fn portrait(photo: &RgbImage, face: Option<BoundingBox>, out_w: u32, out_h: u32) -> RgbImage {
    let (w, h) = (photo.width() as f32, photo.height() as f32);
    let b = face.unwrap_or(BoundingBox { x1: w * 0.3, y1: h * 0.28, x2: w * 0.7, y2: h * 0.76 });
    let (fw, fh) = (b.width().max(1.0), b.height().max(1.0));
    let (cx, cy) = ((b.x1 + b.x2) / 2.0, (b.y1 + b.y2) / 2.0 + 0.1 * fh);
    let side_w = fw * 1.7;
    let side_h = side_w * out_h as f32 / out_w as f32;
    let (x0, y0) = ((cx - side_w / 2.0).round() as i64, (cy - side_h / 2.0).round() as i64);
    let (cw, ch) = (side_w.round().max(1.0) as u32, side_h.round().max(1.0) as u32);
    let crop = RgbImage::from_fn(cw, ch, |x, y| {
        let (sx, sy) = (x0 + x as i64, y0 + y as i64);
        if sx < 0 || sy < 0 || sx >= photo.width() as i64 || sy >= photo.height() as i64 {
            Rgb([128, 128, 128])
        } else {
            *photo.get_pixel(sx as u32, sy as u32)
        }
    });
    imageops::resize(&crop, out_w, out_h, FilterType::Lanczos3)
}

/// A small deterministic generator for the text layout.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, range: u32) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % range.max(1) as u64) as u32
    }
}

fn fill_rect(img: &mut RgbImage, x0: u32, y0: u32, w: u32, h: u32, colour: Rgb<u8>) {
    for y in y0..(y0 + h).min(img.height()) {
        for x in x0..(x0 + w).min(img.width()) {
            img.put_pixel(x, y, colour);
        }
    }
}

/// Text stand-in: a row of dark glyph-sized blocks.
fn text_line(img: &mut RgbImage, x: u32, y: u32, glyphs: u32, size: u32, colour: Rgb<u8>, rng: &mut Lcg) {
    let mut cx = x;
    for _ in 0..glyphs {
        let gw = size / 2 + rng.next(size / 3 + 1);
        if rng.next(7) != 0 {
            fill_rect(img, cx, y + rng.next(size / 4 + 1), gw.saturating_sub(2).max(1), size * 3 / 4, colour);
        }
        cx += gw;
    }
}

fn card_front(face: &RgbImage, seed: u64) -> RgbImage {
    let (w, h) = (CARD_W, CARD_H);
    let mut rng = Lcg(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut card = RgbImage::from_pixel(w, h, BACKGROUND);
    // Guilloche-like diagonal lines and rings.
    for y in 0..h {
        for x in 0..w {
            let diag = (x + h - y) % 9 == 0;
            let (dx, dy) = (x as f32 - (w as f32 - 260.0), y as f32 - (h as f32 - 200.0));
            let ring = ((dx.hypot(dy) - 20.0) % 14.0).abs() < 0.8;
            if diag {
                card.put_pixel(x, y, Rgb([200, 214, 228]));
            } else if ring {
                card.put_pixel(x, y, Rgb([196, 210, 226]));
            }
        }
    }
    // Header band with its title.
    fill_rect(&mut card, 0, 0, w, h * 16 / 100, Rgb([32, 70, 130]));
    text_line(&mut card, 16, 16, 40, h * 5 / 100, Rgb([255, 255, 255]), &mut rng);
    // Main portrait.
    let (pw, ph) = (w * 28 / 100, h * 58 / 100);
    let main = imageops::resize(face, pw, ph, FilterType::Lanczos3);
    imageops::replace(&mut card, &main, (w * 4 / 100) as i64, (h * 24 / 100) as i64);
    // Labels and values.
    let x = w * 36 / 100;
    for i in 0..5 {
        let y = h * 24 / 100 + i * h / 10;
        text_line(&mut card, x, y, 6 + rng.next(4), h * 3 / 100, Rgb([60, 60, 90]), &mut rng);
        text_line(&mut card, x, y + h * 35 / 1000, 8 + rng.next(10), h * 45 / 1000, Rgb([10, 10, 30]), &mut rng);
    }
    // Ghost portrait: grey, faded 35 % towards the background.
    let (gw, gh) = (w * 11 / 100, h * 22 / 100);
    let mut ghost = imageops::resize(face, gw, gh, FilterType::Lanczos3);
    for p in ghost.pixels_mut() {
        let grey = faceauth_core::vision::geometry::luma(p);
        for (c, bg) in p.0.iter_mut().zip(BACKGROUND.0) {
            *c = (grey * 0.65 + bg as f32 * 0.35).round().clamp(0.0, 255.0) as u8;
        }
    }
    imageops::replace(&mut card, &ghost, (w * 84 / 100) as i64, (h * 62 / 100) as i64);
    // Machine-readable zone.
    text_line(&mut card, 16, h - h * 8 / 100, 30, h * 4 / 100, Rgb([20, 20, 20]), &mut rng);
    card
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_is_an_id1_jpeg_with_the_portrait_in_place() {
        let photo = RgbImage::from_fn(250, 250, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
        let bytes = card_jpeg(&photo, None, 7).expect("encode");
        let card = image::load_from_memory(&bytes).expect("decode").to_rgb8();
        assert_eq!(card.dimensions(), (CARD_W, CARD_H));
        // The portrait area is not the background.
        let p = card.get_pixel(CARD_W * 18 / 100, CARD_H / 2);
        assert!(p.0.iter().zip(BACKGROUND.0).any(|(a, b)| a.abs_diff(b) > 30), "{p:?}");
        // Same seed, same card.
        assert_eq!(bytes, card_jpeg(&photo, None, 7).expect("encode"));
    }
}
