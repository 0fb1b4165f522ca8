//! The built plugin (`libgstmixminus.so`) in real `gst-launch-1.0` and `gst-inspect-1.0`
//! processes, found through `GST_PLUGIN_PATH`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_hears, others, RATE, TONES};

/// A directory holding only the plugin from this build, for `GST_PLUGIN_PATH`, and a
/// private registry file, so no stale registry hides a rebuilt plugin.
struct PluginDir(PathBuf);

impl PluginDir {
    fn new(tag: &str) -> Self {
        let so = built_plugin();
        let dir = std::env::temp_dir().join(format!("gst-mixminus-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("libgstmixminus.so");
        let _ = std::fs::remove_file(&link);
        std::fs::copy(&so, &link).unwrap();
        Self(dir)
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("GST_PLUGIN_PATH", &self.0).env("GST_REGISTRY", self.0.join("registry.bin"));
        c
    }
}

impl Drop for PluginDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The cdylib cargo built beside this test binary (`target/<profile>/`), built first if
/// this test binary came without it.
fn built_plugin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let candidates =
        [deps.join("libgstmixminus.so"), deps.parent().unwrap().join("libgstmixminus.so")];
    let newest = |c: &[PathBuf]| {
        c.iter()
            .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p.clone())))
            .max()
            .map(|(_, p)| p)
    };
    if let Some(p) = newest(&candidates) {
        return p;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status =
        Command::new(cargo).args(["build", "-p", "gst-mixminus", "--lib"]).status().unwrap();
    assert!(status.success(), "building the plugin failed");
    newest(&candidates).expect("the plugin was built")
}

fn read_wav(path: &Path) -> Vec<i16> {
    let mut reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.sample_rate), (1, RATE), "{path:?}");
    match spec.sample_format {
        hound::SampleFormat::Int => reader.samples::<i16>().map(Result::unwrap).collect(),
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .map(|s| (s.unwrap() * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
            .collect(),
    }
}

#[test]
fn gst_launch_four_tones_give_four_mix_minus_files() {
    let plugin = PluginDir::new("launch");
    let mut args: Vec<String> = vec![
        "-q".into(),
        "mixminus".into(),
        "name=m".into(),
        // 0 stops hearing 1; 3 stops hearing 2 (2 mutes itself towards 3).
        "relationships=sink_0 deaf sink_1; sink_2 mute sink_3".into(),
    ];
    for (i, freq) in TONES.iter().enumerate() {
        // Input 3 is float, the others 16-bit; each output keeps its input's format.
        let format = if i == 3 { "F32LE" } else { "S16LE" };
        let wav = plugin.0.join(format!("out{i}.wav"));
        args.extend(
            format!(
                "audiotestsrc freq={freq} volume={v} num-buffers=50 samplesperbuffer=480 \
                 ! audio/x-raw,format={format},rate={RATE},channels=1 ! m.sink_{i} \
                 m.src_{i} ! queue ! wavenc ! filesink location={wav}",
                v = common::AMPLITUDE / 32_768.0,
                wav = wav.display(),
            )
            .split_whitespace()
            .map(String::from),
        );
    }
    let out = plugin.command("gst-launch-1.0").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "gst-launch-1.0 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let related: [&[usize]; 4] = [&[1], &[], &[], &[2]];
    for (i, removed) in related.iter().enumerate() {
        let pcm = read_wav(&plugin.0.join(format!("out{i}.wav")));
        assert_eq!(pcm.len(), 50 * 480, "out{i}: 0.5 s of audio");
        // Skip the first 100 ms; judge the rest.
        assert_hears(&format!("gst-launch out{i}"), &pcm[4_800..], &others(i, removed));
    }
}

#[test]
fn gst_inspect_documents_the_element() {
    let plugin = PluginDir::new("inspect");
    let out = plugin.command("gst-inspect-1.0").arg("mixminus").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "Mix-minus conference mixer",
        "sink_%u",
        "src_%u",
        "GstMixMinusSinkPad",
        "volume-in",
        "volume-out",
        "moderator",
        "energy-threshold",
        "max-active-speakers",
        "relationships",
        "\"relate\"",
    ] {
        assert!(text.contains(needle), "gst-inspect-1.0 mixminus lacks {needle}:\n{text}");
    }
}

#[test]
fn gst_launch_sets_pad_properties_through_the_child_proxy() {
    let plugin = PluginDir::new("childproxy");
    // sink_1 is muted from the launch line, before its pad exists.
    let mut args: Vec<String> =
        ["-q", "mixminus", "name=m", "sink_1::mute=true"].map(String::from).to_vec();
    for (i, freq) in TONES.iter().take(2).enumerate() {
        let wav = plugin.0.join(format!("out{i}.wav"));
        args.extend(
            format!(
                "audiotestsrc freq={freq} volume={v} num-buffers=20 samplesperbuffer=480 \
                 ! audio/x-raw,format=S16LE,rate={RATE},channels=1 ! m.sink_{i} \
                 m.src_{i} ! queue ! wavenc ! filesink location={wav}",
                v = common::AMPLITUDE / 32_768.0,
                wav = wav.display(),
            )
            .split_whitespace()
            .map(String::from),
        );
    }
    let out = plugin.command("gst-launch-1.0").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "gst-launch-1.0 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out0 = read_wav(&plugin.0.join("out0.wav"));
    assert!(out0.iter().all(|&s| s == 0), "sink_1 is muted: out0 hears nobody");
    let out1 = read_wav(&plugin.0.join("out1.wav"));
    assert_hears("out1", &out1[4_800..], &[0]);
}
