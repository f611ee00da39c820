//! Framing of channel messages on a byte stream: a 4-byte big-endian length, then the message in
//! postcard encoding. The decoder is sans-IO: push bytes in, take messages out.
//!
//! Frames carry CHILD SA keys (`Request::Install`), so every buffer that held one is wiped
//! before its memory is given back: frames and bodies are [`Zeroizing`], and the decoder's
//! buffer never reallocates or shifts without wiping what it leaves behind
//! (docs/ARCHITECTURE.md, "Keys and forward secrecy").

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::{Zeroize, Zeroizing};

/// Largest frame accepted. IKE messages relayed through the channel are far below it.
pub const MAX_FRAME_LEN: usize = 256 * 1024;

/// Why bytes from the channel could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The length prefix announces more than [`MAX_FRAME_LEN`].
    #[error("control frame of {0} bytes exceeds the limit of {MAX_FRAME_LEN}")]
    TooLong(usize),
    /// The frame's body is not a valid message. Between a daemon and its forwarder this also
    /// means two hometun versions (the frames carry no version, and postcard cannot tell a
    /// missing field), so the message says what to do.
    #[error(
        "control frame does not decode: {0} (the daemon and its forwarder must be the same \
         hometun version: restart both after an upgrade)"
    )]
    Malformed(String),
    /// The message could not be encoded (a bug, not bad input).
    #[error("control message does not encode: {0}")]
    Encode(String),
}

/// Encodes a message into one frame (length prefix included), wiped when dropped.
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Zeroizing<Vec<u8>>, CodecError> {
    let size = postcard::experimental::serialized_size(message)
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    if size > MAX_FRAME_LEN {
        return Err(CodecError::TooLong(size));
    }
    // Sized once: a Vec that grew would leave key bytes behind in the memory it gave back.
    let mut frame = Zeroizing::new(vec![0u8; 4 + size]);
    frame[..4].copy_from_slice(&(size as u32).to_be_bytes());
    let written = postcard::to_slice(message, &mut frame[4..])
        .map_err(|e| CodecError::Encode(e.to_string()))?
        .len();
    debug_assert_eq!(written, size);
    Ok(frame)
}

/// Decodes a frame's body (without the length prefix). Trailing bytes are an error, so one body
/// is exactly one message.
pub fn decode_frame<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    let (message, rest) =
        postcard::take_from_bytes(body).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CodecError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(message)
}

/// Collects bytes from a stream and yields whole frame bodies.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: Zeroizing<Vec<u8>>,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        let needed = self.buffer.len() + bytes.len();
        if needed > self.buffer.capacity() {
            // Grow by hand: the old allocation is wiped (dropped as Zeroizing) after the copy.
            let mut bigger = Vec::with_capacity(needed.max(2 * self.buffer.capacity()));
            bigger.extend_from_slice(&self.buffer);
            self.buffer = Zeroizing::new(bigger);
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Takes the next whole frame body, if one has arrived. A length over the limit is an error
    /// after which the stream cannot be resynchronised: the caller should close it.
    pub fn next_frame(&mut self) -> Result<Option<Zeroizing<Vec<u8>>>, CodecError> {
        let Some(prefix) = self.buffer.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > MAX_FRAME_LEN {
            return Err(CodecError::TooLong(len));
        }
        if self.buffer.len() < 4 + len {
            return Ok(None);
        }
        let body = Zeroizing::new(self.buffer[4..4 + len].to_vec());
        // Shift the rest down and wipe the bytes it leaves behind.
        let rest = self.buffer.len() - (4 + len);
        self.buffer.copy_within(4 + len.., 0);
        self.buffer[rest..].zeroize();
        self.buffer.truncate(rest);
        Ok(Some(body))
    }

    /// Takes and decodes the next message. A frame that does not decode is consumed and reported,
    /// so the stream stays usable.
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, CodecError> {
        match self.next_frame()? {
            Some(body) => decode_frame(&body).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::message::{Envelope, Event, FromForwarder, Request, Response};
    use crate::types::*;

    fn child_sa() -> ChildSa {
        ChildSa::builder()
            .peer(7)
            .spis(0x1122_3344, 0x5566_7788)
            .key_out(AeadAlg::AesGcm256, 2)
            .addresses(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 2))
            .udp(4500, 40000)
            .limits(Limits {
                soft_bytes: Some(1 << 31),
                ..Limits::default()
            })
            .nat_keepalive_seconds(Some(20))
            .build()
    }

    #[test]
    fn install_round_trips_through_a_frame() {
        let message = Envelope {
            id: 42,
            request: Request::Install(child_sa()),
        };
        let frame = encode_frame(&message).unwrap();
        let mut decoder = FrameDecoder::new();
        // Byte by byte, as a slow stream would deliver it.
        for byte in &frame[..frame.len() - 1] {
            decoder.push(std::slice::from_ref(byte));
            assert_eq!(decoder.next_message::<Envelope>().unwrap(), None);
        }
        decoder.push(&frame[frame.len() - 1..]);
        assert_eq!(decoder.next_message::<Envelope>().unwrap(), Some(message));
    }

    #[test]
    fn two_frames_in_one_read_come_out_in_order() {
        let a = FromForwarder::Reply {
            id: 1,
            result: Ok(Response::Ok),
        };
        let b = FromForwarder::Event(Event::SeqExhausted {
            peer: PeerId(1),
            spi_in: Spi(9),
        });
        let mut bytes = encode_frame(&a).unwrap();
        bytes.extend_from_slice(&encode_frame(&b).unwrap());
        let mut decoder = FrameDecoder::new();
        decoder.push(&bytes);
        assert_eq!(decoder.next_message::<FromForwarder>().unwrap(), Some(a));
        assert_eq!(decoder.next_message::<FromForwarder>().unwrap(), Some(b));
        assert_eq!(decoder.next_message::<FromForwarder>().unwrap(), None);
    }

    #[test]
    fn garbage_frame_is_an_error_and_the_stream_goes_on() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&[0, 0, 0, 3, 0xff, 0xff, 0xff]);
        let good = Envelope {
            id: 5,
            request: Request::GetCounters,
        };
        decoder.push(&encode_frame(&good).unwrap());
        assert!(matches!(
            decoder.next_message::<Envelope>(),
            Err(CodecError::Malformed(_))
        ));
        assert_eq!(decoder.next_message::<Envelope>().unwrap(), Some(good));
    }

    /// A counter report from a forwarder one field older than this daemon: the error is one
    /// line that says what to do.
    #[test]
    fn a_report_of_another_version_says_to_restart_both() {
        let report = crate::CounterReport::default();
        let mut body = postcard::to_stdvec(&FromForwarder::Reply {
            id: 1,
            result: Ok(Response::Counters(report)),
        })
        .unwrap();
        body.pop(); // as if the last field did not exist yet
        let error = decode_frame::<FromForwarder>(&body)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("control frame does not decode: ")
                && error.ends_with("same hometun version: restart both after an upgrade)")
                && !error.contains('\n'),
            "{error}"
        );
    }

    #[test]
    fn oversized_length_is_refused() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(decoder.next_frame(), Err(CodecError::TooLong(0xffff_ffff)));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut body = postcard::to_stdvec(&Envelope {
            id: 1,
            request: Request::Shutdown,
        })
        .unwrap();
        body.push(0);
        assert!(matches!(
            decode_frame::<Envelope>(&body),
            Err(CodecError::Malformed(_))
        ));
    }
}
