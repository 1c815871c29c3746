//! Large FUSE reads and writes -> calls whose payload is in the region shared with the daemon
//! (`ReadRegion`, `WriteRegion`) when the daemon mapped one and a slot is free, so the bytes
//! skip the pipe; otherwise the plain calls with the payload inline.

use fuser::{Errno as LinuxErrno, ReplyData};
use scheme_protocol::{Bytes, Call, Reply};

use super::handles::Handle;
use super::shared::{data_of, value_of, FsResult, Shared};
use crate::region::Slot;
use crate::CallResult;

/// Payloads smaller than this go inline: copying them through a frame costs less than a slot.
/// (32 KiB until session 12: 4 KiB O_DIRECT preads through a slot took 0.96x the time pinned
/// and 0.83x unpinned over frame rings, 0.95x and 0.96x over pipes, medians of 7 alternating
/// runs.)
const MIN_REGION_PAYLOAD: usize = 1024;

/// Turns a call's answer into what the FUSE reply needs.
pub(crate) type Extract<T> = Box<dyn FnOnce(CallResult<Reply>) -> FsResult<T> + Send>;

impl Shared {
    /// A free slot of `scheme`'s region for a payload of `len` bytes, if it should use one.
    /// Streams never do: their calls may block for good, and a slot whose call is interrupted
    /// is retired.
    fn payload_slot(&self, scheme: usize, stream: bool, len: usize) -> Option<Slot> {
        if stream || len < MIN_REGION_PAYLOAD {
            return None;
        }
        let slots = self.schemes[scheme].backend.payload_slots()?;
        if len > slots.slot_size() {
            return None;
        }
        slots.take()
    }

    /// The call reading up to `len` bytes of `handle`, and how to get the data from its answer.
    pub(crate) fn read_call(&self, handle: &Handle, len: usize) -> (Call, Extract<ReadData>) {
        let fd = handle.fd;
        match self.payload_slot(handle.scheme, handle.stream, len) {
            Some(slot) => {
                let call = Call::ReadRegion { fd, len: len as u64, at: slot.at() };
                (call, Box::new(move |answer| read_from(slot, answer)))
            }
            None => {
                let call = Call::Read { fd, len: len as u64 };
                (call, Box::new(|answer| data_of(answer).map(ReadData::Inline)))
            }
        }
    }

    /// The call writing `data` to `handle`, and how to get the count from its answer.
    pub(crate) fn write_call(&self, handle: &Handle, data: &[u8]) -> (Call, Extract<u64>) {
        let fd = handle.fd;
        if let Some(slot) = self.payload_slot(handle.scheme, handle.stream, data.len()) {
            if slot.region().copy_in(slot.at(), data) {
                let call = Call::WriteRegion { fd, len: data.len() as u64, at: slot.at() };
                return (call, Box::new(move |answer| value_of(answer).map_err(|e| end(slot, e))));
            }
        }
        (Call::Write { fd, data: Bytes::from(data) }, Box::new(value_of))
    }
}

/// What a read answered: bytes of its own (the inline call), or a count of bytes the daemon
/// left in a region slot, which the reply hands to the kernel without copying them first.
#[derive(Debug)]
pub(crate) enum ReadData {
    Inline(Bytes),
    InSlot { slot: Slot, len: u64 },
}

impl ReadData {
    /// Bytes read.
    pub(crate) fn len(&self) -> usize {
        match self {
            ReadData::Inline(data) => data.len(),
            ReadData::InSlot { len, .. } => *len as usize,
        }
    }

    /// Answers the FUSE read with the data; a slot is free again once the kernel has copied it.
    #[allow(unsafe_code)] // the one slice over the region (`Region::shared_bytes`)
    pub(crate) fn reply(self, reply: ReplyData) {
        match self {
            ReadData::Inline(data) => reply.data(&data),
            ReadData::InSlot { slot, len } => {
                // SAFETY: fuser's `ReplyData::data` only puts the slice's address and length in
                // an `IoSlice` for the `writev` of the reply (to /dev/fuse, or to the interrupt
                // relay's socket), which copies the bytes before it returns; no Rust code reads
                // them, and the slice ends with this statement, while `slot` is still ours.
                match unsafe { slot.region().shared_bytes(slot.at(), len) } {
                    Some(bytes) => reply.data(bytes),
                    None => reply.error(LinuxErrno::EIO),
                }
            }
        }
    }
}

/// The count of bytes a region read left in its slot (the client already refused counts over
/// `len`, which fits the slot).
fn read_from(slot: Slot, answer: CallResult<Reply>) -> FsResult<ReadData> {
    match value_of(answer) {
        Ok(len) if slot.region().address(slot.at(), len).is_some() => {
            Ok(ReadData::InSlot { slot, len })
        }
        Ok(_) => Err(LinuxErrno::EIO),
        Err(err) => Err(end(slot, err)),
    }
}

/// After a region call failed with `err`: an interrupted call may still be running in the
/// daemon, which may still use its slot, so that slot is never handed out again; any other
/// answer came from the daemon, which is done with it.
fn end(slot: Slot, err: LinuxErrno) -> LinuxErrno {
    if err == LinuxErrno::EINTR {
        slot.keep_out();
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::Slots;

    #[test]
    fn an_interrupted_region_call_retires_its_slot_and_other_answers_free_it() {
        let slots = Slots::create(1, 4096).unwrap();
        assert_eq!(end(slots.take().unwrap(), LinuxErrno::EIO), LinuxErrno::EIO);
        assert_eq!(end(slots.take().unwrap(), LinuxErrno::EINTR), LinuxErrno::EINTR);
        assert!(slots.take().is_none(), "the daemon may still use an interrupted call's slot");
    }

    #[test]
    fn a_region_read_keeps_its_slot_until_replied_and_frees_it_after() {
        let slots = Slots::create(1, 4096).unwrap();
        let slot = slots.take().unwrap();
        let data = read_from(slot, Ok(Reply::Value(3))).unwrap();
        assert_eq!(data.len(), 3);
        assert!(slots.take().is_none(), "the slot holds the answer until it is replied");
        drop(data);
        let slot = slots.take().expect("a read that was answered gives its slot back");
        let wrong = read_from(slot, Ok(Reply::Data(Bytes::default())));
        assert_eq!(wrong.err(), Some(LinuxErrno::EIO));
        let slot = slots.take().expect("and so does a wrong answer");
        assert_eq!(read_from(slot, Ok(Reply::Value(4097))).err(), Some(LinuxErrno::EIO));
    }
}
