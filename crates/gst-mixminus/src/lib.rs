//! # gst-mixminus: the GStreamer element `mixminus`
//!
//! GStreamer's `audiomixer` makes one mix for everyone. A studio's IFB feeds, or a
//! conference, need the opposite: every participant hears everyone *but themselves*
//! (mix-minus), and often less — a producer talks to one guest, an interpreter hears only the
//! floor. `mixminus` gives every input pad its own output with exactly that mix, driven by
//! [`mixminus_core`]'s conference (shared mix groups: the cost grows with talkers, not with
//! pads) and its FreeSWITCH/Kazoo relationship matrix.
//!
//! ```text
//! gst-launch-1.0 mixminus name=m \
//!   audiotestsrc freq=440 ! audio/x-raw,rate=48000,channels=1 ! m.sink_0 \
//!   audiotestsrc freq=660 ! audio/x-raw,rate=48000,channels=1 ! m.sink_1 \
//!   m.src_0 ! queue ! autoaudiosink  m.src_1 ! queue ! fakesink
//! ```
//!
//! ## Pads
//!
//! - `sink_%u` (request): one participant's input. Requesting `sink_N` also adds `src_N`
//!   (a *sometimes* pad, announced with `pad-added`); releasing `sink_N` removes both, and
//!   with them every relationship naming the pair. Pads can come and go while playing.
//! - `src_%u`: what participant N hears: every other input, less the relationships, at
//!   `sink_N`'s volume-out.
//! - Caps: `audio/x-raw`, mono, `S16LE` or `F32LE`, 8000, 16000, 24000 or 48000 Hz — the
//!   rates the core mixes at. Each pad chooses its format; `src_N` carries `sink_N`'s format.
//!   The first caps fix the rate for every pad (later pads are offered only that rate, so an
//!   `audioresample` upstream adapts). **Stereo** is refused by the caps, not mixed down
//!   silently: put `audioconvert` before the pad and it downmixes to mono (a participant is
//!   one voice; the core mixes mono).
//! - Per-pad properties on `sink_N`: `mute` (nobody hears N), `deaf` (N hears nobody: silence
//!   on `src_N`), `volume-in`, `volume-out` (linear 0.0–4.0, the core's gain range: mute to
//!   +12 dB; FreeSWITCH's volume step k is `10^(3k/20)`), `moderator`. The sink pads are the
//!   element's children (`GstChildProxy`): `gst-launch-1.0 mixminus sink_1::mute=true …`.
//!
//! ## Relationships
//!
//! `relate(P, O, what)` is an action signal (`g_signal_emit_by_name (mixer, "relate",
//! "sink_0", "sink_1", "deaf", &ok)`); P and O name a pad of their pair (`sink_N` or `src_N`);
//! `what` is `deaf` (P stops hearing O), `mute` (O stops hearing P), `deaf,mute`, or `clear`.
//! A call *sets* the directed record, as FreeSWITCH and Kazoo do. It returns false and changes
//! nothing for an unknown pad, a pad related to itself, or an unknown word. The
//! `relationships` property reads the matrix as text (`sink_0 deaf sink_1; sink_2 mute
//! sink_3`); writing it replaces the whole matrix, which is how a `gst-launch-1.0` line sets
//! relationships: records naming pads not requested yet wait for them.
//!
//! ## Talk gate and bus messages
//!
//! `energy-threshold` (mean |sample|, 0..32768; **0 = off**, the default, so the element mixes
//! every input like `audiomixer`), `attack-frames`, `hangover-frames` and
//! `max-active-speakers` (mix only the N loudest; 0 = all) configure the core's talk
//! detection. Its events become element messages on the bus: `mixminus-talking` (`pad`:
//! `sink_N`, `talking`: bool) and `mixminus-floor` (`from`, `to`: the previous and new
//! loudest talker's `sink_N`, empty for nobody). Changing an element property rebuilds the
//! conference between two frames (talk detection starts afresh); per-pad properties and
//! `relate` apply in place.
//!
//! ## Timing: how inputs are aligned
//!
//! Every input buffer is placed on one output timeline by its **running time** (its segment
//! converts its timestamp), in samples. Buffers within 40 ms of where the previous one ended
//! are taken as contiguous (timestamp jitter is ignored, as `audiobasesink` does); farther
//! off, the input is re-placed: a gap becomes silence, an overlap is dropped. The output
//! timeline starts at the first input's running time; its frames (`frame-duration`, default
//! 10 ms) are timestamped with their running time in a `[0, ∞)` TIME segment.
//!
//! A mixing thread (started in READY→PAUSED) builds frame `[t, t+F)` when every linked,
//! non-EOS input has queued samples up to `t+F` — what `GstAggregator` does. **Non-live**,
//! it waits for all of them (an input that is linked but never sends holds the mix, as in
//! `audiomixer`). **Live** (any upstream answers the latency query as live), it waits at most
//! until the clock reaches `base_time + t + F + upstream latency + latency`; an input that
//! has not delivered by then is silence for that frame, never a stall, and its late samples
//! are dropped. The element reports `F + latency` as its own latency. An input that reaches
//! EOS is silence from then on; when every input is EOS, every `src_N` gets EOS.
//!
//! All `src_N` are pushed from that one thread, one after the other, like a demuxer's: put a
//! `queue` after each `src_N` that leads to a sink which prerolls (or use `async=false`),
//! otherwise the first sink blocks the others' preroll.
//!
//! ## Why not a `GstAggregator` subclass
//!
//! `GstAggregator` gives an element any number of sink pads but exactly one source pad, and
//! its whole machinery (negotiation, the src task, segment and position, QoS) is built around
//! that pad. `mixminus` has N source pads, each paired with a sink pad, like gst-plugins-rs's
//! `togglerecord` — a plain `GstElement` whose pads come in pairs. So it is a plain
//! `GstElement` that does what an aggregator does where it matters here: running-time
//! alignment, a deadline per frame in live pipelines, latency answered and taken into
//! account, EOS when all inputs are done. Seeking is not supported (src pads refuse SEEK);
//! flushing events on `sink_N` reset that input and pass through to `src_N`.
//!
//! ## Memory
//!
//! Each input has a fixed queue (200 ms) allocated when its pad is requested; a full queue
//! blocks that input's streaming thread until the next frame is taken. Output buffers come
//! from a `GstBufferPool`. In steady state nothing is allocated per buffer on the Rust side —
//! `tests/alloc.rs` counts with a global allocator (0 over 200 frames × 4 pads) and checks
//! that outputs cycle through a handful of pool buffers; bus messages (talk events) are
//! allocated when they happen.
//!
//! ## Using it from Rust
//!
//! Link this crate and call [`plugin_register_static`] after `gst::init()`; or load the
//! built `libgstmixminus.so` through `GST_PLUGIN_PATH`. `examples/relate.rs` relates two pads
//! while a live pipeline plays.

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
