//! Arbitrary bytes into the frame decoders, as a stream and as a datagram: never a panic, and
//! whatever decodes re-encodes to bytes that decode to the same frame.
#![no_main]

use dkv_core::codec::frame;
use libfuzzer_sys::fuzz_target;

const FRAME_BYTES_MAX: u32 = 1 << 20;

fn round_trips(f: &frame::Frame) {
    let again = frame::encode_to_vec(f);
    let decoded = frame::decode_datagram(&again, u32::MAX).expect("an encoded frame decodes");
    assert_eq!(&decoded, f, "re-encoding changed the frame");
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((f, used))) = frame::decode_stream(rest, FRAME_BYTES_MAX) {
        assert!(used > 0 && used <= rest.len());
        round_trips(&f);
        rest = &rest[used..];
    }
    if let Ok(f) = frame::decode_datagram(data, FRAME_BYTES_MAX) {
        round_trips(&f);
    }
});
