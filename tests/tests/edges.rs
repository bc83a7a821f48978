//! End-to-end: central and edges as they run in production — real processes, real QUIC with
//! mutual TLS on loopback, real PostgreSQL and Redis.

use std::time::{Duration, Instant};

use celaest_protocol::signing::{JwkSet, KeySet, SIGNATURE_HEADER};
use celaest_tests::{
    CentralProcess, EdgeProcess, drop_database, free_port, fresh_database_url, http_client,
    token_for,
};
use serde_json::{Value, json};

struct Stack {
    central: CentralProcess,
    env: Vec<(String, String)>,
    db_url: String,
    admin: String,
    client: reqwest::Client,
}

impl Stack {
    async fn start(label: &str, extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        let db_url = fresh_database_url(label);
        let mut env = CentralProcess::env_for(&db_url, free_port()?);
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let migrate = CentralProcess::run_command(&env, &["migrate"])?;
        anyhow::ensure!(
            migrate.status.success(),
            "{}",
            String::from_utf8_lossy(&migrate.stderr)
        );
        let central = CentralProcess::start(env.clone(), &["serve"]).await?;
        Ok(Self {
            central,
            env,
            db_url,
            admin: token_for("admin")?,
            client: http_client(),
        })
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .client
            .request(method, format!("{}{path}", self.central.base_url))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let json: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {json}");
        Ok(json["data"].clone())
    }

    async fn license(&self, code: &str) -> anyhow::Result<Value> {
        let product = self
            .api(reqwest::Method::POST, "/api/products", json!({"code": code, "name": code, "product_type": "software", "status": "published"}))
            .await?;
        self.api(
            reqwest::Method::POST,
            "/api/licenses",
            json!({"product_id": product["id"]}),
        )
        .await
    }

    async fn edge(&self, id: &str, region: &str) -> anyhow::Result<EdgeProcess> {
        let edge = EdgeProcess::start(EdgeProcess::env_for(&self.env, id, region)?).await?;
        edge.ready(Duration::from_secs(30)).await?;
        Ok(edge)
    }

    async fn restart_central(&mut self) -> anyhow::Result<()> {
        self.central = CentralProcess::start(self.env.clone(), &["serve"]).await?;
        Ok(())
    }

    async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.db_url).await?;
        // The statements are the test's own, built around ids it generated.
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        Ok(n)
    }
}

/// Validates `key` at `edge` as a client at `ip`, returning the answer's `data`.
async fn validate(
    client: &reqwest::Client,
    edge: &EdgeProcess,
    key: &str,
    ip: &str,
) -> anyhow::Result<Value> {
    let response = client
        .post(format!("{}/api/licenses/validate", edge.base_url))
        .header("x-forwarded-for", ip)
        .json(&json!({"license_key": key, "ip_address": ip, "nonce": "e2e"}))
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 200,
        "validate at {}: {}",
        edge.base_url,
        response.status()
    );
    Ok(response.json::<Value>().await?["data"].clone())
}

/// Polls until `edge` answers `code` for `key` from `ip`; returns how long it took.
async fn until_code(
    client: &reqwest::Client,
    edge: &EdgeProcess,
    key: &str,
    ip: &str,
    code: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let answer = validate(client, edge, key, ip).await?;
        if answer["code"] == code {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(15),
            "{} never answered {code}: {answer}",
            edge.base_url
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_edges_follow_central_and_share_its_ip_slots() -> anyhow::Result<()> {
    let stack = Stack::start("edges", &[]).await?;
    let eu = stack.edge("edge-eu-1", "eu-west").await?;
    let us = stack.edge("edge-us-1", "us-east").await?;
    let license = stack.license("MKT").await?;
    let key = license["license_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // A license created at central validates at both edges, answered by each.
    let first = {
        let started = Instant::now();
        loop {
            let answer = validate(&stack.client, &eu, &key, "198.51.100.1").await?;
            if answer["valid"] == true {
                break answer;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(15),
                "never valid at the edge: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert_eq!(first["remaining_ips"], 4);
    assert_eq!(first["answered_by"], "edge-eu-1");
    for i in 2..=5 {
        let answer = validate(&stack.client, &eu, &key, &format!("198.51.100.{i}")).await?;
        assert_eq!(answer["code"], "VALID", "{answer}");
    }
    // The five were bound through the other edge: a sixth IP is refused here too.
    let sixth = validate(&stack.client, &us, &key, "198.51.100.6").await?;
    assert_eq!(sixth["code"], "IP_LIMIT_REACHED", "{sixth}");
    until_code(&stack.client, &us, &key, "198.51.100.3", "VALID").await?;

    // Answers at the edge are signed with the key central publishes.
    let jwks: JwkSet = serde_json::from_value(
        stack
            .client
            .get(format!(
                "{}/api/licenses/signing-keys",
                stack.central.base_url
            ))
            .send()
            .await?
            .json::<Value>()
            .await?["data"]
            .clone(),
    )?;
    let response = stack
        .client
        .post(format!("{}/api/licenses/validate", us.base_url))
        .header("x-forwarded-for", "198.51.100.3")
        .json(&json!({"license_key": key, "ip_address": "198.51.100.3"}))
        .send()
        .await?;
    let signature = response.headers()[SIGNATURE_HEADER].to_str()?.to_owned();
    KeySet::from_jwks(&jwks)?.verify(&response.bytes().await?, &signature)?;

    // A revocation at central reaches both edges shortly after.
    let id = license["id"].as_str().unwrap_or_default();
    stack
        .api(
            reqwest::Method::POST,
            &format!("/api/licenses/{id}/revoke"),
            json!({"reason": "e2e"}),
        )
        .await?;
    for edge in [&eu, &us] {
        let took = until_code(&stack.client, edge, &key, "198.51.100.1", "LICENSE_REVOKED").await?;
        assert!(took < Duration::from_secs(5), "revocation took {took:?}");
    }

    let fleet = stack
        .api(reqwest::Method::GET, "/api/edges", json!(null))
        .await?;
    let ids: Vec<&str> = fleet
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["edge-eu-1", "edge-us-1"]);
    assert!(
        fleet
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| e["connected"] == true)
    );
    drop((eu, us));
    drop_database(&stack.db_url).await;
    Ok(())
}

#[tokio::test]
async fn edges_outlive_central_and_deliver_their_reports_exactly_once() -> anyhow::Result<()> {
    let mut stack = Stack::start("outage", &[]).await?;
    let edge = stack.edge("edge-eu-1", "eu-west").await?;
    let license = stack.license("CRM").await?;
    let key = license["license_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    until_code(&stack.client, &edge, &key, "203.0.113.1", "VALID").await?;
    // The binding reaches the edge as a change: wait until the edge has applied everything.
    let caught_up = "SELECT count(*) FROM edges e, replication_state s WHERE e.id = 'edge-eu-1' AND e.applied_seq >= s.last_seq";
    let started = Instant::now();
    while stack.count(caught_up).await? == 0 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(15),
            "the edge never applied the binding"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Central goes away: bound IPs keep validating from memory, new IPs cannot be bound.
    stack.central.terminate(Duration::from_secs(15))?;
    for _ in 0..3 {
        assert_eq!(
            validate(&stack.client, &edge, &key, "203.0.113.1").await?["code"],
            "VALID"
        );
    }
    assert_eq!(
        validate(&stack.client, &edge, &key, "203.0.113.9").await?["code"],
        "BINDING_UNAVAILABLE"
    );
    let answered_at_edge: i64 = 5;

    // Central is back: the edge resumes, and every report arrives once.
    stack.restart_central().await?;
    let id = license["id"].as_str().unwrap_or_default();
    let sql = format!(
        "SELECT coalesce(sum(count), 0)::bigint FROM license_validations WHERE license_id = '{id}' AND answered_by = 'edge-eu-1'"
    );
    let started = Instant::now();
    let mut stored = 0;
    while started.elapsed() < Duration::from_secs(30) {
        stored = stack.count(&sql).await?;
        if stored >= answered_at_edge {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stack.count(&sql).await?,
        answered_at_edge,
        "each report stored exactly once (saw {stored})"
    );

    // Changes flow again after the reconnection.
    stack
        .api(
            reqwest::Method::POST,
            &format!("/api/licenses/{id}/revoke"),
            json!({"reason": "e2e"}),
        )
        .await?;
    until_code(&stack.client, &edge, &key, "203.0.113.1", "LICENSE_REVOKED").await?;
    drop(edge);
    drop_database(&stack.db_url).await;
    Ok(())
}

#[tokio::test]
async fn an_edge_behind_the_retained_changes_gets_a_snapshot_and_converges() -> anyhow::Result<()> {
    let mut stack = Stack::start("snapshot", &[]).await?;
    let edge = stack.edge("edge-eu-1", "eu-west").await?;
    let old = stack.license("OLD").await?;
    let old_key = old["license_key"].as_str().unwrap_or_default().to_owned();
    until_code(&stack.client, &edge, &old_key, "203.0.113.1", "VALID").await?;

    // A long outage: central changes much, and no longer holds the changes the edge missed.
    stack.central.terminate(Duration::from_secs(15))?;
    stack.restart_central().await?;
    let new = stack.license("NEW").await?;
    let id = old["id"].as_str().unwrap_or_default();
    stack
        .api(
            reqwest::Method::POST,
            &format!("/api/licenses/{id}/revoke"),
            json!({"reason": "e2e"}),
        )
        .await?;
    stack.central.terminate(Duration::from_secs(15))?;
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&stack.db_url).await?;
        sqlx::query("DELETE FROM replication_log")
            .execute(&mut conn)
            .await?;
        conn.close().await?;
    }
    stack.restart_central().await?;

    let new_key = new["license_key"].as_str().unwrap_or_default().to_owned();
    until_code(&stack.client, &edge, &new_key, "203.0.113.2", "VALID").await?;
    until_code(
        &stack.client,
        &edge,
        &old_key,
        "203.0.113.1",
        "LICENSE_REVOKED",
    )
    .await?;
    drop(edge);
    drop_database(&stack.db_url).await;
    Ok(())
}

#[tokio::test]
async fn an_edge_with_a_certificate_from_another_ca_never_gets_state() -> anyhow::Result<()> {
    let stack = Stack::start("stranger", &[]).await?;
    let strangers = std::env::temp_dir().join(format!("celaest-stranger-{}", uuid::Uuid::now_v7()));
    let made = CentralProcess::run_command(
        &stack.env,
        &["certs", "--dir", &strangers.display().to_string()],
    )?;
    anyhow::ensure!(made.status.success());
    let mut env = EdgeProcess::env_for(&stack.env, "edge-x", "nowhere")?;
    for (name, file) in [("EDGE_TLS_CERT", "edge.pem"), ("EDGE_TLS_KEY", "edge.key")] {
        if let Some(entry) = env.iter_mut().find(|(k, _)| k == name) {
            entry.1 = strangers.join(file).display().to_string();
        }
    }
    let edge = EdgeProcess::start(env).await?;
    assert!(
        edge.ready(Duration::from_secs(3)).await.is_err(),
        "an edge central refuses must not become ready"
    );
    let fleet = stack
        .api(reqwest::Method::GET, "/api/edges", json!(null))
        .await?;
    assert_eq!(fleet, json!([]));
    drop(edge);
    let _ = std::fs::remove_dir_all(strangers);
    drop_database(&stack.db_url).await;
    Ok(())
}
