//! The api tests, one binary: each module below was a test binary of its own, and
//! linking one binary instead of many keeps a cold build small and fast (see BENCHMARKS.md,
//! "Test build").

mod api;
mod api_browser;
mod api_edge;
mod api_export;
mod api_export_promises;
mod api_export_search;
mod api_fuzz;
mod api_integrity;
mod api_invalidations;
mod api_keys;
mod api_keys_upgrade;
mod api_live;
mod api_openapi;
mod api_rebuild;
mod api_redis;
mod api_schemas;
mod api_storage;
mod api_tenancy;
mod api_view_search;
mod api_views;
mod api_views_edges;
mod browser_live;
mod crash;
mod distributed;
mod roles;
mod support;
