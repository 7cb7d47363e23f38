//! The view-store conformance suite: every guarantee of [`crate::view_store`], written once
//! against the reader/writer traits and stamped out per backend with
//! [`view_store_test_suite!`](crate::view_store_test_suite) (as the store's
//! `event_store_test_suite!`), so all backends are held to the same behaviour. Behind the
//! `testsuite` feature: the tests of a backend turn it on; release binaries never compile it.
//!
//! A backend provides an async factory: open the view store of a schema at a location, both
//! halves ([`ViewHalves`]). Each case owns a fresh temporary directory as that location and may
//! call the factory again with the same directory after dropping the halves, which is how the
//! reopen cases check durability. A backend without local files (a search cluster) derives its
//! index name from the path. What a backend promises beyond the guarantees every one gives is
//! read from its [`Capabilities`](crate::view_store::Capabilities): commits are split into
//! documents then checkpoint without `atomic_checkpoint`, and reads wait out guarantee 3's
//! second without `visible_on_return`.
//!
//! The suite fails with plain panics naming the promise that was broken.

mod cursors;
mod fixtures;
mod model;
mod reads;
mod writes;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use crate::view_store::{ViewHalves, ViewSchema};

pub use cursors::*;
pub use fixtures::*;
pub use model::*;
pub use reads::*;
pub use writes::*;

/// The guard of a backend that always runs.
pub fn never_skip() -> Option<String> {
    None
}

/// Opens (or reopens) the view store of `schema` at `dir`.
pub type Make = dyn Fn(PathBuf, ViewSchema) -> Pin<Box<dyn Future<Output = ViewHalves> + Send>> + Send + Sync;

/// Stamps one `#[tokio::test]` per conformance case, each calling it with `$factory`: an async
/// function (or closure returning a future) of `(PathBuf, ViewSchema)` to [`ViewHalves`],
/// opening a backend at that location. The calling crate needs tokio (macros, rt-multi-thread).
///
/// ```ignore
/// async fn open(dir: PathBuf, schema: ViewSchema) -> ViewHalves { /* … */ }
/// annals_projectors::view_store_test_suite!(open);
/// ```
///
/// A backend that needs a server the test machine may not have passes a guard: a function
/// returning `Some(reason)` to skip every case (printing the reason; a skipped case passes
/// without checking anything, so it must never be counted as run).
///
/// ```ignore
/// annals_projectors::view_store_test_suite!(open, skip_unless = cluster_configured);
/// ```
#[macro_export]
macro_rules! view_store_test_suite {
    ($factory:path) => {
        $crate::view_store_test_suite!($factory, skip_unless = $crate::view_store::testsuite::never_skip);
    };
    ($factory:path, skip_unless = $skip:path) => {
        $crate::view_store_test_suite!(@stamp $factory, $skip;
            empty_view_has_no_checkpoint,
            commit_then_checkpoint,
            batch_writes_and_checkpoint_are_visible_together,
            invalid_batch_writes_nothing,
            stale_version_is_ignored_and_equal_version_is_a_no_op,
            last_version_wins_within_a_batch,
            replaying_a_prefix_changes_nothing,
            upsert_replaces_the_document_and_its_fields,
            get_is_tenant_isolated,
            get_many_answers_in_order_per_tenant,
            search_is_tenant_isolated,
            term_filter_matches_any_of_its_values,
            prefix_filter_matches_value_prefixes_only,
            time_range_includes_from_and_excludes_to,
            bool_filter,
            filters_combine_with_and,
            text_search_is_case_insensitive_and_needs_every_term,
            long_words_are_found_and_never_match_everything,
            sorts_both_directions_with_time_ties_broken_by_id,
            cursors_visit_every_document_exactly_once,
            cursors_are_stable_under_concurrent_writes,
            facets_count_every_matching_document,
            totals_facets_and_pages_match_a_model_on_random_data,
            bad_queries_are_rejected,
            reopen_keeps_checkpoint_and_documents,
            bulk_load_keeps_every_guarantee,
            committed_batch_is_searchable_within_a_second,
            a_reader_sees_the_documents_of_its_checkpoint,
            a_commit_is_visible_on_return_where_the_backend_says_so,
        );
    };
    (@stamp $factory:path, $skip:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(reason) = $skip() {
                    eprintln!("skipped {}: {reason}", stringify!($name));
                    return;
                }
                let make: &$crate::view_store::testsuite::Make = &|dir, schema| Box::pin($factory(dir, schema));
                $crate::view_store::testsuite::$name(make).await;
            }
        )*
    };
}
