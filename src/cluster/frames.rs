//! Frames of the append-only metadata files (the single-node metadata log in `store`, the
//! Raft journal in `crate::quorum`): `body_len u32 | crc32c(body) u32 | body`, big-endian.
//!
//! A file is written by appending frames, so a crash can leave only its *last* frame torn:
//! cut short, or whole-sized with a bad CRC, or a length field over zeros (a file extended but
//! not written). [`scan`] cuts such a tail off when the caller allows it; anything else that
//! does not decode is corruption and is refused, since cutting it would drop later frames.

/// Largest frame body accepted when reading (a topic with the most partitions allowed is a
/// few MiB of records).
pub const FRAME_BODY_MAX: usize = 64 << 20;

const BAD_LENGTH: &str = "frame length out of range";

/// Appends one frame holding `body`.
pub fn encode(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
    out.extend_from_slice(body);
}

/// A frame read back.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Body(&'a [u8]),
    /// Cut short by the end of the buffer.
    Short,
    Bad(&'static str),
}

/// Decodes the frame at the start of `buf`; the bytes it spans (the rest of `buf` when short
/// or of a bad length).
pub fn decode(buf: &[u8]) -> (Frame<'_>, usize) {
    let Some(header) = buf.get(..8) else {
        return (Frame::Short, buf.len());
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if !(1..=FRAME_BODY_MAX).contains(&len) {
        return (Frame::Bad(BAD_LENGTH), buf.len());
    }
    let Some(body) = buf.get(8..8 + len) else {
        return (Frame::Short, buf.len());
    };
    if crc32c::crc32c(body) != crc {
        return (Frame::Bad("CRC mismatch"), 8 + len);
    }
    (Frame::Body(body), 8 + len)
}

/// Every frame body of `bytes`, and the length they span. With `tail_may_tear`, a torn last
/// frame ends the scan (the length then excludes it, for the caller to cut); otherwise, and
/// anywhere before the end, an undecodable frame is an error.
pub fn scan(bytes: &[u8], tail_may_tear: bool) -> Result<(Vec<&[u8]>, usize), &'static str> {
    let mut at = 0;
    let mut bodies = Vec::new();
    while at < bytes.len() {
        let (frame, n) = decode(&bytes[at..]);
        match frame {
            Frame::Body(b) => bodies.push(b),
            Frame::Short | Frame::Bad(_)
                if tail_may_tear
                    && at + n >= bytes.len()
                    && (frame != Frame::Bad(BAD_LENGTH) || bytes[at..].iter().all(|&b| b == 0)) =>
            {
                break
            }
            Frame::Short => return Err("truncated"),
            Frame::Bad(why) => return Err(why),
        }
        at += n;
    }
    Ok((bodies, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tails_are_cut_only_where_allowed() {
        let mut good = Vec::new();
        encode(&mut good, b"one");
        encode(&mut good, b"two");
        let (bodies, len) = scan(&good, false).unwrap();
        assert_eq!(bodies, [&b"one"[..], &b"two"[..]]);
        assert_eq!(len, good.len());
        for cut in 1..11 {
            let torn = &good[..good.len() - cut];
            let (bodies, len) = scan(torn, true).unwrap();
            assert_eq!((bodies.len(), len), (1, 11), "cut {cut}");
            assert!(scan(torn, false).is_err());
        }
        let mut zeros = good.clone();
        zeros.extend([0u8; 16]);
        assert_eq!(scan(&zeros, true).unwrap().1, good.len());
        let mut flipped = good.clone();
        flipped[9] ^= 1; // the first body: corruption before the end
        assert_eq!(scan(&flipped, true), Err("CRC mismatch"));
        let mut garbage = good.clone();
        garbage.extend([0xff; 16]);
        assert!(scan(&garbage, true).is_err(), "a bad length over non-zeros");
    }
}
