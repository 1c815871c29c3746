//! Frame rings, reading side (PROTOCOL.md section 15): the input plays the peer, writing what
//! it likes into a ring's `head` and data between a `RingReader`'s reads, announcements of
//! sleep and looks. A read never returns more than asked; what it returns is exactly the data
//! bytes at the stream positions it has reached (checked against the region itself), and it
//! publishes its new `tail`; an impossible `head` is an error, never a panic or a copy outside
//! the region.

#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use scheme_bridge::region::Region;
use scheme_bridge::ring::{Direction, RingReader, AREA, BYTES, HEAD, HEADER, START, TAIL};
use scheme_bridge_fuzz as _; // the bounded allocator

/// One region for every input (a fresh one per input would cost a 10 MiB memfd each).
fn region() -> Arc<Region> {
    static REGION: OnceLock<Arc<Region>> = OnceLock::new();
    Arc::clone(REGION.get_or_init(|| Arc::new(Region::create(START + AREA).expect("memfd"))))
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

fn word(region: &Region, at: u64) -> u64 {
    let mut bytes = [0; 8];
    assert!(region.copy_to(at, &mut bytes));
    u64::from_le_bytes(bytes)
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let region = region();
    let direction = *u.choose(&[Direction::ToCaller, Direction::ToDaemon])?;
    let header = direction.header_at();
    let data = header + HEADER as u64;
    assert!(region.copy_in(header, &[0; HEADER]), "a fresh ring: the header zeroed");
    let mut reader = RingReader::new(Arc::clone(&region), direction).expect("room for rings");
    let mut tail = 0u64;
    for _ in 0..64 {
        match u.int_in_range(0..=4u8)? {
            0 => {
                let head: u64 = u.arbitrary()?;
                assert!(region.copy_in(header + HEAD, &head.to_le_bytes()));
            }
            1 => {
                let ahead = u.int_in_range(0..=2 * BYTES as u64)?;
                let head = tail.wrapping_add(ahead);
                assert!(region.copy_in(header + HEAD, &head.to_le_bytes()));
            }
            2 => {
                let at = u.int_in_range(0..=BYTES - 1)?;
                let len = u.int_in_range(0..=256usize)?.min(BYTES - at);
                let bytes = u.bytes(len.min(u.len()))?;
                assert!(region.copy_in(data + at as u64, bytes));
            }
            3 => {
                let asked = u.int_in_range(0..=8192usize)?;
                let mut buf = vec![0; asked];
                let head = word(&region, header + HEAD);
                match reader.read_now(&mut buf) {
                    Ok(got) => {
                        assert!(got <= asked, "read {got} of {asked}");
                        assert!(got as u64 <= head.wrapping_sub(tail), "read past the head");
                        for (i, byte) in buf[..got].iter().enumerate() {
                            let at = (tail.wrapping_add(i as u64) % BYTES as u64) + data;
                            let mut expected = [0];
                            assert!(region.copy_to(at, &mut expected));
                            assert_eq!(*byte, expected[0], "byte {i} of a read");
                        }
                        tail = tail.wrapping_add(got as u64);
                        assert_eq!(word(&region, header + TAIL), tail, "the tail published");
                    }
                    Err(_) => {
                        assert!(head.wrapping_sub(tail) > BYTES as u64, "refused a sane head");
                        return Ok(());
                    }
                }
            }
            _ => {
                let _ = reader.arm();
                let _ = reader.has_bytes();
            }
        }
    }
    Ok(())
}
