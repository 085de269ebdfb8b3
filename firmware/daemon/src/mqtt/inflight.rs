//! Which message each MQTT packet id carries, from the moment a publish is handed to rumqttc to
//! the broker's PUBACK. Pure bookkeeping, apart from the connection's I/O (`publisher.rs`), so
//! every ordering rumqttc can produce is tested here without a broker.
//!
//! rumqttc gives a publish its packet id when it writes it (`Outgoing::Publish(pkid)`), in the
//! order the publishes were requested; a QoS 0 publish gets id 0 and is never acknowledged. When
//! the next id is still in flight it reports `Outgoing::AwaitAck(pkid)` for the publish at the
//! head of the queue and writes that one later, ahead of the rest.

use std::collections::{HashMap, VecDeque};

/// What a publish handed to rumqttc was for.
#[derive(Debug, PartialEq)]
pub(crate) enum Tag {
    /// An outbox message: acknowledged means removed from the outbox.
    Event {
        seq: u64,
        topic: String,
        payload: Vec<u8>,
    },
    /// The retained status (`online`, `stopped`).
    Status(&'static str),
    /// A health report (QoS 0).
    Health,
}

/// Something rumqttc reported that this bookkeeping did not expect; logged by the caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Surprise {
    /// A publish was written that nobody requested.
    Unrequested { pkid: u16 },
    /// A packet id was given out again before its PUBACK; the older message stays in the
    /// outbox and is sent again after the next reconnect.
    Reused { pkid: u16 },
}

#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// Requested publishes whose `Outgoing::Publish` has not been seen yet, in request order.
    awaiting_write: VecDeque<Tag>,
    /// A publish whose packet id collided (`AwaitAck`); it is written next, out of queue order.
    collided: Option<Tag>,
    /// QoS 1 publishes on the wire, by packet id, waiting for PUBACK.
    by_pkid: HashMap<u16, Tag>,
    /// Event publishes anywhere above.
    events: usize,
    /// Highest outbox sequence handed over on this connection (0: none yet).
    last_submitted: u64,
}

impl InFlight {
    /// A publish was handed to rumqttc.
    pub(crate) fn requested(&mut self, tag: Tag) {
        if let Tag::Event { seq, .. } = &tag {
            self.events += 1;
            self.last_submitted = *seq;
        }
        self.awaiting_write.push_back(tag);
    }

    /// Outbox message `seq` was passed over without a publish (it can never be sent).
    pub(crate) fn skipped(&mut self, seq: u64) {
        self.last_submitted = seq;
    }

    /// rumqttc wrote a publish with `pkid`.
    pub(crate) fn written(&mut self, pkid: u16) -> Result<(), Surprise> {
        let Some(tag) = self
            .collided
            .take()
            .or_else(|| self.awaiting_write.pop_front())
        else {
            return Err(Surprise::Unrequested { pkid });
        };
        if pkid == 0 {
            // QoS 0: nothing will acknowledge it.
            self.settled(&tag);
            return Ok(());
        }
        match self.by_pkid.insert(pkid, tag) {
            Some(old) => {
                self.settled(&old);
                Err(Surprise::Reused { pkid })
            }
            None => Ok(()),
        }
    }

    /// rumqttc holds back the next publish until `pkid` is acknowledged.
    pub(crate) fn collided(&mut self) {
        self.collided = self.awaiting_write.pop_front();
    }

    /// The broker acknowledged `pkid`: what it carried, if anything this side knows of.
    pub(crate) fn acknowledged(&mut self, pkid: u16) -> Option<Tag> {
        let tag = self.by_pkid.remove(&pkid)?;
        self.settled(&tag);
        Some(tag)
    }

    /// The connection is gone (clean session): everything handed over is forgotten; the outbox
    /// still holds every unacknowledged event, to be sent again from the oldest.
    pub(crate) fn forget(&mut self) {
        *self = InFlight::default();
    }

    /// Event publishes requested and not yet acknowledged.
    pub(crate) fn events(&self) -> usize {
        self.events
    }

    /// Highest outbox sequence handed over (or skipped) on this connection; 0 after
    /// [`InFlight::forget`].
    pub(crate) fn last_submitted(&self) -> u64 {
        self.last_submitted
    }

    fn settled(&mut self, tag: &Tag) {
        if matches!(tag, Tag::Event { .. }) {
            self.events = self.events.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> Tag {
        Tag::Event {
            seq,
            topic: "vigil/box/cam/events".into(),
            payload: seq.to_le_bytes().to_vec(),
        }
    }

    #[test]
    fn acknowledgements_in_any_order_return_what_each_packet_carried() {
        let mut f = InFlight::default();
        for seq in 1..=3 {
            f.requested(event(seq));
        }
        assert_eq!((f.events(), f.last_submitted()), (3, 3));
        for pkid in 1..=3 {
            f.written(pkid).unwrap();
        }
        assert_eq!(f.acknowledged(2), Some(event(2)));
        assert_eq!(f.acknowledged(3), Some(event(3)));
        assert_eq!(f.events(), 1);
        assert_eq!(f.acknowledged(2), None, "acknowledged twice");
        assert_eq!(f.acknowledged(1), Some(event(1)));
        assert_eq!(f.events(), 0);
    }

    #[test]
    fn a_qos0_health_report_is_settled_when_written() {
        let mut f = InFlight::default();
        f.requested(Tag::Health);
        f.requested(event(7));
        f.written(0).unwrap();
        f.written(1).unwrap();
        assert_eq!(f.events(), 1);
        assert_eq!(f.acknowledged(0), None);
        assert_eq!(f.acknowledged(1), Some(event(7)));
    }

    #[test]
    fn a_collided_publish_is_written_before_the_queue() {
        let mut f = InFlight::default();
        f.requested(event(1));
        f.written(1).unwrap();
        // rumqttc wraps around to id 1 while event 1 is unacknowledged.
        f.requested(event(2));
        f.requested(Tag::Status("online"));
        f.collided();
        assert_eq!(f.acknowledged(1), Some(event(1)));
        f.written(1).unwrap();
        f.written(2).unwrap();
        assert_eq!(f.acknowledged(1), Some(event(2)));
        assert_eq!(f.acknowledged(2), Some(Tag::Status("online")));
        assert_eq!(f.events(), 0);
    }

    #[test]
    fn surprises_are_reported_and_keep_the_count_right() {
        let mut f = InFlight::default();
        assert_eq!(f.written(4), Err(Surprise::Unrequested { pkid: 4 }));
        f.requested(event(1));
        f.requested(event(2));
        f.written(5).unwrap();
        assert_eq!(f.written(5), Err(Surprise::Reused { pkid: 5 }));
        // The first event is no longer tracked (the outbox sends it again after a reconnect).
        assert_eq!(f.events(), 1);
        assert_eq!(f.acknowledged(5), Some(event(2)));
        assert_eq!(f.events(), 0);
    }

    #[test]
    fn a_lost_connection_forgets_everything_handed_over() {
        let mut f = InFlight::default();
        f.requested(event(1));
        f.written(1).unwrap();
        f.requested(event(2));
        f.collided();
        f.requested(event(3));
        f.skipped(9);
        assert_eq!(f.last_submitted(), 9);
        f.forget();
        assert_eq!((f.events(), f.last_submitted()), (0, 0));
        assert_eq!(f.acknowledged(1), None);
        assert_eq!(f.written(1), Err(Surprise::Unrequested { pkid: 1 }));
    }
}
