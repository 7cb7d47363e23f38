//! A log of many segments runs within a bounded number of open files: segments are opened when
//! used and closed again past `max_open_segments`, and nothing reads, writes or recovers any
//! differently for it.

use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{Direction, EventData, EventFilter, EventStore, ExpectedRevision, ReadFrom, StreamId};

const MAX_OPEN: usize = 3;

fn config(dir: &std::path::Path) -> EngineConfig {
    EngineConfig::new(dir).segment_size(8 * 1024).max_open_segments(MAX_OPEN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_segments_few_open_files() {
    let tmp = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(config(tmp.path())).await.unwrap();
    let mut written = Vec::new();
    for i in 0..400u32 {
        let stream = StreamId::new(format!("s-{}", i % 7)).unwrap();
        let event = EventData::json("thing.happened", &serde_json::json!({ "i": i, "pad": "x".repeat(200) })).unwrap();
        written.push(event.id());
        store.append_to_stream(&stream, ExpectedRevision::Any, vec![event]).await.unwrap();
    }
    let info = store.info().await.unwrap();
    assert!(info.segments > 5 * MAX_OPEN, "the test needs many segments, it has {}", info.segments);
    assert!(info.open_segment_files <= MAX_OPEN, "{} files open, limit {MAX_OPEN}", info.open_segment_files);

    // Reads across every segment, in both directions and per stream, reopen what they need.
    let all = store.read_all(ReadFrom::Start, Direction::Forwards, 10_000, &EventFilter::all()).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), written);
    let back = store.read_all(ReadFrom::End, Direction::Backwards, 10_000, &EventFilter::all()).await.unwrap();
    assert_eq!(back.len(), written.len());
    for s in 0..7 {
        let events = store
            .read_stream(&StreamId::new(format!("s-{s}")).unwrap(), ReadFrom::Start, Direction::Forwards, 1000)
            .await
            .unwrap()
            .into_events();
        assert_eq!(events.len(), written.len() / 7 + usize::from(s < written.len() % 7));
    }
    store.verify().await.unwrap();
    assert!(store.info().await.unwrap().open_segment_files <= MAX_OPEN);
    store.close().await.unwrap();

    // Recovery opens every segment to check its header, within the same limit.
    let store = EmbeddedStore::open(config(tmp.path())).await.unwrap();
    assert!(store.info().await.unwrap().open_segment_files <= MAX_OPEN);
    let all = store.read_all(ReadFrom::Start, Direction::Forwards, 10_000, &EventFilter::all()).await.unwrap();
    assert_eq!(all.len(), written.len());
    store.close().await.unwrap();
}
