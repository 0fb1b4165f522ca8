fn main() {
    // Fills in the plugin's version and release date for `gst-inspect-1.0`.
    gst_plugin_version_helper::info()
}
