//! Worker presence and the two-level cache, against the real Redis.

use std::time::Duration;

use celaest_central::{cache::Cache, state::AppState, workers};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::helpers::test_config;

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_running_worker_is_counted_alive_and_leaves_on_shutdown(db: PgPool) {
    let state = AppState::new(test_config(&[]), db).unwrap();
    assert_eq!(workers::alive_workers(&state.redis).await.unwrap(), 0);
    let stop = CancellationToken::new();
    let running = tokio::spawn(workers::run(state.clone(), stop.clone()));

    let mut alive = 0;
    for _ in 0..50 {
        alive = workers::alive_workers(&state.redis).await.unwrap();
        if alive == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(alive, 1);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("workers stopped")
        .unwrap()
        .unwrap();
    assert_eq!(workers::alive_workers(&state.redis).await.unwrap(), 0);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn the_cache_round_trips_and_invalidation_reaches_other_instances(db: PgPool) {
    let state = AppState::new(test_config(&[]), db).unwrap();
    let other = Cache::new(state.redis.clone(), 100, Duration::from_millis(200));

    assert_eq!(state.cache.get::<Vec<u32>>("k").await.unwrap(), None);
    state
        .cache
        .set("k", &vec![1u32, 2, 3], Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        other.get::<Vec<u32>>("k").await.unwrap(),
        Some(vec![1, 2, 3])
    );

    state.cache.invalidate("k").await.unwrap();
    assert_eq!(state.cache.get::<Vec<u32>>("k").await.unwrap(), None);
    // The other instance's local copy lapses within its TTL.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(other.get::<Vec<u32>>("k").await.unwrap(), None);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn keys_of_different_prefixes_do_not_meet(db: PgPool) {
    let a = AppState::new(test_config(&[]), db.clone()).unwrap();
    let b = AppState::new(test_config(&[]), db).unwrap();
    a.cache
        .set("shared", &"from a", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(b.cache.get::<String>("shared").await.unwrap(), None);
    assert!(a.redis.key("x").starts_with("test:"));
}
