//! Large FUSE reads and writes -> calls whose payload is in the region shared with the daemon
//! (`ReadRegion`, `WriteRegion`) when the daemon mapped one and a slot is free, so the bytes
//! skip the pipe; otherwise the plain calls with the payload inline.

use fuser::Errno as LinuxErrno;
use scheme_protocol::{Bytes, Call, Reply};

use super::handles::Handle;
use super::shared::{data_of, value_of, FsResult, Shared};
use crate::region::Slot;
use crate::CallResult;

/// Payloads smaller than this go inline: copying them through a frame costs less than a slot.
const MIN_REGION_PAYLOAD: usize = 32 * 1024;

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
    pub(crate) fn read_call(&self, handle: &Handle, len: usize) -> (Call, Extract<Vec<u8>>) {
        let fd = handle.fd;
        match self.payload_slot(handle.scheme, handle.stream, len) {
            Some(slot) => {
                let call = Call::ReadRegion { fd, len: len as u64, at: slot.at() };
                (call, Box::new(move |answer| read_from(slot, answer)))
            }
            None => (Call::Read { fd, len: len as u64 }, Box::new(data_of)),
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

/// The bytes a region read left in its slot (the client already refused counts over `len`).
fn read_from(slot: Slot, answer: CallResult<Reply>) -> FsResult<Vec<u8>> {
    match value_of(answer) {
        Ok(count) => slot.region().copy_out(slot.at(), count).ok_or(LinuxErrno::EIO),
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
    fn a_region_read_copies_out_what_the_daemon_said_it_read() {
        let slots = Slots::create(1, 4096).unwrap();
        let slot = slots.take().unwrap();
        assert!(slot.region().copy_in(slot.at(), b"payload"));
        assert_eq!(read_from(slot, Ok(Reply::Value(3))).unwrap(), b"pay");
        let slot = slots.take().expect("a read that was answered gives its slot back");
        assert_eq!(read_from(slot, Ok(Reply::Data(Bytes::default()))), Err(LinuxErrno::EIO));
    }
}
