//! Hostile test policy: traps (panics) once a face is present.

const NAME: &str = "trap";

fn misbehave() -> Decision {
    panic!("hostile policy: deliberate trap")
}

include!("../../hostile.rs");
