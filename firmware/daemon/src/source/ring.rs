//! [`FrameRing`]: the fixed set of frames passed between the capture thread and the inference
//! thread.
//!
//! All `N` frames are allocated when the ring is built and then circulate forever: the producer
//! takes a free frame, fills it, commits it; the consumer pops the oldest committed frame and
//! releases it when done. Frames move by value (a `Frame` is a few words plus its heap buffer,
//! which never moves), the queue and the free list are `heapless` containers with inline
//! storage, so nothing is allocated after construction.
//!
//! Capture must never wait for inference (a camera that is not drained drops frames in the
//! driver, uncounted, or stalls): when no frame is free, [`FrameRing::acquire`] takes back the
//! oldest committed frame and counts it in [`FrameRing::dropped`]. The consumer therefore always
//! gets the freshest frames the ring could keep, in capture order, and every frame the producer
//! committed is either delivered or counted as dropped.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use heapless::{Deque, Vec as HVec};
use vigil_engine::frame::{Frame, Geometry};

struct State<const N: usize> {
    /// Committed frames, oldest first.
    queue: Deque<Frame, N>,
    /// Frames nobody holds.
    free: HVec<Frame, N>,
    dropped: u64,
    committed: u64,
    closed: bool,
}

/// A preallocated ring of `N` frames with drop-oldest semantics. `N` must be at least 2 (one
/// frame being filled, one being processed); 8 absorbs a few slow inferences.
pub struct FrameRing<const N: usize> {
    state: Mutex<State<N>>,
    ready: Condvar,
}

impl<const N: usize> FrameRing<N> {
    /// Allocates `N` blank frames of `geometry`. Sources reshape frames as needed; a source
    /// that keeps this geometry (or a smaller one) never reallocates them.
    pub fn new(geometry: Geometry) -> Self {
        const { assert!(N >= 2, "a FrameRing needs at least 2 frames") };
        let mut free = HVec::new();
        for _ in 0..N {
            // Cannot fail: exactly N pushes into capacity N; ignoring the Err keeps this
            // function free of panics.
            let _ = free.push(Frame::blank(geometry));
        }
        Self {
            state: Mutex::new(State {
                queue: Deque::new(),
                free,
                dropped: 0,
                committed: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// Poisoning only means another thread panicked while holding the lock; every update
    /// below leaves the state consistent before anything that could panic, so the data is
    /// still valid and capture should go on rather than cascade the panic.
    fn lock(&self) -> MutexGuard<'_, State<N>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A frame for the producer to fill. Never blocks: when no frame is free it takes back the
    /// oldest committed frame and counts it as dropped. Returns `None` after [`close`] and in
    /// the one case where the ring has nothing to give: the consumer holds all `N - 1` frames
    /// the producer does not (a consumer that never releases).
    ///
    /// [`close`]: FrameRing::close
    pub fn acquire(&self) -> Option<Frame> {
        let mut s = self.lock();
        if s.closed {
            return None;
        }
        if let Some(f) = s.free.pop() {
            return Some(f);
        }
        let oldest = s.queue.pop_front()?;
        s.dropped += 1;
        Some(oldest)
    }

    /// Queues a filled frame for the consumer. After [`close`](FrameRing::close) the frame
    /// goes back to the free list undelivered (and is not counted as committed).
    pub fn commit(&self, frame: Frame) {
        let mut s = self.lock();
        if s.closed {
            let _ = s.free.push(frame);
            return;
        }
        s.committed += 1;
        if let Err(frame) = s.queue.push_back(frame) {
            // Only reachable if the caller committed a frame that did not come from this ring
            // (more than N frames in circulation): keep the newest, count the oldest.
            if s.queue.pop_front().is_some() {
                s.dropped += 1;
            }
            let _ = s.queue.push_back(frame);
        }
        drop(s);
        self.ready.notify_one();
    }

    /// The oldest committed frame, waiting up to `timeout` for one. `None` on timeout, or once
    /// the ring is closed and drained (check [`is_closed`](FrameRing::is_closed) to tell apart).
    pub fn pop_timeout(&self, timeout: Duration) -> Option<Frame> {
        // Deadline-based so that spurious wakeups do not extend the wait.
        let deadline = Instant::now().checked_add(timeout);
        let mut s = self.lock();
        loop {
            if let Some(f) = s.queue.pop_front() {
                return Some(f);
            }
            if s.closed {
                return None;
            }
            let now = Instant::now();
            let left = match deadline {
                Some(d) if d > now => d - now,
                Some(_) => return None,
                // A timeout too large to represent: wait in long slices.
                None => Duration::from_secs(3600),
            };
            s = match self.ready.wait_timeout(s, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Returns a frame the consumer is done with.
    pub fn release(&self, frame: Frame) {
        let mut s = self.lock();
        // A full free list means the frame is foreign (see `commit`); dropping it frees its
        // buffer, which is harmless.
        let _ = s.free.push(frame);
    }

    /// Ends the stream: the consumer drains what is queued, then `pop_timeout` returns `None`
    /// at once; `acquire` returns `None` so the producer stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Committed frames the consumer never saw because capture outran it.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Frames committed so far (delivered + dropped + still queued).
    pub fn committed(&self) -> u64 {
        self.lock().committed
    }

    /// Frames waiting for the consumer.
    pub fn depth(&self) -> usize {
        self.lock().queue.len()
    }

    pub const fn capacity(&self) -> usize {
        N
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::thread;
    use vigil_engine::frame::PixelLayout;

    fn geometry() -> Geometry {
        Geometry::new(64, 48, PixelLayout::Gray8).unwrap()
    }

    fn produce(ring: &FrameRing<4>, index: u64) {
        let mut f = ring.acquire().expect("frame");
        f.index = index;
        f.data_mut()[0] = index as u8;
        ring.commit(f);
    }

    #[test]
    fn delivers_in_order_and_drops_the_oldest_when_full() {
        let ring = FrameRing::<4>::new(geometry());
        for i in 0..3 {
            produce(&ring, i);
        }
        assert_eq!(ring.depth(), 3);
        assert_eq!(ring.dropped(), 0);
        // Nothing free any more: frames 0 and 1 are taken back.
        produce(&ring, 3);
        produce(&ring, 4);
        produce(&ring, 5);
        assert_eq!(ring.dropped(), 2);
        assert_eq!(ring.depth(), 4);
        let got: Vec<u64> = (0..4)
            .map(|_| {
                let f = ring.pop_timeout(Duration::ZERO).unwrap();
                assert_eq!(f.data()[0], f.index as u8, "pixels travel with their index");
                let i = f.index;
                ring.release(f);
                i
            })
            .collect();
        assert_eq!(got, vec![2, 3, 4, 5]);
        assert!(ring.pop_timeout(Duration::from_millis(20)).is_none());
        assert_eq!(ring.committed(), 6);
    }

    #[test]
    fn acquire_gives_up_only_when_the_consumer_hoards_everything() {
        let ring = FrameRing::<2>::new(geometry());
        let a = ring.acquire().unwrap();
        ring.commit(a);
        let held = ring.pop_timeout(Duration::ZERO).unwrap();
        let b = ring.acquire().unwrap();
        // One frame with the producer, one with the consumer: nothing left to give.
        assert!(ring.acquire().is_none());
        ring.release(held);
        ring.commit(b);
        assert!(ring.acquire().is_some());
    }

    #[test]
    fn pop_timeout_waits_about_as_long_as_asked() {
        let ring = FrameRing::<4>::new(geometry());
        let t = Instant::now();
        assert!(ring.pop_timeout(Duration::from_millis(80)).is_none());
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(80), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
    }

    #[test]
    fn close_wakes_a_waiting_consumer_after_draining() {
        let ring = Arc::new(FrameRing::<4>::new(geometry()));
        produce(&ring, 7);
        let consumer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                let mut seen = Vec::new();
                let t = Instant::now();
                while let Some(f) = ring.pop_timeout(Duration::from_secs(30)) {
                    seen.push(f.index);
                    ring.release(f);
                }
                (seen, t.elapsed())
            })
        };
        thread::sleep(Duration::from_millis(50));
        ring.close();
        let (seen, waited) = consumer.join().unwrap();
        assert_eq!(seen, vec![7]);
        assert!(
            waited < Duration::from_secs(10),
            "close did not wake the consumer: {waited:?}"
        );
        assert!(ring.is_closed());
        assert!(ring.acquire().is_none(), "producer must stop after close");
    }

    #[test]
    fn frames_circulate_without_reallocation() {
        let ring = FrameRing::<8>::new(geometry());
        // Record the N buffers the ring was built with.
        let mut frames: Vec<Frame> = (0..8).map(|_| ring.acquire().unwrap()).collect();
        let original: HashSet<usize> = frames.iter().map(|f| f.data().as_ptr() as usize).collect();
        assert_eq!(original.len(), 8);
        let cap = frames[0].data().len();
        for f in frames.drain(..) {
            ring.release(f);
        }
        for i in 0..1000u64 {
            let mut f = ring.acquire().unwrap();
            f.reshape(geometry());
            f.index = i;
            ring.commit(f);
            if i % 3 == 0 {
                let f = ring.pop_timeout(Duration::ZERO).unwrap();
                assert!(
                    original.contains(&(f.data().as_ptr() as usize)),
                    "a frame buffer was reallocated"
                );
                assert_eq!(f.data().len(), cap);
                ring.release(f);
            }
        }
        while let Some(f) = ring.pop_timeout(Duration::ZERO) {
            assert!(original.contains(&(f.data().as_ptr() as usize)));
            ring.release(f);
        }
        let after: HashSet<usize> = (0..8)
            .map(|_| ring.acquire().unwrap().data().as_ptr() as usize)
            .collect();
        assert_eq!(
            after, original,
            "the ring must still hold exactly its original buffers"
        );
    }

    #[test]
    fn fast_producer_slow_consumer_loses_nothing_uncounted() {
        const PRODUCED: u64 = 3000;
        let ring = Arc::new(FrameRing::<8>::new(geometry()));
        let producer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                for i in 0..PRODUCED {
                    let mut f = ring
                        .acquire()
                        .expect("the consumer releases, so a frame is always available");
                    f.index = i;
                    f.data_mut()[..8].copy_from_slice(&i.to_le_bytes());
                    ring.commit(f);
                    if i % 16 == 0 {
                        thread::yield_now();
                    }
                }
                ring.close();
            })
        };
        let mut delivered = Vec::new();
        loop {
            match ring.pop_timeout(Duration::from_millis(500)) {
                Some(f) => {
                    assert_eq!(
                        f.data()[..8],
                        f.index.to_le_bytes(),
                        "pixels and index belong together"
                    );
                    delivered.push(f.index);
                    // Inference is slower than capture.
                    if delivered.len() % 4 == 0 {
                        thread::sleep(Duration::from_micros(200));
                    }
                    ring.release(f);
                }
                None if ring.is_closed() => break,
                None => {}
            }
        }
        producer.join().unwrap();
        assert!(
            delivered.windows(2).all(|w| w[0] < w[1]),
            "frames out of order"
        );
        assert_eq!(
            delivered.last(),
            Some(&(PRODUCED - 1)),
            "the newest frame is never dropped"
        );
        let dropped = ring.dropped();
        assert!(dropped > 0, "the consumer was slower, drops expected");
        assert_eq!(
            delivered.len() as u64 + dropped,
            PRODUCED,
            "delivered + dropped == produced"
        );
        assert_eq!(ring.committed(), PRODUCED);
        assert_eq!(ring.depth(), 0);
    }
}
