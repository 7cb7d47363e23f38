//! The `ViewStore` conformance suite: every guarantee of `annals_projectors::view_store`, written
//! once against the trait and stamped out per backend with [`view_store_suite!`] (as quickwit
//! does with `metastore_test_suite!`), so all backends are held to the same behaviour.
//!
//! A backend provides a [`Make`] function: open the store of a schema at a location. Each test
//! owns a fresh temporary directory as that location and may call `make` again with the same
//! directory after dropping the store, which is how the reopen test checks durability. A
//! backend without local files (a search cluster) can derive its index name from the path.

#![allow(dead_code)]

mod cursors;
mod fixtures;
mod model;
mod reads;
mod writes;

use std::path::Path;

use annals_projectors::view_store::{ViewSchema, ViewStore};

pub use cursors::*;
pub use fixtures::*;
pub use model::*;
pub use reads::*;
pub use writes::*;

/// Opens (or reopens) the store of `schema` at `dir`.
pub type Make<'a> = dyn Fn(&Path, ViewSchema) -> Box<dyn ViewStore> + 'a;

/// Stamps one `#[test]` per suite function, each calling it with `$make` (an expression of a
/// type that is `Fn(&Path, ViewSchema) -> Box<dyn ViewStore>`). Use after `#[macro_use] mod
/// view_store;`.
macro_rules! view_store_suite {
    ($make:expr) => {
        view_store_suite!(@stamp $make;
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
        );
    };
    (@stamp $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let make = $make;
                $crate::view_store::$name(&make);
            }
        )*
    };
}
