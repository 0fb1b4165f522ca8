//! The sink pad `sink_N`: one participant, with its per-pad properties.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use mixminus_core::{Gain, JoinOptions};

/// What a participant's properties say; the element applies it to the conference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PadSettings {
    pub(crate) mute: bool,
    pub(crate) deaf: bool,
    pub(crate) volume_in: f64,
    pub(crate) volume_out: f64,
    pub(crate) moderator: bool,
}

impl Default for PadSettings {
    fn default() -> Self {
        Self { mute: false, deaf: false, volume_in: 1.0, volume_out: 1.0, moderator: false }
    }
}

impl PadSettings {
    /// The join options for a participant with these settings.
    pub(crate) fn join_options(&self) -> JoinOptions {
        JoinOptions {
            muted: Some(self.mute),
            deaf: Some(self.deaf),
            moderator: self.moderator,
            input_gain: gain(self.volume_in),
            output_gain: gain(self.volume_out),
            ..Default::default()
        }
    }
}

/// A linear volume (0.0..=4.0, the property's range) as the core's Q12 gain.
pub(crate) fn gain(volume: f64) -> Gain {
    let q12 = (volume.clamp(0.0, MAX_VOLUME) * f64::from(Gain::UNITY.q12())).round() as u16;
    // In range by the clamp: at most 4.0 · 4096 = Gain::MAX.
    Gain::from_q12(q12).unwrap_or(Gain::MAX)
}

/// The largest volume, +12 dB: the core's gain ceiling.
pub(crate) const MAX_VOLUME: f64 = 4.0;

glib::wrapper! {
    /// A `sink_N` pad of `mixminus`: one participant's input, paired with `src_N`.
    pub struct MixMinusSinkPad(ObjectSubclass<imp::MixMinusSinkPad>) @extends gst::Pad, gst::Object;
}

impl MixMinusSinkPad {
    /// The pair index N of `sink_N` / `src_N`.
    pub(crate) fn index(&self) -> u32 {
        self.imp().index.load(Ordering::Relaxed)
    }

    pub(crate) fn set_index(&self, index: u32) {
        self.imp().index.store(index, Ordering::Relaxed);
    }

    /// The current per-pad settings.
    pub(crate) fn settings(&self) -> PadSettings {
        *self.imp().settings()
    }
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct MixMinusSinkPad {
        pub(super) index: AtomicU32,
        settings: Mutex<PadSettings>,
    }

    impl MixMinusSinkPad {
        pub(super) fn settings(&self) -> MutexGuard<'_, PadSettings> {
            // Settings are plain values: a panic elsewhere cannot leave them half-written.
            self.settings.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for MixMinusSinkPad {
        const NAME: &'static str = "GstMixMinusSinkPad";
        type Type = super::MixMinusSinkPad;
        type ParentType = gst::Pad;
    }

    impl ObjectImpl for MixMinusSinkPad {
        fn properties() -> &'static [glib::ParamSpec] {
            static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
                vec![
                    glib::ParamSpecBoolean::builder("mute")
                        .nick("Mute")
                        .blurb("Nobody hears this input (the participant cannot speak)")
                        .mutable_playing()
                        .build(),
                    glib::ParamSpecBoolean::builder("deaf")
                        .nick("Deaf")
                        .blurb("This pad's output is silence (the participant hears nobody)")
                        .mutable_playing()
                        .build(),
                    glib::ParamSpecDouble::builder("volume-in")
                        .nick("Volume in")
                        .blurb("Linear gain on what this participant says (1.0 = unity, 4.0 = +12 dB)")
                        .minimum(0.0)
                        .maximum(MAX_VOLUME)
                        .default_value(1.0)
                        .mutable_playing()
                        .build(),
                    glib::ParamSpecDouble::builder("volume-out")
                        .nick("Volume out")
                        .blurb("Linear gain on what this participant hears (1.0 = unity, 4.0 = +12 dB)")
                        .minimum(0.0)
                        .maximum(MAX_VOLUME)
                        .default_value(1.0)
                        .mutable_playing()
                        .build(),
                    glib::ParamSpecBoolean::builder("moderator")
                        .nick("Moderator")
                        .blurb("A moderator (recorded in the conference; it does not change the mix)")
                        .mutable_playing()
                        .build(),
                ]
            });
            PROPERTIES.as_ref()
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            {
                let mut s = self.settings();
                // The types are checked by GObject against the param specs above.
                match pspec.name() {
                    "mute" => s.mute = value.get().unwrap_or(s.mute),
                    "deaf" => s.deaf = value.get().unwrap_or(s.deaf),
                    "volume-in" => s.volume_in = value.get().unwrap_or(s.volume_in),
                    "volume-out" => s.volume_out = value.get().unwrap_or(s.volume_out),
                    "moderator" => s.moderator = value.get().unwrap_or(s.moderator),
                    _ => return,
                }
            }
            let pad = self.obj();
            if let Some(element) =
                pad.parent().and_then(|p| p.downcast::<super::super::MixMinus>().ok())
            {
                element.apply_pad_settings(&pad);
            }
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            let s = self.settings();
            match pspec.name() {
                "mute" => s.mute.to_value(),
                "deaf" => s.deaf.to_value(),
                "volume-in" => s.volume_in.to_value(),
                "volume-out" => s.volume_out.to_value(),
                "moderator" => s.moderator.to_value(),
                _ => glib::Value::from_type(pspec.value_type()),
            }
        }
    }

    impl GstObjectImpl for MixMinusSinkPad {}
    impl PadImpl for MixMinusSinkPad {}
}
