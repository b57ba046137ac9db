//! Pure encoders and decoders shared by the simulator, the real runtime and the fuzzers.
//! Bytes from outside are untrusted: every malformed input is a typed error, never a panic.

pub mod frame;
pub mod transfer;
pub mod wal;

pub use frame::{Frame, FrameError};
pub use transfer::{TransferAbort, TransferId, TransferMessage};
pub use wal::{CutRecord, CutTail, RecordError, WalEnd, WalScan};
