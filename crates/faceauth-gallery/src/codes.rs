//! The contiguous int8 code array, in an anonymous memory mapping that asks Linux
//! for transparent huge pages (`MADV_HUGEPAGE`). A search streams the whole array;
//! with 4 KiB pages the TLB misses cost about a third of the scan (measured on the
//! bench machine, 1 M templates: 24 ms of CPU per scan with 4 KiB pages, 16 ms
//! with 2 MiB pages). Where the kernel gives no huge pages the mapping still works,
//! at the 4 KiB speed. Untouched capacity is not resident.

use memmap2::{MmapMut, MmapOptions};

use crate::GalleryError;

/// Mappings of this size or more are made a whole number of huge pages, which
/// the kernel then aligns to a huge-page boundary.
const HUGE_PAGE: usize = 2 << 20;
/// The smallest mapping made (64 templates of 512 codes).
const MIN_CAPACITY: usize = 32 << 10;

#[derive(Default)]
pub(crate) struct Codes {
    /// `None` until the first code is stored.
    map: Option<MmapMut>,
    len: usize,
}

impl Codes {
    /// Bytes mapped (resident only once written).
    pub(crate) fn capacity(&self) -> usize {
        self.map.as_ref().map_or(0, |map| map.len())
    }

    pub(crate) fn as_slice(&self) -> &[i8] {
        match &self.map {
            Some(map) => bytemuck::must_cast_slice(&map[..self.len]),
            None => &[],
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [i8] {
        match &mut self.map {
            Some(map) => bytemuck::must_cast_slice_mut(&mut map[..self.len]),
            None => &mut [],
        }
    }

    /// Room for `additional` more codes; on error nothing changed.
    pub(crate) fn reserve(&mut self, additional: usize) -> Result<(), GalleryError> {
        let needed = self.len.checked_add(additional).ok_or(GalleryError::Allocation { bytes: usize::MAX })?;
        if needed <= self.capacity() {
            return Ok(());
        }
        self.remap(needed.max(self.capacity().saturating_mul(2)))
    }

    pub(crate) fn extend_from_slice(&mut self, codes: &[i8]) -> Result<(), GalleryError> {
        self.reserve(codes.len())?;
        let start = self.len;
        self.len += codes.len();
        self.as_mut_slice()[start..].copy_from_slice(codes);
        Ok(())
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// A mapping just large enough for the codes held; `false` when none could be made
    /// (the codes stay where they are).
    pub(crate) fn shrink_to_fit(&mut self) -> bool {
        if self.len == 0 {
            self.map = None;
            return true;
        }
        mapping_size(self.len) >= self.capacity() || self.remap(self.len).is_ok()
    }

    pub(crate) fn try_clone(&self) -> Result<Self, GalleryError> {
        let mut copy = Self::default();
        copy.extend_from_slice(self.as_slice())?;
        Ok(copy)
    }

    /// Moves the codes into a new mapping of at least `capacity` bytes.
    fn remap(&mut self, capacity: usize) -> Result<(), GalleryError> {
        let size = mapping_size(capacity);
        let mut map = MmapOptions::new().len(size).map_anon().map_err(|_| GalleryError::Allocation { bytes: size })?;
        #[cfg(target_os = "linux")]
        if size >= HUGE_PAGE {
            // Only advice: without huge pages the scan is slower, not wrong.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        map[..self.len].copy_from_slice(bytemuck::must_cast_slice(self.as_slice()));
        self.map = Some(map);
        Ok(())
    }
}

fn mapping_size(capacity: usize) -> usize {
    let size = capacity.max(MIN_CAPACITY);
    if size >= HUGE_PAGE { size.div_ceil(HUGE_PAGE).saturating_mul(HUGE_PAGE) } else { size }
}
