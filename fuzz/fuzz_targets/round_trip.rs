//! Codec round trip, both ways. (1) An arbitrary `Frame` (built from the input with
//! `arbitrary`, every variant) encodes to a length-prefixed frame that decodes to the same
//! value, with the prefix equal to the body length, and a limit one byte under the body makes
//! the encoder refuse and write nothing. (2) The input read as a frame body: if it decodes, it
//! is the one encoding of that frame, so encoding gives exactly the input back.

#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use scheme_protocol::codec::{decode_body, encode_frame, LEN_PREFIX};
use scheme_protocol::{FrameReader, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode_body(data) {
        let mut encoded = Vec::new();
        encode_frame(&frame, MAX_FRAME, &mut encoded).expect("a decoded frame encodes");
        assert_eq!(&encoded[LEN_PREFIX..], data, "{frame:?} has another encoding");
    }

    let Ok(frame) = scheme_bridge_fuzz::frame(&mut Unstructured::new(data)) else { return };
    let mut encoded = vec![7];
    encode_frame(&frame, MAX_FRAME, &mut encoded).expect("every small frame encodes");
    let body = &encoded[1 + LEN_PREFIX..];
    assert_eq!(encoded[1..1 + LEN_PREFIX], (body.len() as u32).to_le_bytes());
    assert_eq!(decode_body(body).expect("an encoded frame decodes"), frame);
    let mut reader = FrameReader::new(&encoded[1..], body.len());
    assert_eq!(reader.read_frame().expect("it fits its own length"), frame);

    let mut refused = vec![7];
    assert!(encode_frame(&frame, body.len() - 1, &mut refused).is_err());
    assert_eq!(refused, [7], "a refused frame leaves the buffer as it was");
});
