//! The fuzzer's bytes read as a sequence of choices. Every read returns `None` once the bytes
//! run out, so a harness simply stops there: a short input is a short scenario.

/// Reads the fuzzer's bytes front to back.
#[derive(Debug, Clone)]
pub struct Choices<'a> {
    data: &'a [u8],
}

impl<'a> Choices<'a> {
    /// Choices from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte.
    pub fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.data.split_first()?;
        self.data = rest;
        Some(*first)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.data.len() < n {
            return None;
        }
        let (taken, rest) = self.data.split_at(n);
        self.data = rest;
        Some(taken)
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A big-endian u64.
    pub fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_be_bytes(a))
    }

    /// One of `n` (n > 0) from one byte.
    pub fn below(&mut self, n: usize) -> Option<usize> {
        Some(usize::from(self.byte()?) % n.max(1))
    }

    /// A length-prefixed byte string (one length byte, at most `max` bytes; fewer if the input
    /// ends first).
    pub fn bytes(&mut self, max: usize) -> Option<&'a [u8]> {
        let len = usize::from(self.byte()?).min(max).min(self.data.len());
        self.take(len)
    }

    /// A byte string with a two-byte length (at most `max` bytes; fewer if the input ends
    /// first): room for whole IKE messages.
    pub fn bytes16(&mut self, max: usize) -> Option<&'a [u8]> {
        let len = usize::from(self.u16()?).min(max).min(self.data.len());
        self.take(len)
    }

    /// What is left.
    pub fn rest(&self) -> &'a [u8] {
        self.data
    }
}

/// The same over bytes the reader owns (a hostile peer keeps its script across calls).
#[derive(Debug, Clone, Default)]
pub struct Script {
    data: Vec<u8>,
    position: usize,
}

impl Script {
    /// A script of `data`.
    pub fn new(data: &[u8]) -> Self {
        Self {
            data: data.to_vec(),
            position: 0,
        }
    }

    /// Reads with [`Choices`] and keeps the position.
    pub fn read<T>(&mut self, f: impl FnOnce(&mut Choices<'_>) -> T) -> T {
        let rest = self.data.get(self.position..).unwrap_or_default();
        let mut choices = Choices::new(rest);
        let result = f(&mut choices);
        self.position = self.data.len() - choices.rest().len();
        result
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.position >= self.data.len()
    }
}
