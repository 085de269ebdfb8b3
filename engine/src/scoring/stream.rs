//! One camera's score after the recipe: the normaliser, taught only by frames outside an open
//! event, feeding the hysteresis event detector. The daemon and `vigil eval` both go through
//! [`ScoreStream`], so the events `vigil eval` counts are the events the daemon publishes.

use std::time::Duration;

use serde::Serialize;

use super::{EventConfig, EventDetector, Normalizer, NormalizerConfig, Region, Result, Transition};

/// Normaliser + event detector of one camera. Allocation-free per frame, like its parts.
#[derive(Debug, Clone)]
pub struct ScoreStream {
    normalizer: Normalizer,
    events: EventDetector,
}

impl ScoreStream {
    pub fn new(normalizer: &NormalizerConfig, events: EventConfig) -> Result<Self> {
        Ok(Self {
            normalizer: Normalizer::from_config(normalizer)?,
            events: EventDetector::new(events)?,
        })
    }

    /// Normalises one raw score. While an event is open the frame does not teach the
    /// normaliser: an anomaly must not become the scene's normal.
    pub fn normalise(&mut self, raw: f32) -> Result<f32> {
        self.normalizer.push_learning(raw, !self.events.is_open())
    }

    /// Feeds the normalised score of a frame to the event detector (see
    /// [`EventDetector::update`]).
    pub fn update(
        &mut self,
        frame_index: u64,
        timestamp: Duration,
        score: f32,
        regions: &[Region],
    ) -> Result<Option<Transition>> {
        self.events.update(frame_index, timestamp, score, regions)
    }

    /// Ends the event stream (see [`EventDetector::finish`]); the normaliser keeps its history.
    pub fn finish(&mut self) -> Option<Transition> {
        self.events.finish()
    }

    pub fn event_config(&self) -> &EventConfig {
        self.events.config()
    }

    /// Replays raw scores of consecutive frames `first..` (timestamps at `fps`), recording
    /// each event's span; what `vigil eval` does with a video's scores. Returns the normalised
    /// scores. An event still open at the end stays open: call [`ScoreStream::close`] at the
    /// end of the stream.
    pub fn replay(
        &mut self,
        raw: &[f32],
        first: u64,
        fps: f64,
        spans: &mut Vec<EventSpan>,
    ) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(raw.len());
        for (i, &r) in raw.iter().enumerate() {
            let frame = first + i as u64;
            let score = self.normalise(r)?;
            let t = Duration::from_secs_f64(frame as f64 / fps);
            if let Some(t) = self.update(frame, t, score, &[])? {
                record(spans, &t, frame);
            }
            out.push(score);
        }
        Ok(out)
    }

    /// Closes an event left open by [`ScoreStream::replay`]; `last` is the stream's last frame.
    pub fn close(&mut self, last: u64, spans: &mut Vec<EventSpan>) {
        if let Some(t) = self.finish() {
            record(spans, &t, last);
        }
    }
}

fn record(spans: &mut Vec<EventSpan>, t: &Transition, frame: u64) {
    match t {
        Transition::Start(i) => spans.push(EventSpan {
            start_frame: i.start_frame,
            started_on: frame,
            end_frame: None,
            ended_on: None,
            peak_score: i.peak_score,
        }),
        Transition::Update(_) => {}
        Transition::End(i) => {
            if let Some(s) = spans.last_mut().filter(|s| s.ended_on.is_none()) {
                s.end_frame = i.end_frame;
                s.ended_on = Some(frame);
                s.peak_score = i.peak_score;
            }
        }
    }
}

/// One event as a consumer sees it, in frame indices of the scored stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EventSpan {
    /// First frame of the run that started it (`start.frame` of the wire message is later:
    /// `started_on`).
    pub start_frame: u64,
    /// The frame whose score emitted `start`.
    pub started_on: u64,
    /// Last frame at or above `off` (`None`: still open when the stream ended).
    pub end_frame: Option<u64>,
    /// The frame whose score emitted `end`.
    pub ended_on: Option<u64>,
    pub peak_score: f32,
}

impl EventSpan {
    /// Frames during which a consumer holds the event open: from its `start` message to its
    /// `end` message (or `last`, the stream's last frame).
    pub fn open_frames(&self, last: u64) -> std::ops::RangeInclusive<u64> {
        self.started_on..=self.ended_on.unwrap_or(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_event_does_not_teach_the_normaliser() {
        let norm = NormalizerConfig::Baseline {
            median: 0.0,
            spread: 1.0,
            window: 50,
            gate: 10.0,
            relearn: 1000,
        };
        let events = EventConfig {
            on: 0.5,
            off: 0.35,
            min_frames_on: 2,
            min_frames_off: 2,
            cooldown_frames: 0,
            update_every_frames: 0,
        };
        // A plateau 1.5 spreads up, shorter than the window: under the (wide) gate, so only the
        // open event keeps it out.
        let mut raw = vec![0.0f32; 10];
        raw.extend(std::iter::repeat_n(1.5, 40));
        raw.extend(std::iter::repeat_n(0.0, 10));
        let mut s = ScoreStream::new(&norm, events).unwrap();
        let mut spans = Vec::new();
        let ys = s.replay(&raw, 100, 10.0, &mut spans).unwrap();
        s.close(159, &mut spans);
        assert_eq!(spans.len(), 1, "{spans:?}");
        assert_eq!((spans[0].start_frame, spans[0].started_on), (110, 111));
        assert_eq!(
            (spans[0].end_frame, spans[0].ended_on),
            (Some(149), Some(151))
        );
        // The two frames before the start taught it a little: the median moves only once more
        // than half the window holds plateau frames, which never happens.
        assert!(ys[10..50].iter().all(|&y| y > 0.7), "{:?}", &ys[10..50]);
        // Without the hold the plateau becomes normal within half a window.
        let mut n = Normalizer::from_config(&norm).unwrap();
        let free: Vec<f32> = raw.iter().map(|&r| n.push(r).unwrap()).collect();
        assert!(free[45] < 0.2, "{}", free[45]);
        assert_eq!(spans[0].open_frames(159), 111..=151);
    }

    #[test]
    fn an_event_open_at_the_end_is_closed_on_the_last_frame() {
        let norm = NormalizerConfig::ZScore {
            mean: 0.0,
            std: 1.0,
        };
        let events = EventConfig {
            on: 1.0,
            off: 0.5,
            min_frames_on: 1,
            min_frames_off: 1,
            cooldown_frames: 0,
            update_every_frames: 0,
        };
        let mut s = ScoreStream::new(&norm, events).unwrap();
        let mut spans = Vec::new();
        s.replay(&[0.0, 2.0, 3.0], 0, 10.0, &mut spans).unwrap();
        assert_eq!(spans[0].ended_on, None);
        s.close(2, &mut spans);
        assert_eq!((spans[0].end_frame, spans[0].ended_on), (Some(2), Some(2)));
        assert_eq!(spans[0].peak_score, 3.0);
    }
}
