//! The vendor simulator behind `unlinker-sim` (being written).
