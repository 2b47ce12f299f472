//! Pixel operations on decoded pictures: resizing, luma, sharpness. Used by the
//! video sampler (blurred and black frames) and by the face pipeline above.

use image::RgbImage;

/// The pixel at a fractional position, bilinear between its four neighbours; black outside.
pub fn sample_bilinear(image: &RgbImage, x: f32, y: f32) -> [u8; 3] {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let (x0f, y0f) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0f, y - y0f);
    let (x0, y0) = (x0f as i64, y0f as i64);
    let fetch = |xi: i64, yi: i64| -> [f32; 3] {
        if xi < 0 || yi < 0 || xi >= w || yi >= h {
            [0.0; 3]
        } else {
            let p = image.get_pixel(xi as u32, yi as u32).0;
            [p[0] as f32, p[1] as f32, p[2] as f32]
        }
    };
    let (p00, p10, p01, p11) = (fetch(x0, y0), fetch(x0 + 1, y0), fetch(x0, y0 + 1), fetch(x0 + 1, y0 + 1));
    let mut out = [0u8; 3];
    for c in 0..3 {
        let top = p00[c] * (1.0 - fx) + p10[c] * fx;
        let bottom = p01[c] * (1.0 - fx) + p11[c] * fx;
        out[c] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
    }
    out
}

/// Bilinear resize without an anti-aliasing prefilter, pixel centres aligned, as
/// OpenCV's `INTER_LINEAR`: the landmark model was trained on crops made this way.
pub fn resize_bilinear(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let sx = image.width() as f32 / width as f32;
    let sy = image.height() as f32 / height as f32;
    let max_x = image.width().saturating_sub(1) as f32;
    let max_y = image.height().saturating_sub(1) as f32;
    RgbImage::from_fn(width, height, |u, v| {
        let x = ((u as f32 + 0.5) * sx - 0.5).clamp(0.0, max_x);
        let y = ((v as f32 + 0.5) * sy - 0.5).clamp(0.0, max_y);
        image::Rgb(sample_bilinear(image, x, y))
    })
}

/// Resize with a triangle (bilinear) kernel widened to the scale, as
/// `image::imageops::resize(.., FilterType::Triangle)` computes it, with SIMD
/// (`fast_image_resize`): the pyramid levels of a 12 MP photo cost a few ms each
/// instead of ~100. `None` only for an empty size.
pub fn resize_triangle(image: &RgbImage, width: u32, height: u32) -> Option<RgbImage> {
    use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
    if width == 0 || height == 0 || image.width() == 0 || image.height() == 0 {
        return None;
    }
    let mut out = RgbImage::new(width, height);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new().resize(image, &mut out, &options).ok()?;
    Some(out)
}

/// ITU-R BT.601 luma, as OpenCV's RGB2GRAY.
pub fn luma(p: &image::Rgb<u8>) -> f32 {
    0.299 * p.0[0] as f32 + 0.587 * p.0[1] as f32 + 0.114 * p.0[2] as f32
}

/// Mean luma of an image, in [0, 1]. On the aligned 112x112 face it tells an
/// underexposed or backlit face from a lit one, whatever the background is.
pub fn mean_luma(image: &RgbImage) -> f32 {
    let n = (image.width() as f64 * image.height() as f64).max(1.0);
    (image.pixels().map(|p| f64::from(luma(p))).sum::<f64>() / n / 255.0) as f32
}

/// Variance of the 4-neighbour Laplacian of the grey image: the usual focus measure.
/// Measured on the aligned 112x112 face, so it does not depend on the upload's size.
pub fn laplacian_variance(image: &RgbImage) -> f32 {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let grey: Vec<f32> = image.pixels().map(luma).collect();
    let mut values = Vec::with_capacity((w - 2) * (h - 2));
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let i = y * w + x;
            values.push(grey[i - 1] + grey[i + 1] + grey[i - w] + grey[i + w] - 4.0 * grey[i]);
        }
    }
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    (values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n) as f32
}
