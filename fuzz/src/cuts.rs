//! Read boundaries drawn from the input itself: the same input always splits the same way.

/// Ascending prefix lengths ending at `len`, as reads from a socket would deliver `len`
/// bytes: mostly short reads (1-16 bytes), one in four up to 512 bytes. The generator is
/// seeded by a hash of `data`, so the cuts change with the input but never between runs.
pub fn cut_points(data: &[u8], len: usize) -> Vec<usize> {
    // FNV-1a of the input, then xorshift64*; any fixed, cheap generator would do.
    let mut state = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    let mut cuts = Vec::new();
    let mut at = 0;
    while at < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let draw = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let span = if draw % 4 == 0 { 512 } else { 16 };
        // `span` is at most 512, so the cast cannot truncate.
        let step = 1 + ((draw >> 8) % span) as usize;
        at = (at + step).min(len);
        cuts.push(at);
    }
    cuts
}

/// Every prefix length from 1 to `len`: one byte per read.
pub fn every_byte(len: usize) -> Vec<usize> {
    (1..=len).collect()
}
