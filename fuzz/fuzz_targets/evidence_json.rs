//! The audit log's evidence column, read back for stats, replay and the admin API:
//! any text is either refused by `Evidence::from_stored` or read as evidence whose
//! stored form reads back to the same evidence (and to the same text again).
#![no_main]

use faceauth_core::policy::{Endpoint, Evidence};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for endpoint in [Endpoint::Enroll, Endpoint::Authenticate] {
        let Ok(evidence) = Evidence::from_stored(endpoint, text) else { continue };
        assert_eq!(evidence.endpoint(), endpoint);
        let stored = evidence.to_stored().expect("read evidence serialises");
        let back = Evidence::from_stored(endpoint, &stored)
            .unwrap_or_else(|e| panic!("stored form {stored} of {text:?} does not read back: {e}"));
        assert_eq!(back, evidence, "stored form {stored} of {text:?} reads back different");
        assert_eq!(back.to_stored().expect("serialises"), stored, "stored form is not a fixed point");
    }
});
