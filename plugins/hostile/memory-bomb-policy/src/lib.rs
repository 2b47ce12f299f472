//! Hostile test policy: allocates without bound once a face is present (memory limit test).

const NAME: &str = "memory-bomb";

fn misbehave() -> Decision {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}

include!("../../hostile.rs");
