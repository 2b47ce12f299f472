//! What FFprobe was started for, read from the upload's container in the server's
//! own process: the duration, the video tracks' frame size and how many frames they
//! hold (issue 18: FFprobe cost about 90 ms of CPU per clip, 50 of them in the dynamic
//! loader). ISO-BMFF (MP4, MOV, 3GP, fragmented MP4 included) and Matroska/WebM
//! (unknown-size segments and clusters of browser recordings included) are walked box
//! by box, element by element, without decoding anything; whatever is not understood
//! (a compressed movie header, a track this reader cannot class, a size past the end)
//! is `None`, and the caller asks FFprobe as before.
//!
//! Counts are conservative for the decoding budget: every video track counts, with
//! its frames, at the largest declared frame size, and FFmpeg is told to refuse any
//! frame much larger than declared (`-max_pixels`).
//!
//! `iso` reads ISO-BMFF, `matroska` Matroska and WebM; the tests here hold both
//! readers to FFprobe's answers.

mod iso;
mod matroska;

use iso::read_iso;
use matroska::read_matroska;

/// What the container declares, and the frames its video tracks hold.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Header {
    /// The container's duration, in seconds; `None` when not declared (browser WebM).
    pub duration: Option<f64>,
    /// Video tracks, in the container's order (FFmpeg's `V:0` is the first).
    pub video: Vec<VideoTrack>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct VideoTrack {
    pub width: u32,
    pub height: u32,
    /// Frames (packets) held, in the movie header and in every fragment or cluster.
    pub frames: u64,
}

/// More tracks than any camera or browser writes: a file with more is FFprobe's (the
/// fragment and block counts look their track up by number).
const MAX_TRACKS: usize = 32;

/// Reads the header of an ISO-BMFF (`matroska == false`) or EBML container. Linear
/// in the upload's size (20 MB at most: a few milliseconds for a real clip).
pub(super) fn read(bytes: &[u8], matroska: bool) -> Option<Header> {
    let header = if matroska { read_matroska(bytes)? } else { read_iso(bytes)? };
    // No video track, or one without a size: FFprobe decides what it is.
    if header.video.is_empty() || header.video.iter().any(|t| t.width == 0 || t.height == 0) {
        return None;
    }
    if header.duration.is_some_and(|d| !d.is_finite() || d < 0.0) {
        return None;
    }
    Some(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// FFprobe's answer for the first video stream, as `video::probe` asked it.
    fn ffprobe(path: &Path) -> (Option<f64>, u32, u32, u64) {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "V:0", "-count_packets", "-show_entries"])
            .arg("format=duration:stream=width,height,nb_read_packets")
            .args(["-of", "json"])
            .arg(path)
            .output()
            .expect("ffprobe runs");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let stream = &json["streams"][0];
        let number = |k: &str| stream[k].as_u64().unwrap_or(0);
        (
            json["format"]["duration"].as_str().and_then(|s| s.parse().ok()),
            number("width") as u32,
            number("height") as u32,
            stream["nb_read_packets"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0),
        )
    }

    pub(super) fn ffmpeg(args: &[&str]) {
        let status = Command::new("ffmpeg").args(["-v", "error", "-y", "-nostdin"]).args(args).status();
        assert!(status.expect("ffmpeg runs").success(), "ffmpeg {args:?}");
    }

    /// The reader agrees with FFprobe: same duration (to the millisecond, or both
    /// unknown), frame size and frame count.
    fn agrees_with_ffprobe(path: &Path) {
        let bytes = std::fs::read(path).expect("clip");
        let matroska = bytes.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]);
        let header = read(&bytes, matroska).unwrap_or_else(|| panic!("{} not read", path.display()));
        let (duration, width, height, frames) = ffprobe(path);
        let first = header.video[0];
        assert_eq!((first.width, first.height, first.frames), (width, height, frames), "{}", path.display());
        match (header.duration, duration) {
            // FFprobe prints microseconds: the same ones.
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{}: {a} vs {b}", path.display()),
            (a, b) => assert_eq!(a, b, "{}", path.display()),
        }
    }

    #[test]
    fn reads_what_ffprobe_reads_from_every_kind_of_clip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_owned();
        let source = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=15:duration=2"];
        let sound = ["-f", "lavfi", "-i", "sine=duration=2"];
        let mut clips: Vec<String> = Vec::new();
        let mut make = |name: &str, extra: &[&str]| {
            let path = out(name);
            let mut args: Vec<&str> = source.to_vec();
            args.extend_from_slice(extra);
            args.push(&path);
            ffmpeg(&args);
            clips.push(path);
        };
        // Movie header last (as phones write it), first, fragmented (Safari's
        // MediaRecorder), QuickTime with sound; Matroska, WebM.
        make("tail.mp4", &["-c:v", "libx264", "-preset", "ultrafast"]);
        make("faststart.mp4", &["-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart"]);
        make(
            "fragmented.mp4",
            &["-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-movflags", "frag_keyframe+empty_moov"],
        );
        let mut with_sound: Vec<&str> = sound.to_vec();
        with_sound.extend_from_slice(&["-c:v", "mpeg4", "-c:a", "aac"]);
        make("sound.mov", &with_sound);
        make("clip.mkv", &["-c:v", "libx264", "-preset", "ultrafast"]);
        make("clip.webm", &["-c:v", "libvpx", "-deadline", "realtime", "-b:v", "200k"]);
        for clip in &clips {
            agrees_with_ffprobe(Path::new(clip));
            // Cut short anywhere (an interrupted upload): no panic, whatever the answer.
            let bytes = std::fs::read(clip).expect("clip");
            for cut in (0..bytes.len()).step_by(bytes.len() / 300 + 1) {
                let _ = read(&bytes[..cut], clip.ends_with("mkv") || clip.ends_with("webm"));
            }
        }
        // A browser's recording: written to a pipe, so no sizes and no duration.
        let live = out("live.webm");
        let recorded = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin"])
            .args(source)
            .args(["-c:v", "libvpx", "-deadline", "realtime", "-b:v", "200k", "-f", "webm", "pipe:1"])
            .output()
            .expect("ffmpeg runs");
        std::fs::write(&live, &recorded.stdout).expect("write");
        let header = read(&recorded.stdout, true).expect("read");
        assert_eq!((header.duration, header.video[0].frames), (None, 30));
        agrees_with_ffprobe(Path::new(&live));
    }

    /// The real clips of `../shared` (skipped where it is not beside the checkout).
    #[test]
    fn reads_what_ffprobe_reads_from_the_real_clips() {
        let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
        let mut found = 0;
        for dir in ["videos", "liveness/live", "liveness/spoof"] {
            let Ok(entries) = std::fs::read_dir(shared.join(dir)) else { continue };
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            // videos/ has a folder per person.
            paths = paths
                .into_iter()
                .flat_map(|p| {
                    if p.is_dir() {
                        std::fs::read_dir(&p).map(|e| e.flatten().map(|e| e.path()).collect()).unwrap_or_default()
                    } else {
                        vec![p]
                    }
                })
                .collect();
            for path in paths {
                let bytes = std::fs::read(&path).expect("read");
                if crate::media::video::is_video(&bytes) {
                    agrees_with_ffprobe(&path);
                    found += 1;
                }
            }
        }
        eprintln!("{found} real clips read");
    }

    /// Anything not understood is left to FFprobe.
    #[test]
    fn what_is_not_understood_is_none() {
        assert_eq!(read(b"", false), None);
        assert_eq!(read(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", false), None);
        assert_eq!(read(b"<!--free--><MPD>", false), None);
        assert_eq!(read(&[0x1A, 0x45, 0xDF, 0xA3, 0x80], true), None);
        // A box claiming more than the file holds, before any movie header.
        assert_eq!(read(b"\x00\x00\x10\x00moov\x00\x00\x00\x08mvhd", false), None);
        // EBML garbage: no track list.
        assert_eq!(read(&[0x1A, 0x45, 0xDF, 0xA3, 0x80, 0x18, 0x53, 0x80, 0x67, 0xFF, 0xEC, 0x80], true), None);
    }
}
