//! The duplicate index: the one structure of a run that grows with the input.
//!
//! It maps each (vendor, key) seen so far to the line that first had it, in 16 bytes a slot: a
//! 96-bit fingerprint of the pair and the line as `u32`. A general-purpose `HashMap<u128, u64>`
//! takes 32 bytes an entry, and while it grows the old and the new table are both alive, so a
//! million rows peaked near 100 MB. Here the slots are split over 256 partitions that grow one at
//! a time, so growing never holds more than 1/256 of the index twice.
//!
//! Two different pairs share a fingerprint with probability about n²/2⁹⁷ (1.3·10⁻¹⁷ for a million
//! rows); the only effect would be a row wrongly reported as a duplicate, visibly, in the report.

/// Partitions (a power of two); chosen by the fingerprint's top byte.
const PARTS: usize = 256;
/// Slots a partition starts with.
const INITIAL_SLOTS: usize = 16;

/// `[fingerprint bits 0..32, 32..64, 64..96, line]`; line 0 (never a real line) marks empty.
type Slot = [u32; 4];

#[derive(Default)]
struct Part {
    slots: Vec<Slot>,
    len: usize,
}

pub struct DuplicateIndex {
    parts: Vec<Part>,
}

impl Default for DuplicateIndex {
    fn default() -> Self {
        DuplicateIndex::new()
    }
}

impl DuplicateIndex {
    pub fn new() -> DuplicateIndex {
        DuplicateIndex {
            parts: (0..PARTS).map(|_| Part::default()).collect(),
        }
    }

    /// Record that `vendor`'s `key` is on `line`. When the pair was seen before, keep the first
    /// line and return it.
    pub fn insert(&mut self, vendor: &str, key: &str, line: u64) -> Option<u64> {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(vendor.as_bytes());
        h.update(&[0]);
        h.update(key.as_bytes());
        let fp = h.digest128();
        // Lines past u32::MAX (four billion lines) are clamped: only a message would be off.
        let line = u32::try_from(line).unwrap_or(u32::MAX).max(1);
        self.parts[(fp >> 120) as usize]
            .insert(fp, line)
            .map(u64::from)
    }

    /// Pairs recorded.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of slot storage (for measurements).
    pub fn heap_bytes(&self) -> usize {
        self.parts
            .iter()
            .map(|p| p.slots.capacity() * std::mem::size_of::<Slot>())
            .sum()
    }
}

impl Part {
    fn insert(&mut self, fp: u128, line: u32) -> Option<u32> {
        // Keep the load at most 4/5 so linear probing stays short.
        if (self.len + 1) * 5 > self.slots.len() * 4 {
            self.grow();
        }
        let tag = [fp as u32, (fp >> 32) as u32, (fp >> 64) as u32];
        let n = self.slots.len();
        let mut i = home(&tag, n);
        loop {
            let slot = &mut self.slots[i];
            if slot[3] == 0 {
                *slot = [tag[0], tag[1], tag[2], line];
                self.len += 1;
                return None;
            }
            if slot[..3] == tag {
                return Some(slot[3]);
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
    }

    /// Grow by half (not double): the load stays between 8/15 and 4/5, about 24 bytes a row.
    fn grow(&mut self) {
        let new_len = (self.slots.len() * 3 / 2).max(INITIAL_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![[0; 4]; new_len]);
        for slot in old.into_iter().filter(|s| s[3] != 0) {
            let mut i = home(&[slot[0], slot[1], slot[2]], new_len);
            while self.slots[i][3] != 0 {
                i = if i + 1 == new_len { 0 } else { i + 1 };
            }
            self.slots[i] = slot;
        }
    }
}

/// A slot's first probe position in a partition of `n` slots, from stored fingerprint bits only
/// (so growing can recompute it): a multiply-shift maps 32 hash bits onto 0..n.
fn home(tag: &[u32; 3], n: usize) -> usize {
    ((u64::from(tag[2]) * n as u64) >> 32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_duplicates_and_keeps_the_first_line() {
        let mut idx = DuplicateIndex::new();
        assert_eq!(idx.insert("auth0", "a/b/c", 2), None);
        assert_eq!(idx.insert("auth0", "a/b/d", 3), None);
        assert_eq!(
            idx.insert("gigya", "a/b/c", 4),
            None,
            "same key, other vendor"
        );
        assert_eq!(idx.insert("auth0", "a/b/c", 9), Some(2));
        assert_eq!(idx.insert("auth0", "a/b/c", 12), Some(2));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_eq!(idx.insert("ab", "c", 20), None);
        assert_eq!(idx.insert("a", "bc", 21), None);
        assert_eq!(idx.len(), 5);
    }

    #[test]
    fn survives_growth_with_many_keys() {
        let mut idx = DuplicateIndex::new();
        for i in 0..200_000u64 {
            assert_eq!(idx.insert("v", &format!("k{i}"), i + 2), None, "row {i}");
        }
        for i in (0..200_000u64).step_by(997) {
            assert_eq!(idx.insert("v", &format!("k{i}"), 999_999), Some(i + 2));
        }
        assert_eq!(idx.len(), 200_000);
        // 16-byte slots at a load between 3/8 and 3/4.
        let per_row = idx.heap_bytes() as f64 / 200_000.0;
        assert!(
            (16.0 * 4.0 / 3.0..=16.0 * 8.0 / 3.0).contains(&per_row),
            "{per_row} bytes a row"
        );
    }
}
