//! ISO-BMFF (MP4, MOV, 3GP, fragmented MP4 included): the movie header's tracks and
//! every movie fragment's samples, box by box.

use super::{Header, MAX_TRACKS, VideoTrack};

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

pub(super) fn read_iso(bytes: &[u8]) -> Option<Header> {
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

#[cfg(test)]
mod tests {
    use super::super::read;
    use super::super::tests::ffmpeg;

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
}
