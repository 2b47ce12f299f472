//! Matroska and WebM (EBML): the track list, and the blocks of every cluster,
//! unknown-size segments and clusters of browser recordings included.

use super::{Header, MAX_TRACKS, VideoTrack};

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

pub(super) fn read_matroska(bytes: &[u8]) -> Option<Header> {
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
    use super::super::{Header, VideoTrack, read};

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
}
