//! The settings of `annals serve` as `annals::settings` reads them: nested sections alike in a
//! TOML file and the environment, the layers' precedence (defaults < file < environment <
//! flags), the flat names of earlier versions, and errors that name the setting and its layer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use annals::settings::{Flags, Settings, StoreKind};
use annals_projectors::background::Priority;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("annals.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn error(file: Option<&Path>, vars: &[(&str, &str)]) -> String {
    Settings::load(file, env(vars), Flags::default()).unwrap_err().to_string()
}

#[test]
fn nested_settings_read_alike_from_the_file_and_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let toml = "role = \"all\"\n\
                [store]\nkind = \"embedded\"\ndata_dir = \"/from/file\"\nmin_free_bytes = 4096\n\
                [views]\nkind = \"tantivy\"\ndir = \"/views/file\"\n\
                [http]\nlisten = \"127.0.0.1:9000\"\nmax_page = 50\nstrict_schemas = true\ncors_origins = [\"https://a.example\", \"https://b.example\"]\n\
                [projectors]\nflush_ms = 300\nbatch_size = 500\nparallelism = 4\npriority = \"idle\"\n";
    let path = file(tmp.path(), toml);
    let s = Settings::load(Some(&path), [], Flags::default()).unwrap();
    assert_eq!(
        (s.store.kind, s.store.data_dir.clone(), s.store.min_free_bytes),
        (StoreKind::Embedded, "/from/file".into(), 4096)
    );
    assert_eq!(s.views_dir(), PathBuf::from("/views/file"));
    assert_eq!((s.http.listen, s.http.max_page, s.http.strict_schemas), ("127.0.0.1:9000".parse().unwrap(), 50, true));
    assert_eq!(s.http.cors_origins, ["https://a.example", "https://b.example"]);
    assert_eq!((s.projectors.flush, s.projectors.batch_size), (Duration::from_millis(300), 500));
    assert_eq!((s.projectors.parallelism, s.projectors.priority), (4, Priority::Idle));

    let vars = [
        ("ANNALS_STORE__DATA_DIR", "/from/env"),
        ("ANNALS_HTTP__MAX_PAGE", "7"),
        ("ANNALS_PROJECTORS__PARALLELISM", "2"),
        ("ANNALS_VIEWS__DIR", "/views/env"),
        ("ANNALS_ROLE", "all"),
    ];
    let s = Settings::load(None, env(&vars), Flags::default()).unwrap();
    assert_eq!((s.store.data_dir.clone(), s.http.max_page, s.projectors.parallelism), ("/from/env".into(), 7, 2));
    assert_eq!(s.views_dir(), PathBuf::from("/views/env"));
    let s = Settings::load(None, [], Flags::default()).unwrap();
    assert_eq!(s.views_dir(), PathBuf::from("data/views"), "the views live in the data directory by default");
}

#[test]
fn flags_override_the_environment_which_overrides_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = file(
        tmp.path(),
        "[store]\ndata_dir = \"/file\"\n[http]\nlisten = \"127.0.0.1:9000\"\nmax_page = 50\nmax_body_bytes = 10\n",
    );
    let vars = env(&[
        ("ANNALS_STORE__DATA_DIR", "/env"),
        ("ANNALS_HTTP__LISTEN", "127.0.0.1:9001"),
        ("ANNALS_MAX_PAGE", "20"),
    ]);
    let flags = Flags { listen: Some("127.0.0.1:9002".into()), ..Flags::default() };
    let s = Settings::load(Some(&path), vars, flags).unwrap();
    assert_eq!(s.http.listen, "127.0.0.1:9002".parse().unwrap(), "a flag beats the environment");
    assert_eq!(s.store.data_dir, PathBuf::from("/env"), "the environment beats the file");
    assert_eq!(s.http.max_page, 20, "an earlier name in the environment beats the file too");
    assert_eq!(s.http.max_body_bytes, 10, "the file beats the defaults");
    assert_eq!(s.http.max_page_bytes, Settings::default().http.max_page_bytes);
    let flags = Flags { data_dir: Some("/flag".into()), role: Some("all".into()), ..Flags::default() };
    let s = Settings::load(Some(&path), env(&[("ANNALS_DATA_DIR", "/env")]), flags).unwrap();
    assert_eq!(s.store.data_dir, PathBuf::from("/flag"));
}

#[test]
fn the_flat_names_of_earlier_versions_still_set_their_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let path = file(
        tmp.path(),
        "listen = \"127.0.0.1:9000\"\ndata_dir = \"/old\"\nmax_page = \"50\"\nprojector_flush_ms = 100\n",
    );
    let s = Settings::load(Some(&path), [], Flags::default()).unwrap();
    assert_eq!((s.http.listen, s.store.data_dir.clone()), ("127.0.0.1:9000".parse().unwrap(), "/old".into()));
    assert_eq!((s.http.max_page, s.projectors.flush), (50, Duration::from_millis(100)));
    let vars = [
        ("ANNALS_LISTEN", "127.0.0.1:9003"),
        ("ANNALS_DATA_DIR", "/d"),
        ("ANNALS_MIN_FREE_BYTES", "1"),
        ("ANNALS_MAX_BODY_BYTES", "2"),
        ("ANNALS_MAX_PAGE_BYTES", "3"),
        ("ANNALS_SSE_HEARTBEAT_SECS", "4"),
        ("ANNALS_STRICT_SCHEMAS", "yes"),
        ("ANNALS_SHUTDOWN_GRACE_SECS", "5"),
        ("ANNALS_CORS_ORIGINS", "https://logs.example.com, http://127.0.0.1:3000"),
        ("ANNALS_LIVE_TOKEN_TTL_SECS", "60"),
        ("ANNALS_HEADER_TIMEOUT_SECS", "6"),
        ("ANNALS_BODY_TIMEOUT_SECS", "7"),
        ("ANNALS_IDLE_TIMEOUT_SECS", "8"),
        ("ANNALS_MAX_CONNECTIONS", "9"),
        ("ANNALS_MAX_CATCHUP_TAILS", "10"),
        ("ANNALS_PROJECTOR_FLUSH_MS", "11"),
        ("ANNALS_PROJECTOR_BATCH_SIZE", "12"),
        ("ANNALS_PROJECTOR_PARALLELISM", "13"),
        ("ANNALS_PROJECTOR_PRIORITY", "normal"),
        (
            "ANNALS_ADMIN_KEY",
            "annals_0123456789abcdef_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        ),
    ];
    let s = Settings::load(None, env(&vars), Flags::default()).unwrap();
    let secs = Duration::from_secs;
    assert_eq!(
        (s.http.listen, s.store.data_dir.clone(), s.store.min_free_bytes),
        ("127.0.0.1:9003".parse().unwrap(), "/d".into(), 1)
    );
    assert_eq!((s.http.max_body_bytes, s.http.max_page_bytes, s.http.sse_heartbeat), (2, 3, secs(4)));
    assert_eq!((s.http.strict_schemas, s.http.shutdown_grace, s.http.live_token_ttl), (true, secs(5), secs(60)));
    assert_eq!(s.http.cors_origins, ["https://logs.example.com", "http://127.0.0.1:3000"]);
    assert_eq!((s.http.header_timeout, s.http.body_timeout, s.http.idle_timeout), (secs(6), secs(7), secs(8)));
    assert_eq!((s.http.max_connections, s.http.max_catchup_tails), (9, 10));
    assert_eq!(
        (s.projectors.flush, s.projectors.batch_size, s.projectors.parallelism),
        (Duration::from_millis(11), 12, 13)
    );
    assert_eq!(s.projectors.priority, Priority::Normal);
    assert!(s.admin_key.is_some());
}

#[test]
fn a_setting_given_under_both_names_with_two_values_is_refused() {
    let err = error(None, &[("ANNALS_MAX_PAGE", "5"), ("ANNALS_HTTP__MAX_PAGE", "6")]);
    assert!(err.contains("ANNALS_HTTP__MAX_PAGE") && err.contains("ANNALS_MAX_PAGE"), "{err}");
    let s = Settings::load(None, env(&[("ANNALS_MAX_PAGE", "5"), ("ANNALS_HTTP__MAX_PAGE", "5")]), Flags::default());
    assert_eq!(s.unwrap().http.max_page, 5, "the same value under both names is one setting");
}

#[test]
fn unknown_or_invalid_settings_are_named_with_their_layer() {
    let tmp = tempfile::tempdir().unwrap();
    for (text, named) in [
        ("listn = \"x\"\n", "listn"),
        ("[htp]\nlisten = \"127.0.0.1:1\"\n", "[htp]"),
        ("[http]\nlisen = \"127.0.0.1:1\"\n", "http.lisen"),
        ("[store]\nkind = \"mysql\"\n", "store.kind"),
        ("[http]\nmax_page = 0\n", "http.max_page"),
        ("[http]\nmax_page = [1, 2]\n", "http.max_page"),
        ("admin_key = \"annals_0\"\n", "ANNALS_ADMIN_KEY only"),
    ] {
        let err = error(Some(&file(tmp.path(), text)), &[]);
        assert!(err.contains("annals.toml") && err.contains(named), "{text}: {err}");
    }
    for (name, value, expected) in [
        ("ANNALS_HTTP__MAX_PAGE", "0", "at least 1"),
        ("ANNALS_PROJECTOR_PARALLELISM", "65", "at most 64"),
        ("ANNALS_PROJECTORS__PARALLELISM", "0", "at least 1"),
        ("ANNALS_PROJECTOR_BATCH_SIZE", "100001", "at most 100000"),
        ("ANNALS_PROJECTOR_PRIORITY", "high", "idle, low or normal"),
        ("ANNALS_CORS_ORIGINS", "*", "not an origin"),
        ("ANNALS_CORS_ORIGINS", "https://logs.example.com/ui", "not an origin"),
        ("ANNALS_LIVE_TOKEN_TTL_SECS", "3601", "at most 3600"),
        ("ANNALS_MAX_CONNECTIONS", "0", "at least 1"),
        ("ANNALS_ROLE", "both", "all, api or projector"),
        ("ANNALS_STORE__KIND", "mysql", "embedded or postgres"),
        ("ANNALS_VIEWS__KIND", "lucene", "tantivy"),
        ("ANNALS_HTTP__MAX_PAEG", "1", "no such setting"),
    ] {
        let err = error(None, &[(name, value)]);
        assert!(err.contains(name) && err.contains(expected), "{name}={value}: {err}");
    }
    let flags = Flags { role: Some("primary".into()), ..Flags::default() };
    let err = Settings::load(None, [], flags).unwrap_err().to_string();
    assert!(err.contains("--role") && err.contains("all, api or projector"), "{err}");
}

#[test]
fn combinations_no_process_can_run_are_refused_with_what_to_use_instead() {
    for role in ["api", "projector"] {
        let err = error(None, &[("ANNALS_ROLE", role)]);
        assert!(err.contains("role") && err.contains("embedded") && err.contains("use role \"all\""), "{err}");
        assert!(err.contains("kind = \"postgres\""), "{err}");
    }
    let err = error(None, &[("ANNALS_STORE__KIND", "postgres")]);
    assert!(
        err.contains("store.url") && err.contains("ANNALS_STORE__URL") && err.contains("kind = \"embedded\""),
        "{err}"
    );
    let err = error(None, &[("ANNALS_STORE__URL", "postgres://annals@localhost/annals")]);
    assert!(err.contains("store.url") && err.contains("kind = \"postgres\""), "{err}");
    let err = error(None, &[("ANNALS_STORE__POOL_SIZE", "4")]);
    assert!(err.contains("store.pool_size") && err.contains("kind = \"postgres\""), "{err}");
    let err = error(None, &[("ANNALS_STORE__PARALLEL_INSERT_MIN_EVENTS", "64")]);
    assert!(err.contains("store.parallel_insert_min_events") && err.contains("kind = \"postgres\""), "{err}");
    let postgres = [("ANNALS_STORE__KIND", "postgres"), ("ANNALS_STORE__URL", "postgres://annals@localhost/annals")];
    let err = error(None, &[postgres[0], postgres[1], ("ANNALS_STORE__PARALLEL_INSERT_MIN_EVENTS", "0")]);
    assert!(err.contains("ANNALS_STORE__PARALLEL_INSERT_MIN_EVENTS") && err.contains("at least 1"), "{err}");
    let url = ("ANNALS_STORE__URL", "postgres://annals@localhost/annals");
    let err = error(None, &[("ANNALS_STORE__KIND", "postgres"), url, ("ANNALS_ROLE", "api")]);
    assert!(err.contains("views.dir") && err.contains("ANNALS_VIEWS__DIR"), "the views the processes share: {err}");
    let views = ("ANNALS_VIEWS__DIR", "/srv/annals/views");
    let s = Settings::load(
        None,
        env(&[("ANNALS_STORE__KIND", "postgres"), url, ("ANNALS_ROLE", "api"), views]),
        Flags::default(),
    );
    assert!(s.is_ok(), "api processes on a shared store and views are a valid combination: {s:?}");
}

#[test]
fn invalidation_settings_read_alike_from_the_file_and_the_environment_and_reach_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let toml = "[invalidations]\nqueue_capacity = 64\nring_size = 32\ncache_max_bytes = 1024\ncache_ttl_secs = 9\n";
    let s = Settings::load(Some(&file(tmp.path(), toml)), [], Flags::default()).unwrap();
    let i = &s.invalidations;
    assert_eq!((i.queue_capacity, i.ring_size, i.cache_max_bytes, i.cache_ttl), (64, 32, 1024, Duration::from_secs(9)));
    let api = s.api();
    assert_eq!((api.cache.max_bytes, api.cache.ttl), (1024, Duration::from_secs(9)));
    let vars = [("ANNALS_INVALIDATIONS__RING_SIZE", "5"), ("ANNALS_INVALIDATIONS__CACHE_MAX_BYTES", "0")];
    let s = Settings::load(None, env(&vars), Flags::default()).unwrap();
    assert_eq!((s.invalidations.ring_size, s.invalidations.cache_max_bytes), (5, 0));
    let err = error(None, &[("ANNALS_INVALIDATIONS__QUEUE_CAPACITY", "0")]);
    assert!(err.contains("ANNALS_INVALIDATIONS__QUEUE_CAPACITY") && err.contains("at least 1"), "{err}");
    let err = error(Some(&file(tmp.path(), "[invalidations]\nring = 3\n")), &[]);
    assert!(err.contains("invalidations.ring") && err.contains("ring_size"), "{err}");
}
