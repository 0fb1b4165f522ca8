//! The `mixminus` element: the object types and their registration.

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

mod imp;
mod pad;

pub use pad::MixMinusSinkPad;

glib::wrapper! {
    /// The `mixminus` element: every `sink_N` gets its own mix-minus on `src_N`.
    pub struct MixMinus(ObjectSubclass<imp::MixMinus>) @extends gst::Element, gst::Object, @implements gst::ChildProxy;
}

impl MixMinus {
    /// Pushes a sink pad's current properties into the conference.
    fn apply_pad_settings(&self, pad: &MixMinusSinkPad) {
        self.imp().apply_pad_settings(pad);
    }
}

/// Registers the element (and its pad type) with `plugin`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "mixminus", gst::Rank::NONE, MixMinus::static_type())
}
