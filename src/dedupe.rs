//! The duplicate index: the one structure of a run that grows with the input.
//!
//! It maps each (vendor, key) seen so far to the line that first had it, in 16 bytes a row: a
//! 96-bit fingerprint of the pair and the line as `u32`. A general-purpose `HashMap<u128, u64>`
//! takes 32 bytes an entry in a power-of-two table, and while it grows the old and the new table
//! are both alive, so a million rows peaked near 100 MB. Here recent pairs sit in a small hash map;
//! every `RECENT_MAX` inserts they are sorted and merged, in place from the back, into one sorted
//! array: no load-factor slack, and no second copy while it grows (a large `Vec` grows by
//! `mremap`, and capacity not yet written is never resident). A directory of the top 16 bits
//! keeps a lookup to its bucket, about n / 65,536 entries.
//!
//! Two different pairs share a fingerprint with probability about n²/2⁹⁷ (6·10⁻¹⁸ for a million
//! rows); the only effect would be a row wrongly reported as a duplicate, visibly, in the report.

use std::collections::HashMap;

/// Pairs held in the hash map before a merge into the sorted array.
const RECENT_MAX: usize = 32 * 1024;
/// `dir[b]` = index of the first sorted entry whose top `DIR_BITS` bits are >= b.
const DIR_BITS: u32 = 16;

#[derive(Clone, Copy, Default)]
struct Entry {
    hi: u64,
    lo: u32,
    /// The first line; `u32::MAX` means: look in `big_lines`.
    line: u32,
}

type Id = (u64, u32);

#[derive(Default)]
pub struct DuplicateIndex {
    recent: HashMap<Id, u64>,
    sorted: Vec<Entry>,
    dir: Vec<u32>,
    /// First lines from `u32::MAX` on (inputs of over four billion lines).
    big_lines: HashMap<Id, u64>,
}

impl DuplicateIndex {
    pub fn new() -> DuplicateIndex {
        DuplicateIndex {
            recent: HashMap::with_capacity(RECENT_MAX),
            ..DuplicateIndex::default()
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
        let id: Id = ((fp >> 64) as u64, (fp >> 32) as u32);
        if let Some(first) = self.get(id) {
            return Some(first);
        }
        self.recent.insert(id, line);
        if self.recent.len() >= RECENT_MAX {
            self.merge();
        }
        None
    }

    fn get(&self, id: Id) -> Option<u64> {
        if let Some(&line) = self.recent.get(&id) {
            return Some(line);
        }
        if self.sorted.is_empty() {
            return None;
        }
        let b = (id.0 >> (64 - DIR_BITS)) as usize;
        let lo = self.dir[b] as usize;
        let hi = self
            .dir
            .get(b + 1)
            .map_or(self.sorted.len(), |&x| x as usize);
        let i = lo
            + self.sorted[lo..hi]
                .binary_search_by(|e| (e.hi, e.lo).cmp(&id))
                .ok()?;
        Some(match self.sorted[i].line {
            u32::MAX => self.big_lines[&id],
            line => u64::from(line),
        })
    }

    fn merge(&mut self) {
        let mut batch: Vec<(Id, u64)> = self.recent.drain().collect();
        batch.sort_unstable_by_key(|e| e.0);
        let (old, add) = (self.sorted.len(), batch.len());
        self.sorted.resize(old + add, Entry::default());
        // Merge from the back, in place: no second copy of the array.
        let (mut i, mut j, mut k) = (old, add, old + add);
        while j > 0 {
            let (id, line) = batch[j - 1];
            if i > 0 && (self.sorted[i - 1].hi, self.sorted[i - 1].lo) > id {
                self.sorted[k - 1] = self.sorted[i - 1];
                i -= 1;
            } else {
                let line = match u32::try_from(line) {
                    Ok(l) if l != u32::MAX => l,
                    _ => {
                        self.big_lines.insert(id, line);
                        u32::MAX
                    }
                };
                self.sorted[k - 1] = Entry {
                    hi: id.0,
                    lo: id.1,
                    line,
                };
                j -= 1;
            }
            k -= 1;
        }
        self.dir.resize(1 << DIR_BITS, 0);
        let mut e = 0;
        for (b, slot) in self.dir.iter_mut().enumerate() {
            while e < self.sorted.len() && ((self.sorted[e].hi >> (64 - DIR_BITS)) as usize) < b {
                e += 1;
            }
            *slot = e as u32;
        }
    }

    /// Pairs recorded.
    pub fn len(&self) -> usize {
        self.recent.len() + self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
    }

    #[test]
    fn lines_past_four_billion_survive_a_merge() {
        let mut idx = DuplicateIndex::new();
        let big = u64::from(u32::MAX) + 5;
        assert_eq!(idx.insert("v", "big", big), None);
        for i in 0..RECENT_MAX as u64 {
            idx.insert("v", &format!("fill{i}"), 2);
        }
        assert!(idx.recent.len() < RECENT_MAX, "a merge happened");
        assert_eq!(idx.insert("v", "big", 7), Some(big));
    }
}
