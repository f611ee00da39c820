//! A minimal DER reader for the few structures this crate reads by hand (RFC 3779 address
//! blocks). Untrusted bytes: every read is bounds-checked and errors are typed; nothing panics.

/// Universal tags used here.
pub(crate) mod tag {
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const SEQUENCE: u8 = 0x30;
}

/// Why DER could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DerError {
    /// The input ended inside an element.
    #[error("truncated DER")]
    Truncated,
    /// A tag number above 30 (multi-byte tags are never used in these structures).
    #[error("unsupported multi-byte DER tag")]
    LongTag,
    /// Indefinite, over-long or non-minimal length.
    #[error("invalid DER length")]
    BadLength,
    /// A different element than the structure allows.
    #[error("unexpected DER tag 0x{found:02x} (expected 0x{expected:02x})")]
    UnexpectedTag {
        /// The tag the structure asks for.
        expected: u8,
        /// The tag found.
        found: u8,
    },
    /// Bytes left over after the last element.
    #[error("trailing bytes after DER element")]
    TrailingData,
}

/// Reads consecutive TLV elements from a slice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Reader { input }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// The tag of the next element, if any.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.input.first().copied()
    }

    /// Reads one element: (tag, contents).
    pub(crate) fn read_any(&mut self) -> Result<(u8, &'a [u8]), DerError> {
        let (&tag, rest) = self.input.split_first().ok_or(DerError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::LongTag);
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            // 0x80 is the indefinite form (not DER); more than 4 length bytes is absurd here.
            if n == 0 || n > 4 {
                return Err(DerError::BadLength);
            }
            let bytes = rest.get(..n).ok_or(DerError::Truncated)?;
            rest = &rest[n..];
            let len = bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            // DER: minimal length encoding.
            if bytes[0] == 0 || len < 0x80 {
                return Err(DerError::BadLength);
            }
            len
        };
        let contents = rest.get(..len).ok_or(DerError::Truncated)?;
        self.input = &rest[len..];
        Ok((tag, contents))
    }

    /// Reads one element that must carry `expected` as its tag.
    pub(crate) fn read(&mut self, expected: u8) -> Result<&'a [u8], DerError> {
        let (found, contents) = self.read_any()?;
        if found != expected {
            return Err(DerError::UnexpectedTag { expected, found });
        }
        Ok(contents)
    }

    /// Fails unless everything was read.
    pub(crate) fn finish(&self) -> Result<(), DerError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingData)
        }
    }
}

/// Appends one DER element.
pub(crate) fn write(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let body = vec![0xab; len];
            let mut out = Vec::new();
            write(&mut out, tag::OCTET_STRING, &body);
            let mut r = Reader::new(&out);
            assert_eq!(r.read(tag::OCTET_STRING).unwrap(), &body[..]);
            r.finish().unwrap();
        }
    }

    #[test]
    fn fixed_bytes_parse() {
        let mut r = Reader::new(&[0x30, 0x03, 0x05, 0x00, 0x01]);
        let inner = r.read(tag::SEQUENCE).unwrap();
        assert_eq!(inner, &[0x05, 0x00, 0x01]);
        let mut r = Reader::new(inner);
        assert_eq!(r.read(tag::NULL).unwrap(), &[] as &[u8]);
        assert_eq!(r.finish(), Err(DerError::TrailingData));
    }

    #[test]
    fn malformed_lengths_are_refused() {
        // Indefinite length.
        assert_eq!(
            Reader::new(&[0x30, 0x80]).read_any(),
            Err(DerError::BadLength)
        );
        // Non-minimal long form for a short length.
        assert_eq!(
            Reader::new(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5]).read_any(),
            Err(DerError::BadLength)
        );
        // Leading zero length byte.
        assert_eq!(
            Reader::new(&[0x04, 0x82, 0x00, 0x80]).read_any(),
            Err(DerError::BadLength)
        );
        // Length beyond the input.
        assert_eq!(
            Reader::new(&[0x04, 0x05, 1]).read_any(),
            Err(DerError::Truncated)
        );
        assert_eq!(Reader::new(&[0x04]).read_any(), Err(DerError::Truncated));
        assert_eq!(
            Reader::new(&[0x1f, 0x01, 0x00]).read_any(),
            Err(DerError::LongTag)
        );
        assert_eq!(
            Reader::new(&[0x04, 0x00]).read(tag::SEQUENCE),
            Err(DerError::UnexpectedTag {
                expected: 0x30,
                found: 0x04
            })
        );
    }
}
