//! Directory listings: Redox getdents records (redox_syscall 0.5 `DirentHeader`, 19 bytes:
//! inode u64, next_opaque_id u64, record_len u16, kind u8, then the name and a NUL), or the
//! legacy format, names separated by newlines, read from the directory handle at a byte offset.
//! FUSE offsets are cookies: 1 and 2 follow "." and "..", and a daemon cursor `c` is `c + 3`,
//! so they stay valid while the directory changes.

use fuser::FileType;

/// The cookie after "." .
pub(crate) const AFTER_DOT: u64 = 1;
/// The cookie after "..".
pub(crate) const AFTER_DOTDOT: u64 = 2;
/// Daemon cursors are shifted by this much.
const SHIFT: u64 = 3;

/// Bytes asked of the daemon per listing call.
pub(crate) const CHUNK: usize = 16 * 1024;

/// One entry from the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) inode: u64,
    pub(crate) name: String,
    pub(crate) kind: FileType,
    /// The FUSE cookie that continues after this entry.
    pub(crate) cookie: u64,
}

/// The daemon cursor a FUSE offset continues from, or `None` for the "." / ".." part.
pub(crate) fn cursor(offset: u64) -> Option<u64> {
    offset.checked_sub(SHIFT)
}

/// Parses getdents records; stops at the first malformed one.
pub(crate) fn parse_getdents(buf: &[u8]) -> Vec<Entry> {
    const HEADER: usize = 19;
    let mut entries = Vec::new();
    let mut rest = buf;
    while rest.len() >= HEADER {
        let inode = u64::from_le_bytes(rest[0..8].try_into().expect("8 bytes"));
        let next = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
        let record_len = u16::from_le_bytes([rest[16], rest[17]]) as usize;
        if record_len <= HEADER || record_len > rest.len() {
            break;
        }
        let name = &rest[HEADER..record_len];
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        if let Ok(name) = std::str::from_utf8(name) {
            let kind = kind_of(rest[18]);
            entries.push(Entry {
                inode,
                name: name.to_owned(),
                kind,
                cookie: next.saturating_add(SHIFT),
            });
        }
        rest = &rest[record_len..];
    }
    entries
}

/// Parses a chunk of the legacy listing read at byte offset `at`; a name cut off at the end
/// of a chunk that did not reach end of file is left for the next read.
pub(crate) fn parse_legacy(chunk: &[u8], at: u64, at_eof: bool) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut start = 0;
    while start < chunk.len() {
        let end = match chunk[start..].iter().position(|&b| b == b'\n') {
            Some(len) => start + len,
            None if at_eof => chunk.len(),
            None => break,
        };
        let consumed = (end + 1).min(chunk.len());
        if let Ok(name) = std::str::from_utf8(&chunk[start..end]) {
            if !name.is_empty() && name != "." && name != ".." {
                let cookie = at + consumed as u64 + SHIFT;
                entries.push(Entry {
                    inode: 0,
                    name: name.to_owned(),
                    kind: FileType::RegularFile,
                    cookie,
                });
            }
        }
        start = consumed;
    }
    entries
}

fn kind_of(raw: u8) -> FileType {
    match raw {
        4 => FileType::Directory,
        10 => FileType::Symlink,
        // Unspecified, regular, and streams (shown as regular files).
        _ => FileType::RegularFile,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(inode: u64, next: u64, kind: u8, name: &str) -> Vec<u8> {
        let len = (19 + name.len() + 1) as u16;
        let mut out = inode.to_le_bytes().to_vec();
        out.extend(next.to_le_bytes());
        out.extend(len.to_le_bytes());
        out.push(kind);
        out.extend(name.as_bytes());
        out.push(0);
        out
    }

    #[test]
    fn getdents_records_become_entries_with_shifted_cookies() {
        let mut buf = record(5, 1, 4, "dir");
        buf.extend(record(6, 2, 8, "file"));
        buf.extend([1, 2, 3]); // a torn record at the end is ignored
        let entries = parse_getdents(&buf);
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (entries[0].name.as_str(), entries[0].kind, entries[0].cookie),
            ("dir", FileType::Directory, 4)
        );
        assert_eq!((entries[1].inode, entries[1].cookie), (6, 5));
        assert_eq!(cursor(entries[1].cookie), Some(2));
    }

    #[test]
    fn a_lying_record_length_stops_parsing() {
        let mut buf = record(5, 1, 4, "dir");
        buf[16] = 0xff;
        assert!(parse_getdents(&buf).is_empty());
    }

    #[test]
    fn legacy_lines_and_a_cut_name() {
        let entries = parse_legacy(b"alpha\nbeta\ngam", 10, false);
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["alpha", "beta"]);
        assert_eq!(cursor(entries[1].cookie), Some(10 + 11));
        let last = parse_legacy(b"gamma", 21, true);
        assert_eq!(last[0].name, "gamma");
        assert_eq!(cursor(last[0].cookie), Some(26));
    }
}
