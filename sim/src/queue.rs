//! The simulation's event queue. Events come out in order of time, and events at the same
//! time in the order they were scheduled, so a seed replays exactly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Bits of an event's key that name its slot: far more than the events ever pending at once,
/// and the other 40 bits count far more events than [`crate::EVENTS_MAX`].
const SLOT_BITS: u32 = 24;

pub struct EventQueue<E> {
    /// Pending events' keys, earliest (time, insertion number) first, each packed into one
    /// u128 (time, insertion number, slot) so the heap compares and moves one word pair; the
    /// events themselves live in `slots`.
    keys: BinaryHeap<Reverse<u128>>,
    /// The insertion number of the next event scheduled.
    next_insertion: u64,
    slots: Vec<Option<E>>,
    free_slots: Vec<usize>,
}

impl<E> EventQueue<E> {
    pub fn new() -> EventQueue<E> {
        EventQueue { keys: BinaryHeap::new(), next_insertion: 0, slots: Vec::new(), free_slots: Vec::new() }
    }

    /// Schedules `event` at virtual time `at`.
    pub fn push(&mut self, at: u64, event: E) {
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                self.slots.len() - 1
            }
        };
        assert!(slot < 1 << SLOT_BITS && self.next_insertion < 1 << (64 - SLOT_BITS), "event queue key overflow");
        let order = self.next_insertion << SLOT_BITS | slot as u64;
        self.keys.push(Reverse(u128::from(at) << 64 | u128::from(order)));
        self.next_insertion += 1;
    }

    /// The earliest event and its time.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        let Reverse(key) = self.keys.pop()?;
        let (at, slot) = ((key >> 64) as u64, (key as usize) & ((1 << SLOT_BITS) - 1));
        let event = self.slots[slot].take().expect("queued events have a slot");
        self.free_slots.push(slot);
        Some((at, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events come out by time, and events at one time in the order they were scheduled, also
    /// when slots are reused.
    #[test]
    fn events_pop_by_time_then_insertion() {
        let mut queue = EventQueue::new();
        queue.push(5, "b");
        queue.push(3, "a");
        assert_eq!(queue.pop(), Some((3, "a")));
        queue.push(5, "c");
        queue.push(4, "d");
        assert_eq!(queue.pop(), Some((4, "d")));
        assert_eq!(queue.pop(), Some((5, "b")));
        assert_eq!(queue.pop(), Some((5, "c")));
        assert_eq!(queue.pop(), None);
    }
}
