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

// ---------------------------------------------------------------- ISO-BMFF

/// Boxes of `bytes`: (type, body). `None` for a box that overruns its parent.
fn boxes(mut bytes: &[u8]) -> impl Iterator<Item = Option<([u8; 4], &[u8])>> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let parsed = (|| {
            let size = u64::from(be32(bytes, 0)?);
            let kind: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            let (header, size) = match size {
                0 => (8, bytes.len() as u64),
                1 => (16, be64(bytes, 8)?),
                n => (8, n),
            };
            let size = usize::try_from(size).ok().filter(|&s| s >= header && s <= bytes.len())?;
            Some((kind, header, size))
        })();
        match parsed {
            Some((kind, header, size)) => {
                let body = &bytes[header..size];
                bytes = &bytes[size..];
                Some(Some((kind, body)))
            }
            None => {
                bytes = &[];
                Some(None)
            }
        }
    })
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The first box of `kind` among the children of `body`; `Err` for a broken child.
fn child<'a>(body: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, ()> {
    for b in boxes(body) {
        let (k, inner) = b.ok_or(())?;
        if &k == kind {
            return Ok(Some(inner));
        }
    }
    Ok(None)
}

/// Sample entries of tracks that are not pictures, whatever their handler: metadata
/// (Apple's `mebx`, GoPro's `gpmd`, camera motion), timecode, subtitles, hints.
const NOT_PICTURES: [&[u8; 4]; 14] = [
    b"mebx", b"tmcd", b"text", b"tx3g", b"wvtt", b"stpp", b"c608", b"c708", b"mp4s", b"rtp ", b"urim", b"metx",
    b"mett", b"gpmd",
];

struct IsoTrack {
    id: u32,
    video: bool,
    width: u32,
    height: u32,
    frames: u64,
    /// Media time scale and the track's duration in it, from the fragments.
    timescale: u32,
    fragment_ticks: u64,
    /// `trex` default sample duration, for fragments that give none.
    default_duration: u32,
}

fn read_iso(bytes: &[u8]) -> Option<Header> {
    let mut tracks: Vec<IsoTrack> = Vec::new();
    let mut movie: Option<(u32, u64)> = None;
    let mut fragment_duration: Option<u64> = None;
    let mut moov_seen = false;
    for b in boxes(bytes) {
        let Some((kind, body)) = b else {
            // Cut short (an interrupted upload): the decoder's business if the movie
            // header was read, FFprobe's otherwise.
            if moov_seen {
                break;
            }
            return None;
        };
        match &kind {
            // FFmpeg reads the first movie header and skips any other.
            b"moov" if !moov_seen => {
                moov_seen = true;
                for b in boxes(body) {
                    let (kind, body) = b?;
                    match &kind {
                        b"mvhd" => movie = Some(mvhd(body)?),
                        b"trak" if tracks.len() < MAX_TRACKS => tracks.push(trak(body)?),
                        b"trak" => return None,
                        b"mvex" => {
                            for b in boxes(body) {
                                let (kind, body) = b?;
                                match &kind {
                                    b"mehd" => {
                                        fragment_duration = Some(if body.first()? == &1 {
                                            be64(body, 4)?
                                        } else {
                                            u64::from(be32(body, 4)?)
                                        })
                                    }
                                    b"trex" => {
                                        let id = be32(body, 4)?;
                                        let duration = be32(body, 12)?;
                                        if let Some(t) = tracks.iter_mut().find(|t| t.id == id) {
                                            t.default_duration = duration;
                                        }
                                    }
                                    _ => {}
                                }
                            }
                        }
                        // A compressed movie header: FFprobe.
                        b"cmov" => return None,
                        _ => {}
                    }
                }
            }
            b"moof" => moof(body, &mut tracks)?,
            _ => {}
        }
    }
    if !moov_seen {
        return None;
    }
    let (movie_scale, movie_ticks) = movie?;
    // All bits set: "unknown" to some writers.
    if movie_ticks == u64::from(u32::MAX) || movie_ticks == u64::MAX {
        return None;
    }
    let duration = if movie_ticks > 0 && movie_scale > 0 {
        Some(seconds(movie_ticks, movie_scale))
    } else if let Some(ticks) = fragment_duration.filter(|&t| t > 0 && movie_scale > 0) {
        Some(seconds(ticks, movie_scale))
    } else {
        // Fragmented, no total declared: the longest track's fragments.
        tracks
            .iter()
            .filter(|t| t.timescale > 0 && t.fragment_ticks > 0)
            .map(|t| seconds(t.fragment_ticks, t.timescale))
            .reduce(f64::max)
    };
    let video = tracks
        .iter()
        .filter(|t| t.video)
        .map(|t| VideoTrack { width: t.width, height: t.height, frames: t.frames })
        .collect();
    Some(Header { duration, video })
}

/// `ticks` of `scale` in seconds, rounded to the microsecond as FFmpeg keeps it (so
/// that the sampling rate derived from it is the one FFprobe's answer gave).
fn seconds(ticks: u64, scale: u32) -> f64 {
    ((ticks as f64 * 1e6 / f64::from(scale)).round()) / 1e6
}

/// (time scale, duration) of `mvhd`.
fn mvhd(body: &[u8]) -> Option<(u32, u64)> {
    if body.first()? == &1 {
        Some((be32(body, 20)?, be64(body, 24)?))
    } else {
        Some((be32(body, 12)?, u64::from(be32(body, 16)?)))
    }
}

fn trak(body: &[u8]) -> Option<IsoTrack> {
    let tkhd = child(body, b"tkhd").ok()??;
    let id = if tkhd.first()? == &1 { be32(tkhd, 20)? } else { be32(tkhd, 12)? };
    let mdia = child(body, b"mdia").ok()??;
    let mdhd = child(mdia, b"mdhd").ok()??;
    let timescale = if mdhd.first()? == &1 { be32(mdhd, 20)? } else { be32(mdhd, 12)? };
    let handler: [u8; 4] = child(mdia, b"hdlr").ok()??.get(8..12)?.try_into().ok()?;
    let stbl = child(child(mdia, b"minf").ok()??, b"stbl").ok()??;
    let stsd = child(stbl, b"stsd").ok()??;
    // The first sample entry: size, format, 6 reserved, data reference index, then
    // for a picture 16 bytes before its width and height.
    let entry = stsd.get(8..)?;
    let format: [u8; 4] = entry.get(4..8)?.try_into().ok()?;
    let video = match &handler {
        b"vide" => true,
        // FFmpeg classes a sound track by its handler, whatever its entry.
        b"soun" => false,
        // Another handler with a picture format is a video to FFmpeg: not guessed here.
        _ if NOT_PICTURES.contains(&&format) => false,
        _ => return None,
    };
    let (width, height) = if video { (u32::from(be16(entry, 32)?), u32::from(be16(entry, 34)?)) } else { (0, 0) };
    let frames = match (child(stbl, b"stsz").ok()?, child(stbl, b"stz2").ok()?) {
        (Some(stsz), _) => u64::from(be32(stsz, 8)?),
        (None, Some(stz2)) => u64::from(be32(stz2, 8)?),
        (None, None) => return None,
    };
    Some(IsoTrack { id, video, width, height, frames, timescale, fragment_ticks: 0, default_duration: 0 })
}

/// Adds a movie fragment's samples (and their duration) to its tracks.
fn moof(body: &[u8], tracks: &mut [IsoTrack]) -> Option<()> {
    for b in boxes(body) {
        let (kind, traf) = b?;
        if &kind != b"traf" {
            continue;
        }
        let tfhd = child(traf, b"tfhd").ok()??;
        let flags = be32(tfhd, 0)? & 0x00FF_FFFF;
        let id = be32(tfhd, 4)?;
        // A fragment of a track the movie header does not have: FFprobe.
        let track = tracks.iter_mut().find(|t| t.id == id)?;
        // tfhd: base data offset (8 bytes), sample description index, then the default duration.
        let mut at = 8;
        if flags & 0x01 != 0 {
            at += 8;
        }
        if flags & 0x02 != 0 {
            at += 4;
        }
        let default_duration = if flags & 0x08 != 0 { be32(tfhd, at)? } else { track.default_duration };
        for b in boxes(traf) {
            let (kind, trun) = b?;
            if &kind != b"trun" {
                continue;
            }
            let flags = be32(trun, 0)? & 0x00FF_FFFF;
            let count = be32(trun, 4)?;
            track.frames = track.frames.saturating_add(u64::from(count));
            let mut at = 8 + if flags & 0x01 != 0 { 4 } else { 0 } + if flags & 0x04 != 0 { 4 } else { 0 };
            if flags & 0x100 == 0 {
                track.fragment_ticks =
                    track.fragment_ticks.saturating_add(u64::from(count) * u64::from(default_duration));
                continue;
            }
            let per_sample = 4 * [0x100, 0x200, 0x400, 0x800].iter().filter(|&&f| flags & f != 0).count();
            // Every entry must be there (the count is not trusted beyond the box).
            if (trun.len().saturating_sub(at)) / per_sample < count as usize {
                return None;
            }
            for _ in 0..count {
                track.fragment_ticks = track.fragment_ticks.saturating_add(u64::from(be32(trun, at)?));
                at += per_sample;
            }
        }
    }
    Some(())
}

// ---------------------------------------------------------------- Matroska / EBML

const EBML_HEADER: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_TYPE: u32 = 0x83;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const CLUSTER: u32 = 0x1F43_B675;
const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK_GROUP: u32 = 0xA0;
const BLOCK: u32 = 0xA1;
/// Children of a segment: they end a cluster of unknown size.
const SEGMENT_CHILDREN: [u32; 8] =
    [0x114D_9B74, INFO, TRACKS, CLUSTER, 0x1C53_BB6B, 0x1941_A469, 0x1043_A770, 0x1254_C367];

/// An element's ID (marker bits kept, as the specification writes them) and its length.
fn ebml_id(b: &[u8]) -> Option<(u32, usize)> {
    let first = *b.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 4 {
        return None;
    }
    let id = b.get(..len)?.iter().fold(0u32, |v, &x| (v << 8) | u32::from(x));
    Some((id, len))
}

/// A variable-length integer (marker bit removed) and its length; `None` as the value
/// for "unknown" (every value bit set).
fn ebml_vint(b: &[u8]) -> Option<(Option<u64>, usize)> {
    let first = *b.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let mut v = u64::from(first) & (0xFF >> len);
    for &x in b.get(1..len)? {
        v = (v << 8) | u64::from(x);
    }
    let unknown = v == (1u64 << (7 * len)) - 1;
    Some((if unknown { None } else { Some(v) }, len))
}

/// One element at the start of `b`: (ID, header length, data length; `None`: unknown).
fn ebml_element(b: &[u8]) -> Option<(u32, usize, Option<usize>)> {
    let (id, id_len) = ebml_id(b)?;
    let (size, size_len) = ebml_vint(b.get(id_len..)?)?;
    let size = match size {
        Some(s) => Some(usize::try_from(s).ok()?),
        None => None,
    };
    Some((id, id_len + size_len, size))
}

fn ebml_uint(b: &[u8]) -> Option<u64> {
    (b.len() <= 8).then(|| b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
}

fn ebml_float(b: &[u8]) -> Option<f64> {
    match b.len() {
        4 => Some(f64::from(f32::from_be_bytes(b.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(b.try_into().ok()?)),
        _ => None,
    }
}

/// Children of a sized element: (ID, data). `None` for one that overruns its parent.
fn ebml_children(mut b: &[u8]) -> impl Iterator<Item = Option<(u32, &[u8])>> {
    std::iter::from_fn(move || {
        if b.is_empty() {
            return None;
        }
        let parsed = ebml_element(b).and_then(|(id, header, size)| {
            let end = header.checked_add(size?).filter(|&e| e <= b.len())?;
            Some((id, header, end))
        });
        match parsed {
            Some((id, header, end)) => {
                let data = &b[header..end];
                b = &b[end..];
                Some(Some((id, data)))
            }
            None => {
                b = &[];
                Some(None)
            }
        }
    })
}

#[derive(Default)]
struct MatroskaTrack {
    number: u64,
    video: bool,
    width: u32,
    height: u32,
}

#[derive(Default)]
struct MatroskaReader {
    timestamp_scale: Option<u64>,
    duration: Option<f64>,
    tracks: Option<Vec<MatroskaTrack>>,
    /// Frames per track number, counted before or after the track list is read.
    frames: std::collections::HashMap<u64, u64>,
    /// Blocks of more track numbers than `MAX_TRACKS`.
    too_many_tracks: bool,
}

fn read_matroska(bytes: &[u8]) -> Option<Header> {
    let mut reader = MatroskaReader::default();
    let mut pos = 0;
    let mut segments = 0;
    while pos < bytes.len() {
        let (id, header, size) = ebml_element(&bytes[pos..])?;
        let start = pos + header;
        let end = match size {
            Some(s) => start.checked_add(s)?.min(bytes.len()),
            None if id == SEGMENT => bytes.len(),
            None => return None,
        };
        match id {
            EBML_HEADER => {}
            SEGMENT => {
                segments += 1;
                // FFmpeg reads one segment: a second is FFprobe's.
                if segments > 1 {
                    return None;
                }
                reader.segment(&bytes[start..end])?;
            }
            _ => {}
        }
        pos = end;
    }
    if reader.too_many_tracks {
        return None;
    }
    let tracks = reader.tracks?;
    let scale = reader.timestamp_scale.unwrap_or(1_000_000) as f64;
    // In microseconds, cut as FFmpeg's Matroska reader does.
    let duration = reader.duration.map(|d| (d * scale / 1e3).trunc() / 1e6);
    let video = tracks
        .iter()
        .filter(|t| t.video)
        .map(|t| VideoTrack {
            width: t.width,
            height: t.height,
            frames: reader.frames.get(&t.number).copied().unwrap_or(0),
        })
        .collect();
    Some(Header { duration, video })
}

impl MatroskaReader {
    /// The children of a segment; a cluster of unknown size (a browser's live
    /// recording) ends where the next segment child starts.
    fn segment(&mut self, b: &[u8]) -> Option<()> {
        let mut pos = 0;
        while pos < b.len() {
            let Some((id, header, size)) = ebml_element(&b[pos..]) else {
                // Cut short inside an element header: what was read stands.
                break;
            };
            let start = pos + header;
            let end = match size {
                // Cut short (an interrupted upload): the decoder's business.
                Some(s) => start.checked_add(s)?.min(b.len()),
                None if id == CLUSTER => start + self.unsized_cluster(&b[start..])?,
                None => return None,
            };
            let data = &b[start..end];
            match id {
                INFO => {
                    for e in ebml_children(data) {
                        let (id, value) = e?;
                        match id {
                            TIMESTAMP_SCALE => self.timestamp_scale = Some(ebml_uint(value)?).filter(|&s| s > 0),
                            DURATION => self.duration = Some(ebml_float(value)?),
                            _ => {}
                        }
                    }
                }
                TRACKS => {
                    // One track list: another is FFprobe's.
                    if self.tracks.is_some() {
                        return None;
                    }
                    self.tracks = Some(tracks(data)?);
                }
                CLUSTER if size.is_some() => self.cluster(data),
                _ => {}
            }
            pos = end;
        }
        Some(())
    }

    /// Counts the blocks of a cluster of unknown size; its length.
    fn unsized_cluster(&mut self, b: &[u8]) -> Option<usize> {
        let mut pos = 0;
        while pos < b.len() {
            let Some((id, header, size)) = ebml_element(&b[pos..]) else { break };
            if SEGMENT_CHILDREN.contains(&id) || id == EBML_HEADER || id == SEGMENT {
                break;
            }
            let start = pos + header;
            let end = start.checked_add(size?)?.min(b.len());
            self.cluster_child(id, &b[start..end]);
            pos = end;
        }
        Some(pos.min(b.len()))
    }

    fn cluster(&mut self, b: &[u8]) {
        let mut pos = 0;
        while pos < b.len() {
            let Some((id, header, Some(size))) = ebml_element(&b[pos..]) else { break };
            let start = pos + header;
            let Some(end) = start.checked_add(size) else { break };
            let end = end.min(b.len());
            self.cluster_child(id, &b[start..end]);
            pos = end;
        }
    }

    fn cluster_child(&mut self, id: u32, data: &[u8]) {
        match id {
            SIMPLE_BLOCK => self.block(data),
            BLOCK_GROUP => {
                for e in ebml_children(data) {
                    match e {
                        Some((BLOCK, block)) => self.block(block),
                        Some(_) => {}
                        None => break,
                    }
                }
            }
            _ => {}
        }
    }

    /// A block: track number, 16-bit timestamp, flags, then (laced) the frame count.
    fn block(&mut self, b: &[u8]) {
        let Some((Some(track), len)) = ebml_vint(b) else { return };
        let Some(&flags) = b.get(len + 2) else { return };
        let frames = if flags & 0x06 != 0 { b.get(len + 3).map_or(1, |&n| u64::from(n) + 1) } else { 1 };
        if self.frames.len() >= MAX_TRACKS && !self.frames.contains_key(&track) {
            self.too_many_tracks = true;
            return;
        }
        let count = self.frames.entry(track).or_insert(0);
        *count = count.saturating_add(frames);
    }
}

fn tracks(b: &[u8]) -> Option<Vec<MatroskaTrack>> {
    let mut list: Vec<MatroskaTrack> = Vec::new();
    for e in ebml_children(b) {
        let (id, entry) = e?;
        if id != TRACK_ENTRY {
            continue;
        }
        let mut track = MatroskaTrack::default();
        for e in ebml_children(entry) {
            let (id, value) = e?;
            match id {
                TRACK_NUMBER => track.number = ebml_uint(value)?,
                TRACK_TYPE => track.video = ebml_uint(value)? == 1,
                VIDEO => {
                    for e in ebml_children(value) {
                        let (id, value) = e?;
                        match id {
                            PIXEL_WIDTH => track.width = u32::try_from(ebml_uint(value)?).ok()?,
                            PIXEL_HEIGHT => track.height = u32::try_from(ebml_uint(value)?).ok()?,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        // Two tracks of one number: which one a block belongs to is FFprobe's call.
        if track.number == 0 || list.len() >= MAX_TRACKS || list.iter().any(|t| t.number == track.number) {
            return None;
        }
        list.push(track);
    }
    Some(list)
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

    fn ffmpeg(args: &[&str]) {
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

    /// Two video tracks: both are counted, at the larger size.
    #[test]
    fn every_video_track_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("two.mp4");
        let path = path.to_str().expect("utf-8");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "color=gray:s=64x64:r=25:d=2",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x480:rate=10:duration=3",
            "-map",
            "0:v",
            "-map",
            "1:v",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            path,
        ]);
        let header = read(&std::fs::read(path).expect("clip"), false).expect("read");
        let sizes: Vec<_> = header.video.iter().map(|t| (t.width, t.height, t.frames)).collect();
        assert_eq!(sizes, [(64, 64, 50), (640, 480, 30)]);
    }

    /// An EBML element: its ID's bytes, an 8-byte size (or "unknown"), its data.
    fn element(id: &[u8], data: &[u8], unknown: bool) -> Vec<u8> {
        let mut e = id.to_vec();
        e.push(0x01);
        e.extend_from_slice(&if unknown {
            [0xFF; 7]
        } else {
            (data.len() as u64).to_be_bytes()[1..].try_into().expect("7")
        });
        e.extend_from_slice(data);
        e
    }

    /// A browser-like WebM made by hand: unknown-size segment and clusters, laced
    /// blocks, blocks in groups, a track list after the first cluster.
    fn webm(block_tracks: &[u8]) -> Vec<u8> {
        let block = |track: u8, laced: Option<u8>| {
            let mut b = vec![0x80 | track, 0, 0, if laced.is_some() { 0x82 } else { 0x80 }];
            b.extend(laced);
            b.extend_from_slice(&[0; 10]);
            element(&[0xA3], &b, false)
        };
        let mut cluster = element(&[0xE7], &[0], false);
        for &t in block_tracks {
            cluster.extend(block(t, None));
        }
        cluster.extend(block(1, Some(2))); // 3 frames in one block
        cluster.extend(element(&[0xA0], &element(&[0xA1], &[0x81, 0, 0, 0, 1, 2], false), false));
        let video = [element(&[0xB0], &[0x05, 0x00], false), element(&[0xBA], &[0x02, 0xD0], false)].concat();
        let entry =
            [element(&[0xD7], &[1], false), element(&[0x83], &[1], false), element(&[0xE0], &video, false)].concat();
        let audio = [element(&[0xD7], &[2], false), element(&[0x83], &[2], false)].concat();
        let tracks = element(
            &[0x16, 0x54, 0xAE, 0x6B],
            &[element(&[0xAE], &entry, false), element(&[0xAE], &audio, false)].concat(),
            false,
        );
        let info = element(&[0x15, 0x49, 0xA9, 0x66], &element(&[0x2A, 0xD7, 0xB1], &[0x0F, 0x42, 0x40], false), false);
        let mut segment = info;
        segment.extend(element(&[0x1F, 0x43, 0xB6, 0x75], &cluster, true));
        segment.extend(tracks);
        segment.extend(element(&[0x1F, 0x43, 0xB6, 0x75], &block(1, None), false));
        let mut file = element(&[0x1A, 0x45, 0xDF, 0xA3], &element(&[0x42, 0x82], b"webm", false), false);
        file.extend(element(&[0x18, 0x53, 0x80, 0x67], &segment, true));
        file
    }

    #[test]
    fn reads_a_browser_recording_made_by_hand() {
        let header = read(&webm(&[1, 2, 1]), true).expect("read");
        // Blocks of track 1: two plain, one laced (3), one in a group, one in the last cluster.
        assert_eq!(header, Header { duration: None, video: vec![VideoTrack { width: 1280, height: 720, frames: 7 }] });
        // Blocks of more track numbers than any recorder writes: FFprobe's.
        let many: Vec<u8> = (1..=40).collect();
        assert_eq!(read(&webm(&many), true), None);
        // Cut short anywhere: read as far as it goes, or left to FFprobe; never a panic.
        let whole = webm(&[1, 2, 1]);
        for cut in 0..whole.len() {
            let _ = read(&whole[..cut], true);
        }
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
