//! Kafka frames: a 4-byte big-endian signed length followed by that many bytes.
//!
//! ```text
//! +----------------+------------------------------+
//! | size: i32 (BE) | request/response (size bytes)|
//! +----------------+------------------------------+
//! ```
//!
//! The size is validated against the configured maximum *before* any buffer for the body is
//! reserved, so a hostile size can't make us allocate.

use bytes::{Buf, Bytes, BytesMut};

/// Why a frame could not be accepted; the connection must be closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("negative frame size {0}")]
    Negative(i32),
    #[error("frame size {size} exceeds the maximum {max}")]
    TooLarge { size: usize, max: usize },
}

/// Splits a byte stream into frames. Holds at most one partial frame.
#[derive(Debug)]
pub struct FrameReader {
    max_frame_bytes: usize,
}

impl FrameReader {
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { max_frame_bytes }
    }

    /// Takes the next complete frame body out of `buf`, if one is there.
    /// `Ok(None)` means more bytes are needed; `want_bytes` tells how many in total.
    pub fn next_frame(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(size) = self.peek_size(buf)? else {
            return Ok(None);
        };
        if buf.len() < 4 + size {
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(buf.split_to(size).freeze()))
    }

    /// The size of the frame at the head of `buf`, once its 4 length bytes are in.
    pub fn peek_size(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(head) = buf.get(..4) else {
            return Ok(None);
        };
        let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if size < 0 {
            return Err(FrameError::Negative(size));
        }
        let size = size as usize;
        if size > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                size,
                max: self.max_frame_bytes,
            });
        }
        Ok(Some(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_and_waits_for_more() {
        let r = FrameReader::new(100);
        let mut b = BytesMut::new();
        b.extend_from_slice(&[0, 0, 0, 3, 1, 2]);
        assert_eq!(r.next_frame(&mut b).unwrap(), None);
        b.extend_from_slice(&[3, 0, 0, 0, 0]);
        assert_eq!(r.next_frame(&mut b).unwrap().unwrap().as_ref(), &[1, 2, 3]);
        assert_eq!(
            r.next_frame(&mut b).unwrap().unwrap().as_ref(),
            &[] as &[u8]
        );
        assert!(b.is_empty());
    }

    #[test]
    fn rejects_negative_and_oversized_before_reading_body() {
        let r = FrameReader::new(100);
        let mut b = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert_eq!(r.next_frame(&mut b), Err(FrameError::Negative(-1)));
        let mut b = BytesMut::from(&[0, 0, 0, 101][..]);
        assert_eq!(
            r.next_frame(&mut b),
            Err(FrameError::TooLarge {
                size: 101,
                max: 100
            })
        );
    }
}
