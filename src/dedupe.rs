//! The duplicate index: the one structure of a run that grows with the input.
//!
//! It maps each (vendor, key) seen so far to the line that first had it, in 12 bytes a row. The
//! pair is hashed to a 128-bit xxh3 value of which 80 bits are kept as its fingerprint: the top 16
//! pick one of 65,536 buckets, the next 64 are stored beside the line (a `u32`). A general-purpose
//! `HashMap<u128, u64>` takes 32 bytes an entry in a power-of-two table, and while it grows the old
//! and the new table are both alive, so a million rows once peaked near 100 MB. Here recent pairs
//! sit in a small hash map; every `RECENT_MAX` inserts they are sorted and merged, in place from
//! the back, into one sorted sequence: no load-factor slack. The sequence is stored in fixed-size
//! chunks, so growing it never copies what is there (a reallocating `Vec` has the old and the new
//! block alive at once, and not every allocator can move a block without copying). A directory of
//! the top 16 bits keeps a lookup to its bucket, about n / 65,536 entries.
//!
//! Two different pairs share a fingerprint with probability about n²/2⁸¹ (4·10⁻¹³ for a million
//! rows, 4·10⁻⁹ for a hundred million); the only effect would be a row wrongly reported as a
//! duplicate, visibly, in the report, naming a line with another key.

use std::collections::HashMap;

/// Pairs held in the hash map before a merge into the sorted sequence.
const RECENT_MAX: usize = 32 * 1024;
/// `dir[b]` = index of the first sorted entry whose bucket is >= b.
const DIR_BITS: u32 = 16;
/// Entries a chunk of the sorted sequence (384 KiB).
const CHUNK_BITS: u32 = 15;
const CHUNK: usize = 1 << CHUNK_BITS;

/// One sorted entry: 12 bytes, aligned to 4.
#[derive(Clone, Copy, Default)]
struct Entry {
    /// The 64 fingerprint bits below the bucket, as two halves to keep the alignment at 4.
    key: [u32; 2],
    /// The first line; `u32::MAX` means: look in `big_lines`.
    line: u32,
}

impl Entry {
    fn id(&self) -> Id {
        (u64::from(self.key[0]) << 32) | u64::from(self.key[1])
    }
}

/// The 80-bit fingerprint as (bucket << 64) | key: ordering it orders by bucket, then key.
type Id = u64;
type Fp = u128;

fn bucket(fp: Fp) -> usize {
    (fp >> 64) as usize
}

/// A sequence of entries in chunks of `CHUNK`.
#[derive(Default)]
struct Chunked {
    chunks: Vec<Box<[Entry]>>,
    len: usize,
}

impl Chunked {
    fn get(&self, i: usize) -> Entry {
        self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }

    fn set(&mut self, i: usize, e: Entry) {
        self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)] = e;
    }

    fn grow_to(&mut self, len: usize) {
        while self.chunks.len() * CHUNK < len {
            self.chunks
                .push(vec![Entry::default(); CHUNK].into_boxed_slice());
        }
        self.len = len;
    }
}

#[derive(Default)]
pub struct DuplicateIndex {
    recent: HashMap<Fp, u64>,
    sorted: Chunked,
    dir: Vec<u32>,
    /// First lines from `u32::MAX` on (inputs of over four billion lines).
    big_lines: HashMap<Fp, u64>,
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
        // The top 80 bits: bucket in bits 64..80, key in bits 0..64.
        let fp: Fp = h.digest128() >> 48;
        if let Some(first) = self.get(fp) {
            return Some(first);
        }
        self.recent.insert(fp, line);
        if self.recent.len() >= RECENT_MAX {
            self.merge();
        }
        None
    }

    fn get(&self, fp: Fp) -> Option<u64> {
        if let Some(&line) = self.recent.get(&fp) {
            return Some(line);
        }
        if self.sorted.len == 0 {
            return None;
        }
        let b = bucket(fp);
        let id = fp as Id;
        let (mut lo, mut hi) = (
            self.dir[b] as usize,
            self.dir.get(b + 1).map_or(self.sorted.len, |&x| x as usize),
        );
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = self.sorted.get(mid);
            match e.id().cmp(&id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    return Some(match e.line {
                        u32::MAX => self.big_lines[&fp],
                        line => u64::from(line),
                    });
                }
            }
        }
        None
    }

    fn merge(&mut self) {
        let mut batch: Vec<(Fp, u64)> = self.recent.drain().collect();
        batch.sort_unstable_by_key(|e| e.0);
        // The sequence is in `fp` order, (bucket, key); an entry stores only its key, so the
        // bucket of an old entry comes from the directory.
        let (old, add) = (self.sorted.len, batch.len());
        let mut buckets = OldBuckets {
            dir: &self.dir,
            b: self.dir.len().saturating_sub(1),
        };
        self.sorted.grow_to(old + add);
        // Merge from the back, in place: no second copy of the sequence.
        let (mut i, mut j, mut k) = (old, add, old + add);
        while j > 0 {
            let (fp, line) = batch[j - 1];
            let prev = (i > 0).then(|| {
                let e = self.sorted.get(i - 1);
                (buckets.of(i - 1), e)
            });
            match prev {
                Some((b, e)) if ((b as Fp) << 64 | Fp::from(e.id())) > fp => {
                    self.sorted.set(k - 1, e);
                    i -= 1;
                }
                _ => {
                    let line = match u32::try_from(line) {
                        Ok(l) if l != u32::MAX => l,
                        _ => {
                            self.big_lines.insert(fp, line);
                            u32::MAX
                        }
                    };
                    let id = fp as Id;
                    self.sorted.set(
                        k - 1,
                        Entry {
                            key: [(id >> 32) as u32, id as u32],
                            line,
                        },
                    );
                    j -= 1;
                }
            }
            k -= 1;
        }
        // Rebuild the directory: every moved entry kept its bucket, new ones brought theirs.
        // Counts per bucket are the old counts plus the batch's.
        let mut counts: Vec<u32> = (0..1usize << DIR_BITS)
            .map(|b| {
                let start = self.dir.get(b).map_or(0, |&x| x as usize);
                let end = self.dir.get(b + 1).map_or(old, |&x| x as usize);
                (end - start) as u32
            })
            .collect();
        for (fp, _) in &batch {
            counts[bucket(*fp)] += 1;
        }
        self.dir.resize(1 << DIR_BITS, 0);
        let mut at = 0u32;
        for (slot, n) in self.dir.iter_mut().zip(counts) {
            *slot = at;
            at += n;
        }
    }

    /// Pairs recorded.
    pub fn len(&self) -> usize {
        self.recent.len() + self.sorted.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The bucket of each old entry, for a walk from the back of the sequence.
struct OldBuckets<'a> {
    dir: &'a [u32],
    b: usize,
}

impl OldBuckets<'_> {
    /// The bucket holding entry `i`; `i` must not grow between calls.
    fn of(&mut self, i: usize) -> usize {
        while self.dir[self.b] as usize > i {
            self.b -= 1;
        }
        self.b
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
    fn agrees_with_a_hash_map_over_many_merges() {
        // Keys drawn with repeats from a space larger than several merges, so first sightings and
        // repeats hit the recent map, the sorted chunks and bucket edges alike.
        let mut idx = DuplicateIndex::new();
        let mut model: HashMap<String, u64> = HashMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for line in 2..300_002u64 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let key = format!("auth0|{}", (x >> 33) % 150_000);
            let want = model.get(&key).copied();
            if want.is_none() {
                model.insert(key.clone(), line);
            }
            assert_eq!(idx.insert("auth0", &key, line), want, "line {line}, {key}");
        }
        assert_eq!(idx.len(), model.len());
        assert!(idx.sorted.chunks.len() > 1, "the test spans several chunks");
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
