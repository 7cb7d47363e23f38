//! `event_store_test_suite!`: one `#[tokio::test]` per conformance case for a backend.
//!
//! Why a file of its own: the macros are what a backend's tests call, apart from the cases and
//! their helpers; they read the backend's capabilities once per case, to put a backend with
//! sparse positions behind [`DenseView`](super::DenseView).

/// Stamps out one `#[tokio::test]` per conformance case for a backend, in a module named
/// `event_store_conformance`. `$factory` is an async function (or closure) taking no argument and
/// returning `(store, guard)`: a fresh, empty store and a value kept alive until the store is
/// dropped. The calling crate needs `tokio` with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! event_store_test_suite {
    ($factory:expr) => {
        $crate::event_store_test_suite!($factory, limits = $crate::conformance::Limits::default());
    };
    ($factory:expr, limits = $limits:expr) => {
        #[allow(clippy::redundant_closure_call)]
        mod event_store_conformance {
            #[allow(unused_imports)]
            use super::*;

            $crate::__event_store_test_cases!($factory;
                append_and_read_back,
                multi_event_append_is_one_contiguous_block,
                appends_are_atomic_for_concurrent_readers,
                revisions_and_positions_are_contiguous,
                expected_revision_any,
                expected_revision_no_stream,
                expected_revision_stream_exists,
                expected_revision_exact,
                idempotent_retry_with_any,
                idempotent_retry_with_stream_exists,
                idempotent_retry_with_no_stream_after_later_appends,
                idempotent_retry_with_exact_after_later_appends,
                partial_overlap_is_an_idempotency_conflict,
                ids_stored_in_another_stream_are_an_idempotency_conflict,
                ids_are_scoped_by_namespace,
                duplicate_id_in_batch_is_rejected,
                large_batches_retry_and_conflict_like_small_ones,
                empty_batch_is_rejected,
                read_stream_forwards_backwards_and_from_revision,
                read_stream_of_missing_stream_is_not_found,
                read_all_forwards_and_backwards,
                read_all_with_filters,
                read_all_pages_continue_to_every_event_exactly_once,
                read_stream_bounded_in_bytes_continues_exactly,
                subscriptions_over_large_events_deliver_each_once,
                recorded_at_never_decreases,
                head_tracks_the_last_position,
                reads_after_a_position_exclude_it,
                distance_counts_the_events_between,
                close_ends_subscriptions_and_later_calls,
                subscribe_to_all_from_start_catches_up_then_goes_live,
                subscribe_to_all_on_empty_store,
                subscribe_to_all_after_position,
                subscribe_to_all_from_end,
                subscribe_to_all_with_filter,
                catch_up_to_live_switch_has_no_gap_and_no_duplicate,
                subscribe_to_stream_before_it_exists,
                subscribe_to_stream_from_start_after_and_end,
                slow_subscriber_receives_every_event_in_order,
                paced_subscribers_receive_every_event_in_order,
                concurrent_exact_appenders_one_winner_per_revision,
                concurrent_appenders_to_many_streams_get_contiguous_positions,
            );
            $crate::__event_store_test_cases!($factory, limits = $limits;
                event_too_large_is_rejected,
                batch_too_large_is_rejected,
            );
        }
    };
}

/// Implementation detail of [`event_store_test_suite!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __event_store_test_cases {
    ($factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, guard) = ($factory)().await;
                // A backend with sparse positions runs every case renumbered (`DenseView`).
                if $crate::EventStore::capabilities(&store).dense_positions.is_some() {
                    $crate::conformance::$case(&store).await;
                    drop(store);
                } else {
                    let store = $crate::conformance::DenseView::new(store);
                    $crate::conformance::$case(&store).await;
                    drop(store);
                }
                drop(guard);
            }
        )*
    };
    ($factory:expr, limits = $limits:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, guard) = ($factory)().await;
                let limits: $crate::conformance::Limits = $limits;
                if $crate::EventStore::capabilities(&store).dense_positions.is_some() {
                    $crate::conformance::$case(&store, &limits).await;
                    drop(store);
                } else {
                    let store = $crate::conformance::DenseView::new(store);
                    $crate::conformance::$case(&store, &limits).await;
                    drop(store);
                }
                drop(guard);
            }
        )*
    };
}
