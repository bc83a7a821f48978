//! Worker presence and Redis key namespacing, against the real Redis.

use std::time::Duration;

use celaest_central::{state::AppState, workers};
use redis::AsyncCommands;
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
async fn the_worker_keeps_the_outbox_to_its_retention(db: PgPool) {
    let state = AppState::new(test_config(&[("REPLICATION_RETAIN_CHANGES", "100")]), db).unwrap();
    sqlx::query(
        "SELECT replication_append('product.upsert', gen_random_uuid(), '{}'::jsonb) \
         FROM generate_series(1, 105)",
    )
    .execute(&state.db)
    .await
    .unwrap();
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM replication_log")
            .fetch_one(&state.db)
            .await
            .unwrap()
    };
    assert_eq!(count().await, 105);

    let stop = CancellationToken::new();
    let running = tokio::spawn(workers::run(state.clone(), stop.clone()));
    let mut kept = 105;
    for _ in 0..100 {
        kept = count().await;
        if kept == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("workers stopped")
        .unwrap()
        .unwrap();
    assert_eq!(
        kept, 100,
        "the oldest five changes pruned, the newest 100 kept"
    );
    let oldest: i64 = sqlx::query_scalar("SELECT min(seq) FROM replication_log")
        .fetch_one(&state.db)
        .await
        .unwrap();
    assert_eq!(oldest, 6);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn keys_of_different_prefixes_do_not_meet(db: PgPool) {
    let a = AppState::new(test_config(&[]), db.clone()).unwrap();
    let b = AppState::new(test_config(&[]), db).unwrap();
    let () = a
        .redis
        .conn()
        .await
        .unwrap()
        .set_ex(a.redis.key("shared"), "from a", 60)
        .await
        .unwrap();
    let seen: Option<String> = b
        .redis
        .conn()
        .await
        .unwrap()
        .get(b.redis.key("shared"))
        .await
        .unwrap();
    assert_eq!(seen, None);
    assert!(a.redis.key("x").starts_with("test:"));
}
