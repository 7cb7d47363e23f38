//! The lease: one holder at a time; a second acquirer waits and takes over when the first's
//! connection is killed, and the first learns at once that it lost the lease.

use std::time::Duration;

use annals_store::postgres::testing::PgCluster;
use annals_store::postgres::PostgresLease;

use super::config;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_holder_waits_and_takes_over_when_the_first_connection_dies() {
    let cluster = PgCluster::shared();
    let url = cluster.create_database().await;
    let database = url.rsplit("dbname=").next().expect("dbname").to_owned();
    let config = config(url);
    let first = PostgresLease::acquire(&config, "view-messages").await.expect("first acquires");
    assert!(first.is_held());
    assert!(
        PostgresLease::try_acquire(&config, "view-messages").await.expect("try").is_none(),
        "try_acquire took a held lease"
    );
    let other = PostgresLease::try_acquire(&config, "view-audit").await.expect("try").expect("another name is free");
    let waiting = tokio::spawn({
        let config = config.clone();
        async move { PostgresLease::acquire(&config, "view-messages").await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the second acquirer did not wait for the first");
    let lost = first.lost();
    let admin = cluster.connect(&database).await;
    admin.execute("SELECT pg_terminate_backend($1)", &[&first.backend_pid()]).await.expect("kill the first's session");
    tokio::time::timeout(Duration::from_secs(2), lost.cancelled()).await.expect("the first learns it lost the lease");
    assert!(!first.is_held());
    let second = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the second takes over")
        .expect("task")
        .expect("acquire");
    assert!(second.is_held() && other.is_held(), "leases of other names are not affected");
    drop(second);
    // Dropping releases: the lease can be taken again at once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = PostgresLease::try_acquire(&config, "view-messages").await.expect("try");
    assert!(again.is_some(), "a dropped lease was not released");
}
