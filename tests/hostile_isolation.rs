//! Media isolation (issue 11): a conference ticks on the bridge's own media threads, so a
//! control plane that hogs its runtime (slow handlers, heavy listings) cannot delay it; and
//! work that grows with a conference (its relationship list) is not redone on every
//! periodic snapshot.

use std::sync::Arc;
use std::time::Duration;

use mixminus::core::{ConferenceConfig, Relationship};
use mixminus::rtp::{
    Bridge, BridgeConfig, CodecKind, CodecParams, ConferenceCounters, ConferenceHandle,
    ConferenceSettings, JoinRequest,
};

fn bridge(ports: (u16, u16), media_threads: usize) -> Bridge {
    let mut config = BridgeConfig::default();
    config.rtp_ports = ports;
    config.media_threads = media_threads;
    Bridge::new(config).unwrap()
}

fn counters(conference: &ConferenceHandle) -> ConferenceCounters {
    conference.snapshot().counters
}

/// Blocks both workers of the caller's runtime for a second (as a handler doing heavy
/// synchronous work would) and returns the ticks the conference ran and skipped meanwhile.
async fn ticks_while_the_callers_runtime_is_blocked(conference: &ConferenceHandle) -> (u64, u64) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = counters(conference);
    let hogs: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async { std::thread::sleep(Duration::from_secs(1)) }))
        .collect();
    for hog in hogs {
        hog.await.unwrap();
    }
    // Let a snapshot covering the blocked second be published.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = counters(conference);
    (after.ticks - before.ticks, after.skipped_ticks - before.skipped_ticks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_control_runtime_does_not_stop_the_ticks() {
    let own = bridge((16_300, 16_349), 1);
    let conference = own.start_conference(ConferenceSettings::default()).unwrap();
    let (ticks, skipped) = ticks_while_the_callers_runtime_is_blocked(&conference).await;
    println!("media threads: {ticks} ticks run, {skipped} skipped in ~1.6 s with the caller's runtime blocked for 1 s");
    assert!(ticks >= 50, "the conference kept ticking: {ticks}");
    assert!(skipped <= 5, "ticks were skipped: {skipped}");
    conference.stop().await.unwrap();

    // The same on the caller's runtime (media_threads = 0, main's only way): the blocked
    // second is lost, which is what the test would see without the media threads.
    let shared = bridge((16_350, 16_399), 0);
    let conference = shared.start_conference(ConferenceSettings::default()).unwrap();
    let (ticks, skipped) = ticks_while_the_callers_runtime_is_blocked(&conference).await;
    println!("caller's runtime: {ticks} ticks run, {skipped} skipped");
    assert!(skipped >= 30, "blocking the runtime the conference shares stalls it: {skipped}");
    conference.stop().await.unwrap();
}

/// 200 participants, everyone deaf to everyone: 39,800 records. Periodic snapshots share
/// the list (main rebuilt and re-sorted it every 10 ticks, inside the tick loop); a relate
/// rebuilds it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_snapshots_do_not_rebuild_the_relationship_list() {
    let bridge = bridge((17_000, 17_599), 1);
    let conference =
        bridge.start_conference(ConferenceSettings::new(ConferenceConfig::default())).unwrap();
    let mut ids = Vec::new();
    for _ in 0..200 {
        let joined =
            conference.join(JoinRequest::new(CodecParams::new(CodecKind::Pcmu), None)).await;
        ids.push(joined.unwrap().id);
    }
    conference.relate(ids.clone(), ids[..1].to_vec(), Relationship::DEAF).await.unwrap_err();
    conference.relate(ids[1..].to_vec(), ids[..1].to_vec(), Relationship::DEAF).await.unwrap();
    let first = conference.snapshot();
    assert_eq!(first.relationships.len(), 199);
    let everyone: Vec<_> = ids.clone();
    for (i, &p) in ids.iter().enumerate() {
        let others: Vec<_> = everyone.iter().copied().filter(|&o| o != p).collect();
        conference.relate(vec![p], others, Relationship::DEAF).await.unwrap();
        if i == 0 {
            assert!(!Arc::ptr_eq(&first.relationships, &conference.snapshot().relationships));
        }
    }
    let published = conference.snapshot();
    assert_eq!(published.relationships.len(), 200 * 199);
    let late_before = published.counters.late_ticks;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = conference.snapshot();
    assert!(later.counters.ticks >= published.counters.ticks + 20, "newer publications");
    assert!(
        Arc::ptr_eq(&published.relationships, &later.relationships),
        "a periodic snapshot rebuilt the relationship list"
    );
    println!(
        "late ticks in 600 ms with {} records: {}; longest tick {} us",
        later.relationships.len(),
        later.counters.late_ticks - late_before,
        later.counters.max_tick_us
    );
    conference.stop().await.unwrap();
}
