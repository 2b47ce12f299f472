//! Per-stage timings on real pictures (issue 9): decode, detect, landmarks, align,
//! embed, liveness, policy call. Run after `scripts/setup.sh`:
//!
//!   cargo bench -p faceauth --bench stages
//!
//! The pictures are the repository's fixtures (deepface photos, MIT): a 720x498
//! selfie, the same selfie as a 3600x2490 (9 MP) JPEG, and an ID card. A regression
//! shows in the stage that slowed, not only in the end-to-end bench (`scripts/bench/compare.py`).
#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark that cannot set up should stop loudly

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use faceauth_core::media::{DecodeLimits, decode_image};
use faceauth_core::policy::{EnrollEvidence, ImageSize, PolicyLimits, PolicyRuntime};
use faceauth_core::usecase::EngineConfig;
use faceauth_core::usecase::face_evidence;
use faceauth_core::vision::geometry::{TEMPLATE_112, five_points, similarity_transform, warp_affine};
use faceauth_core::vision::{FaceAnalyzer, ModelFiles, onnx_environment};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures").join(name)).expect("fixture")
}

fn stages(c: &mut Criterion) {
    let mut config = EngineConfig::defaults();
    config.models_dir = repo().join("models");
    config.policy = repo().join("target/wasm32-wasip2/release/default_policy.wasm");
    let lib = config.onnxruntime_lib().expect("ONNX Runtime under .runtime/: run scripts/setup.sh");
    let env = onnx_environment(&lib).expect("ONNX Runtime loads");
    let files = ModelFiles::verify(&config.models_dir).expect("models");
    let mut analyzer = FaceAnalyzer::load(&env, &files, true).expect("models load");

    let selfie_jpeg = fixture("selfie_person_a.jpg");
    let selfie = decode_image(&selfie_jpeg, DecodeLimits::default()).expect("selfie").pixels;
    let large = image::imageops::resize(
        &selfie,
        selfie.width() * 5,
        selfie.height() * 5,
        image::imageops::FilterType::Triangle,
    );
    let mut phone_jpeg = Vec::new();
    large.write_to(&mut std::io::Cursor::new(&mut phone_jpeg), image::ImageFormat::Jpeg).expect("encode");

    let mut decode = c.benchmark_group("decode");
    decode
        .bench_function("jpeg 720x498", |b| b.iter(|| decode_image(black_box(&selfie_jpeg), DecodeLimits::default())));
    decode.bench_function("jpeg 3600x2490 (half-scale DCT)", |b| {
        b.iter(|| decode_image(black_box(&phone_jpeg), DecodeLimits::default()))
    });
    decode.finish();

    let faces = analyzer.detect(&selfie, 40.0).expect("detect");
    let bbox = faces.first().expect("a face in the selfie").bbox;
    let landmarks = analyzer.landmarks(&selfie, &bbox).expect("landmarks");
    let transform = similarity_transform(&five_points(&landmarks), &TEMPLATE_112).expect("transform");
    let aligned = warp_affine(&selfie, &transform, 112).expect("aligned");

    c.bench_function("detect (720x498, pyramid)", |b| b.iter(|| analyzer.detect(black_box(&selfie), 40.0)));
    c.bench_function("landmarks", |b| b.iter(|| analyzer.landmarks(black_box(&selfie), &bbox)));
    c.bench_function("align (least squares + warp 112)", |b| {
        b.iter(|| {
            let t = similarity_transform(&five_points(black_box(&landmarks)), &TEMPLATE_112).expect("transform");
            warp_affine(&selfie, &t, 112)
        })
    });
    c.bench_function("embed", |b| b.iter(|| analyzer.embed(black_box(&aligned))));
    c.bench_function("liveness (2 MiniFASNets)", |b| b.iter(|| analyzer.liveness(black_box(&selfie), &bbox)));

    let card = decode_image(&fixture("id_card_person_a.jpg"), DecodeLimits::default()).expect("card").pixels;
    let analyzed = analyzer.analyze(&card, 40.0, false).expect("card analysed");
    let image = ImageSize { width: card.width(), height: card.height() };
    let evidence = EnrollEvidence { image, faces: face_evidence(&analyzed, image, None), duplicates: None };
    let runtime = PolicyRuntime::new(PolicyLimits::default()).expect("wasmtime");
    let policy = runtime.load(&config.policy()).expect("default policy: run scripts/setup.sh");
    c.bench_function("policy call (default, enroll)", |b| {
        b.iter(|| policy.decide_enroll_blocking(black_box(&evidence)))
    });
    c.bench_function("whole analysis (card, every face)", |b| {
        b.iter(|| analyzer.analyze(black_box(&card), 40.0, false))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = stages
}
criterion_main!(benches);
