//! Pins the wire layout documented in PROTOCOL.md: every `### Example: NAME` hex block in the
//! document must be exactly what the codec produces for the frame constructed here under the
//! same name, and must decode back to it. Changing the codec, the message types or the document
//! without the other two fails this test.

use std::collections::BTreeMap;

use scheme_protocol::codec::{decode_body, encode_frame, LEN_PREFIX};
use scheme_protocol::handshake::hello;
use scheme_protocol::{
    Call, Caller, Errno, Error, Fd, Frame, FrameReader, PathStep, Reply, Stat, StatVfs, Tag,
    TimeSpec, MAGIC, MAX_FRAME, VERSION,
};

const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../PROTOCOL.md");

const HEADING: &str = "### Example: ";

/// The caller used by every example call.
const CALLER: Caller = Caller { pid: 42, uid: 1000, gid: 1000 };

/// Every example the document must contain, with the frame it shows.
fn expected() -> Vec<(&'static str, Frame)> {
    vec![
        ("hello-daemon", Frame::Hello(hello("chan", MAX_FRAME))),
        (
            "hello-caller",
            Frame::Hello(scheme_protocol::Hello {
                features: scheme_protocol::FEATURE_REGION,
                ..hello("", 65536)
            }),
        ),
        (
            "call-open",
            Frame::Call {
                tag: Tag(1),
                caller: CALLER,
                call: Call::Open {
                    path: "hello".into(),
                    flags: 0x0203_0000, // O_CREAT | O_RDWR, mode 0
                },
            },
        ),
        (
            "call-write",
            Frame::Call {
                tag: Tag(2),
                caller: CALLER,
                call: Call::Write { fd: Fd(3), data: "Hi\n".into() },
            },
        ),
        (
            "call-read",
            Frame::Call { tag: Tag(3), caller: CALLER, call: Call::Read { fd: Fd(3), len: 4096 } },
        ),
        (
            "call-read-region",
            Frame::Call {
                tag: Tag(4),
                caller: CALLER,
                call: Call::ReadRegion { fd: Fd(3), len: 1 << 20, at: 2 << 20 },
            },
        ),
        (
            "call-dup",
            Frame::Call {
                tag: Tag(5),
                caller: CALLER,
                call: Call::Dup { fd: Fd(3), buf: "listen".into() },
            },
        ),
        (
            "call-futimens",
            Frame::Call {
                tag: Tag(6),
                caller: CALLER,
                call: Call::Futimens {
                    fd: Fd(3),
                    times: vec![
                        TimeSpec { tv_sec: 1_700_000_000, tv_nsec: 0 },
                        TimeSpec { tv_sec: 1_700_000_000, tv_nsec: 500_000_000 },
                    ],
                },
            },
        ),
        ("reply-value", Frame::Reply { tag: Tag(1), response: Ok(Reply::Value(3)) }),
        ("reply-data", Frame::Reply { tag: Tag(3), response: Ok(Reply::Data("Hi\n".into())) }),
        ("reply-errno", Frame::Reply { tag: Tag(4), response: Err(Errno(41)) }),
        (
            "reply-stat",
            Frame::Reply {
                tag: Tag(7),
                response: Ok(Reply::Stat(Stat {
                    st_dev: 0,
                    st_ino: 7,
                    st_mode: 0o100_644, // MODE_FILE | 0644
                    st_nlink: 1,
                    st_uid: 1000,
                    st_gid: 1000,
                    st_size: 3,
                    st_blksize: 4096,
                    st_blocks: 8,
                    st_mtime: 1_700_000_000,
                    st_mtime_nsec: 123_456_789,
                    st_atime: 1_700_000_000,
                    st_atime_nsec: 123_456_789,
                    st_ctime: 1_700_000_000,
                    st_ctime_nsec: 123_456_789,
                })),
            },
        ),
        (
            "reply-statvfs",
            Frame::Reply {
                tag: Tag(8),
                response: Ok(Reply::StatVfs(StatVfs {
                    f_bsize: 4096,
                    f_blocks: 1_000_000,
                    f_bfree: 250_000,
                    f_bavail: 200_000,
                })),
            },
        ),
        (
            "call-stat-path",
            Frame::Call {
                tag: Tag(9),
                caller: CALLER,
                call: Call::StatPath { path: "hello".into() },
            },
        ),
        (
            "reply-opened",
            Frame::Reply {
                tag: Tag(10),
                response: Ok(Reply::Opened {
                    fd: Fd(3),
                    stat: Stat {
                        st_ino: 7,
                        st_mode: 0o100_644,
                        st_nlink: 1,
                        st_uid: 1000,
                        st_gid: 1000,
                        st_blksize: 4096,
                        st_mtime: 1_700_000_000,
                        st_atime: 1_700_000_000,
                        st_ctime: 1_700_000_000,
                        ..Stat::default()
                    },
                }),
            },
        ),
        (
            "call-on-path",
            Frame::Call {
                tag: Tag(11),
                caller: CALLER,
                call: Call::OnPath {
                    path: "a".into(),
                    flags: 0x2000_0000 | 0x8000_0000, // O_STAT | O_NOFOLLOW
                    steps: vec![PathStep::Frename { path: "b".into() }],
                },
            },
        ),
        ("event", Frame::Event { fd: Fd(3), flags: 1 }),
        ("cancel", Frame::Cancel { tag: Tag(3) }),
    ]
}

/// One `### Example:` block of the document.
#[derive(Debug)]
struct Example {
    name: String,
    line: usize,
    bytes: Vec<u8>,
}

/// Extracts every example block; panics (naming the line) on anything malformed.
fn parse_examples(doc: &str) -> Vec<Example> {
    let mut examples = Vec::new();
    let mut lines = doc.lines().enumerate().map(|(i, l)| (i + 1, l)).peekable();
    while let Some((line_no, line)) = lines.next() {
        let Some(name) = line.strip_prefix(HEADING) else {
            continue;
        };
        let name = name.trim().to_owned();
        assert!(!name.is_empty(), "PROTOCOL.md:{line_no}: example without a name");
        // Prose may follow the heading; the first code fence after it must open the hex
        // block, before any other heading.
        let fence = loop {
            match lines.next() {
                Some((n, l)) if l.starts_with("```") || l.starts_with('#') => break (n, l),
                Some(_) => continue,
                None => panic!("PROTOCOL.md:{line_no}: example {name:?} has no hex block"),
            }
        };
        assert_eq!(
            fence.1.trim_end(),
            "```hex",
            "PROTOCOL.md:{}: example {name:?} must be followed by a ```hex block",
            fence.0
        );
        let mut bytes = Vec::new();
        loop {
            let Some((n, l)) = lines.next() else {
                panic!("PROTOCOL.md:{line_no}: example {name:?}: unterminated hex block");
            };
            if l.trim_end() == "```" {
                break;
            }
            let data = l.split('#').next().unwrap_or("");
            for token in data.split_whitespace() {
                let valid = token.len() == 2
                    && token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                assert!(
                    valid,
                    "PROTOCOL.md:{n}: example {name:?}: {token:?} is not two lowercase hex digits"
                );
                bytes.push(u8::from_str_radix(token, 16).unwrap());
            }
        }
        examples.push(Example { name, line: line_no, bytes });
    }
    examples
}

fn doc() -> String {
    std::fs::read_to_string(DOC_PATH).unwrap_or_else(|err| panic!("reading {DOC_PATH}: {err}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

#[test]
fn every_example_in_the_doc_is_what_the_codec_produces() {
    let expected: BTreeMap<_, _> = expected().into_iter().collect();
    let examples = parse_examples(&doc());
    assert!(!examples.is_empty(), "no examples found in PROTOCOL.md");
    for example in &examples {
        let Some(frame) = expected.get(example.name.as_str()) else {
            panic!(
                "PROTOCOL.md:{}: example {:?} has no constructed frame in tests/golden.rs",
                example.line, example.name
            );
        };

        let mut encoded = Vec::new();
        encode_frame(frame, MAX_FRAME, &mut encoded).unwrap();
        assert_eq!(
            hex(&encoded),
            hex(&example.bytes),
            "PROTOCOL.md:{}: example {:?}: the codec encodes {frame:?} differently \
             (left: codec, right: document)",
            example.line,
            example.name
        );

        let mut reader = FrameReader::new(&example.bytes[..], MAX_FRAME);
        let decoded = reader.read_frame().unwrap_or_else(|err| {
            panic!(
                "PROTOCOL.md:{}: example {:?} does not decode: {err}",
                example.line, example.name
            )
        });
        assert_eq!(&decoded, frame, "example {:?}", example.name);
        assert!(
            matches!(reader.read_frame(), Err(Error::Closed)),
            "example {:?} holds more than one frame",
            example.name
        );
        assert_eq!(&decode_body(&example.bytes[LEN_PREFIX..]).unwrap(), frame);
    }
}

#[test]
fn every_expected_example_is_in_the_doc_exactly_once() {
    let examples = parse_examples(&doc());
    for (name, _) in expected() {
        let count = examples.iter().filter(|e| e.name == name).count();
        assert_eq!(
            count, 1,
            "PROTOCOL.md must contain exactly one `{HEADING}{name}` block (found {count})"
        );
    }
}

#[test]
fn every_hex_block_in_the_doc_is_an_example() {
    let doc = doc();
    let blocks = doc.lines().filter(|l| l.trim_end() == "```hex").count();
    assert_eq!(
        blocks,
        parse_examples(&doc).len(),
        "every ```hex block in PROTOCOL.md must follow a `{HEADING}NAME` heading"
    );
}

/// The handshake reads magic and version at fixed body offsets before decoding; the document
/// states them, so pin them too.
#[test]
fn hello_prefix_is_at_the_documented_offsets() {
    let examples = parse_examples(&doc());
    let daemon = examples.iter().find(|e| e.name == "hello-daemon").unwrap();
    let body = &daemon.bytes[LEN_PREFIX..];
    assert_eq!(&body[0..4], &[0, 0, 0, 0], "Hello variant index");
    assert_eq!(&body[4..12], &MAGIC);
    assert_eq!(&body[12..16], &VERSION.to_le_bytes());
}
