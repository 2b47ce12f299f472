//! The arithmetic of `frame-summary` (wit/policy.wit), in one place: the host
//! computes it for the evidence it sends to policies, and the policy SDK's
//! `testing` builders compute it for policies' unit tests, so both read the same
//! numbers. Inputs are plain values; each caller maps its own face and frame types
//! into them. The movement part (`motion-summary`) is measured by the host alone;
//! the SDK's builders give none ([`no_motion!`]).
//!
//! `no_std` (it needs `alloc` only), so it builds for the host and for
//! `wasm32-wasip2` alike.

#![no_std]
#![deny(missing_docs)]

extern crate alloc;

use alloc::vec::Vec;

/// A face at least this large relative to the primary one (`relative-size`, the
/// ratio of the heights) is a second face: its frame does not count in
/// `frames-with-single-face`.
pub const SECOND_FACE_RELATIVE_SIZE: f32 = 0.5;

/// One frame as the summary reads it.
#[derive(Debug, Clone)]
pub struct FrameFaces<O> {
    /// Similarity of the frame's primary (largest) face; `None` for a frame without a face.
    pub primary_similarity: Option<f32>,
    /// `relative-size` of each other face of the frame.
    pub other_relative_sizes: O,
}

/// The figures of `frame-summary` but `motion`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Frames analysed.
    pub frames: u32,
    /// Frames with at least one face.
    pub frames_with_face: u32,
    /// Frames with a face and no second face (see [`SECOND_FACE_RELATIVE_SIZE`]).
    pub frames_with_single_face: u32,
    /// Highest primary-face similarity over the frames with a face.
    pub best_similarity: Option<f32>,
    /// Median primary-face similarity (see [`median`]).
    pub median_similarity: Option<f32>,
    /// Lowest primary-face similarity.
    pub worst_similarity: Option<f32>,
}

/// The `frame-summary` record `$record` (a bindings type: the host's and a guest's
/// are different types with the same fields) of a [`Summary`] and a motion summary.
///
/// ```ignore
/// let record = faceauth_evidence_summary::frame_summary!(FrameSummary, summary, motion);
/// ```
#[macro_export]
macro_rules! frame_summary {
    ($record:ident, $summary:expr, $motion:expr) => {{
        let s: $crate::Summary = $summary;
        $record {
            frames: s.frames,
            frames_with_face: s.frames_with_face,
            frames_with_single_face: s.frames_with_single_face,
            best_similarity: s.best_similarity,
            median_similarity: s.median_similarity,
            worst_similarity: s.worst_similarity,
            motion: $motion,
        }
    }};
}

/// The `motion-summary` record `$record` (a bindings type) when no movement is
/// measured: a still image, or fewer than two frames with a face.
#[macro_export]
macro_rules! no_motion {
    ($record:ident) => {
        $record { pairs: 0, blinks: 0, yaw_range: 0.0, pitch_range: 0.0, landmark_motion: 0.0, non_rigid_motion: 0.0 }
    };
}

/// The median of `values` (which it sorts, by `f32::total_cmp`): the middle value
/// of an odd count, the mean of the two middle values of an even one; `None` when
/// empty.
pub fn median(values: &mut [f32]) -> Option<f32> {
    values.sort_by(f32::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The summary of `frames`, in any order.
pub fn summarize<O: IntoIterator<Item = f32>>(frames: impl IntoIterator<Item = FrameFaces<O>>) -> Summary {
    let mut count = 0;
    let mut single = 0;
    let mut similarities = Vec::new();
    for frame in frames {
        count += 1;
        let Some(similarity) = frame.primary_similarity else { continue };
        similarities.push(similarity);
        if frame.other_relative_sizes.into_iter().all(|size| size < SECOND_FACE_RELATIVE_SIZE) {
            single += 1;
        }
    }
    let median_similarity = median(&mut similarities);
    Summary {
        frames: count,
        frames_with_face: similarities.len() as u32,
        frames_with_single_face: single,
        best_similarity: similarities.last().copied(),
        median_similarity,
        worst_similarity: similarities.first().copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn frame(similarity: Option<f32>, others: &[f32]) -> FrameFaces<Vec<f32>> {
        FrameFaces { primary_similarity: similarity, other_relative_sizes: others.to_vec() }
    }

    #[test]
    fn median_is_the_middle_or_the_mean_of_the_two_middles() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [0.3]), Some(0.3));
        assert_eq!(median(&mut [0.9, 0.1, 0.5]), Some(0.5));
        assert_eq!(median(&mut [0.8, 0.2, 0.6, 0.4]), Some(0.5));
        let mut values = [3.0, 1.0, 2.0];
        median(&mut values);
        assert_eq!(values, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn summary_counts_frames_and_orders_similarities() {
        let s = summarize(vec![
            frame(Some(0.7), &[]),
            frame(None, &[]),
            frame(Some(0.2), &[0.8]),
            frame(Some(0.5), &[0.2, 0.3]),
        ]);
        assert_eq!((s.frames, s.frames_with_face, s.frames_with_single_face), (4, 3, 2));
        assert_eq!((s.best_similarity, s.median_similarity, s.worst_similarity), (Some(0.7), Some(0.5), Some(0.2)));
    }

    #[test]
    fn a_face_half_the_primary_height_is_a_second_face() {
        let s = summarize(vec![frame(Some(0.6), &[SECOND_FACE_RELATIVE_SIZE]), frame(Some(0.6), &[0.49])]);
        assert_eq!(s.frames_with_single_face, 1);
    }

    #[test]
    fn the_macros_fill_records_of_the_bindings_shape() {
        #[derive(Debug, PartialEq)]
        struct MotionSummary {
            pairs: u32,
            blinks: u32,
            yaw_range: f32,
            pitch_range: f32,
            landmark_motion: f32,
            non_rigid_motion: f32,
        }
        #[derive(Debug)]
        struct FrameSummary {
            frames: u32,
            frames_with_face: u32,
            frames_with_single_face: u32,
            best_similarity: Option<f32>,
            median_similarity: Option<f32>,
            worst_similarity: Option<f32>,
            motion: MotionSummary,
        }
        let summary = summarize(vec![frame(Some(0.9), &[]), frame(Some(0.3), &[0.7])]);
        let r = frame_summary!(FrameSummary, summary, no_motion!(MotionSummary));
        assert_eq!((r.frames, r.frames_with_face, r.frames_with_single_face), (2, 2, 1));
        assert_eq!((r.best_similarity, r.median_similarity, r.worst_similarity), (Some(0.9), Some(0.6), Some(0.3)));
        assert_eq!((r.motion.pairs, r.motion.yaw_range), (0, 0.0));
    }

    #[test]
    fn no_frame_or_no_face_gives_no_similarity() {
        assert_eq!(summarize(Vec::<FrameFaces<Vec<f32>>>::new()), Summary::default());
        let s = summarize(vec![frame(None, &[]), frame(None, &[])]);
        assert_eq!((s.frames, s.frames_with_face, s.frames_with_single_face), (2, 0, 0));
        assert_eq!((s.best_similarity, s.median_similarity, s.worst_similarity), (None, None, None));
    }
}
