//! # gst-mixminus: the GStreamer element `mixminus`
//!
//! (docs follow)

#![deny(missing_docs)]

mod input;
mod mixminus;
mod relations;

pub use mixminus::{register, MixMinus, MixMinusSinkPad};

/// Registers the plugin in this process without loading the `.so`: for applications and
/// tests that link this crate.
pub fn plugin_register_static() -> Result<(), gst::glib::BoolError> {
    plugin::plugin_desc::plugin_register_static()
}

// `gst::plugin_define!` generates the plugin descriptor and its exported
// `gst_plugin_mixminus_get_desc` symbol; its items carry no docs of their own.
#[allow(missing_docs)]
mod plugin {
    fn plugin_init(plugin: &gst::Plugin) -> Result<(), gst::glib::BoolError> {
        super::register(plugin)
    }

    gst::plugin_define!(
        mixminus,
        env!("CARGO_PKG_DESCRIPTION"),
        plugin_init,
        concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
        "MIT/X11",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_REPOSITORY"),
        env!("BUILD_REL_DATE")
    );
}
