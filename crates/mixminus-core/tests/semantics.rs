//! DESIGN.md's relationship table, one behaviour per test.

use mixminus_core::{
    Conference, ConferenceConfig, Error, Event, JoinOptions, ParticipantId, Relationship,
    TalkConfig,
};

/// A conference with the gate off, so any frame sent is mixed.
fn conference() -> Conference {
    Conference::new(ConferenceConfig {
        talk: TalkConfig { energy_threshold: 0, ..Default::default() },
        ..Default::default()
    })
    .unwrap()
}

fn join(conf: &mut Conference, n: usize) -> Vec<ParticipantId> {
    (0..n).map(|_| conf.join(JoinOptions::default()).unwrap()).collect()
}

/// Each participant i sends a constant 1 << i, so a listener's first sample tells exactly
/// whom it hears.
fn heard(conf: &mut Conference, ids: &[ParticipantId]) -> Vec<Vec<usize>> {
    let n = conf.frame_samples();
    for (i, &id) in ids.iter().enumerate() {
        conf.push_input(id, &vec![1 << i; n]).unwrap();
    }
    conf.tick();
    ids.iter()
        .map(|&id| {
            let v = conf.output(id).unwrap().pcm[0];
            (0..ids.len()).filter(|i| v & (1 << i) != 0).collect()
        })
        .collect()
}

#[test]
fn everyone_hears_everyone_else() {
    let mut conf = conference();
    let ids = join(&mut conf, 3);
    assert_eq!(heard(&mut conf, &ids), vec![vec![1, 2], vec![0, 2], vec![0, 1]]);
}

#[test]
fn deaf_means_p_stops_hearing_o() {
    let mut conf = conference();
    let ids = join(&mut conf, 3);
    conf.relate(&[ids[0]], &[ids[1]], Relationship::DEAF).unwrap();
    assert_eq!(heard(&mut conf, &ids), vec![vec![2], vec![0, 2], vec![0, 1]]);
}

#[test]
fn mute_means_o_stops_hearing_p() {
    let mut conf = conference();
    let ids = join(&mut conf, 3);
    conf.relate(&[ids[0]], &[ids[1]], Relationship::MUTE).unwrap();
    assert_eq!(heard(&mut conf, &ids), vec![vec![1, 2], vec![2], vec![0, 1]]);
}

#[test]
fn relate_replaces_the_record() {
    let mut conf = conference();
    let ids = join(&mut conf, 3);
    conf.relate(&[ids[0]], &[ids[1]], Relationship::MUTE).unwrap();
    conf.relate(&[ids[0]], &[ids[1]], Relationship::DEAF).unwrap();
    assert_eq!(conf.relationship(ids[0], ids[1]), Relationship::DEAF);
    assert_eq!(heard(&mut conf, &ids), vec![vec![2], vec![0, 2], vec![0, 1]]);
}

#[test]
fn both_flags_in_one_call_isolate_the_pair() {
    let mut conf = conference();
    let ids = join(&mut conf, 3);
    conf.relate(&[ids[0]], &[ids[1]], Relationship::BOTH).unwrap();
    assert_eq!(heard(&mut conf, &ids), vec![vec![2], vec![2], vec![0, 1]]);
}

#[test]
fn opposite_direction_is_a_separate_record() {
    let mut conf = conference();
    let ids = join(&mut conf, 3);
    conf.relate(&[ids[0]], &[ids[1]], Relationship::DEAF).unwrap();
    conf.relate(&[ids[1]], &[ids[0]], Relationship::DEAF).unwrap();
    assert_eq!(heard(&mut conf, &ids), vec![vec![2], vec![2], vec![0, 1]]);
    assert_eq!(conf.relationship_count(), 2);
    conf.relate(&[ids[1]], &[ids[0]], Relationship::CLEAR).unwrap();
    assert_eq!(heard(&mut conf, &ids), vec![vec![2], vec![0, 2], vec![0, 1]]);
}

#[test]
fn clear_removes_the_record() {
    let mut conf = conference();
    let ids = join(&mut conf, 3);
    conf.relate(&[ids[0]], &[ids[1]], Relationship::BOTH).unwrap();
    conf.relate(&[ids[0]], &[ids[1]], Relationship::CLEAR).unwrap();
    assert_eq!(conf.relationship_count(), 0);
    assert!(conf.relationships().is_empty());
    assert_eq!(heard(&mut conf, &ids), vec![vec![1, 2], vec![0, 2], vec![0, 1]]);
}

#[test]
fn lists_apply_to_the_cross_product() {
    let mut conf = conference();
    let ids = join(&mut conf, 4);
    conf.relate(&ids[0..2], &ids[2..4], Relationship::DEAF).unwrap();
    assert_eq!(conf.relationship_count(), 4);
    assert_eq!(heard(&mut conf, &ids), vec![vec![1], vec![0], vec![0, 1, 3], vec![0, 1, 2]]);
    let listed: Vec<_> = conf.relationships().into_iter().map(|(p, o, _)| (p, o)).collect();
    assert_eq!(
        listed,
        vec![(ids[0], ids[2]), (ids[0], ids[3]), (ids[1], ids[2]), (ids[1], ids[3])]
    );
    assert_eq!(conf.relationships_of(ids[2]).unwrap().len(), 2);
}

#[test]
fn leaving_removes_every_record_naming_the_participant() {
    let mut conf = conference();
    let ids = join(&mut conf, 3);
    conf.relate(&[ids[0]], &[ids[1]], Relationship::DEAF).unwrap();
    conf.relate(&[ids[1]], &[ids[2]], Relationship::MUTE).unwrap();
    conf.relate(&[ids[2]], &[ids[0]], Relationship::DEAF).unwrap();
    conf.leave(ids[1]).unwrap();
    assert_eq!(conf.relationships(), vec![(ids[2], ids[0], Relationship::DEAF)]);
    assert!(conf.relationships_of(ids[1]).is_err());
    // A rejoin is a new participant with a new id and no records.
    let again = conf.join(JoinOptions::default()).unwrap();
    assert!(again > ids[2]);
    assert!(conf.relationships_of(again).unwrap().is_empty());
}

#[test]
fn self_and_unknown_are_errors_that_change_nothing() {
    let mut conf = conference();
    let ids = join(&mut conf, 3);
    conf.relate(&[ids[0]], &[ids[1]], Relationship::DEAF).unwrap();
    let before = conf.relationships();
    while conf.poll_event().is_some() {}

    assert_eq!(
        conf.relate(&[ids[1]], &[ids[2], ids[1]], Relationship::MUTE),
        Err(Error::SelfRelationship(ids[1]))
    );
    let ghost = ParticipantId::new(999);
    assert_eq!(
        conf.relate(&[ids[0], ids[2]], &[ids[1], ghost], Relationship::CLEAR),
        Err(Error::UnknownParticipant(ghost))
    );
    assert_eq!(conf.relate(&[], &[ids[1]], Relationship::DEAF), Err(Error::EmptyRelate));
    conf.leave(ids[2]).unwrap();
    assert_eq!(
        conf.relate(&[ids[0]], &[ids[2]], Relationship::DEAF),
        Err(Error::UnknownParticipant(ids[2]))
    );
    assert_eq!(conf.relationships(), before);
    assert!(!std::iter::from_fn(|| conf.poll_event())
        .any(|e| matches!(e, Event::RelationshipChanged { .. })));
}

#[test]
fn relationship_limit_refuses_the_whole_call() {
    let mut conf =
        Conference::new(ConferenceConfig { max_relationships: 3, ..Default::default() }).unwrap();
    let ids = join(&mut conf, 4);
    assert_eq!(
        conf.relate(&ids[0..2], &ids[2..4], Relationship::DEAF),
        Err(Error::TooManyRelationships(3))
    );
    assert_eq!(conf.relationship_count(), 0);
    conf.relate(&ids[0..1], &ids[1..4], Relationship::DEAF).unwrap();
    // Replacing existing records needs no room.
    conf.relate(&ids[0..1], &ids[1..4], Relationship::MUTE).unwrap();
}

#[test]
fn participant_wide_flags() {
    let mut conf = conference();
    let ids = join(&mut conf, 3);
    assert!(conf.set_can_speak(ids[0], false).unwrap());
    assert!(!conf.set_can_speak(ids[0], false).unwrap());
    conf.set_can_hear(ids[2], false).unwrap();
    assert_eq!(heard(&mut conf, &ids), vec![vec![1, 2], vec![2], vec![]]);
    conf.set_can_speak(ids[0], true).unwrap();
    conf.set_can_hear(ids[2], true).unwrap();
    assert_eq!(heard(&mut conf, &ids), vec![vec![1, 2], vec![0, 2], vec![0, 1]]);
}

#[test]
fn join_defaults_follow_the_role() {
    let mut conf = Conference::new(ConferenceConfig {
        member_join: mixminus_core::JoinFlags { muted: true, deaf: false },
        ..Default::default()
    })
    .unwrap();
    let member = conf.join(JoinOptions::default()).unwrap();
    let moderator = conf.join(JoinOptions { moderator: true, ..Default::default() }).unwrap();
    let loud = conf.join(JoinOptions { muted: Some(false), ..Default::default() }).unwrap();
    assert!(!conf.participant(member).unwrap().can_speak);
    assert!(conf.participant(moderator).unwrap().can_speak);
    assert!(conf.participant(loud).unwrap().can_speak);
}

#[test]
fn top_n_keeps_the_loudest() {
    let mut conf = Conference::new(ConferenceConfig {
        talk: TalkConfig { energy_threshold: 0, ..Default::default() },
        max_active_speakers: 2,
        ..Default::default()
    })
    .unwrap();
    let ids = join(&mut conf, 4);
    let n = conf.frame_samples();
    for (i, &id) in ids.iter().enumerate() {
        conf.push_input(id, &vec![(i as i16 + 1) * 100; n]).unwrap();
    }
    let summary = conf.tick();
    assert_eq!(summary.active, 2);
    assert_eq!(conf.active_talkers().collect::<Vec<_>>(), vec![ids[2], ids[3]]);
    assert_eq!(conf.floor(), Some(ids[3]));
    assert_eq!(conf.output(ids[0]).unwrap().pcm[0], 700);
    assert_eq!(conf.output(ids[3]).unwrap().pcm[0], 300);
}

#[test]
fn talk_events_and_floor() {
    let mut conf = Conference::new(ConferenceConfig {
        talk: TalkConfig {
            energy_threshold: 100,
            attack_frames: 2,
            onset_frames: 1,
            hangover_frames: 3,
        },
        ..Default::default()
    })
    .unwrap();
    let ids = join(&mut conf, 2);
    while conf.poll_event().is_some() {}
    let n = conf.frame_samples();
    let mut events = Vec::new();
    for t in 0..8 {
        let level = if t < 3 { 1000 } else { 0 };
        conf.push_input(ids[0], &vec![level; n]).unwrap();
        conf.tick();
        events.extend(std::iter::from_fn(|| conf.poll_event()));
    }
    assert_eq!(
        events,
        vec![
            Event::TalkingStarted(ids[0]),
            Event::FloorChanged { from: None, to: Some(ids[0]) },
            Event::TalkingStopped(ids[0]),
            Event::FloorChanged { from: Some(ids[0]), to: None },
        ]
    );
}

#[test]
fn groups_are_shared_and_stable() {
    let mut conf = conference();
    let ids = join(&mut conf, 50);
    let n = conf.frame_samples();
    for round in 0..3 {
        for &t in &ids[..3] {
            conf.push_input(t, &vec![1000; n]).unwrap();
        }
        let summary = conf.tick();
        // One full-mix group for the 47 listeners, one mix-minus group per talker.
        assert_eq!(summary.groups, 4, "round {round}");
        let full = conf.output(ids[10]).unwrap().group;
        assert!(ids[3..].iter().all(|&l| conf.output(l).unwrap().group == full));
    }
    let full = conf.output(ids[20]).unwrap().group;
    // Deaf to talker 0: the listener now hears what talker 0 hears, so it joins that group.
    conf.relate(&[ids[20]], &[ids[0]], Relationship::DEAF).unwrap();
    for &t in &ids[..3] {
        conf.push_input(t, &vec![1000; n]).unwrap();
    }
    assert_eq!(conf.tick().groups, 4);
    assert_eq!(conf.output(ids[20]).unwrap().group, conf.output(ids[0]).unwrap().group);
    assert_eq!(conf.output(ids[21]).unwrap().group, full);
    // Deaf to two talkers: a key nobody else has, so a new group.
    conf.relate(&[ids[20]], &[ids[0], ids[1]], Relationship::DEAF).unwrap();
    for &t in &ids[..3] {
        conf.push_input(t, &vec![1000; n]).unwrap();
    }
    assert_eq!(conf.tick().groups, 5);
    assert_eq!(conf.output(ids[20]).unwrap().pcm[0], 1000);
}

#[test]
fn idle_groups_close_with_an_event() {
    let mut conf = Conference::new(ConferenceConfig {
        talk: TalkConfig { energy_threshold: 0, ..Default::default() },
        group_idle_ticks: 2,
        ..Default::default()
    })
    .unwrap();
    let ids = join(&mut conf, 3);
    let n = conf.frame_samples();
    conf.push_input(ids[0], &vec![5; n]).unwrap();
    conf.push_input(ids[1], &vec![5; n]).unwrap();
    conf.tick();
    // The full mix (for ids[2]) and one mix-minus per talker.
    let groups: Vec<_> = conf.groups().map(|g| g.id).collect();
    assert_eq!(groups.len(), 3);
    while conf.poll_event().is_some() {}
    for _ in 0..3 {
        conf.tick();
    }
    let closed: Vec<_> = std::iter::from_fn(|| conf.poll_event())
        .filter_map(|e| match e {
            Event::GroupClosed(g) => Some(g),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 3);
    assert!(groups.iter().all(|g| closed.contains(g)));
    assert_eq!(conf.group_count(), 0);
}

#[test]
fn wrong_frame_length_is_refused() {
    let mut conf = conference();
    let ids = join(&mut conf, 1);
    assert_eq!(
        conf.push_input(ids[0], &[0; 10]),
        Err(Error::FrameLength { expected: 960, got: 10 })
    );
}

#[test]
fn capacity_is_enforced() {
    let mut conf =
        Conference::new(ConferenceConfig { max_participants: 2, ..Default::default() }).unwrap();
    join(&mut conf, 2);
    assert_eq!(conf.join(JoinOptions::default()), Err(Error::ConferenceFull(2)));
    assert!(Conference::new(ConferenceConfig { max_participants: 16_001, ..Default::default() })
        .is_err());
}
