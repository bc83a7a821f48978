//! Graceful shutdown: a request in flight when the signal arrives still gets its answer.

use std::time::Duration;

use axum::{Router, routing::get};
use celaest_central::{
    http::{self, response::Data},
    state::AppState,
};
use sqlx::PgPool;

use crate::helpers::{TestApp, test_config};

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn in_flight_requests_finish_after_shutdown_is_requested(db: PgPool) {
    let state = AppState::new(test_config(&[]), db).unwrap();
    let slow = Router::new().route(
        "/probe/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            Data("finished")
        }),
    );
    let mut app = TestApp::serve(state.clone(), http::with_middleware(slow, &state.config)).await;

    let request = tokio::spawn({
        let url = app.url("/probe/slow");
        let client = app.client.clone();
        async move { client.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    app.shutdown.cancel();

    let response = request
        .await
        .unwrap()
        .expect("the in-flight request was answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["data"],
        "finished"
    );
    let server = app.server.take().unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stopped")
        .unwrap()
        .unwrap();
    // New connections are refused once the server has stopped.
    assert!(app.client.get(app.url("/health")).send().await.is_err());
}
