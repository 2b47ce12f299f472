//! Untrusted uploads: the image decoder (format sniffing, JPEG end-of-image check,
//! header size caps, reduced-scale JPEG, EXIF orientation) and the video sniffing
//! must refuse any byte string with an error, never panic or exceed the caps.
#![no_main]

use faceauth_core::media::{self, DecodeLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    if let Ok(decoded) = media::decode_image(data, limits) {
        let (w, h) = decoded.original_size;
        assert!(u64::from(w) * u64::from(h) <= limits.max_pixels, "{w}x{h} passed the pixel cap");
        let (pw, ph) = decoded.pixels.dimensions();
        assert!(u64::from(pw) * u64::from(ph) <= limits.max_pixels, "{pw}x{ph} decoded over the pixel cap");
    }
    let _ = media::video::is_video(data);
});
