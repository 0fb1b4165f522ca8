//! Our parsers accept and reject what Kazoo's own JSON schemas accept and reject (copies in
//! `kazoo/`, which the parsers also run at runtime), except for the documented extensions,
//! each listed here, and the strings crossbar's `fix_js_types` converts before validating
//! again (`"10"` where an integer is wanted, `"true"` where a boolean is).

use mixminus_control::doc::ConferenceDoc;
use mixminus_control::join::JoinBody;
use mixminus_control::relate::{ConferenceIdRule, RelateRequest};
use serde_json::{json, Value};

fn schema(text: &str) -> jsonschema::Validator {
    let mut schema: Value = serde_json::from_str(text).expect("schema is JSON");
    // References to schemas we do not have become what the referring schema says beside
    // them: `profile` is an object; a dial endpoint may be a device object.
    strip_refs(&mut schema);
    jsonschema::validator_for(&schema).expect("schema compiles")
}

fn strip_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.remove("$ref").is_some() && !map.contains_key("type") {
                map.insert("type".into(), "object".into());
            }
            map.values_mut().for_each(strip_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_refs),
        _ => {}
    }
}

fn check(
    name: &str,
    validator: &jsonschema::Validator,
    ours: impl Fn(&Value) -> bool,
    samples: &[(Value, bool)],
    extensions: &[(Value, bool, bool)],
) {
    for (sample, valid) in samples {
        assert_eq!(validator.is_valid(sample), *valid, "{name}: Kazoo's schema on {sample}");
        assert_eq!(ours(sample), *valid, "{name}: our parser on {sample}");
    }
    for (sample, kazoo, mixminus) in extensions {
        assert_eq!(
            validator.is_valid(sample),
            *kazoo,
            "{name}: Kazoo's schema on extension {sample}"
        );
        assert_eq!(ours(sample), *mixminus, "{name}: our parser on extension {sample}");
    }
}

#[test]
fn conference_documents() {
    let v = schema(include_str!("../kazoo/conferences.schema.json"));
    let seed_example = json!({
        "conference_numbers": [], "id": "c1", "name": "{CONFERENCE_NAME}",
        "member": {"join_deaf": false, "join_muted": false, "numbers": [], "pins": []},
        "moderator": {"join_deaf": false, "join_muted": false, "numbers": [], "pins": []},
        "play_entry_tone": true, "play_exit_tone": true, "play_name": false,
        "ui_metadata": {"origin": "callflows", "ui": "monster-ui", "version": "4.2-9"},
        "_read_only": {"duration": 2890, "is_locked": false, "members": 2, "moderators": 0, "participants": []}
    });
    let samples = [
        (json!({}), true),
        (json!({"name": "standup"}), true),
        (seed_example, true),
        (json!({"member": {"join_muted": false, "pins": ["1234"], "numbers": ["100"]}}), true),
        (json!({"member": {"play_entry_prompt": true}}), true),
        (
            json!({"play_entry_tone": "tone_stream://%(200,0,500,600,700)", "play_exit_tone": false}),
            true,
        ),
        (json!({"conference_numbers": ["100", "200"], "flags": ["x"], "controls": {}}), true),
        (json!({"owner_id": "0123456789abcdef0123456789abcdef"}), true),
        (
            json!({"profile": {"rate": 16000, "interval": 20, "energy-level": 20, "max-members": 10,
            "comfort-noise": true, "enter-sound": "tone_stream://x"}}),
            true,
        ),
        (
            json!({"max_participants": 10, "require_moderator": false, "wait_for_moderator": true}),
            true,
        ),
        (json!({"unknown_key": {"anything": [1, 2]}}), true),
        (json!("a string"), false),
        (json!([]), false),
        (json!({"name": ""}), false),
        (json!({"name": "x".repeat(129)}), false),
        (json!({"name": 5}), false),
        (json!({"member": {"join_muted": "yes"}}), false),
        (json!({"member": []}), false),
        (json!({"moderator": {"join_deaf": 1}}), false),
        (json!({"member": {"numbers": ["12a"]}}), false),
        (json!({"member": {"numbers": ["1", "1"]}}), false),
        (json!({"moderator": {"pins": [1234]}}), false),
        (json!({"conference_numbers": ["1", "1"]}), false),
        (json!({"owner_id": "short"}), false),
        (json!({"play_exit_tone": 3}), false),
        (json!({"play_name": "no"}), false),
        (json!({"flags": [1]}), false),
        (json!({"require_moderator": "yes"}), false),
        (json!({"controls": "x"}), false),
        (json!({"profile": "default"}), false),
    ];
    // (sample, Kazoo's schema, mixminus): deliberate, documented differences.
    let extensions = [
        (json!({"max_participants": -1}), true, false),
        (json!({"max_participants": 100000}), true, false),
        (json!({"profile": {"rate": 44100}}), true, false),
        (json!({"profile": {"interval": 30}}), true, false),
        (json!({"profile": {"energy-level": -5}}), true, false),
        (json!({"profile": {"max-active-speakers": 3}}), true, true),
        (json!({"profile": {"max-active-speakers": 65}}), true, false),
        (json!({"id": "has space"}), true, false),
        // fix_js_types: Kazoo's schema alone refuses these; crossbar converts and accepts.
        (json!({"max_participants": "10"}), false, true),
        (json!({"member": {"join_muted": "false"}, "play_name": "true"}), false, true),
        (json!({"max_participants": "ten"}), false, false),
    ];
    check("conferences", &v, |s| ConferenceDoc::parse(s).is_ok(), &samples, &extensions);
}

#[test]
fn relate_bodies() {
    let v = schema(include_str!("../kazoo/metaflows.relate.schema.json"));
    let ours = |s: &Value| RelateRequest::parse(s, ConferenceIdRule::Required).is_ok();
    let samples = [
        (json!({"conference_id": "c", "participant_id": 1, "other_participant": 2}), true),
        (
            json!({"conference_id": "c", "participant_id": "1", "other_participant": "2", "relationship": "deaf"}),
            true,
        ),
        (
            json!({"conference_id": "c", "participant_id": 1, "other_participant": 2, "relationship": "mute"}),
            true,
        ),
        (
            json!({"conference_id": "c", "participant_id": 1, "other_participant": 2, "relationship": "clear"}),
            true,
        ),
        // Any string passes the schema; the lookup then answers bad_identifier.
        (json!({"conference_id": "c", "participant_id": "abc", "other_participant": -4}), true),
        (
            json!({"conference_id": "c", "participant_id": 1, "other_participant": 2, "extra": true}),
            true,
        ),
        (json!({"conference_id": "c", "participant_id": 1}), false),
        (json!({"conference_id": "c", "other_participant": 1}), false),
        (json!({"participant_id": 1, "other_participant": 2}), false),
        (json!({"conference_id": 5, "participant_id": 1, "other_participant": 2}), false),
        (json!({"conference_id": "c", "participant_id": true, "other_participant": 2}), false),
        (json!({"conference_id": "c", "participant_id": 1.5, "other_participant": 2}), false),
        (json!({"conference_id": "c", "participant_id": null, "other_participant": 2}), false),
        (json!({"conference_id": "c", "participant_id": {}, "other_participant": 2}), false),
        (
            json!({"conference_id": "c", "participant_id": 1, "other_participant": 2, "relationship": "nohear"}),
            false,
        ),
        (
            json!({"conference_id": "c", "participant_id": 1, "other_participant": 2, "relationship": 1}),
            false,
        ),
        (json!([1, 2]), false),
    ];
    let extensions = [
        (
            json!({"conference_id": "c", "participant_id": [1, "2"], "other_participant": 3}),
            false,
            true,
        ),
        (
            json!({"conference_id": "c", "participant_id": 1, "other_participant": [2, 3]}),
            false,
            true,
        ),
        (
            json!({"conference_id": "c", "participant_id": 1, "other_participant": 2, "relationship": ["deaf", "mute"]}),
            false,
            true,
        ),
        (json!({"conference_id": "c", "participant_id": [], "other_participant": 2}), false, false),
        (
            json!({"conference_id": "c", "participant_id": 1, "other_participant": 2, "relationship": ["clear", "mute"]}),
            false,
            false,
        ),
    ];
    check("metaflows.relate", &v, ours, &samples, &extensions);
}

#[test]
fn participant_flags_match_the_dial_schema() {
    let v = schema(include_str!("../kazoo/conferences.dial.schema.json"));
    let flags_sample = |flags: Value| json!({"endpoints": ["1000"], "participant_flags": flags});
    let ours = |s: &Value| {
        let flags = s.get("participant_flags").cloned().unwrap_or(Value::Null);
        JoinBody::parse(&json!({"rtp": {"codec": "opus"}, "participant_flags": flags})).is_ok()
    };
    let samples = [
        (flags_sample(json!([])), true),
        (flags_sample(json!(["mute", "deaf", "is_moderator", "ghost"])), true),
        (
            flags_sample(json!(["distribute_dtmf", "disable_moh", "join_existing", "video_mute"])),
            true,
        ),
        (flags_sample(json!(["loud"])), false),
        (flags_sample(json!([5])), false),
        (flags_sample(json!("mute")), false),
    ];
    check("conferences.dial", &v, ours, &samples, &[]);
}
