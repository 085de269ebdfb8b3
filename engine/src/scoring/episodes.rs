//! Event-level metrics: the anomalies a consumer of the event stream is told about, counted
//! against labelled anomalous episodes (used by `vigil eval`; offline, these allocate).
//!
//! An *episode* is a maximal run of labelled anomalous frames within one video. An episode is
//! *detected* when some event is open (between its `start` and `end` messages) on one of its
//! frames; its *onset latency* is the number of frames from the episode's first frame to the
//! `start` message of the first such event (0 when the event was already open), plus the
//! recipe's own latency (the frames it waits for after the frame it scores). A *false event*
//! overlaps no episode: no frame from its first frame at or above `on` to its last at or above
//! `off` is labelled anomalous.

use serde::Serialize;

use super::stream::EventSpan;

/// A labelled anomalous episode, in the frame indices of the scored stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Episode {
    pub first: u64,
    pub last: u64,
}

/// The maximal runs of `true` in `labels`, whose first frame has index `offset`.
pub fn episodes(labels: &[bool], offset: u64) -> Vec<Episode> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &l) in labels.iter().enumerate() {
        match (l, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(Episode {
                    first: offset + s as u64,
                    last: offset + i as u64 - 1,
                });
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(Episode {
            first: offset + s as u64,
            last: offset + labels.len() as u64 - 1,
        });
    }
    out
}

/// Event-level results over one or more streams.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventMetrics {
    pub episodes: usize,
    pub episodes_detected: usize,
    /// Per detected episode, in episode order.
    pub onset_latency_frames: Vec<u64>,
    /// Median of `onset_latency_frames` (`null` when nothing was detected).
    pub onset_latency_frames_median: Option<f64>,
    pub events: usize,
    pub false_events: usize,
    /// Minutes of labelled-normal frames the streams held, at the evaluation's frame rate.
    pub normal_minutes: f64,
    /// `false_events` per hour of `normal_minutes` (`null` without normal footage).
    pub false_events_per_hour: Option<f64>,
    /// Share of labelled anomalous frames on which an event was open (`null` without any).
    pub anomalous_frames_covered: Option<f64>,
}

/// One scored stream (a camera session: one video, or several back to back) and its events.
#[derive(Debug, Clone, Copy)]
pub struct StreamEvents<'a> {
    /// Labels of the stream's frames; frame `offset + i` has `labels[i]`.
    pub labels: &'a [bool],
    pub offset: u64,
    /// Where each video of the stream begins, relative to `offset` (episodes never run
    /// across a video boundary). `&[0]` for a stream of one video.
    pub video_starts: &'a [usize],
    pub spans: &'a [EventSpan],
}

/// Event metrics over several streams. `latency_frames` is the recipe's latency, `fps` the
/// frame rate that turns normal frames into minutes.
pub fn event_metrics(streams: &[StreamEvents<'_>], latency_frames: u32, fps: f64) -> EventMetrics {
    let mut m = EventMetrics {
        episodes: 0,
        episodes_detected: 0,
        onset_latency_frames: Vec::new(),
        onset_latency_frames_median: None,
        events: 0,
        false_events: 0,
        normal_minutes: 0.0,
        false_events_per_hour: None,
        anomalous_frames_covered: None,
    };
    let (mut anomalous, mut covered, mut normal) = (0usize, 0usize, 0usize);
    for s in streams {
        let n = s.labels.len();
        if n == 0 {
            continue;
        }
        let last = s.offset + n as u64 - 1;
        let mut eps = Vec::new();
        for (k, &b) in s.video_starts.iter().enumerate() {
            let e = s.video_starts.get(k + 1).copied().unwrap_or(n).min(n);
            if b < e {
                eps.extend(episodes(&s.labels[b..e], s.offset + b as u64));
            }
        }
        m.episodes += eps.len();
        for ep in &eps {
            let first_open = s
                .spans
                .iter()
                .filter(|sp| {
                    let r = sp.open_frames(last);
                    *r.start() <= ep.last && *r.end() >= ep.first
                })
                .map(|sp| sp.started_on)
                .min();
            if let Some(on) = first_open {
                m.episodes_detected += 1;
                m.onset_latency_frames
                    .push(on.saturating_sub(ep.first) + u64::from(latency_frames));
            }
        }
        let label = |f: u64| s.labels[(f - s.offset) as usize];
        m.events += s.spans.len();
        m.false_events += s
            .spans
            .iter()
            .filter(|sp| {
                let end = sp.end_frame.unwrap_or(last).min(last);
                !(sp.start_frame.max(s.offset)..=end).any(label)
            })
            .count();
        for (i, &l) in s.labels.iter().enumerate() {
            let f = s.offset + i as u64;
            if l {
                anomalous += 1;
                covered += usize::from(s.spans.iter().any(|sp| sp.open_frames(last).contains(&f)));
            } else {
                normal += 1;
            }
        }
    }
    m.onset_latency_frames_median = median(&m.onset_latency_frames);
    m.normal_minutes = normal as f64 / fps / 60.0;
    m.false_events_per_hour =
        (normal > 0).then(|| m.false_events as f64 / (m.normal_minutes / 60.0));
    m.anomalous_frames_covered = (anomalous > 0).then(|| covered as f64 / anomalous as f64);
    m
}

fn median(v: &[u64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2] as f64
    } else {
        (s[n / 2 - 1] + s[n / 2]) as f64 / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: u64, on: u64, end: Option<u64>, off: Option<u64>) -> EventSpan {
        EventSpan {
            start_frame: start,
            started_on: on,
            end_frame: end,
            ended_on: off,
            peak_score: 1.0,
        }
    }

    #[test]
    fn episodes_are_maximal_runs() {
        let l = [false, true, true, false, true, false, true];
        assert_eq!(
            episodes(&l, 10),
            vec![
                Episode {
                    first: 11,
                    last: 12
                },
                Episode {
                    first: 14,
                    last: 14
                },
                Episode {
                    first: 16,
                    last: 16
                }
            ]
        );
        assert!(episodes(&[false; 4], 0).is_empty());
    }

    #[test]
    fn detection_latency_false_events_and_coverage() {
        // Frames 0..100: an episode 40..=59; an event started on 44 (run from 42) ending on
        // 63 (last above off 58); a false event 5..=8 (messages on 7 and 12); an event open at
        // the end of the stream from 95 on, outside any episode.
        let mut labels = vec![false; 100];
        labels[40..60].iter_mut().for_each(|l| *l = true);
        let spans = [
            span(5, 7, Some(8), Some(12)),
            span(42, 44, Some(58), Some(63)),
            span(94, 95, None, None),
        ];
        let m = event_metrics(
            &[StreamEvents {
                labels: &labels,
                offset: 0,
                video_starts: &[0],
                spans: &spans,
            }],
            2,
            10.0,
        );
        assert_eq!((m.episodes, m.episodes_detected), (1, 1));
        assert_eq!(m.onset_latency_frames, vec![4 + 2]);
        assert_eq!(m.onset_latency_frames_median, Some(6.0));
        assert_eq!((m.events, m.false_events), (3, 2));
        assert!((m.normal_minutes - 80.0 / 600.0).abs() < 1e-12);
        assert!((m.false_events_per_hour.unwrap() - 2.0 / (80.0 / 36000.0)).abs() < 1e-9);
        // Open 44..=63 covers frames 44..=59 of the episode: 16 of 20.
        assert_eq!(m.anomalous_frames_covered, Some(0.8));
    }

    #[test]
    fn episodes_do_not_run_across_videos_and_an_open_event_counts_at_once() {
        // Two all-anomalous videos of 10 frames back to back in one stream (offset 100): two
        // episodes. The first event is already open on frame 100 (latency 0) and ends on 104;
        // the second starts on 112, inside the second video.
        let labels = [true; 20];
        let spans = [
            span(98, 99, Some(102), Some(104)),
            span(110, 112, None, None),
        ];
        let m = event_metrics(
            &[StreamEvents {
                labels: &labels,
                offset: 100,
                video_starts: &[0, 10],
                spans: &spans,
            }],
            0,
            10.0,
        );
        assert_eq!((m.episodes, m.episodes_detected), (2, 2));
        assert_eq!(m.onset_latency_frames, vec![0, 2]);
        assert_eq!(m.false_events, 0);
        assert_eq!(m.false_events_per_hour, None);
        assert_eq!(m.anomalous_frames_covered, Some((5.0 + 8.0) / 20.0));
    }

    #[test]
    fn nothing_detected() {
        let m = event_metrics(
            &[StreamEvents {
                labels: &[false, true, true],
                offset: 0,
                video_starts: &[0],
                spans: &[],
            }],
            0,
            10.0,
        );
        assert_eq!((m.episodes, m.episodes_detected), (1, 0));
        assert_eq!(m.onset_latency_frames_median, None);
        assert_eq!(m.anomalous_frames_covered, Some(0.0));
    }
}
