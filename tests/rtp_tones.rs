//! End to end over real UDP on loopback with real codecs: tone participants join a bridge,
//! relationships change what each one hears, measured from the decoded audio.

use std::net::SocketAddr;
use std::time::Duration;

use mixminus::core::{ConferenceConfig, ParticipantId, Relationship};
use mixminus::rtp::client::{ToneClient, ToneClientConfig};
use mixminus::rtp::{
    Bridge, BridgeConfig, CodecKind, CodecParams, ConferenceHandle, ConferenceSettings, JoinRequest,
};

const TONES: [f32; 4] = [440.0, 700.0, 1100.0, 1700.0];
/// A tone at or above this level is "heard"; the clients send at about −12 dBFS.
const HEARD_DBFS: f64 = -40.0;

fn bridge() -> Bridge {
    let mut config = BridgeConfig::default();
    // Each test binary picks its own range so parallel tests do not fight for ports.
    config.rtp_ports = (31_000, 31_999);
    Bridge::new(config).unwrap()
}

struct Party {
    id: ParticipantId,
    client: ToneClient,
}

async fn join_all(conference: &ConferenceHandle, codecs: &[CodecKind]) -> Vec<Party> {
    let mut parties = Vec::new();
    for (i, &kind) in codecs.iter().enumerate() {
        let codec = CodecParams::new(kind);
        // Symmetric RTP: no remote given, the bridge answers where the client sends from.
        let joined = conference.join(JoinRequest::new(codec, None)).await.unwrap();
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let client =
            ToneClient::start(ToneClientConfig::new(codec, Some(TONES[i])), bind, joined.local_rtp)
                .await
                .unwrap();
        parties.push(Party { id: joined.id, client });
    }
    parties
}

/// Which tones each party hears over one 700 ms window.
async fn hearing(parties: &[Party]) -> Vec<Vec<bool>> {
    for p in parties {
        p.client.clear();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    parties.iter().map(|p| p.client.heard_tones(&TONES[..parties.len()], HEARD_DBFS)).collect()
}

/// Waits for the mix to settle on `expected` (talk detection's attack, the jitter buffers
/// filling, a change taking effect), measuring window after window for up to 5 s, so a
/// loaded machine is given time; a wrong mix never matches and fails with what was heard.
async fn assert_hearing(parties: &[Party], expected: &[[u8; 4]]) {
    let expected = expect(expected);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut heard = Vec::new();
    for _ in 0..7 {
        heard = hearing(parties).await;
        if heard == expected {
            return;
        }
    }
    assert_eq!(heard, expected, "rows: listener; columns: tone heard");
}

fn expect(matrix: &[[u8; 4]]) -> Vec<Vec<bool>> {
    matrix.iter().map(|row| row.iter().map(|&x| x == 1).collect()).collect()
}

async fn relate_and_check(codecs: &[CodecKind]) {
    let bridge = bridge();
    let conference =
        bridge.start_conference(ConferenceSettings::new(ConferenceConfig::default())).unwrap();
    let parties = join_all(&conference, codecs).await;
    let ids: Vec<_> = parties.iter().map(|p| p.id).collect();

    assert_hearing(&parties, &[[0, 1, 1, 1], [1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0]]).await;

    // 0 stops hearing 1; 2's audio no longer reaches 3.
    conference.relate(vec![ids[0]], vec![ids[1]], Relationship::DEAF).await.unwrap();
    conference.relate(vec![ids[2]], vec![ids[3]], Relationship::MUTE).await.unwrap();
    assert_hearing(&parties, &[[0, 0, 1, 1], [1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 0, 0]]).await;

    conference.relate(vec![ids[0]], vec![ids[1]], Relationship::CLEAR).await.unwrap();
    conference.relate(vec![ids[2]], vec![ids[3]], Relationship::CLEAR).await.unwrap();
    assert_hearing(&parties, &[[0, 1, 1, 1], [1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0]]).await;

    let snapshot = conference.snapshot();
    assert_eq!(snapshot.participants.len(), 4);
    assert!(snapshot
        .participants
        .iter()
        .all(|p| p.stats.packets_in > 50 && p.stats.packets_out > 50));
    conference.stop().await.unwrap();
    assert_eq!(bridge.ports_in_use(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_participants_hear_what_the_matrix_allows() {
    relate_and_check(&[CodecKind::Opus; 4]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_participants_hear_what_the_matrix_allows() {
    relate_and_check(&[CodecKind::Pcmu; 4]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_and_pcmu_mix_in_one_conference() {
    relate_and_check(&[CodecKind::Opus, CodecKind::Pcmu, CodecKind::Opus, CodecKind::Pcmu]).await;
}
