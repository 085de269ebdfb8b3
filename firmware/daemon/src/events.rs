//! The event stage: from a recipe's raw score to event messages (normaliser, patch detector for
//! the regions, hysteresis event detector, the wire message). Runs on the inference thread, once
//! per scored frame. Not to be confused with the object detector of object-centric recipes.

use crate::mqtt::message::{rfc3339_utc, EventSchema};
use crate::mqtt::{EndReason, EventKind, EventMessage, Region as WireRegion};
use std::time::{Duration, SystemTime};
use vigil_engine::package::ModelPackage;
use vigil_engine::recipe::Scored;
use vigil_engine::scoring::{
    ErrorMap, EventConfig, NormalizerConfig, PatchDetector, ScoreStream, ScoringError, Transition,
};

pub struct EventStage {
    /// Normaliser and hysteresis, the same code `vigil eval` counts events with.
    stream: ScoreStream,
    patches: PatchDetector,
    threshold: f32,
    region_fraction: f32,
    device: String,
    camera: String,
    model: String,
    latency_frames: u32,
    /// Wall-clock time of the stream's timestamp zero.
    epoch: SystemTime,
}

impl EventStage {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pkg: &ModelPackage,
        normalizer: &NormalizerConfig,
        events: EventConfig,
        region_fraction: f32,
        device: &str,
        camera: &str,
        latency_frames: u32,
    ) -> Result<Self, ScoringError> {
        let m = &pkg.manifest;
        let patches = pkg.patch_detector()?;
        Ok(Self {
            stream: ScoreStream::new(normalizer, events)?,
            patches,
            threshold: events.on,
            region_fraction,
            device: device.to_owned(),
            camera: camera.to_owned(),
            model: m.name.clone(),
            latency_frames,
            epoch: SystemTime::now(),
        })
    }

    /// Sets the wall-clock time of stream timestamp zero (a camera restart begins a new stream).
    pub fn set_epoch(&mut self, epoch: SystemTime) {
        self.epoch = epoch;
    }

    /// Processes one scored frame: returns the normalised score and, on a transition, the
    /// message to publish.
    pub fn process(
        &mut self,
        scored: &Scored,
        map: &ErrorMap,
    ) -> Result<(f32, Option<EventMessage>), ScoringError> {
        let score = self.stream.normalise(scored.raw)?;
        // Regions: the strongest patches within `region_fraction` of the frame's worst one.
        // Skipped while the score is low: nobody reads regions of a normal frame.
        let mut regions = heapless::Vec::<
            vigil_engine::scoring::Region,
            { vigil_engine::scoring::MAX_REGIONS },
        >::new();
        if score >= self.threshold * 0.5 {
            let first = self.patches.detect(map, None)?;
            let cut = first.max * self.region_fraction;
            let res = self.patches.detect(map, Some(cut))?;
            for r in res.regions.iter() {
                let mut r = *r;
                r.score = if res.max > 0.0 {
                    r.score / res.max * score
                } else {
                    0.0
                };
                let _ = regions.push(r);
            }
        }
        let t = self
            .stream
            .update(scored.frame_index, scored.timestamp, score, &regions)?;
        Ok((score, t.map(|t| self.message(&t, EndReason::Score))))
    }

    /// Closes an open event at the end of the stream or at shutdown; `reason` says which.
    pub fn finish(&mut self, reason: EndReason) -> Option<EventMessage> {
        self.stream.finish().map(|t| self.message(&t, reason))
    }

    fn wall(&self, t: Duration) -> SystemTime {
        self.epoch + t
    }

    /// The wire message of `t`; `end_reason` is used only if `t` is an end.
    fn message(&self, t: &Transition, end_reason: EndReason) -> EventMessage {
        let (kind, info, reason) = match t {
            Transition::Start(i) => (EventKind::Start, i, None),
            Transition::Update(i) => (EventKind::Update, i, None),
            Transition::End(i) => (EventKind::End, i, Some(end_reason)),
        };
        EventMessage {
            schema: EventSchema,
            id: info.id.to_string(),
            kind,
            device: self.device.clone(),
            camera: self.camera.clone(),
            model: self.model.clone(),
            started_at: rfc3339_utc(self.wall(info.start_time)),
            ended_at: info.end_time.map(|e| rfc3339_utc(self.wall(e))),
            frame: info.frame,
            score: info.score,
            peak_score: info.peak_score,
            threshold: self.threshold,
            latency_frames: self.latency_frames,
            regions: info
                .peak_regions
                .iter()
                .map(|r| WireRegion {
                    x: r.x,
                    y: r.y,
                    w: r.w,
                    h: r.h,
                    score: r.score,
                })
                .collect(),
            reason,
        }
    }
}
