//! ESP anti-replay window (RFC 4303 3.4.3 and Appendix A), with optional 64-bit Extended
//! Sequence Numbers.
//!
//! The receive path is: [`ReplayWindow::infer_seq`] -> [`ReplayWindow::check`] -> AEAD open ->
//! [`ReplayWindow::insert`]. Check and insert are separate so that a forged packet (one that fails
//! the ICV) never moves the window: only authenticated sequence numbers are inserted.

/// Smallest window this type keeps, in packets (the design asks for at least 1024).
pub const MIN_WINDOW: u32 = 1024;
/// Largest window this type keeps, in packets (a 128 KiB bitmap).
pub const MAX_WINDOW: u32 = hometun_control::MAX_REPLAY_WINDOW;

const WORD_BITS: u64 = u64::BITS as u64;

/// Why a sequence number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The sequence number was already received inside the window.
    #[error("duplicate sequence number")]
    Duplicate,
    /// The sequence number is left of the window (or is 0, which no sender ever uses).
    #[error("sequence number too old for the replay window")]
    TooOld,
}

/// A sliding anti-replay window of `size` packets ending at the highest authenticated sequence
/// number. Bit `seq % size` of the bitmap records whether `seq` was seen; `size` is a power of two
/// so that the index is a mask.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    /// Highest authenticated sequence number so far; 0 before the first packet.
    highest: u64,
    /// Window size in packets: a power of two in `MIN_WINDOW..=MAX_WINDOW`.
    size: u64,
    esn: bool,
    bitmap: Box<[u64]>,
}

impl ReplayWindow {
    /// A window for `size` packets, rounded up to a power of two and clamped to
    /// [`MIN_WINDOW`]`..=`[`MAX_WINDOW`]. With `esn`, sequence numbers are 64 bits of which the
    /// wire carries the low 32 (RFC 4303 2.2.1).
    pub fn new(size: u32, esn: bool) -> Self {
        let size = u64::from(size.clamp(MIN_WINDOW, MAX_WINDOW).next_power_of_two());
        let words = usize::try_from(size / WORD_BITS).expect("at most 2^14 words");
        ReplayWindow {
            highest: 0,
            size,
            esn,
            bitmap: vec![0u64; words].into_boxed_slice(),
        }
    }

    /// The effective window size in packets (after rounding).
    pub fn size(&self) -> u32 {
        u32::try_from(self.size).expect("size is clamped to MAX_WINDOW")
    }

    /// Whether this window uses 64-bit Extended Sequence Numbers.
    pub fn esn(&self) -> bool {
        self.esn
    }

    /// The highest authenticated sequence number so far (0 before the first packet).
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// The full sequence number for the 32 bits the packet carries. Without ESN that is the wire
    /// value. With ESN the high 32 bits are inferred as in RFC 4303 Appendix A2.2: the number is
    /// placed in the 2^32-wide span that keeps it closest to the window.
    pub fn infer_seq(&self, wire_seq: u32) -> u64 {
        if !self.esn {
            return u64::from(wire_seq);
        }
        let seq_low = u64::from(wire_seq);
        let top_low = self.highest & 0xffff_ffff;
        let top_high = self.highest >> 32;
        // The window's bottom, in the low 32 bits (modulo 2^32).
        let bottom_low = top_low.wrapping_sub(self.size - 1) & 0xffff_ffff;
        let high = if top_low >= self.size - 1 {
            // Case A: the whole window lies inside one 2^32 span.
            if seq_low >= bottom_low {
                top_high
            } else if top_high < u64::from(u32::MAX) {
                top_high + 1
            } else {
                // No span after the last one: the number will be refused as too old.
                top_high
            }
        } else {
            // Case B: the window straddles the boundary with the previous span.
            if seq_low >= bottom_low {
                // Before the first packet there is no previous span; the number is then ahead.
                top_high.saturating_sub(1)
            } else {
                top_high
            }
        };
        (high << 32) | seq_low
    }

    /// Whether `seq` may be accepted: it is right of the highest so far (any distance: the
    /// caller's AEAD decides whether a far-ahead number is genuine), or inside the window and not
    /// yet seen. Does not change the window.
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::TooOld);
        }
        if seq > self.highest {
            return Ok(());
        }
        if self.highest - seq >= self.size {
            return Err(ReplayError::TooOld);
        }
        if self.bit(seq) {
            Err(ReplayError::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Records `seq` as received. Call only after the AEAD authenticated the packet (and after
    /// [`check`](Self::check) passed); a number left of the window is ignored.
    pub fn insert(&mut self, seq: u64) {
        if seq == 0 {
            return;
        }
        if seq > self.highest {
            let advance = seq - self.highest;
            if advance >= self.size {
                self.bitmap.fill(0);
            } else {
                // The slots of highest+1 ..= seq held numbers that now fall off the left.
                self.clear_range(self.highest + 1, seq);
            }
            self.highest = seq;
            self.set_bit(seq);
        } else if self.highest - seq < self.size {
            self.set_bit(seq);
        }
    }

    fn index(&self, seq: u64) -> (usize, u64) {
        let slot = seq & (self.size - 1);
        let word = usize::try_from(slot / WORD_BITS).expect("slot < size <= 2^20");
        (word, 1u64 << (slot % WORD_BITS))
    }

    fn bit(&self, seq: u64) -> bool {
        let (word, mask) = self.index(seq);
        self.bitmap[word] & mask != 0
    }

    fn set_bit(&mut self, seq: u64) {
        let (word, mask) = self.index(seq);
        self.bitmap[word] |= mask;
    }

    /// Clears the slots of `from..=to`, a run shorter than the window; whole words at a time
    /// where the run covers them.
    fn clear_range(&mut self, from: u64, to: u64) {
        let mut seq = from;
        while seq <= to {
            let (word, mask) = self.index(seq);
            if seq.is_multiple_of(WORD_BITS) && to - seq >= WORD_BITS - 1 {
                self.bitmap[word] = 0;
                seq += WORD_BITS;
            } else {
                self.bitmap[word] &= !mask;
                seq += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn accept(w: &mut ReplayWindow, seq: u64) -> Result<(), ReplayError> {
        w.check(seq)?;
        w.insert(seq);
        Ok(())
    }

    #[test]
    fn size_is_rounded_and_clamped() {
        assert_eq!(ReplayWindow::new(0, false).size(), 1024);
        assert_eq!(ReplayWindow::new(1024, false).size(), 1024);
        assert_eq!(ReplayWindow::new(1025, false).size(), 2048);
        assert_eq!(ReplayWindow::new(3000, false).size(), 4096);
        assert_eq!(ReplayWindow::new(u32::MAX, false).size(), MAX_WINDOW);
    }

    #[test]
    fn first_packet_and_zero() {
        let mut w = ReplayWindow::new(1024, false);
        assert_eq!(w.highest(), 0);
        assert_eq!(w.check(0), Err(ReplayError::TooOld));
        assert_eq!(accept(&mut w, 1), Ok(()));
        assert_eq!(w.highest(), 1);
        assert_eq!(w.check(1), Err(ReplayError::Duplicate));

        // A first packet that is not 1 (earlier ones lost) is fine too, and opens the window
        // below it.
        let mut w = ReplayWindow::new(1024, false);
        assert_eq!(accept(&mut w, 500), Ok(()));
        assert_eq!(accept(&mut w, 3), Ok(()));
        assert_eq!(w.check(3), Err(ReplayError::Duplicate));
        assert_eq!(w.highest(), 500);
    }

    #[test]
    fn in_order_then_duplicates() {
        let mut w = ReplayWindow::new(1024, false);
        for seq in 1..=5000 {
            assert_eq!(accept(&mut w, seq), Ok(()), "seq {seq}");
        }
        assert_eq!(w.highest(), 5000);
        for seq in (5000 - 1023)..=5000 {
            assert_eq!(w.check(seq), Err(ReplayError::Duplicate), "seq {seq}");
        }
        assert_eq!(w.check(5000 - 1024), Err(ReplayError::TooOld));
        assert_eq!(w.check(1), Err(ReplayError::TooOld));
    }

    #[test]
    fn out_of_order_inside_window() {
        let mut w = ReplayWindow::new(1024, false);
        assert_eq!(accept(&mut w, 2000), Ok(()));
        // Every number of the window below 2000 is still acceptable once, in any order.
        for seq in (977..2000).rev().step_by(2) {
            assert_eq!(accept(&mut w, seq), Ok(()), "seq {seq}");
        }
        for seq in (978..2000).step_by(2) {
            assert_eq!(accept(&mut w, seq), Ok(()), "seq {seq}");
        }
        for seq in 977..=2000 {
            assert_eq!(w.check(seq), Err(ReplayError::Duplicate), "seq {seq}");
        }
        assert_eq!(w.check(976), Err(ReplayError::TooOld));
        assert_eq!(w.highest(), 2000);
    }

    #[test]
    fn edge_of_window() {
        let mut w = ReplayWindow::new(1024, false);
        assert_eq!(accept(&mut w, 1025), Ok(()));
        // 1025 - 1023 = 2 is the last number inside; 1 is just outside.
        assert_eq!(w.check(2), Ok(()));
        assert_eq!(w.check(1), Err(ReplayError::TooOld));
    }

    #[test]
    fn slide_by_one_forgets_the_oldest() {
        let mut w = ReplayWindow::new(1024, false);
        for seq in 1..=1024 {
            accept(&mut w, seq).unwrap();
        }
        assert_eq!(w.check(1), Err(ReplayError::Duplicate));
        accept(&mut w, 1025).unwrap();
        assert_eq!(w.check(1), Err(ReplayError::TooOld));
        assert_eq!(w.check(2), Err(ReplayError::Duplicate));
        // 1025 shares slot with 1: the slot must read as "seen" for 1025 only.
        assert_eq!(w.check(1025), Err(ReplayError::Duplicate));
    }

    #[test]
    fn slide_clears_reused_slots() {
        let mut w = ReplayWindow::new(1024, false);
        // Receive 1..=10, then jump to 1030: the window is 7..=1030, so 7..=10 are still
        // remembered and 1..=6 fell off.
        for seq in 1..=10 {
            accept(&mut w, seq).unwrap();
        }
        accept(&mut w, 1030).unwrap();
        assert_eq!(w.check(6), Err(ReplayError::TooOld));
        for seq in 7..=10 {
            assert_eq!(w.check(seq), Err(ReplayError::Duplicate), "seq {seq}");
        }
        for seq in 11..1030 {
            assert_eq!(w.check(seq), Ok(()), "seq {seq}");
        }
        // A slide of several words at once reuses the slots of 7..=10 (as 1031..=1034 and
        // later): they must read as unseen.
        accept(&mut w, 1030 + 700).unwrap();
        assert_eq!(w.check(1030), Err(ReplayError::Duplicate));
        for seq in 1031..1730 {
            assert_eq!(w.check(seq), Ok(()), "seq {seq}");
        }
    }

    #[test]
    fn slide_by_more_than_window() {
        let mut w = ReplayWindow::new(1024, false);
        for seq in 1..=100 {
            accept(&mut w, seq).unwrap();
        }
        accept(&mut w, 100 + 5000).unwrap();
        assert_eq!(w.highest(), 5100);
        assert_eq!(w.check(100), Err(ReplayError::TooOld));
        // Nothing of the old bitmap survives.
        for seq in (5100 - 1023)..5100 {
            assert_eq!(w.check(seq), Ok(()), "seq {seq}");
        }
        assert_eq!(w.check(5100), Err(ReplayError::Duplicate));
    }

    #[test]
    fn far_ahead_passes_check_without_moving() {
        let mut w = ReplayWindow::new(1024, false);
        accept(&mut w, 10).unwrap();
        // The check does not reject a far-ahead number (only the AEAD can tell a forgery),
        // and nothing moves unless it is inserted.
        assert_eq!(w.check(u64::from(u32::MAX)), Ok(()));
        assert_eq!(w.highest(), 10);
        assert_eq!(w.check(9), Ok(()));
        assert_eq!(w.check(10), Err(ReplayError::Duplicate));
    }

    #[test]
    fn insert_left_of_window_is_ignored() {
        let mut w = ReplayWindow::new(1024, false);
        accept(&mut w, 5000).unwrap();
        w.insert(1);
        assert_eq!(w.highest(), 5000);
        // Slot of 1 is slot of 1 + 4096 etc.; it must not have been set.
        assert_eq!(w.check(5000 - 1023), Ok(()));
    }

    #[test]
    fn without_esn_wire_value_is_the_sequence() {
        let mut w = ReplayWindow::new(1024, false);
        accept(&mut w, u64::from(u32::MAX) - 5).unwrap();
        assert_eq!(w.infer_seq(3), 3);
        assert_eq!(w.check(w.infer_seq(3)), Err(ReplayError::TooOld));
    }

    #[test]
    fn esn_inference_at_start() {
        let w = ReplayWindow::new(1024, true);
        assert_eq!(w.infer_seq(1), 1);
        assert_eq!(w.infer_seq(5000), 5000);
        // Before anything arrived there is no previous span.
        assert_eq!(w.infer_seq(u32::MAX), u64::from(u32::MAX));
    }

    #[test]
    fn esn_wrap_of_low_bits() {
        let mut w = ReplayWindow::new(1024, true);
        let near_wrap = (1u64 << 32) - 10;
        accept(&mut w, near_wrap).unwrap();
        // Case A: window inside span 0; small wire numbers belong to span 1.
        assert_eq!(w.infer_seq(u32::MAX - 3), (1u64 << 32) - 4);
        assert_eq!(w.infer_seq(5), (1u64 << 32) + 5);
        assert_eq!(w.infer_seq(u32::MAX - 9), near_wrap);
        let after = w.infer_seq(3);
        assert_eq!(after, (1u64 << 32) + 3);
        accept(&mut w, after).unwrap();
        assert_eq!(w.highest(), (1u64 << 32) + 3);

        // Case B: the window now straddles the wrap. Numbers just below the wrap are in span 0.
        let before = w.infer_seq(u32::MAX - 2);
        assert_eq!(before, (1u64 << 32) - 3);
        assert_eq!(w.check(before), Ok(()));
        accept(&mut w, before).unwrap();
        assert_eq!(
            w.check(w.infer_seq(u32::MAX - 2)),
            Err(ReplayError::Duplicate)
        );
        assert_eq!(
            w.check(w.infer_seq(u32::MAX - 9)),
            Err(ReplayError::Duplicate)
        );
        // Low wire values right of the window stay in span 1.
        assert_eq!(w.infer_seq(4), (1u64 << 32) + 4);
        assert_eq!(w.infer_seq(100_000), (1u64 << 32) + 100_000);
        // Wire value 0 is legitimate with ESN: it is 2^32.
        assert_eq!(w.infer_seq(0), 1u64 << 32);
        assert_eq!(w.check(1u64 << 32), Ok(()));
        // Low bits below the window's bottom read as the next span (RFC 4303 A2.2): far ahead,
        // so the check passes and the AEAD (whose AAD carries the high bits) decides.
        let below = w.infer_seq(u32::MAX - 2000);
        assert_eq!(below, (2u64 << 32) - 2001);
        assert_eq!(w.check(below), Ok(()));
        // The same number in span 0 is too old.
        assert_eq!(w.check((1u64 << 32) - 2001), Err(ReplayError::TooOld));
    }

    #[test]
    fn esn_far_into_second_span() {
        let mut w = ReplayWindow::new(1024, true);
        accept(&mut w, (3u64 << 32) + 100_000).unwrap();
        assert_eq!(w.infer_seq(100_001), (3u64 << 32) + 100_001);
        assert_eq!(w.infer_seq(99_500), (3u64 << 32) + 99_500);
        // Below the window in the same span reads as the next span (far ahead), which the
        // AEAD then refuses for a replay since the AAD carries the high bits.
        assert_eq!(w.infer_seq(10), (4u64 << 32) + 10);
    }

    #[derive(Default)]
    struct Model {
        seen: HashSet<u64>,
        highest: u64,
    }

    impl Model {
        fn check(&self, size: u64, seq: u64) -> Result<(), ReplayError> {
            if seq == 0 {
                Err(ReplayError::TooOld)
            } else if seq > self.highest {
                Ok(())
            } else if self.highest - seq >= size {
                Err(ReplayError::TooOld)
            } else if self.seen.contains(&seq) {
                Err(ReplayError::Duplicate)
            } else {
                Ok(())
            }
        }

        fn insert(&mut self, size: u64, seq: u64) {
            if seq == 0 || (seq <= self.highest && self.highest - seq >= size) {
                return;
            }
            self.seen.insert(seq);
            self.highest = self.highest.max(seq);
        }
    }

    proptest! {
        /// Check and insert agree with a model that remembers every number ever inserted.
        #[test]
        fn matches_naive_model(
            size in prop_oneof![Just(1024u32), Just(2048u32)],
            start in 0u64..5000,
            steps in proptest::collection::vec(
                (
                    // Small steps, steps near one window either way, and large jumps.
                    prop_oneof![-4i64..6, -1100i64..-1000, 1000i64..1100, -2500i64..5000],
                    any::<bool>(),
                ),
                1..600,
            ),
        ) {
            let mut w = ReplayWindow::new(size, false);
            let size = u64::from(w.size());
            let mut model = Model::default();
            let mut cursor = start;
            for (delta, do_insert) in steps {
                let seq = cursor.saturating_add_signed(delta);
                prop_assert_eq!(w.check(seq), model.check(size, seq), "check {}", seq);
                if do_insert {
                    w.insert(seq);
                    model.insert(size, seq);
                    prop_assert_eq!(w.highest(), model.highest);
                }
                cursor = model.highest.max(cursor);
            }
        }

        /// With ESN, the inferred number for the low bits of any number inside or right of the
        /// window (by less than 2^31) is that number.
        #[test]
        fn esn_inference_recovers_nearby_numbers(
            highest in 2048u64..(u64::MAX >> 2),
            offset in -1023i64..(1i64 << 31),
        ) {
            let mut w = ReplayWindow::new(1024, true);
            w.insert(highest);
            let seq = highest.saturating_add_signed(offset);
            let wire = (seq & 0xffff_ffff) as u32;
            prop_assert_eq!(w.infer_seq(wire), seq);
        }
    }
}
