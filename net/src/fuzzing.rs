//! Fuzz entry points shared by the cargo-fuzz targets in `net/fuzz/` and the fixed-seed runs
//! in the test suite. Each must never panic, whatever the input.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{decode_request, FrameReader, SUPPORTED_APIS};

/// Splits `data` into frames (1 MiB limit) and decodes every frame as a request.
pub fn frames_and_requests(data: &[u8]) {
    let reader = FrameReader::new(1 << 20);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = reader.next_frame(&mut buf) {
        let _ = decode_request(frame);
    }
    let _ = decode_request(Bytes::copy_from_slice(data));
}

/// Steers into every request decoder: the first two bytes pick a served API and a version in
/// its range, the rest is the header's tail (client id, tags) and the body.
pub fn request_by_api(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Some((&v, rest)) = rest.split_first() else {
        return;
    };
    let (key, min, max) = SUPPORTED_APIS[pick as usize % SUPPORTED_APIS.len()];
    let version = min + (v as i16 % (max - min + 1));
    let mut frame = BytesMut::with_capacity(8 + rest.len());
    frame.put_i16(key as i16);
    frame.put_i16(version);
    frame.put_i32(1);
    frame.put_slice(rest);
    let _ = decode_request(frame.freeze());
}

#[cfg(test)]
mod tests {
    use super::*;

    use sluice_base::Rng;

    fn corpus() -> Vec<Vec<u8>> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/request");
        let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| std::fs::read(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.push(Vec::new());
        out
    }

    #[test]
    fn fixed_seed_mutations_never_panic() {
        let seeds = corpus();
        assert!(
            seeds.len() > 10,
            "seed corpus present ({} files)",
            seeds.len()
        );
        let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
        for i in 0..20_000 {
            let input = rng.mutate(&seeds[i % seeds.len()], 8);
            frames_and_requests(&input);
            // Seeds are whole frames: drop the size and the api key/version for the steered run.
            request_by_api(input.get(4..).unwrap_or(&[]));
        }
    }
}
