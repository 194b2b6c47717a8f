//! A bounds-checked big-endian reader for bytes from outside (state files, stored records).
//!
//! Owns nothing but a cursor over a borrowed slice; it never panics and never allocates. Every
//! read returns `None` when the input is too short or malformed, and then consumes nothing
//! (a failed read leaves the cursor where it was).
//!
//! ```text
//! u8 | u16 | i16 | u32 | i32 | u64 | i64   fixed width, big-endian
//! string       i16 length (>= 0)  | UTF-8 bytes
//! opt_string   i16 length, -1 = null | UTF-8 bytes
//! bytes        i32 length, -1 = empty | bytes
//! uvarint      unsigned LEB128, at most 5 bytes (a u32), as Kafka's flexible versions use
//! ```
//! Negative lengths other than -1 are malformed, as are lengths past the end of the input and
//! strings that are not UTF-8.

/// A cursor over big-endian bytes. See the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.array().map(u8::from_be_bytes)
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub fn i16(&mut self) -> Option<i16> {
        self.array().map(i16::from_be_bytes)
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_be_bytes)
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    pub fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_be_bytes)
    }

    /// A nullable string: i16 length, -1 = null (`Some(None)`), then UTF-8 bytes.
    pub fn opt_string(&mut self) -> Option<Option<&'a str>> {
        let mut r = *self;
        let s = match r.i16()? {
            -1 => None,
            len => Some(std::str::from_utf8(r.take(usize::try_from(len).ok()?)?).ok()?),
        };
        *self = r;
        Some(s)
    }

    /// A non-null string: i16 length (>= 0), then UTF-8 bytes.
    pub fn string(&mut self) -> Option<&'a str> {
        let mut r = *self;
        let s = r.opt_string()??;
        *self = r;
        Some(s)
    }

    /// Bytes with an i32 length; -1 (null) reads as empty.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let mut r = *self;
        let b = match r.i32()? {
            -1 => &[],
            len => r.take(usize::try_from(len).ok()?)?,
        };
        *self = r;
        Some(b)
    }

    /// An unsigned varint (7 bits a byte, least significant first) of at most 5 bytes; a
    /// longer one, or one past `u32::MAX`, is malformed.
    pub fn uvarint(&mut self) -> Option<u32> {
        let mut r = *self;
        let mut value: u64 = 0;
        for i in 0..5 {
            let b = r.u8()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                let v = u32::try_from(value).ok()?;
                *self = r;
                return Some(v);
            }
        }
        None
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The bytes not yet read (does not consume them).
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Test and fuzz hook: the read chosen by `op % 12` (the integer widths, `opt_string`,
    /// `string`, `bytes`, `uvarint`, or `take(take)`); whether it succeeded.
    #[doc(hidden)]
    pub fn read_op(&mut self, op: u8, take: usize) -> bool {
        match op % 12 {
            0 => self.u8().is_some(),
            1 => self.u16().is_some(),
            2 => self.i16().is_some(),
            3 => self.u32().is_some(),
            4 => self.i32().is_some(),
            5 => self.u64().is_some(),
            6 => self.i64().is_some(),
            7 => self.opt_string().is_some(),
            8 => self.string().is_some(),
            9 => self.bytes().is_some(),
            10 => self.uvarint().is_some(),
            _ => self.take(take).is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixed_width_big_endian() {
        let b = [
            0x01, 0x02, 0x03, 0xff, 0xfe, 0x00, 0x00, 0x01, 0x00, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0,
            0, 0, 0, 0x01, 0x02, 0x80, 0, 0, 0, 0, 0, 0, 0,
        ];
        let mut r = Reader::new(&b);
        assert_eq!(r.u8(), Some(1));
        assert_eq!(r.u16(), Some(0x0203));
        assert_eq!(r.i16(), Some(-2));
        assert_eq!(r.u32(), Some(0x0000_0100));
        assert_eq!(r.i32(), Some(-2));
        assert_eq!(r.u64(), Some(0x0102));
        assert_eq!(r.i64(), Some(i64::MIN));
        assert!(r.is_empty());
        assert_eq!(r.u8(), None);
    }

    #[test]
    fn truncated_reads_fail_and_consume_nothing() {
        let b = [0u8; 7];
        let mut r = Reader::new(&b);
        assert_eq!(r.i64(), None);
        assert_eq!(r.remaining(), 7);
        assert_eq!(r.take(8), None);
        assert_eq!(r.take(7), Some(&b[..]));
        assert_eq!(r.u8(), None);
        assert_eq!(r.take(0), Some(&[][..]));
    }

    #[test]
    fn strings() {
        let mut b = vec![0, 2, b'h', b'i', 0xff, 0xff, 0, 0];
        b.extend_from_slice(&[0, 3, 0xe2, 0x82, 0xac]); // "€"
        let mut r = Reader::new(&b);
        assert_eq!(r.opt_string(), Some(Some("hi")));
        assert_eq!(r.opt_string(), Some(None));
        assert_eq!(r.string(), Some(""));
        assert_eq!(r.string(), Some("€"));
        assert!(r.is_empty());
    }

    #[test]
    fn malformed_strings_fail_and_consume_nothing() {
        let cases: &[&[u8]] = &[
            &[0xff, 0xfe, b'a'], // length -2
            &[0x80, 0x00],       // length i16::MIN
            &[0, 3, b'a', b'b'], // length past the end
            &[0, 2, 0xc3, 0x28], // invalid UTF-8
            &[0, 3, 0xe2, 0x82], // truncated in a UTF-8 sequence (and the input)
            &[0, 2, 0xe2, 0x82], // UTF-8 sequence cut by the length
            &[0],                // truncated length
        ];
        for b in cases {
            let mut r = Reader::new(b);
            assert_eq!(r.opt_string(), None, "{b:?}");
            assert_eq!(r.string(), None, "{b:?}");
            assert_eq!(r.remaining(), b.len(), "{b:?}");
        }
        let mut r = Reader::new(&[0xff, 0xff]);
        assert_eq!(r.string(), None, "null is not a string");
        assert_eq!(r.remaining(), 2);
    }

    #[test]
    fn bytes() {
        let b = [0, 0, 0, 2, 7, 8, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        let mut r = Reader::new(&b);
        assert_eq!(r.bytes(), Some(&[7u8, 8][..]));
        assert_eq!(r.bytes(), Some(&[][..]), "-1 reads as empty");
        assert_eq!(r.bytes(), Some(&[][..]));
        assert!(r.is_empty());
    }

    #[test]
    fn malformed_bytes_fail_and_consume_nothing() {
        let cases: &[&[u8]] = &[
            &[0xff, 0xff, 0xff, 0xfe, 1], // length -2
            &[0x80, 0, 0, 0],             // length i32::MIN
            &[0x7f, 0xff, 0xff, 0xff, 1], // length i32::MAX, past the end
            &[0, 0, 0, 2, 1],             // one byte short
            &[0, 0, 0],                   // truncated length
        ];
        for b in cases {
            let mut r = Reader::new(b);
            assert_eq!(r.bytes(), None, "{b:?}");
            assert_eq!(r.remaining(), b.len(), "{b:?}");
        }
    }

    #[test]
    fn unsigned_varints() {
        let b = [0x00, 0x7f, 0x80, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f];
        let mut r = Reader::new(&b);
        assert_eq!(r.uvarint(), Some(0));
        assert_eq!(r.uvarint(), Some(127));
        assert_eq!(r.uvarint(), Some(128));
        assert_eq!(r.uvarint(), Some(u32::MAX));
        assert!(r.is_empty());
        let cases: &[&[u8]] = &[
            &[0x80],                               // truncated
            &[0xff, 0xff, 0xff, 0xff, 0x1f],       // past u32::MAX
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], // six bytes
        ];
        for b in cases {
            let mut r = Reader::new(b);
            assert_eq!(r.uvarint(), None, "{b:?}");
            assert_eq!(r.remaining(), b.len(), "{b:?}");
        }
    }

    proptest! {
        /// Any input, any sequence of reads: no panic, and bytes are only ever consumed from
        /// the front.
        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..64),
                        ops in proptest::collection::vec(0u8..12, 0..32)) {
            let mut r = Reader::new(&input);
            for op in ops {
                let before = r.remaining();
                let ok = r.read_op(op, before / 2 + 1);
                prop_assert!(r.remaining() <= before);
                prop_assert!(ok || r.remaining() == before);
                prop_assert_eq!(r.rest(), &input[input.len() - r.remaining()..]);
            }
        }
    }
}
