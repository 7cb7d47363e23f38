//! Black-box tests of the live tail, `GET /v1/events/live`: catch-up then live, resuming with
//! `Last-Event-ID` across a server restart with no gap and no duplicate, filters, heartbeats. (A
//! revoked key's tail is in `api_keys.rs`.)

use crate::support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{append_n, decode, SseReader, TestApp};

#[tokio::test]
async fn the_live_tail_catches_up_goes_live_and_resumes_after_a_restart_with_last_event_id() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let b = append_n(&app, "message-10", "message.sent", 5).await["first_position"].as_u64().unwrap();
    let positions = |events: &[(u64, Value)]| events.iter().map(|(p, _)| *p - b).collect::<Vec<_>>();

    let mut tail = SseReader::open(&app, &format!("/v1/events/live?from_position={b}"), None).await;
    let history = tail.events(5).await;
    assert_eq!(positions(&history), vec![0, 1, 2, 3, 4]);
    loop {
        let frame = tail.frame().await;
        if frame.event.as_deref() == Some("caught-up") {
            break;
        }
        assert!(frame.comment, "nothing but heartbeats between the history and caught-up: {frame:?}");
    }
    let live_append = append_n(&app, "message-11", "message.delivered", 2).await;
    let l = live_append["first_position"].as_u64().unwrap();
    let live = tail.events(2).await;
    assert_eq!(live.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![l, l + 1]);
    assert_eq!(live[0].1["stream"], json!("message-11"));

    // The server stops with the tail still open (shutdown must not wait for it), restarts, and
    // more events arrive while the client is away.
    let app = app.restart().await;
    drop(tail);
    let away = append_n(&app, "message-12", "message.sent", 3).await;
    let mut tail = SseReader::open(&app, "/v1/events/live", Some(l + 1)).await;
    let resumed = tail.events(3).await;
    // Exactly the events appended while away. (Positions are global: the projectors' system
    // streams — `$parked-messages` for these events, whose data names another message — may
    // take positions in between, which this tenant never sees.)
    let (first, last) = (away["first_position"].as_u64().unwrap(), away["last_position"].as_u64().unwrap());
    let resumed_positions: Vec<u64> = resumed.iter().map(|(p, _)| *p).collect();
    assert_eq!(resumed_positions, (first..=last).collect::<Vec<_>>(), "no gap, no duplicate");
    assert!(resumed.iter().all(|(_, e)| e["stream"] == json!("message-12")), "{resumed:?}");

    // Filters apply to the tail as to reads.
    let mut filtered = SseReader::open(&app, "/v1/events/live?from_position=0&types=message.delivered", None).await;
    let delivered = filtered.events(2).await;
    assert_eq!(delivered.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![l, l + 1]);
    let (status, problem) = decode(
        app.client
            .get(format!("{}/v1/events/live", app.base))
            .bearer_auth(&app.key)
            .header("last-event-id", "soon")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    app.stop().await;
}

#[tokio::test]
async fn an_idle_live_tail_gets_heartbeats() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(tmp.path(), |s| s.http.sse_heartbeat = Duration::from_secs(1)).await;
    let mut tail = SseReader::open(&app, "/v1/events/live", None).await;
    let started = std::time::Instant::now();
    let mut heartbeats = 0;
    while heartbeats < 2 {
        let frame = tail.frame().await;
        if frame.comment {
            heartbeats += 1;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "two heartbeats at a 1 s interval took {:?}",
        started.elapsed()
    );
    // An id past the document's int64 is no position, and the largest one a client can send is
    // past the head: no event has it, so the tail is a `400` naming the header (it used to wait
    // in silence forever; issue 13).
    let response = app
        .client
        .get(format!("{}/v1/events/live", app.base))
        .bearer_auth(&app.key)
        .header("last-event-id", u64::MAX.to_string())
        .send()
        .await
        .unwrap();
    let (status, problem) = decode(response).await;
    assert_eq!((status, &problem["parameter"]), (StatusCode::BAD_REQUEST, &json!("Last-Event-ID")), "{problem}");
    // The largest position the document allows is past the head too: a 400, not a silent tail.
    let response = app
        .client
        .get(format!("{}/v1/events/live", app.base))
        .bearer_auth(&app.key)
        .header("last-event-id", i64::MAX.to_string())
        .send()
        .await
        .unwrap();
    let (status, problem) = decode(response).await;
    assert_eq!((status, &problem["parameter"]), (StatusCode::BAD_REQUEST, &json!("Last-Event-ID")), "{problem}");
    app.stop().await;
}
