//! Hostile test policy: loops forever once a face is present (CPU budget test).

const NAME: &str = "spin";

fn misbehave() -> Decision {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

include!("../../hostile.rs");
